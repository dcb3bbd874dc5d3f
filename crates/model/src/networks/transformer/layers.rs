//! The Transformer's building blocks: layer normalisation, multi-head attention whose steps
//! are public one by one (so a caller can choose the weights between scores and output), and
//! the position-wise feed-forward block.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder, VarMap, linear};

use super::LAYER_NORM_EPS;
use crate::config::Activation;
use crate::kernels::dense_layer::DenseLayer;
use crate::kernels::ops::softmax;
use crate::kernels::{attention, fused};
use crate::{Error, Result};

/// Layer normalisation over the last dimension with a learned scale and shift.
///
/// Its variables are `<name>.weight` and `<name>.bias` under a name ending in `norm`, which
/// is what [`init_layer_norms`] looks for.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
        })
    }

    /// # Shapes
    /// - `x`: `(..., D)`; returns the same shape
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::usable(x) {
            let op = fused::LayerNorm {
                eps: LAYER_NORM_EPS,
            };
            Ok(x.contiguous()?.apply_op3(&self.weight, &self.bias, op)?)
        } else {
            let (w, b) = (&self.weight, &self.bias);
            Ok(candle_nn::ops::layer_norm_slow(x, w, b, LAYER_NORM_EPS)?)
        }
    }
}

/// Sets every layer norm of `varmap` (variables `*norm.weight` and `*norm.bias`) to the
/// identity: weight 1, bias 0. Call it after [`crate::networks::init::init_seeded`], which draws them
/// at random like any other bias.
pub fn init_layer_norms(varmap: &VarMap) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Internal("poisoned variable map".into()))?;
    for (name, var) in data.iter() {
        let Some((stem, leaf)) = name.rsplit_once('.') else {
            continue;
        };
        if !stem.ends_with("norm") {
            continue;
        }
        match leaf {
            "weight" => var.set(&var.as_tensor().ones_like()?)?,
            "bias" => var.set(&var.as_tensor().zeros_like()?)?,
            _ => {}
        }
    }
    Ok(())
}

/// Multi-head scaled dot-product attention with learned projections `q`, `k`, `v`, `o`.
///
/// The steps are public one by one ([`Self::query`], [`Self::keys_values`],
/// [`Self::scores`], [`Self::output`]) so that a caller can put its own weights between
/// the scores and the output.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    q: DenseLayer,
    k: DenseLayer,
    v: DenseLayer,
    o: DenseLayer,
    heads: usize,
    head_dim: usize,
}

impl MultiHeadAttention {
    pub fn new(d_model: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(MultiHeadAttention {
            q: DenseLayer::new(linear(d_model, d_model, vb.pp("q"))?),
            k: DenseLayer::new(linear(d_model, d_model, vb.pp("k"))?),
            v: DenseLayer::new(linear(d_model, d_model, vb.pp("v"))?),
            o: DenseLayer::new(linear(d_model, d_model, vb.pp("o"))?),
            heads,
            head_dim: d_model / heads,
        })
    }

    /// Projects and splits into heads: `(B, T, D) -> (B, heads, T, dh)`, contiguous.
    fn project(&self, lin: &DenseLayer, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        Ok(lin
            .forward(x)?
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Queries of `x`.
    ///
    /// # Shapes
    /// - `x`: `(B, T, D)`; returns `(B, heads, T, dh)`
    pub fn query(&self, x: &Tensor) -> Result<Tensor> {
        self.project(&self.q, x)
    }

    /// Keys and values of `x`.
    ///
    /// # Shapes
    /// - `x`: `(B, S, D)`; returns two `(B, heads, S, dh)`
    pub fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.project(&self.k, x)?, self.project(&self.v, x)?))
    }

    /// Scaled scores `q k^T / sqrt(dh)`, plus `bias` (0, or -1e9 where masked) when given.
    ///
    /// # Shapes
    /// - `q`: `(B, heads, T, dh)`, `k`: `(B, heads, S, dh)`
    /// - `bias`: broadcastable to `(B, heads, T, S)`; returns `(B, heads, T, S)`
    pub fn scores(&self, q: &Tensor, k: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let scores = q
            .matmul(&k.t()?)?
            .affine(1.0 / (self.head_dim as f64).sqrt(), 0.0)?;
        Ok(match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        })
    }

    /// What each head adds to the output per unit of attention weight on each position: the
    /// value `v_h(x_j)` through the head's columns of the output projection,
    /// `f_h(x_j) = v_h(x_j) W_O[:, h]^T` (bias left out). The output is
    /// `Σ_h Σ_j α_hj f_h(x_j) + b_O`, so `‖α_hj f_h(x_j)‖` is how much position `j` moves it
    /// through head `h` (Kobayashi et al. 2020).
    ///
    /// # Shapes
    /// - `v`: `(B, heads, S, dh)` (see [`Self::keys_values`]); returns `(B, heads, S, D)`
    pub fn head_outputs(&self, v: &Tensor) -> Result<Tensor> {
        let w = self.o.weight(); // (D, heads * dh)
        let per_head = (0..self.heads)
            .map(|h| {
                let w_h = w.narrow(1, h * self.head_dim, self.head_dim)?; // (D, dh)
                let v_h = v.narrow(1, h, 1)?.squeeze(1)?; // (B, S, dh)
                Ok(v_h.broadcast_matmul(&w_h.t()?)?) // (B, S, D)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&per_head, 1)?)
    }

    /// Mixes the values with `weights`, merges the heads and projects.
    ///
    /// # Shapes
    /// - `weights`: `(B, heads, T, S)`, `v`: `(B, heads, S, dh)`; returns `(B, T, D)`
    pub fn output(&self, weights: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.merge(&weights.contiguous()?.matmul(v)?)
    }

    /// Softmax attention of `q` over `k` and `v`, merged and projected, and its weights:
    /// `output(softmax(scores(q, k, bias)), v)`, as one fused op on the CPU
    /// ([`attention::attend`], with its own backward pass), candle's ops elsewhere.
    ///
    /// # Shapes
    /// - `q`: `(B, heads, T, dh)`, `k` and `v`: `(B, heads, S, dh)`
    /// - `bias`: broadcastable to `(B, heads, T, S)`
    /// - returns `(B, T, D)` and the weights `(B, heads, T, S)`
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        if fused::usable(q) && fused::usable(k) && fused::usable(v) {
            let scale = 1.0 / (self.head_dim as f32).sqrt();
            let (mixed, weights) = attention::attend(q, k, v, bias, scale)?;
            return Ok((self.merge(&mixed)?, weights));
        }
        let weights = softmax(&self.scores(q, k, bias)?)?;
        Ok((self.output(&weights, v)?, weights))
    }

    /// Merges the heads of a mixed value and projects: `(B, heads, T, dh) -> (B, T, D)`.
    fn merge(&self, mixed: &Tensor) -> Result<Tensor> {
        let (b, _, t, _) = mixed.dims4()?;
        let merged =
            mixed
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&merged)
    }
}

/// Position-wise feed-forward block `fc2(act(fc1(x)))`.
#[derive(Clone, Debug)]
pub struct FeedForward {
    fc1: DenseLayer,
    fc2: DenseLayer,
    activation: Activation,
}

impl FeedForward {
    pub fn new(
        d_model: usize,
        ff_dim: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(FeedForward {
            fc1: DenseLayer::new(linear(d_model, ff_dim, vb.pp("fc1"))?),
            fc2: DenseLayer::new(linear(ff_dim, d_model, vb.pp("fc2"))?),
            activation,
        })
    }

    /// # Shapes
    /// - `x`: `(B, T, D)`; returns `(B, T, D)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.activation {
            Activation::Relu => h.relu()?,
            Activation::Gelu => h.gelu_erf()?,
            Activation::Swish => h.silu()?,
        };
        self.fc2.forward(&h)
    }
}
