//! The AVX-512 code behind [`super::sgemm`]: packing, the `MR × NR` micro-kernel, the
//! cache-blocked loops around it, and the unpacked path for products with a few rows.
//!
//! Every function here is compiled for AVX-512F and may only run on a CPU that has it
//! ([`super::available`]); the caller also guarantees that the output pointer covers a
//! row-major block of the product's shape.

use std::arch::x86_64::*;

use super::few::{Lanes, few_rows};
use super::{DOT_ROWS, FEW_ROWS, KC, MC, MR, NC, NR, Out, View};

/// The 16-lane primitives of the few-row path.
struct Avx512;

impl Lanes for Avx512 {
    #[inline(always)]
    unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
        // SAFETY: the caller's CPU has AVX-512F.
        unsafe { dot(x, y) }
    }

    #[inline(always)]
    unsafe fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: the caller's CPU has AVX-512F.
        unsafe { axpy(s, x, y) }
    }
}

/// A zeroed buffer of `len + 16` values and the offset from which `len` of them are 64-byte
/// aligned. Each product allocates its own: keeping them per thread would hold up to 1.3 MB
/// in each of the server's stream threads (one per open stream).
fn aligned(len: usize) -> (Vec<f32>, usize) {
    let buf = vec![0f32; len + 16];
    let start = buf.as_ptr().align_offset(64).min(16);
    (buf, start)
}

/// `out (+)= a · b`.
///
/// # Safety
/// The CPU has AVX-512F, and `out` points at a row-major `a.rows × b.cols` block with row
/// stride `out.rs` that nothing else reads or writes during the call.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gemm(a: View, b: View, out: Out, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m <= FEW_ROWS {
        // SAFETY: as this function's contract; the CPU has AVX-512F.
        unsafe { few_rows::<Avx512>(a, b, out, accumulate) };
        return;
    }
    if m <= DOT_ROWS && b.rs == 1 {
        // SAFETY: as this function's contract.
        unsafe { dot_blocks(a, b, out, accumulate) };
        return;
    }
    let (mut pa, a0) = aligned(MC.min(m.div_ceil(MR) * MR) * KC.min(k));
    let (mut pb, b0) = aligned(NC.min(n.div_ceil(NR) * NR) * KC.min(k));
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b.block(pc, jc, kc, nc), &mut pb[b0..]);
            let add = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(a.block(ic, pc, mc, kc), &mut pa[a0..]);
                // A strip stays in L1 while the panels of the packed block stream past it
                // from L2 (BLIS's order: measured a few per cent faster than the reverse).
                for ir in (0..mc).step_by(MR) {
                    let mr = MR.min(mc - ir);
                    let strip = &pa[a0 + ir * kc..a0 + (ir + mr) * kc];
                    for jr in (0..nc).step_by(NR) {
                        let nr = NR.min(nc - jr);
                        let panel = &pb[b0 + jr * kc..b0 + (jr + NR) * kc];
                        // SAFETY: the tile `(ic + ir, jc + jr)` of `mr × nr` lies inside
                        // the caller's block, and the packed strip and panel hold `kc`
                        // steps of `mr` and `NR` values.
                        unsafe {
                            let c = out.ptr.add((ic + ir) * out.rs + jc + jr);
                            tile(mr, kc, strip, panel, c, out.rs, nr, add);
                        }
                    }
                }
            }
        }
    }
}

/// `b`'s `kc × nc` block as consecutive `kc × NR` panels, each row of a panel `NR` values
/// (zero past the block's last column).
#[target_feature(enable = "avx512f")]
fn pack_b(b: View, dst: &mut [f32]) {
    let (kc, nc) = (b.rows, b.cols);
    for j0 in (0..nc).step_by(NR) {
        let w = NR.min(nc - j0);
        let panel = &mut dst[j0 * kc..(j0 + NR) * kc];
        if b.cs == 1 {
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &b.data[p * b.rs + j0..p * b.rs + j0 + w];
                row[..w].copy_from_slice(src);
                row[w..].fill(0.0);
            }
        } else if b.rs == 1 {
            // A transposed weight: each column of the block is contiguous.
            pack_columns(b, j0, w, panel);
        } else {
            for j in 0..w {
                let col = j0 + j;
                for p in 0..kc {
                    panel[p * NR + j] = b.data[p * b.rs + col * b.cs];
                }
            }
            if w < NR {
                for row in panel.chunks_exact_mut(NR) {
                    row[w..].fill(0.0);
                }
            }
        }
    }
}

/// One panel of a block whose columns are contiguous (`b.rs == 1`, a transposed weight):
/// columns `j0 .. j0 + w` into `panel` (`kc × NR`), 16 × 16 blocks at a time through
/// register transposes, the ragged edges value by value.
#[target_feature(enable = "avx512f")]
fn pack_columns(b: View, j0: usize, w: usize, panel: &mut [f32]) {
    let kc = b.rows;
    let full_p = kc / 16 * 16;
    for half in 0..2 {
        let jh = half * 16;
        if w < jh + 16 {
            continue;
        }
        for p0 in (0..full_p).step_by(16) {
            let block = transposed_block(b.data, (j0 + jh) * b.cs + p0, b.cs, 16);
            for (k, v) in block.into_iter().enumerate() {
                let dst = &mut panel[(p0 + k) * NR + jh..(p0 + k) * NR + jh + 16];
                // SAFETY: `dst` holds the 16 values stored.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) };
            }
        }
    }
    // Columns past the full halves, and steps past the last whole block of 16.
    let full_j = if w >= 32 {
        32
    } else if w >= 16 {
        16
    } else {
        0
    };
    for j in 0..w {
        let col = &b.data[(j0 + j) * b.cs..];
        let from = if j < full_j { full_p } else { 0 };
        for p in from..kc {
            panel[p * NR + j] = col[p];
        }
    }
    if w < NR {
        for row in panel.chunks_exact_mut(NR) {
            row[w..].fill(0.0);
        }
    }
}

/// `lines` runs of 16 contiguous values, the first at `data[first]` and each `stride` after the
/// one before (zeros for the lines past `lines`, up to 16), transposed: element `i` of
/// register `k` is value `k` of line `i`.
#[target_feature(enable = "avx512f")]
fn transposed_block(data: &[f32], first: usize, stride: usize, lines: usize) -> [__m512; 16] {
    let rows: [__m512; 16] = std::array::from_fn(|i| {
        if i >= lines {
            return _mm512_setzero_ps();
        }
        let line = &data[first + i * stride..first + i * stride + 16];
        // SAFETY: `line` holds the 16 values loaded.
        unsafe { _mm512_loadu_ps(line.as_ptr()) }
    });
    transpose16(rows)
}

/// The transpose of a 16 × 16 block held as 16 rows: element `k` of row `i` becomes
/// element `i` of row `k` (pairs, then quads within 128-bit lanes, then the lanes).
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4g + c]: rows 4g .. 4g + 3 at column 4L + c in lane L.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * g + c / 2]),
            _mm512_castps_pd(t[4 * g + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let (a, b, cc, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
        let v0 = _mm512_shuffle_f32x4::<0x44>(a, b);
        let v1 = _mm512_shuffle_f32x4::<0xEE>(a, b);
        let v2 = _mm512_shuffle_f32x4::<0x44>(cc, d);
        let v3 = _mm512_shuffle_f32x4::<0xEE>(cc, d);
        out[c] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        out[4 + c] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        out[8 + c] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
    out
}

/// `a`'s `mc × kc` block as consecutive strips of `MR` rows (fewer in the last), a strip
/// of `r` rows stored step by step: `r` values of column `p`, then of `p + 1`.
#[target_feature(enable = "avx512f")]
fn pack_a(a: View, dst: &mut [f32]) {
    let (mc, kc) = (a.rows, a.cols);
    for i0 in (0..mc).step_by(MR) {
        let r = MR.min(mc - i0);
        let strip = &mut dst[i0 * kc..(i0 + r) * kc];
        if a.cs == 1 {
            pack_rows(a, i0, r, strip);
        } else if a.rs == 1 {
            // A transposed matrix: the strip's `r` values of each step are contiguous.
            for (p, step) in strip.chunks_exact_mut(r).enumerate() {
                let start = p * a.cs + i0;
                step.copy_from_slice(&a.data[start..start + r]);
            }
        } else {
            for p in 0..kc {
                for i in 0..r {
                    strip[p * r + i] = a.at(i0 + i, p);
                }
            }
        }
    }
}

/// One strip of a row-major `a` (`a.cs == 1`): rows `i0 .. i0 + r` into `strip`, step by
/// step, 16 steps at a time through a register transpose (rows past `r` read as zeros and
/// are not stored), the last steps value by value.
#[target_feature(enable = "avx512f")]
fn pack_rows(a: View, i0: usize, r: usize, strip: &mut [f32]) {
    let kc = a.cols;
    let full_p = kc / 16 * 16;
    let mask: __mmask16 = ((1u32 << r) - 1) as u16;
    for p0 in (0..full_p).step_by(16) {
        let block = transposed_block(a.data, i0 * a.rs + p0, a.rs, r);
        for (k, v) in block.into_iter().enumerate() {
            let dst = &mut strip[(p0 + k) * r..(p0 + k + 1) * r];
            // SAFETY: the mask stores the first `r` lanes, which `dst` holds.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, v) };
        }
    }
    for i in 0..r {
        let row = &a.data[(i0 + i) * a.rs..];
        for p in full_p..kc {
            strip[p * r + i] = row[p];
        }
    }
}

/// Runs the micro-kernel for a strip of `mr` rows (its row count fixed at compile time).
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    mr: usize,
    kc: usize,
    strip: &[f32],
    panel: &[f32],
    c: *mut f32,
    rsc: usize,
    nr: usize,
    add: bool,
) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match mr {
                // SAFETY: as this function's contract.
                $($r => unsafe { kernel::<$r>(kc, strip, panel, c, rsc, nr, add) },)*
                _ => unreachable!("a strip has 1 to MR rows"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
}

/// The masks that select the first `nr` of a tile's 32 columns, 16 per register.
#[inline(always)]
fn masks(nr: usize) -> (__mmask16, __mmask16) {
    let lo = if nr >= 16 {
        0xFFFF
    } else {
        ((1u32 << nr) - 1) as u16
    };
    let hi = if nr >= 32 {
        0xFFFF
    } else if nr > 16 {
        ((1u32 << (nr - 16)) - 1) as u16
    } else {
        0
    };
    (lo, hi)
}

/// `c (+)= strip · panel` for an `R × NR` tile: `R × 2` accumulators, per step two loads
/// of the panel, `R` broadcasts of the strip and `2R` fused multiply-adds; only the first
/// `nr` columns are written.
///
/// # Safety
/// `c` points at `R` rows (stride `rsc`) of at least `nr` writable values each; `strip`
/// holds `kc × R` values and `panel` `kc × NR`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const R: usize>(
    kc: usize,
    strip: &[f32],
    panel: &[f32],
    c: *mut f32,
    rsc: usize,
    nr: usize,
    add: bool,
) {
    debug_assert!(strip.len() >= kc * R && panel.len() >= kc * NR);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut pa = strip.as_ptr();
    let mut pb = panel.as_ptr();
    for _ in 0..kc {
        // SAFETY: step `p` reads `R` values of the strip and `NR` of the panel, all
        // within the lengths checked above.
        unsafe {
            let b0 = _mm512_loadu_ps(pb);
            let b1 = _mm512_loadu_ps(pb.add(16));
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*pa.add(i));
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
            pa = pa.add(R);
            pb = pb.add(NR);
        }
    }
    let (lo, hi) = masks(nr);
    for (i, acc) in acc.iter().enumerate() {
        // SAFETY: row `i` of the tile holds `nr` writable values; masked-off lanes are
        // neither read nor written (AVX-512 suppresses their faults), and the second
        // register's address is only formed, never dereferenced, when `nr <= 16`.
        unsafe {
            let row = c.add(i * rsc);
            let row_hi = row.wrapping_add(16);
            let (mut x0, mut x1) = (acc[0], acc[1]);
            if add {
                x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(lo, row));
                x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(hi, row_hi));
            }
            _mm512_mask_storeu_ps(row, lo, x0);
            _mm512_mask_storeu_ps(row_hi, hi, x1);
        }
    }
}

/// `out (+)= a · b` for a product of at most [`DOT_ROWS`] rows whose `b` has its columns
/// contiguous (a transposed weight, as a batch of decoding steps meets it): 4 rows of `a`
/// by 4 columns of `b` at a time, 16 dot products in 16 registers, so each column of `b` is
/// read once and no block is packed.
///
/// # Safety
/// As [`gemm`], and `b.rs == 1`.
#[target_feature(enable = "avx512f")]
unsafe fn dot_blocks(a: View, b: View, out: Out, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let x: Vec<f32> = (0..m * k).map(|q| a.at(q / k, q % k)).collect();
    let full = k / 16 * 16;
    let tail: __mmask16 = ((1u32 << (k - full)) - 1) as __mmask16;
    let row = |i: usize| &x[i.min(m - 1) * k..i.min(m - 1) * k + k];
    let col = |j: usize| {
        let j = j.min(n - 1);
        &b.data[j * b.cs..j * b.cs + k]
    };
    for j0 in (0..n).step_by(4) {
        let cols = [col(j0), col(j0 + 1), col(j0 + 2), col(j0 + 3)];
        for i0 in (0..m).step_by(4) {
            let rows = [row(i0), row(i0 + 1), row(i0 + 2), row(i0 + 3)];
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            let mut p = 0;
            while p < k {
                let (xs, ys): ([__m512; 4], [__m512; 4]) = if p < full {
                    // SAFETY: `p + 16 <= full <= k`, and every row and column holds `k`.
                    unsafe {
                        (
                            rows.map(|r| _mm512_loadu_ps(r.as_ptr().add(p))),
                            cols.map(|c| _mm512_loadu_ps(c.as_ptr().add(p))),
                        )
                    }
                } else {
                    // SAFETY: the mask keeps lanes `p .. k`, inside every row and column.
                    unsafe {
                        (
                            rows.map(|r| _mm512_maskz_loadu_ps(tail, r.as_ptr().add(p))),
                            cols.map(|c| _mm512_maskz_loadu_ps(tail, c.as_ptr().add(p))),
                        )
                    }
                };
                for (acc, &xr) in acc.iter_mut().zip(&xs) {
                    for (a, &yc) in acc.iter_mut().zip(&ys) {
                        *a = _mm512_fmadd_ps(xr, yc, *a);
                    }
                }
                p += 16;
            }
            for (r, acc) in acc.iter().enumerate().take(m - i0) {
                for (c, a) in acc.iter().enumerate().take(n - j0) {
                    let v = _mm512_reduce_add_ps(*a);
                    // SAFETY: `(i0 + r, j0 + c)` lies inside the caller's `m × n` block.
                    unsafe {
                        let y = out.ptr.add((i0 + r) * out.rs + j0 + c);
                        *y = if accumulate { *y + v } else { v };
                    }
                }
            }
        }
    }
}

/// `Σ x[p] y[p]` with four 16-lane accumulators.
#[target_feature(enable = "avx512f")]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut p = 0;
    while p + 64 <= n {
        for (q, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `p + 64 <= n`, so lanes `p + 16q .. p + 16q + 16` are in both slices.
            unsafe {
                let xs = _mm512_loadu_ps(x.as_ptr().add(p + 16 * q));
                let ys = _mm512_loadu_ps(y.as_ptr().add(p + 16 * q));
                *acc = _mm512_fmadd_ps(xs, ys, *acc);
            }
        }
        p += 64;
    }
    while p + 16 <= n {
        // SAFETY: `p + 16 <= n`.
        unsafe {
            let xs = _mm512_loadu_ps(x.as_ptr().add(p));
            let ys = _mm512_loadu_ps(y.as_ptr().add(p));
            acc[0] = _mm512_fmadd_ps(xs, ys, acc[0]);
        }
        p += 16;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut total = _mm512_reduce_add_ps(sum);
    for q in p..n {
        total += x[q] * y[q];
    }
    total
}

/// `y += s x`.
#[target_feature(enable = "avx512f")]
fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let sv = _mm512_set1_ps(s);
    let mut p = 0;
    while p + 16 <= n {
        // SAFETY: `p + 16 <= n`, so the 16 lanes from `p` are in both slices.
        unsafe {
            let xs = _mm512_loadu_ps(x.as_ptr().add(p));
            let ys = _mm512_loadu_ps(y.as_ptr().add(p));
            _mm512_storeu_ps(y.as_mut_ptr().add(p), _mm512_fmadd_ps(sv, xs, ys));
        }
        p += 16;
    }
    for q in p..n {
        y[q] += s * x[q];
    }
}
