//! Attention translation models for attnscope, with no web dependencies.
//!
//! [`Vocab`] wraps a Hugging Face `tokenizers` BPE model (SentencePiece-style `▁` pieces).
//! [`networks::rnn::Seq2Seq`] is a candle GRU encoder-decoder with additive (Bahdanau) or
//! multiplicative (Luong) attention, [`networks::transformer::Transformer`] a small
//! encoder-decoder Transformer; [`networks::Network`] puts both behind one interface, and
//! their decoder steps *return* the attention they used. [`Translator`] loads a model
//! directory (`config.json`, `tokenizer.*.json`, `model.safetensors`) and decodes (greedy,
//! beam search, forced, with interventions; soft, hard, sampled, sparsemax, uniform or
//! shuffled attention, see [`networks::attention`]), calling back once per step with the
//! emitted token and its attention. [`training::train`] trains such a model from a TSV of
//! sentence pairs with resumable checkpoints, and [`evaluation::metrics`] scores
//! translations with BLEU and chrF as sacrebleu computes them.

pub mod config;
pub mod decoding;
mod error;
pub mod evaluation;
pub mod explain;
pub mod files;
pub mod fixtures;
pub mod import;
pub mod kernels;
mod names;
pub mod networks;
pub mod report;
pub mod training;
pub mod vocab;

pub use config::ModelConfig;
pub use decoding::decode::Translation;
pub use decoding::plan::{DecodeOptions, DecodePlan};
pub use decoding::source::{Segmentation, TextSource};
pub use decoding::step::{Candidate, DecodeStep, Intervention, SentenceSpan, StepScores};
pub use decoding::together::{BatchDecoder, BatchKey};
pub use decoding::translator::Translator;
pub use error::{Error, Result};
pub use explain::{Attribution, ExplainOptions, Method};
pub use networks::attention::Mode;
pub use vocab::Vocab;
