//! Parity with Hugging Face `transformers` for an imported Marian model.
//!
//! `tests/fixtures/marian-tiny` is a tiny random `MarianMTModel` saved by
//! `bench/reference/make_marian_fixture.py` (with `save_pretrained`, as a user's opus-mt
//! download is laid out), and `expected.json` what `transformers` computed with it. The
//! import must give the same source pieces, teacher-forced logits within 1e-4 of the largest
//! (pad and `<s>` left out: the import bans them), every layer's and head's cross-attention,
//! encoder and decoder self-attention within 1e-5, and the greedy output of `generate`
//! exactly.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use attnscope_model::import::marian::{ImportOptions, import};
use attnscope_model::networks::{EncoderDecoder, Network};
use attnscope_model::{DecodeOptions, Translator};
use candle_core::{DType, Device, IndexOp, Tensor};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian-tiny")
}

fn imported() -> (tempfile::TempDir, Translator, Value) {
    let dir = tempfile::tempdir().unwrap();
    let opts = ImportOptions {
        name: "marian-tiny".into(),
        ..ImportOptions::default()
    };
    let out = import(&fixture(), dir.path(), &opts).unwrap();
    assert_eq!(out.config.source_lang, "en");
    assert_eq!(out.config.target_lang, "fr");
    let t = Translator::load(&out.dir).unwrap();
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    (dir, t, serde_json::from_str(&text).unwrap())
}

/// Hugging Face id → attnscope id, through the pieces of `vocab.json`.
fn id_map(t: &Translator) -> HashMap<u64, u32> {
    let text = std::fs::read_to_string(fixture().join("vocab.json")).unwrap();
    let hf: HashMap<String, u64> = serde_json::from_str(&text).unwrap();
    let vocab = t.target_vocab();
    let ours: HashMap<String, u32> = (0..vocab.len() as u32)
        .map(|i| (vocab.piece(i), i))
        .collect();
    hf.into_iter()
        .filter_map(|(p, id)| ours.get(&p).map(|&o| (id, o)))
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn source_pieces_match_the_marian_tokenizer() {
    let (_d, t, expected) = imported();
    for s in expected["sentences"].as_array().unwrap() {
        let (_, pieces) = t.source(s["source"].as_str().unwrap()).unwrap();
        let want: Vec<String> = s["source_pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert_eq!(pieces, want, "{}", s["source"]);
    }
}

#[test]
fn teacher_forced_logits_and_every_attention_match_transformers() {
    let (_d, t, expected) = imported();
    let map = id_map(&t);
    let pad = 103u64;
    let Network::Transformer(net) = t.network() else {
        panic!("an imported Marian model is a Transformer")
    };
    for s in expected["sentences"].as_array().unwrap() {
        let text = s["source"].as_str().unwrap();
        let (ids, _) = t.source(text).unwrap();
        let src = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mask = Tensor::ones((1, ids.len()), DType::F32, &Device::Cpu).unwrap();
        let memory = EncoderDecoder::encode(net, &src, &mask).unwrap();
        // Encoder self-attention: (1, L, heads, S, S).
        let enc = &memory.self_attention;
        for (l, layer) in s["encoder_attentions"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            for (h, head) in layer.as_array().unwrap().iter().enumerate() {
                for (q, row) in head.as_array().unwrap().iter().enumerate() {
                    let ours: Vec<f32> = enc.i((0, l, h, q)).unwrap().to_vec1().unwrap();
                    let d = max_abs_diff(&ours, &floats(row));
                    assert!(
                        d < 1e-5,
                        "{text}: encoder layer {l} head {h} query {q}: {d}"
                    );
                }
            }
        }
        let mut state = net.initial_state(&memory).unwrap();
        let mut prev = Tensor::new(&[1u32], &Device::Cpu).unwrap(); // <s>
        let targets: Vec<u64> = s["target_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let (mut worst, mut scale) = (0f32, 0f32);
        for (k, want) in s["logits"].as_array().unwrap().iter().enumerate() {
            let step = EncoderDecoder::step(net, &memory, &state, &prev, &mut |x: &Tensor| {
                attnscope_model::kernels::ops::softmax(x)
            })
            .unwrap();
            let logits: Vec<f32> = step.logits.i(0).unwrap().to_vec1().unwrap();
            for (hf_id, w) in floats(want).into_iter().enumerate() {
                if hf_id as u64 == pad {
                    continue;
                }
                let ours = logits[map[&(hf_id as u64)] as usize];
                worst = worst.max((ours - w).abs());
                scale = scale.max(w.abs());
            }
            // Cross-attention and decoder self-attention of this step, every layer and head.
            for (l, layer) in s["cross_attentions"].as_array().unwrap().iter().enumerate() {
                for (h, head) in layer.as_array().unwrap().iter().enumerate() {
                    let ours: Vec<f32> = step.cross.i((0, l, h)).unwrap().to_vec1().unwrap();
                    let d = max_abs_diff(&ours, &floats(&head[k]));
                    assert!(d < 1e-5, "{text}: cross layer {l} head {h} step {k}: {d}");
                    let self_row = &s["decoder_attentions"][l][h][k];
                    let ours: Vec<f32> = step
                        .self_attention
                        .as_ref()
                        .unwrap()
                        .i((0, l, h))
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    let d = max_abs_diff(&ours, &floats(self_row)[..=k]);
                    assert!(d < 1e-5, "{text}: self layer {l} head {h} step {k}: {d}");
                }
            }
            state = step.state;
            prev = Tensor::new(&[map[&targets[k]]], &Device::Cpu).unwrap();
        }
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "{text}: logits differ by {worst} (largest {scale})"
        );
        eprintln!("{text}: logits differ by at most {worst:e} (largest {scale:.2})");
    }
}

#[test]
fn greedy_output_matches_generate() {
    let (_d, t, expected) = imported();
    let map = id_map(&t);
    for s in expected["sentences"].as_array().unwrap() {
        let text = s["source"].as_str().unwrap();
        let hf: Vec<u32> = s["greedy_ids"].as_array().unwrap()[1..]
            .iter()
            .map(|v| map[&v.as_u64().unwrap()])
            .collect();
        // The folder's own generation settings, as `generate` used them: 20 new tokens,
        // `</s>` forced at the limit.
        let out = t
            .translate(text, &DecodeOptions::default(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        let ours: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
        assert_eq!(ours, hf, "{text}");
        // The batched path (the command line's plain text) ends the same way.
        let batched = t.translate_batch(&[text.to_string()], 4).unwrap();
        assert_eq!(batched[0], out.translation, "{text}");
    }
}
