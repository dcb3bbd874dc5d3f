//! The GRU cell and the additive (Bahdanau) score as single CPU kernels with their own
//! backward pass.
//!
//! Written with candle's tensor ops, one GRU step is about a dozen element maps forward
//! (each allocating its output) and twice that backward, and the additive score
//! materialises `tanh(keys + q)` over `(batch, source, attention)` before a matrix-vector
//! product; a training step of 64 sentences runs both some 40 times. Here each is one pass
//! over its inputs forward and one back. `tanh` and the sigmoid use a polynomial `exp`
//! (Cephes' `expf`, within 2 ulp) that the compiler vectorises, with AVX2 and FMA when the
//! CPU has them; libm's scalar `tanhf` and `expf` were 8% of a profiled training step.
//!
//! The backward passes read the forward inputs and recompute the activations instead of
//! storing them, so inference (no gradient) costs nothing extra.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use crate::kernels::fused::{read, slice};

/// `e^x` for `x` in about `[-87, 88]` (clamped outside), vectorisable.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5 * 2^23 trick: `t`'s low mantissa bits then hold `n`
    // as an integer, so neither rounding nor the conversion needs a libm call or a
    // saturating cast, and the whole function vectorises.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits((n_int.wrapping_add(127) << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Defines `$name(args)` that runs `$body` compiled for AVX2 and FMA when the CPU has
/// them, and for the baseline target otherwise.
macro_rules! dispatch {
    (fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has just been checked to support AVX2 and FMA.
                    unsafe { avx2($($arg),*) };
                    return;
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use dispatch;

// ---------------------------------------------------------------------------------------
// GRU cell
// ---------------------------------------------------------------------------------------

/// One GRU step in PyTorch's gate layout, from precomputed input gates `gi` and hidden
/// gates `gh` (`W_h h + b_h`), both `(B, 3H)` in the order r, z, n, and the state `h`
/// `(B, H)`: `h' = n + z (h - n)` with `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`,
/// `n = tanh(gi_n + r gh_n)`. With `keep`, row `b` becomes `h + keep[b] (h' - h)` (1 for a
/// token, 0 for padding, which leaves the state unchanged).
pub struct GruCell {
    pub keep: Option<Vec<f32>>,
}

dispatch! {
    fn cell_forward(hd: usize, gi: &[f32], gh: &[f32], h: &[f32], keep: Option<&[f32]>, out: &mut [f32]) {
        for (b, out) in out.chunks_exact_mut(hd).enumerate() {
            let gi = &gi[b * 3 * hd..(b + 1) * 3 * hd];
            let gh = &gh[b * 3 * hd..(b + 1) * 3 * hd];
            let h = &h[b * hd..(b + 1) * hd];
            let k = keep.map_or(1.0, |k| k[b]);
            for j in 0..hd {
                let r = sigmoid(gi[j] + gh[j]);
                let z = sigmoid(gi[hd + j] + gh[hd + j]);
                let n = tanh(gi[2 * hd + j] + r * gh[2 * hd + j]);
                let new = n + z * (h[j] - n);
                out[j] = h[j] + k * (new - h[j]);
            }
        }
    }
}

dispatch! {
    fn cell_backward(
        hd: usize,
        gi: &[f32],
        gh: &[f32],
        h: &[f32],
        keep: Option<&[f32]>,
        grad: &[f32],
        d_gi: &mut [f32],
        d_gh: &mut [f32],
        d_h: &mut [f32],
    ) {
        for (b, d_h) in d_h.chunks_exact_mut(hd).enumerate() {
            let row3 = b * 3 * hd..(b + 1) * 3 * hd;
            let (gi, gh) = (&gi[row3.clone()], &gh[row3.clone()]);
            let (d_gi, d_gh) = (&mut d_gi[row3.clone()], &mut d_gh[row3]);
            let h = &h[b * hd..(b + 1) * hd];
            let grad = &grad[b * hd..(b + 1) * hd];
            let k = keep.map_or(1.0, |k| k[b]);
            for j in 0..hd {
                let r = sigmoid(gi[j] + gh[j]);
                let z = sigmoid(gi[hd + j] + gh[hd + j]);
                let n = tanh(gi[2 * hd + j] + r * gh[2 * hd + j]);
                let d_new = k * grad[j];
                let d_n = d_new * (1.0 - z);
                let d_z = d_new * (h[j] - n);
                d_h[j] = (1.0 - k) * grad[j] + d_new * z;
                let d_an = d_n * (1.0 - n * n);
                let d_ar = d_an * gh[2 * hd + j] * r * (1.0 - r);
                let d_az = d_z * z * (1.0 - z);
                d_gi[j] = d_ar;
                d_gh[j] = d_ar;
                d_gi[hd + j] = d_az;
                d_gh[hd + j] = d_az;
                d_gi[2 * hd + j] = d_an;
                d_gh[2 * hd + j] = d_an * r;
            }
        }
    }
}

impl GruCell {
    /// `(batch, hidden)` of the state, after checking the gates against it.
    fn dims(&self, gi: &Layout, gh: &Layout, h: &Layout) -> Result<(usize, usize)> {
        let (b, hd) = h.shape().dims2()?;
        if gi.shape().dims2()? != (b, 3 * hd) || gh.shape().dims2()? != (b, 3 * hd) {
            bail!(
                "gru-cell: gates {:?} and {:?} do not match a state {:?}",
                gi.dims(),
                gh.dims(),
                h.dims()
            )
        }
        if self.keep.as_ref().is_some_and(|k| k.len() != b) {
            bail!(
                "gru-cell: keep has {} rows for a batch of {b}",
                self.keep.as_ref().map_or(0, Vec::len)
            )
        }
        Ok((b, hd))
    }
}

impl CustomOp3 for GruCell {
    fn name(&self) -> &'static str {
        "gru-cell"
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
        let (b, hd) = self.dims(l1, l2, l3)?;
        let (gi, gh, h) = (
            slice(s1, l1, "gru-cell")?,
            slice(s2, l2, "gru-cell")?,
            slice(s3, l3, "gru-cell")?,
        );
        let mut out = vec![0f32; b * hd];
        cell_forward(hd, gi, gh, h, self.keep.as_deref(), &mut out);
        Ok((CpuStorage::F32(out), Shape::from((b, hd))))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        gh: &Tensor,
        h: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, hd) = self.dims(gi.layout(), gh.layout(), h.layout())?;
        let grad = grad.contiguous()?;
        let (mut d_gi, mut d_gh, mut d_h) = (
            vec![0f32; b * 3 * hd],
            vec![0f32; b * 3 * hd],
            vec![0f32; b * hd],
        );
        read(gi, "gru-cell", |gi_v| {
            read(gh, "gru-cell", |gh_v| {
                read(h, "gru-cell", |h_v| {
                    read(&grad, "gru-cell", |g_v| {
                        cell_backward(
                            hd,
                            gi_v,
                            gh_v,
                            h_v,
                            self.keep.as_deref(),
                            g_v,
                            &mut d_gi,
                            &mut d_gh,
                            &mut d_h,
                        )
                    })
                })
            })
        })????;
        let dev = h.device();
        Ok((
            Some(Tensor::from_vec(d_gi, (b, 3 * hd), dev)?),
            Some(Tensor::from_vec(d_gh, (b, 3 * hd), dev)?),
            Some(Tensor::from_vec(d_h, (b, hd), dev)?),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Additive score
// ---------------------------------------------------------------------------------------

/// Bahdanau's score without the mask: `out[b, s] = Σ_a v[a] tanh(keys[b, s, a] + q[b, a])`
/// for keys `(B, S, A)`, query `(B, A)` and `v` with `A` values (the `(1, A)` weight of a
/// `Linear(A -> 1)`).
pub struct AdditiveScore;

dispatch! {
    fn score_forward(a: usize, s: usize, keys: &[f32], q: &[f32], v: &[f32], out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            let key = &keys[i * a..(i + 1) * a];
            let q = &q[(i / s) * a..(i / s + 1) * a];
            // Eight partial sums over arrays of eight, so that the loop vectorises.
            let (k8, k_tail) = key.as_chunks::<8>();
            let (q8, q_tail) = q.as_chunks::<8>();
            let (v8, v_tail) = v.as_chunks::<8>();
            let mut lanes = [0f32; 8];
            for ((k, q), v) in k8.iter().zip(q8).zip(v8) {
                for l in 0..8 {
                    lanes[l] += v[l] * tanh(k[l] + q[l]);
                }
            }
            let mut acc: f32 = lanes.iter().sum();
            for ((k, q), v) in k_tail.iter().zip(q_tail).zip(v_tail) {
                acc += v * tanh(k + q);
            }
            *o = acc;
        }
    }
}

dispatch! {
    fn score_backward(
        a: usize,
        s: usize,
        keys: &[f32],
        q: &[f32],
        v: &[f32],
        grad: &[f32],
        d_keys: &mut [f32],
        d_q: &mut [f32],
        d_v: &mut [f32],
    ) {
        for (i, &g) in grad.iter().enumerate() {
            let key = &keys[i * a..(i + 1) * a];
            let qb = i / s;
            let q = &q[qb * a..(qb + 1) * a];
            let d_key = &mut d_keys[i * a..(i + 1) * a];
            let d_qb = &mut d_q[qb * a..(qb + 1) * a];
            for j in 0..a {
                let t = tanh(key[j] + q[j]);
                let d = g * v[j] * (1.0 - t * t);
                d_key[j] += d;
                d_qb[j] += d;
                d_v[j] += g * t;
            }
        }
    }
}

fn score_dims(keys: &Layout, q: &Layout, v: &Layout) -> Result<(usize, usize, usize)> {
    let (b, s, a) = keys.shape().dims3()?;
    if q.shape().dims2()? != (b, a) || v.shape().elem_count() != a {
        bail!(
            "additive-score: query {:?} and v {:?} do not match keys {:?}",
            q.dims(),
            v.dims(),
            keys.dims()
        )
    }
    Ok((b, s, a))
}

impl CustomOp3 for AdditiveScore {
    fn name(&self) -> &'static str {
        "additive-score"
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
        let (b, s, a) = score_dims(l1, l2, l3)?;
        let op = "additive-score";
        let mut out = vec![0f32; b * s];
        score_forward(
            a,
            s,
            slice(s1, l1, op)?,
            slice(s2, l2, op)?,
            slice(s3, l3, op)?,
            &mut out,
        );
        Ok((CpuStorage::F32(out), Shape::from((b, s))))
    }

    fn bwd(
        &self,
        keys: &Tensor,
        q: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, s, a) = score_dims(keys.layout(), q.layout(), v.layout())?;
        let grad = grad.contiguous()?;
        let op = "additive-score";
        let (mut d_keys, mut d_q, mut d_v) =
            (vec![0f32; b * s * a], vec![0f32; b * a], vec![0f32; a]);
        read(keys, op, |k| {
            read(q, op, |qv| {
                read(v, op, |vv| {
                    read(&grad, op, |g| {
                        score_backward(a, s, k, qv, vv, g, &mut d_keys, &mut d_q, &mut d_v)
                    })
                })
            })
        })????;
        let dev = keys.device();
        Ok((
            Some(Tensor::from_vec(d_keys, (b, s, a), dev)?),
            Some(Tensor::from_vec(d_q, (b, a), dev)?),
            Some(Tensor::from_vec(d_v, v.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    #[test]
    fn exp_tanh_sigmoid_match_libm() {
        let mut worst = (0f32, 0f32, 0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            worst.0 = worst.0.max(((exp(x) - x.exp()) / x.exp()).abs());
            worst.1 = worst.1.max((tanh(x) - x.tanh()).abs());
            worst.2 = worst.2.max((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 3e-7, "tanh error {}", worst.1);
        assert!(worst.2 < 2e-7, "sigmoid error {}", worst.2);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(200.0) == 1.0);
    }

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Forward values and every input gradient of `fused` match `reference` (candle ops).
    fn check(
        inputs: &[Tensor],
        fused: impl Fn(&[Tensor]) -> Tensor,
        reference: impl Fn(&[Tensor]) -> Tensor,
    ) {
        let run = |f: &dyn Fn(&[Tensor]) -> Tensor| {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|t| Var::from_tensor(t).unwrap())
                .collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let out = f(&ts);
            // A weighted sum, so every output element gets a different gradient.
            let w = rand(out.dims(), 99);
            let loss = (&out * &w).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut values = vec![out.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            for t in &ts {
                values.push(
                    grads
                        .get(t)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
            }
            values
        };
        let (a, b) = (run(&fused), run(&reference));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.len(), y.len());
            for (p, q) in x.iter().zip(y) {
                assert!(
                    (p - q).abs() <= 2e-5 * (1.0 + q.abs()),
                    "output {i}: {p} vs {q}"
                );
            }
        }
    }

    fn reference_cell(gi: &Tensor, gh: &Tensor, h: &Tensor, keep: Option<&Tensor>) -> Tensor {
        let hd = h.dim(1).unwrap();
        let rz = candle_nn::ops::sigmoid(
            &(gi.narrow(D::Minus1, 0, 2 * hd).unwrap() + gh.narrow(D::Minus1, 0, 2 * hd).unwrap())
                .unwrap(),
        )
        .unwrap();
        let r = rz.narrow(D::Minus1, 0, hd).unwrap();
        let z = rz.narrow(D::Minus1, hd, hd).unwrap();
        let n = (gi.narrow(D::Minus1, 2 * hd, hd).unwrap()
            + (r * gh.narrow(D::Minus1, 2 * hd, hd).unwrap()).unwrap())
        .unwrap()
        .tanh()
        .unwrap();
        let new = (&n + (z * (h - &n).unwrap()).unwrap()).unwrap();
        match keep {
            Some(k) => (h + (new - h).unwrap().broadcast_mul(k).unwrap()).unwrap(),
            None => new,
        }
    }

    #[test]
    fn gru_cell_matches_candle_ops() {
        let (b, hd) = (5, 19);
        let inputs = [
            rand(&[b, 3 * hd], 1),
            rand(&[b, 3 * hd], 2),
            rand(&[b, hd], 3),
        ];
        check(
            &inputs,
            |t| {
                t[0].apply_op3(&t[1], &t[2], GruCell { keep: None })
                    .unwrap()
            },
            |t| reference_cell(&t[0], &t[1], &t[2], None),
        );
        let keep = vec![1.0, 0.0, 1.0, 1.0, 0.0];
        let keep_t = Tensor::from_vec(keep.clone(), (b, 1), &Device::Cpu).unwrap();
        check(
            &inputs,
            |t| {
                t[0].apply_op3(
                    &t[1],
                    &t[2],
                    GruCell {
                        keep: Some(keep.clone()),
                    },
                )
                .unwrap()
            },
            |t| reference_cell(&t[0], &t[1], &t[2], Some(&keep_t)),
        );
    }

    #[test]
    fn additive_score_matches_candle_ops() {
        let (b, s, a) = (3, 7, 13);
        let inputs = [rand(&[b, s, a], 4), rand(&[b, a], 5), rand(&[1, a], 6)];
        check(
            &inputs,
            |t| t[0].apply_op3(&t[1], &t[2], AdditiveScore).unwrap(),
            |t| {
                let x = t[0]
                    .broadcast_add(&t[1].unsqueeze(1).unwrap())
                    .unwrap()
                    .tanh()
                    .unwrap();
                x.broadcast_mul(&t[2].reshape((1, 1, a)).unwrap())
                    .unwrap()
                    .sum(D::Minus1)
                    .unwrap()
            },
        );
    }

    #[test]
    fn shapes_are_checked() {
        let gi = rand(&[2, 12], 1);
        let h = rand(&[2, 5], 2);
        assert!(gi.apply_op3(&gi, &h, GruCell { keep: None }).is_err());
        let h = rand(&[2, 4], 2);
        assert!(
            gi.apply_op3(
                &gi,
                &h,
                GruCell {
                    keep: Some(vec![1.0])
                }
            )
            .is_err()
        );
        let keys = rand(&[2, 3, 4], 3);
        assert!(
            keys.apply_op3(&rand(&[2, 5], 4), &rand(&[1, 4], 5), AdditiveScore)
                .is_err()
        );
    }
}
