//! Reproducible dropout for training.
//!
//! candle's CPU random generator cannot be seeded, so [`Dropout`] draws its keep-masks from
//! its own [`StdRng`]: each call takes one `u64` from it and expands that with SplitMix64
//! into the mask, two 32-bit draws per 64-bit output, in one pass over a `Vec` (no tensor
//! operation per element). The trainer makes one `Dropout` per step, seeded from the run's
//! seed and the step number, so a resumed run drops exactly the same units.

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::Result;

/// Inverted dropout: zeroes each element with probability `p` and scales the kept ones by
/// `1 / (1 - p)`, so the expected value is unchanged and inference needs no rescaling.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    rng: StdRng,
}

impl Dropout {
    /// Dropout with rate `p` (0 disables it; 1 or more zeroes everything), seeded by `seed`.
    pub fn new(p: f32, seed: u64) -> Self {
        Dropout {
            p,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The drop rate.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// The keep-mask for `n` elements: `0.0` (dropped) or `1 / (1 - p)` (kept).
    fn mask(&mut self, n: usize) -> Vec<f32> {
        let scale = 1.0 / (1.0 - self.p);
        // Keep when a uniform 32-bit draw is at or above p * 2^32.
        let threshold = (self.p as f64 * 4_294_967_296.0) as u64;
        let mut state = self.rng.next_u64();
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let r = splitmix64(&mut state);
            for half in [r & 0xffff_ffff, r >> 32] {
                out.push(if half >= threshold { scale } else { 0.0 });
            }
        }
        out.truncate(n);
        out
    }

    /// Applies dropout to `x` (any shape, f32); gradients flow through the kept elements.
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        if self.p >= 1.0 {
            return Ok(x.zeros_like()?);
        }
        let mask = Tensor::from_vec(self.mask(x.elem_count()), x.shape(), x.device())?;
        Ok(x.mul(&mask)?)
    }
}

/// One step of SplitMix64 (Steele, Lea and Flood 2014): fast and good enough for masks.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn ones(n: usize) -> Tensor {
        Tensor::ones((n, 64), candle_core::DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn dropout_is_reproducible_and_scaled() {
        let x = ones(100);
        let a = Dropout::new(0.25, 7).apply(&x).unwrap();
        let b = Dropout::new(0.25, 7).apply(&x).unwrap();
        let c = Dropout::new(0.25, 8).apply(&x).unwrap();
        let (a, b, c) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            c.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let kept = a.iter().filter(|&&v| v != 0.0).count();
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        // 6400 draws at p = 0.25: the kept share is 0.75 within a few standard deviations.
        let share = kept as f64 / a.len() as f64;
        assert!((share - 0.75).abs() < 0.03, "kept share {share}");
    }

    #[test]
    fn dropout_successive_masks_differ_and_p0_is_identity() {
        let x = ones(10);
        let mut d = Dropout::new(0.5, 1);
        let a = d.apply(&x).unwrap().flatten_all().unwrap();
        let b = d.apply(&x).unwrap().flatten_all().unwrap();
        assert_ne!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        let same = Dropout::new(0.0, 1).apply(&x).unwrap();
        assert_eq!(same.id(), x.id());
    }

    #[test]
    fn dropout_passes_gradients_to_kept_elements() {
        let v = Var::from_tensor(&ones(4)).unwrap();
        let y = Dropout::new(0.5, 3).apply(v.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(v.as_tensor()).unwrap();
        let (g, y) = (
            g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(g, y);
    }
}
