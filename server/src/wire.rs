//! Model results as wire types ([`attnscope_protocol`]), for the API and the CLI's JSON.

use attnscope_model::{DecodeStep, Translation};
use attnscope_protocol::{HeadsAttention, HypothesisInfo, StepEvent, TranslateResponse};

/// The wire form of one decoding step.
pub fn step_event(s: &DecodeStep) -> StepEvent {
    StepEvent {
        index: s.index,
        token: s.token.clone(),
        attention: s.attention.clone(),
        log_prob: s.log_prob,
        forced: s.forced,
        intervened: s.intervened,
        heads: s.heads.as_ref().map(|h| HeadsAttention {
            cross: h.cross.clone(),
            self_attention: h.self_attention.clone(),
        }),
    }
}

/// Beam hypotheses in wire form (empty without beam search).
pub fn hypotheses(t: &Translation) -> Vec<HypothesisInfo> {
    t.hypotheses
        .iter()
        .map(|h| HypothesisInfo {
            translation: h.translation.clone(),
            target_tokens: h.steps.iter().map(|s| s.token.clone()).collect(),
            attention: h.steps.iter().map(|s| s.attention.clone()).collect(),
            log_prob: h.log_prob,
            score: h.score,
        })
        .collect()
}

/// The JSON answer for a whole translation by `model`.
pub fn response(model: String, t: Translation) -> TranslateResponse {
    TranslateResponse {
        model,
        steps: t.steps.iter().map(step_event).collect(),
        hypotheses: hypotheses(&t),
        log_prob: t.log_prob,
        mode: t.mode.to_string(),
        source_tokens: t.source_tokens,
        target_tokens: t.target_tokens,
        translation: t.translation,
        attention: t.attention,
        encoder_attention: t.encoder_attention,
    }
}
