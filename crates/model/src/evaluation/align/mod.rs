//! Word alignments read off attention and scored against gold alignments.
//!
//! A model forced-decodes a gold target sentence given its source, producing one attention
//! row per target piece over the source pieces. [`piece_owners`] and [`word_matrix`] turn that
//! piece-level matrix into a word-level one (sum over a source word's pieces, mean over a
//! target word's pieces, the `</s>` pieces dropped). [`directions`] extracts the two
//! directional alignments from it ([`Extraction::Argmax`] or [`Extraction::Threshold`]), and
//! [`symmetrize`] combines them ([`Symmetrization`]: either direction alone, intersection,
//! union or grow-diag-final). [`load_gold`] reads the HLT-NAACL 2003 Hansards gold
//! alignments, and [`AlignmentCounts`] scores a corpus of alignments against them with
//! precision, recall and the alignment error rate (AER) of Och & Ney (2003).
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
