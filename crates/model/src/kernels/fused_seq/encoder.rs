//! The bidirectional encoder GRU as one op (see the parent module).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::{at_b, column_sum, gru_step, host, linear, times};
use crate::kernels::fused_rnn::cell_backward;

// ---------------------------------------------------------------------------------------
// Encoder: the bidirectional GRU over the whole source
// ---------------------------------------------------------------------------------------

/// One direction of the encoder: what its forward pass keeps.
struct Direction {
    reverse: bool,
    /// Per position: the hidden gates `gh` and the state before the step.
    saved: Vec<(Vec<f32>, Vec<f32>)>,
    /// `(S, B, H)` states.
    out: Vec<f32>,
}

impl Direction {
    /// Runs one direction over `gi` `(S, B, 3H)` (flat) with a detached hidden weight
    /// `(3H, H)` and bias.
    fn run(
        gi: &[f32],
        w: &Tensor,
        b: &Tensor,
        keep: &[Vec<f32>],
        reverse: bool,
        (s, batch, hd): (usize, usize, usize),
    ) -> Result<Self> {
        let h3 = 3 * hd;
        let mut saved = vec![(Vec::new(), Vec::new()); s];
        let mut out = vec![0f32; s * batch * hd];
        let mut h = vec![0f32; batch * hd];
        let order: Vec<usize> = if reverse {
            (0..s).rev().collect()
        } else {
            (0..s).collect()
        };
        for t in order {
            let h_t = Tensor::from_slice(&h, (batch, hd), w.device())?;
            let gh = host(&linear(&h_t, w, Some(b))?)?;
            let gi_t = &gi[t * batch * h3..(t + 1) * batch * h3];
            let new = gru_step(gi_t, &gh, &h, Some(&keep[t]), hd);
            out[t * batch * hd..(t + 1) * batch * hd].copy_from_slice(&new);
            saved[t] = (gh, std::mem::replace(&mut h, new));
        }
        Ok(Direction {
            reverse,
            saved,
            out,
        })
    }

    /// Backpropagation through time: the gradients of `gi` (flat), the hidden weight and
    /// its bias, from the gradient of the states `grad` (flat `(S, B, H)`).
    fn backward(
        &self,
        gi: &[f32],
        w: &Tensor,
        grad: &[f32],
        keep: &[Vec<f32>],
        (s, batch, hd): (usize, usize, usize),
    ) -> Result<(Vec<f32>, Tensor, Vec<f32>)> {
        let h3 = 3 * hd;
        let mut d_gi = vec![0f32; s * batch * h3];
        let mut d_gh_all = vec![0f32; s * batch * h3];
        let mut h_prev_all = vec![0f32; s * batch * hd];
        let mut dh = vec![0f32; batch * hd];
        let order: Vec<usize> = if self.reverse {
            (0..s).collect()
        } else {
            (0..s).rev().collect()
        };
        for t in order {
            let (gh, h_prev) = &self.saved[t];
            let rows3 = t * batch * h3..(t + 1) * batch * h3;
            let rows = t * batch * hd..(t + 1) * batch * hd;
            for (d, g) in dh.iter_mut().zip(&grad[rows.clone()]) {
                *d += g;
            }
            let mut dh_cell = vec![0f32; batch * hd];
            let (d_gi_t, d_gh_t) = (&mut d_gi[rows3.clone()], &mut d_gh_all[rows3.clone()]);
            cell_backward(
                hd,
                &gi[rows3],
                gh,
                h_prev,
                Some(&keep[t]),
                &dh,
                d_gi_t,
                d_gh_t,
                &mut dh_cell,
            );
            let through = times(d_gh_t, w)?;
            for ((d, c), x) in dh.iter_mut().zip(&dh_cell).zip(&through) {
                *d = c + x;
            }
            h_prev_all[rows].copy_from_slice(h_prev);
        }
        let d_b = column_sum(&d_gh_all, h3);
        let d_w = at_b(d_gh_all, h3, h_prev_all, hd)?;
        Ok((d_gi, d_w, d_b))
    }
}

/// Runs `left` here and `right` on a second thread, returning both results; one after
/// the other when candle is limited to one thread (as `attnscope serve` does, whose
/// scheduler counts one core per decoding step).
fn both<A: Send, B: Send>(
    left: impl FnOnce() -> Result<A> + Send,
    right: impl FnOnce() -> Result<B> + Send,
) -> Result<(A, B)> {
    if crate::kernels::threads::threads() < 2 {
        return Ok((left()?, right()?));
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(right);
        let a = left()?;
        let b = other.join().map_err(|_| {
            candle_core::Error::Msg("encoder: the backward direction panicked".into())
        })??;
        Ok((a, b))
    })
}

/// The bidirectional GRU encoder over whole sentences, from precomputed input gates, with
/// padding rows left unchanged; the two directions run on two threads.
///
/// Inputs: `gi` `(2, S, B, 3H)` (left-to-right then right-to-left, time-major), hidden
/// weights `(2, 3H, H)` and biases `(2, 3H)`. Output: states `(2, S, B, H)` from zeros.
pub struct BiGruSequence {
    /// `keep[t][b]`: 1 at tokens, 0 at padding.
    keep: Vec<Vec<f32>>,
    directions: [Direction; 2],
    dims: (usize, usize, usize),
}

impl BiGruSequence {
    /// Runs both directions (detached) and returns the op that records them.
    pub fn run(gi: &Tensor, w: &Tensor, b: &Tensor, keep: Vec<Vec<f32>>) -> Result<Self> {
        let (two, s, batch, h3) = gi.dims4()?;
        let hd = h3 / 3;
        if two != 2
            || keep.len() != s
            || keep.iter().any(|k| k.len() != batch)
            || w.dims3()? != (2, h3, hd)
            || b.dims2()? != (2, h3)
        {
            bail!(
                "bi-gru-sequence: inputs {:?}, weights {:?}, biases {:?} and mask do not match",
                gi.dims(),
                w.dims(),
                b.dims()
            )
        }
        let dims = (s, batch, hd);
        let gi_all = host(gi)?;
        let (gi_f, gi_b) = gi_all.split_at(s * batch * h3);
        let (wf, wb) = (w.get(0)?.detach(), w.get(1)?.detach());
        let (bf, bb) = (b.get(0)?.detach(), b.get(1)?.detach());
        let (fwd, bwd) = both(
            || Direction::run(gi_f, &wf, &bf, &keep, false, dims),
            || Direction::run(gi_b, &wb, &bb, &keep, true, dims),
        )?;
        Ok(BiGruSequence {
            keep,
            directions: [fwd, bwd],
            dims,
        })
    }
}

impl CustomOp3 for BiGruSequence {
    fn name(&self) -> &'static str {
        "bi-gru-sequence"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (s, b, hd) = self.dims;
        let mut out = Vec::with_capacity(2 * s * b * hd);
        out.extend_from_slice(&self.directions[0].out);
        out.extend_from_slice(&self.directions[1].out);
        Ok((CpuStorage::F32(out), Shape::from((2, s, b, hd))))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (s, batch, hd) = self.dims;
        let h3 = 3 * hd;
        let gi_all = host(gi)?;
        let grad = host(grad)?;
        let (gi_f, gi_b) = gi_all.split_at(s * batch * h3);
        let (g_f, g_b) = grad.split_at(s * batch * hd);
        let (wf, wb) = (w.get(0)?.detach(), w.get(1)?.detach());
        let [fwd, bwd] = &self.directions;
        let keep = &self.keep;
        let ((mut d_gi, d_wf, mut d_b), (d_gi_b, d_wb, d_bb)) = both(
            || fwd.backward(gi_f, &wf, g_f, keep, self.dims),
            || bwd.backward(gi_b, &wb, g_b, keep, self.dims),
        )?;
        d_gi.extend_from_slice(&d_gi_b);
        d_b.extend_from_slice(&d_bb);
        let dev = gi.device();
        Ok((
            Some(Tensor::from_vec(d_gi, (2, s, batch, h3), dev)?),
            Some(Tensor::stack(&[d_wf, d_wb], 0)?),
            Some(Tensor::from_vec(d_b, (2, h3), dev)?),
        ))
    }
}
