//! Translating a whole input, one sentence at a time, shown as one matrix.
//!
//! [`Translator::decode`] decodes the sentences of a checked [`DecodePlan`] in order and
//! reports every step in the coordinates of the whole input: step indices run on across
//! sentences, attention rows cover every source position (zero outside the step's own
//! sentence, so the matrix is block diagonal) and each step names its sentence. An input of
//! one sentence decodes exactly as that sentence alone. Beam search keeps each sentence's
//! ranked hypotheses; the i-th combined hypothesis joins the i-th of every sentence (or its
//! last, when it has fewer). [`Translator::translate`] is the short way for one text.

use std::ops::ControlFlow;

use crate::Result;
use crate::decoding::decode::Translation;
use crate::decoding::plan::{DecodeOptions, DecodePlan};
use crate::decoding::segment;
use crate::decoding::source::Segmentation;
use crate::decoding::step::{DecodeStep, Hypothesis, SentenceSpan, StepHeads, StepScores};
use crate::decoding::translator::Translator;

impl Translator {
    /// Plans and decodes `text` as one sentence (no segmentation); `on_step` sees every
    /// step as it is made (with beam search, the best hypothesis's steps once the search
    /// ends) and may stop decoding by returning `ControlFlow::Break`.
    pub fn translate(
        &self,
        text: &str,
        opts: &DecodeOptions,
        on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        let plan = self.plan(self.text_source(text, Segmentation::Whole)?, opts.clone())?;
        self.decode(&plan, on_step)
    }

    /// Decodes every sentence of `plan` in order; `on_step` sees each step in the whole
    /// input's coordinates and may stop decoding by returning `ControlFlow::Break`.
    pub fn decode(
        &self,
        plan: &DecodePlan,
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        let src = plan.source();
        if let [_] = src.sentences.as_slice() {
            return self.decode_sentence(plan, 0, &plan.interventions(0, 0), on_step);
        }
        let mut parts = Vec::with_capacity(src.sentences.len());
        let mut offset = 0;
        for k in 0..src.sentences.len() {
            let place = Placement::of(plan, k, offset);
            let mut stopped_here = false;
            let mut t = self.decode_sentence(plan, k, &plan.interventions(k, offset), |step| {
                let flow = on_step(&place.step(step));
                stopped_here |= flow.is_break();
                flow
            })?;
            t.stopped |= stopped_here;
            offset += t.steps.len();
            let stopped = t.stopped;
            parts.push(t);
            if stopped {
                break;
            }
        }
        Ok(join_parts(plan, parts))
    }

    /// Greedy translations of many texts with the model's own attention, each split into
    /// sentences first (as [`Self::decode`] does), decoded together in batches of
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

/// The translation of a whole input of several sentences from its sentences' own
/// translations (the first `parts.len()`, in order; fewer than the input has when decoding
/// stopped): steps, rows and spans placed in the whole input's coordinates.
pub(crate) fn join_parts(plan: &DecodePlan, parts: Vec<Translation>) -> Translation {
    let src = plan.source();
    let mut out = Translation {
        source_tokens: src.tokens(),
        target_tokens: Vec::new(),
        translation: String::new(),
        steps: Vec::new(),
        log_prob: 0.0,
        mode: plan.mode(),
        encoder_attention: None,
        hypotheses: Vec::new(),
        stopped: false,
        sentences: Vec::new(),
    };
    let mut encoder: Option<Vec<Vec<Vec<Vec<f32>>>>> = None;
    let mut per_sentence_hyps: Vec<Vec<Hypothesis>> = Vec::new();
    let mut translations = Vec::new();
    for (k, t) in parts.into_iter().enumerate() {
        let s = &src.sentences[k];
        let offset = out.steps.len();
        let place = Placement::of(plan, k, offset);
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
        out.stopped |= t.stopped;
    }
    out.translation = join_sentences(&translations);
    out.encoder_attention = encoder;
    out.hypotheses = combine_hypotheses(&per_sentence_hyps);
    out
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
pub(crate) struct Placement {
    sentence: usize,
    source_start: usize,
    step_offset: usize,
    /// Source positions of the whole input.
    total: usize,
}

impl Placement {
    /// Sentence `k` of `plan`, its output starting at step `step_offset`.
    pub(crate) fn of(plan: &DecodePlan, k: usize, step_offset: usize) -> Self {
        let src = plan.source();
        Placement {
            sentence: k,
            source_start: src.sentences[k].start,
            step_offset,
            total: src.len(),
        }
    }

    /// A row over one sentence's source positions, placed in a row over all of them.
    fn row(&self, local: &[f32]) -> Vec<f32> {
        let mut row = vec![0.0; self.total];
        row[self.source_start..self.source_start + local.len()].copy_from_slice(local);
        row
    }

    /// A sentence's step in the whole translation's coordinates.
    pub(crate) fn step(&self, s: &DecodeStep) -> DecodeStep {
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
