//! The arithmetic behind the step view, with the numbers of one step: how a row of attention
//! scores became the weight of one cell under the run's attention mode, for one head (a GRU's
//! only one, or each head of a Transformer's last layer). Pure Rust, unit-tested natively;
//! the step view (`components::step_inside`) only lays it out.

use attnscope_protocol::{argmax, score_weights, softmax, sparsemax_threshold};

/// How one head turned its scores into the weight of source column `j`.
#[derive(Clone, Debug, PartialEq)]
pub struct CellMath {
    /// The scores of the row (the step's sentence only).
    pub scores: Vec<f32>,
    /// The weights the mode gives them (`None` for `sampled` and `shuffled`, whose weights
    /// come from a draw or a permutation, not from the scores alone).
    pub weights: Option<Vec<f32>>,
    /// One sentence with this cell's numbers.
    pub formula: String,
}

/// The math of column `j` (within the row) for scores `e` under attention `mode`.
pub fn cell_math(e: &[f32], j: usize, mode: &str) -> CellMath {
    let weights = score_weights(e, mode, 1.0);
    let ej = e.get(j).copied().unwrap_or(f32::NAN);
    let formula = match mode {
        "soft" | "sampled" | "shuffled" => {
            let m = e.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = e.iter().map(|v| (v - m).exp()).sum();
            let w = softmax(e).get(j).copied().unwrap_or(0.0);
            let base = format!(
                "softmax: w = exp(e \u{2212} m) / \u{3a3} exp(e\u{2096} \u{2212} m) with m = max e = {m:.3}: exp({:.3}) / {sum:.3} = {w:.3}",
                ej - m
            );
            match mode {
                "sampled" => format!(
                    "{base}. Sampled attention then drew one token with these probabilities and put all the weight on it."
                ),
                "shuffled" => format!(
                    "{base}. Shuffled attention then moved these weights to randomly permuted tokens."
                ),
                _ => base,
            }
        }
        "sparsemax" => {
            let tau = sparsemax_threshold(e);
            format!(
                "sparsemax: the threshold \u{3c4} = {tau:.3} makes the weights sum to 1; w = max(e \u{2212} \u{3c4}, 0) = max({ej:.3} \u{2212} {tau:.3}, 0) = {:.3}",
                (ej - tau).max(0.0)
            )
        }
        "hard" => {
            let best = argmax(e);
            format!(
                "hard: all the weight goes to the highest score (column {}, e = {:.3}), none elsewhere: w = {}",
                best + 1,
                e.get(best).copied().unwrap_or(0.0),
                u8::from(best == j)
            )
        }
        "uniform" => format!(
            "uniform: the scores are ignored and every one of the {} tokens gets w = 1/{} = {:.3}",
            e.len(),
            e.len(),
            1.0 / e.len().max(1) as f32
        ),
        other => format!("{other}: weights not derived from the scores"),
    };
    CellMath {
        scores: e.to_vec(),
        weights,
        formula,
    }
}

/// The mean of equally long rows (a Transformer's heatmap row is the mean of its last
/// layer's heads).
pub fn mean_rows(rows: &[Vec<f32>]) -> Vec<f32> {
    let n = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0; n];
    for row in rows {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / rows.len() as f32;
        }
    }
    mean
}

/// A probability as a percentage with enough digits to tell small ones apart.
pub fn percent(p: f32) -> String {
    let pc = 100.0 * p;
    if pc >= 10.0 {
        format!("{pc:.1}%")
    } else if pc >= 0.01 {
        format!("{pc:.2}%")
    } else {
        "<0.01%".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cell_formula_carries_the_steps_numbers() {
        let e = [1.0, 3.0, 2.0];
        let soft = cell_math(&e, 1, "soft");
        let w = soft.weights.unwrap();
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(
            soft.formula.contains("m = max e = 3.000"),
            "{}",
            soft.formula
        );
        assert!(
            soft.formula.ends_with(&format!("{:.3}", w[1])),
            "{}",
            soft.formula
        );
        let hard = cell_math(&e, 2, "hard");
        assert_eq!(hard.weights.unwrap(), vec![0.0, 1.0, 0.0]);
        assert!(hard.formula.contains("column 2") && hard.formula.ends_with("w = 0"));
        let sparse = cell_math(&e, 1, "sparsemax");
        assert_eq!(sparse.weights.unwrap(), vec![0.0, 1.0, 0.0]);
        assert!(sparse.formula.contains("= 1.000"), "{}", sparse.formula);
        let sampled = cell_math(&e, 0, "sampled");
        assert!(sampled.weights.is_none() && sampled.formula.contains("drew one token"));
    }

    #[test]
    fn means_and_percentages() {
        assert_eq!(mean_rows(&[vec![1.0, 0.0], vec![0.0, 1.0]]), vec![0.5, 0.5]);
        assert!(mean_rows(&[]).is_empty());
        assert_eq!(percent(0.9712), "97.1%");
        assert_eq!(percent(0.0123), "1.23%");
        assert_eq!(percent(0.00001), "<0.01%");
    }
}
