//! How attention scores become the distribution a decoder uses: softmax, hard (one-hot at the
//! argmax), sampled (one position drawn from the softmax, seeded) or sparsemax, at a
//! temperature, and interventions that force one source position. Two more replace the
//! attention to test whether it matters (Jain & Wallace 2019): uniform weights, and the
//! softmax's own weights shuffled over the source (seeded).
//!
//! Every function here maps masked scores of any shape `(..., S)` (padding at -1e9) to
//! weights of the same shape whose rows sum to 1 and that are 0 at padding.

use candle_core::{D, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// The distribution a decoder attends with at inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `softmax(scores / T)`: the model's own soft attention.
    #[default]
    Soft,
    /// One-hot at the highest score.
    Hard,
    /// One-hot at a position drawn from `softmax(scores / T)` with a seeded generator.
    Sampled,
    /// `sparsemax(scores / T)` (Martins & Astudillo 2016): the Euclidean projection of the
    /// scores onto the simplex, which gives many weights exactly 0.
    Sparsemax,
    /// The same weight on every source token: attention switched off.
    Uniform,
    /// `softmax(scores / T)` randomly permuted over the source positions (seeded): the same
    /// weights, on the wrong tokens.
    Shuffled,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::Soft,
        Mode::Hard,
        Mode::Sampled,
        Mode::Sparsemax,
        Mode::Uniform,
        Mode::Shuffled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Soft => "soft",
            Mode::Hard => "hard",
            Mode::Sampled => "sampled",
            Mode::Sparsemax => "sparsemax",
            Mode::Uniform => "uniform",
            Mode::Shuffled => "shuffled",
        }
    }
}

crate::names::named!(Mode, as_str, "attention mode");

/// Scores at or below this are padding (masked scores are -1e9).
const MASKED: f32 = -1e8;

/// The largest temperature accepted, and the smallest.
pub const TEMPERATURE_RANGE: (f32, f32) = (0.05, 20.0);

/// A mode, its temperature and the generator for `sampled`.
#[derive(Clone, Debug)]
pub struct Distribution {
    pub mode: Mode,
    pub temperature: f32,
    rng: StdRng,
}

impl Distribution {
    /// Checks the temperature and seeds the generator used by [`Mode::Sampled`].
    pub fn new(mode: Mode, temperature: f32, seed: u64) -> Result<Self> {
        let (lo, hi) = TEMPERATURE_RANGE;
        if !(temperature.is_finite() && (lo..=hi).contains(&temperature)) {
            return Err(Error::Invalid(format!(
                "temperature {temperature} is out of range; use a value from {lo} to {hi}"
            )));
        }
        Ok(Distribution {
            mode,
            temperature,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Weights from masked scores, row by row over the last dimension.
    ///
    /// # Shapes
    /// - `scores`: `(..., S)` with -1e9 at padding; returns the same shape
    pub fn weights(&mut self, scores: &Tensor) -> Result<Tensor> {
        let scaled = if self.temperature == 1.0 {
            scores.clone()
        } else {
            (scores / self.temperature as f64)?
        };
        if self.mode == Mode::Soft {
            return Ok(candle_nn::ops::softmax_last_dim(&scaled.contiguous()?)?);
        }
        let shape = scores.shape().clone();
        let s = scores.dim(D::Minus1)?;
        let flat = scaled.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; flat.len()];
        for (row, o) in flat.chunks(s).zip(out.chunks_mut(s)) {
            match self.mode {
                Mode::Soft => unreachable!("handled above"),
                Mode::Hard => o[argmax(row)] = 1.0,
                Mode::Sampled => {
                    let p = softmax(row);
                    let mut u: f32 = self.rng.random();
                    let mut pick = argmax(&p);
                    for (j, &pj) in p.iter().enumerate() {
                        if pj > 0.0 {
                            if u < pj {
                                pick = j;
                                break;
                            }
                            u -= pj;
                        }
                    }
                    o[pick] = 1.0;
                }
                Mode::Sparsemax => o.copy_from_slice(&sparsemax(row)),
                Mode::Uniform => {
                    let n = row.iter().filter(|&&v| v > MASKED).count().max(1);
                    for (w, &v) in o.iter_mut().zip(row) {
                        *w = if v > MASKED { 1.0 / n as f32 } else { 0.0 };
                    }
                }
                Mode::Shuffled => {
                    // Fisher-Yates over the unmasked positions only.
                    let p = softmax(row);
                    let mut at: Vec<usize> = (0..s).filter(|&j| row[j] > MASKED).collect();
                    let targets = at.clone();
                    for i in (1..at.len()).rev() {
                        let j = self.rng.random_range(0..=i);
                        at.swap(i, j);
                    }
                    for (&from, &to) in targets.iter().zip(&at) {
                        o[to] = p[from];
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, shape, scores.device())?)
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// A numerically stable softmax of one row.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

/// Sparsemax of one row: `max(z_j - τ, 0)` with `τ` chosen so the result sums to 1.
pub fn sparsemax(row: &[f32]) -> Vec<f32> {
    let mut sorted = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cum, mut tau) = (0f32, sorted[0] - 1.0);
    for (k, &z) in sorted.iter().enumerate() {
        cum += z;
        let t = (cum - 1.0) / (k + 1) as f32;
        if z > t {
            tau = t;
        } else {
            break;
        }
    }
    let mut out: Vec<f32> = row.iter().map(|&z| (z - tau).max(0.0)).collect();
    // Renormalise away float rounding so rows sum to 1 exactly as far as f32 allows.
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|v| *v /= sum);
    out
}

/// A one-hot row of length `len` at `pos`.
pub fn one_hot(len: usize, pos: usize) -> Vec<f32> {
    let mut v = vec![0f32; len];
    v[pos] = 1.0;
    v
}

/// Entropy in nats of one attention row.
pub fn entropy(row: &[f32]) -> f32 {
    -row.iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rows(mode: Mode, t: f32, seed: u64) -> Vec<Vec<f32>> {
        let scores = Tensor::new(
            &[
                [2.0f32, 1.0, 0.5, -1e9],
                [0.1, 0.2, 3.0, 2.9],
                [0.0, 0.0, 0.0, 0.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        Distribution::new(mode, t, seed)
            .unwrap()
            .weights(&scores)
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    #[test]
    fn every_mode_gives_rows_that_sum_to_one_and_skip_padding() {
        for mode in Mode::ALL {
            for t in [0.5, 1.0, 3.0] {
                for (i, r) in rows(mode, t, 7).iter().enumerate() {
                    let sum: f32 = r.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{mode} T={t} row {i}: {r:?}");
                    assert!(r.iter().all(|&w| w >= 0.0));
                    if i == 0 {
                        assert_eq!(r[3], 0.0, "{mode}: padding got weight");
                    }
                }
            }
        }
    }

    #[test]
    fn hard_and_sampled_rows_are_one_hot() {
        let hard = rows(Mode::Hard, 1.0, 0);
        assert_eq!(hard[0], vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(hard[1], vec![0.0, 0.0, 1.0, 0.0]);
        for seed in 0..20 {
            for r in rows(Mode::Sampled, 1.0, seed) {
                assert_eq!(r.iter().filter(|&&w| w == 1.0).count(), 1);
                assert_eq!(r.iter().filter(|&&w| w == 0.0).count(), 3);
            }
        }
        // Seeded: the same seed draws the same positions; some seed draws a non-argmax.
        assert_eq!(rows(Mode::Sampled, 1.0, 3), rows(Mode::Sampled, 1.0, 3));
        assert!((0..20).any(|s| rows(Mode::Sampled, 1.0, s)[1][3] == 1.0));
    }

    #[test]
    fn uniform_spreads_evenly_and_shuffled_permutes_the_softmax() {
        let u = rows(Mode::Uniform, 1.0, 0);
        assert_eq!(u[0], vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
        assert_eq!(u[1], vec![0.25; 4]);
        let soft = rows(Mode::Soft, 1.0, 0);
        let mut moved = false;
        for seed in 0..10 {
            let s = rows(Mode::Shuffled, 1.0, seed);
            for (a, b) in s.iter().zip(&soft) {
                let (mut x, mut y) = (a.clone(), b.clone());
                x.sort_by(f32::total_cmp);
                y.sort_by(f32::total_cmp);
                assert_eq!(x, y, "the same weights");
            }
            assert_eq!(s[0][3], 0.0, "padding stays empty");
            moved |= s[1] != soft[1];
        }
        assert!(moved);
        assert_eq!(rows(Mode::Shuffled, 1.0, 4), rows(Mode::Shuffled, 1.0, 4));
    }

    #[test]
    fn sparsemax_is_sparse_and_matches_the_closed_form() {
        let r = rows(Mode::Sparsemax, 1.0, 0);
        // [2, 1, 0.5]: support {2, 1}, τ = (3 - 1) / 2 = 1 → [1, 0, 0].
        assert_eq!(r[0], vec![1.0, 0.0, 0.0, 0.0]);
        // [0.1, 0.2, 3.0, 2.9]: support {3.0, 2.9}, τ = 2.45 → [0, 0, .55, .45].
        assert!((r[1][2] - 0.55).abs() < 1e-5 && (r[1][3] - 0.45).abs() < 1e-5);
        assert_eq!(&r[1][..2], &[0.0, 0.0]);
        // Ties spread evenly.
        assert_eq!(r[2], vec![0.25; 4]);
    }

    #[test]
    fn temperature_sharpens_or_flattens_soft_attention() {
        let cold = rows(Mode::Soft, 0.5, 0);
        let warm = rows(Mode::Soft, 3.0, 0);
        assert!(entropy(&cold[0]) < entropy(&rows(Mode::Soft, 1.0, 0)[0]));
        assert!(entropy(&warm[0]) > entropy(&rows(Mode::Soft, 1.0, 0)[0]));
        assert!(Distribution::new(Mode::Soft, 0.0, 0).is_err());
        assert!(Distribution::new(Mode::Soft, f32::NAN, 0).is_err());
        assert_eq!("sparsemax".parse::<Mode>().unwrap(), Mode::Sparsemax);
        assert!("argmax".parse::<Mode>().is_err());
    }
}
