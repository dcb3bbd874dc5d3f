//! The unpacked path for products of at most [`FEW_ROWS`] rows (a decoding step, or the
//! steps of a few streams, through a weight), shared by every instruction set: `b` is read
//! once as it lies, by dot products down a transposed weight's columns or by scaled rows of
//! a row-major `b`. Each instruction set gives its two vector primitives ([`Lanes`]); this
//! function is inlined into that set's `#[target_feature]` caller, so they inline too.

use super::{FEW_ROWS, Out, View};

/// The vector primitives of one instruction set.
pub(super) trait Lanes {
    /// `Σ x[p] y[p]` over the shorter slice.
    ///
    /// # Safety
    /// The CPU has this instruction set.
    unsafe fn dot(x: &[f32], y: &[f32]) -> f32;

    /// `y += s x` over the shorter slice.
    ///
    /// # Safety
    /// The CPU has this instruction set.
    unsafe fn axpy(s: f32, x: &[f32], y: &mut [f32]);
}

/// `out (+)= a · b` for a product of at most [`FEW_ROWS`] rows.
///
/// # Safety
/// The CPU has `L`'s instruction set, and `out` points at a row-major `a.rows × b.cols`
/// block with row stride `out.rs` that nothing else reads or writes during the call.
#[inline(always)]
pub(super) unsafe fn few_rows<L: Lanes>(a: View, b: View, out: Out, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert!(m <= FEW_ROWS);
    let x: Vec<Vec<f32>> = (0..m)
        .map(|i| (0..k).map(|p| a.at(i, p)).collect())
        .collect();
    if b.rs == 1 {
        // Column by column, each dotted with every row while it is in L1: the weight is
        // read once, not once a row.
        for j in 0..n {
            let col = &b.data[j * b.cs..j * b.cs + k];
            for (i, xi) in x.iter().enumerate() {
                // SAFETY: the CPU has `L`'s instruction set, and `(i, j)` lies inside the
                // caller's `m × n` block, which only this call touches.
                unsafe {
                    let v = L::dot(xi, col);
                    let y = out.ptr.add(i * out.rs + j);
                    *y = if accumulate { *y + v } else { v };
                }
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
                // SAFETY: the CPU has `L`'s instruction set.
                unsafe { L::axpy(xp, &b.data[p * b.rs..p * b.rs + n], row) };
            }
        } else {
            for (j, y) in row.iter_mut().enumerate() {
                *y += (0..k).map(|p| xi[p] * b.at(p, j)).sum::<f32>();
            }
        }
    }
}
