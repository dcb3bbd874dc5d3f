//! The wire types of attnscope, defined once for the server and the browser app.
//!
//! A translation is requested with [`TranslateRequest`] (`POST /api/translate`). Asked for
//! `text/event-stream`, the server answers with Server-Sent Events: one [`StartEvent`]
//! (event name [`event::START`]), one [`StepEvent`] per emitted target token
//! ([`event::STEP`]), then a [`DoneEvent`] ([`event::DONE`]), or an [`ErrorBody`]
//! ([`event::ERROR`]) if decoding fails. Asked for JSON, it answers one
//! [`TranslateResponse`]. Client errors are [`ErrorBody`] documents with a 4xx status.
//!
//! Tokens are subword pieces exactly as the model's tokenizer produced them: a piece that
//! starts a word begins with [`WORD_START`] (`▁`, SentencePiece style); [`piece_label`] turns
//! a piece into a display label. The end-of-sentence token [`EOS`] is part of both the
//! source and the target sequence, since the model attends to it and emits it.

use serde::{Deserialize, Serialize};

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
#[serde(deny_unknown_fields)]
pub struct TranslateRequest {
    /// The sentence to translate (source language, usually English).
    pub text: String,
    /// Name of the model to use; the server's default model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// One entry of `GET /api/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Name used in requests, e.g. `bahdanau`.
    pub name: String,
    /// Architecture, e.g. `gru-bahdanau`.
    pub architecture: String,
    /// How attention scores are computed, e.g. `additive`.
    pub attention: String,
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
}

/// Event `start`: the source as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartEvent {
    /// The model that translates.
    pub model: String,
    /// Source pieces, ending with [`EOS`].
    pub source_tokens: Vec<String>,
}

/// Event `step`: one decoding step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// 0-based position of the emitted token in the target.
    pub index: usize,
    /// The emitted piece ([`EOS`] on the last step).
    pub token: String,
    /// The attention weights the decoder used at this step, one per source token; they sum to 1.
    pub attention: Vec<f32>,
}

/// Event `done`: the whole translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneEvent {
    /// The detokenized translation.
    pub translation: String,
    /// Every emitted piece, in order, ending with [`EOS`] unless the length limit cut it.
    pub target_tokens: Vec<String>,
    /// Wall time spent decoding on the server, in milliseconds.
    pub elapsed_ms: f64,
}

/// The JSON answer of `POST /api/translate` (`Accept: application/json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

/// A client or server error: `{"error": code, "message": human text}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    }

    #[test]
    fn step_round_trips() {
        let s = StepEvent {
            index: 2,
            token: "\u{2581}froid".into(),
            attention: vec![0.25, 0.75],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StepEvent>(&json).unwrap(), s);
    }
}
