//! How a model holds up past short single sentences: BLEU by source length, on several test
//! sentences pasted together, and on another domain's test set.
//!
//! Every score is corpus BLEU and chrF of greedy decoding with the model's own attention,
//! BLEU against every reference the data gives (chrF against the first). Pasted inputs are
//! 3 or 4 test sentences joined by a space, their references joined the same way (the i-th
//! reference of the join takes each part's i-th translation, or its last), decoded both
//! sentence by sentence ([`Segmentation::Sentences`], as the app does) and as one sequence.

use crate::report::SetScore;

use crate::decoding::source::Segmentation;
use crate::evaluation::TestItem;
use crate::evaluation::metrics::{corpus_bleu_multi, corpus_chrf};
use crate::{Result, Translator};

/// Source length buckets, in words (white-space separated), inclusive.
pub const LENGTH_BUCKETS: [(usize, usize); 4] = [(1, 5), (6, 10), (11, 20), (21, 40)];
/// Sentences at least this long make the "long sentences" slice.
pub const LONG_WORDS: usize = 12;

/// The number of words of a source sentence.
pub fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// `count` inputs of 3 or 4 distinct items of `test` joined by a space, drawn with `seed`.
pub fn pasted(test: &[TestItem], count: usize, seed: u64) -> Vec<TestItem> {
    use rand::seq::index::sample;
    use rand::{Rng, SeedableRng};
    if test.len() < 4 {
        return Vec::new();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7061_7374);
    (0..count)
        .map(|_| {
            let k = rng.random_range(3..=4usize);
            let parts: Vec<&TestItem> = sample(&mut rng, test.len(), k)
                .iter()
                .map(|i| &test[i])
                .collect();
            let width = parts.iter().map(|p| p.refs.len()).max().unwrap_or(1);
            let refs = (0..width)
                .map(|r| {
                    parts
                        .iter()
                        .map(|p| p.refs[r.min(p.refs.len() - 1)].as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            TestItem {
                src: parts
                    .iter()
                    .map(|p| p.src.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                refs,
            }
        })
        .collect()
}

/// BLEU and chrF of hypotheses against items, as a [`SetScore`].
pub fn score(
    set: &str,
    slice: &str,
    segmented: bool,
    items: &[TestItem],
    hyps: &[String],
) -> SetScore {
    let refs: Vec<Vec<String>> = items.iter().map(|t| t.refs.clone()).collect();
    let first: Vec<String> = items.iter().map(|t| t.refs[0].clone()).collect();
    SetScore {
        set: set.into(),
        slice: slice.into(),
        segmented,
        sentences: items.len(),
        references: refs.iter().map(Vec::len).max().unwrap_or(0),
        bleu: corpus_bleu_multi(hyps, &refs),
        chrf: corpus_chrf(hyps, &first),
    }
}

/// Scores of `hyps` (translations of `items`) on the whole set, by source length, and on
/// the sentences of [`LONG_WORDS`] words or more.
pub fn by_length(set: &str, segmented: bool, items: &[TestItem], hyps: &[String]) -> Vec<SetScore> {
    let mut out = vec![score(set, "all", segmented, items, hyps)];
    let slices = LENGTH_BUCKETS
        .iter()
        .map(|&(lo, hi)| (format!("{lo}-{hi} words"), lo, hi))
        .chain(std::iter::once((
            format!("{LONG_WORDS}+ words"),
            LONG_WORDS,
            usize::MAX,
        )));
    for (name, lo, hi) in slices {
        let (its, hs): (Vec<TestItem>, Vec<String>) = items
            .iter()
            .zip(hyps)
            .filter(|(t, _)| (lo..=hi).contains(&words(&t.src)))
            .map(|(t, h)| (t.clone(), h.clone()))
            .unzip();
        if !its.is_empty() {
            out.push(score(set, &name, segmented, &its, &hs));
        }
    }
    out
}

/// Greedy translations of the items' sources (batched).
pub fn translate(
    t: &Translator,
    items: &[TestItem],
    segmentation: Segmentation,
) -> Result<Vec<String>> {
    let srcs: Vec<String> = items.iter().map(|i| i.src.clone()).collect();
    t.translate_batch_text(&srcs, 64, segmentation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(src: &str, refs: &[&str]) -> TestItem {
        TestItem {
            src: src.into(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn pasted_items_join_three_or_four_sources_and_their_references() {
        let test: Vec<TestItem> = (0..10)
            .map(|i| {
                let (a, b) = (format!("a{i}."), format!("b{i}."));
                item(&format!("s{i}."), &[a.as_str(), b.as_str()][..1 + i % 2])
            })
            .collect();
        let p = pasted(&test, 50, 1);
        assert_eq!(p.len(), 50);
        for it in &p {
            let parts: Vec<&str> = it.src.split(' ').collect();
            assert!((3..=4).contains(&parts.len()), "{it:?}");
            let mut seen = parts.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), parts.len(), "distinct sentences");
            for r in &it.refs {
                let rp: Vec<&str> = r.split(' ').collect();
                assert_eq!(rp.len(), parts.len());
                for (s, t) in parts.iter().zip(&rp) {
                    assert_eq!(
                        s[1..],
                        t[1..],
                        "each reference part translates its source part"
                    );
                }
            }
        }
        assert_eq!(p, pasted(&test, 50, 1));
        assert!(pasted(&test[..3], 5, 1).is_empty());
    }

    #[test]
    fn length_buckets_slice_the_set() {
        let items = vec![
            item("one two", &["un deux"]),
            item("a b c d e f g", &["x"]),
            item("a b c d e f g h i j k l", &["y"]),
        ];
        let hyps = vec!["un deux".to_string(), "x".into(), "z".into()];
        let rows = by_length("t", true, &items, &hyps);
        let slices: Vec<(&str, usize)> = rows
            .iter()
            .map(|r| (r.slice.as_str(), r.sentences))
            .collect();
        assert_eq!(
            slices,
            vec![
                ("all", 3),
                ("1-5 words", 1),
                ("6-10 words", 1),
                ("11-20 words", 1),
                ("12+ words", 1)
            ]
        );
        assert!(rows.iter().all(|r| r.segmented && r.set == "t"));
        assert_eq!(words("  a  b\tc "), 3);
    }
}
