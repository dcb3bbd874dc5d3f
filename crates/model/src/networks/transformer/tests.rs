use std::collections::HashMap;
use std::time::Instant;

use candle_core::{D, IndexOp, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::{Architecture, BOS_ID, PAD_ID};
use crate::kernels::adam::AdamW;
use crate::kernels::fused;
use crate::networks::init::init_seeded;

fn tiny_cfg() -> ModelConfig {
    let mut cfg = ModelConfig::new(Architecture::Transformer(TINY), "en", "fr", 20, 20);
    cfg.embed_dim = 16;
    cfg
}

/// The tiny test Transformer's shape.
const TINY: TransformerConfig = TransformerConfig {
    layers: 2,
    heads: 2,
    ff_dim: 32,
};

/// A model on a `VarMap`, as in training (its outputs track gradients).
fn build(cfg: &ModelConfig, seed: u64) -> (VarMap, Transformer) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Transformer::new(cfg, &TINY, vb).unwrap();
    init_seeded(&varmap, seed).unwrap();
    init_layer_norms(&varmap).unwrap();
    (varmap, model)
}

/// The same weights as plain tensors, as a model loaded from a file.
fn frozen(cfg: &ModelConfig, varmap: &VarMap) -> Transformer {
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Transformer::new(cfg, &TINY, vb).unwrap()
}

fn ids(rows: &[&[u32]]) -> (Tensor, Tensor) {
    let width = rows.iter().map(|r| r.len()).max().unwrap();
    let mut data = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        for j in 0..width {
            data.push(r.get(j).copied().unwrap_or(PAD_ID));
            mask.push(if j < r.len() { 1f32 } else { 0.0 });
        }
    }
    let dev = &Device::Cpu;
    (
        Tensor::from_vec(data, (rows.len(), width), dev).unwrap(),
        Tensor::from_vec(mask, (rows.len(), width), dev).unwrap(),
    )
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn sm(x: &Tensor) -> Result<Tensor> {
    softmax(x)
}

/// Incremental decoding of a given target prefix: the step outputs at every position.
fn run_steps(
    model: &Transformer,
    enc: &TransformerEncoded,
    tgt_in: &Tensor,
) -> Vec<TransformerStep> {
    let (b, t) = tgt_in.dims2().unwrap();
    let mut cache = model.empty_cache(b).unwrap();
    let mut out = Vec::new();
    for i in 0..t {
        let prev = tgt_in.i((.., i)).unwrap().contiguous().unwrap();
        let step = model.step(enc, &cache, &prev, &mut sm).unwrap();
        cache = step.cache.clone();
        out.push(step);
    }
    out
}

const SRC_A: &[u32] = &[5, 6, 7, 8, 9, 2];
const SRC_B: &[u32] = &[10, 11, 2];
const TGT_A: &[u32] = &[BOS_ID, 4, 12, 13, 14, 15, 16];
const TGT_B: &[u32] = &[BOS_ID, 17, 18, 19, 4, 5, 6];

#[test]
fn transformer_kv_cache_steps_match_teacher_forcing() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 1);
    let fast = frozen(&cfg, &varmap);
    let (src, mask) = ids(&[SRC_A, SRC_B]);
    let (tgt, _) = ids(&[TGT_A, TGT_B]);
    let enc = model.encode(&src, &mask, None).unwrap();
    let all = model
        .logits(&model.teacher_forced(&enc, &tgt, None).unwrap())
        .unwrap();
    for m in [&model, &fast] {
        let enc = m.encode(&src, &mask, None).unwrap();
        for (t, step) in run_steps(m, &enc, &tgt).iter().enumerate() {
            assert_eq!(step.cache.len(), t + 1);
            let d = max_diff(&step.logits, &all.i((.., t, ..)).unwrap());
            assert!(d < 1e-4, "position {t}: logits differ by {d}");
        }
    }
}

#[test]
fn transformer_tracked_and_frozen_models_agree_exactly() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 2);
    let fast = frozen(&cfg, &varmap);
    let (src, mask) = ids(&[SRC_A, SRC_B]);
    let (tgt, _) = ids(&[TGT_A, TGT_B]);
    let (e1, e2) = (
        model.encode(&src, &mask, None).unwrap(),
        fast.encode(&src, &mask, None).unwrap(),
    );
    assert!(e1.memory.track_op() && !e2.memory.track_op());
    assert_eq!(max_diff(&e1.self_attention, &e2.self_attention), 0.0);
    assert_eq!(max_diff(&e1.memory, &e2.memory), 0.0);
    for (a, b) in run_steps(&model, &e1, &tgt)
        .iter()
        .zip(run_steps(&fast, &e2, &tgt))
    {
        assert_eq!(max_diff(&a.self_attention, &b.self_attention), 0.0);
        assert_eq!(max_diff(&a.cross_attention, &b.cross_attention), 0.0);
        assert_eq!(max_diff(&a.logits, &b.logits), 0.0);
    }
}

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

fn assert_rows_sum_to_one(w: &Tensor) {
    let sums = w
        .sum(D::Minus1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
        "row sums {sums:?}"
    );
}

#[test]
fn transformer_attention_is_normalised_masked_and_padding_free() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 3);
    let fast = frozen(&cfg, &varmap);
    for m in [&model, &fast] {
        let (src, mask) = ids(&[SRC_A, SRC_B]);
        let (tgt, _) = ids(&[TGT_A, TGT_B]);
        let enc = m.encode(&src, &mask, None).unwrap();
        let (b, s) = src.dims2().unwrap();
        assert_eq!(
            enc.self_attention.dims(),
            &[b, TINY.layers, TINY.heads, s, s]
        );
        assert_rows_sum_to_one(&enc.self_attention);
        // Keys at source padding (row 1, positions 3..) get exactly 0, in every layer.
        let pad_keys = enc
            .self_attention
            .i((1, .., .., .., SRC_B.len()..))
            .unwrap();
        assert_eq!(
            pad_keys
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );

        let steps = run_steps(m, &enc, &tgt);
        for (t, step) in steps.iter().enumerate() {
            assert_eq!(
                step.self_attention.dims(),
                &[b, TINY.layers, TINY.heads, t + 1]
            );
            assert_eq!(
                step.cross_attention.dims(),
                &[b, TINY.layers, TINY.heads, s]
            );
            assert_rows_sum_to_one(&step.self_attention);
            assert_rows_sum_to_one(&step.cross_attention);
            let pad = step.cross_attention.i((1, .., .., SRC_B.len()..)).unwrap();
            let pad = pad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(pad.iter().all(|&w| w == 0.0), "padding weights {pad:?}");
        }

        // The padded row decodes exactly as the same sentence alone.
        let (src1, mask1) = ids(&[SRC_B]);
        let (tgt1, _) = ids(&[TGT_B]);
        let enc1 = m.encode(&src1, &mask1, None).unwrap();
        assert!(
            max_diff(
                &enc1.memory,
                &enc.memory.i((1..2, ..SRC_B.len(), ..)).unwrap()
            ) < 1e-5
        );
        for (alone, batched) in run_steps(m, &enc1, &tgt1).iter().zip(&steps) {
            assert!(max_diff(&alone.logits, &batched.logits.i(1..2).unwrap()) < 1e-5);
            let cross = batched
                .cross_attention
                .i((1..2, .., .., ..SRC_B.len()))
                .unwrap();
            assert!(max_diff(&alone.cross_attention, &cross) < 1e-6);
        }
    }
}

#[test]
fn transformer_cross_closure_weights_are_used_and_returned() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 4);
    let fast = frozen(&cfg, &varmap);
    for m in [&model, &fast] {
        let (src, mask) = ids(&[SRC_A, SRC_B]);
        let enc = m.encode(&src, &mask, None).unwrap();
        let prev = Tensor::new(&[BOS_ID, BOS_ID], &Device::Cpu).unwrap();
        let cache = m.empty_cache(2).unwrap();
        let mut calls = 0;
        let mut one_hot = |scores: &Tensor| -> Result<Tensor> {
            calls += 1;
            let (b, h, q, s) = scores.dims4()?;
            let v: Vec<f32> = (0..b * h * q * s)
                .map(|k| if k % s == 1 { 1.0 } else { 0.0 })
                .collect();
            Ok(Tensor::from_vec(v, (b, h, q, s), scores.device())?)
        };
        let hard = m.step(&enc, &cache, &prev, &mut one_hot).unwrap();
        assert_eq!(calls, TINY.layers);
        let soft = m.step(&enc, &cache, &prev, &mut sm).unwrap();
        let w = hard
            .cross_attention
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let s = src.dim(1).unwrap();
        for (k, &x) in w.iter().enumerate() {
            assert_eq!(x, if k % s == 1 { 1.0 } else { 0.0 });
        }
        assert!(max_diff(&hard.logits, &soft.logits) > 1e-3);
        // A closure returning a wrong shape is an error, not a panic.
        let mut bad = |scores: &Tensor| -> Result<Tensor> { Ok(scores.sum_keepdim(3)?) };
        assert!(m.step(&enc, &cache, &prev, &mut bad).is_err());
    }
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

#[test]
fn transformer_select_reorders_beams() {
    let cfg = tiny_cfg();
    let (varmap, model) = build(&cfg, 6);
    let fast = frozen(&cfg, &varmap);
    for m in [&model, &fast] {
        let (src, mask) = ids(&[SRC_A, SRC_B]);
        let (tgt, _) = ids(&[TGT_A, TGT_B]);
        let enc = m.encode(&src, &mask, None).unwrap();
        let steps = run_steps(m, &enc, &tgt.i((.., ..3)).unwrap());
        let cache = &steps[2].cache;
        let idx = Tensor::new(&[1u32, 0, 0], &Device::Cpu).unwrap();
        let (enc3, cache3) = (enc.select(&idx).unwrap(), cache.select(&idx).unwrap());
        assert_eq!(
            (cache3.len(), cache3.batch(), enc3.batch().unwrap()),
            (3, 3, 3)
        );
        for (new, old) in [(0usize, 1usize), (1, 0), (2, 0)] {
            assert_eq!(
                max_diff(&enc3.memory.i(new).unwrap(), &enc.memory.i(old).unwrap()),
                0.0
            );
            assert_eq!(
                max_diff(
                    &enc3.mask_bias.i(new).unwrap(),
                    &enc.mask_bias.i(old).unwrap()
                ),
                0.0
            );
            assert_eq!(
                max_diff(
                    &enc3.self_attention.i(new).unwrap(),
                    &enc.self_attention.i(old).unwrap()
                ),
                0.0
            );
            for ((k3, v3), (k, v)) in cache3.layers.iter().zip(&cache.layers) {
                assert_eq!(max_diff(&k3.i(new).unwrap(), &k.i(old).unwrap()), 0.0);
                assert_eq!(max_diff(&v3.i(new).unwrap(), &v.i(old).unwrap()), 0.0);
            }
        }
        // Stepping the selected beams continues the original rows.
        let prev = tgt.i((.., 3)).unwrap().contiguous().unwrap();
        let next = m.step(&enc, cache, &prev, &mut sm).unwrap();
        let next3 = m
            .step(
                &enc3,
                &cache3,
                &prev.index_select(&idx, 0).unwrap(),
                &mut sm,
            )
            .unwrap();
        let expect = next.logits.index_select(&idx, 0).unwrap();
        assert!(max_diff(&next3.logits, &expect) < 1e-5);
        let expect = next.cross_attention.index_select(&idx, 0).unwrap();
        assert!(max_diff(&next3.cross_attention, &expect) < 1e-6);
    }
}

#[test]
fn transformer_parameter_names_and_count() {
    let cfg = ModelConfig::transformer("en", "fr", 8000, 8000);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let Architecture::Transformer(t) = cfg.architecture else {
        panic!("a transformer config")
    };
    Transformer::new(&cfg, &t, vb).unwrap();
    let data = varmap.data().lock().unwrap();
    let count: usize = data.values().map(|v| v.elem_count()).sum();
    assert_eq!(count, 11_682_624);
    for name in [
        "encoder.embedding.weight",
        "encoder.layers.0.self_attn.q.weight",
        "encoder.layers.2.ff.fc2.bias",
        "encoder.norm.weight",
        "decoder.layers.0.cross_attn.k.weight",
        "decoder.layers.1.cross_attn_norm.bias",
        "decoder.norm.bias",
        "decoder.output.weight",
    ] {
        assert!(data.contains_key(name), "missing {name}");
    }
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
