//! Whole recurrences as single differentiable ops, used when gradients are tracked: the
//! encoder's bidirectional GRU over a sentence, and the teacher-forced attention decoder
//! over a target. (Decoding keeps the step loop, which allocates less per sentence.)
//!
//! Step by step, candle's autograd records a dozen nodes per time step, and every step's
//! use of a sequence-wide tensor costs a full-size gradient on the way back: reading step
//! `t` of the projected inputs pads its gradient with zeros to the whole sequence, and the
//! encoder keys and states that every decoder step attends over get a fresh
//! `(batch, source, width)` gradient per step, each added into the total. Here the forward
//! pass runs the same kernels on detached tensors and keeps what the backward pass needs;
//! the backward pass is hand-written backpropagation through time that accumulates those
//! gradients in place and computes each weight's gradient as one matrix product over all
//! steps. `tests` checks values and every gradient against the step-by-step graph.

use candle_core::{Result, Tensor};

use crate::kernels::fused_rnn::cell_forward;
use crate::kernels::gemm::matmul;

mod decoder;
mod encoder;

pub use decoder::{DecoderLoop, LoopAttention, LoopInputs, LoopScore};
pub use encoder::BiGruSequence;

#[cfg(test)]
thread_local! {
    /// Tests set this to run the step-by-step graph as the reference.
    pub(crate) static STEPWISE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the sequence ops are used (always, except in tests that ask for the reference).
pub(crate) fn enabled() -> bool {
    #[cfg(test)]
    if STEPWISE.with(std::cell::Cell::get) {
        return false;
    }
    true
}

pub(super) fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `Σ_j a[j] b[j]` in eight lanes, so that it vectorises.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a8, a_tail) = a.as_chunks::<8>();
    let (b8, b_tail) = b.as_chunks::<8>();
    let mut lanes = [0f32; 8];
    for (x, y) in a8.iter().zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `y[j] += a * x[j]`.
#[inline(always)]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Sum over rows of a `(rows, width)` matrix.
pub(super) fn column_sum(m: &[f32], width: usize) -> Vec<f32> {
    let mut out = vec![0f32; width];
    for row in m.chunks_exact(width) {
        for (o, x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
    out
}

/// `a^T b` for row-major `a: (n, p)` and `b: (n, q)`: the gradient of a weight `(p, q)`
/// summed over `n` rows.
pub(super) fn at_b(a: Vec<f32>, p: usize, b: Vec<f32>, q: usize) -> Result<Tensor> {
    let dev = candle_core::Device::Cpu;
    let n = a.len() / p.max(1);
    let a = Tensor::from_vec(a, (n, p), &dev)?;
    let b = Tensor::from_vec(b, (n, q), &dev)?;
    matmul(&a.t()?, &b)
}

/// `x W` for `x: (rows, out)` as a Vec and a `(out, in)` weight: the gradient of a linear
/// layer's input.
pub(super) fn times(x: &[f32], w: &Tensor) -> Result<Vec<f32>> {
    let (out, _) = w.dims2()?;
    let rows = x.len() / out.max(1);
    host(&matmul(
        &Tensor::from_slice(x, (rows, out), w.device())?,
        w,
    )?)
}

/// `x W^T (+ b)` for a detached `(rows, in)` tensor.
pub(super) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = matmul(x, &w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

pub(super) fn gru_step(
    gi: &[f32],
    gh: &[f32],
    h: &[f32],
    keep: Option<&[f32]>,
    hd: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; h.len()];
    cell_forward(hd, gi, gh, h, keep, &mut out);
    out
}

#[cfg(test)]
mod tests;
