//! Layer norm, softmax and bias add as single CPU kernels that also have a backward pass.
//!
//! candle's fused `layer_norm` and `softmax_last_dim` record nothing for backpropagation,
//! and the differentiable compositions (`layer_norm_slow`, `ops::softmax`, `broadcast_add`)
//! cost a dozen passes over the tensor each way, plus a slow strided reduction for the
//! gradient of every broadcast weight. These kernels make one pass forward and one back,
//! and training and inference run the same code, so the attention weights a model returns
//! never depend on whether gradients are tracked. Each op takes contiguous f32 tensors on the
//! CPU ([`usable`]); callers fall back to the compositions otherwise.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape};
use candle_core::{Tensor, bail};

/// Whether the kernels can run on `x`.
pub fn usable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The contiguous f32 values of a CPU storage.
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: f32 tensors only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: contiguous tensors only"),
    }
}

/// The contiguous f32 values of a CPU storage, for an in-place op.
pub(crate) fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: f32 tensors only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{op}: contiguous tensors only"),
    }
}

/// Runs `f` on the contiguous f32 values of a CPU tensor (e.g. in a backward pass, which
/// gets tensors rather than storages).
pub(crate) fn read<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*storage else {
        bail!("{op}: tensors on the CPU only")
    };
    Ok(f(slice(s, layout, op)?))
}

fn last_dim(l: &Layout, op: &str) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!("{op}: empty last dimension"),
    }
}

/// Elements of work below which a kernel stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 20;

/// Calls `f(first_row, block)` on blocks of whole rows of `out` (`width` values a row),
/// on candle's number of threads when there are `cost` input values a row and enough
/// rows to be worth it.
pub(crate) fn par_rows<F>(out: &mut [f32], width: usize, cost: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = out.len() / width.max(1);
    let threads = crate::kernels::threads::threads().clamp(1, rows.max(1));
    if threads == 1 || rows * cost < PARALLEL_MIN {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let mut blocks = out.chunks_mut(per * width).enumerate();
        let first = blocks.next();
        for (i, block) in blocks {
            scope.spawn(move || f(i * per, block));
        }
        if let Some((_, block)) = first {
            f(0, block);
        }
    });
}

/// Mean and `1 / sqrt(var + eps)` of one row.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
pub struct LayerNorm {
    pub eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "attnscope-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            slice(s1, l1, self.name())?,
            slice(s2, l2, self.name())?,
            slice(s3, l3, self.name())?,
        );
        let d = last_dim(l1, self.name())?;
        if w.len() != d || b.len() != d {
            bail!(
                "layer norm: weight {} and bias {} for rows of {d}",
                w.len(),
                b.len()
            );
        }
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let (mean, rstd) = moments(xr, self.eps);
            for j in 0..d {
                yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
            }
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.dim(0)?;
        let rows = x.elem_count() / d;
        let op = LayerNormGrad { eps: self.eps };
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &op)?;
        Ok((
            Some(packed.narrow(0, 0, rows)?.reshape(x.shape())?),
            Some(packed.get(rows)?),
            Some(packed.get(rows + 1)?),
        ))
    }
}

/// Gradients of [`LayerNorm`] from `(x, weight, grad)`, packed as `(rows + 2, D)`: the
/// input's gradient, then the weight's, then the bias's.
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "attnscope-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = (
            slice(s1, l1, self.name())?,
            slice(s2, l2, self.name())?,
            slice(s3, l3, self.name())?,
        );
        let d = last_dim(l1, self.name())?;
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, rest) = out.split_at_mut(rows * d);
        let (dw, db) = rest.split_at_mut(d);
        let mut xhat = vec![0f32; d];
        let mut dxhat = vec![0f32; d];
        for ((xr, gr), dxr) in x
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
        {
            let (mean, rstd) = moments(xr, self.eps);
            let (mut m1, mut m2) = (0f32, 0f32);
            for j in 0..d {
                xhat[j] = (xr[j] - mean) * rstd;
                dxhat[j] = gr[j] * w[j];
                m1 += dxhat[j];
                m2 += dxhat[j] * xhat[j];
                dw[j] += gr[j] * xhat[j];
                db[j] += gr[j];
            }
            let (m1, m2) = (m1 / d as f32, m2 / d as f32);
            for j in 0..d {
                dxr[j] = rstd * (dxhat[j] - m1 - xhat[j] * m2);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

/// Softmax over the last dimension.
pub struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "attnscope-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let d = last_dim(l, self.name())?;
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (yv, &xv) in yr.iter_mut().zip(xr) {
                *yv = (xv - max).exp();
                sum += *yv;
            }
            let inv = 1.0 / sum;
            yr.iter_mut().for_each(|v| *v *= inv);
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// `y * (g - sum(g * y))` per row, from the softmax output `y` and its gradient `g`.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "attnscope-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, g) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let d = last_dim(l1, self.name())?;
        let mut dx = vec![0f32; y.len()];
        for ((yr, gr), dr) in y
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for j in 0..d {
                dr[j] = yr[j] * (gr[j] - dot);
            }
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `x + b` with `b` `(D,)` added to every row of `x` `(..., D)`.
pub struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "attnscope-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let d = last_dim(l1, self.name())?;
        if b.len() != d {
            bail!("bias add: bias of {} for rows of {d}", b.len());
        }
        let mut y = x.to_vec();
        for row in y.chunks_exact_mut(d) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(grad), Some(db)))
    }
}

/// Sum over every dimension but the last: `(..., D) -> (D,)`.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "attnscope-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let d = last_dim(l, self.name())?;
        let mut out = vec![0f32; d];
        for row in x.chunks_exact(d) {
            out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
        }
        Ok((CpuStorage::F32(out), Shape::from(d)))
    }
}

fn labels<'a>(s: &'a CpuStorage, l: &Layout, rows: usize, v: usize) -> Result<&'a [u32]> {
    let CpuStorage::U32(t) = s else {
        bail!("cross-entropy: u32 targets only")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("cross-entropy: contiguous targets only")
    };
    let t = &t[a..b];
    if t.len() != rows || t.iter().any(|&k| k as usize >= v) {
        bail!(
            "cross-entropy: {} targets for {rows} rows of {v} classes, or one out of range",
            t.len()
        );
    }
    Ok(t)
}

/// Mean over rows of `logsumexp(x) - x[target]`; the result is a scalar.
pub struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "attnscope-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let v = last_dim(l1, self.name())?;
        let rows = x.len() / v;
        let t = labels(s2, l2, rows, v)?;
        let mut losses = vec![0f32; rows];
        par_rows(&mut losses, 1, v, |first, chunk| {
            for (i, loss) in chunk.iter_mut().enumerate() {
                let xr = &x[(first + i) * v..(first + i + 1) * v];
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = xr.iter().map(|&a| (a - max).exp()).sum();
                *loss = max + sum.ln() - xr[t[first + i] as usize];
            }
        });
        let total: f64 = losses.iter().map(|&l| l as f64).sum();
        let mean = (total / rows.max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok((
            Some(x.apply_op2_no_bwd(t, &CrossEntropyGrad { scale })?),
            None,
        ))
    }
}

/// `(softmax(x) - onehot(target)) * scale / rows`, the gradient of [`CrossEntropy`].
struct CrossEntropyGrad {
    scale: f32,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "attnscope-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let v = last_dim(l1, self.name())?;
        let rows = x.len() / v;
        let t = labels(s2, l2, rows, v)?;
        let c = self.scale / rows.max(1) as f32;
        let mut dx = vec![0f32; x.len()];
        par_rows(&mut dx, v, v, |first, chunk| {
            for (i, dr) in chunk.chunks_exact_mut(v).enumerate() {
                let xr = &x[(first + i) * v..(first + i + 1) * v];
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (d, &a) in dr.iter_mut().zip(xr) {
                    *d = (a - max).exp();
                    sum += *d;
                }
                let inv = c / sum;
                dr.iter_mut().for_each(|d| *d *= inv);
                dr[t[first + i] as usize] -= c;
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
