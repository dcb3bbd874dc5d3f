//! Corpus BLEU and chrF computed as sacrebleu 2.x does by default (BLEU: 13a tokenisation,
//! 4-grams, exponential smoothing; chrF: character 6-grams, beta 2, whitespace ignored),
//! with one reference per sentence, or several for BLEU ([`corpus_bleu_multi`]: n-gram counts
//! clipped by their largest count in any reference, the reference length closest to the
//! hypothesis's, as sacrebleu scores several reference streams).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"([\{-~\[-` -&\(-\+:-@/])", " $1 "),
        (r"([^0-9])([\.,])", "$1 $2 "),
        (r"([\.,])([^0-9])", " $1 $2"),
        (r"([0-9])(-)", "$1 $2 "),
    ]
    .into_iter()
    .filter_map(|(re, rep)| Regex::new(re).ok().map(|r| (r, rep)))
    .collect()
});

/// sacrebleu's default `13a` tokenisation (mteval-v13a).
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in RULES.iter() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().map(str::to_string).collect()
}

fn ngrams<T: std::hash::Hash + Eq + Clone>(items: &[T], n: usize) -> HashMap<Vec<T>, usize> {
    let mut out = HashMap::new();
    if items.len() >= n {
        for w in items.windows(n) {
            *out.entry(w.to_vec()).or_insert(0) += 1;
        }
    }
    out
}

fn matches<T: std::hash::Hash + Eq>(
    hyp: &HashMap<T, usize>,
    reference: &HashMap<T, usize>,
) -> usize {
    hyp.iter()
        .map(|(g, &c)| c.min(reference.get(g).copied().unwrap_or(0)))
        .sum()
}

/// Corpus BLEU (0-100) of `hyps` against one reference each.
pub fn corpus_bleu(hyps: &[String], refs: &[String]) -> f64 {
    let refs: Vec<&[String]> = refs.iter().map(std::slice::from_ref).collect();
    bleu_of(hyps, &refs)
}

/// Corpus BLEU (0-100) of `hyps` against every reference of each (at least one each).
pub fn corpus_bleu_multi(hyps: &[String], refs: &[Vec<String>]) -> f64 {
    let refs: Vec<&[String]> = refs.iter().map(Vec::as_slice).collect();
    bleu_of(hyps, &refs)
}

fn bleu_of(hyps: &[String], refs: &[&[String]]) -> f64 {
    let (mut correct, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (h, rs) in hyps.iter().zip(refs) {
        let h = tokenize_13a(h);
        let rs: Vec<Vec<String>> = rs.iter().map(|r| tokenize_13a(r)).collect();
        sys_len += h.len();
        // The closest reference length, the shorter one on a tie.
        ref_len += rs
            .iter()
            .map(Vec::len)
            .min_by_key(|&l| (l.abs_diff(h.len()), l))
            .unwrap_or(0);
        for n in 1..=4 {
            let hg = ngrams(&h, n);
            let mut most: HashMap<Vec<String>, usize> = HashMap::new();
            for r in &rs {
                for (g, c) in ngrams(r, n) {
                    let m = most.entry(g).or_insert(0);
                    *m = (*m).max(c);
                }
            }
            correct[n - 1] += matches(&hg, &most);
            total[n - 1] += h.len().saturating_sub(n - 1);
        }
    }
    if sys_len == 0 {
        return 0.0;
    }
    let mut smooth = 1.0;
    let mut log_sum = 0.0;
    for n in 0..4 {
        let p = if total[n] == 0 {
            return 0.0;
        } else if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
        log_sum += p.ln();
    }
    let bp = if sys_len < ref_len {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        1.0
    };
    bp * (log_sum / 4.0).exp()
}

/// Corpus chrF (0-100, beta 2, character n-grams up to 6) of `hyps` against one reference each.
pub fn corpus_chrf(hyps: &[String], refs: &[String]) -> f64 {
    const ORDER: usize = 6;
    let mut stats = [[0usize; 3]; ORDER]; // hyp n-grams, ref n-grams, matches
    for (h, r) in hyps.iter().zip(refs) {
        let h: Vec<char> = h.chars().filter(|c| !c.is_whitespace()).collect();
        let r: Vec<char> = r.chars().filter(|c| !c.is_whitespace()).collect();
        for n in 1..=ORDER {
            let (hg, rg) = (ngrams(&h, n), ngrams(&r, n));
            stats[n - 1][0] += hg.values().sum::<usize>();
            stats[n - 1][1] += rg.values().sum::<usize>();
            stats[n - 1][2] += matches(&hg, &rg);
        }
    }
    let (mut prec, mut rec, mut order) = (0.0, 0.0, 0usize);
    for [nh, nr, nm] in stats {
        if nh > 0 && nr > 0 {
            prec += nm as f64 / nh as f64;
            rec += nm as f64 / nr as f64;
            order += 1;
        }
    }
    if order == 0 {
        return 0.0;
    }
    let (p, r) = (prec / order as f64, rec / order as f64);
    let beta2 = 4.0;
    if p + r == 0.0 {
        0.0
    } else {
        100.0 * (1.0 + beta2) * p * r / (beta2 * p + r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tokenizes_like_13a() {
        assert_eq!(tokenize_13a("J'ai froid."), v(&["J'ai", "froid", "."]));
        assert_eq!(
            tokenize_13a("Il a 3,5 ans, non?"),
            v(&["Il", "a", "3,5", "ans", ",", "non", "?"])
        );
        assert_eq!(tokenize_13a("(a)&quot;b"), v(&["(", "a", ")", "\"", "b"]));
    }

    #[test]
    fn bleu_and_chrf_of_identical_text_is_100() {
        let h = v(&[
            "le chat est sur le tapis .",
            "il fait très froid ce matin .",
        ]);
        assert!((corpus_bleu(&h, &h) - 100.0).abs() < 1e-9);
        assert!((corpus_chrf(&h, &h) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn bleu_matches_hand_computation() {
        // hyp: "the cat sat on mat" (5 tokens), ref: "the cat sat on the mat" (6 tokens)
        // p1 = 5/5, p2 = 3/4, p3 = 2/3, p4 = 1/2; BP = exp(1 - 6/5)
        let expect = (1.0f64 - 6.0 / 5.0).exp()
            * ((1.0f64 * 0.75 * (2.0 / 3.0) * 0.5).ln() / 4.0).exp()
            * 100.0;
        let got = corpus_bleu(&v(&["the cat sat on mat"]), &v(&["the cat sat on the mat"]));
        assert!((got - expect).abs() < 1e-9, "{got} vs {expect}");
    }

    #[test]
    fn multi_reference_bleu_clips_by_the_best_reference() {
        let h = v(&["the cat sat on the mat"]);
        let one = corpus_bleu(&h, &v(&["a cat sat on a mat"]));
        let multi = corpus_bleu_multi(&h, &[v(&["a cat sat on a mat", "the cat sat on the mat"])]);
        assert!((multi - 100.0).abs() < 1e-9, "{multi}");
        assert!(one < 50.0);
        // One reference each: the same as corpus_bleu.
        let refs = v(&["the cat sat on the mat", "il fait froid"]);
        let hyps = v(&["the cat sat on mat", "il fait très froid"]);
        let single: Vec<Vec<String>> = refs.iter().map(|r| vec![r.clone()]).collect();
        assert_eq!(corpus_bleu(&hyps, &refs), corpus_bleu_multi(&hyps, &single));
        // The closest reference length sets the brevity penalty.
        let short = corpus_bleu_multi(
            &v(&["the cat sat on"]),
            &[v(&["the cat sat on", "the cat sat on the mat"])],
        );
        assert!(short > 99.0, "{short}");
    }

    #[test]
    fn unrelated_text_scores_low() {
        let b = corpus_bleu(&v(&["xyz qqq"]), &v(&["le chat est là"]));
        let c = corpus_chrf(&v(&["xyz qqq"]), &v(&["le chat est là"]));
        assert!(b < 5.0 && c < 10.0, "{b} {c}");
    }
}
