//! How good a model is and how its attention behaves: BLEU and chrF as sacrebleu computes
//! them ([`metrics`]), scores by source length, on pasted sentences and on another domain
//! ([`robustness`]), word alignments against human gold and AER ([`align`]), and whether the
//! attention explains the output ([`faithfulness`]). Drives decoding; nothing below it
//! depends on it.

pub mod align;
pub mod faithfulness;
pub mod metrics;
pub mod robustness;

/// A held-out test sentence with every translation the data gives for it.
#[derive(Clone, Debug, PartialEq)]
pub struct TestItem {
    pub src: String,
    /// All translations in file order; BLEU and chrF use the first one.
    pub refs: Vec<String>,
}
