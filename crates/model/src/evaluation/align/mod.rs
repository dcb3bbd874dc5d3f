//! Word alignments read off attention (or attributions) and scored against gold alignments.
//!
//! A model forced-decodes a gold target sentence given its source ([`forced_matrices`], the
//! gold words first written as ordinary text by [`surface`]), producing one row per target
//! piece over the source pieces for every layer and head ([`PieceMatrices`], which also
//! weighs them by the norms of what they mix, shifts them by a step, or hands out an
//! attribution: an [`AlignSource`]). [`piece_owners`] and [`word_matrix`] turn a piece-level
//! matrix into a word-level one (sum over a source word's pieces, mean over a target word's
//! pieces, the `</s>` pieces dropped). [`directions`] extracts the two directional
//! alignments from it ([`Extraction`]: argmax, a weight threshold, or argmax under a
//! distortion prior), and [`symmetrize`] combines them ([`Symmetrization`]: either direction
//! alone, intersection, union, grow-diag or grow-diag-final); an [`AlignMethod`] is one such
//! choice, with final punctuation paired or not. [`GoldSet`] reads the HLT-NAACL 2003 Hansards
//! test and trial sets or the RWTH de-en set, [`AlignmentCounts`] scores a corpus of
//! alignments with precision, recall and the alignment error rate (AER) of Och & Ney (2003),
//! and [`evaluate`] scores every method, choosing on the trial sentences. [`align_translation`]
//! applies a chosen method to a translation for the explorer.
//!
//! Links are `(source word, target word)` pairs, 0-based, in a [`Links`] set. A word-level
//! matrix is indexed `m[target][source]` (one row per target word), the orientation of the
//! attention rows a decoder produces.

use std::collections::BTreeSet;

mod evaluate;
mod extract;
mod gold;
mod live;
mod methods;
#[cfg(test)]
mod methods_tests;
mod score;
mod surface;
mod symmetrize;
#[cfg(test)]
mod tests;

pub use evaluate::*;
pub use extract::*;
pub use gold::*;
pub use live::*;
pub use methods::*;
pub use score::*;
pub use surface::*;
pub use symmetrize::*;

/// A set of alignment links `(source word, target word)`, both 0-based.
pub type Links = BTreeSet<(usize, usize)>;

/// [`directions`] then [`symmetrize`]: the alignment of one word-level matrix
/// `m[target][source]`.
pub fn align(m: &[Vec<f32>], extraction: Extraction, how: Symmetrization) -> Links {
    symmetrize(&directions(m, extraction), how)
}
