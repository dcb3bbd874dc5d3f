//! Decoding with every kind of tiny random model: attention modes, beam search, forced
//! decoding, prefixes and interventions, and one training step per kind.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::ops::ControlFlow;

use attnscope_model::fixtures::{KINDS, tiny_translator_of};
use attnscope_model::networks::TrainMode;
use attnscope_model::training::data::{Example, collate};
use attnscope_model::{DecodeOptions, Error, Intervention, Mode, Translation, Translator};

const TEXT: &str = "I am cold.";

fn tiny(kind: &str, seed: u64) -> Translator {
    tiny_translator_of(kind, seed).unwrap().0
}

fn run(t: &Translator, text: &str, opts: &DecodeOptions) -> Translation {
    t.translate(text, opts, |_| ControlFlow::Continue(()))
        .unwrap()
}

fn opts(mode: Mode, max_len: usize) -> DecodeOptions {
    DecodeOptions {
        attention: Some(mode),
        max_len: Some(max_len),
        ..DecodeOptions::default()
    }
}

fn assert_rows_sum_to_one(out: &Translation, what: &str) {
    for (i, row) in out.attention().iter().enumerate() {
        assert_eq!(row.len(), out.source_tokens.len(), "{what} row {i}");
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{what} row {i} sums to {sum}");
        assert!(row.iter().all(|w| *w >= 0.0), "{what} row {i}: {row:?}");
    }
}

#[test]
fn every_kind_and_mode_streams_rows_that_sum_to_one() {
    for kind in KINDS {
        let t = tiny(kind, 1);
        for mode in Mode::ALL {
            for temperature in [0.5, 1.0, 2.0] {
                let o = DecodeOptions {
                    temperature,
                    ..opts(mode, 9)
                };
                let mut seen = Vec::new();
                let out = t
                    .translate(TEXT, &o, |s| {
                        seen.push(s.clone());
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                let what = format!("{kind}/{mode}/T={temperature}");
                assert_eq!(out.mode, mode);
                assert!(!out.steps.is_empty() && out.steps.len() <= 9, "{what}");
                assert_eq!(
                    seen, out.steps,
                    "{what}: streamed steps differ from the result"
                );
                assert_rows_sum_to_one(&out, &what);
                for row in out.attention() {
                    let nonzero = row.iter().filter(|&&w| w > 0.0).count();
                    match mode {
                        // A Transformer's row is a mean over heads; its heads are checked below.
                        Mode::Hard | Mode::Sampled if kind != "transformer" => {
                            assert_eq!(nonzero, 1, "{what}: not one-hot: {row:?}");
                            assert!(row.contains(&1.0), "{what}: {row:?}");
                        }
                        _ => assert!(nonzero >= 1),
                    }
                }
                if kind == "transformer" {
                    let heads = out.steps[0].heads.as_ref().expect("transformer heads");
                    assert_eq!(heads.cross.len(), 2);
                    assert_eq!(heads.cross[0].len(), 2);
                    for (i, s) in out.steps.iter().enumerate() {
                        let h = s.heads.as_ref().unwrap();
                        for layer in h.cross.iter().chain(&h.self_attention) {
                            for row in layer {
                                let sum: f32 = row.iter().sum();
                                assert!((sum - 1.0).abs() < 1e-4, "{what}: head row {sum}");
                            }
                        }
                        assert!(h.self_attention.iter().flatten().all(|r| r.len() == i + 1));
                        if mode == Mode::Hard || mode == Mode::Sampled {
                            // The mode applies to every layer's and head's cross-attention.
                            assert!(h.cross.iter().flatten().all(|r| {
                                r.contains(&1.0) && r.iter().filter(|&&w| w > 0.0).count() == 1
                            }));
                        }
                    }
                    let enc = out.encoder_attention.as_ref().expect("encoder attention");
                    assert_eq!(enc.len(), 2);
                    assert_eq!(enc[0][0].len(), out.source_tokens.len());
                } else {
                    assert!(out.steps.iter().all(|s| s.heads.is_none()));
                    assert!(out.encoder_attention.is_none());
                }
            }
        }
    }
}

#[test]
fn sparsemax_at_low_temperature_is_sparse() {
    for kind in KINDS {
        let t = tiny(kind, 4);
        let out = run(
            &t,
            "You are here. I am cold. We are here!",
            &DecodeOptions {
                temperature: 0.05,
                ..opts(Mode::Sparsemax, 6)
            },
        );
        assert_rows_sum_to_one(&out, kind);
        let zeros = out
            .attention()
            .into_iter()
            .flatten()
            .filter(|&&w| w == 0.0)
            .count();
        assert!(zeros > 0, "{kind}: sparsemax gave no zero weight");
    }
}

#[test]
fn beam_of_one_is_greedy_and_wider_beams_keep_every_hypothesis() {
    for kind in KINDS {
        for seed in [1, 2, 3] {
            let t = tiny(kind, seed);
            for text in [TEXT, "Is it here?", "We are cold!"] {
                let greedy = run(&t, text, &opts(Mode::Soft, 12));
                let beam1 = run(
                    &t,
                    text,
                    &DecodeOptions {
                        beam: 1,
                        ..opts(Mode::Soft, 12)
                    },
                );
                assert_eq!(greedy, beam1, "{kind}");
                // Beam search's own code path with k = 1 makes the greedy choices.
                let k1 = t
                    .beam_search(
                        text,
                        &DecodeOptions {
                            beam: 1,
                            ..opts(Mode::Soft, 12)
                        },
                    )
                    .unwrap();
                assert_eq!(k1.len(), 1, "{kind}");
                assert_eq!(k1[0].steps, greedy.steps, "{kind}: k=1 differs from greedy");
                assert_eq!(k1[0].translation, greedy.translation);
                let b = run(
                    &t,
                    text,
                    &DecodeOptions {
                        beam: 4,
                        ..opts(Mode::Soft, 12)
                    },
                );
                assert!(
                    !b.hypotheses.is_empty() && b.hypotheses.len() <= 4,
                    "{kind}"
                );
                assert_eq!(b.hypotheses[0].steps, b.steps);
                assert_eq!(b.hypotheses[0].translation, b.translation);
                for w in b.hypotheses.windows(2) {
                    assert!(w[0].score >= w[1].score, "{kind}: hypotheses not ranked");
                }
                for h in &b.hypotheses {
                    let sum: f32 = h.steps.iter().map(|s| s.log_prob).sum();
                    assert!((sum - h.log_prob).abs() < 1e-3);
                    for s in &h.steps {
                        let total: f32 = s.attention.iter().sum();
                        assert!((total - 1.0).abs() < 1e-4);
                    }
                }
                // The best hypothesis is at least as likely per token as greedy's choice,
                // when greedy finished within the limit.
                if greedy.target_tokens.last().map(String::as_str) == Some("</s>") {
                    let g = greedy.log_prob / greedy.steps.len() as f32;
                    assert!(
                        b.hypotheses[0].score >= g - 1e-4,
                        "{kind}: beam worse than greedy"
                    );
                }
            }
        }
    }
}

#[test]
fn forced_decoding_scores_the_given_target() {
    for kind in KINDS {
        let t = tiny(kind, 5);
        let out = run(
            &t,
            TEXT,
            &DecodeOptions {
                force_target: Some("Tu es ici.".into()),
                ..DecodeOptions::default()
            },
        );
        let expected = t.target_vocab().encode("Tu es ici.").unwrap();
        let got: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
        assert_eq!(&got[..expected.len()], expected.as_slice(), "{kind}");
        assert_eq!(out.target_tokens.last().map(String::as_str), Some("</s>"));
        assert_eq!(got.len(), expected.len() + 1);
        assert!(out.steps.iter().all(|s| s.forced && s.log_prob <= 0.0));
        assert_eq!(out.translation, "Tu es ici.");
        assert_rows_sum_to_one(&out, kind);
        // The score is the model's: teacher forcing the greedy output gives greedy's score.
        let greedy = run(&t, TEXT, &opts(t.default_mode(), 30));
        if greedy.target_tokens.last().map(String::as_str) == Some("</s>")
            && !greedy.translation.is_empty()
        {
            let again = run(
                &t,
                TEXT,
                &DecodeOptions {
                    force_target: Some(greedy.translation.clone()),
                    ..DecodeOptions::default()
                },
            );
            if again.steps.len() == greedy.steps.len() {
                assert!((again.log_prob - greedy.log_prob).abs() < 1e-3, "{kind}");
                assert_eq!(again.attention(), greedy.attention(), "{kind}");
            }
        }
    }
}

#[test]
fn a_prefix_is_forced_then_decoding_continues_freely() {
    for kind in KINDS {
        let t = tiny(kind, 6);
        for beam in [1, 3] {
            let out = run(
                &t,
                TEXT,
                &DecodeOptions {
                    target_prefix: Some("Nous avons".into()),
                    beam,
                    ..opts(Mode::Soft, 10)
                },
            );
            let prefix = t.target_vocab().encode("Nous avons").unwrap();
            let got: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
            assert_eq!(
                &got[..prefix.len()],
                prefix.as_slice(),
                "{kind} beam {beam}"
            );
            assert!(out.steps[..prefix.len()].iter().all(|s| s.forced));
            assert!(out.steps[prefix.len()..].iter().all(|s| !s.forced));
        }
    }
}

#[test]
fn an_intervention_forces_one_step_then_decoding_continues() {
    for kind in KINDS {
        let t = tiny(kind, 7);
        let base = run(&t, TEXT, &opts(Mode::Soft, 8));
        let iv = DecodeOptions {
            interventions: vec![Intervention { step: 1, source: 2 }],
            ..opts(Mode::Soft, 8)
        };
        let out = run(&t, TEXT, &iv);
        if out.steps.len() > 1 {
            let mut expected = vec![0.0; out.source_tokens.len()];
            expected[2] = 1.0;
            assert_eq!(out.attention()[1], expected, "{kind}");
            assert!(out.steps[1].intervened && !out.steps[0].intervened);
            if let Some(h) = &out.steps[1].heads {
                assert!(h.cross.iter().flatten().all(|r| r == &expected));
            }
            // Step 0 is untouched; later steps attend freely again (soft rows).
            assert_eq!(out.steps[0], base.steps[0]);
            for row in out.attention().iter().skip(2) {
                assert!(row.iter().filter(|&&w| w > 0.0).count() > 1, "{kind}");
            }
        }
        // Out-of-range positions are clear errors.
        for bad in [
            Intervention {
                step: 0,
                source: 99,
            },
            Intervention {
                step: 99,
                source: 0,
            },
        ] {
            let err = t
                .translate(
                    TEXT,
                    &DecodeOptions {
                        interventions: vec![bad],
                        ..opts(Mode::Soft, 8)
                    },
                    |_| ControlFlow::Continue(()),
                )
                .unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{kind}: {err}");
        }
    }
}

#[test]
fn options_out_of_range_are_errors() {
    let t = tiny("additive", 1);
    for o in [
        DecodeOptions {
            beam: 0,
            ..DecodeOptions::default()
        },
        DecodeOptions {
            beam: 17,
            ..DecodeOptions::default()
        },
        DecodeOptions {
            temperature: 0.0,
            ..DecodeOptions::default()
        },
        DecodeOptions {
            max_len: Some(0),
            ..DecodeOptions::default()
        },
        DecodeOptions {
            force_target: Some("Tu es ici.".into()),
            beam: 2,
            ..DecodeOptions::default()
        },
    ] {
        let r = t.translate(TEXT, &o, |_| ControlFlow::Continue(()));
        assert!(matches!(r, Err(Error::Invalid(_))), "{o:?} gave {r:?}");
    }
    assert!(matches!(
        t.translate("   ", &DecodeOptions::default(), |_| ControlFlow::Continue(
            ()
        )),
        Err(Error::EmptyInput)
    ));
}

#[test]
fn decoding_is_deterministic_seeded_and_stoppable() {
    for kind in KINDS {
        let a = run(&tiny(kind, 3), "You are here.", &opts(Mode::Soft, 10));
        let b = run(&tiny(kind, 3), "You are here.", &opts(Mode::Soft, 10));
        assert_eq!(a, b, "{kind}");
        let c = run(&tiny(kind, 4), "You are here.", &opts(Mode::Soft, 10));
        assert_ne!(a.attention(), c.attention(), "{kind}");
        // Sampled attention depends on its seed only.
        let t = tiny(kind, 3);
        let s = |seed| {
            run(
                &t,
                "You are here. We are cold!",
                &DecodeOptions {
                    seed,
                    ..opts(Mode::Sampled, 10)
                },
            )
            .attention()
            .into_iter()
            .map(<[f32]>::to_vec)
            .collect::<Vec<_>>()
        };
        assert_eq!(s(1), s(1), "{kind}");
        assert!((2..12).any(|k| s(k) != s(1)), "{kind}: seed ignored");
        let out = t
            .translate(TEXT, &opts(Mode::Soft, 20), |s| {
                if s.index == 1 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert!(out.target_tokens.len() <= 2);
    }
}

#[test]
fn batch_decoding_matches_single_sentence_decoding() {
    for kind in KINDS {
        let t = tiny(kind, 5);
        let texts: Vec<String> = ["I am cold.", "Is it here?", "We are cold! You are here."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let batch = t.translate_batch(&texts, 8).unwrap();
        for (text, b) in texts.iter().zip(&batch) {
            let single = run(&t, text, &DecodeOptions::default());
            assert_eq!(&single.translation, b, "{kind}: {text}");
        }
    }
}

#[test]
fn training_steps_lower_the_loss_for_every_kind() {
    for kind in KINDS {
        let (t, varmap) = tiny_translator_of(kind, 9).unwrap();
        let ex: Vec<Example> = [
            ("I am cold.", "J'ai froid."),
            ("You are here.", "Tu es ici."),
        ]
        .iter()
        .map(|(s, g)| Example {
            src: t.source(s).unwrap().0,
            tgt: t.target_vocab().encode(g).unwrap(),
        })
        .collect();
        let batch = collate(&ex, &[0, 1], &candle_core::Device::Cpu).unwrap();
        let cfg = t.config().clone();
        let loss = |mode: &mut TrainMode| {
            t.network()
                .loss(&cfg, &batch, mode)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let first = loss(&mut TrainMode::eval());
        // Noise and dropout depend on (seed, step) only.
        assert_eq!(
            loss(&mut TrainMode::for_step(&cfg, 1, 5)),
            loss(&mut TrainMode::for_step(&cfg, 1, 5))
        );
        let mut opt = attnscope_model::kernels::adam::AdamW::new(&varmap, 0.01, 0.0).unwrap();
        for step in 0..40 {
            let l = t
                .network()
                .loss(&cfg, &batch, &mut TrainMode::for_step(&cfg, 1, step))
                .unwrap();
            opt.step(&l.backward().unwrap(), 1.0).unwrap();
        }
        let last = loss(&mut TrainMode::eval());
        assert!(last < first * 0.75, "{kind}: loss {first} -> {last}");
    }
}
