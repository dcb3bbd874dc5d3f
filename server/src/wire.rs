//! Model results as wire types ([`attnscope_protocol`]), for the API and the CLI's JSON.
//!
//! Transformer heads travel packed ([`PackedWeights`]); packing fails only on a ragged block,
//! which would be a bug in the model crate.

use attnscope_model::{DecodeStep, TextSource, Translation};
use attnscope_protocol::{
    HeadsAttention, HypothesisInfo, PackError, PackedWeights, SentenceInfo, StepEvent,
    TranslateResponse,
};

/// The wire form of one decoding step.
pub fn step_event(s: &DecodeStep) -> Result<StepEvent, PackError> {
    let heads = match &s.heads {
        Some(h) => Some(HeadsAttention {
            cross: PackedWeights::from_nested3(&h.cross)?,
            self_attention: PackedWeights::from_nested3(&h.self_attention)?,
        }),
        None => None,
    };
    Ok(StepEvent {
        index: s.index,
        token: s.token.clone(),
        attention: s.attention.clone(),
        log_prob: s.log_prob,
        forced: s.forced,
        intervened: s.intervened,
        heads,
        sentence: s.sentence,
    })
}

/// The input's sentences as the `start` event announces them.
pub fn source_sentences(src: &TextSource) -> Vec<SentenceInfo> {
    src.sentences
        .iter()
        .map(|s| SentenceInfo {
            text: s.text.clone(),
            source: [s.start, s.start + s.ids.len()],
            target: None,
            translation: None,
        })
        .collect()
}

/// Every sentence of a finished translation with its steps and translation.
pub fn sentences(t: &Translation) -> Vec<SentenceInfo> {
    t.sentences
        .iter()
        .map(|s| SentenceInfo {
            text: s.text.clone(),
            source: [s.source.start, s.source.end],
            target: Some([s.target.start, s.target.end]),
            translation: Some(s.translation.clone()),
        })
        .collect()
}

/// The encoder self-attention of a Transformer translation, packed.
pub fn encoder_attention(t: &Translation) -> Result<Option<PackedWeights>, PackError> {
    t.encoder_attention
        .as_deref()
        .map(PackedWeights::from_nested4)
        .transpose()
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
pub fn response(model: String, t: Translation) -> Result<TranslateResponse, PackError> {
    Ok(TranslateResponse {
        model,
        steps: t.steps.iter().map(step_event).collect::<Result<_, _>>()?,
        hypotheses: hypotheses(&t),
        encoder_attention: encoder_attention(&t)?,
        sentences: sentences(&t),
        log_prob: t.log_prob,
        mode: t.mode.to_string(),
        source_tokens: t.source_tokens,
        target_tokens: t.target_tokens,
        translation: t.translation,
        attention: t.attention,
    })
}
