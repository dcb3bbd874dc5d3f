//! The serialisable description of a model (`config.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{Evaluation, TrainingSummary};
use crate::{Error, Result};

/// Architecture and vocabulary sizes of an encoder-decoder with attention.
///
/// On disk the architecture is spelled as flat fields (`architecture`, `attention`,
/// `attention_training`, `layers`, `heads`, `ff_dim`, see [`Architecture`]), as every
/// shipped `config.json` has it; in memory it is one [`Architecture`] value, so a GRU cannot
/// carry Transformer sizes nor a Transformer hard attention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The network and its attention.
    #[serde(flatten)]
    pub architecture: Architecture,
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
    /// Dropout rate during training (0 disables it): on every sublayer of a Transformer, on
    /// the readout before the output layer of a GRU.
    #[serde(default)]
    pub dropout: f64,
    /// Label smoothing ε of the training loss (0 disables it): the cross-entropy against
    /// `1 - ε` on the reference token and `ε / V` spread over the vocabulary.
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
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
    /// How decoding ends when the model's authors said (an imported model); absent for the
    /// models trained here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
}

/// How an imported model's decoding ends, as Hugging Face's `generate` ends it: at most
/// `max_length` positions (the decoder start included), the last one `</s>` when
/// `forced_eos_token_id` says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Tokens a translation has at most, its `</s>` included.
    pub max_new_tokens: usize,
    /// A translation that reaches the limit ends with `</s>` there.
    pub forced_eos: bool,
}

pub const PAD_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const UNK_ID: u32 = 3;

impl ModelConfig {
    /// A GRU with additive attention (Bahdanau et al. 2015) at the given vocabulary sizes.
    pub fn bahdanau(
        source_lang: &str,
        target_lang: &str,
        src_vocab: usize,
        tgt_vocab: usize,
    ) -> Self {
        Self::new(
            Architecture::bahdanau(),
            source_lang,
            target_lang,
            src_vocab,
            tgt_vocab,
        )
    }

    /// A small encoder-decoder Transformer: 3+3 pre-norm layers, 4 heads, d = 256.
    pub fn transformer(
        source_lang: &str,
        target_lang: &str,
        src_vocab: usize,
        tgt_vocab: usize,
    ) -> Self {
        Self::new(
            Architecture::transformer(),
            source_lang,
            target_lang,
            src_vocab,
            tgt_vocab,
        )
    }

    /// `architecture` with 256-wide embeddings and states, at its default dropout.
    pub fn new(
        architecture: Architecture,
        source_lang: &str,
        target_lang: &str,
        src_vocab: usize,
        tgt_vocab: usize,
    ) -> Self {
        ModelConfig {
            architecture,
            dropout: architecture.default_dropout(),
            label_smoothing: 0.0,
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
            generation: None,
        }
    }

    /// How the attention was trained (always soft for a Transformer).
    pub fn attention_training(&self) -> AttentionTraining {
        self.architecture.attention_training()
    }

    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let cfg: ModelConfig = crate::files::read_json(path)?;
        cfg.check().map_err(|e| Error::bad_file(path, e))?;
        Ok(cfg)
    }

    /// Checks that the sizes fit the architecture (the architecture itself was checked when
    /// it was built, see [`Architecture`]).
    pub fn check(&self) -> Result<()> {
        if let Architecture::Transformer(t) = &self.architecture
            && !self.embed_dim.is_multiple_of(t.heads)
        {
            return Err(Error::Invalid(format!(
                "a transformer needs heads dividing embed_dim; got {} heads, embed_dim {}",
                t.heads, self.embed_dim
            )));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::Invalid(format!(
                "label smoothing must be at least 0 and below 1; got {}",
                self.label_smoothing
            )));
        }
        Ok(())
    }

    /// Writes `config.json` crash-safely ([`crate::files`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        crate::files::write(path, text + "\n")
    }
}

/// The network of a model and its attention.
///
/// Serialised as the flat fields of [`ArchitectureFields`]; deserialising checks them, so a
/// value of this type is always a model this build can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ArchitectureFields", into = "ArchitectureFields")]
pub enum Architecture {
    /// A bidirectional GRU encoder and a GRU decoder with attention ([`crate::networks::rnn`]).
    Gru(GruConfig),
    /// An encoder-decoder Transformer ([`crate::networks::transformer`]).
    Transformer(TransformerConfig),
}

/// What sets one GRU model apart from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GruConfig {
    pub scorer: Scorer,
    pub attention_training: AttentionTraining,
}

/// A Transformer's depth and widths (the model width is [`ModelConfig::embed_dim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerConfig {
    /// Layers in the encoder and in the decoder.
    pub layers: usize,
    /// Attention heads per layer; they divide the model width.
    pub heads: usize,
    /// Inner size of the feed-forward blocks.
    pub ff_dim: usize,
    /// Where the layer norms go and how positions are laid out.
    pub layout: TransformerLayout,
    /// The feed-forward block's nonlinearity.
    pub activation: Activation,
}

impl TransformerConfig {
    /// attnscope's own layout (pre-norm, ReLU) at the given sizes.
    pub const fn new(layers: usize, heads: usize, ff_dim: usize) -> Self {
        TransformerConfig {
            layers,
            heads,
            ff_dim,
            layout: TransformerLayout::PreNorm,
            activation: Activation::Relu,
        }
    }
}

/// How a Transformer's layers are arranged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransformerLayout {
    /// attnscope's own: pre-norm sublayers (`x + f(LN(x))`), a final layer norm after the
    /// encoder and the decoder, interleaved sinusoids (sine in even columns, cosine in odd).
    #[default]
    PreNorm,
    /// Marian's (Hugging Face `MarianMTModel`, the opus-mt models): post-norm sublayers
    /// (`LN(x + f(x))`), no final layer norms, sinusoids in halves (every sine, then every
    /// cosine).
    Marian,
}

impl TransformerLayout {
    pub const ALL: [TransformerLayout; 2] = [TransformerLayout::PreNorm, TransformerLayout::Marian];

    pub fn name(self) -> &'static str {
        match self {
            TransformerLayout::PreNorm => "pre-norm",
            TransformerLayout::Marian => "marian",
        }
    }
}

/// The feed-forward block's nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    #[default]
    Relu,
    /// The exact (erf) GELU.
    Gelu,
    /// `x * sigmoid(x)`, also called SiLU.
    Swish,
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Relu, Activation::Gelu, Activation::Swish];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Swish => "swish",
        }
    }
}

impl Architecture {
    /// A GRU with additive attention, trained soft.
    pub const fn bahdanau() -> Self {
        Architecture::Gru(GruConfig {
            scorer: Scorer::Additive,
            attention_training: AttentionTraining::Soft,
        })
    }

    /// A GRU with the given scorer and attention training.
    pub const fn gru(scorer: Scorer, attention_training: AttentionTraining) -> Self {
        Architecture::Gru(GruConfig {
            scorer,
            attention_training,
        })
    }

    /// The shipped Transformer's shape: 3+3 layers, 4 heads, feed-forward 1024.
    pub const fn transformer() -> Self {
        Architecture::Transformer(TransformerConfig::new(3, 4, 1024))
    }

    /// `gru` or `transformer`, as `config.json` and the CLI spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Gru(_) => "gru",
            Architecture::Transformer(_) => "transformer",
        }
    }

    /// The scoring function's name: the GRU's [`Scorer`], or `scaled-dot`.
    pub fn attention_name(&self) -> &'static str {
        match self {
            Architecture::Gru(g) => g.scorer.name(),
            Architecture::Transformer(_) => "scaled-dot",
        }
    }

    /// How the attention was trained; a Transformer's is soft.
    pub fn attention_training(&self) -> AttentionTraining {
        match self {
            Architecture::Gru(g) => g.attention_training,
            Architecture::Transformer(_) => AttentionTraining::Soft,
        }
    }

    /// `(layers, heads)` of a Transformer, `(0, 0)` for a GRU (as the model list reports).
    pub fn layers_heads(&self) -> (usize, usize) {
        match self {
            Architecture::Gru(_) => (0, 0),
            Architecture::Transformer(t) => (t.layers, t.heads),
        }
    }

    /// Peak learning rate that trains this architecture well here.
    pub fn default_lr(&self) -> f64 {
        match self {
            Architecture::Gru(_) => 2e-3,
            Architecture::Transformer(_) => 7e-4,
        }
    }

    /// Steps of linear learning-rate warm-up.
    pub fn default_warmup(&self) -> usize {
        match self {
            Architecture::Gru(_) => 300,
            Architecture::Transformer(_) => 1000,
        }
    }

    /// Dropout rate during training.
    pub fn default_dropout(&self) -> f64 {
        match self {
            Architecture::Gru(_) => 0.0,
            Architecture::Transformer(_) => 0.1,
        }
    }
}

/// How the GRU decoder scores a source position against its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scorer {
    /// `v · tanh(W_k h_j + W_q s)` (Bahdanau et al. 2015).
    Additive,
    /// `s · W_a h_j` (Luong et al. 2015).
    General,
    /// `s · h_j` (Luong et al. 2015).
    Dot,
}

impl Scorer {
    pub const ALL: [Scorer; 3] = [Scorer::Additive, Scorer::General, Scorer::Dot];

    pub fn name(self) -> &'static str {
        match self {
            Scorer::Additive => "additive",
            Scorer::General => "general",
            Scorer::Dot => "dot",
        }
    }

    /// The name a reader knows it by, e.g. `additive (Bahdanau)`.
    pub fn label(self) -> &'static str {
        match self {
            Scorer::Additive => "additive (Bahdanau)",
            Scorer::General => "general (Luong)",
            Scorer::Dot => "dot (Luong)",
        }
    }
}

/// How the attention was trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttentionTraining {
    /// Softmax weights over the source.
    #[default]
    Soft,
    /// One source position per step, trained with straight-through Gumbel-softmax; decoded
    /// with the argmax.
    Hard,
}

impl AttentionTraining {
    pub const ALL: [AttentionTraining; 2] = [AttentionTraining::Soft, AttentionTraining::Hard];

    pub fn name(self) -> &'static str {
        match self {
            AttentionTraining::Soft => "soft",
            AttentionTraining::Hard => "hard",
        }
    }
}

crate::names::named!(Scorer, name, "GRU attention scorer");
crate::names::named!(AttentionTraining, name, "attention training");
crate::names::named!(TransformerLayout, name, "transformer layout");
crate::names::named!(Activation, name, "activation");

/// [`Architecture`] as files spell it: flat fields, with the defaults of files written before
/// each field existed (`gru`, `additive`, `soft`; `gru-bahdanau` is read as `gru`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArchitectureFields {
    #[serde(default = "default_architecture")]
    pub architecture: String,
    #[serde(default = "default_scorer")]
    pub attention: String,
    #[serde(default)]
    pub attention_training: AttentionTraining,
    /// Transformer only (0 for a GRU).
    #[serde(default)]
    pub layers: usize,
    #[serde(default)]
    pub heads: usize,
    #[serde(default)]
    pub ff_dim: usize,
    /// Transformer only; left out when it is the default (`pre-norm`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub layout: TransformerLayout,
    /// Transformer only; left out when it is the default (`relu`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub activation: Activation,
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_architecture() -> String {
    "gru".into()
}

fn default_scorer() -> String {
    Scorer::Additive.name().into()
}

impl TryFrom<ArchitectureFields> for Architecture {
    type Error = Error;
    fn try_from(f: ArchitectureFields) -> Result<Self> {
        match f.architecture.as_str() {
            "gru" | "gru-bahdanau" => Ok(Architecture::gru(
                f.attention.parse()?,
                f.attention_training,
            )),
            "transformer" => {
                if f.attention_training != AttentionTraining::Soft {
                    return Err(Error::Invalid(
                        "hard-attention training is for GRU models; a transformer attends soft"
                            .into(),
                    ));
                }
                if f.layers == 0 || f.heads == 0 || f.ff_dim == 0 {
                    return Err(Error::Invalid(format!(
                        "a transformer needs layers, heads and ff_dim above 0; got {} layers, {} heads, ff_dim {}",
                        f.layers, f.heads, f.ff_dim
                    )));
                }
                Ok(Architecture::Transformer(TransformerConfig {
                    layers: f.layers,
                    heads: f.heads,
                    ff_dim: f.ff_dim,
                    layout: f.layout,
                    activation: f.activation,
                }))
            }
            other => Err(Error::Invalid(format!(
                "unknown architecture {other:?}; this build knows \"gru\" and \"transformer\""
            ))),
        }
    }
}

impl From<Architecture> for ArchitectureFields {
    fn from(a: Architecture) -> Self {
        let t = match a {
            Architecture::Gru(_) => TransformerConfig {
                layers: 0,
                heads: 0,
                ff_dim: 0,
                layout: TransformerLayout::default(),
                activation: Activation::default(),
            },
            Architecture::Transformer(t) => t,
        };
        ArchitectureFields {
            architecture: a.name().into(),
            attention: a.attention_name().into(),
            attention_training: a.attention_training(),
            layers: t.layers,
            heads: t.heads,
            ff_dim: t.ff_dim,
            layout: t.layout,
            activation: t.activation,
        }
    }
}

#[cfg(test)]
mod tests;
