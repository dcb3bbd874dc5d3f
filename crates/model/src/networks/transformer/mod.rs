//! Encoder-decoder Transformer that returns every attention it computes.
//!
//! Pre-norm layers (Vaswani et al. 2017, with the layer norm moved before each sublayer as
//! in most later implementations): the source and target embeddings, scaled by `sqrt(d)`,
//! get sinusoidal positions; each encoder layer is `x + SelfAttn(LN(x))` then
//! `x + FF(LN(x))`, each decoder layer adds `x + CrossAttn(LN(x), memory)` between the two;
//! the encoder and decoder outputs get a final layer norm, and a `Linear(d -> V)` gives the
//! next-token scores. Encoder self-attention and cross-attention ignore source padding
//! (weight exactly 0); decoder self-attention is causal.
//!
//! [`Transformer::encode`] runs the encoder once per batch and projects the cross-attention
//! keys and values of every decoder layer there. [`Transformer::step`] decodes one position
//! with a key/value cache, so a step costs the same at any position, and lets a closure
//! choose the cross-attention weights that are used (and returned).
//! [`Transformer::teacher_forced`] decodes every position at once for training.
//!
//! Layer norm, softmax and the bias of every linear layer run as single CPU kernels with
//! their own backward pass (module [`crate::kernels::fused`]): candle's fused versions have none and silently
//! drop gradients, and its differentiable compositions are several times slower. Training and
//! decoding run the same code, so the attention weights returned are always exactly the
//! ones the model used, whether or not gradients are tracked.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, Module, VarBuilder, embedding, linear};

use crate::config::{ModelConfig, TransformerConfig, TransformerLayout};
use crate::kernels::dense_layer::DenseLayer;
pub use crate::kernels::ops::cross_entropy;
use crate::networks::dropout::Dropout;
// MASKED: the attention bias of a masked position (its weight after the softmax is exactly 0).
use crate::networks::{MASKED_BIAS as MASKED, pad_to};
use crate::{Error, Result};

mod blocks;
mod cache;
mod layers;
pub use blocks::{DecoderLayer, EncoderLayer};
pub use cache::KvCache;
pub use layers::{FeedForward, LayerNorm, MultiHeadAttention, init_layer_norms};

const LAYER_NORM_EPS: f32 = 1e-5;
/// Positions whose sinusoids are computed once; longer sequences compute the rest on demand.
const POSITION_TABLE: usize = 512;

fn apply_dropout(dropout: &mut Option<&mut Dropout>, x: Tensor) -> Result<Tensor> {
    match dropout {
        Some(d) => d.apply(&x),
        None => Ok(x),
    }
}

/// Sinusoidal positions `start..start + len` as `(len, d)`, with `angle(pos, i) = pos /
/// 10000^(2i/d)`. Pre-norm (ours): `sin` of `angle(pos, i)` in even columns `2i`, the
/// cosine in odd columns `2i + 1`. Marian: the sines of `i = 0..ceil(d/2)` in the first
/// half, then the cosines (Hugging Face's `MarianSinusoidalPositionalEmbedding`).
fn sinusoids(
    start: usize,
    len: usize,
    d: usize,
    layout: TransformerLayout,
    device: &Device,
) -> Result<Tensor> {
    let angle = |pos: usize, i: usize| pos as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
    let half = d.div_ceil(2);
    let mut values = Vec::with_capacity(len * d);
    for pos in start..start + len {
        for j in 0..d {
            let v = match layout {
                TransformerLayout::PreNorm if j % 2 == 0 => angle(pos, j / 2).sin(),
                TransformerLayout::PreNorm => angle(pos, j / 2).cos(),
                TransformerLayout::Marian if j < half => angle(pos, j).sin(),
                TransformerLayout::Marian => angle(pos, j - half).cos(),
            };
            values.push(v as f32);
        }
    }
    Ok(Tensor::from_vec(values, (len, d), device)?)
}

/// `(1, 1, T, T)`: 0 on and below the diagonal, [`MASKED`] above it (a query sees itself and
/// the positions before it).
fn causal_bias(t: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..t * t)
        .map(|k| if k % t > k / t { MASKED } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(values, (1, 1, t, t), device)?)
}

/// The encoder's output for a batch of source sentences, with what every decoding step
/// needs from it.
#[derive(Clone, Debug)]
pub struct TransformerEncoded {
    /// `(B, S, D)` final encoder output (after the final layer norm).
    pub memory: Tensor,
    /// `(B, S)` f32: 0 at tokens, -1e9 at padding.
    pub mask_bias: Tensor,
    /// `(B, L, heads, S, S)` encoder self-attention weights of every layer (query, key).
    pub self_attention: Tensor,
    /// Per decoder layer, the cross-attention keys and values, `(B, heads, S, dh)` each.
    cross_kv: Vec<(Tensor, Tensor)>,
}

impl TransformerEncoded {
    /// The batch rows `idx` (u32, `(B',)`) in that order, repeats allowed (beam search).
    pub fn select(&self, idx: &Tensor) -> Result<TransformerEncoded> {
        Ok(TransformerEncoded {
            memory: self.memory.index_select(idx, 0)?,
            mask_bias: self.mask_bias.index_select(idx, 0)?,
            self_attention: self.self_attention.index_select(idx, 0)?,
            cross_kv: self
                .cross_kv
                .iter()
                .map(|(k, v)| Ok((k.index_select(idx, 0)?, v.index_select(idx, 0)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// Batch size.
    pub fn batch(&self) -> Result<usize> {
        Ok(self.memory.dim(0)?)
    }

    /// This batch's rows, then `other`'s, their sources padded to the longer of the two.
    pub fn join(&self, other: &TransformerEncoded) -> Result<TransformerEncoded> {
        let s = self.memory.dim(1)?.max(other.memory.dim(1)?);
        let cat = |a: &Tensor, b: &Tensor, dims: &[usize], value: f32| -> Result<Tensor> {
            let (mut a, mut b) = (a.clone(), b.clone());
            for &d in dims {
                a = pad_to(&a, d, s, value)?;
                b = pad_to(&b, d, s, value)?;
            }
            Ok(Tensor::cat(&[a, b], 0)?)
        };
        Ok(TransformerEncoded {
            memory: cat(&self.memory, &other.memory, &[1], 0.0)?,
            mask_bias: cat(&self.mask_bias, &other.mask_bias, &[1], MASKED)?,
            self_attention: cat(&self.self_attention, &other.self_attention, &[3, 4], 0.0)?,
            cross_kv: self
                .cross_kv
                .iter()
                .zip(&other.cross_kv)
                .map(|((ka, va), (kb, vb))| Ok((cat(ka, kb, &[2], 0.0)?, cat(va, vb, &[2], 0.0)?)))
                .collect::<Result<_>>()?,
        })
    }
}

/// What one decoding step produced.
#[derive(Clone, Debug)]
pub struct TransformerStep {
    /// `(B, V)` unnormalised scores of the next token.
    pub logits: Tensor,
    /// The cache extended by this position.
    pub cache: KvCache,
    /// `(B, L, heads, t + 1)` decoder self-attention of the new position over positions `0..=t`.
    pub self_attention: Tensor,
    /// `(B, L, heads, S)` the cross-attention weights this step used.
    pub cross_attention: Tensor,
}

/// Encoder-decoder Transformer; see the module documentation.
#[derive(Clone, Debug)]
pub struct Transformer {
    src_embedding: Embedding,
    tgt_embedding: Embedding,
    encoder: Vec<EncoderLayer>,
    /// The final layer norms (pre-norm layout only).
    encoder_norm: Option<LayerNorm>,
    decoder: Vec<DecoderLayer>,
    decoder_norm: Option<LayerNorm>,
    output: DenseLayer,
    /// `(POSITION_TABLE, D)` sinusoids.
    positions: Tensor,
    layout: TransformerLayout,
    d_model: usize,
    heads: usize,
}

impl Transformer {
    /// Variables: `encoder.embedding`, `encoder.layers.<i>.{self_attn.{q,k,v,o},
    /// self_attn_norm, ff.{fc1,fc2}, ff_norm}`, `encoder.norm`, `decoder.embedding`,
    /// `decoder.layers.<i>.{self_attn, self_attn_norm, cross_attn, cross_attn_norm, ff,
    /// ff_norm}`, `decoder.norm`, `decoder.output`.
    /// The Transformer `t` at the width and vocabularies of `cfg`.
    pub fn new(cfg: &ModelConfig, t: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embed_dim;
        if t.layers == 0 || t.heads == 0 || !d.is_multiple_of(t.heads) || t.ff_dim == 0 {
            return Err(Error::Invalid(format!(
                "a transformer needs layers > 0, heads > 0 dividing embed_dim and ff_dim > 0; got {} layers, {} heads, embed_dim {}, ff_dim {}",
                t.layers, t.heads, d, t.ff_dim
            )));
        }
        let enc = vb.pp("encoder");
        let dec = vb.pp("decoder");
        let final_norm = |vb: VarBuilder| match t.layout {
            TransformerLayout::PreNorm => LayerNorm::new(d, vb).map(Some),
            TransformerLayout::Marian => Ok(None),
        };
        let encoder = (0..t.layers)
            .map(|i| EncoderLayer::new(d, t, enc.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        let decoder = (0..t.layers)
            .map(|i| DecoderLayer::new(d, t, dec.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Transformer {
            src_embedding: embedding(cfg.src_vocab_size, d, enc.pp("embedding"))?,
            tgt_embedding: embedding(cfg.tgt_vocab_size, d, dec.pp("embedding"))?,
            encoder,
            encoder_norm: final_norm(enc.pp("norm"))?,
            decoder,
            decoder_norm: final_norm(dec.pp("norm"))?,
            output: DenseLayer::new(linear(d, cfg.tgt_vocab_size, dec.pp("output"))?),
            positions: sinusoids(0, POSITION_TABLE, d, t.layout, vb.device())?,
            layout: t.layout,
            d_model: d,
            heads: t.heads,
        })
    }

    /// The decoder output after its final layer norm, where the layout has one.
    fn final_decoder_norm(&self, x: Tensor) -> Result<Tensor> {
        match &self.decoder_norm {
            Some(norm) => norm.forward(&x),
            None => Ok(x),
        }
    }

    /// Attention heads per layer.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Layers in the encoder and in the decoder.
    pub fn layers(&self) -> usize {
        self.decoder.len()
    }

    /// `(len, D)` sinusoids of positions `start..start + len`.
    fn positions(&self, start: usize, len: usize) -> Result<Tensor> {
        if start + len <= POSITION_TABLE {
            Ok(self.positions.narrow(0, start, len)?)
        } else {
            sinusoids(
                start,
                len,
                self.d_model,
                self.layout,
                self.positions.device(),
            )
        }
    }

    /// `emb(ids) * sqrt(d) + positions`.
    ///
    /// # Shapes
    /// - `ids`: `(B, T)` u32 at positions `start..start + T`; returns `(B, T, D)`
    fn embed(&self, table: &Embedding, ids: &Tensor, start: usize) -> Result<Tensor> {
        self.scale_and_place(&table.forward(ids)?, start)
    }

    /// `emb * sqrt(d) + positions` for embeddings `(B, T, D)` at positions `start..start + T`.
    fn scale_and_place(&self, emb: &Tensor, start: usize) -> Result<Tensor> {
        let (_, t, _) = emb.dims3()?;
        Ok(emb
            .affine((self.d_model as f64).sqrt(), 0.0)?
            .broadcast_add(&self.positions(start, t)?.unsqueeze(0)?)?)
    }

    /// The step input of a cache whose rows were joined at different positions: each
    /// row's embedding at its own position, and the self-attention bias that masks the
    /// slots before each row's start.
    ///
    /// # Shapes
    /// - `prev`: `(B, 1)` u32; returns `(B, 1, D)` and a bias `(B, 1, 1, t + 1)`
    fn embed_joined(&self, prev: &Tensor, cache: &KvCache) -> Result<(Tensor, Option<Tensor>)> {
        let t = cache.len;
        let positions: Vec<u32> = cache.starts.iter().map(|&s| (t - s) as u32).collect();
        let table = self.positions(0, t + 1)?;
        let placed = table
            .index_select(&Tensor::new(positions.as_slice(), table.device())?, 0)?
            .unsqueeze(1)?;
        let x = self
            .tgt_embedding
            .forward(prev)?
            .affine((self.d_model as f64).sqrt(), 0.0)?
            .add(&placed)?;
        let mut bias = vec![0f32; cache.batch * (t + 1)];
        for (row, &start) in bias.chunks_mut(t + 1).zip(&cache.starts) {
            row[..start].fill(MASKED);
        }
        let bias = Tensor::from_vec(bias, (cache.batch, 1, 1, t + 1), x.device())?;
        Ok((x, Some(bias)))
    }

    /// The source token embeddings, before scaling and positions: `(B, S)` ids to
    /// `(B, S, D)`.
    pub fn embed_source(&self, src: &Tensor) -> Result<Tensor> {
        Ok(self.src_embedding.forward(src)?)
    }

    /// Runs the encoder and projects the cross-attention keys and values of every decoder
    /// layer.
    ///
    /// # Shapes
    /// - `src`: `(B, S)` u32 token ids, right-padded
    /// - `mask`: `(B, S)` f32, 1.0 at tokens and 0.0 at padding
    pub fn encode(
        &self,
        src: &Tensor,
        mask: &Tensor,
        dropout: Option<&mut Dropout>,
    ) -> Result<TransformerEncoded> {
        self.encode_embedded(&self.embed_source(src)?, mask, dropout)
    }

    /// [`Self::encode`] from the source token embeddings of [`Self::embed_source`]
    /// (attribution differentiates with respect to them, see [`crate::explain`]).
    ///
    /// # Shapes
    /// - `emb`: `(B, S, D)`; `mask`: `(B, S)` f32, 1.0 at tokens and 0.0 at padding
    pub fn encode_embedded(
        &self,
        emb: &Tensor,
        mask: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<TransformerEncoded> {
        let (b, s, _) = emb.dims3()?;
        let mask_bias = mask.to_dtype(DType::F32)?.affine(1e9, -1e9)?;
        let bias = mask_bias.reshape((b, 1, 1, s))?;
        let mut x = apply_dropout(&mut dropout, self.scale_and_place(emb, 0)?)?;
        let mut attention = Vec::with_capacity(self.encoder.len());
        for layer in &self.encoder {
            let (y, weights) = layer.forward(&x, &bias, &mut dropout)?;
            x = y;
            attention.push(weights);
        }
        let memory = match &self.encoder_norm {
            Some(norm) => norm.forward(&x)?,
            None => x,
        };
        let cross_kv = self
            .decoder
            .iter()
            .map(|layer| layer.cross_attn.keys_values(&memory))
            .collect::<Result<_>>()?;
        Ok(TransformerEncoded {
            memory,
            mask_bias,
            self_attention: Tensor::stack(&attention, 1)?,
            cross_kv,
        })
    }

    /// Per decoder layer, what each cross-attention head adds to the layer's output per unit
    /// of weight on each source position ([`MultiHeadAttention::head_outputs`]).
    ///
    /// # Shapes
    /// - returns one `(B, heads, S, D)` per decoder layer
    pub fn cross_head_outputs(&self, enc: &TransformerEncoded) -> Result<Vec<Tensor>> {
        self.decoder
            .iter()
            .zip(&enc.cross_kv)
            .map(|(layer, (_, v))| layer.cross_attn.head_outputs(v))
            .collect()
    }

    /// A cache with no positions, for a batch of `batch` sentences.
    pub fn empty_cache(&self, batch: usize) -> Result<KvCache> {
        Ok(KvCache {
            layers: Vec::new(),
            len: 0,
            batch,
            starts: vec![0; batch],
        })
    }

    /// One incremental decoding step at position `t = cache.len()`.
    ///
    /// `cross` maps the masked, scaled cross-attention scores of each layer, `(B, heads, 1, S)`,
    /// to the weights to use, of the same shape; pass [`crate::kernels::ops::softmax`] for the model's own
    /// attention. Its weights are the ones the context is made of and the ones returned.
    ///
    /// # Shapes
    /// - `prev`: `(B,)` u32, the token at position `t` (`<s>` at `t = 0`)
    /// - returns logits `(B, V)`, self-attention `(B, L, heads, t + 1)` and cross-attention
    ///   `(B, L, heads, S)`
    pub fn step(
        &self,
        enc: &TransformerEncoded,
        cache: &KvCache,
        prev: &Tensor,
        cross: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<TransformerStep> {
        let (x, step) = self.step_features(enc, cache, prev, cross)?;
        Ok(TransformerStep {
            logits: self.logits(&x)?,
            ..step
        })
    }

    /// [`Self::step`] up to the output layer: the normalised decoder output `(B, D)` (feed
    /// rows of it to [`Self::logits`]) and the step, whose `logits` are left empty.
    /// Attribution scores one row per step, so it skips the other rows' output layer.
    pub fn step_features(
        &self,
        enc: &TransformerEncoded,
        cache: &KvCache,
        prev: &Tensor,
        cross: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, TransformerStep)> {
        let b = prev.dims1()?;
        let (eb, s, _) = enc.memory.dims3()?;
        if b != eb || b != cache.batch {
            return Err(Error::Internal(format!(
                "decoding step with {b} tokens, {eb} encoded sentences and a cache of {}",
                cache.batch
            )));
        }
        let t = cache.len;
        let (mut x, self_bias) = if cache.starts.iter().all(|&s| s == 0) {
            (
                self.embed(&self.tgt_embedding, &prev.unsqueeze(1)?, t)?,
                None,
            )
        } else {
            self.embed_joined(&prev.unsqueeze(1)?, cache)?
        };
        let cross_bias = enc.mask_bias.reshape((b, 1, 1, s))?;
        let mut layers = Vec::with_capacity(self.decoder.len());
        let mut self_attention = Vec::with_capacity(self.decoder.len());
        let mut cross_attention = Vec::with_capacity(self.decoder.len());
        for (i, layer) in self.decoder.iter().enumerate() {
            let out = layer.forward(
                &x,
                cache.layers.get(i),
                self_bias.as_ref(),
                &enc.cross_kv[i],
                &cross_bias,
                Some(&mut *cross),
                &mut None,
            )?;
            x = out.x;
            layers.push(out.kv);
            self_attention.push(out.self_weights.squeeze(2)?);
            cross_attention.push(out.cross_weights.squeeze(2)?);
        }
        let x = self.final_decoder_norm(x)?.squeeze(1)?;
        let empty = Tensor::zeros(0, DType::F32, x.device())?;
        Ok((
            x,
            TransformerStep {
                logits: empty,
                cache: KvCache {
                    layers,
                    len: t + 1,
                    batch: b,
                    starts: cache.starts.clone(),
                },
                self_attention: Tensor::stack(&self_attention, 1)?,
                cross_attention: Tensor::stack(&cross_attention, 1)?,
            },
        ))
    }

    /// Teacher-forced decoder output before the output projection, for training.
    ///
    /// Padding at the end of shorter targets needs no mask: the causal mask keeps real
    /// positions from seeing it, and the loss skips padded positions.
    ///
    /// # Shapes
    /// - `tgt_in`: `(B, T)` u32, `<s>` then the target without its last token
    /// - returns `(B, T, D)`; feed it to [`Self::logits`]
    pub fn teacher_forced(
        &self,
        enc: &TransformerEncoded,
        tgt_in: &Tensor,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (b, t) = tgt_in.dims2()?;
        let s = enc.memory.dim(1)?;
        let causal = causal_bias(t, tgt_in.device())?;
        let cross_bias = enc.mask_bias.reshape((b, 1, 1, s))?;
        let mut x = apply_dropout(&mut dropout, self.embed(&self.tgt_embedding, tgt_in, 0)?)?;
        for (layer, cross_kv) in self.decoder.iter().zip(&enc.cross_kv) {
            x = layer
                .forward(
                    &x,
                    None,
                    Some(&causal),
                    cross_kv,
                    &cross_bias,
                    None,
                    &mut dropout,
                )?
                .x;
        }
        self.final_decoder_norm(x)
    }

    /// Next-token scores: `(..., D) -> (..., V)`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(x)
    }

    /// Mean cross-entropy of the output scores of rows `(N, d)` against `targets` `(N,)`,
    /// label-smoothed by `smoothing` (0: none).
    pub fn output_loss(&self, x: &Tensor, targets: &Tensor, smoothing: f32) -> Result<Tensor> {
        crate::kernels::ops::output_loss(self.output.linear(), x, targets, smoothing)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod training_tests;
