//! [`TrainOptions`]: everything that determines a training run, saved beside its checkpoints
//! (`options.json`) so that a resumed run continues with the same ones, and with the
//! exported model (`training-options.json`) so that its card can say how to reproduce it.
//! Per-architecture defaults (learning rate, warm-up, dropout) come from
//! [`Architecture`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::{Architecture, ModelConfig, is_default};

/// Everything that determines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub name: String,
    pub data: PathBuf,
    pub source_lang: String,
    pub target_lang: String,
    pub seed: u64,
    pub epochs: f64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub src_vocab: usize,
    pub tgt_vocab: usize,
    pub embed_dim: usize,
    pub hidden_dim: usize,
    /// Longest pair kept for training, in pieces (end of sentence included), either side.
    pub max_len: usize,
    pub dev_sentences: usize,
    pub test_sentences: usize,
    /// Train on only the first N training pairs (quick runs, tests).
    pub limit: Option<usize>,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Ship the mean of the weights of the run's last N checkpoints (the final one included)
    /// instead of the final weights; 0 or 1: the final weights.
    #[serde(default, skip_serializing_if = "is_default")]
    pub average_last: usize,
    /// The network to train, spelled in `options.json` as `config.json` spells it.
    #[serde(flatten)]
    pub architecture: Architecture,
    #[serde(default)]
    pub dropout: f64,
    /// Label smoothing ε of the training loss ([`ModelConfig::label_smoothing`]); 0 (runs
    /// saved before the option existed): none.
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    /// More `source<TAB>target` files added whole to the training part (a second domain, such
    /// as Multi30k); the dev and test splits still come from `data` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_data: Vec<PathBuf>,
    /// Multi-sentence pairs added to training, as a fraction of the training pairs: each joins
    /// 2 to 4 random training pairs ([`crate::training::data::joined`]).
    #[serde(default, skip_serializing_if = "is_default")]
    pub joined: f64,
    /// Start from this model folder's weights and tokenizers instead of random weights and
    /// newly trained vocabularies (fine-tuning, e.g. on added data). Its architecture and
    /// sizes replace the ones above; `max_len`, `dropout` and the schedule stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Shards each batch is split into, trained side by side on their own threads
    /// ([`crate::training::shards`]); 1 (runs saved before the option existed): the whole
    /// batch on one thread, its kernels spread over every core.
    #[serde(default = "one")]
    pub data_parallel: usize,
}

fn one() -> usize {
    1
}

impl TrainOptions {
    /// Options for `architecture`, with its learning rate, warm-up and dropout.
    pub fn new(
        architecture: Architecture,
        name: &str,
        data: PathBuf,
        source_lang: &str,
        target_lang: &str,
    ) -> Self {
        TrainOptions {
            name: name.into(),
            data,
            source_lang: source_lang.into(),
            target_lang: target_lang.into(),
            seed: 42,
            epochs: 10.0,
            batch_size: 128,
            lr: architecture.default_lr(),
            warmup_steps: architecture.default_warmup(),
            src_vocab: 8000,
            tgt_vocab: 8000,
            embed_dim: 256,
            hidden_dim: 256,
            max_len: 48,
            dev_sentences: 1000,
            test_sentences: 2000,
            limit: None,
            checkpoint_every: 200,
            average_last: 0,
            architecture,
            dropout: architecture.default_dropout(),
            label_smoothing: 0.0,
            extra_data: Vec::new(),
            joined: 0.0,
            init_from: None,
            data_parallel: 2,
        }
    }

    /// The model configuration these options describe, for the given vocabulary sizes.
    pub fn model_config(&self, src_vocab: usize, tgt_vocab: usize) -> Result<ModelConfig> {
        let (s, t) = (self.source_lang.as_str(), self.target_lang.as_str());
        let mut c = ModelConfig::new(self.architecture, s, t, src_vocab, tgt_vocab);
        if let Architecture::Gru(_) = self.architecture {
            c.hidden_dim = self.hidden_dim;
            c.attention_dim = self.hidden_dim;
            c.readout_dim = self.hidden_dim;
        }
        c.embed_dim = self.embed_dim;
        c.dropout = self.dropout;
        c.label_smoothing = self.label_smoothing;
        c.max_len = self.max_len;
        c.check()?;
        Ok(c)
    }
}
