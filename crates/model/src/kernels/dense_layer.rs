//! [`DenseLayer`]: a dense layer (`x Wᵀ + b`) whose weight, when it is a constant (a loaded
//! model, not one being trained), is packed once for decoding's products ([`PackedWeight`])
//! on CPUs that run candle's `gemm` for them (AVX2 without AVX-512): the output layer, the
//! GRU's gates, the readout, the attention and feed-forward projections. Everything else
//! (training, attribution's gradients, other CPUs) goes through [`dense`] as before.

use std::sync::{Arc, OnceLock};

use candle_core::Tensor;
use candle_nn::Linear;

use crate::Result;
use crate::kernels::fused;
use crate::kernels::gemm::{self, Isa, PackedWeight};
use crate::kernels::ops::dense;

/// A dense layer; see the module documentation.
#[derive(Clone, Debug)]
pub struct DenseLayer {
    linear: Linear,
    /// The weight packed at the first product that uses it; `None` once it was found not
    /// to be a constant f32 CPU weight.
    packed: Arc<OnceLock<Option<PackedWeight>>>,
}

impl DenseLayer {
    pub fn new(linear: Linear) -> Self {
        Self {
            linear,
            packed: Arc::default(),
        }
    }

    /// The layer's weight and bias.
    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        self.linear.weight()
    }

    /// The bias `(out,)`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.linear.bias()
    }

    /// `x W^T + b` over the last dimension of `x`.
    ///
    /// # Shapes
    /// - `x`: `(..., in)`; returns `(..., out)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some(packed) = self.packed(x) else {
            return dense(&self.linear, x);
        };
        let dims = x.dims();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let threads = crate::kernels::threads::threads();
        // The input is read where it lies, unless it has to be made contiguous first.
        let x = x.contiguous()?;
        let y = fused::read(&x, "dense layer", |values| {
            packed.product(values, rows, threads)
        })??;
        let mut shape = dims[..dims.len() - 1].to_vec();
        shape.push(packed.n());
        Ok(Tensor::from_vec(y, shape, x.device())?)
    }

    /// Whether this CPU decodes through packed weights (AVX2 without AVX-512, and the
    /// `ATTNSCOPE_MATMUL` switch on). Where it does, a loaded model's products add their terms
    /// in another order than a model being trained, so the two agree up to float rounding
    /// rather than bit for bit.
    pub fn packs_here() -> bool {
        Isa::detect() == Some(Isa::Avx2) && gemm::runs(1) && PackedWeight::runs_here()
    }

    /// The packed weight (with the bias), where this product may use it: a CPU that
    /// [`Self::packs_here`], an input that needs no gradient, and a constant f32 weight and
    /// bias.
    fn packed(&self, x: &Tensor) -> Option<&PackedWeight> {
        let w = self.linear.weight();
        let wanted = Self::packs_here()
            && !x.track_op()
            && fused::usable(x)
            && x.rank() >= 1
            && x.dim(candle_core::D::Minus1).ok() == w.dim(1).ok();
        if !wanted {
            return None;
        }
        self.packed
            .get_or_init(|| {
                let bias_varies = self.linear.bias().is_some_and(|b| b.is_variable());
                if w.is_variable() || bias_varies || !fused::usable(w) || w.rank() != 2 {
                    return None;
                }
                let (n, k) = w.dims2().ok()?;
                let values = w.flatten_all().ok()?.to_vec1::<f32>().ok()?;
                let packed = PackedWeight::pack(&values, n, k).ok()?;
                match self.linear.bias() {
                    Some(b) => packed.with_bias(&b.to_vec1::<f32>().ok()?).ok(),
                    None => Some(packed),
                }
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn the_packed_layer_gives_what_dense_gives() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (37, 24), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        let layer = DenseLayer::new(Linear::new(w, Some(b)));
        for lead in [vec![1], vec![5], vec![3, 4]] {
            let mut shape = lead.clone();
            shape.push(24);
            let x = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let got = layer.forward(&x).unwrap();
            let want = dense(layer.linear(), &x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap();
            let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(max < 1e-4, "{lead:?}: {max}");
        }
        // Where the packed product applies, it is packed once and kept.
        if DenseLayer::packs_here() {
            assert!(layer.packed.get().is_some_and(|p| p.is_some()));
        }
    }
}
