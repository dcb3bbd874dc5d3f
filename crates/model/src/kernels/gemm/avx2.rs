//! The AVX2 + FMA code behind [`super::sgemm`] on CPUs without AVX-512: the unpacked path
//! for products of at most [`super::FEW_ROWS`] rows (a decoding step, or the steps of a few
//! streams, through a weight). candle's `gemm` packs `b` for every such product and runs a
//! 16-row micro-kernel on them; reading `b` once as it lies is 1.8 times faster at 4 rows
//! (docs/BENCHMARKS.md). From 8 rows on, candle's packed product is the faster one, so the
//! rest stays with it ([`super::Isa::runs`]).
//!
//! Every function here is compiled for AVX2 and FMA and may only run on a CPU that has
//! both; the caller also guarantees that the output pointer covers a row-major block of the
//! product's shape.

use std::arch::x86_64::*;

use super::{Out, View};

/// Writes `v` to element `(i, j)` of the output, or adds it there with `accumulate`.
///
/// # Safety
/// `(i, j)` lies inside the caller's block, which only this call touches.
#[inline(always)]
unsafe fn put(out: Out, i: usize, j: usize, v: f32, accumulate: bool) {
    // SAFETY: as this function's contract.
    unsafe {
        let y = out.ptr.add(i * out.rs + j);
        *y = if accumulate { *y + v } else { v };
    }
}

/// `out (+)= a · b` for a product of at most [`super::FEW_ROWS`] rows, as the AVX-512 `few_rows`:
/// dot products down a transposed weight's columns (each column dotted with every row
/// while it is in L1), or scaled rows of a row-major `b`.
///
/// # Safety
/// The CPU has AVX2 and FMA, `a` has at most [`super::FEW_ROWS`] rows, and `out` points at a
/// row-major `a.rows × b.cols` block with row stride `out.rs` that nothing else reads or
/// writes during the call.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn few_rows(a: View, b: View, out: Out, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let x: Vec<Vec<f32>> = (0..m)
        .map(|i| (0..k).map(|p| a.at(i, p)).collect())
        .collect();
    if b.rs == 1 {
        for j in 0..n {
            let col = &b.data[j * b.cs..j * b.cs + k];
            for (i, xi) in x.iter().enumerate() {
                // SAFETY: `(i, j)` lies inside the caller's `m × n` block.
                unsafe { put(out, i, j, dot(xi, col), accumulate) };
            }
        }
        return;
    }
    for (i, xi) in x.iter().enumerate() {
        // SAFETY: row `i` of the caller's block holds `n` values that only this call
        // touches.
        let row = unsafe { std::slice::from_raw_parts_mut(out.ptr.add(i * out.rs), n) };
        if !accumulate {
            row.fill(0.0);
        }
        if b.cs == 1 {
            for (p, &xp) in xi.iter().enumerate() {
                axpy(xp, &b.data[p * b.rs..p * b.rs + n], row);
            }
        } else {
            for (j, y) in row.iter_mut().enumerate() {
                *y += (0..k).map(|p| xi[p] * b.at(p, j)).sum::<f32>();
            }
        }
    }
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
