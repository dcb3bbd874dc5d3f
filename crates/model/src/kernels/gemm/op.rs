//! [`matmul`]: the AVX-512 (or, for a few rows, AVX2) product as a candle op with its
//! backward pass, for the two-dimensional products of the dense layers, the output layer
//! and their gradients.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::{View, runs, sgemm};
use crate::kernels::fused;

/// `a · b` for `a` `(m, k)` and `b` `(k, n)`: [`super::sgemm`] where it [`runs`] the
/// product and both are f32 matrices on the CPU (strided ones included, so `w.t()` costs
/// no copy), candle's `matmul` otherwise. Differentiable either way.
///
/// # Shapes
/// - `a`: `(m, k)`, `b`: `(k, n)`; returns `(m, n)`
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let ours =
        a.rank() == 2 && b.rank() == 2 && runs(a.dims()[0]) && fused::usable(a) && fused::usable(b);
    if ours {
        a.apply_op2(b, Matmul)
    } else {
        a.matmul(b)
    }
}

/// The matrix view of one operand of [`Matmul`].
fn view<'a>(s: &'a CpuStorage, l: &Layout) -> Result<View<'a>> {
    let CpuStorage::F32(v) = s else {
        bail!("gemm: f32 tensors only")
    };
    let (&[rows, cols], &[rs, cs]) = (l.dims(), l.stride()) else {
        bail!("gemm: matrices only, not shape {:?}", l.dims())
    };
    let Some(data) = v.get(l.start_offset()..) else {
        bail!("gemm: the layout starts past its storage")
    };
    View::new(data, rows, cols, rs, cs)
}

/// `a · b` through [`sgemm`].
struct Matmul;

impl CustomOp2 for Matmul {
    fn name(&self) -> &'static str {
        "simd-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (view(s1, l1)?, view(s2, l2)?);
        let (m, n) = (a.rows, b.cols);
        let mut c = vec![0f32; m * n];
        sgemm(a, b, &mut c, false, crate::kernels::threads::threads())?;
        Ok((CpuStorage::F32(c), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let da = match a.track_op() {
            true => Some(matmul(grad, &b.t()?)?),
            false => None,
        };
        let db = match b.track_op() {
            true => Some(matmul(&a.t()?, grad)?),
            false => None,
        };
        Ok((da, db))
    }
}
