//! GRU encoder-decoder with attention that returns the attention it uses.
//!
//! Encoder: source embeddings into a bidirectional GRU (two [`GruCell`]s, the backward one
//! run right to left); its states, `2H` wide, are the attention's values. The decoder state
//! starts as `tanh(W [h_fwd_last; h_bwd_first])`. At step `t` the previous state `s_{t-1}`
//! scores every source position with one of three [`ScoreLayer`]s: additive (Bahdanau)
//! `v · tanh(W_k h_j + W_q s)`, Luong's multiplicative "general" `s · W_a h_j`, or "dot"
//! `s · (h_fwd_j + h_bwd_j)`; encoder-side projections are computed once per sentence. A
//! distribution over the scores (softmax, or whatever the caller chooses at inference)
//! weights the context `c_t`, the GRU reads `[emb(y_{t-1}); c_t]`, and
//! `tanh(W_r [s_t; c_t; emb(y_{t-1})])` feeds the output projection. All three scorers share
//! this decoder, so they differ in the score alone.

use candle_core::{D, DType, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder, embedding, linear, linear_no_bias};
use rand::Rng;
use rand::rngs::StdRng;

use crate::config::{BOS_ID, GruConfig, ModelConfig, Scorer};
use crate::kernels::dense_layer::DenseLayer;
use crate::kernels::fused::usable;
use crate::kernels::fused_rnn;
use crate::kernels::fused_seq::{
    self, BiGruSequence, DecoderLoop, LoopAttention, LoopInputs, LoopScore,
};
use crate::kernels::ops::{dense, softmax};
use crate::networks::gru::GruCell;
use crate::networks::{MASKED_BIAS, pad_to};
use crate::{Error, Result};

/// How a source position is scored against the decoder state.
#[derive(Clone, Debug)]
pub enum ScoreLayer {
    /// `v · tanh(W_k h_j + W_q s)` (Bahdanau et al. 2015).
    Additive {
        key: Linear,
        query: DenseLayer,
        v: Linear,
    },
    /// `s · W_a h_j` (Luong et al. 2015, "general").
    General { key: Linear },
    /// `s · (h_fwd_j + h_bwd_j)` (Luong et al. 2015, "dot"; the two encoder directions are
    /// summed so that keys have the decoder's width). No parameters.
    Dot { hidden: usize },
}

impl ScoreLayer {
    /// The layer of scorer `kind` for encoder states `2H` wide and decoder states `H` wide.
    pub fn new(kind: Scorer, hidden: usize, attn_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match kind {
            Scorer::Additive => ScoreLayer::Additive {
                key: linear_no_bias(2 * hidden, attn_dim, vb.pp("key"))?,
                query: DenseLayer::new(linear(hidden, attn_dim, vb.pp("query"))?),
                v: linear_no_bias(attn_dim, 1, vb.pp("v"))?,
            },
            Scorer::General => ScoreLayer::General {
                key: linear_no_bias(2 * hidden, hidden, vb.pp("key"))?,
            },
            Scorer::Dot => ScoreLayer::Dot { hidden },
        })
    }

    /// Encoder-side part of the score, once per sentence: `(B, S, 2H) -> (B, S, K)`.
    pub fn keys(&self, states: &Tensor) -> Result<Tensor> {
        Ok(match self {
            ScoreLayer::Additive { key, .. } | ScoreLayer::General { key } => dense(key, states)?,
            ScoreLayer::Dot { hidden } => {
                (states.narrow(D::Minus1, 0, *hidden)?
                    + states.narrow(D::Minus1, *hidden, *hidden)?)?
            }
        })
    }

    /// Masked scores of query `s` over the source.
    ///
    /// # Shapes
    /// - `keys`: `(B, S, K)`, `mask_bias`: `(B, S)` (0 for tokens, -1e9 for padding)
    /// - `s`: `(B, H)`; returns `(B, S)`
    pub fn scores(&self, keys: &Tensor, mask_bias: &Tensor, s: &Tensor) -> Result<Tensor> {
        let raw = match self {
            ScoreLayer::Additive { query, v, .. } => {
                let q = query.forward(s)?;
                if usable(keys) && usable(&q) {
                    keys.contiguous()?
                        .apply_op3(&q, v.weight(), fused_rnn::AdditiveScore)?
                } else {
                    v.forward(&keys.broadcast_add(&q.unsqueeze(1)?)?.tanh()?)?
                        .squeeze(2)?
                }
            }
            ScoreLayer::General { .. } | ScoreLayer::Dot { .. } => {
                keys.matmul(&s.unsqueeze(2)?.contiguous()?)?.squeeze(2)?
            }
        };
        Ok((raw + mask_bias)?)
    }
}

/// The attention used while training or scoring with teacher forcing.
pub enum TrainAttention<'a> {
    /// Softmax (soft attention models; the gradient flows through every weight).
    Soft,
    /// One-hot at the argmax, no noise (scoring a hard-attention model).
    Argmax,
    /// Straight-through Gumbel-softmax (Jang et al. 2017): the forward pass uses the one-hot
    /// of `argmax(scores + g)` with Gumbel noise `g`, the backward pass the gradient of
    /// `softmax((scores + g) / tau)`.
    Gumbel { rng: &'a mut StdRng, tau: f64 },
}

impl TrainAttention<'_> {
    /// Weights from masked scores `(B, S)`.
    pub fn weights(&mut self, scores: &Tensor) -> Result<Tensor> {
        match self {
            TrainAttention::Soft => softmax(scores),
            TrainAttention::Argmax => one_hot_argmax(scores),
            TrainAttention::Gumbel { rng, tau } => {
                let g = gumbel_noise(rng, scores.elem_count());
                let noisy = (scores + Tensor::from_vec(g, scores.shape(), scores.device())?)?;
                let soft = softmax(&(noisy.clone() / *tau)?)?;
                let hard = one_hot_argmax(&noisy)?;
                Ok(((hard - soft.detach())? + soft)?)
            }
        }
    }
}

/// `n` draws of standard Gumbel noise.
fn gumbel_noise(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f32 = rng.random_range(1e-9..1.0);
            -(-u.ln()).ln()
        })
        .collect()
}

/// One-hot rows at the argmax of the last dimension of a `(B, S)` tensor.
fn one_hot_argmax(scores: &Tensor) -> Result<Tensor> {
    let (b, s) = scores.dims2()?;
    let idx = scores.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let mut v = vec![0f32; b * s];
    for (i, &j) in idx.iter().enumerate() {
        v[i * s + j as usize] = 1.0;
    }
    Ok(Tensor::from_vec(v, (b, s), scores.device())?)
}

/// The encoder's output for a batch of source sentences.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `(B, S, 2H)` bidirectional states (values of the attention).
    pub states: Tensor,
    /// `(B, S, K)` encoder side of the scores, see [`ScoreLayer::keys`].
    pub keys: Tensor,
    /// `(B, S)`: 0 at tokens, -1e9 at padding.
    pub mask_bias: Tensor,
    /// `(B, H)` initial decoder state.
    pub init: Tensor,
}

impl Encoded {
    /// Rows `idx` of every part (duplicating or reordering sentences, as beam search does).
    pub fn select(&self, idx: &Tensor) -> Result<Encoded> {
        Ok(Encoded {
            states: self.states.index_select(idx, 0)?,
            keys: self.keys.index_select(idx, 0)?,
            mask_bias: self.mask_bias.index_select(idx, 0)?,
            init: self.init.index_select(idx, 0)?,
        })
    }

    /// This batch's rows, then `other`'s, their sources padded to the longer of the two
    /// (decoders that batch requests as they come join their encodings).
    pub fn join(&self, other: &Encoded) -> Result<Encoded> {
        let s = self.mask_bias.dim(1)?.max(other.mask_bias.dim(1)?);
        Ok(Encoded {
            states: Tensor::cat(
                &[
                    pad_to(&self.states, 1, s, 0.0)?,
                    pad_to(&other.states, 1, s, 0.0)?,
                ],
                0,
            )?,
            keys: Tensor::cat(
                &[
                    pad_to(&self.keys, 1, s, 0.0)?,
                    pad_to(&other.keys, 1, s, 0.0)?,
                ],
                0,
            )?,
            mask_bias: Tensor::cat(
                &[
                    pad_to(&self.mask_bias, 1, s, MASKED_BIAS)?,
                    pad_to(&other.mask_bias, 1, s, MASKED_BIAS)?,
                ],
                0,
            )?,
            init: Tensor::cat(&[&self.init, &other.init], 0)?,
        })
    }
}

/// What one decoding step produced.
#[derive(Clone, Debug)]
pub struct Step {
    /// `(B, V)` unnormalised scores of the next token.
    pub logits: Tensor,
    /// `(B, H)` new decoder state.
    pub state: Tensor,
    /// `(B, S)` the attention weights this step used.
    pub attention: Tensor,
}

#[derive(Clone, Debug)]
pub struct Seq2Seq {
    src_embedding: Embedding,
    tgt_embedding: Embedding,
    enc_fwd: GruCell,
    enc_bwd: GruCell,
    init: Linear,
    attention: ScoreLayer,
    decoder: GruCell,
    readout: DenseLayer,
    output: DenseLayer,
    hidden_dim: usize,
}

impl Seq2Seq {
    /// The GRU model `gru` at the sizes of `cfg`.
    pub fn new(cfg: &ModelConfig, gru: &GruConfig, vb: VarBuilder) -> Result<Self> {
        let (e, h, a, r) = (
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.attention_dim,
            cfg.readout_dim,
        );
        let enc = vb.pp("encoder");
        let dec = vb.pp("decoder");
        Ok(Seq2Seq {
            src_embedding: embedding(cfg.src_vocab_size, e, enc.pp("embedding"))?,
            enc_fwd: GruCell::new(&[e], h, enc.pp("gru_fwd"))?,
            enc_bwd: GruCell::new(&[e], h, enc.pp("gru_bwd"))?,
            init: linear(2 * h, h, dec.pp("init"))?,
            tgt_embedding: embedding(cfg.tgt_vocab_size, e, dec.pp("embedding"))?,
            attention: ScoreLayer::new(gru.scorer, h, a, dec.pp("attention"))?,
            decoder: GruCell::new(&[e, 2 * h], h, dec.pp("gru"))?,
            readout: DenseLayer::new(linear(h + 2 * h + e, r, dec.pp("readout"))?),
            output: DenseLayer::new(linear(r, cfg.tgt_vocab_size, dec.pp("output"))?),
            hidden_dim: h,
        })
    }

    /// Runs the bidirectional encoder.
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32 token ids, right-padded
    /// - `mask`: `(B, S)` f32, 1.0 at tokens and 0.0 at padding
    pub fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<Encoded> {
        self.encode_embedded(&self.embed_source(src)?, mask)
    }

    /// The source embeddings the encoder reads: `(B, S)` ids to `(B, S, E)`.
    pub fn embed_source(&self, src: &Tensor) -> Result<Tensor> {
        Ok(self.src_embedding.forward(src)?)
    }

    /// [`Self::encode`] from source embeddings (attribution differentiates with respect to
    /// them, see [`crate::explain`]).
    ///
    /// # Shapes
    /// - `emb`: `(B, S, E)`; `mask`: `(B, S)` f32, 1.0 at tokens and 0.0 at padding
    pub fn encode_embedded(&self, emb: &Tensor, mask: &Tensor) -> Result<Encoded> {
        let (b, s, _) = emb.dims3()?;
        // Input projections for every position at once, time-major so each step is contiguous.
        let gi_f = self
            .enc_fwd
            .project_input(0, emb)?
            .transpose(0, 1)?
            .contiguous()?;
        let gi_b = self
            .enc_bwd
            .project_input(0, emb)?
            .transpose(0, 1)?
            .contiguous()?;
        // keep[t][b]: 1 at tokens, 0 at padding.
        let keep = mask.t()?.to_vec2::<f32>()?;
        let (states, fwd_last, bwd_first) =
            match (self.enc_fwd.hidden_parts(), self.enc_bwd.hidden_parts()) {
                // The sequence op when training; decoding (no gradient) keeps the step loop,
                // which allocates less per sentence and stays on one thread.
                (Some((wf, bf)), Some((wb, bb)))
                    if gi_f.track_op() && usable(&gi_f) && s > 0 && fused_seq::enabled() =>
                {
                    let gi = Tensor::stack(&[&gi_f, &gi_b], 0)?;
                    let w = Tensor::stack(&[wf, wb], 0)?;
                    let bias = Tensor::stack(&[bf, bb], 0)?;
                    let op = BiGruSequence::run(&gi, &w, &bias, keep)?;
                    let out = gi.apply_op3(&w, &bias, op)?; // (2, S, B, H)
                    let states = out.permute((2, 1, 0, 3))?.contiguous()?.reshape((
                        b,
                        s,
                        2 * self.hidden_dim,
                    ))?;
                    (states, out.get(0)?.get(s - 1)?, out.get(1)?.get(0)?)
                }
                _ => self.encode_steps(&gi_f, &gi_b, &keep, b)?,
            };
        let init = dense(&self.init, &Tensor::cat(&[&fwd_last, &bwd_first], 1)?)?.tanh()?;
        let keys = self.attention.keys(&states)?;
        let mask_bias = mask.affine(1e9, -1e9)?;
        Ok(Encoded {
            states,
            keys,
            mask_bias,
            init,
        })
    }

    /// The encoder recurrence step by step (devices other than the CPU): states
    /// `(B, S, 2H)`, the last forward state and the first backward state.
    fn encode_steps(
        &self,
        gi_f: &Tensor,
        gi_b: &Tensor,
        keep: &[Vec<f32>],
        b: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let s = keep.len();
        let zeros = Tensor::zeros((b, self.hidden_dim), DType::F32, gi_f.device())?;
        let mut h = zeros.clone();
        let mut fwd = Vec::with_capacity(s);
        for (t, keep) in keep.iter().enumerate() {
            h = self.enc_fwd.masked_step(&gi_f.get(t)?, &h, keep)?;
            fwd.push(h.clone());
        }
        let fwd_last = h;
        // Right to left; padding keeps the state at zero until the last real token.
        let mut h = zeros;
        let mut bwd = vec![None; s];
        for t in (0..s).rev() {
            h = self.enc_bwd.masked_step(&gi_b.get(t)?, &h, &keep[t])?;
            bwd[t] = Some(h.clone());
        }
        let bwd: Vec<Tensor> = bwd.into_iter().flatten().collect();
        let states = Tensor::cat(&[Tensor::stack(&fwd, 1)?, Tensor::stack(&bwd, 1)?], 2)?;
        let bwd_first = bwd
            .first()
            .cloned()
            .ok_or_else(|| Error::Internal("cannot encode an empty source".into()))?;
        Ok((states, fwd_last, bwd_first))
    }

    /// Masked attention scores of decoder state `s` over the source.
    ///
    /// # Shapes
    /// - `s`: `(B, H)`; returns `(B, S)` with -1e9 at padding
    pub fn scores(&self, enc: &Encoded, s: &Tensor) -> Result<Tensor> {
        self.attention.scores(&enc.keys, &enc.mask_bias, s)
    }

    /// The context vector for given attention weights (any distribution over the source).
    ///
    /// # Shapes
    /// - `weights`: `(B, S)`; returns `(B, 2H)`
    pub fn context(&self, enc: &Encoded, weights: &Tensor) -> Result<Tensor> {
        Ok(weights.unsqueeze(1)?.matmul(&enc.states)?.squeeze(1)?)
    }

    /// `tanh(W_r [s; c; e])` for any leading shape `(..., H)`, `(..., 2H)`, `(..., E)`.
    fn readout(&self, s: &Tensor, c: &Tensor, e: &Tensor) -> Result<Tensor> {
        Ok(self
            .readout
            .forward(&Tensor::cat(&[s, c, e], D::Minus1)?)?
            .tanh()?)
    }

    /// Ids of the first decoder input (`<s>`) for a batch.
    pub fn bos(&self, batch: usize, enc: &Encoded) -> Result<Tensor> {
        Ok(Tensor::full(BOS_ID, batch, enc.states.device())?)
    }

    /// One inference step; `distribution` turns the masked scores `(B, S)` into the weights
    /// used (softmax for the model's own soft attention).
    ///
    /// # Shapes
    /// - `prev`: `(B,)` u32 previous tokens, `state`: `(B, H)`
    pub fn step(
        &self,
        enc: &Encoded,
        prev: &Tensor,
        state: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Step> {
        let (readout, step) = self.step_features(enc, prev, state, distribution)?;
        Ok(Step {
            logits: self.output.forward(&readout)?,
            ..step
        })
    }

    /// [`Self::step`] up to the output layer: the readout `(B, R)` (feed rows of it to
    /// [`Self::logits`]) and the step, whose `logits` are left empty. Attribution scores
    /// one row per step, so it skips the other rows' output layer.
    pub fn step_features(
        &self,
        enc: &Encoded,
        prev: &Tensor,
        state: &Tensor,
        distribution: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Step)> {
        let attention = distribution(&self.scores(enc, state)?)?;
        let emb = self.tgt_embedding.forward(prev)?;
        let context = self.context(enc, &attention)?;
        let gi =
            (self.decoder.project_input(0, &emb)? + self.decoder.project_input(1, &context)?)?;
        let state = self.decoder.step(&gi, state)?;
        let readout = self.readout(&state, &context, &emb)?;
        let empty = Tensor::zeros(0, DType::F32, state.device())?;
        Ok((
            readout,
            Step {
                logits: empty,
                state,
                attention,
            },
        ))
    }

    /// Teacher-forced decoder readouts for training.
    ///
    /// # Shapes
    /// - `tgt_in`: `(B, T)` u32, `<s>` then the target without its last token
    /// - returns `(B, T, R)`; feed rows to [`Self::logits`]
    pub fn teacher_forced(
        &self,
        enc: &Encoded,
        tgt_in: &Tensor,
        attention: &mut TrainAttention,
    ) -> Result<Tensor> {
        let (_, t_len) = tgt_in.dims2()?;
        let emb = self.tgt_embedding.forward(tgt_in)?;
        let gi_e = self
            .decoder
            .project_input(0, &emb)?
            .transpose(0, 1)?
            .contiguous()?;
        if let Some(out) = self.decoder_loop(enc, &gi_e, attention)? {
            return Ok(self
                .readout
                .forward(&Tensor::cat(&[&out, &emb], D::Minus1)?)?
                .tanh()?);
        }
        let mut s = enc.init.clone();
        let mut states = Vec::with_capacity(t_len);
        let mut contexts = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let c = self.context(enc, &attention.weights(&self.scores(enc, &s)?)?)?;
            let gi = (gi_e.get(t)? + self.decoder.project_input(1, &c)?)?;
            s = self.decoder.step(&gi, &s)?;
            states.push(s.clone());
            contexts.push(c);
        }
        self.readout(
            &Tensor::stack(&states, 1)?,
            &Tensor::stack(&contexts, 1)?,
            &emb,
        )
    }

    /// The whole teacher-forced recurrence as one op ([`DecoderLoop`]) on the CPU:
    /// `(B, T, 3H)`, each position's state then context. `None` where it does not apply.
    fn decoder_loop(
        &self,
        enc: &Encoded,
        gi_e: &Tensor,
        attention: &mut TrainAttention,
    ) -> Result<Option<Tensor>> {
        let (Some((whh, bhh)), Some(wc)) =
            (self.decoder.hidden_parts(), self.decoder.input_weight(1))
        else {
            return Ok(None);
        };
        if !(usable(&enc.keys) && usable(&enc.states) && usable(gi_e) && fused_seq::enabled()) {
            return Ok(None);
        }
        let score = match &self.attention {
            ScoreLayer::Additive { query, v, .. } => match query.bias() {
                Some(bq) => LoopScore::Additive {
                    wq: query.weight().clone(),
                    bq: bq.clone(),
                    v: v.weight().clone(),
                },
                None => return Ok(None),
            },
            ScoreLayer::General { .. } | ScoreLayer::Dot { .. } => LoopScore::Dot,
        };
        let (b, s, _) = enc.states.dims3()?;
        let t_len = gi_e.dim(0)?;
        let attention = match attention {
            TrainAttention::Soft => LoopAttention::Soft,
            TrainAttention::Argmax => LoopAttention::Argmax,
            TrainAttention::Gumbel { rng, tau } => LoopAttention::Gumbel {
                noise: (0..t_len).map(|_| gumbel_noise(rng, b * s)).collect(),
                tau: *tau as f32,
            },
        };
        let inputs = LoopInputs {
            gi_e,
            wc,
            whh,
            bhh,
            s0: &enc.init,
        };
        let packed = DecoderLoop::pack(&inputs, &score)?;
        let op = DecoderLoop::run(
            &enc.keys,
            &enc.states,
            &enc.mask_bias,
            &inputs,
            &score,
            &attention,
        )?;
        Ok(Some(enc.keys.apply_op3(&enc.states, &packed, op)?))
    }

    /// Output scores from readouts: `(N, R) -> (N, V)`.
    pub fn logits(&self, readout: &Tensor) -> Result<Tensor> {
        self.output.forward(readout)
    }

    /// Mean cross-entropy of the output scores of readouts `(N, R)` against `targets`
    /// `(N,)`, label-smoothed by `smoothing` (0: none).
    pub fn output_loss(
        &self,
        readout: &Tensor,
        targets: &Tensor,
        smoothing: f32,
    ) -> Result<Tensor> {
        crate::kernels::ops::output_loss(self.output.linear(), readout, targets, smoothing)
    }
}
