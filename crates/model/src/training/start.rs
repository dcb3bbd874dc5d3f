//! The model a fine-tuning run starts from (`train --init-from`): its configuration,
//! tokenizers and weights, checked against the run's languages. A model of the same source
//! language but another target language is a transfer: the run keeps its source tokenizer,
//! encoder and decoder layers, and trains a new target tokenizer, target embedding and
//! output layer.

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;

use crate::config::ModelConfig;
use crate::decoding::translator::{CONFIG_FILE, WEIGHTS_FILE};
use crate::training::checkpoint::set_variables;
use crate::training::options::TrainOptions;
use crate::vocab::Vocab;
use crate::{Error, Result};

/// The model a run starts from ([`TrainOptions::init_from`]).
pub(crate) struct StartFrom {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub src: Vocab,
    /// The starting model's target tokenizer; `None` in a transfer to another target
    /// language, whose tokenizer the run trains.
    pub tgt: Option<Vocab>,
}

/// Whether a variable belongs to the target vocabulary (the target embedding and the output
/// layer): a transfer to another target language does not take these from the starting model.
fn is_target_vocabulary(name: &str) -> bool {
    name.starts_with("decoder.embedding.") || name.starts_with("decoder.output.")
}

impl StartFrom {
    /// Reads the model folder `dir` and checks that it translates the run's languages.
    pub fn load(dir: &Path, opts: &TrainOptions) -> Result<Self> {
        let config = ModelConfig::load(&dir.join(CONFIG_FILE))?;
        if config.source_lang != opts.source_lang {
            return Err(Error::Invalid(format!(
                "{} translates from {}, but this run translates from {}; start from a model of \
the same source language",
                dir.display(),
                config.source_lang,
                opts.source_lang
            )));
        }
        let src = Vocab::load(&dir.join(&config.source_tokenizer))?;
        let tgt = if config.target_lang == opts.target_lang {
            Some(Vocab::load(&dir.join(&config.target_tokenizer))?)
        } else {
            None
        };
        Ok(StartFrom {
            dir: dir.to_path_buf(),
            config,
            src,
            tgt,
        })
    }

    /// Whether the run translates into another language than the starting model.
    pub fn is_transfer(&self) -> bool {
        self.tgt.is_none()
    }

    /// The run trains the starting model's architecture and sizes: `opts` take them (all but
    /// the target vocabulary's size in a transfer).
    pub fn adopt_sizes(&self, opts: &mut TrainOptions) {
        let c = &self.config;
        opts.architecture = c.architecture;
        opts.src_vocab = c.src_vocab_size;
        if !self.is_transfer() {
            opts.tgt_vocab = c.tgt_vocab_size;
        }
        (opts.embed_dim, opts.hidden_dim) = (c.embed_dim, c.hidden_dim);
    }

    /// The starting model's configuration with the run's length limit, dropout and label
    /// smoothing, and no
    /// scores (they are measured again).
    pub fn config(&self, opts: &TrainOptions) -> ModelConfig {
        ModelConfig {
            max_len: opts.max_len,
            dropout: opts.dropout,
            label_smoothing: opts.label_smoothing,
            target_lang: opts.target_lang.clone(),
            tgt_vocab_size: opts.tgt_vocab,
            source_tokenizer: format!("tokenizer.{}.json", opts.source_lang),
            target_tokenizer: format!("tokenizer.{}.json", opts.target_lang),
            training: None,
            evaluation: None,
            ..self.config.clone()
        }
    }

    /// Sets every variable of `varmap` from the starting model's weights; in a transfer, all
    /// but the target vocabulary's, which keep their fresh initialisation.
    pub fn load_weights(&self, varmap: &VarMap, device: &Device) -> Result<()> {
        let path = self.dir.join(WEIGHTS_FILE);
        let mut tensors =
            candle_core::safetensors::load(&path, device).map_err(|e| Error::bad_file(&path, e))?;
        if self.is_transfer() {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Internal("poisoned variable map".into()))?;
            for (name, var) in data.iter().filter(|(n, _)| is_target_vocabulary(n)) {
                // A copy: setting a variable from its own storage would lock it twice.
                tensors.insert(name.clone(), var.as_tensor().copy()?);
            }
        }
        set_variables(varmap, &tensors, &path)
    }
}
