//! Multi-sentence input: segmented decoding with every kind of tiny random model gives a
//! block-diagonal matrix whose blocks are exactly the single-sentence translations, and
//! every option (beam, forced target, prefix, interventions, stopping) carries over.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::ops::ControlFlow;

use attnscope_model::fixtures::{KINDS, tiny_translator_of};
use attnscope_model::{
    DecodeOptions, DecodeStep, Error, Intervention, Segmentation, Translation, Translator,
};

const TEXT: &str = "I am cold. Where is the cat? It is late.";
const PARTS: [&str; 3] = ["I am cold.", "Where is the cat?", "It is late."];

fn tiny(kind: &str) -> Translator {
    tiny_translator_of(kind, 3).unwrap().0
}

fn opts(max_len: usize) -> DecodeOptions {
    DecodeOptions {
        max_len: Some(max_len),
        ..DecodeOptions::default()
    }
}

fn segmented(t: &Translator, text: &str, o: &DecodeOptions) -> (Translation, Vec<DecodeStep>) {
    let src = t.text_source(text, Segmentation::Sentences).unwrap();
    let plan = t.plan(src, o.clone()).unwrap();
    let mut seen = Vec::new();
    let out = t
        .decode(&plan, |s| {
            seen.push(s.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, seen)
}

fn single(t: &Translator, text: &str, o: &DecodeOptions) -> Translation {
    t.translate(text, o, |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn blocks_are_the_single_sentence_translations() {
    for kind in KINDS {
        let t = tiny(kind);
        let o = opts(6);
        let (out, seen) = segmented(&t, TEXT, &o);
        assert_eq!(seen, out.steps, "{kind}: streamed steps are the steps");
        assert_eq!(out.sentences.len(), 3, "{kind}");
        let mut source_at = 0;
        let mut step_at = 0;
        for (k, (span, part)) in out.sentences.iter().zip(PARTS).enumerate() {
            let alone = single(&t, part, &o);
            assert_eq!(span.text, part);
            assert_eq!(span.translation, alone.translation, "{kind} sentence {k}");
            assert_eq!(
                span.source,
                source_at..source_at + alone.source_tokens.len()
            );
            assert_eq!(span.target, step_at..step_at + alone.steps.len());
            assert_eq!(
                out.source_tokens[span.source.clone()],
                alone.source_tokens[..]
            );
            for (i, step) in out.steps[span.target.clone()].iter().enumerate() {
                let a = &alone.steps[i];
                assert_eq!(step.index, step_at + i);
                assert_eq!(step.sentence, k);
                assert_eq!(step.token_id, a.token_id);
                assert_eq!(step.attention.len(), out.source_tokens.len());
                assert_eq!(&step.attention[span.source.clone()], &a.attention[..]);
                let outside: f32 = step.attention.iter().sum::<f32>()
                    - step.attention[span.source.clone()].iter().sum::<f32>();
                assert_eq!(
                    outside, 0.0,
                    "{kind}: rows attend only within their sentence"
                );
                if let (Some(h), Some(ah)) = (&step.heads, &a.heads) {
                    assert_eq!(h.cross[0][0].len(), out.source_tokens.len());
                    assert_eq!(&h.cross[0][0][span.source.clone()], &ah.cross[0][0][..]);
                    assert_eq!(h.self_attention[0][0].len(), step_at + i + 1);
                    assert_eq!(
                        &h.self_attention[0][0][step_at..],
                        &ah.self_attention[0][0][..]
                    );
                }
            }
            source_at = span.source.end;
            step_at = span.target.end;
        }
        assert_eq!(source_at, out.source_tokens.len());
        assert_eq!(step_at, out.steps.len());
        let joined: Vec<String> = out
            .sentences
            .iter()
            .map(|s| s.translation.clone())
            .collect();
        assert_eq!(out.translation, joined.join(" ").trim());
        if let Some(enc) = &out.encoder_attention {
            let n = out.source_tokens.len();
            assert_eq!((enc[0][0].len(), enc[0][0][0].len()), (n, n));
            let first = &out.sentences[0].source;
            let last = out.sentences[2].source.start;
            assert_eq!(enc[0][0][first.start][last], 0.0, "{kind}: block diagonal");
        }
        // Whole: one sequence, as the plain translate does.
        let whole = t.text_source(TEXT, Segmentation::Whole).unwrap();
        assert_eq!(whole.sentences.len(), 1);
        let w = t
            .decode(&t.plan(whole, o.clone()).unwrap(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(w, single(&t, TEXT, &o), "{kind}");
        // The batch path segments the same way.
        let batch = t
            .translate_batch_text(&[TEXT.to_string()], 8, Segmentation::Sentences)
            .unwrap();
        let alone: Vec<String> = PARTS
            .iter()
            .map(|p| t.translate_batch(&[p.to_string()], 1).unwrap().remove(0))
            .collect();
        assert_eq!(batch[0], alone.join(" ").trim(), "{kind}");
    }
}

#[test]
fn one_sentence_decodes_exactly_as_before() {
    let t = tiny("additive");
    let o = opts(7);
    let (out, _) = segmented(&t, "I am cold.", &o);
    let mut alone = single(&t, "I am cold.", &o);
    alone.sentences[0].text = "I am cold.".into();
    assert_eq!(out, alone);
    assert!(out.steps.iter().all(|s| s.sentence == 0));
}

#[test]
fn beam_forced_prefix_and_interventions_carry_over() {
    let t = tiny("general");
    // Beam: the best combined hypothesis is the translation.
    let beam = DecodeOptions { beam: 3, ..opts(5) };
    let (out, _) = segmented(&t, TEXT, &beam);
    assert!(!out.hypotheses.is_empty());
    assert_eq!(out.hypotheses[0].translation, out.translation);
    assert_eq!(out.hypotheses[0].steps.len(), out.steps.len());
    // Forced target: one sentence each.
    let forced = DecodeOptions {
        force_target: Some("J'ai froid. Où est le chat ? Il est tard.".into()),
        ..DecodeOptions::default()
    };
    let (f, _) = segmented(&t, TEXT, &forced);
    assert!(f.steps.iter().all(|s| s.forced));
    for (span, want) in f.sentences.iter().zip(["J'ai froid.", "Où est le chat ?"]) {
        let alone = single(
            &t,
            &span.text,
            &DecodeOptions {
                force_target: Some(want.into()),
                ..DecodeOptions::default()
            },
        );
        assert_eq!(f.steps[span.target.clone()].len(), alone.steps.len());
    }
    let src = t.text_source(TEXT, Segmentation::Sentences).unwrap();
    let wrong = DecodeOptions {
        force_target: Some("J'ai froid.".into()),
        ..DecodeOptions::default()
    };
    assert!(
        matches!(t.plan(src.clone(), wrong), Err(Error::Invalid(m)) if m.contains("one translation per sentence"))
    );
    // A prefix of one sentence forces the start of the first only.
    let prefix = DecodeOptions {
        target_prefix: Some("Je".into()),
        ..opts(5)
    };
    let (p, _) = segmented(&t, TEXT, &prefix);
    assert!(p.steps[0].forced);
    assert!(
        p.steps[p.sentences[1].target.clone()]
            .iter()
            .all(|s| !s.forced)
    );
    // An intervention applies in the sentence of its source position.
    let plain = segmented(&t, TEXT, &opts(5)).0;
    let second = &plain.sentences[1];
    let iv = Intervention {
        step: second.target.start,
        source: second.source.start + 1,
    };
    let o = DecodeOptions {
        interventions: vec![iv],
        ..opts(5)
    };
    let (i, _) = segmented(&t, TEXT, &o);
    let hit = &i.steps[second.target.start];
    assert!(hit.intervened && hit.sentence == 1);
    assert_eq!(hit.attention[iv.source], 1.0);
    assert_eq!(i.steps.iter().filter(|s| s.intervened).count(), 1);
    let out_of_range = DecodeOptions {
        interventions: vec![Intervention {
            step: 0,
            source: src.len(),
        }],
        ..opts(5)
    };
    assert!(t.plan(src, out_of_range).is_err());
}

#[test]
fn stopping_ends_the_whole_text() {
    let t = tiny("additive");
    let src = t.text_source(TEXT, Segmentation::Sentences).unwrap();
    let plan = t.plan(src, opts(4)).unwrap();
    let mut n = 0;
    let out = t
        .decode(&plan, |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(out.stopped);
    assert_eq!(out.steps.len(), 2);
}

#[test]
fn empty_and_blank_inputs_are_rejected() {
    let t = tiny("additive");
    for text in ["", "   ", "\n\n"] {
        assert!(matches!(
            t.text_source(text, Segmentation::Sentences),
            Err(Error::EmptyInput)
        ));
    }
}
