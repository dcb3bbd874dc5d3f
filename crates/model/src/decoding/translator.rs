//! A loaded model: its configuration, network and both vocabularies, ready to translate.
//!
//! [`Translator::load`] reads a model folder ([`CONFIG_FILE`], the tokenizers it names and
//! [`WEIGHTS_FILE`]). What a translator does is spread over the next modules, each using
//! only the ones before it: [`crate::decoding::source`] tokenises an input,
//! [`crate::decoding::plan`] checks a request against it, [`crate::decoding::decode`]
//! decodes one sentence and [`crate::decoding::sentences`] a whole input.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::{AttentionTraining, ModelConfig};
use crate::networks::Network;
use crate::networks::attention::Mode;
use crate::vocab::Vocab;
use crate::{Error, Result};

/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The longest output accepted, in pieces.
pub const MAX_OUTPUT: usize = 256;

/// The default length limit for a source of `src_len` pieces.
pub fn default_max_len(src_len: usize) -> usize {
    (2 * src_len + 10).min(MAX_OUTPUT)
}

/// A loaded model with its vocabularies, ready to translate.
pub struct Translator {
    pub(crate) config: ModelConfig,
    pub(crate) network: Network,
    pub(crate) src: Vocab,
    pub(crate) tgt: Vocab,
    pub(crate) device: Device,
    parameters: usize,
}

impl Translator {
    /// Loads `config.json`, both tokenizers and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::load(&dir.join(CONFIG_FILE))?;
        let src = Vocab::load(&dir.join(&config.source_tokenizer))?;
        let tgt = Vocab::load(&dir.join(&config.target_tokenizer))?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(Error::bad_file(&weights, "the weights file is missing"));
        }
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(&weights, &device)
            .map_err(|e| Error::bad_file(&weights, e))?;
        let parameters = tensors.values().map(|t| t.elem_count()).sum();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let network = Network::new(&config, vb).map_err(|e| Error::bad_file(&weights, e))?;
        Self::from_parts(config, network, src, tgt, parameters)
    }

    /// A translator from parts already in memory (training, tests).
    pub fn from_parts(
        config: ModelConfig,
        network: Network,
        src: Vocab,
        tgt: Vocab,
        parameters: usize,
    ) -> Result<Self> {
        if src.len() != config.src_vocab_size || tgt.len() != config.tgt_vocab_size {
            return Err(Error::Invalid(format!(
                "tokenizer sizes {}/{} do not match the config's {}/{}",
                src.len(),
                tgt.len(),
                config.src_vocab_size,
                config.tgt_vocab_size
            )));
        }
        Ok(Translator {
            config,
            network,
            src,
            tgt,
            device: Device::Cpu,
            parameters,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn parameters(&self) -> usize {
        self.parameters
    }

    pub fn target_vocab(&self) -> &Vocab {
        &self.tgt
    }

    pub fn source_vocab(&self) -> &Vocab {
        &self.src
    }

    /// The length limit of a source of `src_len` pieces when the request gives none: the
    /// model's own ([`crate::config::Generation`]) where it has one, else
    /// [`crate::decoding::plan::default_max_len`].
    pub fn max_len_for(&self, src_len: usize) -> usize {
        match self.config.generation {
            Some(g) => g.max_new_tokens.clamp(1, MAX_OUTPUT),
            None => default_max_len(src_len),
        }
    }

    /// Whether a translation that reaches its length limit ends with `</s>` there.
    pub fn forced_eos(&self) -> bool {
        self.config.generation.is_some_and(|g| g.forced_eos)
    }

    /// The attention the model was trained with: `hard` or `soft`.
    pub fn default_mode(&self) -> Mode {
        match self.config.attention_training() {
            AttentionTraining::Hard => Mode::Hard,
            AttentionTraining::Soft => Mode::Soft,
        }
    }
}
