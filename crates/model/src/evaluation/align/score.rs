//! Scoring alignments against gold: precision, recall and the alignment error rate (AER)
//! of Och & Ney (2003), summed over a corpus.

use serde::{Deserialize, Serialize};

use super::Links;
use super::gold::GoldSentence;
use crate::{Error, Result};

/// Link counts summed over a corpus, from which [`AlignmentScores`] are computed (corpus
/// level, as the standard `aer` scripts do: sum the counts over sentences, then divide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlignmentCounts {
    /// Sentence pairs added.
    pub sentences: usize,
    /// `Σ |A|`: hypothesis links.
    pub hyp: usize,
    /// `Σ |S|`: sure gold links.
    pub sure: usize,
    /// `Σ |A ∩ S|`.
    pub hyp_sure: usize,
    /// `Σ |A ∩ P|` (with P ⊇ S).
    pub hyp_possible: usize,
}

impl AlignmentCounts {
    /// Adds one sentence pair: hypothesis links `hyp` against its gold sentence.
    pub fn add(&mut self, hyp: &Links, gold: &GoldSentence) {
        self.add_links(hyp, &gold.sure, &gold.possible);
    }

    /// Adds one sentence pair given its sure and possible links. A sure link counts as
    /// possible even when `possible` lacks it.
    pub fn add_links(&mut self, hyp: &Links, sure: &Links, possible: &Links) {
        self.sentences += 1;
        self.hyp += hyp.len();
        self.sure += sure.len();
        self.hyp_sure += hyp.intersection(sure).count();
        self.hyp_possible += hyp
            .iter()
            .filter(|l| possible.contains(l) || sure.contains(l))
            .count();
    }

    /// Precision, recall and AER of the counts so far.
    pub fn scores(&self) -> AlignmentScores {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        AlignmentScores {
            precision: ratio(self.hyp_possible, self.hyp),
            recall: ratio(self.hyp_sure, self.sure),
            aer: 1.0 - ratio(self.hyp_sure + self.hyp_possible, self.hyp + self.sure),
            counts: *self,
        }
    }
}

/// Corpus-level alignment quality (Och & Ney 2003), each in `[0, 1]`, with A the hypothesis,
/// S the sure and P the possible gold links (S ⊆ P), every `|·|` summed over the corpus:
///
/// - precision = |A ∩ P| / |A|
/// - recall = |A ∩ S| / |S|
/// - AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|) (lower is better)
///
/// A ratio with a zero denominator counts as 0 (so an empty corpus has AER 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlignmentScores {
    pub precision: f64,
    pub recall: f64,
    pub aer: f64,
    /// The counts the scores come from.
    pub counts: AlignmentCounts,
}

/// Scores one hypothesis alignment per gold sentence, in order.
///
/// # Errors
///
/// [`Error::Invalid`] when `hyps` and `gold` differ in length.
pub fn score_corpus(gold: &[GoldSentence], hyps: &[Links]) -> Result<AlignmentScores> {
    if gold.len() != hyps.len() {
        return Err(Error::Invalid(format!(
            "{} alignments for {} gold sentences",
            hyps.len(),
            gold.len()
        )));
    }
    let mut counts = AlignmentCounts::default();
    for (h, g) in hyps.iter().zip(gold) {
        counts.add(h, g);
    }
    Ok(counts.scores())
}
