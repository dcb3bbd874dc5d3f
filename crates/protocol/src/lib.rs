//! The wire types of attnscope, defined once for the server and the browser app.
//!
//! A translation is requested with [`TranslateRequest`] (`POST /api/translate`). Asked for
//! `text/event-stream`, the server answers with Server-Sent Events: one [`StartEvent`]
//! (event name [`event::START`]), one [`StepEvent`] per emitted target token
//! ([`event::STEP`]), then a [`DoneEvent`] ([`event::DONE`]), or an [`ErrorBody`]
//! ([`event::ERROR`]) if decoding fails. Asked for JSON, it answers one
//! [`TranslateResponse`]. Client errors are [`ErrorBody`] documents with a 4xx status.
//! An attention matrix is exported as an image or as raw weights with [`RenderRequest`]
//! (`POST /api/render`).
//!
//! Tokens are subword pieces exactly as the model's tokenizer produced them: a piece that
//! starts a word begins with [`WORD_START`] (`▁`, SentencePiece style); [`piece_label`] turns
//! a piece into a display label. The end-of-sentence token [`EOS`] is part of both the
//! source and the target sequence, since the model attends to it and emits it.

use serde::{Deserialize, Serialize};

mod explain;
mod inside;
mod packed;

pub use explain::{
    AgreementSummary, AttributionRow, EXPLAIN_METHODS, ExplainMethod, explain_method,
};
pub use inside::{
    AttentionScores, Candidate, DEFAULT_TOP_K, SCORERS, Scorer, argmax, score_weights, scorer,
    softmax, sparsemax, sparsemax_threshold,
};
pub use packed::{PackError, PackedWeights};

/// Marker at the start of a piece that begins a new word.
pub const WORD_START: char = '\u{2581}';
/// The end-of-sentence token, the last source token and the last emitted target token.
pub const EOS: &str = "</s>";

/// Names of the Server-Sent Events of a streamed translation.
pub mod event {
    /// First event: the tokenized source ([`super::StartEvent`]).
    pub const START: &str = "start";
    /// One per emitted target token ([`super::StepEvent`]).
    pub const STEP: &str = "step";
    /// Last event of a successful translation ([`super::DoneEvent`]).
    pub const DONE: &str = "done";
    /// Sent instead of `done` when decoding fails ([`super::ErrorBody`]).
    pub const ERROR: &str = "error";
}

/// Body of `POST /api/translate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TranslateRequest {
    /// The sentence to translate (source language, usually English).
    pub text: String,
    /// Name of the model to use; the server's default model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Attention distribution: `soft`, `hard`, `sampled` or `sparsemax`; the model's own
    /// (`hard` for a model trained with hard attention, else `soft`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Divides attention scores before the distribution (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Seed of `sampled` attention (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Beam width (default 1: greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam: Option<usize>,
    /// Longest output in pieces (default `min(2 S + 10, 256)` for `S` source pieces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Forced decoding: score this translation and return its attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_target: Option<String>,
    /// Force this start of the translation, then decode freely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_prefix: Option<String>,
    /// Force the attention of some steps onto one source position each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<InterventionSpec>,
    /// Split the text into sentences and translate each on its own (default `true`); the
    /// rows of one sentence attend only to its own source tokens. `false` translates the
    /// whole text as one sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<bool>,
    /// Attribute every emitted token to the source tokens by these methods (names from
    /// [`EXPLAIN_METHODS`]: `gradient_x_input`, `integrated_gradients`, `erasure`,
    /// `word_erasure`). With any, the `step` events come once the whole translation is
    /// decoded and explained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<String>,
    /// Integrated gradients' quadrature points (default 32, at most 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ig_steps: Option<usize>,
    /// Integrated gradients' baseline: `zero` embeddings (default) or `pad`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ig_baseline: Option<String>,
    /// Each step carries its `top_k` most likely tokens as `candidates` (default
    /// [`DEFAULT_TOP_K`], at most 20; 0 for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Each step carries its attention `scores` before the distribution (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<bool>,
    /// The answer carries the word `alignment` the model's chosen method reads off the
    /// translation (default `false`; models measured against a gold set have a method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<bool>,
}

impl TranslateRequest {
    /// A request for `text` with every option at its default.
    pub fn new(text: impl Into<String>) -> Self {
        TranslateRequest {
            text: text.into(),
            model: None,
            attention: None,
            temperature: None,
            seed: None,
            beam: None,
            max_len: None,
            force_target: None,
            target_prefix: None,
            interventions: Vec::new(),
            segment: None,
            explain: Vec::new(),
            ig_steps: None,
            ig_baseline: None,
            top_k: None,
            scores: None,
            align: None,
        }
    }
}

/// A word alignment of a translation, read off its attention by the model's chosen method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WordAlignment {
    /// The method, as people read it.
    pub method: String,
    /// Its alignment error rate (%) on the gold set's test sentences.
    pub aer: f64,
    /// The gold set it was chosen and measured on.
    pub gold: String,
    /// The links: a source word and a target word, each a half-open range of piece positions.
    pub links: Vec<WordLink>,
}

/// One link of a [`WordAlignment`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WordLink {
    /// `[start, end)` of the source word's pieces.
    pub source: [usize; 2],
    /// `[start, end)` of the target word's pieces.
    pub target: [usize; 2],
}

/// One sentence of the input and, once decoded, the part of the output that translates it.
/// Ranges are half-open `[start, end)` positions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SentenceInfo {
    /// The sentence as it is in the input.
    pub text: String,
    /// Its source tokens (its pieces and its [`EOS`]).
    pub source: [usize; 2],
    /// The steps (target tokens) that translate it; absent in the `start` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<[usize; 2]>,
    /// Its translation; absent in the `start` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation: Option<String>,
}

/// At decoding step `step` (0-based target position), attend only to source token `source`
/// (0-based), then continue freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InterventionSpec {
    pub step: usize,
    pub source: usize,
}

/// Every layer's and head's attention at one decoding step of a Transformer, packed
/// ([`PackedWeights`]: half floats in base64, about a quarter of the nested JSON size).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeadsAttention {
    /// Shape `[layer, head, source token]`: the cross-attention actually used.
    pub cross: PackedWeights,
    /// Shape `[layer, head, t + 1]` at step `t`: masked decoder self-attention over the
    /// target positions `0..=t` (the causal mask hides the later ones).
    #[serde(rename = "self")]
    pub self_attention: PackedWeights,
}

/// One finished beam-search hypothesis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HypothesisInfo {
    pub translation: String,
    pub target_tokens: Vec<String>,
    /// One row per target token.
    pub attention: Vec<Vec<f32>>,
    /// Sum of the tokens' natural-log probabilities.
    pub log_prob: f32,
    /// Ranking score: `log_prob` per token.
    pub score: f32,
}

/// One entry of `GET /api/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// Name used in requests, e.g. `bahdanau`.
    pub name: String,
    /// Architecture, e.g. `gru-bahdanau`.
    pub architecture: String,
    /// How attention scores are computed: `additive`, `general`, `dot` or `scaled-dot`.
    pub attention: String,
    /// How attention was trained: `soft` or `hard`.
    #[serde(default)]
    pub attention_training: String,
    /// The attention distribution used when a request names none.
    #[serde(default)]
    pub default_mode: String,
    /// Attention distributions this model can decode with.
    #[serde(default)]
    pub modes: Vec<String>,
    /// Transformer layers per side (0 for a GRU).
    #[serde(default)]
    pub layers: usize,
    /// Transformer heads per layer (0 for a GRU).
    #[serde(default)]
    pub heads: usize,
    /// Size of the vectors attention averages: a GRU's encoder states (both directions),
    /// a Transformer's model width (its heads' contexts joined).
    #[serde(default)]
    pub context_dim: usize,
    /// ISO 639-1 code of the source language.
    pub source_lang: String,
    /// ISO 639-1 code of the target language.
    pub target_lang: String,
    /// Whether this model answers requests that name none.
    pub default: bool,
    /// Number of trainable parameters.
    pub parameters: usize,
    /// BLEU on the model's held-out test split, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu: Option<f64>,
    /// chrF on the model's held-out test split, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chrf: Option<f64>,
    /// Alignment error rate (%) on the model's gold set of the alignment method it draws,
    /// when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aer: Option<f64>,
    /// That method, as people read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_method: Option<String>,
    /// Why the model could not be loaded (a broken or half-copied folder): such an entry has
    /// only its name and this message, and requests for it answer `unknown_model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Event `start`: the source as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartEvent {
    /// The model that translates.
    pub model: String,
    /// Source pieces, ending with [`EOS`] (one [`EOS`] per sentence when segmented).
    pub source_tokens: Vec<String>,
    /// The input's sentences and their source tokens (one when the input has one sentence
    /// or segmentation is off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceInfo>,
}

/// Event `step`: one decoding step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepEvent {
    /// 0-based position of the emitted token in the target.
    pub index: usize,
    /// The emitted piece ([`EOS`] on the last step).
    pub token: String,
    /// The attention weights the decoder used at this step, one per source token; they sum
    /// to 1. For a Transformer: the mean over heads of the last layer's cross-attention.
    /// Streamed `step` events carry it; in the JSON answer ([`TranslateResponse`]) it is
    /// empty and left out, because the answer's `attention` matrix holds every row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<f32>,
    /// Natural log of the probability the model gave this token.
    #[serde(default)]
    pub log_prob: f32,
    /// The token was given, not chosen by the model: a forced target or prefix, or the `</s>`
    /// an imported model's generation settings force at its length limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forced: bool,
    /// An intervention set this step's attention.
    #[serde(default, skip_serializing_if = "is_false")]
    pub intervened: bool,
    /// Every layer's and head's attention (Transformer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<HeadsAttention>,
    /// The input sentence this step translates (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sentence: usize,
    /// One row per method the request asked to `explain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributions: Vec<AttributionRow>,
    /// The most likely tokens at this step, best first (`top_k` of the request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// The attention scores before the distribution, when the request asked for `scores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<AttentionScores>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Event `done`: the whole translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoneEvent {
    /// The detokenized translation.
    pub translation: String,
    /// Every emitted piece, in order, ending with [`EOS`] unless the length limit cut it.
    pub target_tokens: Vec<String>,
    /// Wall time spent decoding on the server, in milliseconds.
    pub elapsed_ms: f64,
    /// Sum of the emitted tokens' natural-log probabilities.
    #[serde(default)]
    pub log_prob: f32,
    /// The attention distribution used.
    #[serde(default)]
    pub mode: String,
    /// With beam search, every final hypothesis, best first (the first is this translation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<HypothesisInfo>,
    /// Encoder self-attention of shape `[layer, head, query, key]` (Transformer only;
    /// block diagonal when segmented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_attention: Option<PackedWeights>,
    /// Every input sentence with its source tokens, its steps and its translation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceInfo>,
    /// Per method the request asked to `explain`, its agreement with the attention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement: Vec<AgreementSummary>,
    /// The word alignment, when the request asked to `align` and the model has a method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<WordAlignment>,
}

/// The JSON answer of `POST /api/translate` (`Accept: application/json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranslateResponse {
    /// The model that translated.
    pub model: String,
    /// Source pieces, ending with [`EOS`].
    pub source_tokens: Vec<String>,
    /// Emitted pieces, one per row of `attention`.
    pub target_tokens: Vec<String>,
    /// The detokenized translation.
    pub translation: String,
    /// One row per target token, one column per source token; each row sums to 1.
    pub attention: Vec<Vec<f32>>,
    /// Every step as streamed (log probabilities, heads, candidates, attributions), but
    /// without its attention row: that is the row of `attention` with the same index.
    pub steps: Vec<StepEvent>,
    /// Sum of the emitted tokens' natural-log probabilities.
    pub log_prob: f32,
    /// The attention distribution used.
    pub mode: String,
    /// With beam search, every final hypothesis, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypotheses: Vec<HypothesisInfo>,
    /// Encoder self-attention of shape `[layer, head, query, key]` (Transformer only;
    /// block diagonal when segmented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_attention: Option<PackedWeights>,
    /// Every input sentence with its source tokens, its steps and its translation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceInfo>,
    /// Per method the request asked to `explain`, its agreement with the attention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement: Vec<AgreementSummary>,
    /// The word alignment, when the request asked to `align` and the model has a method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<WordAlignment>,
}

/// Body of `POST /api/render`: an attention matrix to export as an image (PNG, SVG) or as raw
/// weights (JSON, CSV). The JSON export is this document, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// Source pieces: the columns.
    pub source_tokens: Vec<String>,
    /// Target pieces: the rows.
    pub target_tokens: Vec<String>,
    /// One row per target token, one weight in `[0, 1]` per source token.
    pub attention: Vec<Vec<f32>>,
    /// Title above the figure; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// How weights map to colours: `linear` (default) or `log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    /// The colours: `viridis` (default), `cividis` or `greys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<String>,
    /// Per target token, the tokens the decoder weighed at that step, best first (none, or
    /// one list per row): the JSON export keeps them, the CSV export adds a column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Vec<Candidate>>,
}

/// A client or server error: `{"error": code, "message": human text}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `empty_text`, `unknown_model`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// A display label for a piece: the text without the word-start marker, and whether the
/// piece starts a word.
///
/// ```
/// assert_eq!(attnscope_protocol::piece_label("\u{2581}chat"), ("chat", true));
/// assert_eq!(attnscope_protocol::piece_label("s"), ("s", false));
/// ```
pub fn piece_label(piece: &str) -> (&str, bool) {
    match piece.strip_prefix(WORD_START) {
        Some(rest) => (rest, true),
        None => (piece, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_model_is_optional_and_unknown_fields_are_rejected() {
        let r: TranslateRequest = serde_json::from_str(r#"{"text":"Hi."}"#).unwrap();
        assert_eq!(r.model, None);
        assert!(serde_json::from_str::<TranslateRequest>(r#"{"text":"a","modle":"x"}"#).is_err());
        let full: TranslateRequest = serde_json::from_str(
            r#"{"text":"a","attention":"hard","beam":3,"interventions":[{"step":1,"source":0}]}"#,
        )
        .unwrap();
        assert_eq!(full.beam, Some(3));
        assert_eq!(
            full.interventions,
            vec![InterventionSpec { step: 1, source: 0 }]
        );
        assert_eq!(
            serde_json::to_string(&TranslateRequest::new("a")).unwrap(),
            r#"{"text":"a"}"#
        );
    }

    #[test]
    fn step_round_trips() {
        let s = StepEvent {
            index: 2,
            token: "\u{2581}froid".into(),
            attention: vec![0.25, 0.75],
            log_prob: -0.5,
            forced: false,
            intervened: true,
            heads: Some(HeadsAttention {
                cross: PackedWeights::pack(vec![1, 1, 2], &[0.25, 0.75]).unwrap(),
                self_attention: PackedWeights::pack(vec![1, 1, 2], &[0.4, 0.6]).unwrap(),
            }),
            sentence: 1,
            attributions: vec![AttributionRow {
                method: "erasure".into(),
                weights: vec![0.2, 0.8],
                raw: vec![-0.1, 0.4],
                tau: Some(1.0),
                argmax_agrees: true,
                delta: None,
            }],
            candidates: vec![Candidate {
                token: "\u{2581}froid".into(),
                log_prob: -0.5,
            }],
            scores: Some(AttentionScores {
                first: 0,
                values: vec![vec![vec![1.5, -2.0]]],
            }),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StepEvent>(&json).unwrap(), s);
    }

    #[test]
    fn render_request_round_trips_and_rejects_unknown_fields() {
        let r: RenderRequest = serde_json::from_str(
            r#"{"source_tokens":["\u2581a","</s>"],"target_tokens":["</s>"],"attention":[[0.25,0.75]]}"#,
        )
        .unwrap();
        assert_eq!(
            (r.title.as_deref(), r.scale.as_deref(), r.palette.as_deref()),
            (None, None, None)
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"source_tokens":["▁a","</s>"],"target_tokens":["</s>"],"attention":[[0.25,0.75]]}"#
        );
        let full = RenderRequest {
            candidates: vec![vec![Candidate {
                token: "</s>".into(),
                log_prob: -0.25,
            }]],
            title: Some("a, \"b\"".into()),
            scale: Some("log".into()),
            palette: Some("greys".into()),
            ..r
        };
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<RenderRequest>(&json).unwrap(), full);
        assert!(
            serde_json::from_str::<RenderRequest>(
                r#"{"source_tokens":["a"],"target_tokens":["b"],"attention":[[1]],"colour":"x"}"#
            )
            .is_err()
        );
    }
}
