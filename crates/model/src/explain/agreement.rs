//! How far an attribution row agrees with the attention row of the same step: Kendall's
//! rank correlation τ-b (ties counted as in Kendall 1945, the variant `scipy.stats.kendalltau`
//! computes by default) and whether both put their largest weight on the same source token.

/// Agreement of one attribution row with the attention row of the same step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Kendall's τ-b between the attention weights and the normalised attribution, in
    /// [-1, 1]; `None` when it is undefined (fewer than two source tokens, or one row is
    /// constant).
    pub tau: Option<f32>,
    /// True when both rows have their largest weight at the same source token.
    pub argmax_agrees: bool,
}

impl Agreement {
    /// The agreement of `attribution` (normalised, non-negative) with `attention`, over the
    /// same source positions.
    pub fn of(attention: &[f32], attribution: &[f32]) -> Agreement {
        Agreement {
            tau: kendall_tau(attention, attribution),
            argmax_agrees: !attention.is_empty()
                && argmax(attention) == argmax(attribution)
                && attribution.iter().any(|&v| v != 0.0),
        }
    }
}

/// Kendall's τ-b of two equally long rows; `None` when undefined (see [`Agreement::tau`]).
pub fn kendall_tau(a: &[f32], b: &[f32]) -> Option<f32> {
    let n = a.len().min(b.len());
    let (mut concordant, mut discordant) = (0i64, 0i64);
    let (mut ties_a, mut ties_b) = (0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let da = sign(a[i] - a[j]);
            let db = sign(b[i] - b[j]);
            match (da, db) {
                (0, 0) => {}
                (0, _) => ties_a += 1,
                (_, 0) => ties_b += 1,
                _ if da == db => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    // Pairs not tied in a (and not in b, respectively), as τ-b's denominator counts them.
    let untied_a = concordant + discordant + ties_b;
    let untied_b = concordant + discordant + ties_a;
    if untied_a == 0 || untied_b == 0 {
        return None;
    }
    let tau = (concordant - discordant) as f64 / ((untied_a as f64) * (untied_b as f64)).sqrt();
    Some(tau.clamp(-1.0, 1.0) as f32)
}

fn sign(x: f32) -> i8 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// Index of the largest value (the first of equals).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_is_one_for_the_same_order_and_minus_one_for_the_reverse() {
        let a = [0.1, 0.5, 0.2, 0.9];
        assert_eq!(kendall_tau(&a, &[1.0, 3.0, 2.0, 4.0]), Some(1.0));
        assert_eq!(kendall_tau(&a, &[4.0, 2.0, 3.0, 1.0]), Some(-1.0));
    }

    #[test]
    fn tau_b_matches_scipy_on_a_row_with_ties() {
        // scipy.stats.kendalltau([1, 2, 2, 3], [1, 3, 2, 2]) = 0.4 (τ-b).
        let tau = kendall_tau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]).unwrap();
        assert!((tau - 0.4).abs() < 1e-6, "{tau}");
    }

    #[test]
    fn tau_is_undefined_for_a_constant_row_or_a_single_token() {
        assert_eq!(kendall_tau(&[0.5, 0.5], &[0.1, 0.9]), None);
        assert_eq!(kendall_tau(&[1.0], &[1.0]), None);
    }

    #[test]
    fn argmax_agreement_needs_the_same_top_token() {
        assert!(Agreement::of(&[0.1, 0.8, 0.1], &[0.2, 0.5, 0.3]).argmax_agrees);
        assert!(!Agreement::of(&[0.1, 0.8, 0.1], &[0.6, 0.3, 0.1]).argmax_agrees);
        assert!(!Agreement::of(&[1.0, 0.0], &[0.0, 0.0]).argmax_agrees);
    }
}
