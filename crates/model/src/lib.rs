//! Attention translation models for attnscope, with no web dependencies.
//!
//! [`Vocab`] wraps a Hugging Face `tokenizers` BPE model (SentencePiece-style `▁` pieces).
//! [`rnn::Seq2Seq`] is a candle GRU encoder-decoder with additive (Bahdanau) or
//! multiplicative (Luong) attention, [`transformer::Transformer`] a small encoder-decoder
//! Transformer; [`network::Network`] puts both behind one interface, and their decoder steps
//! *return* the attention they used. [`Translator`] loads a model directory (`config.json`,
//! `tokenizer.*.json`, `model.safetensors`) and decodes (greedy, beam search, forced,
//! with interventions; soft, hard, sampled, sparsemax, uniform or shuffled attention, see
//! [`attention`]),
//! calling back once per step with the emitted token and its attention. [`train`] trains such
//! a model from a TSV of sentence pairs with resumable checkpoints, and [`metrics`] scores
//! translations with BLEU and chrF as sacrebleu computes them.

pub mod adam;
pub mod align;
pub mod alloc;
pub mod attention;
mod batch;
mod beam;
pub mod card;
pub mod config;
pub mod data;
pub mod decode;
pub mod dropout;
mod error;
pub mod explain;
pub mod faithfulness;
pub mod files;
pub mod fixtures;
pub(crate) mod fused;
pub(crate) mod fused_loss;
pub(crate) mod fused_rnn;
pub(crate) mod fused_seq;
pub mod gru;
pub mod init;
pub mod metrics;
mod names;
pub mod network;
pub mod ops;
pub mod rnn;
pub mod robustness;
pub mod run_log;
pub mod segment;
pub mod sentences;
pub mod train;
pub mod transformer;
pub mod vocab;

pub use attention::Mode;
pub use config::ModelConfig;
pub use decode::{DecodeOptions, DecodeStep, Intervention, Translation, Translator};
pub use error::{Error, Result};
pub use explain::{Attribution, ExplainOptions, Method};
pub use sentences::{Segmentation, SentenceSpan, TextSource};
pub use vocab::Vocab;
