//! The Transformer's training side on a tiny model: the fused kernels' values and gradients
//! against candle's composition, AdamW lowering the loss with seeded dropout, and the
//! ignored timing run at the real size. The decoding side is in `tests.rs`.

use std::time::Instant;

use crate::kernels::ops::softmax;
use candle_core::{D, Device, IndexOp, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{build, frozen, ids, max_diff, sm, tiny_cfg};
use super::*;
use crate::config::BOS_ID;
use crate::kernels::adam::AdamW;
use crate::kernels::fused;
fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Values and gradients of `f` (fused) and `g` (candle's composition) agree, for a random
/// linear function of the output as the loss.
fn check_grads(
    inputs: &[Tensor],
    f: impl Fn(&[Tensor]) -> Tensor,
    g: impl Fn(&[Tensor]) -> Tensor,
) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (yf, yg) = (f(&ts), g(&ts));
    let (d, scale) = (max_diff(&yf, &yg), max_diff(&yg, &yg.zeros_like().unwrap()));
    assert!(d <= 1e-5 * scale.max(1.0), "values differ by {d}");
    let r = random(yf.dims(), 99);
    let gf = (&yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gg = (&yg * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let (a, b) = (
            gf.get(v.as_tensor()).unwrap(),
            gg.get(v.as_tensor()).unwrap(),
        );
        // Relative to the largest gradient: the loss's are about 1 / rows.
        let scale = max_diff(b, &b.zeros_like().unwrap());
        let d = max_diff(a, b);
        assert!(scale > 0.0, "input {i}: zero gradient");
        assert!(
            d <= 1e-4 * scale,
            "input {i}: gradients differ by {d} (largest {scale})"
        );
    }
}

#[test]
fn transformer_fused_kernels_match_candle_values_and_gradients() {
    let x = random(&[3, 5, 16], 1);
    let (w, b) = (random(&[16], 2), random(&[16], 3));
    check_grads(
        &[x.clone(), w.clone(), b.clone()],
        |t| {
            t[0].apply_op3(
                &t[1],
                &t[2],
                fused::LayerNorm {
                    eps: LAYER_NORM_EPS,
                },
            )
            .unwrap()
        },
        |t| candle_nn::ops::layer_norm_slow(&t[0], &t[1], &t[2], LAYER_NORM_EPS).unwrap(),
    );
    // Scores with masked positions, as attention sees them.
    let bias = Tensor::from_vec(
        (0..16)
            .map(|j| if j > 11 { MASKED } else { 0.0 })
            .collect::<Vec<f32>>(),
        16,
        &Device::Cpu,
    )
    .unwrap();
    let scores = x.broadcast_add(&bias).unwrap();
    check_grads(
        &[scores],
        |t| softmax(&t[0]).unwrap(),
        |t| candle_nn::ops::softmax(&t[0], D::Minus1).unwrap(),
    );
    let y = softmax(&x.broadcast_add(&bias).unwrap()).unwrap();
    let masked = y
        .i((.., .., 12..))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(masked.iter().all(|&v| v == 0.0));
    let labels = Tensor::new(&[3u32, 0, 15, 7, 7], &Device::Cpu).unwrap();
    check_grads(
        &[x.i(0).unwrap()],
        |t| cross_entropy(&t[0], &labels).unwrap(),
        |t| candle_nn::loss::cross_entropy(&t[0], &labels).unwrap(),
    );
    // Large enough to split across threads.
    let big = random(&[300, 4000], 4);
    let labels: Vec<u32> = (0..300).map(|k| (k * 13) % 4000).collect();
    let labels = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    check_grads(
        &[big],
        |t| cross_entropy(&t[0], &labels).unwrap(),
        |t| candle_nn::loss::cross_entropy(&t[0], &labels).unwrap(),
    );
    check_grads(
        &[x, b],
        |t| t[0].apply_op2(&t[1], fused::BiasAdd).unwrap(),
        |t| t[0].broadcast_add(&t[1]).unwrap(),
    );
}

/// Mean cross-entropy of the real target positions, with candle's loss.
fn loss(model: &Transformer, batch: &Batch, dropout: Option<u64>, p: f32) -> Tensor {
    let logits = batch_logits(model, batch, dropout, p);
    candle_nn::loss::cross_entropy(&logits, &batch.gold).unwrap()
}

/// `(N, V)` scores of the real target positions.
fn batch_logits(model: &Transformer, batch: &Batch, dropout: Option<u64>, p: f32) -> Tensor {
    let mut d = dropout.map(|seed| Dropout::new(p, seed));
    let enc = model.encode(&batch.src, &batch.mask, d.as_mut()).unwrap();
    let out = model
        .teacher_forced(&enc, &batch.tgt_in, d.as_mut())
        .unwrap();
    let (b, t, dm) = out.dims3().unwrap();
    let rows = out
        .reshape((b * t, dm))
        .unwrap()
        .index_select(&batch.real, 0)
        .unwrap();
    model.logits(&rows).unwrap()
}

struct Batch {
    src: Tensor,
    mask: Tensor,
    tgt_in: Tensor,
    /// Indices of real target positions in the flattened `(B * T)` rows.
    real: Tensor,
    gold: Tensor,
}

fn random_batch(rng: &mut StdRng, b: usize, s: usize, t: usize, v: u32) -> Batch {
    let mut src_rows = Vec::new();
    let mut tgt_rows = Vec::new();
    for i in 0..b {
        let sl = s - i % 3;
        let tl = t - i % 2;
        let mut src: Vec<u32> = (0..sl - 1).map(|_| rng.random_range(4..v)).collect();
        src.push(2);
        let mut tgt: Vec<u32> = (0..tl - 1).map(|_| rng.random_range(4..v)).collect();
        tgt.push(2);
        src_rows.push(src);
        tgt_rows.push(tgt);
    }
    let src_refs: Vec<&[u32]> = src_rows.iter().map(|r| r.as_slice()).collect();
    let (src, mask) = ids(&src_refs);
    let tin: Vec<Vec<u32>> = tgt_rows
        .iter()
        .map(|r| {
            std::iter::once(BOS_ID)
                .chain(r[..r.len() - 1].iter().copied())
                .collect()
        })
        .collect();
    let tin_refs: Vec<&[u32]> = tin.iter().map(|r| r.as_slice()).collect();
    let (tgt_in, _) = ids(&tin_refs);
    let width = tgt_in.dim(1).unwrap();
    let (mut real, mut gold) = (Vec::new(), Vec::new());
    for (i, r) in tgt_rows.iter().enumerate() {
        for (j, &g) in r.iter().enumerate() {
            real.push((i * width + j) as u32);
            gold.push(g);
        }
    }
    let dev = &Device::Cpu;
    Batch {
        src,
        mask,
        tgt_in,
        real: Tensor::new(real.as_slice(), dev).unwrap(),
        gold: Tensor::new(gold.as_slice(), dev).unwrap(),
    }
}

fn scalar(x: &Tensor) -> f32 {
    x.to_scalar::<f32>().unwrap()
}

#[test]
fn transformer_adamw_lowers_the_loss_and_dropout_is_seeded() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 5);
    let batch = random_batch(&mut StdRng::seed_from_u64(9), 6, 7, 6, 20);

    // Every variable gets a gradient: layer norm and softmax are differentiable here.
    let grads = loss(&model, &batch, Some(1), 0.1).backward().unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = scalar(&g.sqr().unwrap().sum_all().unwrap());
        assert!(norm > 0.0, "zero gradient for {name}");
    }

    let before = scalar(&loss(&model, &batch, None, 0.0));
    let mut opt = AdamW::new(&varmap, 1e-2, 0.0).unwrap();
    for step in 0..40u64 {
        let l = loss(&model, &batch, Some(step), 0.1);
        opt.step(&l.backward().unwrap(), 1.0).unwrap();
    }
    let after = scalar(&loss(&model, &batch, None, 0.0));
    assert!(after < 0.75 * before, "loss {before} -> {after}");

    // Dropout: same seed, same result; another seed, another result; p = 0 is no dropout.
    let a = scalar(&loss(&model, &batch, Some(7), 0.1));
    let b = scalar(&loss(&model, &batch, Some(7), 0.1));
    let c = scalar(&loss(&model, &batch, Some(8), 0.1));
    let zero = scalar(&loss(&model, &batch, Some(7), 0.0));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(zero, after);
}

/// CPU seconds used by this process so far (Linux; NaN elsewhere), to time steps on a
/// busy machine.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Timings at the real size: `cargo test --release -p attnscope-model transformer_timing
/// -- --ignored --nocapture`.
#[test]
#[ignore]
fn transformer_timing() {
    let cfg = ModelConfig::transformer("en", "fr", 8000, 8000);
    let (varmap, model) = build(&cfg, 1);
    let batch = random_batch(&mut StdRng::seed_from_u64(1), 128, 12, 12, 8000);
    let mut opt = AdamW::new(&varmap, 1e-4, 0.0).unwrap();
    for step in 0..6u64 {
        let fused_ce = step >= 3;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let logits = batch_logits(&model, &batch, Some(step), 0.1);
        let l = if fused_ce {
            cross_entropy(&logits, &batch.gold).unwrap()
        } else {
            candle_nn::loss::cross_entropy(&logits, &batch.gold).unwrap()
        };
        let t1 = Instant::now();
        let grads = l.backward().unwrap();
        let t2 = Instant::now();
        opt.step(&grads, 1.0).unwrap();
        let (t3, c3) = (Instant::now(), cpu_seconds());
        println!(
            "train step {step} (fused loss: {fused_ce}): forward {:.3} s, backward {:.3} s, adamw {:.3} s, total {:.3} s wall, {:.2} s CPU",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t3 - t0).as_secs_f64(),
            c3 - c0
        );
    }
    let fast = frozen(&cfg, &varmap);
    let (src, mask) = ids(&[&[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 2]]);
    let runs = 20;
    let (mut encode, mut steps) = (0.0, 0.0);
    let c0 = cpu_seconds();
    for _ in 0..runs {
        let t0 = Instant::now();
        let enc = fast.encode(&src, &mask, None).unwrap();
        let t1 = Instant::now();
        let mut cache = fast.empty_cache(1).unwrap();
        let mut prev = Tensor::new(&[BOS_ID], &Device::Cpu).unwrap();
        for _ in 0..12 {
            let step = fast.step(&enc, &cache, &prev, &mut sm).unwrap();
            prev = step.logits.argmax(D::Minus1).unwrap();
            cache = step.cache;
        }
        encode += (t1 - t0).as_secs_f64();
        steps += t1.elapsed().as_secs_f64();
    }
    let cpu = cpu_seconds() - c0;
    println!(
        "batch 1, source 12, 12 steps, mean of {runs}: encode {:.2} ms, step {:.2} ms wall; {:.2} ms CPU per sentence",
        encode / runs as f64 * 1e3,
        steps / (runs * 12) as f64 * 1e3,
        cpu / runs as f64 * 1e3
    );
}
