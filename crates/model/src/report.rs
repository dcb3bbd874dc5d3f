//! What training and evaluation record about a model, in its `config.json` and card: the
//! training summary, attention statistics, alignment error rates, scores by length and
//! domain, and the faithfulness figures. Plain serde records with no behaviour, so that the
//! model description ([`crate::config`]) needs nothing from the layers that fill them in.

use serde::{Deserialize, Serialize};

/// How the model's attention behaves, measured by `attnscope eval`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Test sentences decoded for the entropy figures.
    pub sentences: usize,
    /// Mean entropy (nats) of the attention row per decoding step on the test split.
    pub mean_entropy: f64,
    /// Mean largest weight per step on the test split.
    pub mean_max_weight: f64,
    /// Word alignments from attention against a gold set, when one fits the languages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alignment: Vec<AlignmentResult>,
    /// The alignment method the explorer draws: the one read from attention with the lowest
    /// AER on the trial sentences, as a method spec
    /// (`crate::evaluation::align::AlignMethod`'s `Display`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_method: Option<String>,
    /// Which sentences the alignment methods were chosen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_trial: Option<String>,
    /// Scores by source length, on pasted sentences and on another domain
    /// (`crate::evaluation::robustness`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<SetScore>,
    /// Attention against attributions and counterfactual attention
    /// (`crate::evaluation::faithfulness`), once `attnscope faithfulness` has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<Faithfulness>,
}

/// AER, precision and recall (percent) of one alignment-extraction method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlignmentResult {
    /// Gold set, e.g. `hansards-naacl2003`.
    pub gold: String,
    /// The method as people read it, e.g. `layer 2, mean of heads; argmax; grow-diag-final`.
    pub method: String,
    /// The method spec (`crate::evaluation::align::AlignMethod`'s `Display`); empty for a
    /// baseline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec: String,
    /// AER on the trial sentences, which choose the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_aer: Option<f64>,
    /// AER on the test sentences.
    pub aer: f64,
    pub precision: f64,
    pub recall: f64,
    pub sentences: usize,
}

/// What training did and how well the result scores; recorded in `config.json` and the card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub data: String,
    pub seed: u64,
    pub train_pairs: usize,
    pub dev_pairs: usize,
    pub test_sentences: usize,
    pub steps: usize,
    pub epochs: f64,
    pub batch_size: usize,
    pub training_seconds: f64,
    pub hardware: String,
    pub final_train_loss: f64,
    pub dev_loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<f64>,
    /// The starting model's language pair (e.g. `en→fr`) when training began from a model of
    /// another target language (`train --init-from`): its source side and decoder layers
    /// were taken, its target vocabulary was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_from: Option<String>,
    /// The weights are the mean of these checkpoints' (`train --average-last`), and
    /// `dev_loss` is the mean's; empty: the final weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub averaged_steps: Vec<usize>,
    /// The final weights' dev loss, when the shipped ones are an average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_loss_before_averaging: Option<f64>,
}

/// One scored test set (or slice of one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetScore {
    /// The set, e.g. `tatoeba test`, `tatoeba test, 3-4 pasted`, `multi30k test2016`.
    pub set: String,
    /// The slice of it, e.g. `6-10 words`, or `all`.
    pub slice: String,
    /// Whether inputs were split into sentences before decoding.
    pub segmented: bool,
    pub sentences: usize,
    /// Most references any sentence has.
    pub references: usize,
    pub bleu: f64,
    pub chrf: f64,
}

/// How one attribution agrees with the attention.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodAgreement {
    /// The method's name (see [`crate::Method::as_str`]).
    pub method: String,
    /// Mean Kendall τ-b per step, over the steps where it is defined.
    pub mean_tau: f64,
    /// Share of steps (0 to 1) whose largest attribution and largest attention weight fall on
    /// the same source token.
    pub argmax_agreement: f64,
    /// Steps where τ was defined.
    pub steps_with_tau: usize,
}

/// What replacing the attention did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counterfactual {
    /// The attention used instead (`uniform`, `shuffled`, `hard`).
    pub attention: String,
    /// Share of output tokens (0 to 1) that changed, over all sentences.
    pub tokens_changed: f64,
    /// Share of sentences (0 to 1) whose translation changed.
    pub sentences_changed: f64,
    /// Mean drop, per target token, of the original translation's log-probability (nats).
    pub log_prob_drop: f64,
}

/// The faithfulness figures of one model (stored in `config.json`, shown in its card).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    pub sentences: usize,
    /// Decoding steps explained.
    pub steps: usize,
    /// Quadrature points of integrated gradients.
    pub ig_steps: usize,
    pub agreement: Vec<MethodAgreement>,
    pub counterfactuals: Vec<Counterfactual>,
}
