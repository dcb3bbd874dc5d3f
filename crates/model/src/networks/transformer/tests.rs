//! The Transformer on a tiny model: incremental decoding against teacher forcing, tracked
//! against frozen weights, normalised and masked attention, the cross-attention closure,
//! beam reordering and the parameter names. The training side is in `training_tests.rs`.

use std::collections::HashMap;

use candle_core::{D, IndexOp};
use candle_nn::VarMap;

use super::*;
use crate::config::{Architecture, BOS_ID, PAD_ID};
use crate::kernels::ops::softmax;
use crate::networks::init::init_seeded;

pub(super) fn tiny_cfg() -> ModelConfig {
    let mut cfg = ModelConfig::new(Architecture::Transformer(TINY), "en", "fr", 20, 20);
    cfg.embed_dim = 16;
    cfg
}

/// The tiny test Transformer's shape.
const TINY: TransformerConfig = TransformerConfig::new(2, 2, 32);

/// A model on a `VarMap`, as in training (its outputs track gradients).
pub(super) fn build(cfg: &ModelConfig, seed: u64) -> (VarMap, Transformer) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Transformer::new(cfg, &TINY, vb).unwrap();
    init_seeded(&varmap, seed).unwrap();
    init_layer_norms(&varmap).unwrap();
    (varmap, model)
}

/// The same weights as plain tensors, as a model loaded from a file.
pub(super) fn frozen(cfg: &ModelConfig, varmap: &VarMap) -> Transformer {
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

pub(super) fn ids(rows: &[&[u32]]) -> (Tensor, Tensor) {
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

pub(super) use crate::fixtures::max_diff;

pub(super) fn sm(x: &Tensor) -> Result<Tensor> {
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
fn transformer_tracked_and_frozen_models_agree() {
    // Bit for bit, except where the frozen model's products run on packed weights
    // (`DenseLayer::packs_here`), which add their terms in another order.
    let tol = match crate::kernels::dense_layer::DenseLayer::packs_here() {
        true => 1e-5,
        false => 0.0,
    };
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
    assert!(max_diff(&e1.self_attention, &e2.self_attention) <= tol);
    assert!(max_diff(&e1.memory, &e2.memory) <= tol);
    for (a, b) in run_steps(&model, &e1, &tgt)
        .iter()
        .zip(run_steps(&fast, &e2, &tgt))
    {
        assert!(max_diff(&a.self_attention, &b.self_attention) <= tol);
        assert!(max_diff(&a.cross_attention, &b.cross_attention) <= tol);
        assert!(max_diff(&a.logits, &b.logits) <= tol);
    }
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

#[test]
fn a_row_joined_to_a_longer_cache_steps_as_alone_and_leaving_rows_shrink_the_cache() {
    let cfg = tiny_cfg();
    let (varmap, _) = build(&cfg, 4);
    let model = frozen(&cfg, &varmap);
    let (src_a, mask_a) = ids(&[&[5, 6, 7, 3]]);
    let (src_b, mask_b) = ids(&[&[8, 9, 3]]);
    let (enc_a, enc_b) = (
        model.encode(&src_a, &mask_a, None).unwrap(),
        model.encode(&src_b, &mask_b, None).unwrap(),
    );
    let tokens = |t: &[u32]| Tensor::new(t, &Device::Cpu).unwrap();
    // Row a decodes three positions alone; then b joins at its first.
    let mut cache_a = model.empty_cache(1).unwrap();
    for tok in [BOS_ID, 11, 12] {
        cache_a = model
            .step(&enc_a, &cache_a, &tokens(&[tok]), &mut softmax)
            .unwrap()
            .cache;
    }
    let enc = enc_a.join(&enc_b).unwrap();
    let mut cache = cache_a.join(&model.empty_cache(1).unwrap()).unwrap();
    assert_eq!((cache.len(), cache.starts.clone()), (3, vec![0, 3]));
    let mut alone_b = model.empty_cache(1).unwrap();
    for (ta, tb) in [(13, BOS_ID), (14, 15), (16, 17)] {
        let both = model
            .step(&enc, &cache, &tokens(&[ta, tb]), &mut softmax)
            .unwrap();
        let b = model
            .step(&enc_b, &alone_b, &tokens(&[tb]), &mut softmax)
            .unwrap();
        let diff = (both.logits.i(1).unwrap() - b.logits.i(0).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
        // b's own self-attention sits in the last slots; the masked ones get nothing.
        let sa = both.self_attention.i(1).unwrap();
        let t = sa.dim(D::Minus1).unwrap();
        let own = b.self_attention.dim(D::Minus1).unwrap();
        let masked = sa.narrow(D::Minus1, 0, t - own).unwrap();
        assert_eq!(masked.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        (cache, alone_b) = (both.cache, b.cache);
    }
    // a leaves: the slots only it used go.
    let kept = cache.select(&tokens(&[1])).unwrap();
    assert_eq!((kept.len(), kept.starts.clone()), (alone_b.len(), vec![0]));
    let enc_kept = enc.select(&tokens(&[1])).unwrap();
    let next = model
        .step(&enc_kept, &kept, &tokens(&[18]), &mut softmax)
        .unwrap();
    let b = model
        .step(&enc_b, &alone_b, &tokens(&[18]), &mut softmax)
        .unwrap();
    let diff = (next.logits - b.logits)
        .unwrap()
        .abs()
        .unwrap()
        .max(1)
        .unwrap();
    assert!(diff.to_vec1::<f32>().unwrap()[0] < 1e-4);
}
