//! Decoding together against decoding alone: every kind of tiny model, inputs of several
//! lengths and sentences, reports asked by some plans only, and a plan stopped midway.

use std::ops::ControlFlow;

use crate::decoding::decode::Translation;
use crate::decoding::plan::DecodeOptions;
use crate::decoding::source::Segmentation;
use crate::decoding::step::DecodeStep;
use crate::fixtures::{KINDS, tiny_translator_of};
use crate::networks::attention::Mode;
use crate::{BatchDecoder, DecodePlan, Translator};

const TEXTS: [&str; 5] = [
    "I am cold.",
    "You are here. We are cold! Is it here?",
    "Is it here?",
    "We are cold! I am here.",
    "I am here, you are cold, we are here.",
];

/// Decodes `plans` together in one [`BatchDecoder`], admitted at once: `on_step(i, step)`
/// and `on_done(i, translation)` with `i` the plan's index; `between_steps` runs after every
/// batch step.
fn decode_together(
    t: &Translator,
    plans: &[&DecodePlan],
    on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
    on_done: &mut dyn FnMut(usize, Translation),
    between_steps: &mut dyn FnMut(),
) -> crate::Result<()> {
    let mut batch = BatchDecoder::new(t);
    batch.admit(plans.iter().map(|p| (*p).clone()).enumerate().collect())?;
    while !batch.is_empty() {
        batch.step(on_step, on_done)?;
        between_steps();
    }
    Ok(())
}

/// Decodes `plans` together: every plan's translation, in order, and how many batch steps
/// had been taken when it came.
fn together_at(
    t: &Translator,
    plans: &[&DecodePlan],
    on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
) -> Vec<(Translation, usize)> {
    let mut done: Vec<Option<(Translation, usize)>> = vec![None; plans.len()];
    let steps = std::cell::Cell::new(0);
    decode_together(
        t,
        plans,
        on_step,
        &mut |i, tr| {
            assert!(done[i].is_none(), "plan {i} done twice");
            done[i] = Some((tr, steps.get()));
        },
        &mut || steps.set(steps.get() + 1),
    )
    .unwrap();
    done.into_iter()
        .map(|d| d.expect("every plan is done"))
        .collect()
}

/// [`together_at`] without the step counts.
fn together(
    t: &Translator,
    plans: &[&DecodePlan],
    on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
) -> Vec<Translation> {
    together_at(t, plans, on_step)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

fn plans(t: &Translator) -> Vec<DecodePlan> {
    TEXTS
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let opts = DecodeOptions {
                top_k: if i % 2 == 0 { 3 } else { 0 },
                scores: i == 1,
                max_len: (i == 4).then_some(3),
                ..Default::default()
            };
            let source = t.text_source(text, Segmentation::Sentences).unwrap();
            t.plan(source, opts).unwrap()
        })
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

fn nested_close(a: &[Vec<Vec<f32>>], b: &[Vec<Vec<f32>>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q)))
}

fn assert_same_step(alone: &DecodeStep, together: &DecodeStep, what: &str) {
    assert_eq!(
        (alone.index, alone.token_id, alone.sentence, alone.forced),
        (
            together.index,
            together.token_id,
            together.sentence,
            together.forced
        ),
        "{what}"
    );
    assert!((alone.log_prob - together.log_prob).abs() < 1e-4, "{what}");
    assert!(close(&alone.attention, &together.attention), "{what}");
    let ids = |s: &DecodeStep| s.candidates.iter().map(|c| c.token_id).collect::<Vec<_>>();
    assert_eq!(ids(alone), ids(together), "{what}");
    match (&alone.heads, &together.heads) {
        (Some(a), Some(b)) => {
            assert!(nested_close(&a.cross, &b.cross), "{what}");
            assert!(nested_close(&a.self_attention, &b.self_attention), "{what}");
        }
        (a, b) => assert_eq!(a.is_some(), b.is_some(), "{what}"),
    }
    match (&alone.scores, &together.scores) {
        (Some(a), Some(b)) => {
            assert_eq!(a.first, b.first, "{what}");
            assert!(nested_close(&a.values, &b.values), "{what}");
        }
        (a, b) => assert_eq!(a.is_some(), b.is_some(), "{what}"),
    }
}

/// Decodes `plan` alone, checks that its callback sees the steps `seen` showed (up to
/// float rounding), and returns the translation.
fn decoded_alone_as_seen(
    t: &Translator,
    plan: &DecodePlan,
    seen: &[DecodeStep],
    what: &str,
) -> Translation {
    let mut alone_seen = Vec::new();
    let alone = t
        .decode(plan, |s| {
            alone_seen.push(s.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(alone_seen.len(), seen.len(), "{what}");
    for (a, b) in alone_seen.iter().zip(seen) {
        assert_same_step(a, b, what);
    }
    alone
}

#[test]
fn decoding_together_shows_each_plan_what_decoding_alone_shows() {
    for kind in KINDS {
        let (t, _) = tiny_translator_of(kind, 21).unwrap();
        let plans = plans(&t);
        let refs: Vec<&DecodePlan> = plans.iter().collect();
        let mut seen: Vec<Vec<DecodeStep>> = vec![Vec::new(); plans.len()];
        let done = together_at(&t, &refs, &mut |i, s| {
            seen[i].push(s.clone());
            ControlFlow::Continue(())
        });
        // The plan held to 3 steps is done after the third batch step, whatever the
        // others still have to go.
        assert_eq!(done[4].1, 2, "{kind}");
        let together: Vec<Translation> = done.into_iter().map(|(t, _)| t).collect();
        for (i, plan) in plans.iter().enumerate() {
            let what = format!("{kind}, plan {i}");
            let alone = decoded_alone_as_seen(&t, plan, &seen[i], &what);
            let t2 = &together[i];
            assert_eq!(alone.translation, t2.translation, "{what}");
            assert_eq!(alone.target_tokens, t2.target_tokens, "{what}");
            assert_eq!(alone.sentences, t2.sentences, "{what}");
            assert_eq!((alone.mode, alone.stopped), (t2.mode, t2.stopped), "{what}");
            assert!((alone.log_prob - t2.log_prob).abs() < 1e-3, "{what}");
            assert_eq!(alone.steps.len(), t2.steps.len(), "{what}");
            for (a, b) in alone.steps.iter().zip(&t2.steps) {
                assert_same_step(a, b, &what);
            }
            match (&alone.encoder_attention, &t2.encoder_attention) {
                (Some(a), Some(b)) => {
                    assert_eq!(a.len(), b.len(), "{what}");
                    for (x, y) in a.iter().zip(b) {
                        assert!(nested_close(x, y), "{what}");
                    }
                }
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{what}"),
            }
        }
    }
}

#[test]
fn plans_that_join_a_running_batch_decode_as_they_would_alone() {
    for kind in KINDS {
        let (t, _) = tiny_translator_of(kind, 8).unwrap();
        let plans = plans(&t);
        let mut seen: Vec<Vec<DecodeStep>> = vec![Vec::new(); plans.len()];
        let mut done: Vec<Option<Translation>> = vec![None; plans.len()];
        let mut batch = BatchDecoder::new(&t);
        // Plans 0 and 1 start; 2 and 3 join after two steps, 4 after three more, when
        // the others are at different positions (and the 3-step plan 4 ends first).
        let admit_at = [(0, vec![0, 1]), (2, vec![2, 3]), (5, vec![4])];
        let mut steps = 0;
        while steps < 6 || !batch.is_empty() {
            for (at, ids) in &admit_at {
                if *at == steps {
                    batch
                        .admit(ids.iter().map(|&i| (i, plans[i].clone())).collect())
                        .unwrap();
                }
            }
            batch
                .step(
                    &mut |i, s| {
                        seen[i].push(s.clone());
                        ControlFlow::Continue(())
                    },
                    &mut |i, tr| done[i] = Some(tr),
                )
                .unwrap();
            steps += 1;
        }
        assert_eq!(batch.rows(), 0);
        for (i, plan) in plans.iter().enumerate() {
            let what = format!("{kind}, plan {i}");
            let alone = decoded_alone_as_seen(&t, plan, &seen[i], &what);
            let together = done[i].as_ref().expect("every plan is done");
            assert_eq!(alone.target_tokens, together.target_tokens, "{what}");
            assert_eq!(alone.sentences, together.sentences, "{what}");
        }
    }
}

#[test]
fn a_stopped_plan_leaves_the_batch_and_the_others_finish() {
    let (t, _) = tiny_translator_of("transformer", 5).unwrap();
    let plans = plans(&t);
    let refs: Vec<&DecodePlan> = plans.iter().collect();
    let mut seen = vec![0usize; plans.len()];
    let together = together(&t, &refs, &mut |i, _| {
        seen[i] += 1;
        if i == 1 && seen[i] == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(seen[1], 2);
    assert!(together[1].stopped);
    assert_eq!(together[1].steps.len(), 2);
    for (i, plan) in plans.iter().enumerate().filter(|&(i, _)| i != 1) {
        let alone = t.decode(plan, |_| ControlFlow::Continue(())).unwrap();
        assert!(!together[i].stopped);
        assert_eq!(alone.target_tokens, together[i].target_tokens, "plan {i}");
        assert_eq!(seen[i], alone.steps.len(), "plan {i}");
    }
}

#[test]
fn only_greedy_plans_with_one_fixed_attention_share_a_batch() {
    let (t, _) = tiny_translator_of("additive", 1).unwrap();
    let plan = |opts: DecodeOptions| {
        let source = t.text_source("I am cold.", Segmentation::Whole).unwrap();
        t.plan(source, opts).unwrap()
    };
    let greedy = plan(DecodeOptions::default());
    assert!(greedy.batch_key().is_some());
    assert_eq!(
        greedy.batch_key(),
        plan(DecodeOptions {
            top_k: 5,
            scores: true,
            ..Default::default()
        })
        .batch_key()
    );
    let hard = plan(DecodeOptions {
        attention: Some(Mode::Hard),
        ..Default::default()
    });
    assert!(hard.batch_key().is_some());
    assert_ne!(hard.batch_key(), greedy.batch_key());
    let warm = plan(DecodeOptions {
        temperature: 2.0,
        ..Default::default()
    });
    assert_ne!(warm.batch_key(), greedy.batch_key());
    for alone in [
        DecodeOptions {
            beam: 3,
            ..Default::default()
        },
        DecodeOptions {
            attention: Some(Mode::Sampled),
            ..Default::default()
        },
        DecodeOptions {
            force_target: Some("J'ai froid.".into()),
            ..Default::default()
        },
        DecodeOptions {
            target_prefix: Some("J'ai".into()),
            ..Default::default()
        },
    ] {
        assert_eq!(plan(alone.clone()).batch_key(), None, "{alone:?}");
    }
    let mixed = [&greedy, &hard];
    let err = decode_together(
        &t,
        &mixed,
        &mut |_, _| ControlFlow::Continue(()),
        &mut |_, _| {},
        &mut || {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("share"), "{err}");
}
