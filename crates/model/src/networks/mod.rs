//! One interface over the architectures, for the decoders and the trainer.
//!
//! [`EncoderDecoder`] is what a decoder drives: encode a batch, take one step with a
//! caller-chosen attention distribution, read the logits. Its associated `Memory` and `State`
//! types belong to one architecture, so the compiler rules out stepping a GRU with a
//! Transformer's cache. [`Network`] holds a model of either architecture (what a model
//! folder loads into); [`crate::with_network!`] calls generic code once with the concrete model, and
//! [`Network::loss`] trains it.
//!
//! The architectures: [`rnn`] (a bidirectional GRU encoder and an attention GRU decoder, on
//! [`gru`] cells) and [`transformer`]; how attention scores become weights ([`attention`]);
//! seeded initialisation ([`init`]) and [`dropout`]. They compute through the kernels.

pub mod attention;
pub mod dropout;
pub mod gru;
pub mod init;
pub mod rnn;
pub mod transformer;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::Result;
use crate::config::{Architecture, AttentionTraining, ModelConfig};
use crate::networks::dropout::Dropout;
use rnn::{Seq2Seq, TrainAttention};
use transformer::{KvCache, Transformer, TransformerEncoded};

/// An encoder-decoder with attention, as the decoders (greedy, forced, beam, batched, the
/// attribution replay) drive it.
pub trait EncoderDecoder {
    /// The encoder's output for a batch.
    type Memory: Clone;
    /// The decoder's state between steps.
    type State: Clone;

    /// Encodes a batch.
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32, right-padded; `mask`: `(B, S)` f32, 1 at tokens
    fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<Self::Memory>;

    /// The source embeddings the encoder reads (token embeddings, before a Transformer's
    /// scaling and positions).
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32; returns `(B, S, E)`
    fn embed_source(&self, src: &Tensor) -> Result<Tensor>;

    /// [`Self::encode`] from source embeddings (see [`Self::embed_source`]).
    ///
    /// # Shapes
    /// - `emb`: `(B, S, E)`; `mask`: `(B, S)` f32, 1 at tokens
    fn encode_embedded(&self, emb: &Tensor, mask: &Tensor) -> Result<Self::Memory>;

    /// The decoder state before the first step.
    fn initial_state(&self, memory: &Self::Memory) -> Result<Self::State>;

    /// One step from the previous tokens `prev` `(B,)`; `distribution` maps masked scores
    /// `(..., S)` to the weights used.
    fn step(
        &self,
        memory: &Self::Memory,
        state: &Self::State,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<NetStep<Self::State>>;

    /// [`Self::step`] up to the output layer: the features `(B, R)` that [`Self::logits`]
    /// turns into next-token scores, and the new state.
    fn step_features(
        &self,
        memory: &Self::Memory,
        state: &Self::State,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Self::State)>;

    /// Next-token scores `(N, V)` from step features `(N, R)`.
    fn logits(&self, features: &Tensor) -> Result<Tensor>;

    /// Rows `idx` (u32, `(B',)`) of a batch's memory: beam search duplicates and reorders
    /// sentences.
    fn select_memory(memory: &Self::Memory, idx: &Tensor) -> Result<Self::Memory>;

    /// Rows `idx` of a batch's decoder state.
    fn select_state(state: &Self::State, idx: &Tensor) -> Result<Self::State>;

    /// The rows of `a`, then those of `b`, in one memory (sources padded to the longer).
    fn join_memory(a: &Self::Memory, b: &Self::Memory) -> Result<Self::Memory>;

    /// The rows of `a`, then those of `b`, in one state, each row stepping on as it would
    /// have alone (`b`'s rows may have taken fewer steps: decoders that batch requests as
    /// they come join new sentences to running ones).
    fn join_state(a: &Self::State, b: &Self::State) -> Result<Self::State>;

    /// Encoder self-attention, `(B, L, heads, S, S)`, where the architecture has one.
    fn encoder_attention(memory: &Self::Memory) -> Option<&Tensor>;

    /// What the attention mixes, per layer: the vector each source position adds to the
    /// layer's output per unit of attention weight (a GRU's encoder states, which the context
    /// vector averages; a Transformer head's values through its slice of the output
    /// projection). `‖α_j v_j‖` weighs attention by how far each position moves the output
    /// (Kobayashi et al. 2020).
    ///
    /// # Shapes
    /// - returns one `(B, heads, S, R)` per layer of [`NetStep::cross`]
    fn attention_values(&self, memory: &Self::Memory) -> Result<Vec<Tensor>>;

    /// The device of a memory's tensors.
    fn device(memory: &Self::Memory) -> &Device;
}

/// What one decoding step produced.
#[derive(Clone, Debug)]
pub struct NetStep<S> {
    /// `(B, V)` unnormalised scores of the next token.
    pub logits: Tensor,
    pub state: S,
    /// `(B, L, heads, S)` attention over the source actually used; `(B, 1, 1, S)` for a GRU.
    pub cross: Tensor,
    /// `(B, L, heads, t + 1)` masked decoder self-attention of the new position
    /// (Transformer only).
    pub self_attention: Option<Tensor>,
}

impl EncoderDecoder for Seq2Seq {
    type Memory = rnn::Encoded;
    /// `(B, H)` GRU state.
    type State = Tensor;

    fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<rnn::Encoded> {
        Seq2Seq::encode(self, src, mask)
    }
    fn embed_source(&self, src: &Tensor) -> Result<Tensor> {
        Seq2Seq::embed_source(self, src)
    }
    fn encode_embedded(&self, emb: &Tensor, mask: &Tensor) -> Result<rnn::Encoded> {
        Seq2Seq::encode_embedded(self, emb, mask)
    }
    fn initial_state(&self, memory: &rnn::Encoded) -> Result<Tensor> {
        Ok(memory.init.clone())
    }
    fn step(
        &self,
        memory: &rnn::Encoded,
        state: &Tensor,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<NetStep<Tensor>> {
        let step = Seq2Seq::step(self, memory, prev, state, distribution)?;
        Ok(NetStep {
            logits: step.logits,
            state: step.state,
            cross: step.attention.unsqueeze(1)?.unsqueeze(1)?,
            self_attention: None,
        })
    }
    fn step_features(
        &self,
        memory: &rnn::Encoded,
        state: &Tensor,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (features, step) = Seq2Seq::step_features(self, memory, prev, state, distribution)?;
        Ok((features, step.state))
    }
    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        Seq2Seq::logits(self, features)
    }
    fn select_memory(memory: &rnn::Encoded, idx: &Tensor) -> Result<rnn::Encoded> {
        memory.select(idx)
    }
    fn select_state(state: &Tensor, idx: &Tensor) -> Result<Tensor> {
        Ok(state.index_select(idx, 0)?)
    }
    fn join_memory(a: &rnn::Encoded, b: &rnn::Encoded) -> Result<rnn::Encoded> {
        a.join(b)
    }
    fn join_state(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(&[a, b], 0)?)
    }
    fn encoder_attention(_: &rnn::Encoded) -> Option<&Tensor> {
        None
    }
    fn attention_values(&self, memory: &rnn::Encoded) -> Result<Vec<Tensor>> {
        Ok(vec![memory.states.unsqueeze(1)?])
    }
    fn device(memory: &rnn::Encoded) -> &Device {
        memory.states.device()
    }
}

impl EncoderDecoder for Transformer {
    type Memory = TransformerEncoded;
    /// Keys and values of the prefix, per decoder layer.
    type State = KvCache;

    fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<TransformerEncoded> {
        Transformer::encode(self, src, mask, None)
    }
    fn embed_source(&self, src: &Tensor) -> Result<Tensor> {
        Transformer::embed_source(self, src)
    }
    fn encode_embedded(&self, emb: &Tensor, mask: &Tensor) -> Result<TransformerEncoded> {
        Transformer::encode_embedded(self, emb, mask, None)
    }
    fn initial_state(&self, memory: &TransformerEncoded) -> Result<KvCache> {
        self.empty_cache(memory.memory.dim(0)?)
    }
    fn step(
        &self,
        memory: &TransformerEncoded,
        state: &KvCache,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<NetStep<KvCache>> {
        let step = Transformer::step(self, memory, state, prev, distribution)?;
        Ok(NetStep {
            logits: step.logits,
            state: step.cache,
            cross: step.cross_attention,
            self_attention: Some(step.self_attention),
        })
    }
    fn step_features(
        &self,
        memory: &TransformerEncoded,
        state: &KvCache,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, KvCache)> {
        let (features, step) = Transformer::step_features(self, memory, state, prev, distribution)?;
        Ok((features, step.cache))
    }
    fn logits(&self, features: &Tensor) -> Result<Tensor> {
        Transformer::logits(self, features)
    }
    fn select_memory(memory: &TransformerEncoded, idx: &Tensor) -> Result<TransformerEncoded> {
        memory.select(idx)
    }
    fn select_state(state: &KvCache, idx: &Tensor) -> Result<KvCache> {
        state.select(idx)
    }
    fn join_memory(a: &TransformerEncoded, b: &TransformerEncoded) -> Result<TransformerEncoded> {
        a.join(b)
    }
    fn join_state(a: &KvCache, b: &KvCache) -> Result<KvCache> {
        a.join(b)
    }
    fn encoder_attention(memory: &TransformerEncoded) -> Option<&Tensor> {
        Some(&memory.self_attention)
    }
    fn attention_values(&self, memory: &TransformerEncoded) -> Result<Vec<Tensor>> {
        self.cross_head_outputs(memory)
    }
    fn device(memory: &TransformerEncoded) -> &Device {
        memory.memory.device()
    }
}

/// The attention bias of a padded source position.
pub(crate) const MASKED_BIAS: f32 = -1e9;

/// `t` with dimension `dim` padded at its end with `value` up to `len`.
pub(crate) fn pad_to(t: &Tensor, dim: usize, len: usize, value: f32) -> Result<Tensor> {
    let have = t.dim(dim)?;
    if have >= len {
        return Ok(t.clone());
    }
    let mut shape = t.dims().to_vec();
    shape[dim] = len - have;
    let pad = Tensor::full(value, shape, t.device())?.to_dtype(t.dtype())?;
    Ok(Tensor::cat(&[t, &pad], dim)?)
}

/// A translation network of any architecture.
#[derive(Clone, Debug)]
pub enum Network {
    Gru(Seq2Seq),
    Transformer(Transformer),
}

/// Evaluates `$body` with `$m` bound to the concrete model inside a [`Network`], so generic
/// code over [`EncoderDecoder`] runs with the architecture's own types.
#[macro_export]
macro_rules! with_network {
    ($network:expr, |$m:ident| $body:expr) => {
        match $network {
            $crate::networks::Network::Gru($m) => $body,
            $crate::networks::Network::Transformer($m) => $body,
        }
    };
}

/// Tensors of one training batch.
pub struct Batch {
    /// `(B, S)` u32 source ids, right-padded.
    pub src: Tensor,
    /// `(B, S)` f32, 1 at tokens.
    pub src_mask: Tensor,
    /// `(B, T)` u32: `<s>` then the target.
    pub tgt_in: Tensor,
    /// `(N,)` u32 positions (row-major in `B x T`) that hold a real target token.
    pub positions: Tensor,
    /// `(N,)` u32 expected tokens at those positions: the target, then `</s>`.
    pub labels: Tensor,
    /// N, the number of target tokens.
    pub tokens: usize,
}

/// How training attends and regularises, for one step.
pub struct TrainMode {
    /// Straight-through Gumbel noise for hard-attention models; `None` means soft (or, for a
    /// hard model at evaluation, the argmax).
    pub rng: Option<StdRng>,
    pub dropout: Option<Dropout>,
    /// Label smoothing ε of the loss ([`ModelConfig::label_smoothing`]).
    pub label_smoothing: f32,
    /// True when scoring (dev loss): no noise, no dropout, no label smoothing.
    pub eval: bool,
}

impl TrainMode {
    /// The mode of training step `step` of a run seeded with `seed`: noise and dropout
    /// masks depend only on `(seed, step)`, so a resumed run repeats them exactly.
    pub fn for_step(cfg: &ModelConfig, seed: u64, step: usize) -> Self {
        let s = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(step as u64);
        TrainMode {
            rng: (cfg.attention_training() == AttentionTraining::Hard)
                .then(|| StdRng::seed_from_u64(s)),
            dropout: (cfg.dropout > 0.0)
                .then(|| Dropout::new(cfg.dropout as f32, s ^ 0x0005_DEEC_E66D)),
            label_smoothing: cfg.label_smoothing as f32,
            eval: false,
        }
    }

    /// The label smoothing the loss applies: none when scoring.
    pub fn smoothing(&self) -> f32 {
        if self.eval { 0.0 } else { self.label_smoothing }
    }

    /// The mode of shard `shard` of training step `step` (data-parallel training,
    /// [`crate::training::shards`]): each shard draws its own noise and dropout masks, which
    /// depend only on `(seed, step, shard)`.
    pub fn for_shard(cfg: &ModelConfig, seed: u64, step: usize, shard: usize) -> Self {
        let mixed = seed ^ (shard as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Self::for_step(cfg, mixed, step)
    }

    /// Scoring: no noise and no dropout.
    pub fn eval() -> Self {
        TrainMode {
            rng: None,
            dropout: None,
            label_smoothing: 0.0,
            eval: true,
        }
    }
}

impl Network {
    /// The network `cfg` describes, its variables from `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        Ok(match &cfg.architecture {
            Architecture::Gru(g) => Network::Gru(Seq2Seq::new(cfg, g, vb)?),
            Architecture::Transformer(t) => Network::Transformer(Transformer::new(cfg, t, vb)?),
        })
    }

    /// Mean cross-entropy per target token of a batch (teacher forcing), label-smoothed in
    /// training as `cfg` says (never when scoring).
    pub fn loss(&self, cfg: &ModelConfig, batch: &Batch, mode: &mut TrainMode) -> Result<Tensor> {
        match self {
            Network::Gru(m) => {
                let enc = m.encode(&batch.src, &batch.src_mask)?;
                let mut attention = match (&mut mode.rng, cfg.attention_training()) {
                    (Some(rng), _) if !mode.eval => TrainAttention::Gumbel { rng, tau: 1.0 },
                    (_, AttentionTraining::Hard) => TrainAttention::Argmax,
                    _ => TrainAttention::Soft,
                };
                let r = m.teacher_forced(&enc, &batch.tgt_in, &mut attention)?;
                let (b, t, d) = r.dims3()?;
                let mut rows = r.reshape((b * t, d))?.index_select(&batch.positions, 0)?;
                // A GRU's dropout falls on the readout, before the output layer (the
                // encoder and decoder run as fused sequence kernels).
                if let (Some(dropout), false) = (mode.dropout.as_mut(), mode.eval) {
                    rows = dropout.apply(&rows)?;
                }
                m.output_loss(&rows, &batch.labels, mode.smoothing())
            }
            Network::Transformer(m) => {
                let mut dropout = if mode.eval { None } else { mode.dropout.take() };
                let enc = m.encode(&batch.src, &batch.src_mask, dropout.as_mut())?;
                let r = m.teacher_forced(&enc, &batch.tgt_in, dropout.as_mut())?;
                let (b, t, d) = r.dims3()?;
                let rows = r.reshape((b * t, d))?.index_select(&batch.positions, 0)?;
                m.output_loss(&rows, &batch.labels, mode.smoothing())
            }
        }
    }
}
