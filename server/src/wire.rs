//! Models and their results as wire types ([`attnscope_protocol`]), for the API and the
//! CLI's JSON: the one place a model-crate type becomes a protocol type.
//!
//! Transformer heads travel packed ([`PackedWeights`]); packing fails only on a ragged block,
//! which would be a bug in the model crate.

use attnscope_model::evaluation::align::{self, AlignMethod};
use attnscope_model::explain::normalise;
use attnscope_model::{Attribution, DecodePlan, DecodeStep, TextSource, Translation, Translator};
use attnscope_protocol::{
    AgreementSummary, AttentionScores, AttributionRow, Candidate, HeadsAttention, HypothesisInfo,
    ModelInfo, PackError, PackedWeights, SentenceInfo, StepEvent, TranslateResponse, WordAlignment,
    WordLink,
};

/// The alignment method a model draws (see `attnscope align-eval`), checked once, with what
/// the page says about it.
#[derive(Clone, Debug)]
pub struct ChosenAlignment {
    pub method: AlignMethod,
    /// The method, as people read it.
    pub label: String,
    /// Its test AER (%) on `gold`.
    pub aer: f64,
    pub gold: String,
}

/// The model's chosen alignment method, when its evaluation has one that this build reads
/// (an unreadable one is logged and left out: the model still translates). The server reads
/// it once per model when it loads them ([`crate::Models::alignment`]).
pub fn chosen_alignment(name: &str, t: &Translator) -> Option<ChosenAlignment> {
    let e = t.config().evaluation.as_ref()?;
    let spec = e.alignment_method.as_ref()?;
    let method = match spec.parse::<AlignMethod>() {
        Ok(m) => m,
        Err(err) => {
            tracing::warn!("model {name}: alignment method `{spec}` left out: {err}");
            return None;
        }
    };
    let row = e.alignment.iter().find(|r| &r.spec == spec)?;
    Some(ChosenAlignment {
        method,
        label: row.method.clone(),
        aer: 100.0 * row.aer,
        gold: row.gold.clone(),
    })
}

/// The word alignment `chosen` reads off translation `t` of `plan`.
pub fn word_alignment(
    model: &Translator,
    plan: &DecodePlan,
    t: &Translation,
    chosen: &ChosenAlignment,
) -> attnscope_model::Result<WordAlignment> {
    let links = align::align_translation(model, plan, t, &chosen.method)?;
    Ok(WordAlignment {
        method: chosen.label.clone(),
        aer: chosen.aer,
        gold: chosen.gold.clone(),
        links: links
            .into_iter()
            .map(|l| WordLink {
                source: [l.source.start, l.source.end],
                target: [l.target.start, l.target.end],
            })
            .collect(),
    })
}

/// The listing of a loaded model `name`.
pub fn model_info(
    name: &str,
    t: &Translator,
    default: bool,
    chosen: Option<&ChosenAlignment>,
) -> ModelInfo {
    let c = t.config();
    let training = c.training.as_ref();
    let (layers, heads) = c.architecture.layers_heads();
    ModelInfo {
        name: name.to_owned(),
        architecture: c.architecture.name().into(),
        attention: c.architecture.attention_name().into(),
        attention_training: c.attention_training().to_string(),
        default_mode: t.default_mode().to_string(),
        modes: attnscope_model::Mode::ALL
            .iter()
            .map(|m| m.to_string())
            .collect(),
        layers,
        heads,
        context_dim: match c.architecture {
            attnscope_model::config::Architecture::Gru(_) => 2 * c.hidden_dim,
            attnscope_model::config::Architecture::Transformer(_) => c.embed_dim,
        },
        source_lang: c.source_lang.clone(),
        target_lang: c.target_lang.clone(),
        default,
        parameters: t.parameters(),
        bleu: training.and_then(|s| s.bleu),
        chrf: training.and_then(|s| s.chrf),
        aer: chosen.map(|a| a.aer),
        alignment_method: chosen.map(|a| a.label.clone()),
        error: None,
    }
}

/// The listing of a model folder that could not be loaded, with the reason.
pub fn broken_model_info(name: &str, why: &str) -> ModelInfo {
    ModelInfo {
        name: name.to_owned(),
        architecture: String::new(),
        attention: String::new(),
        attention_training: String::new(),
        default_mode: String::new(),
        modes: Vec::new(),
        layers: 0,
        heads: 0,
        context_dim: 0,
        source_lang: String::new(),
        target_lang: String::new(),
        default: false,
        parameters: 0,
        bleu: None,
        chrf: None,
        aer: None,
        alignment_method: None,
        error: Some(why.to_owned()),
    }
}

/// The wire form of one decoding step, with its rows of `explained` (empty when nothing was
/// asked to be explained).
pub fn step_event(s: &DecodeStep, explained: &[Attribution]) -> Result<StepEvent, PackError> {
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
        attributions: explained
            .iter()
            .filter_map(|a| attribution_row(a, s.index))
            .collect(),
        candidates: s
            .candidates
            .iter()
            .map(|c| Candidate {
                token: c.token.clone(),
                log_prob: c.log_prob,
            })
            .collect(),
        scores: s.scores.as_ref().map(|sc| AttentionScores {
            first: sc.first,
            values: sc.values.clone(),
        }),
    })
}

/// Step `step`'s row of one attribution.
fn attribution_row(a: &Attribution, step: usize) -> Option<AttributionRow> {
    let raw = a.raw.get(step)?;
    let agreement = a.agreement.get(step)?;
    Some(AttributionRow {
        method: a.method.to_string(),
        weights: normalise(raw),
        raw: raw.clone(),
        tau: agreement.tau,
        argmax_agrees: agreement.argmax_agrees,
        delta: a
            .convergence_delta
            .as_ref()
            .and_then(|d| d.get(step).copied()),
    })
}

/// How each attribution agrees with the attention over the whole translation.
pub fn agreement(explained: &[Attribution]) -> Vec<AgreementSummary> {
    explained
        .iter()
        .map(|a| {
            let taus: Vec<f32> = a.agreement.iter().filter_map(|g| g.tau).collect();
            let hits = a.agreement.iter().filter(|g| g.argmax_agrees).count();
            let steps = a.agreement.len();
            AgreementSummary {
                method: a.method.to_string(),
                mean_tau: (!taus.is_empty()).then(|| taus.iter().sum::<f32>() / taus.len() as f32),
                argmax_agreement: if steps == 0 {
                    0.0
                } else {
                    hits as f32 / steps as f32
                },
                steps,
            }
        })
        .collect()
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

/// The JSON answer for a whole translation by `model`, with its attributions.
pub fn response(
    model: String,
    t: Translation,
    explained: &[Attribution],
    alignment: Option<WordAlignment>,
) -> Result<TranslateResponse, PackError> {
    // The attention goes once: rows in the matrix, none in the steps.
    let mut steps: Vec<StepEvent> = t
        .steps
        .iter()
        .map(|s| step_event(s, explained))
        .collect::<Result<_, _>>()?;
    let attention = steps
        .iter_mut()
        .map(|s| std::mem::take(&mut s.attention))
        .collect();
    Ok(TranslateResponse {
        model,
        steps,
        agreement: agreement(explained),
        hypotheses: hypotheses(&t),
        encoder_attention: encoder_attention(&t)?,
        sentences: sentences(&t),
        log_prob: t.log_prob,
        mode: t.mode.to_string(),
        source_tokens: t.source_tokens,
        target_tokens: t.target_tokens,
        translation: t.translation,
        attention,
        alignment,
    })
}
