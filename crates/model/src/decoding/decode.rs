//! Decoding one sentence of a checked plan, one callback per emitted token: greedy, forced,
//! prefixed or beam search, with interventions that force the attention of one step onto
//! one source position. Every [`DecodeStep`] carries the attention the decoder actually
//! used, and for a Transformer every layer's and head's cross- and self-attention; a
//! [`Translation`] keeps them once, in its steps.

use std::ops::ControlFlow;

use candle_core::{D, DType, IndexOp, Tensor};

use crate::config::EOS_ID;
use crate::decoding::beam;
use crate::decoding::plan::{DecodeOptions, DecodePlan, SentenceTargets};
use crate::decoding::source::{Segmentation, SourceSentence};
use crate::decoding::step::{
    DecodeStep, Hypothesis, Intervention, Report, SentenceSpan, StepContext, make_step,
};
use crate::decoding::translator::Translator;
use crate::networks::EncoderDecoder;
use crate::networks::attention::{Distribution, Mode};
use crate::with_network;
use crate::{Error, Result};

/// A whole translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// Source pieces, ending with `</s>`.
    pub source_tokens: Vec<String>,
    /// Emitted pieces, ending with `</s>` unless the length limit or the caller stopped it.
    pub target_tokens: Vec<String>,
    pub translation: String,
    /// Every step in full: its token, log probability, attention row and heads.
    pub steps: Vec<DecodeStep>,
    /// Sum of the emitted tokens' log probabilities.
    pub log_prob: f32,
    /// The attention distribution used.
    pub mode: Mode,
    /// `[layer][head][query][key]` encoder self-attention (Transformer only).
    pub encoder_attention: Option<EncoderAttention>,
    /// With beam search, every final hypothesis, best first (the first is this translation).
    pub hypotheses: Vec<Hypothesis>,
    /// True when the callback asked to stop before the end of the sentence.
    pub stopped: bool,
    /// The input's sentences, each with its source positions and target steps: one span
    /// over everything unless the input was segmented into several ([`crate::decoding::sentences`]).
    pub sentences: Vec<SentenceSpan>,
}

impl Translation {
    /// The attention matrix, one row per target piece over every source piece: each step's
    /// own row (the translation stores it once, in its steps).
    pub fn attention(&self) -> Vec<&[f32]> {
        self.steps.iter().map(|s| s.attention.as_slice()).collect()
    }
}

impl Translator {
    /// Decodes sentence `k` of `plan` with `interventions` (in the sentence's coordinates),
    /// as if it were the whole input: positions and steps count from 0.
    pub(crate) fn decode_sentence(
        &self,
        plan: &DecodePlan,
        k: usize,
        interventions: &[Intervention],
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        let sentence: &SourceSentence = plan
            .source()
            .sentences
            .get(k)
            .ok_or_else(|| Error::Internal(format!("the plan has no sentence {k}")))?;
        let mut dist = plan.distribution();
        let decoded = with_network!(&self.network, |m| {
            self.decode_with(m, plan, k, interventions, &mut dist, &mut on_step)
        })?;
        self.sentence_translation(sentence, dist.mode, decoded)
    }

    /// The translation of one decoded `sentence`, as if it were the whole input.
    pub(crate) fn sentence_translation(
        &self,
        sentence: &SourceSentence,
        mode: Mode,
        decoded: Decoded,
    ) -> Result<Translation> {
        let Decoded {
            steps,
            stopped,
            hypotheses,
            encoder_attention,
        } = decoded;
        let out_ids: Vec<u32> = steps
            .iter()
            .map(|s| s.token_id)
            .filter(|&t| t != EOS_ID)
            .collect();
        let translation = self.tgt.decode(&out_ids)?;
        let sentences = vec![SentenceSpan {
            text: sentence.text.clone(),
            source: 0..sentence.tokens.len(),
            target: 0..steps.len(),
            translation: translation.clone(),
        }];
        Ok(Translation {
            source_tokens: sentence.tokens.clone(),
            target_tokens: steps.iter().map(|s| s.token.clone()).collect(),
            translation,
            sentences,
            log_prob: steps.iter().map(|s| s.log_prob).sum(),
            steps,
            mode,
            encoder_attention,
            hypotheses,
            stopped,
        })
    }

    /// Beam search over `text` as one sentence with any width, 1 included (which
    /// [`Self::translate`] decodes greedily instead): every final hypothesis, best first.
    pub fn beam_search(&self, text: &str, opts: &DecodeOptions) -> Result<Vec<Hypothesis>> {
        let plan = self.plan(self.text_source(text, Segmentation::Whole)?, opts.clone())?;
        let ids = &plan.source().sentences[0].ids;
        let targets = plan.targets(0);
        if targets.forced.is_some() {
            return Err(Error::Invalid(
                "beam search does not take force_target".into(),
            ));
        }
        let mut dist = plan.distribution();
        with_network!(&self.network, |m| {
            let memory = self.encode_one(m, ids)?;
            let ctx = StepContext {
                network: m,
                memory: &memory,
                interventions: &opts.interventions,
                report: opts.report(),
            };
            beam::search(
                &self.tgt,
                &ctx,
                &mut dist,
                &targets.prefix,
                targets.max_len,
                opts.beam,
            )
        })
    }

    /// Encodes one source sentence.
    fn encode_one<N: EncoderDecoder>(&self, net: &N, ids: &[u32]) -> Result<N::Memory> {
        let src = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &self.device)?;
        let mask = Tensor::ones((1, ids.len()), DType::F32, &self.device)?;
        net.encode(&src, &mask)
    }

    /// Sentence `k` of `plan` with the concrete network `net`.
    fn decode_with<N: EncoderDecoder>(
        &self,
        net: &N,
        plan: &DecodePlan,
        k: usize,
        interventions: &[Intervention],
        dist: &mut Distribution,
        on_step: &mut dyn FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Decoded> {
        let opts = plan.options();
        let (sentence, targets) = (&plan.source().sentences[k], plan.targets(k));
        let memory = self.encode_one(net, &sentence.ids)?;
        let encoder_attention = match N::encoder_attention(&memory) {
            Some(t) => Some(nested4(&t.i(0)?)?),
            None => None,
        };
        let ctx = StepContext {
            network: net,
            memory: &memory,
            interventions,
            report: opts.report(),
        };
        if opts.beam > 1 {
            let hyps = beam::search(
                &self.tgt,
                &ctx,
                dist,
                &targets.prefix,
                targets.max_len,
                opts.beam,
            )?;
            let mut stopped = false;
            let best = hyps.first().map(|h| h.steps.clone()).unwrap_or_default();
            for s in &best {
                if on_step(s).is_break() {
                    stopped = true;
                    break;
                }
            }
            return Ok(Decoded {
                steps: best,
                stopped,
                hypotheses: hyps,
                encoder_attention,
            });
        }
        let (steps, stopped) = self.single_path(&ctx, dist, targets, on_step)?;
        Ok(Decoded {
            steps,
            stopped,
            hypotheses: Vec::new(),
            encoder_attention,
        })
    }

    /// Greedy, forced or prefixed decoding of one hypothesis.
    fn single_path<N: EncoderDecoder>(
        &self,
        ctx: &StepContext<N>,
        dist: &mut Distribution,
        targets: &SentenceTargets,
        on_step: &mut dyn FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<(Vec<DecodeStep>, bool)> {
        let (forced, prefix, max_len) =
            (targets.forced.as_deref(), &targets.prefix, targets.max_len);
        let mut prev = Tensor::new(&[crate::config::BOS_ID], &self.device)?;
        let mut state = ctx.network.initial_state(ctx.memory)?;
        let mut steps = Vec::new();
        for index in 0..max_len {
            let out = ctx.step(&state, &prev, index, dist)?;
            let log_probs = candle_nn::ops::log_softmax(&out.net.logits, D::Minus1)?.i(0)?;
            let given = match forced {
                Some(f) => Some(f[index]),
                None => prefix.get(index).copied(),
            }
            .or_else(|| (targets.eos_last && index + 1 == max_len).then_some(EOS_ID));
            let token_id = match given {
                Some(t) => t,
                None => log_probs.argmax(D::Minus1)?.to_scalar::<u32>()?,
            };
            let log_prob = log_probs.i(token_id as usize)?.to_scalar::<f32>()?;
            let mut step = make_step(
                &self.tgt,
                &out.net,
                0,
                index,
                token_id,
                log_prob,
                given.is_some(),
                out.intervened,
            )?;
            if ctx.report != Report::default() {
                let row = if ctx.report.top_k > 0 {
                    log_probs.to_vec1::<f32>()?
                } else {
                    Vec::new()
                };
                (step.candidates, step.scores) = ctx.reported(&self.tgt, &out, &row, 0)?;
            }
            let flow = on_step(&step);
            steps.push(step);
            if token_id == EOS_ID {
                return Ok((steps, false));
            }
            if flow.is_break() {
                return Ok((steps, true));
            }
            prev = Tensor::new(&[token_id], &self.device)?;
            state = out.net.state;
        }
        Ok((steps, false))
    }
}

/// One decoded sentence: its steps, whether the callback stopped it, the beam's hypotheses
/// (beam search only) and the encoder self-attention.
pub(crate) struct Decoded {
    pub steps: Vec<DecodeStep>,
    pub stopped: bool,
    pub hypotheses: Vec<Hypothesis>,
    pub encoder_attention: Option<EncoderAttention>,
}

/// Encoder self-attention of one sentence, `[layer][head][query][key]`.
pub type EncoderAttention = Vec<Vec<Vec<Vec<f32>>>>;

/// `(L, heads, S, S)` to nested vectors.
pub(crate) fn nested4(t: &Tensor) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
    let mut out = Vec::new();
    for l in 0..t.dim(0)? {
        out.push(t.i(l)?.to_vec3::<f32>()?);
    }
    Ok(out)
}
