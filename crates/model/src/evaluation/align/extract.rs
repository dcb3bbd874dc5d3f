//! From attention to directional alignments: pieces merged into words ([`piece_owners`],
//! [`word_matrix`]), each word's best partner in each direction ([`directions`]), and the
//! diagonal baselines.

use super::Links;
use crate::{Error, Result};

/// Maps each piece of a sentence to the word it belongs to, given how many pieces each word
/// was encoded into (words encoded one by one and the pieces concatenated, in order).
///
/// With `eos` true one more entry, `None`, is appended for the end-of-sentence piece `</s>`
/// that ends both the encoder input and the forced-decoded target; it belongs to no word, and
/// [`word_matrix`] drops it. A word with 0 pieces owns no piece.
///
/// `piece_owners(&[2, 1], true)` is `[Some(0), Some(0), Some(1), None]`.
pub fn piece_owners(pieces_per_word: &[usize], eos: bool) -> Vec<Option<usize>> {
    let mut owners: Vec<Option<usize>> = pieces_per_word
        .iter()
        .enumerate()
        .flat_map(|(word, &n)| std::iter::repeat_n(Some(word), n))
        .collect();
    if eos {
        owners.push(None);
    }
    owners
}

/// Merges a piece-level attention matrix into a word-level one.
///
/// `m[t][s] = mean over target pieces p of t ( sum over source pieces q of s ( piece_attn[p][q] ) )`:
/// the attention a source word receives is the total over its pieces, and a target word's
/// row is the average of its pieces' rows. Pieces whose owner is `None` (`</s>`) are dropped
/// on both sides, so word rows need not sum to 1. A target word with no pieces gets a row of
/// zeros, a source word with no pieces a column of zeros.
///
/// # Shapes
///
/// `piece_attn` has one row per target piece (`tgt_owner.len()` rows, the decoder steps),
/// each over the source pieces (`src_owner.len()` columns). The result has `n_tgt` rows, each
/// over `n_src` source words: `result[target word][source word]`.
///
/// # Errors
///
/// [`Error::Invalid`] when the shapes disagree: a row count other than `tgt_owner.len()`, a
/// row length other than `src_owner.len()`, or an owner `>= n_src` / `>= n_tgt`.
pub fn word_matrix(
    piece_attn: &[Vec<f32>],
    src_owner: &[Option<usize>],
    tgt_owner: &[Option<usize>],
    n_src: usize,
    n_tgt: usize,
) -> Result<Vec<Vec<f32>>> {
    if piece_attn.len() != tgt_owner.len() {
        return Err(Error::Invalid(format!(
            "the attention matrix has {} rows but there are {} target pieces",
            piece_attn.len(),
            tgt_owner.len()
        )));
    }
    if let Some(&Some(w)) = src_owner.iter().find(|o| o.is_some_and(|w| w >= n_src)) {
        return Err(Error::Invalid(format!(
            "a source piece belongs to word {w} but there are {n_src} source words"
        )));
    }
    let mut sums = vec![vec![0.0f32; n_src]; n_tgt];
    let mut counts = vec![0usize; n_tgt];
    for (p, (row, owner)) in piece_attn.iter().zip(tgt_owner).enumerate() {
        if row.len() != src_owner.len() {
            return Err(Error::Invalid(format!(
                "attention row {p} has {} entries but there are {} source pieces",
                row.len(),
                src_owner.len()
            )));
        }
        let Some(t) = *owner else { continue };
        let Some(out) = sums.get_mut(t) else {
            return Err(Error::Invalid(format!(
                "a target piece belongs to word {t} but there are {n_tgt} target words"
            )));
        };
        for (&a, src) in row.iter().zip(src_owner) {
            if let Some(cell) = src.and_then(|s| out.get_mut(s)) {
                *cell += a;
            }
        }
        counts[t] += 1;
    }
    for (row, &n) in sums.iter_mut().zip(&counts) {
        if n > 1 {
            row.iter_mut().for_each(|x| *x /= n as f32);
        }
    }
    Ok(sums)
}

/// How the directional alignments are read off a word-level matrix `m[target][source]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extraction {
    /// Target→source: each target word `t` links to `argmax_s m[t][s]`. Source→target: each
    /// source word `s` links to `argmax_t m[t][s]` (the target word whose row gives it the
    /// most weight). Ties go to the lowest index; an all-zero row or column (a word with no
    /// pieces) gives no link.
    Argmax,
    /// Target→source: `(s, t)` for every cell with `m[t][s] / Σ_s' m[t][s'] >= τ`
    /// (row-normalised). Source→target: every cell with `m[t][s] / Σ_t' m[t'][s] >= τ`
    /// (column-normalised). A row or column summing to 0 gives no link. A word may get
    /// several links or none; for τ > 0.5 at most one per row (column).
    Threshold(f32),
    /// [`Extraction::Argmax`] after multiplying each cell by a distortion prior,
    /// `m[t][s] · (1 − κ · (p_s − p_t)²)` with `p_s = (s + ½)/n_src` and `p_t = (t + ½)/n_tgt`
    /// the words' relative positions: SimAlign's distortion correction (Jalili Sabet et al.
    /// 2020), which prefers links near the diagonal when the weights are close.
    Distortion(f32),
}

impl Extraction {
    /// The name in tables and method specs: `argmax`, `threshold=0.3`, `distortion=0.5`.
    pub fn spec(self) -> String {
        match self {
            Extraction::Argmax => "argmax".into(),
            Extraction::Threshold(t) => format!("threshold={t}"),
            Extraction::Distortion(k) => format!("distortion={k}"),
        }
    }

    /// The name people read: `argmax`, `weight ≥ 0.3`, `argmax, distortion prior 0.5`.
    pub fn label(self) -> String {
        match self {
            Extraction::Argmax => "argmax".into(),
            Extraction::Threshold(t) => format!("weight ≥ {t}"),
            Extraction::Distortion(k) => format!("argmax with distortion prior {k}"),
        }
    }

    /// Reads [`Self::spec`] back.
    pub fn from_spec(s: &str) -> Result<Self> {
        let number = |v: &str| {
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| Error::Invalid(format!("`{v}` in `{s}` is not a number")))
        };
        match s.split_once('=') {
            None if s == "argmax" => Ok(Extraction::Argmax),
            Some(("threshold", v)) => Ok(Extraction::Threshold(number(v)?)),
            Some(("distortion", v)) => Ok(Extraction::Distortion(number(v)?)),
            _ => Err(Error::Invalid(format!(
                "unknown extraction `{s}`: use argmax, threshold=τ or distortion=κ"
            ))),
        }
    }
}

/// `m` with each cell multiplied by the distortion prior of [`Extraction::Distortion`].
fn with_distortion(m: &[Vec<f32>], kappa: f32) -> Vec<Vec<f32>> {
    let n_tgt = m.len().max(1) as f32;
    let n_src = m.iter().map(Vec::len).max().unwrap_or(0).max(1) as f32;
    m.iter()
        .enumerate()
        .map(|(t, row)| {
            let pt = (t as f32 + 0.5) / n_tgt;
            row.iter()
                .enumerate()
                .map(|(s, &v)| {
                    let d = (s as f32 + 0.5) / n_src - pt;
                    v * (1.0 - kappa * d * d)
                })
                .collect()
        })
        .collect()
}

/// The two directional alignments of one sentence pair, as `(source, target)` links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directions {
    /// Source→target links: chosen per source word, over a column of the matrix.
    pub s2t: Links,
    /// Target→source links: chosen per target word, over a row of the matrix (the decoder's
    /// own direction: one attention row per emitted word).
    pub t2s: Links,
}

fn argmax(values: impl Iterator<Item = f32>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        if v > 0.0 && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Extracts both directional alignments from a word-level matrix `m[target][source]` (see
/// [`word_matrix`] for the orientation). Rows shorter than the longest are read as padded with
/// zeros.
pub fn directions(m: &[Vec<f32>], extraction: Extraction) -> Directions {
    let n_src = m.iter().map(Vec::len).max().unwrap_or(0);
    let column = |s: usize| m.iter().map(move |row| row.get(s).copied().unwrap_or(0.0));
    let mut out = Directions::default();
    match extraction {
        Extraction::Distortion(kappa) => {
            return directions(&with_distortion(m, kappa), Extraction::Argmax);
        }
        Extraction::Argmax => {
            for (t, row) in m.iter().enumerate() {
                if let Some(s) = argmax(row.iter().copied()) {
                    out.t2s.insert((s, t));
                }
            }
            for s in 0..n_src {
                if let Some(t) = argmax(column(s)) {
                    out.s2t.insert((s, t));
                }
            }
        }
        Extraction::Threshold(tau) => {
            for (t, row) in m.iter().enumerate() {
                let total: f32 = row.iter().sum();
                if total > 0.0 {
                    for (s, &v) in row.iter().enumerate() {
                        if v / total >= tau {
                            out.t2s.insert((s, t));
                        }
                    }
                }
            }
            for s in 0..n_src {
                let total: f32 = column(s).sum();
                if total > 0.0 {
                    for (t, v) in column(s).enumerate() {
                        if v / total >= tau {
                            out.s2t.insert((s, t));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Baseline: source word `i` linked to target word `i`, for every `i` both sentences have.
pub fn diagonal(n_src: usize, n_tgt: usize) -> Links {
    (0..n_src.min(n_tgt)).map(|i| (i, i)).collect()
}

/// Baseline: each target word `t` linked to the source word at the same relative position,
/// `floor((t + 0.5) · n_src / n_tgt)` (the diagonal stretched to the sentence lengths).
pub fn scaled_diagonal(n_src: usize, n_tgt: usize) -> Links {
    if n_src == 0 {
        return Links::new();
    }
    (0..n_tgt)
        .map(|t| (((2 * t + 1) * n_src / (2 * n_tgt)).min(n_src - 1), t))
        .collect()
}
