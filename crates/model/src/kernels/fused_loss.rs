//! The output layer and the cross-entropy loss as one op: `mean_i -log softmax(x_i W^T +
//! b)[t_i]`, or with label smoothing ε the cross-entropy against `(1 - ε)` on the target
//! and `ε / V` on every token of the vocabulary (Szegedy et al. 2016; Vaswani et al. 2017).
//!
//! The logits of a training batch are `(target tokens, vocabulary)`, about 5.4 M values
//! for 64 sentences at a vocabulary of 8,000, and through candle's graph each pass over
//! them is an allocation: the bias add, the loss, its gradient, the zero-filled gradient
//! slot and the addition into it. Here the forward pass keeps the softmax in one buffer
//! and the backward pass turns it into the gradient in place, computing the bias gradient
//! in the same sweep; the two weight-side products are plain matrix multiplications.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, InplaceOp1, Layout, Result, Shape, Tensor, bail};

use crate::kernels::fused::slice_mut;
use crate::kernels::fused_rnn::{dispatch, exp};
use crate::kernels::gemm::matmul;

/// Rows a thread takes at least.
const ROWS_PER_THREAD: usize = 16;

dispatch! {
    fn softmax_rows(v: usize, logits: &mut [f32], bias: &[f32], targets: &[u32], smoothing: f32, losses: &mut [f32]) {
        for ((row, &t), loss) in logits.chunks_exact_mut(v).zip(targets).zip(losses.iter_mut()) {
            let mut max = f32::NEG_INFINITY;
            let mut total = 0f32;
            for (x, b) in row.iter_mut().zip(bias) {
                *x += b;
                max = max.max(*x);
                total += *x;
            }
            // -Σ_j q_j log p_j with q = (1 - ε) one-hot + ε / V: log Σ e^x minus the
            // q-weighted logits.
            let target = (1.0 - smoothing) * row[t as usize] + smoothing * total / v as f32;
            let (row8, tail) = row.as_chunks_mut::<8>();
            let mut lanes = [0f32; 8];
            for c in row8.iter_mut() {
                for l in 0..8 {
                    c[l] = exp(c[l] - max);
                    lanes[l] += c[l];
                }
            }
            let mut sum: f32 = lanes.iter().sum();
            for x in tail.iter_mut() {
                *x = exp(*x - max);
                sum += *x;
            }
            *loss = max + sum.ln() - target;
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

dispatch! {
    fn log_sum_exp_rows(v: usize, logits: &[f32], lse: &mut [f32]) {
        for (row, out) in logits.chunks_exact(v).zip(lse.iter_mut()) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (row8, tail) = row.as_chunks::<8>();
            let mut lanes = [0f32; 8];
            for c in row8 {
                for l in 0..8 {
                    lanes[l] += exp(c[l] - max);
                }
            }
            let sum: f32 = lanes.iter().sum::<f32>() + tail.iter().map(|x| exp(x - max)).sum::<f32>();
            *out = max + sum.ln();
        }
    }
}

/// `log Σ_j e^{x_ij}` of each row of `logits` (rows of `v` values): a row's log
/// probabilities are its logits minus this, so a decoder that needs a few of them (the
/// chosen token's, the top candidates') never writes the whole log-softmax.
pub(crate) fn log_sum_exp(v: usize, logits: &[f32]) -> Vec<f32> {
    let mut lse = vec![0f32; logits.len() / v.max(1)];
    log_sum_exp_rows(v, logits, &mut lse);
    lse
}

dispatch! {
    fn gradient_rows(v: usize, probs: &mut [f32], targets: &[u32], smoothing: f32, scale: f32, d_bias: &mut [f32]) {
        // The gradient of the loss against the logits is p - q.
        let uniform = smoothing / v as f32;
        for (row, &t) in probs.chunks_exact_mut(v).zip(targets) {
            row[t as usize] -= 1.0 - smoothing;
            for (x, d) in row.iter_mut().zip(d_bias.iter_mut()) {
                *x = (*x - uniform) * scale;
                *d += *x;
            }
        }
    }
}

/// Splits `n` rows of `data` (`width` values a row) and `targets` into one block per
/// thread and runs `f(data, targets, first row)` on each, in parallel.
fn par_blocks<F>(data: &mut [f32], width: usize, targets: &[u32], f: F)
where
    F: Fn(&mut [f32], &[u32], usize) + Sync,
{
    let n = targets.len();
    let threads = crate::kernels::threads::threads()
        .min(n / ROWS_PER_THREAD)
        .max(1);
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let mut blocks = data
            .chunks_mut(per * width)
            .zip(targets.chunks(per))
            .enumerate();
        let first = blocks.next();
        for (i, (d, t)) in blocks {
            scope.spawn(move || f(d, t, i * per));
        }
        if let Some((_, (d, t))) = first {
            f(d, t, 0);
        }
    });
}

/// The mean cross-entropy of the output layer's scores against `targets`, label-smoothed by
/// `smoothing` (0: the plain cross-entropy).
///
/// Inputs: readouts `(N, R)`, weight `(V, R)` and bias `(V,)`. Output: a scalar.
pub struct OutputLoss {
    targets: Vec<u32>,
    smoothing: f32,
    /// The softmax of every row `(N, V)`, until the backward pass takes it.
    probs: Mutex<Option<Tensor>>,
    loss: f32,
    dims: (usize, usize),
}

impl OutputLoss {
    /// Computes the loss (detached) and returns the op that records it.
    pub fn run(
        rows: &Tensor,
        w: &Tensor,
        b: &Tensor,
        targets: Vec<u32>,
        smoothing: f32,
    ) -> Result<Self> {
        let (n, r) = rows.dims2()?;
        let (v, wr) = w.dims2()?;
        if wr != r || b.dims1()? != v || targets.len() != n {
            bail!(
                "output-loss: readouts {:?}, weight {:?}, bias {:?} and {} targets do not match",
                rows.dims(),
                w.dims(),
                b.dims(),
                targets.len()
            )
        }
        if targets.iter().any(|&t| t as usize >= v) {
            bail!("output-loss: a target is outside the vocabulary of {v}")
        }
        if !(0.0..1.0).contains(&smoothing) {
            bail!("output-loss: label smoothing {smoothing} is outside [0, 1)")
        }
        let probs = matmul(&rows.detach(), &w.detach().t()?)?;
        let op = SoftmaxInPlace {
            v,
            bias: b.detach().to_vec1::<f32>()?,
            targets: &targets,
            smoothing,
            losses: Mutex::new(vec![0f32; n]),
        };
        probs.inplace_op1(&op)?;
        let losses = op
            .losses
            .into_inner()
            .map_err(|_| candle_core::Error::Msg("output-loss: a worker panicked".into()))?;
        let total: f64 = losses.iter().map(|&l| l as f64).sum();
        Ok(OutputLoss {
            targets,
            smoothing,
            probs: Mutex::new(Some(probs)),
            loss: (total / n.max(1) as f64) as f32,
            dims: (n, v),
        })
    }
}

impl CustomOp3 for OutputLoss {
    fn name(&self) -> &'static str {
        "output-loss"
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
        Ok((CpuStorage::F32(vec![self.loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        rows: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, v) = self.dims;
        let taken = self.probs.lock().ok().and_then(|mut p| p.take());
        let d_logits = match taken {
            Some(p) => p,
            // A second backward pass through the same graph: compute the softmax again.
            None => match OutputLoss::run(rows, w, b, self.targets.clone(), self.smoothing)?
                .probs
                .into_inner()
            {
                Ok(Some(p)) => p,
                _ => bail!("output-loss: the softmax is unavailable"),
            },
        };
        let op = GradientInPlace {
            v,
            targets: &self.targets,
            smoothing: self.smoothing,
            scale: grad.to_scalar::<f32>()? / n.max(1) as f32,
            d_bias: Mutex::new(vec![0f32; v]),
        };
        d_logits.inplace_op1(&op)?;
        let d_bias = op
            .d_bias
            .into_inner()
            .map_err(|_| candle_core::Error::Msg("output-loss: a worker panicked".into()))?;
        let d_rows = matmul(&d_logits, &w.detach())?;
        let d_w = matmul(&d_logits.t()?, &rows.detach())?;
        Ok((
            Some(d_rows),
            Some(d_w),
            Some(Tensor::from_vec(d_bias, v, rows.device())?),
        ))
    }
}

/// Logits to their softmax, in place, with each row's loss.
struct SoftmaxInPlace<'a> {
    v: usize,
    bias: Vec<f32>,
    targets: &'a [u32],
    smoothing: f32,
    losses: Mutex<Vec<f32>>,
}

impl InplaceOp1 for SoftmaxInPlace<'_> {
    fn name(&self) -> &'static str {
        "output-loss-softmax"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let data = slice_mut(s, l, self.name())?;
        if data.len() != self.targets.len() * self.v {
            bail!("output-loss: logits do not match the targets")
        }
        par_blocks(data, self.v, self.targets, |block, t, first| {
            let mut part = vec![0f32; t.len()];
            softmax_rows(self.v, block, &self.bias, t, self.smoothing, &mut part);
            if let Ok(mut l) = self.losses.lock() {
                l[first..first + t.len()].copy_from_slice(&part);
            }
        });
        Ok(())
    }
}

/// The softmax to the gradient of the mean loss, in place, with the bias gradient.
struct GradientInPlace<'a> {
    v: usize,
    targets: &'a [u32],
    smoothing: f32,
    scale: f32,
    d_bias: Mutex<Vec<f32>>,
}

impl InplaceOp1 for GradientInPlace<'_> {
    fn name(&self) -> &'static str {
        "output-loss-gradient"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let data = slice_mut(s, l, self.name())?;
        if data.len() != self.targets.len() * self.v {
            bail!("output-loss: the softmax does not match the targets")
        }
        par_blocks(data, self.v, self.targets, |block, t, _| {
            let mut d_bias = vec![0f32; self.v];
            gradient_rows(self.v, block, t, self.smoothing, self.scale, &mut d_bias);
            if let Ok(mut total) = self.d_bias.lock() {
                total.iter_mut().zip(&d_bias).for_each(|(a, b)| *a += b);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused op against the output layer then candle's loss: plain cross-entropy at
    /// ε = 0, the smoothed one ([`crate::kernels::ops::smoothed_cross_entropy`]) otherwise;
    /// the loss and the gradients of all three inputs.
    #[test]
    fn matches_dense_then_cross_entropy() {
        let dev = Device::Cpu;
        let (n, r, v) = (37, 11, 29);
        let rows = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, r), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (v, r), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, v, &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7) % v as u32).collect();
        let t = Tensor::new(targets.as_slice(), &dev).unwrap();
        let mut plain = 0f32;
        for smoothing in [0.0, 0.1, 0.4] {
            let op = OutputLoss::run(&rows, &w, &b, targets.clone(), smoothing).unwrap();
            let fused = rows.as_tensor().apply_op3(&w, &b, op).unwrap();
            let logits = rows
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let reference = if smoothing == 0.0 {
                candle_nn::loss::cross_entropy(&logits, &t).unwrap()
            } else {
                crate::kernels::ops::smoothed_cross_entropy(&logits, &t, smoothing).unwrap()
            };
            let (lf, lr) = (
                fused.to_scalar::<f32>().unwrap(),
                reference.to_scalar::<f32>().unwrap(),
            );
            assert!(
                (lf - lr).abs() < 1e-5 * lr.abs().max(1.0),
                "ε {smoothing}: {lf} vs {lr}"
            );
            if smoothing == 0.0 {
                plain = lf;
            } else {
                assert!(lf != plain, "ε {smoothing} left the loss unchanged");
            }
            let (gf, gr) = (fused.backward().unwrap(), reference.backward().unwrap());
            let flat = |g: &candle_core::backprop::GradStore, var: &Var| {
                let g = g.get(var.as_tensor()).unwrap();
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
            for var in [&rows, &w, &b] {
                for (x, y) in flat(&gf, var).iter().zip(&flat(&gr, var)) {
                    assert!((x - y).abs() < 1e-5, "ε {smoothing}: {x} vs {y}");
                }
            }
            // A second backward pass through the same graph recomputes the softmax.
            assert!(fused.backward().is_ok());
        }
    }

    /// The smoothed loss of one row, written out: `-Σ_j q_j log p_j` with `q` = 1 - ε on
    /// the target plus ε / V everywhere.
    #[test]
    fn smoothed_loss_is_the_cross_entropy_against_the_smoothed_target() {
        let dev = Device::Cpu;
        let logits = [0.5f32, -1.0, 2.0, 0.0];
        let (target, eps) = (1usize, 0.2f64);
        let lse = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        let want: f64 = logits
            .iter()
            .enumerate()
            .map(|(j, &x)| {
                let q = eps / 4.0 + if j == target { 1.0 - eps } else { 0.0 };
                -q * (x as f64 - lse)
            })
            .sum();
        // The identity as the output layer: the readouts are the logits.
        let eye = Tensor::eye(4, candle_core::DType::F32, &dev).unwrap();
        let rows = Tensor::new(&[logits], &dev).unwrap();
        let zero = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let op = OutputLoss::run(&rows, &eye, &zero, vec![target as u32], eps as f32).unwrap();
        let got = rows.apply_op3(&eye, &zero, op).unwrap();
        let got = got.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn log_sum_exp_matches_candles_log_softmax() {
        let logits = Tensor::randn(0f32, 3.0, (5, 1003), &Device::Cpu).unwrap();
        let lse = super::log_sum_exp(1003, &logits.flatten_all().unwrap().to_vec1().unwrap());
        let want = candle_nn::ops::log_softmax(&logits, 1).unwrap();
        let got = logits
            .broadcast_sub(
                &Tensor::new(lse.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(1)
                    .unwrap(),
            )
            .unwrap();
        assert!(crate::fixtures::max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn bad_targets_are_errors() {
        let dev = Device::Cpu;
        let rows = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        assert!(OutputLoss::run(&rows, &w, &b, vec![0, 4], 0.0).is_err());
        assert!(OutputLoss::run(&rows, &w, &b, vec![0], 0.0).is_err());
        assert!(OutputLoss::run(&rows, &w, &b, vec![0, 1], 1.0).is_err());
        assert!(OutputLoss::run(&rows, &w, &b, vec![0, 1], -0.1).is_err());
    }
}
