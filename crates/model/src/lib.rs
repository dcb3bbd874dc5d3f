//! Attention translation models for attnscope, with no web dependencies.
//!
//! [`Vocab`] wraps a Hugging Face `tokenizers` BPE model (SentencePiece-style `▁` pieces).
//! [`bahdanau::Seq2Seq`] is a candle GRU encoder-decoder with additive attention whose
//! decoder step *returns* the attention it used. [`Translator`] loads a model directory
//! (`config.json`, `tokenizer.*.json`, `model.safetensors`) and decodes greedily, calling
//! back once per step with the emitted token and its attention row. [`train`] trains such
//! a model from a TSV of sentence pairs with resumable checkpoints, and [`metrics`] scores
//! translations with BLEU and chrF as sacrebleu computes them.

pub mod adam;
pub mod bahdanau;
pub mod card;
pub mod config;
pub mod data;
pub mod decode;
mod error;
pub mod fixtures;
pub mod gru;
pub mod init;
pub mod metrics;
pub mod train;
pub mod vocab;

pub use config::ModelConfig;
pub use decode::{DecodeStep, Translation, Translator};
pub use error::{Error, Result};
pub use vocab::Vocab;
