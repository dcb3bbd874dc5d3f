//! One interface over the architectures, for the decoder and the trainer: encode a batch,
//! take one decoding step with a caller-chosen attention distribution, compute the
//! teacher-forced loss.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::{Architecture, AttentionTraining, ModelConfig};
use crate::data::Batch;
use crate::dropout::Dropout;
use crate::rnn::{self, Seq2Seq, TrainAttention};
use crate::transformer::{KvCache, Transformer, TransformerEncoded};
use crate::{Error, Result};

/// A translation network of any architecture.
#[derive(Clone, Debug)]
pub enum Network {
    Gru(Seq2Seq),
    Transformer(Transformer),
}

/// The encoder's output for a batch.
#[derive(Clone, Debug)]
pub enum Memory {
    Gru(rnn::Encoded),
    Transformer(TransformerEncoded),
}

/// The decoder's state between steps.
#[derive(Clone, Debug)]
pub enum DecoderState {
    /// `(B, H)` GRU state.
    Gru(Tensor),
    /// Keys and values of the prefix, per decoder layer.
    Transformer(KvCache),
}

/// What one decoding step produced.
#[derive(Clone, Debug)]
pub struct NetStep {
    /// `(B, V)` unnormalised scores of the next token.
    pub logits: Tensor,
    pub state: DecoderState,
    /// `(B, L, heads, S)` attention over the source actually used; `(B, 1, 1, S)` for a GRU.
    pub cross: Tensor,
    /// `(B, L, heads, t + 1)` masked decoder self-attention of the new position
    /// (Transformer only).
    pub self_attention: Option<Tensor>,
}

/// How training attends and regularises, for one step.
pub struct TrainMode {
    /// Straight-through Gumbel noise for hard-attention models; `None` means soft (or, for a
    /// hard model at evaluation, the argmax).
    pub rng: Option<StdRng>,
    pub dropout: Option<Dropout>,
    /// True when scoring (dev loss): no noise, no dropout.
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
            eval: false,
        }
    }

    /// Scoring: no noise and no dropout.
    pub fn eval() -> Self {
        TrainMode {
            rng: None,
            dropout: None,
            eval: true,
        }
    }
}

impl Network {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        Ok(match &cfg.architecture {
            Architecture::Gru(g) => Network::Gru(Seq2Seq::new(cfg, g, vb)?),
            Architecture::Transformer(t) => Network::Transformer(Transformer::new(cfg, t, vb)?),
        })
    }

    /// Encodes a batch for decoding.
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32, right-padded; `mask`: `(B, S)` f32, 1 at tokens
    pub fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<Memory> {
        Ok(match self {
            Network::Gru(m) => Memory::Gru(m.encode(src, mask)?),
            Network::Transformer(m) => Memory::Transformer(m.encode(src, mask, None)?),
        })
    }

    /// The source embeddings the encoder reads (token embeddings, before a Transformer's
    /// scaling and positions).
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32; returns `(B, S, E)`
    pub fn embed_source(&self, src: &Tensor) -> Result<Tensor> {
        match self {
            Network::Gru(m) => m.embed_source(src),
            Network::Transformer(m) => m.embed_source(src),
        }
    }

    /// [`Self::encode`] from source embeddings (see [`Self::embed_source`]).
    ///
    /// # Shapes
    /// - `emb`: `(B, S, E)`; `mask`: `(B, S)` f32, 1 at tokens
    pub fn encode_embedded(&self, emb: &Tensor, mask: &Tensor) -> Result<Memory> {
        Ok(match self {
            Network::Gru(m) => Memory::Gru(m.encode_embedded(emb, mask)?),
            Network::Transformer(m) => Memory::Transformer(m.encode_embedded(emb, mask, None)?),
        })
    }

    /// The decoder state before the first step.
    pub fn initial_state(&self, memory: &Memory) -> Result<DecoderState> {
        Ok(match (self, memory) {
            (Network::Gru(_), Memory::Gru(e)) => DecoderState::Gru(e.init.clone()),
            (Network::Transformer(m), Memory::Transformer(e)) => {
                DecoderState::Transformer(m.empty_cache(e.memory.dim(0)?)?)
            }
            _ => return Err(mismatch()),
        })
    }

    /// One step from the previous tokens `prev` `(B,)`; `distribution` maps masked scores
    /// `(..., S)` to the weights used.
    pub fn step(
        &self,
        memory: &Memory,
        state: &DecoderState,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<NetStep> {
        Ok(match (self, memory, state) {
            (Network::Gru(m), Memory::Gru(e), DecoderState::Gru(s)) => {
                let step = m.step(e, prev, s, distribution)?;
                NetStep {
                    logits: step.logits,
                    state: DecoderState::Gru(step.state),
                    cross: step.attention.unsqueeze(1)?.unsqueeze(1)?,
                    self_attention: None,
                }
            }
            (Network::Transformer(m), Memory::Transformer(e), DecoderState::Transformer(c)) => {
                let step = m.step(e, c, prev, distribution)?;
                NetStep {
                    logits: step.logits,
                    state: DecoderState::Transformer(step.cache),
                    cross: step.cross_attention,
                    self_attention: Some(step.self_attention),
                }
            }
            _ => return Err(mismatch()),
        })
    }

    /// [`Self::step`] up to the output layer: the features `(B, R)` that
    /// [`Self::logits`] turns into next-token scores, and the new state.
    pub fn step_features(
        &self,
        memory: &Memory,
        state: &DecoderState,
        prev: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, DecoderState)> {
        Ok(match (self, memory, state) {
            (Network::Gru(m), Memory::Gru(e), DecoderState::Gru(s)) => {
                let (features, step) = m.step_features(e, prev, s, distribution)?;
                (features, DecoderState::Gru(step.state))
            }
            (Network::Transformer(m), Memory::Transformer(e), DecoderState::Transformer(c)) => {
                let (features, step) = m.step_features(e, c, prev, distribution)?;
                (features, DecoderState::Transformer(step.cache))
            }
            _ => return Err(mismatch()),
        })
    }

    /// Next-token scores `(N, V)` from step features `(N, R)`.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        match self {
            Network::Gru(m) => m.logits(features),
            Network::Transformer(m) => m.logits(features),
        }
    }

    /// Mean cross-entropy per target token of a batch (teacher forcing).
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
                let rows = r.reshape((b * t, d))?.index_select(&batch.positions, 0)?;
                m.output_loss(&rows, &batch.labels)
            }
            Network::Transformer(m) => {
                let mut dropout = if mode.eval { None } else { mode.dropout.take() };
                let enc = m.encode(&batch.src, &batch.src_mask, dropout.as_mut())?;
                let r = m.teacher_forced(&enc, &batch.tgt_in, dropout.as_mut())?;
                let (b, t, d) = r.dims3()?;
                let rows = r.reshape((b * t, d))?.index_select(&batch.positions, 0)?;
                m.output_loss(&rows, &batch.labels)
            }
        }
    }

    /// Encoder self-attention, `(B, L, heads, S, S)` (Transformer only).
    pub fn encoder_attention(memory: &Memory) -> Option<&Tensor> {
        match memory {
            Memory::Transformer(e) => Some(&e.self_attention),
            Memory::Gru(_) => None,
        }
    }

    /// The device of a memory's tensors.
    pub fn device(memory: &Memory) -> &Device {
        match memory {
            Memory::Gru(e) => e.states.device(),
            Memory::Transformer(e) => e.memory.device(),
        }
    }
}

impl Memory {
    /// Rows `idx` (u32, `(B',)`) of the batch: beam search duplicates and reorders sentences.
    pub fn select(&self, idx: &Tensor) -> Result<Memory> {
        Ok(match self {
            Memory::Gru(e) => Memory::Gru(e.select(idx)?),
            Memory::Transformer(e) => Memory::Transformer(e.select(idx)?),
        })
    }
}

impl DecoderState {
    /// Rows `idx` of the batch.
    pub fn select(&self, idx: &Tensor) -> Result<DecoderState> {
        Ok(match self {
            DecoderState::Gru(s) => DecoderState::Gru(s.index_select(idx, 0)?),
            DecoderState::Transformer(c) => DecoderState::Transformer(c.select(idx)?),
        })
    }
}

fn mismatch() -> Error {
    Error::Invalid("the decoder state does not belong to this network".into())
}
