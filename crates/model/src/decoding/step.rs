//! One decoding step as every decoder emits it ([`DecodeStep`], with a Transformer's
//! [`StepHeads`]), beam search's [`Hypothesis`], the [`Intervention`]s that force a step's
//! attention, and what every step of one decoding shares ([`StepContext`]): the types greedy,
//! forced, prefixed and beam decoding have in common, so that none of them depends on
//! another.

use candle_core::{D, IndexOp, Tensor};

use crate::Result;
use crate::networks::attention::Distribution;
use crate::networks::{EncoderDecoder, NetStep};
use crate::vocab::Vocab;

/// Force the attention of decoding step `step` onto source position `source` (a one-hot),
/// then let decoding continue freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervention {
    pub step: usize,
    pub source: usize,
}

/// Every layer's and head's attention at one step (Transformer only).
#[derive(Clone, Debug, PartialEq)]
pub struct StepHeads {
    /// `[layer][head][source]` cross-attention actually used.
    pub cross: Vec<Vec<Vec<f32>>>,
    /// `[layer][head][0..=t]` masked decoder self-attention of this position.
    pub self_attention: Vec<Vec<Vec<f32>>>,
}

/// One decoding step, as emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeStep {
    /// 0-based target position.
    pub index: usize,
    pub token_id: u32,
    /// The emitted piece (`</s>` at the end).
    pub token: String,
    /// Attention over the source pieces used at this step; sums to 1. For a Transformer,
    /// the mean over the heads of the last layer's cross-attention.
    pub attention: Vec<f32>,
    /// Natural log of the probability the model gave this token.
    pub log_prob: f32,
    /// True when the token was given (forced target or prefix), not chosen by the model.
    pub forced: bool,
    /// True when an intervention set this step's attention.
    pub intervened: bool,
    /// Per layer and head (Transformer only).
    pub heads: Option<StepHeads>,
    /// The input sentence this step translates (0 unless the input was segmented into
    /// several, see [`crate::decoding::sentences`]).
    pub sentence: usize,
}

/// One finished beam-search hypothesis.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    pub translation: String,
    pub steps: Vec<DecodeStep>,
    /// Sum of the tokens' log probabilities.
    pub log_prob: f32,
    /// The ranking score: `log_prob` divided by the number of tokens.
    pub score: f32,
}

/// One input sentence of a [`crate::Translation`] and the part of the output that translates it.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceSpan {
    /// The sentence as it was in the input.
    pub text: String,
    /// Its source positions (its pieces and its `</s>`).
    pub source: std::ops::Range<usize>,
    /// The decoding steps that translate it.
    pub target: std::ops::Range<usize>,
    /// Its translation, detokenized.
    pub translation: String,
}

/// What every step of one decoding shares: the network, the encoded source and the
/// interventions.
pub(crate) struct StepContext<'a, N: EncoderDecoder> {
    pub network: &'a N,
    pub memory: &'a N::Memory,
    pub interventions: &'a [Intervention],
}

impl<N: EncoderDecoder> StepContext<'_, N> {
    /// One network step at target position `index`, with the intervention for that step if
    /// any (a one-hot for every row, layer and head), else `dist`. Returns whether an
    /// intervention applied.
    pub fn step(
        &self,
        state: &N::State,
        prev: &Tensor,
        index: usize,
        dist: &mut Distribution,
    ) -> Result<(NetStep<N::State>, bool)> {
        let forced = self
            .interventions
            .iter()
            .find(|iv| iv.step == index)
            .map(|iv| iv.source);
        let net = match forced {
            Some(j) => self.network.step(self.memory, state, prev, &mut |sc| {
                let s = sc.dim(D::Minus1)?;
                let row =
                    Tensor::from_vec(crate::networks::attention::one_hot(s, j), s, sc.device())?;
                Ok(row.broadcast_as(sc.shape())?.contiguous()?)
            })?,
            None => self
                .network
                .step(self.memory, state, prev, &mut |sc| dist.weights(sc))?,
        };
        Ok((net, forced.is_some()))
    }
}

/// The [`DecodeStep`] of batch row `row` of a network step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_step<S>(
    tgt: &Vocab,
    net: &NetStep<S>,
    row: usize,
    index: usize,
    token_id: u32,
    log_prob: f32,
    forced: bool,
    intervened: bool,
) -> Result<DecodeStep> {
    let cross = net.cross.i(row)?; // (L, heads, S)
    let layers = cross.dim(0)?;
    let attention = cross.i(layers - 1)?.mean(0)?.to_vec1::<f32>()?;
    let heads = match &net.self_attention {
        Some(sa) => Some(StepHeads {
            cross: cross.to_vec3::<f32>()?,
            self_attention: sa.i(row)?.to_vec3::<f32>()?,
        }),
        None => None,
    };
    Ok(DecodeStep {
        index,
        token_id,
        token: tgt.piece(token_id),
        attention,
        log_prob,
        forced,
        intervened,
        heads,
        sentence: 0,
    })
}
