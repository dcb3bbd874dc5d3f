//! One decoding step as every decoder emits it ([`DecodeStep`], with a Transformer's
//! [`StepHeads`], the [`Candidate`] tokens the decoder weighed and, on request, the
//! [`StepScores`] its attention came from), beam search's [`Hypothesis`], the
//! [`Intervention`]s that force a step's attention, and what every step of one decoding
//! shares ([`StepContext`]): the types greedy, forced, prefixed and beam decoding have in
//! common, so that none of them depends on another.

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

/// One of the most likely next tokens at a step, as the decoder saw them before choosing.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub token_id: u32,
    /// The piece (`</s>` for the end of the sentence).
    pub token: String,
    /// Natural log of the probability the model gave it.
    pub log_prob: f32,
}

/// The attention scores of one step before they became weights: what the scorer computed
/// (additive energy, general or dot product, a Transformer head's scaled dot product) for
/// each source token, before the temperature and the distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct StepScores {
    /// Source position of the first score: a segmented input's sentence attends only to its
    /// own tokens, so its scores cover `first..first + len`.
    pub first: usize,
    /// `[layer][head][source]`; one layer of one head for a GRU.
    pub values: Vec<Vec<Vec<f32>>>,
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
    /// True when the token was given, not chosen by the model: a forced target or prefix, or
    /// the `</s>` an imported model's generation settings force at its length limit.
    pub forced: bool,
    /// True when an intervention set this step's attention.
    pub intervened: bool,
    /// Per layer and head (Transformer only).
    pub heads: Option<StepHeads>,
    /// The input sentence this step translates (0 unless the input was segmented into
    /// several, see [`crate::decoding::sentences`]).
    pub sentence: usize,
    /// The most likely tokens at this step, best first (as many as
    /// [`crate::DecodeOptions::top_k`] asks; none by default).
    pub candidates: Vec<Candidate>,
    /// The attention scores before the distribution, when
    /// [`crate::DecodeOptions::scores`] asks for them.
    pub scores: Option<StepScores>,
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

/// What every step of one decoding shares: the network, the encoded source, the
/// interventions and what each step reports besides its token and attention.
pub(crate) struct StepContext<'a, N: EncoderDecoder> {
    pub network: &'a N,
    pub memory: &'a N::Memory,
    pub interventions: &'a [Intervention],
    pub report: Report,
}

/// What each step reports besides its token and attention: its `top_k` candidates and,
/// when `scores`, the attention scores before the distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub top_k: usize,
    pub scores: bool,
}

/// One network step with what the decoders need besides it.
pub(crate) struct CtxStep<S> {
    pub net: NetStep<S>,
    /// An intervention set this step's attention.
    pub intervened: bool,
    /// The masked scores the distribution received, one tensor per layer (`(B, S)` for a
    /// GRU, `(B, heads, 1, S)` for a Transformer); empty unless [`Report::scores`].
    pub scores: Vec<Tensor>,
}

impl<N: EncoderDecoder> StepContext<'_, N> {
    /// One network step at target position `index`, with the intervention for that step if
    /// any (a one-hot for every row, layer and head), else `dist`; keeps the scores when
    /// the report asks for them.
    pub fn step(
        &self,
        state: &N::State,
        prev: &Tensor,
        index: usize,
        dist: &mut Distribution,
    ) -> Result<CtxStep<N::State>> {
        let forced = self
            .interventions
            .iter()
            .find(|iv| iv.step == index)
            .map(|iv| iv.source);
        let keep = self.report.scores;
        let mut scores = Vec::new();
        let net = self.network.step(self.memory, state, prev, &mut |sc| {
            if keep {
                scores.push(sc.clone());
            }
            match forced {
                Some(j) => {
                    let s = sc.dim(D::Minus1)?;
                    let row = Tensor::from_vec(
                        crate::networks::attention::one_hot(s, j),
                        s,
                        sc.device(),
                    )?;
                    Ok(row.broadcast_as(sc.shape())?.contiguous()?)
                }
                None => dist.weights(sc),
            }
        })?;
        Ok(CtxStep {
            net,
            intervened: forced.is_some(),
            scores,
        })
    }

    /// The candidates and scores of batch row `row` of a step, as the report asks.
    pub fn reported(
        &self,
        tgt: &Vocab,
        step: &CtxStep<N::State>,
        log_probs: &[f32],
        row: usize,
    ) -> Result<(Vec<Candidate>, Option<StepScores>)> {
        let candidates = top_candidates(tgt, log_probs, self.report.top_k);
        let scores = if self.report.scores {
            let mut values = Vec::with_capacity(step.scores.len());
            for layer in &step.scores {
                let r = layer.i(row)?;
                let s = r.dim(D::Minus1)?;
                let heads = r.elem_count() / s.max(1);
                values.push(r.reshape((heads, s))?.to_vec2::<f32>()?);
            }
            Some(StepScores { first: 0, values })
        } else {
            None
        };
        Ok((candidates, scores))
    }
}

/// The `k` most likely tokens of a row of log probabilities, best first (ties by id).
///
/// One pass that keeps the best `k` so far in order: a token is compared with the worst of
/// them and moves in only when it beats it, which for a small `k` and a vocabulary of
/// thousands is nearly every token's only comparison.
pub(crate) fn top_candidates(tgt: &Vocab, log_probs: &[f32], k: usize) -> Vec<Candidate> {
    let k = k.min(log_probs.len());
    if k == 0 {
        return Vec::new();
    }
    // Better: the higher probability, then the lower id.
    let better = |a: (f32, u32), b: (f32, u32)| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).is_gt();
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (id, &p) in log_probs.iter().enumerate() {
        // Nearly every token is below the worst kept one: one float comparison.
        if best.len() == k && p < best[k - 1].0 {
            continue;
        }
        let c = (p, id as u32);
        if best.len() == k && !better(c, best[k - 1]) {
            continue;
        }
        let at = best
            .iter()
            .position(|&b| better(c, b))
            .unwrap_or(best.len());
        best.insert(at, c);
        best.truncate(k);
    }
    best.into_iter()
        .map(|(log_prob, id)| Candidate {
            token_id: id,
            token: tgt.piece(id),
            log_prob,
        })
        .collect()
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
        candidates: Vec::new(),
        scores: None,
    })
}

#[cfg(test)]
mod tests {
    use super::top_candidates;
    use crate::fixtures::tiny_translator;

    #[test]
    fn top_candidates_are_the_full_sort_s_first_k_ties_by_id() {
        let (t, _) = tiny_translator(1).unwrap();
        let v = t.target_vocab().len();
        // Values with many ties, in a scrambled order.
        let row: Vec<f32> = (0..v).map(|i| -(((i * 7919) % 13) as f32) / 4.0).collect();
        let mut sorted: Vec<u32> = (0..v as u32).collect();
        sorted.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        for k in [0, 1, 2, 5, 20, v, v + 3] {
            let got: Vec<u32> = top_candidates(t.target_vocab(), &row, k)
                .iter()
                .map(|c| c.token_id)
                .collect();
            assert_eq!(got, sorted[..k.min(v)], "k = {k}");
        }
    }
}
