//! GRU encoder-decoder with additive (Bahdanau) attention that returns the attention it uses.
//!
//! Encoder: source embeddings into a bidirectional GRU (two [`GruCell`]s, the backward one
//! run right to left); its states, `2H` wide, are the attention's keys and values. The
//! decoder state starts as `tanh(W [h_fwd_last; h_bwd_first])`. At step `t` the previous
//! state `s_{t-1}` scores every source position with `v · tanh(W_k h_j + W_q s_{t-1})`
//! (`W_k h_j` computed once per sentence), the softmax of the scores weights the context
//! `c_t`, the GRU reads `[emb(y_{t-1}); c_t]`, and `tanh(W_r [s_t; c_t; emb(y_{t-1})])`
//! feeds the output projection.

use candle_core::{D, DType, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder, embedding, linear, linear_no_bias};

use crate::Result;
use crate::config::{BOS_ID, ModelConfig};
use crate::gru::GruCell;

/// Additive attention `score(h_j, s) = v · tanh(W_k h_j + W_q s)`.
#[derive(Clone, Debug)]
pub struct AdditiveAttention {
    key: Linear,
    query: Linear,
    v: Linear,
}

impl AdditiveAttention {
    pub fn new(key_dim: usize, query_dim: usize, attn_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(AdditiveAttention {
            key: linear_no_bias(key_dim, attn_dim, vb.pp("key"))?,
            query: linear(query_dim, attn_dim, vb.pp("query"))?,
            v: linear_no_bias(attn_dim, 1, vb.pp("v"))?,
        })
    }

    /// Projects encoder states once per sentence: `(B, S, 2H) -> (B, S, A)`.
    pub fn keys(&self, states: &Tensor) -> Result<Tensor> {
        Ok(self.key.forward(states)?)
    }

    /// Attention weights of query `s` over the source.
    ///
    /// # Shapes
    /// - `keys`: `(B, S, A)`, `mask_bias`: `(B, S)` (0 for tokens, -1e9 for padding)
    /// - `s`: `(B, H)`; returns `(B, S)`, each row summing to 1
    pub fn weights(&self, keys: &Tensor, mask_bias: &Tensor, s: &Tensor) -> Result<Tensor> {
        let q = self.query.forward(s)?.unsqueeze(1)?;
        let e = keys.broadcast_add(&q)?.tanh()?;
        let scores = (self.v.forward(&e)?.squeeze(2)? + mask_bias)?;
        // `ops::softmax` is built from differentiable primitives (unlike `softmax_last_dim`).
        Ok(candle_nn::ops::softmax(&scores, D::Minus1)?)
    }
}

/// The encoder's output for a batch of source sentences.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `(B, S, 2H)` bidirectional states (values of the attention).
    pub states: Tensor,
    /// `(B, S, A)` projected states (keys of the attention).
    pub keys: Tensor,
    /// `(B, S)`: 0 at tokens, -1e9 at padding.
    pub mask_bias: Tensor,
    /// `(B, H)` initial decoder state.
    pub init: Tensor,
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
    attention: AdditiveAttention,
    decoder: GruCell,
    readout: Linear,
    output: Linear,
    hidden_dim: usize,
}

impl Seq2Seq {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
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
            attention: AdditiveAttention::new(2 * h, h, a, dec.pp("attention"))?,
            decoder: GruCell::new(&[e, 2 * h], h, dec.pp("gru"))?,
            readout: linear(h + 2 * h + e, r, dec.pp("readout"))?,
            output: linear(r, cfg.tgt_vocab_size, dec.pp("output"))?,
            hidden_dim: h,
        })
    }

    /// Runs the bidirectional encoder.
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32 token ids, right-padded
    /// - `mask`: `(B, S)` f32, 1.0 at tokens and 0.0 at padding
    pub fn encode(&self, src: &Tensor, mask: &Tensor) -> Result<Encoded> {
        let (b, s) = src.dims2()?;
        let emb = self.src_embedding.forward(src)?;
        // Input projections for every position at once, time-major so each step is contiguous.
        let gi_f = self
            .enc_fwd
            .project_input(0, &emb)?
            .transpose(0, 1)?
            .contiguous()?;
        let gi_b = self
            .enc_bwd
            .project_input(0, &emb)?
            .transpose(0, 1)?
            .contiguous()?;
        let keep = mask.t()?.contiguous()?.unsqueeze(2)?; // (S, B, 1)
        let zeros = Tensor::zeros((b, self.hidden_dim), DType::F32, src.device())?;
        let mut h = zeros.clone();
        let mut fwd = Vec::with_capacity(s);
        for t in 0..s {
            h = self.enc_fwd.masked_step(&gi_f.get(t)?, &h, &keep.get(t)?)?;
            fwd.push(h.clone());
        }
        let fwd_last = h;
        // Right to left; padding keeps the state at zero until the last real token.
        let mut h = zeros;
        let mut bwd = vec![None; s];
        for t in (0..s).rev() {
            h = self.enc_bwd.masked_step(&gi_b.get(t)?, &h, &keep.get(t)?)?;
            bwd[t] = Some(h.clone());
        }
        let bwd: Vec<Tensor> = bwd.into_iter().flatten().collect();
        let states = Tensor::cat(&[Tensor::stack(&fwd, 1)?, Tensor::stack(&bwd, 1)?], 2)?;
        let init = self
            .init
            .forward(&Tensor::cat(&[&fwd_last, &bwd[0]], 1)?)?
            .tanh()?;
        let keys = self.attention.keys(&states)?;
        let mask_bias = mask.affine(1e9, -1e9)?;
        Ok(Encoded {
            states,
            keys,
            mask_bias,
            init,
        })
    }

    /// Attention weights and context for decoder state `s`.
    ///
    /// # Shapes
    /// - `s`: `(B, H)`; returns weights `(B, S)` and context `(B, 2H)`
    pub fn attend(&self, enc: &Encoded, s: &Tensor) -> Result<(Tensor, Tensor)> {
        let weights = self.attention.weights(&enc.keys, &enc.mask_bias, s)?;
        let context = self.context(enc, &weights)?;
        Ok((weights, context))
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

    /// One inference step with the model's own (soft) attention.
    ///
    /// # Shapes
    /// - `prev`: `(B,)` u32 previous tokens, `state`: `(B, H)`
    pub fn step(&self, enc: &Encoded, prev: &Tensor, state: &Tensor) -> Result<Step> {
        let (attention, _) = self.attend(enc, state)?;
        self.step_with(enc, prev, state, attention)
    }

    /// One inference step that uses the given attention weights instead of computing them.
    pub fn step_with(
        &self,
        enc: &Encoded,
        prev: &Tensor,
        state: &Tensor,
        attention: Tensor,
    ) -> Result<Step> {
        let emb = self.tgt_embedding.forward(prev)?;
        let context = self.context(enc, &attention)?;
        let gi =
            (self.decoder.project_input(0, &emb)? + self.decoder.project_input(1, &context)?)?;
        let state = self.decoder.step(&gi, state)?;
        let logits = self
            .output
            .forward(&self.readout(&state, &context, &emb)?)?;
        Ok(Step {
            logits,
            state,
            attention,
        })
    }

    /// Teacher-forced decoder readouts for training.
    ///
    /// # Shapes
    /// - `tgt_in`: `(B, T)` u32, `<s>` then the target without its last token
    /// - returns `(B, T, R)`; feed rows to [`Self::logits`]
    pub fn teacher_forced(&self, enc: &Encoded, tgt_in: &Tensor) -> Result<Tensor> {
        let (_, t_len) = tgt_in.dims2()?;
        let emb = self.tgt_embedding.forward(tgt_in)?;
        let gi_e = self
            .decoder
            .project_input(0, &emb)?
            .transpose(0, 1)?
            .contiguous()?;
        let mut s = enc.init.clone();
        let mut states = Vec::with_capacity(t_len);
        let mut contexts = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let (_, c) = self.attend(enc, &s)?;
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

    /// Output scores from readouts: `(N, R) -> (N, V)`.
    pub fn logits(&self, readout: &Tensor) -> Result<Tensor> {
        Ok(self.output.forward(readout)?)
    }
}
