//! The model a fine-tuning run starts from (`train --init-from`): its configuration,
//! tokenizers and weights, checked against the run's languages.

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
    pub tgt: Vocab,
}

impl StartFrom {
    /// Reads the model folder `dir` and checks that it translates the run's languages.
    pub fn load(dir: &Path, opts: &TrainOptions) -> Result<Self> {
        let config = ModelConfig::load(&dir.join(CONFIG_FILE))?;
        if (config.source_lang.as_str(), config.target_lang.as_str())
            != (opts.source_lang.as_str(), opts.target_lang.as_str())
        {
            return Err(Error::Invalid(format!(
                "{} translates {} to {}, but this run is {} to {}; start from a model of the same languages",
                dir.display(),
                config.source_lang,
                config.target_lang,
                opts.source_lang,
                opts.target_lang
            )));
        }
        let src = Vocab::load(&dir.join(&config.source_tokenizer))?;
        let tgt = Vocab::load(&dir.join(&config.target_tokenizer))?;
        Ok(StartFrom {
            dir: dir.to_path_buf(),
            config,
            src,
            tgt,
        })
    }

    /// The run trains the starting model's architecture and sizes: `opts` take them.
    pub fn adopt_sizes(&self, opts: &mut TrainOptions) {
        let c = &self.config;
        opts.architecture = c.architecture;
        (opts.src_vocab, opts.tgt_vocab) = (c.src_vocab_size, c.tgt_vocab_size);
        (opts.embed_dim, opts.hidden_dim) = (c.embed_dim, c.hidden_dim);
    }

    /// The starting model's configuration with the run's length limit and dropout, and no
    /// scores (they are measured again).
    pub fn config(&self, opts: &TrainOptions) -> ModelConfig {
        ModelConfig {
            max_len: opts.max_len,
            dropout: opts.dropout,
            source_tokenizer: format!("tokenizer.{}.json", opts.source_lang),
            target_tokenizer: format!("tokenizer.{}.json", opts.target_lang),
            training: None,
            evaluation: None,
            ..self.config.clone()
        }
    }

    /// Sets every variable of `varmap` from the starting model's weights.
    pub fn load_weights(&self, varmap: &VarMap, device: &Device) -> Result<()> {
        let path = self.dir.join(WEIGHTS_FILE);
        let tensors =
            candle_core::safetensors::load(&path, device).map_err(|e| Error::bad_file(&path, e))?;
        set_variables(varmap, &tensors, &path)
    }
}
