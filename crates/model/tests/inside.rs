//! What a step reports besides its token: the candidates the decoder weighed (checked against
//! forced decoding of each candidate) and the attention scores before the distribution
//! (checked by rebuilding the attention the decoder used from them), for every kind of tiny
//! model, greedy, beam and segmented.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::ops::ControlFlow;

use attnscope_model::fixtures::{KINDS, tiny_translator_of};
use attnscope_model::{DecodeOptions, Error, Mode, Segmentation, Translation, Translator};

const TEXT: &str = "I am cold.";

fn tiny(kind: &str) -> Translator {
    tiny_translator_of(kind, 7).unwrap().0
}

fn run(t: &Translator, text: &str, opts: &DecodeOptions) -> Translation {
    t.translate(text, opts, |_| ControlFlow::Continue(()))
        .unwrap()
}

fn reporting(top_k: usize) -> DecodeOptions {
    DecodeOptions {
        max_len: Some(6),
        top_k,
        scores: true,
        ..DecodeOptions::default()
    }
}

#[test]
fn candidates_are_the_best_tokens_with_the_log_probs_of_forcing_them() {
    let mut compared = 0;
    for kind in KINDS {
        let t = tiny(kind);
        let out = run(&t, TEXT, &reporting(4));
        assert!(!out.steps.is_empty(), "{kind}");
        for step in &out.steps {
            let c = &step.candidates;
            assert_eq!(c.len(), 4, "{kind} step {}", step.index);
            // Greedy decoding emits the best candidate, with the same log probability.
            assert_eq!(c[0].token_id, step.token_id, "{kind} step {}", step.index);
            assert_eq!(c[0].token, step.token);
            assert!((c[0].log_prob - step.log_prob).abs() < 1e-6);
            assert!(
                c.windows(2).all(|w| w[0].log_prob >= w[1].log_prob),
                "{kind}"
            );
            assert!(c.iter().all(|x| x.log_prob <= 0.0));
        }
        // Forcing a candidate at a step (the prefix so far, then that token) scores it with
        // the candidate's log probability.
        let step = &out.steps[1.min(out.steps.len() - 1)];
        let before: Vec<u32> = out.steps[..step.index].iter().map(|s| s.token_id).collect();
        for cand in &step.candidates[1..] {
            if cand.token_id < 4 {
                continue; // special tokens have no text to force
            }
            let mut ids = before.clone();
            ids.push(cand.token_id);
            let forced = t.target_vocab().decode(&ids).unwrap();
            if t.target_vocab().encode(&forced).unwrap() != ids {
                continue; // the pieces do not survive a round trip through text
            }
            let o = DecodeOptions {
                force_target: Some(forced),
                ..DecodeOptions::default()
            };
            let scored = run(&t, TEXT, &o);
            let got = scored.steps[step.index].log_prob;
            assert!(
                (got - cand.log_prob).abs() < 1e-5,
                "{kind}: forcing {:?} gives {got}, the candidate says {}",
                cand.token,
                cand.log_prob
            );
            compared += 1;
        }
    }
    assert!(
        compared >= KINDS.len(),
        "only {compared} candidates were forced"
    );
}

#[test]
fn the_attention_is_rebuilt_from_the_scores() {
    for kind in KINDS {
        let t = tiny(kind);
        let mode_of = |m: Option<Mode>| m.unwrap_or_else(|| t.default_mode());
        for (mode, temperature) in [
            (None, 1.0),
            (Some(Mode::Soft), 0.5),
            (Some(Mode::Sparsemax), 1.0),
            (Some(Mode::Hard), 1.0),
        ] {
            let o = DecodeOptions {
                attention: mode,
                temperature,
                ..reporting(0)
            };
            let out = run(&t, TEXT, &o);
            for step in &out.steps {
                assert!(step.candidates.is_empty());
                let scores = step.scores.as_ref().unwrap();
                assert_eq!(scores.first, 0);
                let last = scores.values.last().unwrap();
                let n = out.source_tokens.len();
                let mut mean = vec![0f32; n];
                for head in last {
                    assert_eq!(head.len(), n, "{kind}");
                    let w = attnscope_protocol_free::weights(head, mode_of(mode), temperature);
                    for (m, v) in mean.iter_mut().zip(w) {
                        *m += v / last.len() as f32;
                    }
                }
                for (a, b) in mean.iter().zip(&step.attention) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{kind} {mode:?} T={temperature} step {}: {mean:?} vs {:?}",
                        step.index,
                        step.attention
                    );
                }
                let layers = step.heads.as_ref().map_or(1, |h| h.cross.len());
                assert_eq!(
                    scores.values.len(),
                    layers,
                    "{kind}: scores for every layer"
                );
            }
        }
    }
}

/// The distributions written out plainly, as the page computes them.
mod attnscope_protocol_free {
    use attnscope_model::Mode;

    pub fn weights(e: &[f32], mode: Mode, t: f32) -> Vec<f32> {
        let x: Vec<f32> = e.iter().map(|v| v / t).collect();
        match mode {
            Mode::Hard => {
                let best = (0..e.len())
                    .reduce(|a, b| if e[b] > e[a] { b } else { a })
                    .unwrap();
                (0..e.len()).map(|j| f32::from(j == best)).collect()
            }
            Mode::Sparsemax => {
                let mut s = x.clone();
                s.sort_by(|a, b| b.total_cmp(a));
                let (mut cum, mut tau) = (0.0, 0.0);
                for (k, v) in s.iter().enumerate() {
                    cum += v;
                    let c = (cum - 1.0) / (k + 1) as f32;
                    if *v > c {
                        tau = c;
                    }
                }
                x.iter().map(|v| (v - tau).max(0.0)).collect()
            }
            _ => {
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                exps.iter().map(|v| v / sum).collect()
            }
        }
    }
}

#[test]
fn beam_and_segmented_steps_report_too() {
    for kind in ["additive", "transformer"] {
        let t = tiny(kind);
        let beam = run(
            &t,
            TEXT,
            &DecodeOptions {
                beam: 3,
                ..reporting(3)
            },
        );
        for h in &beam.hypotheses {
            for step in &h.steps {
                assert_eq!(step.candidates.len(), 3, "{kind}");
                assert!(step.scores.is_some());
                assert!(step.candidates.iter().any(|c| c.token_id == step.token_id));
            }
        }
        let src = t
            .text_source("I am cold. You are here.", Segmentation::Sentences)
            .unwrap();
        let plan = t.plan(src, reporting(2)).unwrap();
        let whole = t.decode(&plan, |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(whole.sentences.len(), 2);
        for step in &whole.steps {
            let span = &whole.sentences[step.sentence];
            let scores = step.scores.as_ref().unwrap();
            assert_eq!(scores.first, span.source.start, "{kind}");
            assert_eq!(scores.values[0][0].len(), span.source.len(), "{kind}");
            assert_eq!(step.candidates.len(), 2);
        }
    }
}

#[test]
fn too_many_candidates_is_a_clear_error() {
    let t = tiny("additive");
    let o = DecodeOptions {
        top_k: 21,
        ..DecodeOptions::default()
    };
    match t.translate(TEXT, &o, |_| ControlFlow::Continue(())) {
        Err(Error::Invalid(m)) => assert!(m.contains("top_k 21"), "{m}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
