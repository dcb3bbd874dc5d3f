//! A GRU cell (PyTorch gate layout) whose input projection can be computed for a whole
//! sequence at once, outside the recurrence. On the CPU a step is one fused kernel
//! ([`crate::kernels::fused_rnn::GruCell`]) after the hidden projection.

use candle_core::{D, Tensor};
use candle_nn::{VarBuilder, linear, linear_no_bias};

use crate::Result;
use crate::kernels::dense_layer::DenseLayer;
use crate::kernels::fused::usable;
use crate::kernels::fused_rnn;

/// `h' = (1 - z) * n + z * h`, with gates `r`, `z` and candidate `n` as in `torch.nn.GRU`.
#[derive(Clone, Debug)]
pub struct GruCell {
    /// Input projections, one per input part (e.g. embedding, context), summed.
    input: Vec<DenseLayer>,
    hidden: DenseLayer,
    hidden_dim: usize,
}

impl GruCell {
    /// A cell whose input is the concatenation of parts of sizes `input_dims`.
    ///
    /// Weights: `input{i}.weight` (3H x in_i, the first with the input bias), `hidden.weight`
    /// and `hidden.bias` (3H x H); gate order r, z, n.
    pub fn new(input_dims: &[usize], hidden_dim: usize, vb: VarBuilder) -> Result<Self> {
        let mut input = Vec::with_capacity(input_dims.len());
        for (i, &d) in input_dims.iter().enumerate() {
            let vb = vb.pp(format!("input{i}"));
            input.push(DenseLayer::new(if i == 0 {
                linear(d, 3 * hidden_dim, vb)?
            } else {
                linear_no_bias(d, 3 * hidden_dim, vb)?
            }));
        }
        let hidden = DenseLayer::new(linear(hidden_dim, 3 * hidden_dim, vb.pp("hidden"))?);
        Ok(GruCell {
            input,
            hidden,
            hidden_dim,
        })
    }

    pub fn hidden_dim(&self) -> usize {
        self.hidden_dim
    }

    /// The hidden projection's weight `(3H, H)` and bias `(3H,)`.
    pub(crate) fn hidden_parts(&self) -> Option<(&Tensor, &Tensor)> {
        Some((self.hidden.linear().weight(), self.hidden.linear().bias()?))
    }

    /// The weight `(3H, in_i)` of input part `i`.
    pub(crate) fn input_weight(&self, i: usize) -> Option<&Tensor> {
        self.input.get(i).map(|l| l.linear().weight())
    }

    /// Projection of input part `i` (any leading shape): `(..., in_i) -> (..., 3H)`.
    pub fn project_input(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let layer = self
            .input
            .get(i)
            .ok_or_else(|| crate::Error::Internal(format!("the GRU cell has no input part {i}")))?;
        layer.forward(x)
    }

    /// One step from precomputed input gates.
    ///
    /// # Shapes
    /// - `gi`: `(batch, 3H)`, the sum of [`Self::project_input`] of all input parts
    /// - `h`: `(batch, H)`; returns `(batch, H)`
    pub fn step(&self, gi: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.cell(gi, h, None)
    }

    /// A step that leaves the state unchanged where `keep` is 0.
    ///
    /// # Shapes
    /// - `keep`: one value per batch row, 1.0 for real tokens and 0.0 for padding
    pub fn masked_step(&self, gi: &Tensor, h: &Tensor, keep: &[f32]) -> Result<Tensor> {
        self.cell(gi, h, Some(keep))
    }

    fn cell(&self, gi: &Tensor, h: &Tensor, keep: Option<&[f32]>) -> Result<Tensor> {
        let gh = self.hidden.forward(h)?;
        if usable(gi) && usable(h) {
            let op = fused_rnn::GruCell {
                keep: keep.map(<[f32]>::to_vec),
            };
            return Ok(gi.contiguous()?.apply_op3(&gh, &h.contiguous()?, op)?);
        }
        let hd = self.hidden_dim;
        let rz = candle_nn::ops::sigmoid(
            &(gi.narrow(D::Minus1, 0, 2 * hd)? + gh.narrow(D::Minus1, 0, 2 * hd)?)?,
        )?;
        let r = rz.narrow(D::Minus1, 0, hd)?;
        let z = rz.narrow(D::Minus1, hd, hd)?;
        let n = (gi.narrow(D::Minus1, 2 * hd, hd)? + (r * gh.narrow(D::Minus1, 2 * hd, hd)?)?)?
            .tanh()?;
        // (1 - z) * n + z * h  ==  n + z * (h - n)
        let new = (&n + (z * (h - &n)?)?)?;
        Ok(match keep {
            Some(keep) => {
                let keep = Tensor::from_slice(keep, (keep.len(), 1), h.device())?;
                (h + (new - h)?.broadcast_mul(&keep)?)?
            }
            None => new,
        })
    }
}
