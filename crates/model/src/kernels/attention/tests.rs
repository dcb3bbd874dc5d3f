//! The fused attention against candle's composition (batched matmuls, scaling, the mask,
//! softmax): output, weights, and the gradients of `q`, `k` and `v`.

use candle_core::{D, Device, Tensor, Var};

use super::attend;
use crate::fixtures::max_diff;

fn var(shape: (usize, usize, usize, usize), seed: u64) -> Var {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Var::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Checks one configuration: `b` sentences, `h` heads, `t` queries over `s` keys.
fn check(b: usize, h: usize, t: usize, s: usize, dh: usize, bias: Option<Tensor>) {
    let (q, k, v) = (
        var((b, h, t, dh), 1),
        var((b, h, s, dh), 2),
        var((b, h, s, dh), 3),
    );
    let mix = var((b, h, t, dh), 4);
    let scale = 1.0 / (dh as f32).sqrt();

    let (ours, w_ours) = attend(&q, &k, &v, bias.as_ref(), scale).unwrap();
    let scores = q
        .matmul(&k.t().unwrap())
        .unwrap()
        .affine(scale as f64, 0.0)
        .unwrap();
    let scores = match &bias {
        Some(bias) => scores.broadcast_add(bias).unwrap(),
        None => scores,
    };
    let w_ref = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    let reference = w_ref.matmul(&v).unwrap();
    assert!(max_diff(&w_ours, &w_ref) < 1e-5, "weights");
    assert!(max_diff(&ours, &reference) < 1e-5, "output");
    assert!(!w_ours.track_op(), "the returned weights are detached");

    let g_ours = (&ours * mix.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g_ref = (&reference * mix.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
        let (a, r) = (g_ours.get(x).unwrap(), g_ref.get(x).unwrap());
        assert!(
            max_diff(a, r) < 1e-4,
            "gradient of {name}: {}",
            max_diff(a, r)
        );
    }
}

#[test]
fn self_attention_with_a_padding_mask_matches_candles_composition() {
    let (b, s) = (3, 7);
    // The last two keys of the second sentence are padding.
    let mut mask = vec![0f32; b * s];
    mask[s + 5] = -1e9;
    mask[s + 6] = -1e9;
    let bias = Tensor::from_vec(mask, (b, 1, 1, s), &Device::Cpu).unwrap();
    check(b, 4, s, s, 16, Some(bias));
}

#[test]
fn causal_and_cross_attention_match_candles_composition() {
    let t = 5;
    let causal: Vec<f32> = (0..t * t)
        .map(|i| if i % t > i / t { -1e9 } else { 0.0 })
        .collect();
    let causal = Tensor::from_vec(causal, (t, t), &Device::Cpu).unwrap();
    check(2, 2, t, t, 24, Some(causal));
    check(2, 3, 4, 9, 20, None);
    // Enough pairs to split over threads.
    check(64, 4, 12, 15, 64, None);
}

#[test]
fn shapes_that_disagree_are_errors() {
    let q = var((1, 2, 3, 4), 1);
    let k = var((1, 2, 5, 6), 2);
    assert!(attend(&q, &k, &k, None, 1.0).is_err());
}
