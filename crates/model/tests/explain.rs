//! Attribution on tiny random models of every kind: integrated gradients are complete,
//! erasure equals re-translating without the token (or the whole word), every decoding
//! option is explained as decoded, and a segmented text is explained sentence by sentence.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::ops::ControlFlow;

use attnscope_model::explain::{Baseline, normalise};
use attnscope_model::fixtures::{KINDS, tiny_translator_of};
use attnscope_model::{
    DecodeOptions, DecodePlan, ExplainOptions, Intervention, Method, Mode, Segmentation,
    TextSource, Translation, Translator,
};

const TEXT: &str = "We are cold!";

fn tiny(kind: &str) -> Translator {
    tiny_translator_of(kind, 7).unwrap().0
}

fn plan(t: &Translator, text: &str, o: &DecodeOptions) -> DecodePlan {
    let src = t.text_source(text, Segmentation::Sentences).unwrap();
    t.plan(src, o.clone()).unwrap()
}

/// A source given as pieces (`ids` ending with `</s>`), decoded as one sentence.
fn decode_ids(
    t: &Translator,
    ids: Vec<u32>,
    tokens: Vec<String>,
    o: &DecodeOptions,
) -> Translation {
    let p = t.plan(TextSource::one("", ids, tokens), o.clone()).unwrap();
    t.decode(&p, |_| ControlFlow::Continue(())).unwrap()
}

fn explain(
    t: &Translator,
    text: &str,
    o: &DecodeOptions,
    e: &ExplainOptions,
) -> (Translation, Vec<attnscope_model::Attribution>) {
    let p = plan(t, text, o);
    let out = t.decode(&p, |_| ControlFlow::Continue(())).unwrap();
    let rows = t.explain(&p, &out, e).unwrap();
    (out, rows)
}

fn all_methods(points: usize, baseline: Baseline) -> ExplainOptions {
    ExplainOptions {
        methods: Method::ALL.to_vec(),
        ig_steps: points,
        baseline,
    }
}

fn forced(target: &str) -> DecodeOptions {
    DecodeOptions {
        force_target: Some(target.into()),
        ..DecodeOptions::default()
    }
}

#[test]
fn integrated_gradients_are_complete_against_a_pad_source_decoded_on_its_own() {
    for kind in KINDS {
        let t = tiny(kind);
        let o = forced("Nous avons froid !");
        let (out, rows) = explain(&t, TEXT, &o, &all_methods(64, Baseline::Pad));
        let ig = rows
            .iter()
            .find(|a| a.method == Method::IntegratedGradients)
            .unwrap();
        // f(x'): the same target forced on a source of <pad> embeddings, decoded normally.
        let (ids, tokens) = t.source(TEXT).unwrap();
        let pad = decode_ids(&t, vec![0; ids.len()], tokens, &o);
        for (step, (s, p)) in out.steps.iter().zip(&pad.steps).enumerate() {
            let sum: f32 = ig.raw[step].iter().sum();
            let want = s.log_prob - p.log_prob;
            assert!(
                (sum - want).abs() <= 0.02 * (1.0 + want.abs()),
                "{kind} step {step}: IG sums to {sum}, f(x) - f(x') = {want}"
            );
            let delta = ig.convergence_delta.as_ref().unwrap()[step];
            assert!((delta - (sum - want)).abs() < 1e-3, "{kind}: delta {delta}");
        }
    }
}

#[test]
fn erasure_is_the_drop_when_the_token_is_left_out() {
    for kind in KINDS {
        let t = tiny(kind);
        let o = forced("Nous avons froid !");
        let e = ExplainOptions {
            methods: vec![Method::Erasure],
            ..ExplainOptions::default()
        };
        let (out, rows) = explain(&t, TEXT, &o, &e);
        let (ids, tokens) = t.source(TEXT).unwrap();
        for i in [0, ids.len() / 2, ids.len() - 1] {
            let mut left = ids.clone();
            left.remove(i);
            let mut toks = tokens.clone();
            toks.remove(i);
            let without = decode_ids(&t, left, toks, &o);
            for (step, (s, w)) in out.steps.iter().zip(&without.steps).enumerate() {
                let want = s.log_prob - w.log_prob;
                let got = rows[0].raw[step][i];
                assert!(
                    (got - want).abs() < 1e-4,
                    "{kind} step {step} token {i}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn word_erasure_leaves_out_every_piece_of_a_word_at_once() {
    // Words of the toy corpus that its 40-piece vocabulary splits into pieces.
    let text = "You are here, I am cold.";
    for kind in KINDS {
        let t = tiny(kind);
        let o = forced("Nous sommes froid !");
        let (ids, tokens) = t.source(text).unwrap();
        // The first word of several pieces: `▁` and then pieces of letters only.
        let (start, end) = (0..tokens.len())
            .filter(|&i| tokens[i].starts_with('▁'))
            .map(|i| {
                let more = tokens[i + 1..]
                    .iter()
                    .take_while(|p| !p.starts_with('▁') && p.chars().all(char::is_alphabetic))
                    .count();
                (i, i + 1 + more)
            })
            .find(|(i, e)| e - i >= 2)
            .unwrap_or_else(|| panic!("{kind}: no word of several pieces in {tokens:?}"));
        let e = ExplainOptions {
            methods: vec![Method::Erasure, Method::WordErasure],
            ..ExplainOptions::default()
        };
        let (out, rows) = explain(&t, text, &o, &e);
        let mut left = ids.clone();
        left.drain(start..end);
        let mut toks = tokens.clone();
        toks.drain(start..end);
        let without = decode_ids(&t, left, toks, &o);
        for (step, (s, w)) in out.steps.iter().zip(&without.steps).enumerate() {
            let want = s.log_prob - w.log_prob;
            let word = &rows[1].raw[step][start..end];
            let got: f32 = word.iter().sum();
            assert!(
                (got - want).abs() < 1e-4,
                "{kind} step {step} pieces {start}..{end}: {got} vs {want}"
            );
            assert!(word.iter().all(|&v| (v - word[0]).abs() < 1e-6), "{word:?}");
            // `</s>` stands alone: erased as erasure erases it.
            let last = ids.len() - 1;
            assert!((rows[1].raw[step][last] - rows[0].raw[step][last]).abs() < 1e-5);
        }
    }
}

#[test]
fn every_decoding_option_is_explained_as_it_was_decoded() {
    let cases: Vec<(&str, DecodeOptions)> = vec![
        (
            "greedy",
            DecodeOptions {
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "beam",
            DecodeOptions {
                beam: 3,
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "prefix",
            DecodeOptions {
                target_prefix: Some("Nous".into()),
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "intervention",
            DecodeOptions {
                interventions: vec![Intervention { step: 1, source: 0 }],
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "sampled",
            DecodeOptions {
                attention: Some(Mode::Sampled),
                seed: 3,
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "sparsemax",
            DecodeOptions {
                attention: Some(Mode::Sparsemax),
                max_len: Some(5),
                ..Default::default()
            },
        ),
        (
            "hot",
            DecodeOptions {
                temperature: 2.5,
                max_len: Some(5),
                ..Default::default()
            },
        ),
    ];
    for kind in KINDS {
        let t = tiny(kind);
        for (name, o) in &cases {
            let (out, rows) = explain(&t, TEXT, o, &all_methods(48, Baseline::Zero));
            assert_eq!(rows.len(), Method::ALL.len());
            for a in &rows {
                assert_eq!(a.raw.len(), out.steps.len(), "{kind} {name}");
                for (step, row) in a.raw.iter().enumerate() {
                    assert!(
                        row.iter().all(|v| v.is_finite()),
                        "{kind} {name} {}",
                        a.method
                    );
                    let n = normalise(row);
                    let total: f32 = n.iter().sum();
                    assert!(total == 0.0 || (total - 1.0).abs() < 1e-5);
                    if let Some(tau) = a.agreement[step].tau {
                        assert!((-1.0..=1.0).contains(&tau));
                    }
                }
            }
            // The replay scores the decoding's own tokens: integrated gradients' completeness
            // holds only if it attends exactly as the decoding did.
            let ig = &rows[1];
            for (step, d) in ig.convergence_delta.as_ref().unwrap().iter().enumerate() {
                let f = out.steps[step].log_prob;
                assert!(
                    d.abs() <= 0.03 * (1.0 + f.abs()),
                    "{kind} {name} step {step}: delta {d}"
                );
            }
        }
    }
}

#[test]
fn a_segmented_text_is_explained_sentence_by_sentence() {
    let text = "I am cold. Is it here?";
    for kind in KINDS {
        let t = tiny(kind);
        let o = DecodeOptions {
            max_len: Some(4),
            ..Default::default()
        };
        let e = all_methods(16, Baseline::Zero);
        let (out, rows) = explain(&t, text, &o, &e);
        assert_eq!(out.sentences.len(), 2);
        for (k, part) in ["I am cold.", "Is it here?"].into_iter().enumerate() {
            let span = &out.sentences[k];
            let (_, alone) = explain(&t, part, &o, &e);
            for (a, b) in rows.iter().zip(&alone) {
                for (local, step) in span.target.clone().enumerate() {
                    let row = &a.raw[step];
                    assert!(
                        row.iter()
                            .enumerate()
                            .all(|(j, &v)| span.source.contains(&j) || v == 0.0),
                        "{kind}: off-block attribution"
                    );
                    for (x, y) in row[span.source.clone()].iter().zip(&b.raw[local]) {
                        assert!((x - y).abs() < 1e-4, "{kind} {}: {x} vs {y}", a.method);
                    }
                }
            }
        }
    }
}

#[test]
fn bad_options_are_refused_with_a_clear_message() {
    let t = tiny("additive");
    let p = plan(&t, TEXT, &DecodeOptions::default());
    let out = t.decode(&p, |_| ControlFlow::Continue(())).unwrap();
    let e = ExplainOptions {
        methods: vec![Method::IntegratedGradients],
        ig_steps: 0,
        ..Default::default()
    };
    let err = t.explain(&p, &out, &e).unwrap_err();
    assert!(
        err.to_string().contains("ig_steps 0 is out of range"),
        "{err}"
    );
    let other = plan(&t, "Is it here? I am cold.", &DecodeOptions::default());
    let e = ExplainOptions {
        methods: vec![Method::Erasure],
        ..Default::default()
    };
    assert!(t.explain(&other, &out, &e).is_err());
}

#[test]
fn a_loaded_model_with_constant_weights_explains_like_the_trainable_one() {
    // Loaded weights are constants, so attribution takes the matmul that skips the weight's
    // gradient (ops::dense); the in-memory fixture's weights are variables and do not.
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        attnscope_model::fixtures::write_tiny_model_of(dir.path(), kind, 7).unwrap();
        let loaded = Translator::load(dir.path()).unwrap();
        let o = DecodeOptions {
            max_len: Some(5),
            ..Default::default()
        };
        let e = all_methods(8, Baseline::Zero);
        let (_, a) = explain(&loaded, TEXT, &o, &e);
        let (_, b) = explain(&tiny(kind), TEXT, &o, &e);
        for (x, y) in a.iter().zip(&b) {
            for (rx, ry) in x.raw.iter().zip(&y.raw) {
                for (u, v) in rx.iter().zip(ry) {
                    assert!((u - v).abs() < 1e-5, "{kind} {}: {u} vs {v}", x.method);
                }
            }
        }
    }
}
