//! What the compare view computes: per-step entropy and peak weight of an attention row, and
//! a token-by-token diff of two translations. Pure Rust, unit-tested natively.

/// Entropy of one attention row in nats: 0 for one-hot (hard) attention, `ln n` for
/// uniform attention over `n` tokens. Zero weights contribute nothing.
pub fn entropy(weights: &[f32]) -> f32 {
    let total: f32 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let h: f32 = weights
        .iter()
        .filter(|w| **w > 0.0)
        .map(|&w| {
            let p = w / total;
            -p * p.ln()
        })
        .sum();
    // A one-hot row sums to -0.0, which would print as "-0.000".
    if h > 0.0 { h } else { 0.0 }
}

/// The largest weight of a row (0 for an empty row).
pub fn max_weight(weights: &[f32]) -> f32 {
    weights.iter().copied().fold(0.0, f32::max)
}

/// Mean of `f` over the rows (0 for no rows).
pub fn mean_of(rows: &[Vec<f32>], f: impl Fn(&[f32]) -> f32) -> f32 {
    if rows.is_empty() {
        return 0.0;
    }
    rows.iter().map(|r| f(r)).sum::<f32>() / rows.len() as f32
}

/// Marks which tokens of `a` and of `b` are not part of a longest common subsequence of the
/// two: `true` means "changed" (only in that translation, or in another place).
pub fn token_diff<S: AsRef<str>>(a: &[S], b: &[S]) -> (Vec<bool>, Vec<bool>) {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of a longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i].as_ref() == b[j].as_ref() {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut changed_a, mut changed_b) = (vec![true; n], vec![true; m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i].as_ref() == b[j].as_ref() {
            changed_a[i] = false;
            changed_b[j] = false;
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (changed_a, changed_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_one_hot_uniform_and_empty_rows() {
        assert_eq!(entropy(&[0.0, 1.0, 0.0]), 0.0);
        assert_eq!(format!("{:.3}", entropy(&[1.0, 0.0])), "0.000");
        assert!((entropy(&[0.25; 4]) - 4f32.ln()).abs() < 1e-6);
        assert_eq!(entropy(&[]), 0.0);
        assert_eq!(entropy(&[0.0, 0.0]), 0.0);
        assert!(entropy(&[0.9, 0.1]) < entropy(&[0.6, 0.4]));
    }

    #[test]
    fn max_and_mean() {
        assert_eq!(max_weight(&[0.2, 0.7, 0.1]), 0.7);
        assert_eq!(max_weight(&[]), 0.0);
        let rows = vec![vec![1.0, 0.0], vec![0.5, 0.5]];
        assert!((mean_of(&rows, max_weight) - 0.75).abs() < 1e-6);
        assert_eq!(mean_of(&[], max_weight), 0.0);
    }

    #[test]
    fn diff_marks_tokens_outside_the_common_subsequence() {
        let a = ["▁J", "'", "ai", "▁froid", ".", "</s>"];
        let b = ["▁J", "'", "ai", "▁très", "▁froid", ".", "</s>"];
        let (ca, cb) = token_diff(&a, &b);
        assert_eq!(ca, vec![false; 6]);
        assert_eq!(cb, vec![false, false, false, true, false, false, false]);

        let (ca, cb) = token_diff(&["▁Il", "▁dort"], &["▁Elle", "▁dort"]);
        assert_eq!((ca, cb), (vec![true, false], vec![true, false]));

        let (ca, cb) = token_diff::<&str>(&[], &["a"]);
        assert_eq!((ca, cb), (vec![], vec![true]));
    }
}
