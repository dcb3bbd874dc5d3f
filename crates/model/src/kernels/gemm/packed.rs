//! [`PackedWeight`]: a constant weight `W` `(n, k)` packed once, for the products `x · Wᵀ`
//! of a decoding batch (tens of rows through the output layer) on CPUs with AVX2 and FMA.
//!
//! candle's `gemm` packs `Wᵀ` into column panels for every product, which for the output
//! layer means reading and writing 8 MB before each batch step of a few dozen rows. A
//! weight that does not change (a loaded model) is packed here once, into panels of
//! [`PANEL`] output columns, each `k × PANEL` values contiguous. A product then streams each
//! panel once (16 KiB at `k = 256`, kept in L1) past every row of `x`, six rows at a time
//! with twelve 8-lane accumulators: the BLIS micro-kernel shape, without the per-product
//! packing. A product of one to three rows (a stream decoding alone) runs two to four panels
//! side by side instead, so that enough independent multiply-add chains hide their latency.
//! Each output element adds its `k` terms in order either way, so a row gets the same
//! numbers, bit for bit, whatever rows it is multiplied with.

use candle_core::{Result, bail};

use super::PARALLEL_MIN;

/// Output columns of a panel: two 8-lane registers.
pub const PANEL: usize = 16;
/// Rows of `x` a micro-kernel call multiplies.
const ROWS: usize = 6;

/// A weight `(n, k)` packed for products `x · Wᵀ` (see the module documentation).
#[derive(Clone, Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    /// `n.div_ceil(PANEL)` panels; panel `p`, depth `q`, lane `l` holds `W[p·PANEL + l, q]`
    /// (zero past `n`).
    panels: Vec<f32>,
    /// Added to each output row after its products (`n` values), if the layer has one.
    bias: Option<Vec<f32>>,
}

impl PackedWeight {
    /// Packs the row-major `(n, k)` weight `w`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self> {
        if w.len() != n * k {
            bail!("packed weight: {} values are not {n}x{k}", w.len())
        }
        let mut panels = vec![0f32; n.div_ceil(PANEL) * PANEL * k];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, l) = (j / PANEL, j % PANEL);
            let panel = &mut panels[p * PANEL * k..(p + 1) * PANEL * k];
            for (q, &v) in row.iter().enumerate() {
                panel[q * PANEL + l] = v;
            }
        }
        Ok(Self {
            n,
            k,
            panels,
            bias: None,
        })
    }

    /// The same weight with a bias `b` (`n` values) added to every output row, after the
    /// row's `k` products have been summed (so each value is rounded as `sum + b` would be).
    pub fn with_bias(mut self, b: &[f32]) -> Result<Self> {
        if b.len() != self.n {
            bail!(
                "packed weight: a bias of {} values for {} columns",
                b.len(),
                self.n
            )
        }
        self.bias = Some(b.to_vec());
        Ok(self)
    }

    /// Output columns (the weight's rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input columns (the weight's columns).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether [`Self::product`] runs on this CPU (AVX2 and FMA).
    pub fn runs_here() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        })
    }

    /// `x · Wᵀ` (plus the bias, if any) for the row-major `(m, k)` matrix `x`, into a new
    /// row-major `(m, n)` matrix, on up to `threads` threads (each takes its own panels).
    pub fn product(&self, x: &[f32], m: usize, threads: usize) -> Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k {
            bail!(
                "packed weight: an input of {} values is not {m}x{k}",
                x.len()
            )
        }
        if !Self::runs_here() {
            bail!("packed weight: this CPU lacks AVX2 and FMA; use candle's matmul")
        }
        if m == 0 || n == 0 {
            return Ok(match &self.bias {
                Some(b) => b.repeat(m),
                None => vec![0f32; m * n],
            });
        }
        // Every value is written below (each panel's columns of every row), so the output
        // is not zero-filled first: for a batch through the output layer that fill was
        // megabytes a step.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let panels = n.div_ceil(PANEL);
        let threads = if m * n * k < PARALLEL_MIN {
            1
        } else {
            threads.clamp(1, panels)
        };
        let per = panels.div_ceil(threads);
        let ptr = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
        std::thread::scope(|scope| {
            for t in 1..threads {
                let range = t * per..((t + 1) * per).min(panels);
                scope.spawn(move || self.panels_into(x, m, range, ptr));
            }
            self.panels_into(x, m, 0..per.min(panels), ptr);
        });
        // SAFETY: the threads wrote all `m × n` values: the panels `0..panels` cover every
        // column and each panel's columns were written for every row.
        unsafe { out.set_len(m * n) };
        Ok(out)
    }

    /// The output columns of panels `range`, for every row.
    fn panels_into(&self, x: &[f32], m: usize, range: std::ops::Range<usize>, out: OutPtr) {
        #[cfg(target_arch = "x86_64")]
        {
            let k = self.k;
            let wide = panels_at_once(m);
            let mut p = range.start;
            while p < range.end {
                // A product of one to three rows takes several panels at once; the rest one.
                let width = if p + wide <= range.end { wide } else { 1 };
                for i in (0..m).step_by(ROWS) {
                    let rows = ROWS.min(m - i);
                    let mut tile = [0f32; TILE];
                    // SAFETY: `product` checked that the CPU has AVX2 and FMA; `x` holds
                    // `m × k` values, so rows `i .. i + rows` are in it; panels `p .. p +
                    // width` lie inside `range`, each `k × PANEL` values; `width` is
                    // `panels_at_once(rows)` or 1, which `tile` takes.
                    unsafe {
                        avx2::tile(
                            &x[i * k..(i + rows) * k],
                            rows,
                            &self.panels[p * PANEL * k..(p + width) * PANEL * k],
                            width,
                            &mut tile,
                        )
                    };
                    for q in 0..width {
                        let col = (p + q) * PANEL;
                        let cols = PANEL.min(self.n - col);
                        let bias = self.bias.as_ref().map(|b| &b[col..col + cols]);
                        for r in 0..rows {
                            let at = (i + r) * self.n + col;
                            let from = (q * ROWS + r) * PANEL;
                            let values = &mut tile[from..from + cols];
                            if let Some(b) = bias {
                                values.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                            }
                            // SAFETY: each thread writes only its own panels' columns,
                            // `at + cols <= m × n` (the output's capacity), and `values`
                            // (`cols` long) lies inside `tile`.
                            unsafe {
                                std::ptr::copy_nonoverlapping(values.as_ptr(), out.0.add(at), cols)
                            };
                        }
                    }
                }
                p += width;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, m, range, out);
            unreachable!("product refuses to run without AVX2")
        }
    }
}

/// Panels a product of `m` rows multiplies at once: a product of one to three rows has too
/// few accumulators in one panel to hide the multiply-add latency, so it runs two to four
/// panels side by side. Every accumulator still adds its terms in order, so the numbers do
/// not depend on how many rows the product has.
fn panels_at_once(m: usize) -> usize {
    match m {
        1 => 4,
        2 => 3,
        3 => 2,
        _ => 1,
    }
}

/// Values of a tile: up to [`ROWS`] rows of up to four panels.
const TILE: usize = 4 * ROWS * PANEL;

/// The output of [`PackedWeight::product`], shared by threads that write disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: threads given an `OutPtr` write disjoint panels' columns of one output that
// outlives their scope.
unsafe impl Send for OutPtr {}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PANEL, ROWS, TILE};

    /// `tile[(j·ROWS + r)·PANEL + l] = Σ_q x[r·k + q] · panels[j][q·PANEL + l]` for
    /// `rows ≤ ROWS` rows of `x` (each `k` long) and `width` packed panels side by side.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `width` is 1 or `super::panels_at_once(rows)`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        x: &[f32],
        rows: usize,
        panels: &[f32],
        width: usize,
        tile: &mut [f32; TILE],
    ) {
        match (rows, width) {
            (1, 4) => rows_of::<1, 4>(x, panels, tile),
            (2, 3) => rows_of::<2, 3>(x, panels, tile),
            (3, 2) => rows_of::<3, 2>(x, panels, tile),
            (6, _) => rows_of::<6, 1>(x, panels, tile),
            (5, _) => rows_of::<5, 1>(x, panels, tile),
            (4, _) => rows_of::<4, 1>(x, panels, tile),
            (3, _) => rows_of::<3, 1>(x, panels, tile),
            (2, _) => rows_of::<2, 1>(x, panels, tile),
            _ => rows_of::<1, 1>(x, panels, tile),
        }
    }

    /// [`tile`] for exactly `R` rows and `P` panels, unrolled.
    #[inline(always)]
    fn rows_of<const R: usize, const P: usize>(x: &[f32], panels: &[f32], tile: &mut [f32; TILE]) {
        let k = panels.len() / (P * PANEL);
        assert!(
            x.len() >= R * k && R <= ROWS && P * R * PANEL <= TILE && panels.len() == P * k * PANEL
        );
        // SAFETY: inlined into `tile`, whose CPU has AVX2 and FMA.
        let mut acc = [[[unsafe { _mm256_setzero_ps() }; 2]; R]; P];
        let (xp, bp) = (x.as_ptr(), panels.as_ptr());
        for q in 0..k {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `q < k` and `j < P`, so panel `j`'s 16 values at depth `q` and
                // each row's value `q` (`r·k + q < R·k ≤ x.len()`) are in bounds; the CPU
                // has AVX2 and FMA (the caller's `target_feature`, inlined).
                unsafe {
                    let b = bp.add(j * k * PANEL + q * PANEL);
                    let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let a = _mm256_broadcast_ss(&*xp.add(r * k + q));
                        acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
                    }
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            for (r, acc) in acc.iter().enumerate() {
                let at = (j * ROWS + r) * PANEL;
                // SAFETY: `j < P`, `r < R`, and `(P·ROWS)·PANEL ≤ TILE`, so both stores are
                // inside `tile`.
                unsafe {
                    _mm256_storeu_ps(tile.as_mut_ptr().add(at), acc[0]);
                    _mm256_storeu_ps(tile.as_mut_ptr().add(at + 8), acc[1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_product_equals_the_plain_loop() {
        if !PackedWeight::runs_here() {
            return;
        }
        for (m, n, k) in [
            (1, 1, 1),
            (7, 33, 5),
            (13, 40, 256),
            (64, 17, 3),
            (6, 16, 0),
            (20, 500, 256),
        ] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            let packed = PackedWeight::pack(&w, n, k).unwrap();
            for threads in [1, 3] {
                let y = packed.product(&x, m, threads).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|q| x[i * k + q] as f64 * w[j * k + q] as f64)
                            .sum();
                        let got = y[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
        // A row's numbers do not depend on the rows beside it (however many panels a
        // product takes at once).
        let (n, k) = (100, 64);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 31 % 89) as f32 - 44.0) / 20.0)
            .collect();
        let x: Vec<f32> = (0..7 * k)
            .map(|i| ((i * 17 % 83) as f32 - 41.0) / 20.0)
            .collect();
        let packed = PackedWeight::pack(&w, n, k).unwrap();
        let all = packed.product(&x, 7, 1).unwrap();
        for m in 1..=7 {
            let some = packed.product(&x[..m * k], m, 1).unwrap();
            assert!(some == all[..m * n], "{m} rows");
        }
        // A bias is added after each row's sum, as `sum + b` is rounded.
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 7.0 - 3.0).collect();
        let biased = packed.clone().with_bias(&b).unwrap();
        for m in [1, 2, 3, 7] {
            let got = biased.product(&x[..m * k], m, 2).unwrap();
            let want: Vec<f32> = all[..m * n]
                .iter()
                .enumerate()
                .map(|(i, y)| y + b[i % n])
                .collect();
            assert!(got == want, "{m} rows with a bias");
        }
        assert_eq!(biased.product(&[], 0, 1).unwrap(), Vec::<f32>::new());
        assert!(packed.clone().with_bias(&b[1..]).is_err());
        assert!(PackedWeight::pack(&[0.0; 5], 2, 3).is_err());
        let packed = PackedWeight::pack(&[0.0; 6], 2, 3).unwrap();
        assert!(packed.product(&[0.0; 5], 2, 1).is_err());
    }
}
