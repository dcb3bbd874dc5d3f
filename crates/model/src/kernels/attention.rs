//! Scaled dot-product attention over heads, `softmax(q kᵀ · scale + bias) v`, as one op with
//! its own backward pass.
//!
//! As candle ops this is a batched matmul, a scaling, a broadcast mask add, the softmax, a
//! copy to contiguous and a second batched matmul, each allocating its result and, on the
//! way back, a zero-filled gradient; a Transformer training step runs nine of them. Here
//! the weights are computed once ([`attend`]), kept for the backward pass, and returned
//! beside the output (detached: nothing differentiates through the weights a model
//! returns). Each `(batch, head)` pair is independent, so the work splits over threads by
//! pairs. `tests` checks the output, the weights and every gradient against the candle
//! composition.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use crate::kernels::fused::{self, par_rows};
use crate::kernels::fused_seq::{axpy, dot};

/// `softmax(q kᵀ · scale + bias) v` per head, and the weights.
///
/// # Shapes
/// - `q`: `(B, H, T, dh)`, `k` and `v`: `(B, H, S, dh)`, f32 on the CPU
/// - `bias`: broadcastable to `(B, H, T, S)` (0, or a large negative value where masked)
/// - returns the output `(B, H, T, dh)` (differentiable in `q`, `k` and `v`) and the
///   weights `(B, H, T, S)` (detached)
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    let (b, h, t, dh) = q.dims4()?;
    let (kb, kh, s, kd) = k.dims4()?;
    if (kb, kh, kd) != (b, h, dh) || v.dims() != k.dims() {
        bail!(
            "attention: queries {:?}, keys {:?} and values {:?} do not match",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let bias = match bias {
        Some(bias) => Some(
            bias.broadcast_as((b, h, t, s))?
                .contiguous()?
                .flatten_all()?
                .to_vec1::<f32>()?,
        ),
        None => None,
    };
    let mut probs = vec![0f32; b * h * t * s];
    fused::read(&q, "attention", |qs| {
        fused::read(&k, "attention", |ks| {
            par_rows(&mut probs, t * s, t * s * dh, |first, block| {
                for (i, p) in block.chunks_exact_mut(t * s).enumerate() {
                    let pair = first + i;
                    let qp = &qs[pair * t * dh..(pair + 1) * t * dh];
                    let kp = &ks[pair * s * dh..(pair + 1) * s * dh];
                    let bp = bias
                        .as_deref()
                        .map(|b| &b[pair * t * s..(pair + 1) * t * s]);
                    weights(qp, kp, bp, scale, dh, p);
                }
            })
        })
    })??;
    let probs = Arc::new(probs);
    let op = Attention {
        probs: probs.clone(),
        scale,
    };
    let out = q.apply_op3(&k, &v, op)?;
    let weights = Tensor::from_vec(probs.to_vec(), (b, h, t, s), q.device())?;
    Ok((out, weights))
}

/// One pair's weights `p` (`T × S`) from its queries (`T × dh`), keys (`S × dh`) and bias.
fn weights(q: &[f32], k: &[f32], bias: Option<&[f32]>, scale: f32, dh: usize, p: &mut [f32]) {
    let s = k.len() / dh;
    for (ti, row) in p.chunks_exact_mut(s).enumerate() {
        let qt = &q[ti * dh..(ti + 1) * dh];
        for (si, x) in row.iter_mut().enumerate() {
            *x = dot(qt, &k[si * dh..(si + 1) * dh]) * scale;
        }
        if let Some(bias) = bias {
            for (x, b) in row.iter_mut().zip(&bias[ti * s..(ti + 1) * s]) {
                *x += b;
            }
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The op: its forward pass mixes the values with the weights [`attend`] computed; its
/// backward pass differentiates the whole attention through them.
struct Attention {
    /// `(B, H, T, S)`.
    probs: Arc<Vec<f32>>,
    scale: f32,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attnscope-attention"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, t, dh) = l1.shape().dims4()?;
        let s = l3.shape().dims4()?.2;
        let vs = fused::slice(s3, l3, self.name())?;
        let mut out = vec![0f32; b * h * t * dh];
        par_rows(&mut out, t * dh, t * s * dh, |first, block| {
            for (i, o) in block.chunks_exact_mut(t * dh).enumerate() {
                let pair = first + i;
                let p = &self.probs[pair * t * s..(pair + 1) * t * s];
                let vp = &vs[pair * s * dh..(pair + 1) * s * dh];
                for (ot, pt) in o.chunks_exact_mut(dh).zip(p.chunks_exact(s)) {
                    for (si, &w) in pt.iter().enumerate() {
                        axpy(w, &vp[si * dh..(si + 1) * dh], ot);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, h, t, dh) = q.dims4()?;
        let s = k.dim(2)?;
        let grad = grad.contiguous()?;
        let width = t * dh + 2 * s * dh;
        let mut all = vec![0f32; b * h * width];
        fused::read(q, self.name(), |qs| {
            fused::read(k, self.name(), |ks| {
                fused::read(v, self.name(), |vs| {
                    fused::read(&grad, self.name(), |gs| {
                        par_rows(&mut all, width, 4 * t * s * dh, |first, block| {
                            for (i, d) in block.chunks_exact_mut(width).enumerate() {
                                let pair = first + i;
                                let at = |n: usize| pair * n * dh..(pair + 1) * n * dh;
                                let (dq, rest) = d.split_at_mut(t * dh);
                                let (dk, dv) = rest.split_at_mut(s * dh);
                                pair_backward(
                                    &self.probs[pair * t * s..(pair + 1) * t * s],
                                    &qs[at(t)],
                                    &ks[at(s)],
                                    &vs[at(s)],
                                    &gs[at(t)],
                                    self.scale,
                                    dh,
                                    (dq, dk, dv),
                                );
                            }
                        })
                    })
                })
            })
        })????;
        let dev = q.device();
        let part = |from: usize, len: usize, rows: usize| -> Result<Tensor> {
            let mut v = Vec::with_capacity(b * h * len);
            for d in all.chunks_exact(width) {
                v.extend_from_slice(&d[from..from + len]);
            }
            Tensor::from_vec(v, (b, h, rows, dh), dev)
        };
        let tracked =
            |x: &Tensor, from: usize, len: usize, rows: usize| -> Result<Option<Tensor>> {
                match x.track_op() {
                    true => Ok(Some(part(from, len, rows)?)),
                    false => Ok(None),
                }
            };
        Ok((
            tracked(q, 0, t * dh, t)?,
            tracked(k, t * dh, s * dh, s)?,
            tracked(v, t * dh + s * dh, s * dh, s)?,
        ))
    }
}

/// One pair's gradients: `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
/// `dQ = scale · dS K`, `dK = scale · dSᵀ Q`, `dV = Pᵀ dO`.
#[allow(clippy::too_many_arguments)]
fn pair_backward(
    p: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
    scale: f32,
    dh: usize,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let s = k.len() / dh;
    let mut ds = vec![0f32; s];
    for (ti, pt) in p.chunks_exact(s).enumerate() {
        let go = &d_out[ti * dh..(ti + 1) * dh];
        let mut total = 0f32;
        for (si, x) in ds.iter_mut().enumerate() {
            *x = dot(go, &v[si * dh..(si + 1) * dh]);
            total += *x * pt[si];
        }
        let qt = &q[ti * dh..(ti + 1) * dh];
        let dqt = &mut dq[ti * dh..(ti + 1) * dh];
        for (si, x) in ds.iter_mut().enumerate() {
            let w = pt[si];
            *x = w * (*x - total) * scale;
            axpy(*x, &k[si * dh..(si + 1) * dh], dqt);
            axpy(*x, qt, &mut dk[si * dh..(si + 1) * dh]);
            axpy(w, go, &mut dv[si * dh..(si + 1) * dh]);
        }
    }
}

#[cfg(test)]
mod tests;
