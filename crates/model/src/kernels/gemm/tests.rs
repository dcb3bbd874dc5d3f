//! The AVX-512 and AVX2 products (each that this CPU has) against a plain f64 triple loop:
//! every edge of the blocking (rows past a strip, columns past a panel, depth past a packed
//! block), strided and transposed operands, accumulation and the split across threads; the
//! shapes each instruction set refuses; and the candle op and its gradients against
//! candle's own matmul.

use candle_core::{Device, Tensor, Var};

use super::*;

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn reference(a: &View, b: &View) -> Vec<f64> {
    let mut c = vec![0f64; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            c[i * b.cols + j] = (0..a.cols)
                .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                .sum();
        }
    }
    c
}

fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let tol = 1e-5 * (k as f64).sqrt() + 1e-6;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, want {w}"
        );
    }
}

/// Multiplies `m × k` by `k × n`, with `a` and `b` each stored row-major or transposed,
/// and checks `c = a b` and then `c += a b`.
fn check(m: usize, k: usize, n: usize, a_t: bool, b_t: bool, threads: usize) {
    let da = values(m * k, (m * 31 + k) as u64);
    let db = values(k * n, (k * 17 + n) as u64);
    let a = match a_t {
        false => View::row_major(&da, m, k).unwrap(),
        true => View::row_major(&da, k, m).unwrap().t(),
    };
    let b = match b_t {
        false => View::row_major(&db, k, n).unwrap(),
        true => View::row_major(&db, n, k).unwrap().t(),
    };
    let what = format!("{m}x{k} by {k}x{n}, transposed {a_t}/{b_t}, {threads} threads");
    if Isa::detect().is_none() {
        let mut c = vec![0f32; m * n];
        assert!(sgemm(a, b, &mut c, false, threads).is_err(), "{what}");
        return;
    }
    let want = reference(&a, &b);
    for isa in Isa::supported() {
        let what = format!("{what}, {isa:?}");
        let mut c = vec![f32::NAN; m * n];
        if !isa.runs(m) {
            assert!(
                sgemm_on(isa, a, b, &mut c, false, threads).is_err(),
                "{what}"
            );
            continue;
        }
        sgemm_on(isa, a, b, &mut c, false, threads).unwrap();
        assert_close(&c, &want, k, &what);
        sgemm_on(isa, a, b, &mut c, true, threads).unwrap();
        let twice: Vec<f64> = want.iter().map(|w| 2.0 * w).collect();
        assert_close(&c, &twice, k, &format!("{what}, accumulated"));
    }
}

#[test]
fn avx2_runs_products_of_a_few_rows_only() {
    assert!(Isa::Avx2.runs(1) && Isa::Avx2.runs(FEW_ROWS));
    assert!(!Isa::Avx2.runs(FEW_ROWS + 1));
    assert!(Isa::Avx512.runs(1000));
}

#[test]
fn products_match_a_plain_loop_at_every_edge_of_the_blocking() {
    for &m in &[1, 3, 4, 5, 13, 14, 15, 29, 337] {
        for &n in &[1, 16, 17, 31, 32, 33, 100] {
            for &k in &[1, 7, 256, 257] {
                check(m, k, n, false, false, 1);
            }
        }
    }
    // Past a block of packed columns.
    check(20, 9, NC + 40, false, false, 1);
}

#[test]
fn strided_and_transposed_operands_are_read_as_they_lie() {
    for &(m, k, n) in &[(1, 300, 70), (3, 65, 33), (6, 64, 64), (40, 300, 90)] {
        for (a_t, b_t) in [(false, true), (true, false), (true, true)] {
            check(m, k, n, a_t, b_t, 1);
        }
    }
}

#[test]
fn batches_of_decoding_steps_through_a_transposed_weight_match_at_every_edge() {
    // The unpacked dot-product blocks: rows and columns past multiples of 4, depths past
    // multiples of 16, up to DOT_ROWS rows (and one past, back to packing).
    for &m in &[5, 6, 7, 8, 9, 31, DOT_ROWS, DOT_ROWS + 1] {
        for &n in &[1, 3, 4, 5, 66] {
            for &k in &[1, 15, 16, 17, 256, 300] {
                check(m, k, n, false, true, 1);
                check(m, k, n, true, true, 1);
            }
        }
    }
}

#[test]
fn large_products_split_across_threads_by_columns_or_rows() {
    check(300, 256, 800, false, true, 2); // wide: columns
    check(700, 300, 40, false, false, 3); // narrow: rows
    check(2, 1100, 1000, false, true, 2); // a few rows, no packing
}

#[test]
fn shapes_that_disagree_or_overrun_their_slice_are_errors() {
    let d = vec![0f32; 12];
    assert!(View::new(&d, 4, 4, 4, 1).is_err());
    assert!(View::new(&d, 3, 4, 4, 1).is_ok());
    let a = View::row_major(&d, 3, 4).unwrap();
    let mut c = vec![0f32; 9];
    assert!(sgemm(a, a, &mut c, false, 1).is_err());
    let mut c = vec![0f32; 8];
    assert!(sgemm(a, a.t(), &mut c, false, 1).is_err());
}

#[test]
fn the_op_and_its_gradients_match_candles_matmul() {
    // 3 rows: every instruction set's kernels; 37: AVX-512's, candle's elsewhere.
    for m in [3, 37] {
        op_and_gradients_match(m);
    }
}

fn op_and_gradients_match(m: usize) {
    let dev = Device::Cpu;
    let (k, n) = (70, 45);
    let a = Var::from_vec(values(m * k, 1), (m, k), &dev).unwrap();
    let w = Var::from_vec(values(n * k, 2), (n, k), &dev).unwrap();
    let mix = Tensor::new(values(m * n, 3), &dev)
        .unwrap()
        .reshape((m, n))
        .unwrap();
    let loss = |y: &Tensor| (y * &mix).unwrap().sum_all().unwrap();

    let ours = matmul(a.as_tensor(), &w.t().unwrap()).unwrap();
    let theirs = a.matmul(&w.t().unwrap()).unwrap();
    let diff = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);

    let g_ours = loss(&ours).backward().unwrap();
    let g_theirs = loss(&theirs).backward().unwrap();
    for v in [&a, &w] {
        let (x, y) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
        let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "gradient differs");
    }

    // A constant weight (attribution differentiates the input only) gets no gradient from
    // the op (candle's own matmul stores whatever gradient its backward pass returns).
    if !runs(m) {
        return;
    }
    let constant = w.as_tensor().detach().t().unwrap();
    let y = matmul(a.as_tensor(), &constant).unwrap();
    let grads = loss(&y).backward().unwrap();
    assert!(grads.get(&constant).is_none(), "no gradient for a constant");
    let (x, r) = (grads.get(&a).unwrap(), g_theirs.get(&a).unwrap());
    let diff = (x - r).unwrap().abs().unwrap().max_all().unwrap();
    assert!(
        diff.to_scalar::<f32>().unwrap() < 1e-4,
        "the input's gradient"
    );
}
