//! Translating a text of several sentences: one sentence at a time, shown as one matrix.
//!
//! [`Translator::text_source`] splits the input with [`crate::decoding::segment`] (or keeps it whole)
//! and tokenises each sentence; [`Translator::check_text`] validates the options against it
//! before anything streams; [`Translator::translate_text`] decodes the sentences in order
//! and reports every step in the coordinates of the whole input: step indices run on across
//! sentences, attention rows cover every source position (zero outside the step's own
//! sentence, so the matrix is block diagonal) and each step names its sentence. A text of one
//! sentence decodes exactly as [`Translator::translate_source`] does.
//!
//! How the options carry over: `force_target` and `target_prefix` are split into sentences
//! the same way and the i-th goes with the i-th input sentence; `max_len` and `beam` apply to
//! each sentence; an intervention applies in the sentence that holds its source position, at
//! its step counted over the whole output (a step that falls outside that sentence's
//! translation is not applied, as a step past the end of a single sentence is not).
//! Beam search keeps each sentence's ranked hypotheses; the i-th combined hypothesis joins
//! the i-th of every sentence (or its last, when it has fewer).

use std::ops::ControlFlow;

use crate::decoding::decode::{DecodeOptions, Translation, check_interventions};
use crate::decoding::segment;
use crate::decoding::step::{
    DecodeStep, Hypothesis, Intervention, SentenceSpan, StepHeads, StepScores,
};
use crate::{Error, Result, Translator};

/// Whether to split an input into sentences before translating it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Segmentation {
    /// Translate each sentence on its own (the default: the models are trained on sentences).
    #[default]
    Sentences,
    /// Translate the whole input as one sequence.
    Whole,
}

/// One sentence of a tokenised input.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSentence {
    /// The sentence's text as it is in the input.
    pub text: String,
    /// Its piece ids, `</s>` appended.
    pub ids: Vec<u32>,
    /// Its pieces, `</s>` appended.
    pub tokens: Vec<String>,
    /// Position of its first piece in the whole input's pieces.
    pub start: usize,
}

/// An input text, tokenised sentence by sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSource {
    pub sentences: Vec<SourceSentence>,
}

impl TextSource {
    /// Every piece of the input, sentence after sentence (each ends with `</s>`).
    pub fn tokens(&self) -> Vec<String> {
        self.sentences
            .iter()
            .flat_map(|s| s.tokens.iter().cloned())
            .collect()
    }

    /// The number of source pieces in all.
    pub fn len(&self) -> usize {
        self.sentences.iter().map(|s| s.ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The sentence that holds source position `pos`.
    fn sentence_of(&self, pos: usize) -> Option<usize> {
        self.sentences
            .iter()
            .position(|s| (s.start..s.start + s.ids.len()).contains(&pos))
    }
}

/// Splits a target-side text the same way as the input (for forced targets and prefixes),
/// checking it has no more sentences than the input.
fn split_target(text: &str, what: &str, input_sentences: usize) -> Result<Vec<String>> {
    let parts: Vec<String> = segment::sentences(text)
        .iter()
        .map(|s| s.text(text).to_string())
        .collect();
    if parts.len() > input_sentences {
        return Err(Error::Invalid(format!(
            "{what} has {} sentences but the text has {input_sentences}: give at most one per input sentence, or turn segmentation off",
            parts.len()
        )));
    }
    Ok(parts)
}

/// The forced target and the prefix of each sentence.
struct SentencePlan {
    forced: Vec<Option<String>>,
    prefix: Vec<Option<String>>,
}

impl SentencePlan {
    fn new(opts: &DecodeOptions, n: usize) -> Result<Self> {
        let forced = match &opts.force_target {
            Some(t) if n > 1 => {
                let parts = split_target(t, "force_target", n)?;
                if parts.len() != n {
                    return Err(Error::Invalid(format!(
                        "force_target has {} sentences but the text has {n}: give one translation per sentence, or turn segmentation off",
                        parts.len()
                    )));
                }
                parts.into_iter().map(Some).collect()
            }
            other => vec![other.clone(); n],
        };
        let prefix = match &opts.target_prefix {
            Some(p) if n > 1 => {
                let mut parts: Vec<Option<String>> = split_target(p, "target_prefix", n)?
                    .into_iter()
                    .map(Some)
                    .collect();
                parts.resize(n, None);
                parts
            }
            other => vec![other.clone(); n],
        };
        Ok(SentencePlan { forced, prefix })
    }

    /// Options for sentence `k` of `src`, whose output starts at step `offset`, with the
    /// interventions that fall in its first `max_len` steps.
    fn options(
        &self,
        opts: &DecodeOptions,
        src: &TextSource,
        k: usize,
        offset: usize,
        max_len: usize,
    ) -> DecodeOptions {
        let sentence = &src.sentences[k];
        let interventions = opts
            .interventions
            .iter()
            .filter(|iv| src.sentence_of(iv.source) == Some(k))
            .filter_map(|iv| {
                let step = iv.step.checked_sub(offset)?;
                (step < max_len).then_some(Intervention {
                    step,
                    source: iv.source - sentence.start,
                })
            })
            .collect();
        DecodeOptions {
            force_target: self.forced[k].clone(),
            target_prefix: self.prefix[k].clone(),
            interventions,
            ..opts.clone()
        }
    }
}

impl Translator {
    /// The tokenised sentences of `text` (one when `segmentation` is [`Segmentation::Whole`]
    /// or the text has one sentence). Sentences the tokenizer sees nothing in are dropped.
    pub fn text_source(&self, text: &str, segmentation: Segmentation) -> Result<TextSource> {
        let parts: Vec<&str> = match segmentation {
            Segmentation::Whole => vec![text],
            Segmentation::Sentences => {
                let found = segment::sentences(text);
                if found.len() <= 1 {
                    vec![text]
                } else {
                    found.iter().map(|s| s.text(text)).collect()
                }
            }
        };
        let mut sentences = Vec::with_capacity(parts.len());
        let mut start = 0;
        for part in parts {
            match self.source(part) {
                Ok((ids, tokens)) => {
                    let n = ids.len();
                    sentences.push(SourceSentence {
                        text: part.trim().to_string(),
                        ids,
                        tokens,
                        start,
                    });
                    start += n;
                }
                Err(Error::EmptyInput) => {}
                Err(e) => return Err(e),
            }
        }
        if sentences.is_empty() {
            return Err(Error::EmptyInput);
        }
        Ok(TextSource { sentences })
    }

    /// Checks options against a tokenised input before decoding (so a server can reject a
    /// bad request before it streams anything).
    pub fn check_text(&self, src: &TextSource, opts: &DecodeOptions) -> Result<()> {
        if let [one] = src.sentences.as_slice() {
            return self.check_options(one.ids.len(), opts);
        }
        // Whole-output steps: a sentence's length is known only once it is decoded.
        check_interventions(&opts.interventions, src.len(), None)?;
        let plan = SentencePlan::new(opts, src.sentences.len())?;
        for (k, s) in src.sentences.iter().enumerate() {
            // Interventions are placed once the offsets are known (a limit of 0 leaves them
            // out here); the rest of each sentence's options are checked now.
            self.check_options(s.ids.len(), &plan.options(opts, src, k, 0, 0))?;
        }
        Ok(())
    }

    /// Decodes every sentence of `src` in order; `on_step` sees each step in the whole
    /// input's coordinates and may stop decoding by returning `ControlFlow::Break`. Call
    /// [`Self::check_text`] first to reject bad options before any step is reported.
    pub fn translate_text(
        &self,
        src: &TextSource,
        opts: &DecodeOptions,
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        if let [one] = src.sentences.as_slice() {
            let mut t = self.translate_source(&one.ids, one.tokens.clone(), opts, on_step)?;
            if let Some(span) = t.sentences.first_mut() {
                span.text = one.text.clone();
            }
            return Ok(t);
        }
        // What can be checked up front (check_text does all of it, before anything streams);
        // each sentence's own options are checked again as it is decoded.
        check_interventions(&opts.interventions, src.len(), None)?;
        let plan = SentencePlan::new(opts, src.sentences.len())?;
        let total = src.len();
        let mut out = Translation {
            source_tokens: src.tokens(),
            target_tokens: Vec::new(),
            translation: String::new(),
            attention: Vec::new(),
            steps: Vec::new(),
            log_prob: 0.0,
            mode: opts.attention.unwrap_or_else(|| self.default_mode()),
            encoder_attention: None,
            hypotheses: Vec::new(),
            stopped: false,
            sentences: Vec::new(),
        };
        let mut encoder: Option<Vec<Vec<Vec<Vec<f32>>>>> = None;
        let mut per_sentence_hyps: Vec<Vec<Hypothesis>> = Vec::new();
        let mut translations = Vec::new();
        for (k, s) in src.sentences.iter().enumerate() {
            let offset = out.steps.len();
            let mut local = plan.options(opts, src, k, offset, 0);
            let (_, _, max_len) = self.plan(s.ids.len(), &local)?;
            local = plan.options(opts, src, k, offset, max_len);
            let place = Placement {
                sentence: k,
                source_start: s.start,
                step_offset: offset,
                total,
            };
            let mut stopped_here = false;
            let t = self.translate_source(&s.ids, s.tokens.clone(), &local, |step| {
                let global = place.step(step);
                let flow = on_step(&global);
                if flow.is_break() {
                    stopped_here = true;
                }
                flow
            })?;
            if let Some(enc) = &t.encoder_attention {
                place.encoder(enc, &mut encoder);
            }
            let steps: Vec<DecodeStep> = t.steps.iter().map(|st| place.step(st)).collect();
            out.sentences.push(SentenceSpan {
                text: s.text.clone(),
                source: s.start..s.start + s.ids.len(),
                target: offset..offset + steps.len(),
                translation: t.translation.clone(),
            });
            out.log_prob += t.log_prob;
            out.mode = t.mode;
            out.target_tokens.extend(t.target_tokens.iter().cloned());
            out.attention
                .extend(steps.iter().map(|st| st.attention.clone()));
            out.steps.extend(steps);
            translations.push(t.translation.clone());
            if !t.hypotheses.is_empty() {
                per_sentence_hyps.push(
                    t.hypotheses
                        .iter()
                        .map(|h| Hypothesis {
                            steps: h
                                .steps
                                .iter()
                                .map(|st| {
                                    Placement {
                                        step_offset: 0,
                                        ..place
                                    }
                                    .step(st)
                                })
                                .collect(),
                            ..h.clone()
                        })
                        .collect(),
                );
            }
            if t.stopped || stopped_here {
                out.stopped = true;
                break;
            }
        }
        out.translation = join_sentences(&translations);
        out.encoder_attention = encoder;
        out.hypotheses = combine_hypotheses(&per_sentence_hyps);
        Ok(out)
    }

    /// Greedy translations of many texts with the model's own attention, each split into
    /// sentences first (as [`Self::translate_text`] does), decoded together in batches of
    /// `batch`. Empty lines translate to empty strings.
    pub fn translate_batch_text(
        &self,
        texts: &[String],
        batch: usize,
        segmentation: Segmentation,
    ) -> Result<Vec<String>> {
        if segmentation == Segmentation::Whole {
            return self.translate_batch(texts, batch);
        }
        let mut flat = Vec::new();
        let mut counts = Vec::with_capacity(texts.len());
        for t in texts {
            let found = segment::sentences(t);
            if found.len() <= 1 {
                flat.push(t.clone());
                counts.push(1);
            } else {
                counts.push(found.len());
                flat.extend(found.iter().map(|s| s.text(t).to_string()));
            }
        }
        let done = self.translate_batch(&flat, batch)?;
        let mut it = done.into_iter();
        Ok(counts
            .into_iter()
            .map(|n| join_sentences(&it.by_ref().take(n).collect::<Vec<_>>()))
            .collect())
    }
}

/// Sentence translations joined by a space, empty ones skipped.
fn join_sentences(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[layer][head][position]` decoder self-attention of a step placed after `offset` earlier
/// output positions (of earlier sentences), which get zero.
fn shift_self_attention(rows: &[Vec<Vec<f32>>], offset: usize) -> Vec<Vec<Vec<f32>>> {
    rows.iter()
        .map(|layer| {
            layer
                .iter()
                .map(|r| {
                    let mut row = vec![0.0; offset];
                    row.extend_from_slice(r);
                    row
                })
                .collect()
        })
        .collect()
}

/// Where one sentence's steps go in the whole translation.
#[derive(Clone, Copy)]
struct Placement {
    sentence: usize,
    source_start: usize,
    step_offset: usize,
    /// Source positions of the whole input.
    total: usize,
}

impl Placement {
    /// A row over one sentence's source positions, placed in a row over all of them.
    fn row(&self, local: &[f32]) -> Vec<f32> {
        let mut row = vec![0.0; self.total];
        row[self.source_start..self.source_start + local.len()].copy_from_slice(local);
        row
    }

    /// A sentence's step in the whole translation's coordinates.
    fn step(&self, s: &DecodeStep) -> DecodeStep {
        let heads = s.heads.as_ref().map(|h| StepHeads {
            cross: h
                .cross
                .iter()
                .map(|layer| layer.iter().map(|r| self.row(r)).collect())
                .collect(),
            self_attention: shift_self_attention(&h.self_attention, self.step_offset),
        });
        DecodeStep {
            index: s.index + self.step_offset,
            attention: self.row(&s.attention),
            heads,
            sentence: self.sentence,
            scores: s.scores.as_ref().map(|sc| StepScores {
                first: sc.first + self.source_start,
                values: sc.values.clone(),
            }),
            ..s.clone()
        }
    }

    /// Adds a sentence's `[layer][head][query][key]` encoder self-attention to the
    /// block-diagonal matrix of the whole input.
    fn encoder(&self, local: &[Vec<Vec<Vec<f32>>>], whole: &mut Option<Vec<Vec<Vec<Vec<f32>>>>>) {
        let w = whole.get_or_insert_with(|| {
            local
                .iter()
                .map(|layer| vec![vec![vec![0.0; self.total]; self.total]; layer.len()])
                .collect()
        });
        for (wl, ll) in w.iter_mut().zip(local) {
            for (wh, lh) in wl.iter_mut().zip(ll) {
                for (q, row) in lh.iter().enumerate() {
                    let target = &mut wh[self.source_start + q];
                    target[self.source_start..self.source_start + row.len()].copy_from_slice(row);
                }
            }
        }
    }
}

/// The i-th combined hypothesis joins every sentence's i-th (or its last).
fn combine_hypotheses(per_sentence: &[Vec<Hypothesis>]) -> Vec<Hypothesis> {
    let width = per_sentence.iter().map(Vec::len).max().unwrap_or(0);
    (0..width)
        .map(|rank| {
            let mut steps = Vec::new();
            let (mut log_prob, mut texts) = (0.0, Vec::new());
            for hyps in per_sentence {
                let Some(h) = hyps.get(rank).or_else(|| hyps.last()) else {
                    continue;
                };
                let offset = steps.len();
                steps.extend(h.steps.iter().map(|s| DecodeStep {
                    index: s.index + offset,
                    heads: s.heads.as_ref().map(|hd| StepHeads {
                        cross: hd.cross.clone(),
                        self_attention: shift_self_attention(&hd.self_attention, offset),
                    }),
                    ..s.clone()
                }));
                log_prob += h.log_prob;
                texts.push(h.translation.clone());
            }
            Hypothesis {
                translation: join_sentences(&texts),
                score: log_prob / steps.len().max(1) as f32,
                log_prob,
                steps,
            }
        })
        .collect()
}
