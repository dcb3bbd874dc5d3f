//! Inside a decoding step, on the wire: the tokens the decoder weighed ([`Candidate`]), the
//! attention scores before they became weights ([`AttentionScores`]), what each scorer
//! computes ([`SCORERS`]) and how a row of scores becomes the weights the decoder used
//! ([`score_weights`]), so that the page can show a cell's weight being made with the numbers
//! of that step.

use serde::{Deserialize, Serialize};

/// The candidates per step when a request names no `top_k`.
pub const DEFAULT_TOP_K: usize = 5;

/// One of the most likely next tokens at a step, before the decoder chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// The piece ([`crate::EOS`] for the end of the sentence).
    pub token: String,
    /// Natural log of the probability the model gave it.
    pub log_prob: f32,
}

/// A step's attention scores before the temperature and the distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttentionScores {
    /// Source position of the first score: in a segmented input a sentence's rows attend
    /// only to its own tokens, so the scores cover `first..first + n`.
    pub first: usize,
    /// `[layer][head][source]`: one layer of one head for a GRU; for a Transformer every
    /// decoder layer's cross-attention heads (already divided by `sqrt(d_head)`).
    pub values: Vec<Vec<Vec<f32>>>,
}

/// What a scorer computes for decoder state `s` and encoder state `h_j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scorer {
    /// The name in `/api/models` (`attention`).
    pub name: &'static str,
    /// The name people read.
    pub label: &'static str,
    /// The score of source token `j`, as a formula.
    pub formula: &'static str,
    /// What that means, in a sentence or two.
    pub about: &'static str,
}

/// Every scorer of the zoo.
pub const SCORERS: [Scorer; 4] = [
    Scorer {
        name: "additive",
        label: "additive (Bahdanau)",
        formula: "e_j = v \u{b7} tanh(W_k h_j + W_q s)",
        about: "A small feed-forward network scores each source state against the decoder state: both are projected, added, squashed by tanh and read off by the vector v.",
    },
    Scorer {
        name: "general",
        label: "general (Luong)",
        formula: "e_j = h_j \u{b7} (W s)",
        about: "A multiplicative score: the decoder state is mapped by one matrix W and compared with each source state by a dot product.",
    },
    Scorer {
        name: "dot",
        label: "dot (Luong)",
        formula: "e_j = h_j \u{b7} s",
        about: "The plainest multiplicative score: the dot product of the decoder state with each source state, with no parameters of its own.",
    },
    Scorer {
        name: "scaled-dot",
        label: "scaled dot product (Transformer)",
        formula: "e_j = q \u{b7} k_j / \u{221a}d",
        about: "Each head projects the decoder position to a query q and every source token to a key k_j, and divides their dot product by the square root of the head size d so that the softmax does not saturate.",
    },
];

/// The scorer named `name` (as `/api/models` names it), if there is one.
pub fn scorer(name: &str) -> Option<&'static Scorer> {
    SCORERS.iter().find(|s| s.name == name)
}

/// The weights a row of scores becomes under attention mode `mode` at `temperature`, as the
/// decoder computes them: `soft` (and `sampled`'s expectation) the softmax of `e / T`,
/// `sparsemax` its Euclidean projection onto the simplex, `hard` a one-hot at the highest
/// score, `uniform` the same weight everywhere. `None` for a mode whose weights the scores do
/// not determine (`sampled` draws, `shuffled` permutes).
pub fn score_weights(scores: &[f32], mode: &str, temperature: f32) -> Option<Vec<f32>> {
    if scores.is_empty() {
        return Some(Vec::new());
    }
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let scaled: Vec<f32> = scores.iter().map(|e| e / t).collect();
    match mode {
        "soft" => Some(softmax(&scaled)),
        "sparsemax" => Some(sparsemax(&scaled)),
        "hard" => {
            let best = argmax(scores);
            Some((0..scores.len()).map(|j| f32::from(j == best)).collect())
        }
        "uniform" => Some(vec![1.0 / scores.len() as f32; scores.len()]),
        _ => None,
    }
}

/// `exp(x_j - max) / sum_k exp(x_k - max)`.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Sparsemax (Martins & Astudillo 2016): `max(x_j - tau, 0)` with the threshold `tau` that
/// makes the weights sum to 1.
pub fn sparsemax(x: &[f32]) -> Vec<f32> {
    let tau = sparsemax_threshold(x);
    x.iter().map(|v| (v - tau).max(0.0)).collect()
}

/// The threshold `tau` of [`sparsemax`].
pub fn sparsemax_threshold(x: &[f32]) -> f32 {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cumulative, mut tau) = (0.0f32, 0.0f32);
    for (k, v) in sorted.iter().enumerate() {
        cumulative += v;
        let candidate = (cumulative - 1.0) / (k + 1) as f32;
        if *v > candidate {
            tau = candidate;
        }
    }
    tau
}

/// Index of the highest value (the first of equals).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (j, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_sparsemax_rows_sum_to_one() {
        let e = [2.0, 1.0, -0.5, 1.9];
        for mode in ["soft", "sparsemax", "hard", "uniform"] {
            let w = score_weights(&e, mode, 1.0).unwrap();
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{mode}: {w:?}");
            assert!(w.iter().all(|v| *v >= 0.0), "{mode}: {w:?}");
        }
        let soft = score_weights(&e, "soft", 1.0).unwrap();
        assert!((soft[0] / soft[1] - 1f32.exp()).abs() < 1e-5);
        // A high temperature flattens, a low one sharpens.
        let flat = score_weights(&e, "soft", 10.0).unwrap();
        let sharp = score_weights(&e, "soft", 0.1).unwrap();
        assert!(flat[0] < soft[0] && soft[0] < sharp[0]);
        // Sparsemax: the two close leaders share the mass, the rest get exactly 0.
        let sp = sparsemax(&e);
        assert_eq!((sp[1], sp[2]), (0.0, 0.0));
        assert!(
            (sp[0] - 0.55).abs() < 1e-6 && (sp[3] - 0.45).abs() < 1e-6,
            "{sp:?}"
        );
        assert_eq!(
            score_weights(&e, "hard", 1.0).unwrap(),
            vec![1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(score_weights(&e, "sampled", 1.0), None);
    }

    #[test]
    fn every_model_scorer_has_an_entry() {
        for name in ["additive", "general", "dot", "scaled-dot"] {
            assert!(scorer(name).is_some(), "{name}");
        }
        assert!(scorer("cosine").is_none());
    }

    #[test]
    fn scores_round_trip() {
        let s = AttentionScores {
            first: 3,
            values: vec![vec![vec![0.5, -1.25]]],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"first":3,"values":[[[0.5,-1.25]]]}"#);
        assert_eq!(serde_json::from_str::<AttentionScores>(&json).unwrap(), s);
    }
}
