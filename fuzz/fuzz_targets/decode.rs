//! Fuzzes the model crate's text -> tokens -> decode path with tiny random models.
//!
//! Input layout: `TEXT [0x00 OPTIONS]`. TEXT (up to the first NUL byte) is the source
//! sentence, taken as UTF-8 where it is valid and lossily (U+FFFD) where it is not. The bytes
//! after the NUL are read with `arbitrary` into [`Options`]: which tiny model (additive,
//! general, dot, hard, transformer), which API (translate, beam_search, plan then decode as
//! the server does, translate_batch), the attention mode, temperature,
//! seed, beam width, a small max_len, a target prefix or forced target and interventions,
//! some of them deliberately out of range. A plain sentence with no NUL decodes greedily
//! with the additive model, so the seeds in `fuzz/seeds/` are readable text.
//!
//! `Err` results are fine (empty text, bad options); a panic or abort is a bug. On `Ok`,
//! a few documented invariants are asserted: one attention row per step, as long as the
//! source, non-negative, summing to 1, one-hot at an intervened position, no more steps
//! than asked for; and a plan that is made means decoding does not fail (the server plans
//! first and then streams).

#![no_main]

use std::ops::ControlFlow;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use attnscope_model::decoding::plan::{MAX_BEAM, MAX_OUTPUT, MAX_TOP_K};
use attnscope_model::fixtures::{KINDS, tiny_translator_of};
use attnscope_model::{DecodeOptions, DecodeStep, Intervention, Mode, Segmentation, Translator};
use libfuzzer_sys::fuzz_target;

/// Longest source text tried, in characters: long enough for the tokenizer's odd cases,
/// short enough that a GRU encoder over it stays fast.
const MAX_TEXT_CHARS: usize = 400;
/// Longest target prefix or forced target, in characters.
const MAX_TARGET_CHARS: usize = 24;

/// One tiny model of every kind, built once.
fn models() -> &'static [Translator] {
    static MODELS: OnceLock<Vec<Translator>> = OnceLock::new();
    MODELS.get_or_init(|| {
        KINDS
            .iter()
            .map(|k| tiny_translator_of(k, 7).expect("tiny model").0)
            .collect()
    })
}

#[derive(Debug, Arbitrary)]
enum Target<'a> {
    None,
    Prefix(&'a [u8]),
    Force(&'a [u8]),
    /// Both at once: the model must refuse this, not panic.
    Both(&'a [u8], &'a [u8]),
}

#[derive(Debug, Arbitrary)]
struct Options<'a> {
    kind: u8,
    api: u8,
    mode: u8,
    temperature: u8,
    seed: u64,
    beam: u8,
    max_len: u8,
    /// The step callback asks to stop after this many steps (0: never).
    stop_after: u8,
    target: Target<'a>,
    interventions: Vec<(u8, u8)>,
    /// Candidates per step (past `MAX_TOP_K` sometimes, which must be refused).
    top_k: u8,
    scores: bool,
}

fn text_of(bytes: &[u8], max_chars: usize) -> String {
    let s = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    s.chars().take(max_chars).collect()
}

fn temperature(b: u8) -> f32 {
    match b {
        0 => 1.0,
        1..=200 => 0.05 + f32::from(b - 1) * 0.1,
        201 => f32::NAN,
        202 => f32::INFINITY,
        203 => 0.0,
        204 => -1.0,
        205 => 0.049_999,
        206 => 20.0,
        207 => 20.000_01,
        208 => 0.05,
        _ => f32::MIN_POSITIVE,
    }
}

fn mode(b: u8) -> Option<Mode> {
    match b % 5 {
        4 => None,
        m => Some(Mode::ALL[usize::from(m)]),
    }
}

/// Asserts the documented shape of the steps of one decoding.
fn check_steps(steps: &[DecodeStep], src_len: usize, opts: &DecodeOptions, plain: bool) {
    if plain && let Some(m) = opts.max_len {
        assert!(steps.len() <= m, "{} steps for max_len {m}", steps.len());
    }
    assert!(steps.len() <= MAX_OUTPUT);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.index, i);
        assert_eq!(s.attention.len(), src_len, "step {i}: attention length");
        assert!(
            s.attention.iter().all(|w| w.is_finite() && *w >= 0.0),
            "step {i}: attention {:?}",
            s.attention
        );
        let sum: f32 = s.attention.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-3,
            "step {i}: attention sums to {sum}"
        );
        assert!(!s.log_prob.is_nan(), "step {i}: log_prob is NaN");
        if s.intervened {
            let iv = opts.interventions.iter().find(|iv| iv.step == i);
            let iv = iv.expect("an intervened step has an intervention");
            assert!(
                (s.attention[iv.source] - 1.0).abs() < 1e-4,
                "step {i}: intervention at {} gave {:?}",
                iv.source,
                s.attention
            );
        }
    }
}

fn run(data: &[u8]) {
    let (text_bytes, opt_bytes) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = text_of(text_bytes, MAX_TEXT_CHARS);
    let Ok(o) = Options::arbitrary_take_rest(Unstructured::new(opt_bytes)) else {
        return;
    };
    let models = models();
    let model = &models[usize::from(o.kind) % models.len()];

    // The tokenizers alone: any text encodes (or errs) and decodes; any id has a piece.
    if let Ok(ids) = model.source_vocab().encode(&text) {
        let _ = model.source_vocab().decode(&ids);
        let _ = model.target_vocab().decode(&ids);
    }
    let _ = model.target_vocab().piece(o.seed as u32);

    let (target_prefix, force_target) = match o.target {
        Target::None => (None, None),
        Target::Prefix(p) => (Some(text_of(p, MAX_TARGET_CHARS)), None),
        Target::Force(f) => (None, Some(text_of(f, MAX_TARGET_CHARS))),
        Target::Both(p, f) => (
            Some(text_of(p, MAX_TARGET_CHARS)),
            Some(text_of(f, MAX_TARGET_CHARS)),
        ),
    };
    let plain = target_prefix.is_none() && force_target.is_none();
    let opts = DecodeOptions {
        attention: mode(o.mode),
        temperature: temperature(o.temperature),
        seed: o.seed,
        beam: match o.beam {
            255 => 0,
            254 => MAX_BEAM + 1,
            b => 1 + usize::from(b % 4),
        },
        max_len: match o.max_len {
            255 => Some(0),
            // The model's default (2 S + 10): only for short texts, to stay fast.
            254 if text.chars().count() <= 8 => None,
            b => Some(1 + usize::from(b % 16)),
        },
        force_target,
        target_prefix,
        interventions: o
            .interventions
            .iter()
            .take(4)
            .map(|&(step, source)| Intervention {
                step: usize::from(step % 20),
                source: usize::from(source % 40),
            })
            .collect(),
        top_k: usize::from(o.top_k % (MAX_TOP_K as u8 + 2)),
        scores: o.scores,
    };
    let stop_after = usize::from(o.stop_after);
    let mut seen = 0usize;
    let on_step = |_: &DecodeStep| {
        seen += 1;
        if stop_after > 0 && seen >= stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };

    match o.api % 4 {
        0 => {
            if let Ok(t) = model.translate(&text, &opts, on_step) {
                assert_eq!(t.target_tokens.len(), t.steps.len());
                assert_eq!(t.attention().len(), t.steps.len());
                check_steps(&t.steps, t.source_tokens.len(), &opts, plain);
                assert!(t.hypotheses.len() <= opts.beam);
                for h in &t.hypotheses {
                    check_steps(&h.steps, t.source_tokens.len(), &opts, plain);
                }
            }
        }
        1 => {
            if let Ok(hyps) = model.beam_search(&text, &opts) {
                assert!(hyps.len() <= opts.beam);
                let src_len = model.source(&text).expect("source worked once").0.len();
                for h in &hyps {
                    check_steps(&h.steps, src_len, &opts, plain);
                }
            }
        }
        2 => {
            // As the server does: split, plan (check the options), then decode and stream.
            let Ok(source) = model.text_source(&text, Segmentation::Whole) else {
                return;
            };
            let src_len = source.len();
            if let Ok(plan) = model.plan(source, opts.clone()) {
                let t = model.decode(&plan, on_step);
                let t = t.unwrap_or_else(|e| panic!("the plan was made but decoding failed: {e}"));
                check_steps(&t.steps, src_len, &opts, plain);
            }
        }
        _ => {
            // Greedy batches of short lines (the default length limit applies).
            let lines: Vec<String> = text
                .split('\n')
                .take(4)
                .map(|l| l.chars().take(24).collect())
                .collect();
            if let Ok(out) = model.translate_batch(&lines, 1 + usize::from(o.beam % 3)) {
                assert_eq!(out.len(), lines.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| run(data));
