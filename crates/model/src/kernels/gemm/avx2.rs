//! The AVX2 + FMA code behind [`super::sgemm`] on CPUs without AVX-512: the shared
//! unpacked path ([`super::few`]) on 8-lane registers, for products of at most
//! [`super::FEW_ROWS`] rows (a decoding step, or the steps of a few streams, through a
//! weight). candle's `gemm` packs `b` for every such product and runs a 16-row micro-kernel
//! on them; reading `b` once as it lies is 1.8 times faster at 4 rows (docs/BENCHMARKS.md).
//! From 8 rows on, candle's packed product is the faster one, so the rest stays with it
//! ([`super::Isa::runs`]).
//!
//! Every function here is compiled for AVX2 and FMA and may only run on a CPU that has
//! both; the caller also guarantees that the output pointer covers a row-major block of the
//! product's shape.

use std::arch::x86_64::*;

use super::few::{self, Lanes};
use super::{Out, View};

/// The 8-lane primitives of the few-row path.
struct Avx2;

impl Lanes for Avx2 {
    #[inline(always)]
    unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
        // SAFETY: the caller's CPU has AVX2 and FMA.
        unsafe { dot(x, y) }
    }

    #[inline(always)]
    unsafe fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: the caller's CPU has AVX2 and FMA.
        unsafe { axpy(s, x, y) }
    }
}

/// `out (+)= a · b` for a product of at most [`super::FEW_ROWS`] rows ([`super::few`]).
///
/// # Safety
/// The CPU has AVX2 and FMA, `a` has at most [`super::FEW_ROWS`] rows, and `out` points at
/// a row-major `a.rows × b.cols` block with row stride `out.rs` that nothing else reads or
/// writes during the call.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn few_rows(a: View, b: View, out: Out, accumulate: bool) {
    // SAFETY: as this function's contract.
    unsafe { few::few_rows::<Avx2>(a, b, out, accumulate) }
}

/// The sum of a register's 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// `Σ x[p] y[p]` with four 8-lane accumulators.
#[target_feature(enable = "avx2,fma")]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut p = 0;
    while p + 32 <= n {
        for (q, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `p + 32 <= n`, so lanes `p + 8q .. p + 8q + 8` are in both slices.
            unsafe {
                let xs = _mm256_loadu_ps(x.as_ptr().add(p + 8 * q));
                let ys = _mm256_loadu_ps(y.as_ptr().add(p + 8 * q));
                *acc = _mm256_fmadd_ps(xs, ys, *acc);
            }
        }
        p += 32;
    }
    while p + 8 <= n {
        // SAFETY: `p + 8 <= n`.
        unsafe {
            let xs = _mm256_loadu_ps(x.as_ptr().add(p));
            let ys = _mm256_loadu_ps(y.as_ptr().add(p));
            acc[0] = _mm256_fmadd_ps(xs, ys, acc[0]);
        }
        p += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum(sum);
    for q in p..n {
        total += x[q] * y[q];
    }
    total
}

/// `y += s x`.
#[target_feature(enable = "avx2,fma")]
fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let sv = _mm256_set1_ps(s);
    let mut p = 0;
    while p + 8 <= n {
        // SAFETY: `p + 8 <= n`, so the 8 lanes from `p` are in both slices.
        unsafe {
            let xs = _mm256_loadu_ps(x.as_ptr().add(p));
            let ys = _mm256_loadu_ps(y.as_ptr().add(p));
            _mm256_storeu_ps(y.as_mut_ptr().add(p), _mm256_fmadd_ps(sv, xs, ys));
        }
        p += 8;
    }
    for q in p..n {
        y[q] += s * x[q];
    }
}
