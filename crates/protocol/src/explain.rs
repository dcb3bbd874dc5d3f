//! Attribution on the wire: which methods a request may ask for (with the words the page
//! shows for each), one row per step and method, and the agreement of each method with
//! the attention over a whole translation.

use serde::{Deserialize, Serialize};

/// An attribution method a request may name in `explain`, with its label and what it
/// measures, in one place for the server, the CLI and the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplainMethod {
    /// The name in requests, permalinks and exports.
    pub name: &'static str,
    /// The name people read.
    pub label: &'static str,
    /// What it measures, in two sentences.
    pub about: &'static str,
}

/// Every attribution method, in the order the page lists them.
pub const EXPLAIN_METHODS: [ExplainMethod; 4] = [
    ExplainMethod {
        name: "gradient_x_input",
        label: "gradient × input",
        about: "How fast the emitted token's log-probability changes as each source embedding is scaled up, times that embedding: a first-order estimate of each token's share. Cheap, but it sees only the local slope.",
    },
    ExplainMethod {
        name: "integrated_gradients",
        label: "integrated gradients",
        about: "Gradients averaged along the straight path from a blank source (zero or <pad> embeddings) to the real one, times the difference: the shares add up to the log-probability gained over the blank source. Slower, and it depends on that baseline.",
    },
    ExplainMethod {
        name: "erasure",
        label: "erasure",
        about: "How much the emitted token's log-probability drops when that source token is left out and the same translation is scored again. Direct and model-agnostic, but removing a token also shifts the others.",
    },
    ExplainMethod {
        name: "word_erasure",
        label: "erasure of whole words",
        about: "Erasure with every piece of a word left out at once, the drop shared evenly among its pieces: a word split into pieces can no longer be read from the pieces that remain. One re-run per word rather than per piece.",
    },
];

/// The method named `name`, if there is one.
pub fn explain_method(name: &str) -> Option<&'static ExplainMethod> {
    EXPLAIN_METHODS.iter().find(|m| m.name == name)
}

/// One method's attribution of one step over the source tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributionRow {
    /// The method, one of [`EXPLAIN_METHODS`].
    pub method: String,
    /// Absolute values summing to 1, one per source token: what a heatmap shows.
    pub weights: Vec<f32>,
    /// Signed scores in log-probability units (positive: the token raised the emitted
    /// token's log-probability).
    pub raw: Vec<f32>,
    /// Kendall's τ-b between this row and the step's attention, over the tokens of the
    /// step's sentence; absent where undefined (a constant row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f32>,
    /// Both rows put their largest weight on the same source token.
    #[serde(default)]
    pub argmax_agrees: bool,
    /// Integrated gradients only: the row's sum minus the log-probability gained over the
    /// baseline (the quadrature's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f32>,
}

/// How one method agrees with the attention over a whole translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgreementSummary {
    /// The method, one of [`EXPLAIN_METHODS`].
    pub method: String,
    /// Mean Kendall τ-b over the steps where it is defined; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_tau: Option<f32>,
    /// Share of steps whose largest attribution and largest attention fall on the same
    /// source token.
    pub argmax_agreement: f32,
    /// Steps counted.
    pub steps: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_found_by_name() {
        assert_eq!(explain_method("erasure").map(|m| m.label), Some("erasure"));
        assert!(explain_method("saliency").is_none());
    }
}
