//! f32 matrix products for CPUs with AVX-512 (and, for products with a few rows, AVX2),
//! and the candle op that puts them under the networks' dense layers.
//!
//! candle's `gemm` dependency stops near the AVX2 rate on AVX-512 cores, about 55 % of what
//! PyTorch reaches on the same core (docs/BENCHMARKS.md). This module does what BLIS does
//! (Goto & van de Geijn 2008): `a` is packed into strips of up to [`MR`] rows that stay in L1,
//! `b` into panels of [`NR`] columns that stream from L2, and a register-blocked micro-kernel
//! ([`avx512`]) multiplies a strip by a panel with 28 accumulators in `zmm` registers. Inputs
//! may be strided (a transposed weight is read as it lies, no copy), products with a few rows
//! (a decoding step, or a batch of them through a weight) skip the packing, and large
//! products split their output across threads.
//! On a CPU with AVX2 and FMA but not AVX-512 ([`Isa::Avx2`]), products of a few rows run
//! on 8-lane registers ([`avx2`]) and larger ones stay with candle's `gemm`.
//! [`matmul`] wraps it as a differentiable candle op, which keeps candle's product where
//! [`runs`] says no (another CPU or shape, or `ATTNSCOPE_MATMUL=candle`).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod few;
mod op;
mod packed;

pub use op::matmul;
pub use packed::PackedWeight;

use candle_core::{Result, bail};

/// Rows of the micro-kernel's output tile.
pub(crate) const MR: usize = 14;
/// Columns of the micro-kernel's output tile: two 16-lane registers.
pub(crate) const NR: usize = 32;
/// Depth of a packed block: an `MR × KC` strip of `a` (14 KiB) stays in L1.
pub(crate) const KC: usize = 256;
/// Rows of `a` packed at once: an `MC × KC` block (336 KiB).
pub(crate) const MC: usize = MR * 24;
/// Columns of `b` packed at once: a `KC × NC` block (1 MiB) stays in L2.
pub(crate) const NC: usize = NR * 32;
/// Products with at most this many rows skip packing: each row reads `b` once, as it lies.
pub(crate) const FEW_ROWS: usize = 4;
/// Products with at most this many rows and a transposed `b` (a batch of decoding steps
/// through a weight) skip packing too: blocks of dot products read `b` once.
pub(crate) const DOT_ROWS: usize = 48;
/// Multiply-adds below which a product stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 21;
/// The environment variable that, set to `candle`, keeps candle's product under the
/// networks (the benchmarks' switch for timing both on one binary).
pub const SWITCH: &str = "ATTNSCOPE_MATMUL";

/// The instruction sets the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: every product.
    Avx512,
    /// AVX2 and FMA: products of at most [`FEW_ROWS`] rows.
    Avx2,
}

impl Isa {
    /// The best kernels this CPU can run, if any. Detected once per process.
    pub fn detect() -> Option<Isa> {
        static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Some(Isa::Avx512);
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Some(Isa::Avx2);
                }
            }
            None
        })
    }

    /// Every instruction set this CPU can run, best first (the tests run each).
    pub fn supported() -> Vec<Isa> {
        match Isa::detect() {
            Some(Isa::Avx512) => vec![Isa::Avx512, Isa::Avx2],
            Some(Isa::Avx2) => vec![Isa::Avx2],
            None => Vec::new(),
        }
    }

    /// Whether these kernels compute a product of `m` rows.
    pub fn runs(self, m: usize) -> bool {
        match self {
            Isa::Avx512 => true,
            Isa::Avx2 => m <= FEW_ROWS,
        }
    }
}

/// Whether this CPU runs the kernels for every product (x86-64 with AVX-512F).
pub fn available() -> bool {
    Isa::detect() == Some(Isa::Avx512)
}

/// Whether [`matmul`] runs these kernels for every product: the CPU has AVX-512
/// ([`available`]) and [`SWITCH`] does not say `candle`. Read once per process.
pub fn enabled() -> bool {
    switched_on() && available()
}

/// Whether [`matmul`] runs these kernels for a product of `m` rows: the CPU's [`Isa`] runs
/// it and [`SWITCH`] does not say `candle`.
pub fn runs(m: usize) -> bool {
    switched_on() && Isa::detect().is_some_and(|isa| isa.runs(m))
}

/// [`SWITCH`] does not say `candle`. Read once per process.
fn switched_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(SWITCH).map_or(true, |v| v != "candle"))
}

/// A read-only matrix in a slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A `rows × cols` matrix with row stride `rs` and column stride `cs`; an error when an
    /// element would lie outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(rs)
                .zip((cols - 1).checked_mul(cs))
                .and_then(|(r, c)| r.checked_add(c));
            match last {
                Some(last) if last < data.len() => {}
                _ => bail!(
                    "gemm: a {rows}x{cols} matrix with strides ({rs}, {cs}) does not fit in {} values",
                    data.len()
                ),
            }
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A contiguous row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, reading the same values.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// The `rows × cols` block whose first element is `(i, j)`; the caller keeps it inside
    /// the matrix.
    fn block(self, i: usize, j: usize, rows: usize, cols: usize) -> Self {
        debug_assert!(i + rows <= self.rows && j + cols <= self.cols);
        let start = if rows == 0 || cols == 0 {
            0
        } else {
            i * self.rs + j * self.cs
        };
        Self {
            data: &self.data[start..],
            rows,
            cols,
            ..self
        }
    }

    /// Element `(i, j)`.
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// A row-major block of the output, written through a pointer so that threads can share
/// one output slice, each writing its own block.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    /// Row stride.
    rs: usize,
}

// SAFETY: an `Out` is only ever handed to one thread per disjoint block of the output
// (see `sgemm`), and the slice it points into outlives the scoped threads that use it.
unsafe impl Send for Out {}

/// `c = a · b`, or `c += a · b` with `accumulate`, for `c` the row-major
/// `(a.rows, b.cols)` output, on up to `threads` threads, with the best kernels of this CPU.
///
/// Errors when the shapes disagree or this CPU's kernels do not run the product (see
/// [`Isa::runs`]).
pub fn sgemm(a: View, b: View, c: &mut [f32], accumulate: bool, threads: usize) -> Result<()> {
    match Isa::detect() {
        Some(isa) => sgemm_on(isa, a, b, c, accumulate, threads),
        None => bail!("gemm: this CPU has neither AVX-512 nor AVX2 and FMA; use candle's matmul"),
    }
}

/// [`sgemm`] with the kernels of `isa`, which the caller knows this CPU has (the tests run
/// the AVX2 ones on AVX-512 cores too).
fn sgemm_on(
    isa: Isa,
    a: View,
    b: View,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        bail!("gemm: cannot multiply {m}x{k} by {}x{n}", b.rows)
    }
    if c.len() != m * n {
        bail!("gemm: the output has {} values, not {m}x{n}", c.len())
    }
    if !Isa::supported().contains(&isa) {
        bail!("gemm: this CPU lacks {isa:?}; use candle's matmul")
    }
    if !isa.runs(m) {
        bail!("gemm: the {isa:?} kernels do not multiply {m} rows; use candle's matmul")
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    let out = Out {
        ptr: c.as_mut_ptr(),
        rs: n,
    };
    let threads = if m * n * k < PARALLEL_MIN {
        1
    } else {
        threads.max(1)
    };
    // Wide outputs split by columns (each thread packs its own panels of `b`), tall ones by
    // rows; every part is a disjoint block of `c`.
    let mut parts = Vec::with_capacity(threads);
    if threads > 1 && n >= threads * NR * 2 {
        let per = n.div_ceil(threads).div_ceil(NR) * NR;
        for j in (0..n).step_by(per) {
            let w = per.min(n - j);
            // SAFETY: `j < n`, so the block's first element lies inside `c`.
            let ptr = unsafe { out.ptr.add(j) };
            parts.push((a, b.block(0, j, k, w), Out { ptr, rs: n }));
        }
    } else if threads > 1 && m >= threads * MR {
        let per = m.div_ceil(threads).div_ceil(MR) * MR;
        for i in (0..m).step_by(per) {
            let h = per.min(m - i);
            // SAFETY: `i < m`, so the block's first element lies inside `c`.
            let ptr = unsafe { out.ptr.add(i * n) };
            parts.push((a.block(i, 0, h, k), b, Out { ptr, rs: n }));
        }
    } else {
        parts.push((a, b, out));
    }
    let Some((&first, rest)) = parts.split_first() else {
        return Ok(());
    };
    std::thread::scope(|scope| {
        for &(a, b, out) in rest {
            scope.spawn(move || serial(isa, a, b, out, accumulate));
        }
        serial(isa, first.0, first.1, first.2, accumulate);
    });
    Ok(())
}

/// One thread's product into its block of the output.
fn serial(isa: Isa, a: View, b: View, out: Out, accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sgemm_on` checked that the CPU has `isa` and that its kernels run this
    // product's shape, and `out` points at a row-major `a.rows × b.cols` block (row stride
    // `out.rs`) that only this call writes.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::gemm(a, b, out, accumulate),
            Isa::Avx2 => avx2::few_rows(a, b, out, accumulate),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, a, b, out, accumulate);
        unreachable!("sgemm refuses to run without AVX-512 or AVX2")
    }
}

#[cfg(test)]
mod tests;
