//! The Transformer's layers: an encoder layer (self-attention, feed-forward) and a decoder
//! layer (masked self-attention, cross-attention whose weights a caller chooses,
//! feed-forward), each sublayer with its residual, pre-norm (ours) or post-norm (Marian's)
//! by the layout.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::apply_dropout;
use super::layers::{FeedForward, LayerNorm, MultiHeadAttention};
use crate::config::{TransformerConfig, TransformerLayout};
use crate::networks::dropout::Dropout;
use crate::{Error, Result};

/// One sublayer with its residual: pre-norm `x + f(LN(x))`, or post-norm `LN(x + f(x))`.
fn sublayer(
    x: &Tensor,
    norm: &LayerNorm,
    post_norm: bool,
    dropout: &mut Option<&mut Dropout>,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if post_norm {
        norm.forward(&(x + apply_dropout(dropout, f(x)?)?)?)
    } else {
        Ok((x + apply_dropout(dropout, f(&norm.forward(x)?)?)?)?)
    }
}

/// Encoder layer: self-attention, then feed-forward, each with a residual (pre- or
/// post-norm, by the layout).
#[derive(Clone, Debug)]
pub struct EncoderLayer {
    self_attn: MultiHeadAttention,
    self_attn_norm: LayerNorm,
    ff: FeedForward,
    ff_norm: LayerNorm,
    post_norm: bool,
}

impl EncoderLayer {
    /// A layer `d` wide of the Transformer `t`.
    pub fn new(d: usize, t: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(EncoderLayer {
            self_attn: MultiHeadAttention::new(d, t.heads, vb.pp("self_attn"))?,
            self_attn_norm: LayerNorm::new(d, vb.pp("self_attn_norm"))?,
            ff: FeedForward::new(d, t.ff_dim, t.activation, vb.pp("ff"))?,
            ff_norm: LayerNorm::new(d, vb.pp("ff_norm"))?,
            post_norm: t.layout == TransformerLayout::Marian,
        })
    }

    /// Returns the layer's output and its self-attention weights.
    ///
    /// # Shapes
    /// - `x`: `(B, S, D)`, `bias`: `(B, 1, 1, S)` source padding bias
    /// - returns `(B, S, D)` and `(B, heads, S, S)`
    pub(super) fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<(Tensor, Tensor)> {
        let mut weights = None;
        let x = sublayer(x, &self.self_attn_norm, self.post_norm, dropout, |h| {
            let q = self.self_attn.query(h)?;
            let (k, v) = self.self_attn.keys_values(h)?;
            let (out, w) = self.self_attn.attend(&q, &k, &v, Some(bias))?;
            weights = Some(w);
            Ok(out)
        })?;
        let x = sublayer(&x, &self.ff_norm, self.post_norm, dropout, |h| {
            self.ff.forward(h)
        })?;
        let weights = weights.ok_or_else(|| Error::Internal("no self-attention".into()))?;
        Ok((x, weights))
    }
}

/// Turns masked scaled cross-attention scores `(B, heads, T, S)` into weights of the same
/// shape (an attention mode, an intervention).
pub(super) type CrossWeights<'a> = &'a mut dyn FnMut(&Tensor) -> Result<Tensor>;

/// What one decoder layer produced.
pub(super) struct DecoderLayerOut {
    pub x: Tensor,
    /// Self-attention keys and values of every position so far, `(B, heads, t, dh)`.
    pub kv: (Tensor, Tensor),
    /// `(B, heads, T, t)`.
    pub self_weights: Tensor,
    /// `(B, heads, T, S)`.
    pub cross_weights: Tensor,
}

/// Decoder layer: masked self-attention, cross-attention over the encoder output, then
/// feed-forward, each with a residual (pre- or post-norm, by the layout).
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    self_attn: MultiHeadAttention,
    self_attn_norm: LayerNorm,
    pub(super) cross_attn: MultiHeadAttention,
    cross_attn_norm: LayerNorm,
    ff: FeedForward,
    ff_norm: LayerNorm,
    post_norm: bool,
}

impl DecoderLayer {
    /// A layer `d` wide of the Transformer `t`.
    pub fn new(d: usize, t: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: MultiHeadAttention::new(d, t.heads, vb.pp("self_attn"))?,
            self_attn_norm: LayerNorm::new(d, vb.pp("self_attn_norm"))?,
            cross_attn: MultiHeadAttention::new(d, t.heads, vb.pp("cross_attn"))?,
            cross_attn_norm: LayerNorm::new(d, vb.pp("cross_attn_norm"))?,
            ff: FeedForward::new(d, t.ff_dim, t.activation, vb.pp("ff"))?,
            ff_norm: LayerNorm::new(d, vb.pp("ff_norm"))?,
            post_norm: t.layout == TransformerLayout::Marian,
        })
    }

    /// Runs `T` new positions after the `past` ones (keys and values in `past`).
    ///
    /// # Shapes
    /// - `x`: `(B, T, D)`; `past`: two `(B, heads, t0, dh)` or none (t0 = 0)
    /// - `self_bias`: broadcastable to `(B, heads, T, t0 + T)` (the causal mask) or none
    /// - `cross_kv`: two `(B, heads, S, dh)`, `cross_bias`: `(B, 1, 1, S)`
    /// - `cross`: masked scaled scores `(B, heads, T, S)` to weights of the same shape;
    ///   none for the softmax (then the attention runs as one fused op)
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &self,
        x: &Tensor,
        past: Option<&(Tensor, Tensor)>,
        self_bias: Option<&Tensor>,
        cross_kv: &(Tensor, Tensor),
        cross_bias: &Tensor,
        cross: Option<CrossWeights>,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<DecoderLayerOut> {
        let mut kv_weights = None;
        let x = sublayer(x, &self.self_attn_norm, self.post_norm, dropout, |h| {
            let q = self.self_attn.query(h)?;
            let (k, v) = self.self_attn.keys_values(h)?;
            let (k, v) = match past {
                Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                None => (k, v),
            };
            let (out, w) = self.self_attn.attend(&q, &k, &v, self_bias)?;
            kv_weights = Some(((k, v), w));
            Ok(out)
        })?;
        let mut cross_weights = None;
        let x = sublayer(&x, &self.cross_attn_norm, self.post_norm, dropout, |h| {
            let q = self.cross_attn.query(h)?;
            let Some(cross) = cross else {
                let (out, w) =
                    self.cross_attn
                        .attend(&q, &cross_kv.0, &cross_kv.1, Some(cross_bias))?;
                cross_weights = Some(w);
                return Ok(out);
            };
            let scores = self.cross_attn.scores(&q, &cross_kv.0, Some(cross_bias))?;
            let w = cross(&scores)?;
            if w.dims() != scores.dims() {
                return Err(Error::Internal(format!(
                    "cross-attention weights have shape {:?}; the scores have {:?}",
                    w.dims(),
                    scores.dims()
                )));
            }
            let out = self.cross_attn.output(&w, &cross_kv.1)?;
            cross_weights = Some(w);
            Ok(out)
        })?;
        let x = sublayer(&x, &self.ff_norm, self.post_norm, dropout, |h| {
            self.ff.forward(h)
        })?;
        let missing = || Error::Internal("a decoder sublayer did not run".into());
        let (kv, self_weights) = kv_weights.ok_or_else(missing)?;
        Ok(DecoderLayerOut {
            x,
            kv,
            self_weights,
            cross_weights: cross_weights.ok_or_else(missing)?,
        })
    }
}
