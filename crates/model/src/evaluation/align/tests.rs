//! Gold parsing, extraction, symmetrisation and scoring on hand-made sentences.

use std::path::Path;

use super::*;
use crate::Error;

fn links(pairs: &[(usize, usize)]) -> Links {
    pairs.iter().copied().collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn toy_gold(sure: &[(usize, usize)], possible_only: &[(usize, usize)]) -> GoldSentence {
    let sure = links(sure);
    let possible = sure.union(&links(possible_only)).copied().collect();
    GoldSentence {
        id: "0001".into(),
        source: vec!["a".into(); 3],
        target: vec!["b".into(); 3],
        sure,
        possible,
    }
}

#[test]
fn scores_a_toy_corpus_by_hand() {
    // Sentence 1: |A| = 3, |S| = 2, |A∩S| = 1 ((0,0)), |A∩P| = 2 ((0,0), (1,2)).
    let g1 = toy_gold(&[(0, 0), (1, 1)], &[(1, 2)]);
    let a1 = links(&[(0, 0), (1, 2), (2, 2)]);
    // Sentence 2: |A| = 2, |S| = 1, |A∩S| = 1, |A∩P| = 2.
    let g2 = toy_gold(&[(0, 0)], &[(0, 1), (1, 1)]);
    let a2 = links(&[(0, 0), (1, 1)]);
    let scores = score_corpus(&[g1, g2], &[a1, a2]).unwrap();
    assert_eq!(
        scores.counts,
        AlignmentCounts {
            sentences: 2,
            hyp: 5,
            sure: 3,
            hyp_sure: 2,
            hyp_possible: 4
        }
    );
    assert!(close(scores.precision, 4.0 / 5.0));
    assert!(close(scores.recall, 2.0 / 3.0));
    // Corpus level: 1 - (2 + 4) / (5 + 3) = 0.25, not the mean of the per-sentence AERs
    // (0.4 and 0).
    assert!(close(scores.aer, 0.25));

    let empty = AlignmentCounts::default().scores();
    assert_eq!((empty.precision, empty.recall, empty.aer), (0.0, 0.0, 1.0));
    assert!(score_corpus(&[], &[Links::new()]).is_err());
}

#[test]
fn sure_links_count_as_possible() {
    let mut c = AlignmentCounts::default();
    c.add_links(&links(&[(0, 0)]), &links(&[(0, 0)]), &Links::new());
    let s = c.scores();
    assert_eq!((s.precision, s.recall, s.aer), (1.0, 1.0, 0.0));
}

#[test]
fn maps_pieces_to_words() {
    assert_eq!(
        piece_owners(&[2, 1], true),
        vec![Some(0), Some(0), Some(1), None]
    );
    assert_eq!(
        piece_owners(&[1, 0, 2], false),
        vec![Some(0), Some(2), Some(2)]
    );
    assert!(piece_owners(&[], true) == vec![None]);
}

#[test]
fn merges_pieces_into_words() {
    // Source: word 0 = pieces 0-1, word 1 = piece 2, </s> = piece 3.
    // Target: word 0 = piece 0, word 1 = pieces 1-2, </s> = piece 3.
    let src = piece_owners(&[2, 1], true);
    let tgt = piece_owners(&[1, 2], true);
    let attn = vec![
        vec![0.1, 0.2, 0.3, 0.4],
        vec![0.5, 0.1, 0.2, 0.2],
        vec![0.3, 0.1, 0.4, 0.2],
        vec![0.0, 0.0, 0.0, 1.0],
    ];
    let m = word_matrix(&attn, &src, &tgt, 2, 2).unwrap();
    // Row 0: [0.1 + 0.2, 0.3]; row 1: mean of [0.6, 0.2] and [0.4, 0.4]. The </s>
    // column and row are gone.
    let want = [[0.3, 0.3], [0.5, 0.3]];
    assert_eq!(m.len(), 2);
    for (row, want) in m.iter().zip(want) {
        assert_eq!(row.len(), 2);
        for (&x, w) in row.iter().zip(want) {
            assert!((x - w).abs() < 1e-6, "{m:?}");
        }
    }

    // A target word with no pieces gets zeros, and no argmax link.
    let m = word_matrix(&attn[..1], &src, &piece_owners(&[1, 0], false), 2, 2).unwrap();
    assert_eq!(m[1], vec![0.0, 0.0]);
    assert_eq!(directions(&m, Extraction::Argmax).t2s, links(&[(0, 0)]));

    // Shape mismatches are errors.
    assert!(word_matrix(&attn[..3], &src, &tgt, 2, 2).is_err());
    assert!(word_matrix(&attn, &src[..3], &tgt, 2, 2).is_err());
    assert!(word_matrix(&attn, &src, &tgt, 1, 2).is_err());
    assert!(word_matrix(&attn, &src, &tgt, 2, 1).is_err());
}

/// Rows are target words, columns source words.
fn matrix() -> Vec<Vec<f32>> {
    vec![
        vec![0.6, 0.3, 0.05, 0.05],
        vec![0.5, 0.4, 0.05, 0.05],
        vec![0.05, 0.1, 0.45, 0.4],
        vec![0.05, 0.05, 0.2, 0.7],
    ]
}

#[test]
fn argmax_in_both_directions() {
    let d = directions(&matrix(), Extraction::Argmax);
    // Rows: t0 -> s0, t1 -> s0, t2 -> s2, t3 -> s3.
    assert_eq!(d.t2s, links(&[(0, 0), (0, 1), (2, 2), (3, 3)]));
    // Columns: s0 -> t0 (0.6), s1 -> t1 (0.4), s2 -> t2 (0.45), s3 -> t3 (0.7).
    assert_eq!(d.s2t, links(&[(0, 0), (1, 1), (2, 2), (3, 3)]));
    let sym = |how| symmetrize(&d, how);
    assert_eq!(
        sym(Symmetrization::Intersection),
        links(&[(0, 0), (2, 2), (3, 3)])
    );
    let all = links(&[(0, 0), (0, 1), (1, 1), (2, 2), (3, 3)]);
    assert_eq!(sym(Symmetrization::Union), all);
    // (0,1) neighbours (0,0) and target 1 is unaligned; then (1,1) neighbours both.
    assert_eq!(sym(Symmetrization::GrowDiagFinal), all);
    assert_eq!(sym(Symmetrization::S2t), d.s2t);
    assert_eq!(sym(Symmetrization::T2s), d.t2s);
    assert_eq!(
        align(&matrix(), Extraction::Argmax, Symmetrization::Intersection),
        sym(Symmetrization::Intersection)
    );
}

#[test]
fn thresholds_normalise_rows_and_columns() {
    let d = directions(&matrix(), Extraction::Threshold(0.28));
    // Rows sum to 1: cells >= 0.28.
    assert_eq!(
        d.t2s,
        links(&[(0, 0), (1, 0), (0, 1), (1, 1), (2, 2), (3, 2), (3, 3)])
    );
    // Column sums: 1.2, 0.85, 0.75, 1.2. s0: 0.6/1.2, 0.5/1.2 >= 0.28; s1: 0.3/0.85,
    // 0.4/0.85; s2: 0.45/0.75 (0.2/0.75 < 0.28); s3: 0.4/1.2, 0.7/1.2.
    assert_eq!(
        d.s2t,
        links(&[(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (3, 2), (3, 3)])
    );
    assert!(directions(&[vec![0.0, 0.0]], Extraction::Threshold(0.1)) == Directions::default());
}

#[test]
fn symmetrizes_with_known_answers() {
    let d = Directions {
        s2t: links(&[(0, 0), (1, 1), (2, 3), (3, 3), (4, 0), (6, 6)]),
        t2s: links(&[(0, 0), (2, 2), (3, 3), (6, 7), (7, 6)]),
    };
    let sym = |how| symmetrize(&d, how);
    assert_eq!(sym(Symmetrization::Intersection), links(&[(0, 0), (3, 3)]));
    assert_eq!(
        sym(Symmetrization::Union),
        links(&[
            (0, 0),
            (1, 1),
            (2, 2),
            (2, 3),
            (3, 3),
            (4, 0),
            (6, 6),
            (6, 7),
            (7, 6)
        ])
    );
    // Grow: (1,1) touches (0,0) diagonally, then (2,2) touches (1,1); (2,3) is refused
    // (source 2 and target 3 are both aligned by then); (4,0), (6,6), (6,7) and (7,6)
    // touch nothing in A. Final(t2s) adds (6,7) and (7,6); final(s2t) adds (4,0) (source
    // 4 unaligned) and refuses (6,6) (source 6 and target 6 now aligned).
    assert_eq!(
        sym(Symmetrization::GrowDiagFinal),
        links(&[(0, 0), (1, 1), (2, 2), (3, 3), (4, 0), (6, 7), (7, 6)])
    );
}

#[test]
fn names_round_trip() {
    for m in Symmetrization::ALL {
        assert_eq!(m.name().parse::<Symmetrization>().unwrap(), m);
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
    }
    assert!("gdfa".parse::<Symmetrization>().is_err());
}

#[test]
fn baselines() {
    assert_eq!(diagonal(3, 2), links(&[(0, 0), (1, 1)]));
    assert_eq!(
        scaled_diagonal(2, 4),
        links(&[(0, 0), (0, 1), (1, 2), (1, 3)])
    );
    assert_eq!(scaled_diagonal(4, 2), links(&[(1, 0), (3, 1)]));
    assert!(scaled_diagonal(0, 3).is_empty());
}

fn write_fixture(dir: &Path, links_file: &str) {
    std::fs::write(
        dir.join(GOLD_SOURCE_FILE),
        "<s snum=0001> the house .  </s>\n<s snum=0002> yes  </s>\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(GOLD_TARGET_FILE),
        "<s snum=0001> la chambre .  </s>\n<s snum=0002> oui  </s>\n",
    )
    .unwrap();
    std::fs::write(dir.join(GOLD_LINKS_FILE), links_file).unwrap();
}

#[test]
fn loads_a_gold_fixture() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(
        dir.path(),
        "0001 1 1 P\n0001 2 2 S\n0001 3 3 S\n\n0002 1 1 S\n",
    );
    let gold = load_gold(dir.path()).unwrap();
    assert_eq!(gold.len(), 2);
    assert_eq!(gold[0].id, "0001");
    assert_eq!(gold[0].source, vec!["the", "house", "."]);
    assert_eq!(gold[0].target, vec!["la", "chambre", "."]);
    assert_eq!(gold[0].sure, links(&[(1, 1), (2, 2)]));
    assert_eq!(gold[0].possible, links(&[(0, 0), (1, 1), (2, 2)]));
    assert_eq!(gold[1].sure, links(&[(0, 0)]));

    let err = |links_file: &str| {
        write_fixture(dir.path(), links_file);
        load_gold(dir.path()).unwrap_err().to_string()
    };
    let e = err("0001 1 1 S\n0001 2 S\n");
    assert!(e.contains(GOLD_LINKS_FILE) && e.contains("line 2"), "{e}");
    let e = err("0001 1 1 S\n0001 4 1 S\n");
    assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
    let e = err("0002 1 2 S\n");
    assert!(e.contains("line 1") && e.contains("out of range"), "{e}");
    let e = err("0001 0 1 S\n");
    assert!(e.contains("NULL"), "{e}");
    let e = err("0003 1 1 S\n");
    assert!(e.contains("not in"), "{e}");
    let e = err("0001 1 1 X\n");
    assert!(e.contains("label"), "{e}");

    write_fixture(dir.path(), "");
    std::fs::write(
        dir.path().join(GOLD_TARGET_FILE),
        "<s snum=0001> la chambre .  </s>\noui\n",
    )
    .unwrap();
    let e = load_gold(dir.path()).unwrap_err().to_string();
    assert!(e.contains(GOLD_TARGET_FILE) && e.contains("line 2"), "{e}");
    std::fs::remove_file(dir.path().join(GOLD_TARGET_FILE)).unwrap();
    assert!(matches!(load_gold(dir.path()), Err(Error::Io { .. })));
}

#[test]
fn loads_the_real_hansards_gold() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/align-gold-en-fr-hansards-naacl2003");
    if !dir.join(GOLD_LINKS_FILE).exists() {
        return;
    }
    let gold = load_gold(&dir).unwrap();
    assert_eq!(gold.len(), 447);
    assert_eq!(gold[0].id, "0001");
    let sure: usize = gold.iter().map(|g| g.sure.len()).sum();
    let possible: usize = gold.iter().map(|g| g.possible.len()).sum();
    assert_eq!((sure, possible), (4038, 4038 + 13400));
    assert!(gold.iter().all(|g| g.sure.is_subset(&g.possible)));

    let hyps: Vec<Links> = gold.iter().map(|g| g.sure.clone()).collect();
    let s = score_corpus(&gold, &hyps).unwrap();
    assert_eq!((s.aer, s.recall, s.precision), (0.0, 1.0, 1.0));

    // Trivial baselines, for reference (cargo test ... -- --nocapture shows them).
    type Baseline = fn(usize, usize) -> Links;
    let baselines: [(&str, Baseline); 2] =
        [("diagonal", diagonal), ("scaled diagonal", scaled_diagonal)];
    for (name, baseline) in baselines {
        let hyps: Vec<Links> = gold
            .iter()
            .map(|g| baseline(g.source.len(), g.target.len()))
            .collect();
        let s = score_corpus(&gold, &hyps).unwrap();
        eprintln!(
            "{name}: precision {:.4} recall {:.4} AER {:.4} ({} links)",
            s.precision, s.recall, s.aer, s.counts.hyp
        );
        assert!(s.aer > 0.0 && s.aer < 1.0);
    }
}

#[test]
fn rwth_links_are_read_german_first_and_turned_to_english_to_german() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(RWTH_ENGLISH_FILE), "We are cold .\n\n").unwrap();
    std::fs::write(dir.path().join(RWTH_GERMAN_FILE), "Uns ist kalt .\n\n").unwrap();
    std::fs::write(dir.path().join(RWTH_LINKS_FILE), "1-1 2-2 3-3 2p1 4-4 \n\n").unwrap();
    let set = GoldSet::open(dir.path()).unwrap();
    assert_eq!((set.source_lang, set.target_lang), ("en", "de"));
    assert_eq!(set.sentences.len(), 1, "the blank last line is skipped");
    let g = &set.sentences[0];
    assert_eq!(g.source[0], "We");
    assert_eq!(g.target[0], "Uns");
    // `2p1`: German 2 (ist), English 1 (We), possible only; as (English, German) 0-based.
    assert!(g.possible.contains(&(0, 1)) && !g.sure.contains(&(0, 1)));
    assert!(g.sure.contains(&(2, 2)) && g.possible.contains(&(2, 2)));
    assert_eq!(g.sure.len(), 4);

    std::fs::write(dir.path().join(RWTH_LINKS_FILE), "1-9\n\n").unwrap();
    let err = load_rwth(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("line 1") && err.contains("English position 9"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = GoldSet::open(empty.path()).unwrap_err().to_string();
    assert!(
        err.contains("alignmentDeEn.talp") && err.contains("test.wa.nonullalign"),
        "{err}"
    );
}
