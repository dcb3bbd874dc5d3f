//! Decoding the plans of many requests in one batch, each still seeing its own steps as
//! they are made: what a server uses to serve concurrent streams with one matrix product a
//! step instead of one per stream.
//!
//! [`DecodePlan::batch_key`] says whether a plan can share a batch (greedy decoding with a
//! deterministic attention, no forced or prefixed target, no intervention) and with which
//! others (the same attention mode and temperature). [`Translator::decode_together`] pads
//! every sentence of every plan into one batch, encodes it once and steps it until each
//! row has ended, dropping ended rows (and every row of a plan whose callback stopped it)
//! from the batch as it goes. Each plan's callback sees exactly the steps, in the same
//! order and coordinates, that [`Translator::decode`] would have shown it: a segmented
//! input's later sentences decode alongside its first, and their steps are held back until
//! the sentences before them have ended. The translations agree with `decode`'s up to float
//! rounding (a batch's products add in another order).

use std::ops::ControlFlow;

use candle_core::{D, IndexOp, Tensor};

use crate::config::{BOS_ID, EOS_ID, PAD_ID};
use crate::decoding::decode::{Decoded, EncoderAttention, Translation, nested4};
use crate::decoding::plan::DecodePlan;
use crate::decoding::sentences::{Placement, join_parts};
use crate::decoding::step::{
    DecodeStep, Report, StepContext, StepScores, make_step, top_candidates,
};
use crate::decoding::translator::Translator;
use crate::networks::EncoderDecoder;
use crate::networks::attention::Mode;
use crate::with_network;
use crate::{Error, Result};

/// What plans that share a batch have in common: the attention distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    mode: Mode,
    /// The temperature's bits (an `f32` is not `Eq`).
    temperature: u32,
}

impl DecodePlan {
    /// The key of the plans this one can be decoded with by
    /// [`Translator::decode_together`], or `None` when it must be decoded alone: beam
    /// search, a forced or prefixed target, interventions, or an attention drawn at random.
    pub fn batch_key(&self) -> Option<BatchKey> {
        let opts = self.options();
        let alone = opts.beam > 1
            || opts.force_target.is_some()
            || opts.target_prefix.is_some()
            || !opts.interventions.is_empty()
            || matches!(self.mode(), Mode::Sampled | Mode::Shuffled);
        let dist = self.distribution();
        (!alone).then_some(BatchKey {
            mode: dist.mode,
            temperature: dist.temperature.to_bits(),
        })
    }
}

/// One sentence of one plan: a row of the batch.
struct Row {
    plan: usize,
    sentence: usize,
    /// Source pieces of the sentence (its `</s>` included).
    len: usize,
    max_len: usize,
    eos_last: bool,
    steps: Vec<DecodeStep>,
    ended: bool,
    encoder_attention: Option<EncoderAttention>,
}

/// How far a plan's steps have been shown to its callback.
struct Shown {
    /// The sentence whose steps go out as they are made; later ones wait.
    live: usize,
    /// The whole translation's step index at which sentence `live` starts.
    offset: usize,
    /// The callback asked to stop: at this sentence, after this many of its steps.
    stopped: Option<(usize, usize)>,
}

impl Translator {
    /// Decodes `plans` (which must share one [`DecodePlan::batch_key`]) together in one
    /// batch. `on_step(i, step)` sees plan `i`'s steps as [`Self::decode`] would show them
    /// and may stop that plan alone; `on_done(i, translation)` gets plan `i`'s translation
    /// as soon as its last sentence has ended (or it was stopped), while the others go on;
    /// `between_steps` runs after every batch step (to let other work run). An error ends
    /// the batch: the plans not done yet get no translation.
    pub fn decode_together(
        &self,
        plans: &[&DecodePlan],
        on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Translation),
        between_steps: &mut dyn FnMut(),
    ) -> Result<()> {
        let Some(first) = plans.first() else {
            return Ok(());
        };
        let key = first.batch_key();
        if key.is_none() || plans.iter().any(|p| p.batch_key() != key) {
            return Err(Error::Internal(
                "plans decoded together must be greedy and share their attention mode".into(),
            ));
        }
        let mut rows = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            for (k, sentence) in plan.source().sentences.iter().enumerate() {
                let targets = plan.targets(k);
                rows.push(Row {
                    plan: i,
                    sentence: k,
                    len: sentence.ids.len(),
                    max_len: targets.max_len,
                    eos_last: targets.eos_last,
                    steps: Vec::new(),
                    ended: false,
                    encoder_attention: None,
                });
            }
        }
        let mut shown: Vec<Shown> = plans
            .iter()
            .map(|_| Shown {
                live: 0,
                offset: 0,
                stopped: None,
            })
            .collect();
        let mut batch = Batch {
            plans,
            rows: &mut rows,
            shown: &mut shown,
            on_step,
            on_done,
        };
        with_network!(&self.network, |m| {
            self.step_rows(m, &mut batch, between_steps)
        })
    }

    /// Plan `i`'s translation from its rows (taking their steps), as [`Self::decode`]
    /// would have returned it.
    fn plan_translation(&self, batch: &mut Batch, i: usize) -> Result<Translation> {
        let plan = batch.plans[i];
        let stop = batch.shown[i].stopped;
        let mut parts = Vec::new();
        for row in batch.rows.iter_mut().filter(|r| r.plan == i) {
            let mut steps = std::mem::take(&mut row.steps);
            let stopped = match stop {
                Some((k, _)) if row.sentence > k => break,
                Some((k, n)) if row.sentence == k => {
                    steps.truncate(n);
                    true
                }
                _ => false,
            };
            let decoded = Decoded {
                steps,
                stopped,
                hypotheses: Vec::new(),
                encoder_attention: row.encoder_attention.take(),
            };
            let sentence = &plan.source().sentences[row.sentence];
            parts.push(self.sentence_translation(sentence, plan.mode(), decoded)?);
        }
        match (plan.source().sentences.len(), parts.len()) {
            (1, 1) => Ok(parts.remove(0)),
            _ => Ok(join_parts(plan, parts)),
        }
    }

    /// The batch loop of [`Self::decode_together`] with the concrete network `net`: fills
    /// each row's steps (and encoder self-attention) and shows them through `on_step`.
    fn step_rows<N: EncoderDecoder>(
        &self,
        net: &N,
        batch: &mut Batch,
        between_steps: &mut dyn FnMut(),
    ) -> Result<()> {
        let plans = batch.plans;
        let rows = &batch.rows;
        let (b, s) = (rows.len(), rows.iter().map(|r| r.len).max().unwrap_or(1));
        let mut ids = vec![PAD_ID; b * s];
        let mut mask = vec![0f32; b * s];
        for (r, row) in batch.rows.iter().enumerate() {
            let src = &plans[row.plan].source().sentences[row.sentence].ids;
            ids[r * s..r * s + src.len()].copy_from_slice(src);
            mask[r * s..r * s + src.len()].fill(1.0);
        }
        let device = &self.device;
        let mut memory = net.encode(
            &Tensor::from_vec(ids, (b, s), device)?,
            &Tensor::from_vec(mask, (b, s), device)?,
        )?;
        if let Some(enc) = N::encoder_attention(&memory) {
            // (B, L, heads, S, S): each row's own block, without the padding.
            for (r, row) in batch.rows.iter_mut().enumerate() {
                let own = enc.i(r)?.narrow(2, 0, row.len)?.narrow(3, 0, row.len)?;
                row.encoder_attention = Some(nested4(&own)?);
            }
        }
        let report = Report {
            top_k: 0,
            scores: plans.iter().any(|p| p.options().scores),
        };
        let candidates = plans.iter().any(|p| p.options().top_k > 0);
        let mut dist = plans[0].distribution();
        let mut state = net.initial_state(&memory)?;
        // Batch position → row.
        let mut active: Vec<usize> = (0..b).collect();
        let mut prev = Tensor::full(BOS_ID, b, device)?;
        for index in 0.. {
            if active.is_empty() {
                break;
            }
            let ctx = StepContext {
                network: net,
                memory: &memory,
                interventions: &[],
                report,
            };
            let out = ctx.step(&state, &prev, index, &mut dist)?;
            let log_probs = candle_nn::ops::log_softmax(&out.net.logits, D::Minus1)?;
            let best = log_probs.argmax(D::Minus1)?.to_vec1::<u32>()?;
            // A model whose authors force `</s>` gets it at the length limit.
            let forced: Vec<bool> = active
                .iter()
                .map(|&r| batch.rows[r].eos_last && index + 1 == batch.rows[r].max_len)
                .collect();
            let tokens: Vec<u32> = (0..active.len())
                .map(|pos| if forced[pos] { EOS_ID } else { best[pos] })
                .collect();
            let chosen = log_probs
                .gather(&Tensor::new(tokens.as_slice(), device)?.unsqueeze(1)?, 1)?
                .squeeze(1)?
                .to_vec1::<f32>()?;
            let all = if candidates {
                log_probs.to_vec2::<f32>()?
            } else {
                Vec::new()
            };
            let mut done = Vec::new();
            for (pos, &r) in active.iter().enumerate() {
                let row = &mut batch.rows[r];
                let opts = plans[row.plan].options();
                let token_id = tokens[pos];
                let mut step = make_step(
                    &self.tgt,
                    &out.net,
                    pos,
                    index,
                    token_id,
                    chosen[pos],
                    forced[pos],
                    false,
                )?;
                trim(&mut step, row.len);
                if opts.top_k > 0 {
                    step.candidates = top_candidates(&self.tgt, &all[pos], opts.top_k);
                }
                if opts.scores {
                    step.scores = Some(row_scores(&out.scores, pos, row.len)?);
                }
                row.steps.push(step);
                let ended = token_id == EOS_ID || row.steps.len() >= row.max_len;
                let i = row.plan;
                let was_open = batch.open(i);
                batch.rows[r].ended = ended;
                batch.show(r);
                if was_open && !batch.open(i) {
                    done.push(i);
                }
            }
            for i in done {
                let t = self.plan_translation(batch, i)?;
                (batch.on_done)(i, t);
            }
            let keep: Vec<usize> = active
                .iter()
                .enumerate()
                .filter(|&(_, &r)| {
                    let row = &batch.rows[r];
                    !row.ended && batch.shown[row.plan].stopped.is_none()
                })
                .map(|(pos, _)| pos)
                .collect();
            let next: Vec<u32> = keep.iter().map(|&pos| tokens[pos]).collect();
            if keep.len() == active.len() {
                state = out.net.state;
            } else if !keep.is_empty() {
                let idx = Tensor::new(
                    keep.iter()
                        .map(|&p| p as u32)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    device,
                )?;
                memory = N::select_memory(&memory, &idx)?;
                state = N::select_state(&out.net.state, &idx)?;
            }
            active = keep.iter().map(|&pos| active[pos]).collect();
            prev = Tensor::from_vec(next, active.len(), device)?;
            between_steps();
        }
        Ok(())
    }
}

/// Cuts a padded row's step down to the row's own `len` source positions.
fn trim(step: &mut DecodeStep, len: usize) {
    step.attention.truncate(len);
    if let Some(heads) = &mut step.heads {
        for head in heads.cross.iter_mut().flatten() {
            head.truncate(len);
        }
    }
}

/// Batch position `pos`'s attention scores, one `(B, S)` or `(B, heads, 1, S)` tensor per
/// layer, over its own `len` source positions.
fn row_scores(layers: &[Tensor], pos: usize, len: usize) -> Result<StepScores> {
    let mut values = Vec::with_capacity(layers.len());
    for layer in layers {
        let r = layer.i(pos)?;
        let s = r.dim(D::Minus1)?;
        let heads = r.elem_count() / s.max(1);
        let mut rows = r.reshape((heads, s))?.to_vec2::<f32>()?;
        rows.iter_mut().for_each(|h| h.truncate(len));
        values.push(rows);
    }
    Ok(StepScores { first: 0, values })
}

/// A batch in progress: its plans and rows, how far each plan's steps have been shown, and
/// the callbacks.
struct Batch<'a, 'p> {
    plans: &'a [&'p DecodePlan],
    rows: &'a mut [Row],
    shown: &'a mut [Shown],
    on_step: &'a mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
    on_done: &'a mut dyn FnMut(usize, Translation),
}

impl Batch<'_, '_> {
    /// Plan `i` is neither stopped nor has every one of its sentences ended.
    fn open(&self, i: usize) -> bool {
        self.shown[i].stopped.is_none() && self.rows.iter().any(|r| r.plan == i && !r.ended)
    }

    /// Shows plan `rows[r].plan` the steps that are due after row `r` took a step: the
    /// step itself if its sentence is the live one, then, when that sentence has ended,
    /// the held steps of the next sentences.
    fn show(&mut self, r: usize) {
        let i = self.rows[r].plan;
        let plan = self.plans[i];
        let sh = &mut self.shown[i];
        if sh.stopped.is_some() || self.rows[r].sentence != sh.live {
            return;
        }
        // This plan's rows are consecutive, in sentence order.
        let first = r - self.rows[r].sentence;
        let sentences = plan.source().sentences.len();
        let mut from = self.rows[r].steps.len() - 1;
        loop {
            let row = &self.rows[first + sh.live];
            let place = Placement::of(plan, sh.live, sh.offset);
            for (n, step) in row.steps.iter().enumerate().skip(from) {
                let flow = if sentences == 1 {
                    (self.on_step)(i, step)
                } else {
                    (self.on_step)(i, &place.step(step))
                };
                if flow.is_break() {
                    sh.stopped = Some((sh.live, n + 1));
                    return;
                }
            }
            if !row.ended || sh.live + 1 == sentences {
                return;
            }
            sh.offset += row.steps.len();
            sh.live += 1;
            from = 0;
        }
    }
}

#[cfg(test)]
mod tests;
