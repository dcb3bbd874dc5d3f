//! The serialisable description of a model (`config.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Architecture and vocabulary sizes of a GRU encoder-decoder with attention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always `gru-bahdanau` for now.
    pub architecture: String,
    /// Attention scorer: `additive` (Bahdanau).
    pub attention: String,
    /// ISO 639-1 code of the source language.
    pub source_lang: String,
    /// ISO 639-1 code of the target language.
    pub target_lang: String,
    pub src_vocab_size: usize,
    pub tgt_vocab_size: usize,
    /// Size of the token embeddings, both sides.
    pub embed_dim: usize,
    /// Hidden size of each encoder direction and of the decoder.
    pub hidden_dim: usize,
    /// Size of the additive attention's hidden layer.
    pub attention_dim: usize,
    /// Size of the readout layer before the output projection.
    pub readout_dim: usize,
    /// Longest token sequence (either side, end of sentence included) seen in training.
    pub max_len: usize,
    /// File name of the source tokenizer, relative to the model directory.
    pub source_tokenizer: String,
    /// File name of the target tokenizer, relative to the model directory.
    pub target_tokenizer: String,
    /// Training facts and scores, filled in by `attnscope train`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
}

/// What training did and how well the result scores; recorded in `config.json` and the card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub data: String,
    pub seed: u64,
    pub train_pairs: usize,
    pub dev_pairs: usize,
    pub test_sentences: usize,
    pub steps: usize,
    pub epochs: f64,
    pub batch_size: usize,
    pub training_seconds: f64,
    pub hardware: String,
    pub final_train_loss: f64,
    pub dev_loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<f64>,
}

pub const PAD_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const UNK_ID: u32 = 3;

impl ModelConfig {
    /// The default architecture at the given vocabulary sizes.
    pub fn bahdanau(
        source_lang: &str,
        target_lang: &str,
        src_vocab: usize,
        tgt_vocab: usize,
    ) -> Self {
        ModelConfig {
            architecture: "gru-bahdanau".into(),
            attention: "additive".into(),
            source_lang: source_lang.into(),
            target_lang: target_lang.into(),
            src_vocab_size: src_vocab,
            tgt_vocab_size: tgt_vocab,
            embed_dim: 256,
            hidden_dim: 256,
            attention_dim: 256,
            readout_dim: 256,
            max_len: 48,
            source_tokenizer: format!("tokenizer.{source_lang}.json"),
            target_tokenizer: format!("tokenizer.{target_lang}.json"),
            training: None,
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: ModelConfig = serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e))?;
        if cfg.architecture != "gru-bahdanau" {
            return Err(Error::bad_file(
                path,
                format!(
                    "unknown architecture {:?}; this build knows \"gru-bahdanau\"",
                    cfg.architecture
                ),
            ));
        }
        Ok(cfg)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }
}
