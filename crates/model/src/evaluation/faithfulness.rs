//! Faithfulness in numbers: does a model's attention explain its output?
//!
//! Over a set of test sentences, each translated greedily with the model's own attention:
//!
//! - **agreement** of the attention with each attribution ([`crate::explain`]): the mean of
//!   Kendall's τ-b per step, and the share of steps where both put their largest weight on
//!   the same source token;
//! - **counterfactual attention** (Jain & Wallace 2019): decoding again with every step's
//!   attention replaced by uniform weights, by its own weights shuffled over the source, or
//!   by a one-hot at its argmax ([`Mode::Uniform`], [`Mode::Shuffled`], [`Mode::Hard`];
//!   every layer and head of a Transformer), the share of output tokens that change (outside
//!   a longest common subsequence with the original), the share of sentences whose
//!   translation changes, and the drop in the log-probability of the original translation
//!   (forced), per token. Attention that matters changes the output when it is replaced.
//!
//! Sentences are decoded whole (not split into sentences), as the test items are.

use std::ops::ControlFlow;

use crate::report::{Counterfactual, Faithfulness, MethodAgreement};

use crate::explain::{ExplainOptions, Method};
use crate::{DecodeOptions, Mode, Result, Segmentation, Translation, Translator};

/// The counterfactual attentions, in the order they are reported.
pub const COUNTERFACTUALS: [Mode; 3] = [Mode::Uniform, Mode::Shuffled, Mode::Hard];

/// Measures [`Faithfulness`] on `sources`; `progress(done, total)` is called after each.
pub fn measure(
    t: &Translator,
    sources: &[String],
    ig_steps: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Faithfulness> {
    let explain = ExplainOptions {
        methods: Method::ALL.to_vec(),
        ig_steps,
        ..ExplainOptions::default()
    };
    explain.check()?;
    let own = DecodeOptions::default();
    let mut tau_sum = [0f64; Method::ALL.len()];
    let mut tau_n = [0usize; Method::ALL.len()];
    let mut argmax_hits = [0usize; Method::ALL.len()];
    let mut steps = 0usize;
    let mut changed_tokens = [0usize; 3];
    // Per counterfactual, the positions compared: the longer of the two outputs.
    let mut positions = [0usize; 3];
    let mut changed_sentences = [0usize; 3];
    let mut drop_sum = [0f64; 3];
    let mut forced_tokens = 0usize;
    let mut done = 0usize;
    for (i, text) in sources.iter().enumerate() {
        let src = t.text_source(text, Segmentation::Whole)?;
        let plan = t.plan(src.clone(), own.clone())?;
        let out = t.decode(&plan, |_| ControlFlow::Continue(()))?;
        let rows = t.explain(&plan, &out, &explain)?;
        steps += out.steps.len();
        for (k, a) in rows.iter().enumerate() {
            for g in &a.agreement {
                if let Some(tau) = g.tau {
                    tau_sum[k] += tau as f64;
                    tau_n[k] += 1;
                }
                argmax_hits[k] += usize::from(g.argmax_agrees);
            }
        }
        let scored = forced_log_prob(t, &src, &out.translation, None, 0)?;
        for (k, mode) in COUNTERFACTUALS.into_iter().enumerate() {
            let cf = decode(
                t,
                &src,
                &DecodeOptions {
                    attention: Some(mode),
                    seed: i as u64,
                    ..DecodeOptions::default()
                },
            )?;
            let (changed, compared) = changed_positions(&out.target_tokens, &cf.target_tokens);
            changed_tokens[k] += changed;
            positions[k] += compared;
            changed_sentences[k] += usize::from(cf.translation != out.translation);
            if let (Some((lp, n)), Some((lp_cf, _))) = (
                scored,
                forced_log_prob(t, &src, &out.translation, Some(mode), i as u64)?,
            ) {
                drop_sum[k] += lp - lp_cf;
                if k == 0 {
                    forced_tokens += n;
                }
            }
        }
        done += 1;
        progress(done, sources.len());
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Faithfulness {
        sentences: done,
        steps,
        ig_steps,
        agreement: Method::ALL
            .iter()
            .enumerate()
            .map(|(k, m)| MethodAgreement {
                method: m.as_str().to_string(),
                mean_tau: if tau_n[k] == 0 {
                    0.0
                } else {
                    tau_sum[k] / tau_n[k] as f64
                },
                argmax_agreement: share(argmax_hits[k], steps),
                steps_with_tau: tau_n[k],
            })
            .collect(),
        counterfactuals: COUNTERFACTUALS
            .iter()
            .enumerate()
            .map(|(k, m)| Counterfactual {
                attention: m.as_str().to_string(),
                tokens_changed: share(changed_tokens[k], positions[k]),
                sentences_changed: share(changed_sentences[k], done),
                log_prob_drop: if forced_tokens == 0 {
                    0.0
                } else {
                    drop_sum[k] / forced_tokens as f64
                },
            })
            .collect(),
    })
}

fn decode(t: &Translator, src: &crate::TextSource, o: &DecodeOptions) -> Result<Translation> {
    let plan = t.plan(src.clone(), o.clone())?;
    t.decode(&plan, |_| ControlFlow::Continue(()))
}

/// The log-probability of `target` forced with attention `mode` (the model's own when
/// `None`) and its length in pieces; `None` for an empty target, which cannot be forced.
fn forced_log_prob(
    t: &Translator,
    src: &crate::TextSource,
    target: &str,
    mode: Option<Mode>,
    seed: u64,
) -> Result<Option<(f64, usize)>> {
    if target.trim().is_empty() {
        return Ok(None);
    }
    let o = DecodeOptions {
        attention: mode,
        seed,
        force_target: Some(target.to_string()),
        ..DecodeOptions::default()
    };
    let out = decode(t, src, &o)?;
    Ok(Some((out.log_prob as f64, out.steps.len())))
}

/// Length of a longest common subsequence.
/// How many positions of the longer of two outputs are not in their longest common
/// subsequence, and how many positions that is out of: a share of at most 1 even when the
/// counterfactual output runs longer than the original.
fn changed_positions<S: PartialEq>(original: &[S], counterfactual: &[S]) -> (usize, usize) {
    let longer = original.len().max(counterfactual.len());
    (longer - lcs(original, counterfactual), longer)
}

fn lcs<S: PartialEq>(a: &[S], b: &[S]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::tiny_translator_of;

    #[test]
    fn lcs_counts_the_common_subsequence() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["a", "c", "d", "e"]), 3);
        assert_eq!(lcs::<&str>(&[], &["a"]), 0);
    }

    #[test]
    fn changed_positions_are_a_share_of_the_longer_output() {
        // A counterfactual that repeats itself past the original's end: 3 of its 5
        // positions changed, not 3 of the original's 2.
        assert_eq!(
            changed_positions(&["a", "b"], &["a", "x", "x", "x", "b"]),
            (3, 5)
        );
        assert_eq!(changed_positions(&["a", "b", "c"], &["a"]), (2, 3));
        assert_eq!(changed_positions::<&str>(&[], &[]), (0, 0));
    }

    #[test]
    fn figures_are_shares_and_taus_in_range_on_a_tiny_model() {
        for kind in ["additive", "transformer"] {
            let (t, _) = tiny_translator_of(kind, 2).unwrap();
            let sources = vec!["I am cold.".to_string(), "Is it here?".to_string()];
            let mut calls = Vec::new();
            let f = measure(&t, &sources, 2, |d, n| calls.push((d, n))).unwrap();
            assert_eq!(calls, vec![(1, 2), (2, 2)]);
            assert_eq!(f.sentences, 2);
            assert_eq!(f.agreement.len(), Method::ALL.len());
            for a in &f.agreement {
                assert!((-1.0..=1.0).contains(&a.mean_tau), "{kind}: {a:?}");
                assert!((0.0..=1.0).contains(&a.argmax_agreement));
            }
            for c in &f.counterfactuals {
                assert!((0.0..=1.0).contains(&c.tokens_changed), "{kind}: {c:?}");
                assert!((0.0..=1.0).contains(&c.sentences_changed));
                assert!(c.log_prob_drop.is_finite());
            }
        }
    }
}
