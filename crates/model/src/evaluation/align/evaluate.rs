//! Every alignment method of a model against a gold set at once: each gold pair is
//! forced-decoded once ([`forced_matrices`]), every [`AlignMethod`] reads its links off the
//! result, and [`evaluate`] scores them on the trial and the test sentences. A model's method
//! is the one with the lowest trial AER ([`AlignEvaluation::best`]); its test AER is what it
//! reports.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::ControlFlow;

use super::extract::{Extraction, piece_owners, scaled_diagonal, word_matrix};
use super::gold::GoldSet;
use super::methods::{AlignMethod, AlignSource, Directed, PieceMatrices};
use super::score::{AlignmentCounts, AlignmentScores};
use super::surface::{Surface, expand, surface};
use super::symmetrize::Symmetrization;
use crate::config::EOS_ID;
use crate::explain::{ExplainOptions, Method};
use crate::report::AlignmentResult;
use crate::vocab::Vocab;
use crate::{DecodeOptions, Error, Result, TextSource, Translator};

/// The distortion strengths of [`Extraction::Distortion`] tried (SimAlign uses 0.5).
pub const DISTORTION_KAPPAS: [f32; 2] = [0.5, 1.0];
/// The weight thresholds of [`Extraction::Threshold`] tried by default.
pub const THRESHOLDS: [f32; 4] = [0.1, 0.2, 0.3, 0.4];

/// Every method [`evaluate`] scores for a model of `layers` layers and `heads` heads: each
/// attention source ([`AlignSource::attention_sources`]), each attribution of
/// `attributions` and its agreement with the attention, read by argmax, by each weight threshold of `thresholds` and by argmax
/// with each distortion prior of [`DISTORTION_KAPPAS`], merged every way, with and without
/// pairing final punctuation.
pub fn methods(
    layers: usize,
    heads: usize,
    attributions: &[Method],
    thresholds: &[f32],
) -> Vec<AlignMethod> {
    let sources = AlignSource::attention_sources(layers, heads)
        .into_iter()
        .chain(attributions.iter().map(|&m| AlignSource::Attribution(m)))
        .chain(attributions.iter().map(|&m| AlignSource::Agreement(m)));
    let extractions: Vec<Extraction> = std::iter::once(Extraction::Argmax)
        .chain(thresholds.iter().map(|&t| Extraction::Threshold(t)))
        .chain(DISTORTION_KAPPAS.map(Extraction::Distortion))
        .collect();
    let mut out = Vec::new();
    for source in sources {
        for &extraction in &extractions {
            for final_punctuation in [false, true] {
                for symmetrization in Symmetrization::ALL {
                    out.push(AlignMethod {
                        source,
                        extraction,
                        symmetrization,
                        final_punctuation,
                    });
                }
            }
        }
    }
    out
}

/// Pieces of each word, encoded one word at a time (the pre-tokenizer splits on spaces
/// first, so a whole sentence splits the same way), and how many each word has.
pub fn word_pieces(v: &Vocab, words: &[String]) -> Result<(Vec<u32>, Vec<usize>)> {
    let (mut ids, mut counts) = (Vec::new(), Vec::new());
    for w in words {
        let p = v.encode(w)?;
        counts.push(p.len());
        ids.extend(p);
    }
    Ok((ids, counts))
}

/// One gold pair forced-decoded: the piece-level matrices and which word owns each piece.
pub struct ForcedPair {
    pub matrices: PieceMatrices,
    pub src_owner: Vec<Option<usize>>,
    pub tgt_owner: Vec<Option<usize>>,
}

impl ForcedPair {
    /// The word-level matrix of `source` (see [`word_matrix`]), `None` when this decoding
    /// does not offer the source.
    pub fn words(
        &self,
        source: AlignSource,
        n_src: usize,
        n_tgt: usize,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(rows) = self.matrices.matrix(source) else {
            return Ok(None);
        };
        word_matrix(&rows, &self.src_owner, &self.tgt_owner, n_src, n_tgt).map(Some)
    }
}

/// Forced-decodes the words `target` given the words `source` (of the gold pair `id`), with
/// the attention values (for the norm-weighted sources) and the attributions `explain` asks
/// for.
///
/// # Errors
/// [`Error::Invalid`] when the target splits into other pieces word by word than as a whole.
pub fn forced_matrices(
    t: &Translator,
    source: &[String],
    target: &[String],
    id: &str,
    explain: &ExplainOptions,
) -> Result<ForcedPair> {
    let (mut src_ids, src_counts) = word_pieces(t.source_vocab(), source)?;
    src_ids.push(EOS_ID);
    let src_tokens = src_ids.iter().map(|&i| t.source_vocab().piece(i)).collect();
    let (tgt_ids, tgt_counts) = word_pieces(t.target_vocab(), target)?;
    let opts = DecodeOptions {
        force_target: Some(target.join(" ")),
        ..DecodeOptions::default()
    };
    let values = t.attention_values(&src_ids)?;
    let n_src = src_ids.len();
    let text = TextSource::one(&source.join(" "), src_ids, src_tokens);
    let plan = t.plan(text, opts)?;
    let out = t.decode(&plan, |_| ControlFlow::Continue(()))?;
    let forced: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
    if forced.split_last().map(|(_, rest)| rest) != Some(&tgt_ids[..]) {
        return Err(Error::Invalid(format!(
            "gold sentence {id}: the target splits differently word by word than as a whole"
        )));
    }
    let attributions = t.explain(&plan, &out, explain)?;
    Ok(ForcedPair {
        matrices: PieceMatrices::new(&out.steps, 0..n_src, Some(&values), attributions)?,
        src_owner: piece_owners(&src_counts, true),
        tgt_owner: piece_owners(&tgt_counts, true),
    })
}

/// What [`evaluate`] measures and how.
#[derive(Clone, Debug)]
pub struct AlignOptions {
    /// The weight thresholds of [`Extraction::Threshold`] to try.
    pub thresholds: Vec<f32>,
    /// The attributions to read alignments from, besides the attention.
    pub explain: ExplainOptions,
    /// Show the model the gold sentences as ordinary text ([`surface`]) rather than in the
    /// gold set's tokenisation; the links are mapped back to the gold words either way.
    pub as_written: bool,
}

impl Default for AlignOptions {
    fn default() -> Self {
        AlignOptions {
            thresholds: THRESHOLDS.to_vec(),
            explain: ExplainOptions::default(),
            as_written: true,
        }
    }
}

/// One method's scores on the trial and the test sentences.
#[derive(Clone, Debug)]
pub struct MethodScores {
    pub method: AlignMethod,
    pub trial: AlignmentScores,
    pub test: AlignmentScores,
}

/// Every method of one model against one gold set, best trial AER first.
#[derive(Clone, Debug)]
pub struct AlignEvaluation {
    /// The gold set's name.
    pub gold: &'static str,
    /// Where its trial sentences come from.
    pub trial_note: &'static str,
    /// Layers and heads of the model's attention, for the methods' labels.
    pub layers: usize,
    pub heads: usize,
    pub methods: Vec<MethodScores>,
    /// The length-scaled diagonal ([`scaled_diagonal`]) on the same sentences.
    pub diagonal: MethodScoresBaseline,
}

/// A baseline's scores on the trial and the test sentences.
#[derive(Clone, Debug)]
pub struct MethodScoresBaseline {
    pub trial: AlignmentScores,
    pub test: AlignmentScores,
}

impl AlignEvaluation {
    /// The method the explorer draws: the best read from attention (attributions need extra
    /// passes per request).
    pub fn chosen(&self) -> Option<&MethodScores> {
        self.best(|m| m.source.from_attention())
    }

    /// One method's row for the card and `config.json`.
    pub fn row(&self, m: &MethodScores) -> AlignmentResult {
        AlignmentResult {
            gold: self.gold.into(),
            method: self.label(&m.method),
            spec: m.method.to_string(),
            trial_aer: Some(m.trial.aer),
            aer: m.test.aer,
            precision: m.test.precision,
            recall: m.test.recall,
            sentences: m.test.counts.sentences,
        }
    }

    /// The rows a card shows, best trial AER first: the best method of each family (the
    /// streamed row, each layer's mean, the mean of all layers, a single head, norm-weighted,
    /// shifted, each attribution), then the length-scaled diagonal.
    pub fn card_rows(&self) -> Vec<AlignmentResult> {
        let streamed = AlignSource::streamed(self.layers);
        type Family = Box<dyn Fn(&AlignSource) -> bool>;
        let plain = |s: &AlignSource, l: Option<usize>, h: bool| {
            matches!(*s, AlignSource::Attention { layer, head, norm: false, shift: false }
                if layer == l && head.is_some() == h)
        };
        let mut families: Vec<Family> = vec![Box::new(move |s| *s == streamed)];
        if self.layers > 1 || self.heads > 1 {
            for l in 0..self.layers {
                families.push(Box::new(move |s| plain(s, Some(l), false)));
            }
            families.push(Box::new(move |s| plain(s, None, false)));
            families.push(Box::new(move |s| {
                matches!(
                    s,
                    AlignSource::Attention {
                        head: Some(_),
                        norm: false,
                        shift: false,
                        ..
                    }
                )
            }));
        }
        families.push(Box::new(|s| {
            matches!(
                s,
                AlignSource::Attention {
                    norm: true,
                    shift: false,
                    ..
                }
            )
        }));
        families.push(Box::new(|s| {
            matches!(s, AlignSource::Attention { shift: true, .. })
        }));
        for m in Method::ALL {
            families.push(Box::new(move |s| *s == AlignSource::Attribution(m)));
            families.push(Box::new(move |s| *s == AlignSource::Agreement(m)));
        }
        let mut picked: Vec<&MethodScores> = Vec::new();
        for f in &families {
            if let Some(m) = self.best(|m| f(&m.source))
                && !picked.iter().any(|p| p.method == m.method)
            {
                picked.push(m);
            }
        }
        picked.sort_by(|a, b| a.trial.aer.total_cmp(&b.trial.aer));
        let mut rows: Vec<AlignmentResult> = picked.into_iter().map(|m| self.row(m)).collect();
        rows.push(AlignmentResult {
            gold: self.gold.into(),
            method: "length-scaled diagonal (baseline)".into(),
            spec: String::new(),
            trial_aer: Some(self.diagonal.trial.aer),
            aer: self.diagonal.test.aer,
            precision: self.diagonal.test.precision,
            recall: self.diagonal.test.recall,
            sentences: self.diagonal.test.counts.sentences,
        });
        rows
    }

    /// The method with the lowest trial AER among those `keep` accepts (ties: the one
    /// listed first by [`methods`], i.e. the simpler).
    pub fn best(&self, keep: impl Fn(&AlignMethod) -> bool) -> Option<&MethodScores> {
        self.methods.iter().find(|m| keep(&m.method))
    }

    /// A method's label for this model.
    pub fn label(&self, m: &AlignMethod) -> String {
        m.label(self.layers, self.heads)
    }
}

/// Scores every method of [`methods`] (with the attributions of `explain`) on the trial and
/// test sentences of `set`; `progress(done, total)` after each sentence.
pub fn evaluate(
    t: &Translator,
    set: &GoldSet,
    opts: &AlignOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AlignEvaluation> {
    let (layers, heads) = attention_shape(t);
    let explain = &opts.explain;
    let methods = methods(layers, heads, &explain.methods(), &opts.thresholds);
    let mut trial = vec![AlignmentCounts::default(); methods.len()];
    let mut test = vec![AlignmentCounts::default(); methods.len()];
    let (mut diag_trial, mut diag_test) = (AlignmentCounts::default(), AlignmentCounts::default());
    let total = set.trial.len() + set.sentences.len();
    let sentences = set
        .trial
        .iter()
        .map(|g| (g, true))
        .chain(set.sentences.iter().map(|g| (g, false)));
    for (done, (g, is_trial)) in sentences.enumerate() {
        let (src, tgt) = if opts.as_written {
            (
                surface(&g.source, set.source_lang),
                surface(&g.target, set.target_lang),
            )
        } else {
            (Surface::verbatim(&g.source), Surface::verbatim(&g.target))
        };
        let pair = forced_matrices(t, &src.words, &tgt.words, &g.id, explain)?;
        let (counts, diag) = if is_trial {
            (&mut trial, &mut diag_trial)
        } else {
            (&mut test, &mut diag_test)
        };
        diag.add(&scaled_diagonal(g.source.len(), g.target.len()), g);
        let mut words: HashMap<AlignSource, Option<Vec<Vec<f32>>>> = HashMap::new();
        // `methods` lists the merges of the same directional links one after the other: read
        // those links once per run of them.
        let mut directed: Option<(&AlignMethod, Directed)> = None;
        for (m, c) in methods.iter().zip(counts.iter_mut()) {
            let w = match words.entry(m.source) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    e.insert(pair.words(m.source, src.words.len(), tgt.words.len())?)
                }
            };
            let Some(w) = w else { continue };
            let d = match directed.take() {
                Some((prev, d)) if prev.same_directions(m) => d,
                _ => m.directions(w, &src.words, &tgt.words),
            };
            c.add(&expand(&m.merge(&d), &src, &tgt), g);
            directed = Some((m, d));
        }
        progress(done + 1, total);
    }
    let mut scored: Vec<MethodScores> = methods
        .into_iter()
        .zip(trial.iter().zip(&test))
        .map(|(method, (a, b))| MethodScores {
            method,
            trial: a.scores(),
            test: b.scores(),
        })
        .collect();
    // Stable: equal AERs keep the order of `methods`, simpler first. Without trial
    // sentences the choice can only be made on the test ones, and the note says so.
    let has_trial = !set.trial.is_empty();
    scored.sort_by(|a, b| {
        let key = |m: &MethodScores| if has_trial { m.trial.aer } else { m.test.aer };
        key(a).total_cmp(&key(b))
    });
    Ok(AlignEvaluation {
        gold: set.name,
        trial_note: if has_trial {
            set.trial_note
        } else {
            "the test sentences themselves (this gold set has no trial sentences)"
        },
        layers,
        heads,
        methods: scored,
        diagonal: MethodScoresBaseline {
            trial: diag_trial.scores(),
            test: diag_test.scores(),
        },
    })
}

/// Layers and heads of a model's cross-attention.
pub fn attention_shape(t: &Translator) -> (usize, usize) {
    match &t.config().architecture {
        crate::config::Architecture::Gru(_) => (1, 1),
        crate::config::Architecture::Transformer(c) => (c.layers, c.heads),
    }
}
