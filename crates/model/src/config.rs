//! The serialisable description of a model (`config.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Architecture and vocabulary sizes of an encoder-decoder with attention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// [`GRU`] (a GRU encoder-decoder, [`crate::rnn`]) or [`TRANSFORMER`]
    /// ([`crate::transformer`]). Files written before the zoo say `gru-bahdanau`, read as `gru`.
    pub architecture: String,
    /// The GRU's attention scorer: `additive` (Bahdanau), `general` or `dot` (Luong);
    /// `scaled-dot` for the Transformer.
    pub attention: String,
    /// How the attention was trained: `soft` (softmax) or `hard` (one source position per
    /// step, straight-through Gumbel-softmax).
    #[serde(default = "soft")]
    pub attention_training: String,
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
    /// Transformer: layers in the encoder and in the decoder (0 for a GRU).
    #[serde(default)]
    pub layers: usize,
    /// Transformer: attention heads per layer (0 for a GRU).
    #[serde(default)]
    pub heads: usize,
    /// Transformer: inner size of the feed-forward blocks (0 for a GRU).
    #[serde(default)]
    pub ff_dim: usize,
    /// Dropout rate during training (0 disables it).
    #[serde(default)]
    pub dropout: f64,
    /// Longest token sequence (either side, end of sentence included) seen in training.
    pub max_len: usize,
    /// File name of the source tokenizer, relative to the model directory.
    pub source_tokenizer: String,
    /// File name of the target tokenizer, relative to the model directory.
    pub target_tokenizer: String,
    /// Training facts and scores, filled in by `attnscope train`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
    /// Attention analysis, filled in by `attnscope eval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

/// How the model's attention behaves, measured by `attnscope eval`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Test sentences decoded for the entropy figures.
    pub sentences: usize,
    /// Mean entropy (nats) of the attention row per decoding step on the test split.
    pub mean_entropy: f64,
    /// Mean largest weight per step on the test split.
    pub mean_max_weight: f64,
    /// Word alignments from attention against a gold set, when one fits the languages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alignment: Vec<AlignmentResult>,
    /// Scores by source length, on pasted sentences and on another domain
    /// ([`crate::robustness`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<crate::robustness::SetScore>,
    /// Attention against attributions and counterfactual attention
    /// ([`crate::faithfulness`]), once `attnscope faithfulness` has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<crate::faithfulness::Faithfulness>,
}

/// AER, precision and recall (percent) of one alignment-extraction method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlignmentResult {
    /// Gold set, e.g. `hansards-naacl2003`.
    pub gold: String,
    /// Extraction method, e.g. `argmax, grow-diag-final`.
    pub method: String,
    pub aer: f64,
    pub precision: f64,
    pub recall: f64,
    pub sentences: usize,
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

fn soft() -> String {
    "soft".into()
}

/// `architecture` of a GRU encoder-decoder with attention.
pub const GRU: &str = "gru";
/// `architecture` of an encoder-decoder Transformer.
pub const TRANSFORMER: &str = "transformer";
/// GRU attention scorers.
pub const SCORERS: [&str; 3] = ["additive", "general", "dot"];

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
            architecture: GRU.into(),
            attention: "additive".into(),
            attention_training: soft(),
            layers: 0,
            heads: 0,
            ff_dim: 0,
            dropout: 0.0,
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
            evaluation: None,
        }
    }

    /// A small encoder-decoder Transformer: 3+3 pre-norm layers, 4 heads, d = 256.
    pub fn transformer(
        source_lang: &str,
        target_lang: &str,
        src_vocab: usize,
        tgt_vocab: usize,
    ) -> Self {
        ModelConfig {
            architecture: TRANSFORMER.into(),
            attention: "scaled-dot".into(),
            layers: 3,
            heads: 4,
            ff_dim: 1024,
            dropout: 0.1,
            ..Self::bahdanau(source_lang, target_lang, src_vocab, tgt_vocab)
        }
    }

    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg: ModelConfig =
            serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e))?;
        if cfg.architecture == "gru-bahdanau" {
            cfg.architecture = GRU.into();
        }
        cfg.check().map_err(|e| Error::bad_file(path, e))?;
        Ok(cfg)
    }

    /// Checks that the architecture, scorer and sizes fit together.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        match self.architecture.as_str() {
            GRU => {
                if !SCORERS.contains(&self.attention.as_str()) {
                    return bad(format!(
                        "unknown GRU attention scorer {:?}; expected one of {}",
                        self.attention,
                        SCORERS.join(", ")
                    ));
                }
            }
            TRANSFORMER => {
                if self.layers == 0 || self.heads == 0 || !self.embed_dim.is_multiple_of(self.heads)
                {
                    return bad(format!(
                        "a transformer needs layers > 0 and heads > 0 dividing embed_dim; got {} layers, {} heads, embed_dim {}",
                        self.layers, self.heads, self.embed_dim
                    ));
                }
            }
            other => {
                return bad(format!(
                    "unknown architecture {other:?}; this build knows \"{GRU}\" and \"{TRANSFORMER}\""
                ));
            }
        }
        if !["soft", "hard"].contains(&self.attention_training.as_str()) {
            return bad(format!(
                "unknown attention_training {:?}; expected soft or hard",
                self.attention_training
            ));
        }
        Ok(())
    }

    /// Writes `config.json` crash-safely ([`crate::files`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::files::write(path, text + "\n")
    }
}
