//! Alignment methods on built examples: shifted rows, method specs, final punctuation,
//! grow-diag, the distortion prior, gold sentences written as text, pieces grouped into
//! words, and the matrices of a forced decoding of tiny random models.

use super::*;
use crate::explain::Method;
use crate::fixtures::{KINDS, tiny_translator_of};
use crate::{DecodeOptions, ExplainOptions};

fn links(pairs: &[(usize, usize)]) -> Links {
    pairs.iter().copied().collect()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[test]
fn shift_gives_each_target_piece_the_row_of_the_step_it_feeds() {
    let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]];
    assert_eq!(
        shifted(&rows),
        vec![vec![0.0, 1.0], vec![0.5, 0.5], vec![0.5, 0.5]]
    );
    // Through the matrices of a decoding: the shifted source reads the next step's row.
    let (t, _) = tiny_translator_of("additive", 3).unwrap();
    let out = t
        .translate("I am cold.", &DecodeOptions::default(), |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let n = t
        .text_source("I am cold.", crate::Segmentation::Whole)
        .unwrap()
        .len();
    let m = PieceMatrices::new(&out.steps, 0..n, None, Vec::new()).unwrap();
    let plain = m.matrix(AlignSource::streamed(1)).unwrap();
    let shift = m
        .matrix(AlignSource::Attention {
            layer: Some(0),
            head: None,
            norm: false,
            shift: true,
        })
        .unwrap();
    for i in 0..plain.len() - 1 {
        assert_eq!(shift[i], plain[i + 1]);
    }
}

#[test]
fn method_specs_read_back_and_bad_ones_are_refused() {
    for spec in [
        "attention/L1/Hmean+argmax+s2t",
        "attention/Lmean/H3/norm/shift+threshold=0.3+grow-diag-final+punct",
        "attention/L2/Hmean/norm+distortion=0.5+grow-diag",
        "erasure+argmax+intersection",
        "agreement/erasure+threshold=0.2+grow-diag+punct",
    ] {
        let m: AlignMethod = spec.parse().unwrap();
        assert_eq!(m.to_string(), spec);
    }
    for bad in [
        "attention/L0/Hmean+argmax+s2t",
        "attention/L1+argmax+s2t",
        "attention/L1/Hmean/loud+argmax+s2t",
        "attention/L1/Hmean+argmax",
        "attention/L1/Hmean+argmax+s2t+comma",
        "attention/L1/Hmean+threshold=x+s2t",
        "saliency+argmax+s2t",
        "agreement/saliency+argmax+s2t",
        "agreement/attention/L1/Hmean+argmax+s2t",
    ] {
        assert!(bad.parse::<AlignMethod>().is_err(), "{bad} was accepted");
    }
    let m: AlignMethod = "attention/L2/H1/shift+argmax+union".parse().unwrap();
    assert_eq!(m.label(3, 4), "layer 2, head 1, shifted; argmax; union");
    assert_eq!(AlignSource::streamed(1).label(1, 1), "attention");
    let m: AlignMethod = "agreement/gradient_x_input+argmax+s2t".parse().unwrap();
    assert_eq!(m.label(3, 4), "attention × gradient × input; argmax; s2t");
}

#[test]
fn final_punctuation_is_paired_and_taken_out_of_the_matrix() {
    // Every target word looks mostly at the final full stop (a sink).
    let m = vec![
        vec![0.4, 0.1, 0.5],
        vec![0.1, 0.3, 0.6],
        vec![0.0, 0.1, 0.9],
    ];
    let (src, tgt) = (words("a b ."), words("x y ."));
    let mut method = AlignMethod {
        source: AlignSource::streamed(1),
        extraction: Extraction::Argmax,
        symmetrization: Symmetrization::T2s,
        final_punctuation: false,
    };
    assert_eq!(
        method.align(&m, &src, &tgt),
        links(&[(2, 0), (2, 1), (2, 2)])
    );
    method.final_punctuation = true;
    assert_eq!(
        method.align(&m, &src, &tgt),
        links(&[(0, 0), (1, 1), (2, 2)])
    );
    // Without punctuation at both ends, nothing changes.
    let plain = method.align(&m, &words("a b c"), &tgt);
    assert_eq!(plain, links(&[(2, 0), (2, 1), (2, 2)]));
    assert!(
        is_punctuation("...")
            && is_punctuation("»")
            && !is_punctuation("a.")
            && !is_punctuation("")
    );
}

#[test]
fn grow_diag_adds_neighbours_of_the_intersection_only() {
    let d = Directions {
        s2t: links(&[(0, 0), (1, 1), (3, 3)]),
        t2s: links(&[(0, 0), (1, 0), (2, 3)]),
    };
    // Intersection {(0,0)}; (1,1) and (1,0) neighbour it and cover a new word; (3,3) and
    // (2,3) do not neighbour anything, so only FINAL adds them.
    assert_eq!(
        symmetrize(&d, Symmetrization::GrowDiag),
        links(&[(0, 0), (1, 0), (1, 1)])
    );
    let gdf = symmetrize(&d, Symmetrization::GrowDiagFinal);
    assert!(gdf.contains(&(2, 3)) && gdf.contains(&(3, 3)));
    assert_eq!(
        "grow-diag".parse::<Symmetrization>().unwrap(),
        Symmetrization::GrowDiag
    );
}

#[test]
fn the_distortion_prior_breaks_near_ties_towards_the_diagonal() {
    let m = vec![vec![0.50, 0.49], vec![0.50, 0.49]];
    assert_eq!(
        directions(&m, Extraction::Argmax).t2s,
        links(&[(0, 0), (0, 1)])
    );
    assert_eq!(
        directions(&m, Extraction::Distortion(0.5)).t2s,
        links(&[(0, 0), (1, 1)])
    );
    assert_eq!(
        Extraction::from_spec("distortion=0.5").unwrap(),
        Extraction::Distortion(0.5)
    );
    assert!(Extraction::from_spec("distortion").is_err());
}

#[test]
fn gold_french_is_written_as_text_and_links_map_back() {
    let gold = words("ce ne est pas à le heure de le comité , mais de les autres de le an .");
    let s = surface(&gold, "fr");
    assert_eq!(
        s.words,
        words("Ce n'est pas à l'heure du comité , mais des autres de l'an .")
    );
    assert_eq!(s.gold[1], vec![1, 2]); // n'est = ne est
    assert_eq!(s.gold[5], vec![7, 8]); // du = de le
    assert_eq!(s.gold[12], vec![16, 17]); // l'an = le an
    let de = surface(&words("daß er muß"), "de");
    assert_eq!(de.words, words("Dass er muss"));
    assert_eq!(
        surface(&words("aujourd' hui"), "fr").words,
        words("Aujourd'hui")
    );
    // A written link stands for every pair of the gold words behind it.
    let en = Surface::verbatim(&words("of the"));
    let fr = surface(&words("de le"), "fr");
    assert_eq!(fr.words, words("Du"));
    assert_eq!(
        expand(&links(&[(0, 0)]), &en, &fr),
        links(&[(0, 0), (0, 1)])
    );
}

#[test]
fn pieces_group_into_words_at_markers_and_punctuation() {
    let pieces: Vec<String> = ["▁The", "▁ma", "n", ".", "</s>", "▁l", "'", "homme", "</s>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (owners, spans, text) = piece_words(&pieces);
    assert_eq!(
        owners,
        vec![
            Some(0),
            Some(1),
            Some(1),
            Some(2),
            None,
            Some(3),
            Some(4),
            Some(5),
            None
        ]
    );
    assert_eq!(spans, vec![0..1, 1..3, 3..4, 5..6, 6..7, 7..8]);
    assert_eq!(text, words("The man . l ' homme"));
}

#[test]
fn every_source_of_a_forced_decoding_gives_a_matrix_of_its_shape() {
    let gold = GoldSentence {
        id: "1".into(),
        source: words("I am cold ."),
        target: words("J'ai froid ."),
        sure: links(&[(0, 0), (2, 1), (3, 2)]),
        possible: links(&[(0, 0), (1, 0), (2, 1), (3, 2)]),
    };
    for kind in KINDS {
        let (t, _) = tiny_translator_of(kind, 5).unwrap();
        let (layers, heads) = attention_shape(&t);
        let explain = ExplainOptions {
            methods: vec![Method::GradientXInput],
            ..ExplainOptions::default()
        };
        let pair = forced_matrices(&t, &gold.source, &gold.target, &gold.id, &explain).unwrap();
        let sources = AlignSource::attention_sources(layers, heads);
        assert_eq!(sources.len(), if kind == "transformer" { 28 } else { 4 });
        for source in sources
            .into_iter()
            .chain([AlignSource::Attribution(Method::GradientXInput)])
        {
            let m = pair
                .words(source, 4, 3)
                .unwrap()
                .unwrap_or_else(|| panic!("{kind}: no {source}"));
            assert_eq!(m.len(), 3, "{kind} {source}");
            assert!(
                m.iter()
                    .all(|r| r.len() == 4 && r.iter().all(|v| v.is_finite() && *v >= 0.0))
            );
        }
        // Agreement: the attention of every layer and head times the attribution, each
        // row renormalised.
        let agree = pair
            .matrices
            .matrix(AlignSource::Agreement(Method::GradientXInput))
            .unwrap();
        let att = pair
            .matrices
            .matrix(AlignSource::Attention {
                layer: None,
                head: None,
                norm: false,
                shift: false,
            })
            .unwrap();
        let attr = pair
            .matrices
            .matrix(AlignSource::Attribution(Method::GradientXInput))
            .unwrap();
        for ((g, a), b) in agree.iter().zip(&att).zip(&attr) {
            let total: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!((g.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{kind}");
            for ((gv, av), bv) in g.iter().zip(a).zip(b) {
                assert!((gv - av * bv / total).abs() < 1e-5, "{kind}");
            }
        }
        // A layer the model lacks and an attribution not computed give nothing.
        let missing = AlignSource::Attention {
            layer: Some(7),
            head: None,
            norm: false,
            shift: false,
        };
        assert!(pair.words(missing, 4, 3).unwrap().is_none());
        assert!(
            pair.words(AlignSource::Attribution(Method::Erasure), 4, 3)
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn a_layer_of_one_head_norm_weighted_is_the_weights_times_the_value_norms() {
    let (t, _) = tiny_translator_of("transformer", 9).unwrap();
    let src = t
        .text_source("I am here.", crate::Segmentation::Whole)
        .unwrap();
    let ids = src.sentences[0].ids.clone();
    let values = t.attention_values(&ids).unwrap();
    let out = t
        .decode(&t.plan(src, DecodeOptions::default()).unwrap(), |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let m = PieceMatrices::new(&out.steps, 0..ids.len(), Some(&values), Vec::new()).unwrap();
    let norms = values.norms().unwrap();
    let weights = m
        .matrix(AlignSource::Attention {
            layer: Some(1),
            head: Some(0),
            norm: false,
            shift: false,
        })
        .unwrap();
    let weighted = m
        .matrix(AlignSource::Attention {
            layer: Some(1),
            head: Some(0),
            norm: true,
            shift: false,
        })
        .unwrap();
    for (w, n) in weights.iter().zip(&weighted) {
        for j in 0..w.len() {
            assert!((w[j] * norms[1][0][j] - n[j]).abs() < 1e-5);
        }
    }
    // A layer's heads together: ‖Σ_h α_h v_h‖ ≤ Σ_h α_h ‖v_h‖ (the triangle inequality).
    let mixed = m
        .matrix(AlignSource::Attention {
            layer: Some(1),
            head: None,
            norm: true,
            shift: false,
        })
        .unwrap();
    let h1 = m
        .matrix(AlignSource::Attention {
            layer: Some(1),
            head: Some(1),
            norm: true,
            shift: false,
        })
        .unwrap();
    for t in 0..mixed.len() {
        for j in 0..mixed[t].len() {
            assert!(mixed[t][j] <= weighted[t][j] + h1[t][j] + 1e-5);
        }
    }
}

#[test]
fn a_translation_aligns_within_its_sentences() {
    for kind in ["additive", "transformer"] {
        let (t, _) = tiny_translator_of(kind, 4).unwrap();
        let src = t
            .text_source("I am cold. You are here.", crate::Segmentation::Sentences)
            .unwrap();
        let plan = t.plan(src, DecodeOptions::default()).unwrap();
        let out = t
            .decode(&plan, |_| std::ops::ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(out.sentences.len(), 2);
        for spec in [
            "attention/L1/Hmean+argmax+grow-diag-final+punct",
            "attention/Lmean/Hmean/norm/shift+threshold=0.3+union",
        ] {
            let method: AlignMethod = spec.parse().unwrap();
            let links = align_translation(&t, &plan, &out, &method).unwrap();
            assert!(!links.is_empty(), "{kind} {spec}");
            for l in &links {
                let within = out.sentences.iter().any(|s| {
                    s.source.start <= l.source.start
                        && l.source.end <= s.source.end
                        && s.target.start <= l.target.start
                        && l.target.end <= s.target.end
                });
                assert!(within, "{kind} {spec}: {l:?} crosses sentences");
                assert!(l.source.start < l.source.end && l.target.start < l.target.end);
            }
        }
    }
}

#[test]
fn evaluate_reads_each_run_of_merges_once_and_scores_as_align_would() {
    let gold = |id: &str, s: &str, t: &str| GoldSentence {
        id: id.into(),
        source: words(s),
        target: words(t),
        sure: links(&[(0, 0), (2, 1)]),
        possible: links(&[(0, 0), (1, 0), (2, 1), (3, 2)]),
    };
    let set = GoldSet {
        name: "toy",
        source_lang: "en",
        target_lang: "fr",
        sentences: vec![gold("2", "We are cold !", "Nous avons froid !")],
        trial: vec![gold("1", "I am cold .", "J'ai froid .")],
        trial_note: "the toy trial",
    };
    let (t, _) = tiny_translator_of("transformer", 6).unwrap();
    let opts = AlignOptions {
        as_written: false,
        ..AlignOptions::default()
    };
    let e = evaluate(&t, &set, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(e.methods.len(), methods(2, 2, &[], &THRESHOLDS).len());
    // Each method's counts, recomputed one method at a time with `align`.
    let pair = |g: &GoldSentence| {
        forced_matrices(&t, &g.source, &g.target, &g.id, &ExplainOptions::default()).unwrap()
    };
    let (trial, test) = (pair(&set.trial[0]), pair(&set.sentences[0]));
    for scored in &e.methods {
        let m = scored.method;
        let count = |p: &ForcedPair, g: &GoldSentence| {
            let w = p
                .words(m.source, g.source.len(), g.target.len())
                .unwrap()
                .unwrap();
            let mut c = AlignmentCounts::default();
            c.add(&m.align(&w, &g.source, &g.target), g);
            c.scores()
        };
        assert_eq!(count(&trial, &set.trial[0]).aer, scored.trial.aer, "{m}");
        assert_eq!(count(&test, &set.sentences[0]).aer, scored.test.aer, "{m}");
    }
    // Best trial AER first, and the chosen method is read from attention.
    assert!(
        e.methods
            .windows(2)
            .all(|w| w[0].trial.aer <= w[1].trial.aer)
    );
    assert!(e.chosen().unwrap().method.source.from_attention());
}
