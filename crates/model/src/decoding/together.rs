//! Decoding the plans of many requests in one batch, each still seeing its own steps as
//! they are made: what a server uses to serve concurrent streams with one matrix product a
//! step instead of one per stream.
//!
//! [`DecodePlan::batch_key`] says whether a plan can share a batch (greedy decoding with a
//! deterministic attention, no forced or prefixed target, no intervention) and with which
//! others (the same attention mode and temperature). A [`BatchDecoder`] holds a running
//! batch: [`BatchDecoder::admit`] encodes new plans (every sentence of each is a row) and
//! joins them to the rows already decoding, between any two steps; [`BatchDecoder::step`]
//! advances every row by one token, drops the rows that ended (and every row of a plan
//! whose callback stopped it) and hands each finished plan its translation at once.
//!
//! Each plan's callback sees exactly the steps, in the same order and coordinates, that
//! [`Translator::decode`] would have shown it: a segmented input's later sentences decode
//! alongside its first, and their steps are held back until the sentences before them have
//! ended. The translations agree with `decode`'s up to float rounding (a batch's products
//! add in another order). [`Translator::decode_together`] decodes a fixed set of plans.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use candle_core::{D, Device, IndexOp, Tensor};

use crate::config::{BOS_ID, EOS_ID, PAD_ID};
use crate::decoding::decode::{Decoded, EncoderAttention, Translation, nested4};
use crate::decoding::plan::DecodePlan;
use crate::decoding::sentences::{Placement, join_parts};
use crate::decoding::step::{
    DecodeStep, Report, StepContext, StepHeads, StepScores, top_candidates,
};
use crate::decoding::translator::Translator;
use crate::kernels::fused_loss::log_sum_exp;
use crate::networks::attention::{Distribution, Mode};
use crate::networks::{EncoderDecoder, NetStep, Network};
use crate::{Error, Result};

/// What plans that share a batch have in common: the attention distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    mode: Mode,
    /// The temperature's bits (an `f32` is not `Eq`).
    temperature: u32,
}

impl DecodePlan {
    /// The key of the plans this one can be decoded with in a [`BatchDecoder`], or `None`
    /// when it must be decoded alone: beam search, a forced or prefixed target,
    /// interventions, or an attention drawn at random.
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

/// One sentence of one plan: a row of the batch while it decodes.
struct Row {
    /// Source pieces of the sentence (its `</s>` included).
    len: usize,
    max_len: usize,
    eos_last: bool,
    steps: Vec<DecodeStep>,
    ended: bool,
    encoder_attention: Option<EncoderAttention>,
}

/// A plan in the batch: its rows (one per sentence, in order) and how far its steps have
/// been shown.
struct Open {
    plan: DecodePlan,
    rows: Vec<Row>,
    /// The sentence whose steps go out as they are made; later ones wait.
    live: usize,
    /// The whole translation's step index at which sentence `live` starts.
    offset: usize,
    /// The callback asked to stop: at this sentence, after this many of its steps.
    stopped: Option<(usize, usize)>,
}

impl Open {
    /// Neither stopped nor has every sentence ended.
    fn open(&self) -> bool {
        self.stopped.is_none() && self.rows.iter().any(|r| !r.ended)
    }

    /// Shows plan `id` the steps that are due after its sentence `k` took a step: that step
    /// if `k` is the live sentence, then, when it has ended, the held steps of the next.
    fn show(
        &mut self,
        id: usize,
        k: usize,
        on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
    ) {
        if self.stopped.is_some() || k != self.live {
            return;
        }
        let sentences = self.rows.len();
        let mut from = self.rows[k].steps.len() - 1;
        loop {
            let row = &self.rows[self.live];
            let place = Placement::of(&self.plan, self.live, self.offset);
            for (n, step) in row.steps.iter().enumerate().skip(from) {
                let flow = if sentences == 1 {
                    on_step(id, step)
                } else {
                    on_step(id, &place.step(step))
                };
                if flow.is_break() {
                    self.stopped = Some((self.live, n + 1));
                    return;
                }
            }
            if !row.ended || self.live + 1 == sentences {
                return;
            }
            self.offset += row.steps.len();
            self.live += 1;
            from = 0;
        }
    }
}

/// The network side of a running batch, whatever the architecture: the encoded sources
/// and decoder state of the rows, in batch order.
trait Rows {
    /// Encodes `(b, s)` padded sources and appends them as new rows; returns each new
    /// row's encoder self-attention over its own `lens[r]` positions, where the network
    /// has one.
    fn admit(
        &mut self,
        ids: Vec<u32>,
        mask: Vec<f32>,
        lens: &[usize],
    ) -> Result<Vec<Option<EncoderAttention>>>;

    /// One step of every row from the previous tokens `prev` `(B,)`; keeps the new state.
    /// Returns the step (without its state) and, when `scores`, the attention scores.
    fn step(
        &mut self,
        prev: &Tensor,
        dist: &mut Distribution,
        scores: bool,
    ) -> Result<(NetStep<()>, Vec<Tensor>)>;

    /// Keeps the rows `idx` (u32), in that order.
    fn keep(&mut self, idx: &Tensor) -> Result<()>;

    /// Drops every row.
    fn clear(&mut self);
}

/// [`Rows`] of the concrete network `N`.
struct NetRows<'m, N: EncoderDecoder> {
    net: &'m N,
    device: Device,
    batch: Option<(N::Memory, N::State)>,
}

impl<N: EncoderDecoder> Rows for NetRows<'_, N> {
    fn admit(
        &mut self,
        ids: Vec<u32>,
        mask: Vec<f32>,
        lens: &[usize],
    ) -> Result<Vec<Option<EncoderAttention>>> {
        let b = lens.len();
        let s = ids.len() / b.max(1);
        let memory = self.net.encode(
            &Tensor::from_vec(ids, (b, s), &self.device)?,
            &Tensor::from_vec(mask, (b, s), &self.device)?,
        )?;
        let mut attention = Vec::with_capacity(b);
        for (r, &len) in lens.iter().enumerate() {
            attention.push(match N::encoder_attention(&memory) {
                // (B, L, heads, S, S): the row's own block, without the padding.
                Some(enc) => Some(nested4(&enc.i(r)?.narrow(2, 0, len)?.narrow(3, 0, len)?)?),
                None => None,
            });
        }
        let state = self.net.initial_state(&memory)?;
        self.batch = Some(match self.batch.take() {
            Some((m, st)) => (N::join_memory(&m, &memory)?, N::join_state(&st, &state)?),
            None => (memory, state),
        });
        Ok(attention)
    }

    fn step(
        &mut self,
        prev: &Tensor,
        dist: &mut Distribution,
        scores: bool,
    ) -> Result<(NetStep<()>, Vec<Tensor>)> {
        let (memory, state) = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::Internal("a batch step with no rows".into()))?;
        let ctx = StepContext {
            network: self.net,
            memory,
            interventions: &[],
            report: Report { top_k: 0, scores },
        };
        let out = ctx.step(state, prev, 0, dist)?;
        let NetStep {
            logits,
            state,
            cross,
            self_attention,
        } = out.net;
        if let Some((_, st)) = &mut self.batch {
            *st = state;
        }
        let step = NetStep {
            logits,
            state: (),
            cross,
            self_attention,
        };
        Ok((step, out.scores))
    }

    fn keep(&mut self, idx: &Tensor) -> Result<()> {
        if let Some((m, st)) = self.batch.take() {
            self.batch = Some((N::select_memory(&m, idx)?, N::select_state(&st, idx)?));
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.batch = None;
    }
}

/// A batch of plans decoding together, open to new plans between steps; see the module
/// documentation. Plans are named by the caller's ids.
pub struct BatchDecoder<'m> {
    translator: &'m Translator,
    key: Option<BatchKey>,
    dist: Option<Distribution>,
    rows: Box<dyn Rows + 'm>,
    plans: BTreeMap<usize, Open>,
    /// Batch position → (plan id, sentence).
    active: Vec<(usize, usize)>,
    /// The token each active row decodes from next.
    prev: Vec<u32>,
}

impl<'m> BatchDecoder<'m> {
    /// An empty batch of `translator`'s model.
    pub fn new(translator: &'m Translator) -> Self {
        let device = translator.device.clone();
        let rows: Box<dyn Rows + 'm> = match translator.network() {
            Network::Gru(net) => Box::new(NetRows {
                net,
                device,
                batch: None,
            }),
            Network::Transformer(net) => Box::new(NetRows {
                net,
                device,
                batch: None,
            }),
        };
        BatchDecoder {
            translator,
            key: None,
            dist: None,
            rows,
            plans: BTreeMap::new(),
            active: Vec::new(),
            prev: Vec::new(),
        }
    }

    /// Rows decoding now (sentences of the open plans that have not ended).
    pub fn rows(&self) -> usize {
        self.active.len()
    }

    /// No plan is decoding.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Encodes `plans` (ids unused in this batch, each plan's key the batch's) and joins
    /// their sentences to the batch; they take their first step with the next
    /// [`Self::step`].
    pub fn admit(&mut self, plans: Vec<(usize, DecodePlan)>) -> Result<()> {
        if plans.is_empty() {
            return Ok(());
        }
        if self.plans.is_empty() {
            self.key = None;
        }
        for (id, plan) in &plans {
            let key = plan.batch_key();
            if key.is_none() || (self.key.is_some() && key != self.key) {
                return Err(Error::Internal(
                    "plans decoded together must be greedy and share their attention mode".into(),
                ));
            }
            if self.plans.contains_key(id) {
                return Err(Error::Internal(format!(
                    "plan {id} is already in the batch"
                )));
            }
            self.key = key;
            if self.dist.is_none() {
                self.dist = Some(plan.distribution());
            }
        }
        let sentences: Vec<(usize, usize, &[u32])> = plans
            .iter()
            .flat_map(|(id, plan)| {
                plan.source()
                    .sentences
                    .iter()
                    .enumerate()
                    .map(move |(k, s)| (*id, k, s.ids.as_slice()))
            })
            .collect();
        let s = sentences
            .iter()
            .map(|(_, _, ids)| ids.len())
            .max()
            .unwrap_or(1);
        let mut ids = vec![PAD_ID; sentences.len() * s];
        let mut mask = vec![0f32; sentences.len() * s];
        for (r, (_, _, src)) in sentences.iter().enumerate() {
            ids[r * s..r * s + src.len()].copy_from_slice(src);
            mask[r * s..r * s + src.len()].fill(1.0);
        }
        let lens: Vec<usize> = sentences.iter().map(|(_, _, ids)| ids.len()).collect();
        let positions: Vec<(usize, usize)> = sentences.iter().map(|&(id, k, _)| (id, k)).collect();
        let mut attention = self.rows.admit(ids, mask, &lens)?.into_iter();
        for (id, plan) in plans {
            let rows = plan
                .source()
                .sentences
                .iter()
                .enumerate()
                .map(|(k, sentence)| {
                    let targets = plan.targets(k);
                    Row {
                        len: sentence.ids.len(),
                        max_len: targets.max_len,
                        eos_last: targets.eos_last,
                        steps: Vec::new(),
                        ended: false,
                        encoder_attention: attention.next().flatten(),
                    }
                })
                .collect();
            self.plans.insert(
                id,
                Open {
                    plan,
                    rows,
                    live: 0,
                    offset: 0,
                    stopped: None,
                },
            );
        }
        self.prev.extend(positions.iter().map(|_| BOS_ID));
        self.active.extend(positions);
        Ok(())
    }

    /// One token for every row: `on_step(id, step)` sees plan `id`'s steps as
    /// [`Translator::decode`] would show them and may stop that plan alone;
    /// `on_done(id, translation)` gets a plan's translation as soon as its last sentence
    /// has ended (or it was stopped), and the plan leaves the batch.
    pub fn step(
        &mut self,
        on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Translation),
    ) -> Result<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        let device = &self.translator.device;
        let tgt = self.translator.target_vocab();
        let open = |id: &usize| self.plans.get(id);
        let scores = self
            .active
            .iter()
            .any(|(id, _)| open(id).is_some_and(|o| o.plan.options().scores));
        let dist = self
            .dist
            .as_mut()
            .ok_or_else(|| Error::Internal("a batch step before any plan".into()))?;
        let prev = Tensor::new(self.prev.as_slice(), device)?;
        let (net, layer_scores) = self.rows.step(&prev, dist, scores)?;
        // Log probabilities are the logits minus each row's log-sum-exp: the chosen token's
        // and the candidates' are read off the logits, the whole log-softmax never written.
        let v = net.logits.dim(D::Minus1)?;
        let logits = net.logits.flatten_all()?.to_vec1::<f32>()?;
        let lse = log_sum_exp(v, &logits);
        let rows: Vec<&[f32]> = logits.chunks_exact(v).collect();
        // A model whose authors force `</s>` gets it at the length limit.
        let mut forced = Vec::with_capacity(self.active.len());
        for (id, k) in &self.active {
            let row = self.row(*id, *k)?;
            forced.push(row.eos_last && row.steps.len() + 1 == row.max_len);
        }
        let tokens: Vec<u32> = rows
            .iter()
            .zip(&forced)
            .map(|(row, &f)| if f { EOS_ID } else { first_argmax(row) })
            .collect();
        let host = HostStep::new(&net)?;
        let mut done = Vec::new();
        for (pos, &(id, k)) in self.active.iter().enumerate() {
            let plan = self
                .plans
                .get_mut(&id)
                .ok_or_else(|| Error::Internal(format!("row of plan {id}, which is gone")))?;
            let (top_k, want_scores) = (plan.plan.options().top_k, plan.plan.options().scores);
            let row = &mut plan.rows[k];
            let index = row.steps.len();
            let mut step = DecodeStep {
                index,
                token_id: tokens[pos],
                token: tgt.piece(tokens[pos]),
                attention: host.attention(pos, row.len),
                log_prob: rows[pos][tokens[pos] as usize] - lse[pos],
                forced: forced[pos],
                intervened: false,
                heads: host.heads(pos, row.len, index + 1),
                sentence: 0,
                candidates: Vec::new(),
                scores: None,
            };
            if top_k > 0 {
                step.candidates = top_candidates(tgt, rows[pos], top_k);
                for c in &mut step.candidates {
                    c.log_prob -= lse[pos];
                }
            }
            if want_scores {
                step.scores = Some(row_scores(&layer_scores, pos, row.len)?);
            }
            row.steps.push(step);
            let ended = tokens[pos] == EOS_ID || row.steps.len() >= row.max_len;
            let was_open = plan.open();
            plan.rows[k].ended = ended;
            plan.show(id, k, on_step);
            if was_open && !plan.open() {
                done.push(id);
            }
        }
        for id in done {
            if let Some(plan) = self.plans.remove(&id) {
                on_done(id, self.translator.plan_translation(plan)?);
            }
        }
        let keep: Vec<usize> = (0..self.active.len())
            .filter(|&pos| {
                let (id, k) = self.active[pos];
                self.plans.get(&id).is_some_and(|p| !p.rows[k].ended)
            })
            .collect();
        if keep.is_empty() {
            self.rows.clear();
        } else if keep.len() < self.active.len() {
            let idx: Vec<u32> = keep.iter().map(|&p| p as u32).collect();
            self.rows.keep(&Tensor::new(idx.as_slice(), device)?)?;
        }
        self.prev = keep.iter().map(|&pos| tokens[pos]).collect();
        self.active = keep.iter().map(|&pos| self.active[pos]).collect();
        Ok(())
    }

    fn row(&self, id: usize, k: usize) -> Result<&Row> {
        self.plans
            .get(&id)
            .and_then(|p| p.rows.get(k))
            .ok_or_else(|| Error::Internal(format!("no sentence {k} of plan {id} in the batch")))
    }
}

impl Translator {
    /// Decodes `plans` (which must share one [`DecodePlan::batch_key`]) together in one
    /// [`BatchDecoder`]: `on_step(i, step)` and `on_done(i, translation)` as in
    /// [`BatchDecoder::step`], with `i` the plan's index; `between_steps` runs after every
    /// batch step.
    pub fn decode_together(
        &self,
        plans: &[&DecodePlan],
        on_step: &mut dyn FnMut(usize, &DecodeStep) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Translation),
        between_steps: &mut dyn FnMut(),
    ) -> Result<()> {
        let mut batch = BatchDecoder::new(self);
        batch.admit(plans.iter().map(|p| (*p).clone()).enumerate().collect())?;
        while !batch.is_empty() {
            batch.step(on_step, on_done)?;
            between_steps();
        }
        Ok(())
    }

    /// A plan's translation from its rows, as [`Self::decode`] would have returned it.
    fn plan_translation(&self, open: Open) -> Result<Translation> {
        let Open {
            plan,
            rows,
            stopped: stop,
            ..
        } = open;
        let sentences = rows.len();
        let mut parts = Vec::new();
        for (k, row) in rows.into_iter().enumerate() {
            let mut steps = row.steps;
            let stopped = match stop {
                Some((at, _)) if k > at => break,
                Some((at, n)) if k == at => {
                    steps.truncate(n);
                    true
                }
                _ => false,
            };
            let decoded = Decoded {
                steps,
                stopped,
                hypotheses: Vec::new(),
                encoder_attention: row.encoder_attention,
            };
            let sentence = &plan.source().sentences[k];
            parts.push(self.sentence_translation(sentence, plan.mode(), decoded)?);
        }
        match (sentences, parts.len()) {
            (1, 1) => Ok(parts.remove(0)),
            _ => Ok(join_parts(&plan, parts)),
        }
    }
}

/// The index of a row's largest value, the first of equal ones (as candle's `argmax`).
fn first_argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if row[best] < x {
            best = j;
        }
    }
    best as u32
}

/// A batch step's attention, copied to the host once for all rows.
struct HostStep {
    /// `(B, L, heads, S)` cross-attention.
    cross: Vec<f32>,
    /// `(B, L, heads, T)` decoder self-attention (Transformer only).
    self_attention: Option<Vec<f32>>,
    layers: usize,
    heads: usize,
    /// Source positions and self-attention slots of the padded batch.
    s: usize,
    t: usize,
}

impl HostStep {
    fn new(net: &NetStep<()>) -> Result<Self> {
        let (_, layers, heads, s) = net.cross.dims4()?;
        let (self_attention, t) = match &net.self_attention {
            Some(sa) => (
                Some(sa.flatten_all()?.to_vec1::<f32>()?),
                sa.dim(D::Minus1)?,
            ),
            None => (None, 0),
        };
        Ok(HostStep {
            cross: net.cross.flatten_all()?.to_vec1::<f32>()?,
            self_attention,
            layers,
            heads,
            s,
            t,
        })
    }

    /// Row `pos`'s cross-attention of `layer` and `head` over its own `len` positions.
    fn cross(&self, pos: usize, layer: usize, head: usize, len: usize) -> &[f32] {
        let at = ((pos * self.layers + layer) * self.heads + head) * self.s;
        &self.cross[at..at + len]
    }

    /// Row `pos`'s streamed attention row: the mean of the last layer's heads.
    fn attention(&self, pos: usize, len: usize) -> Vec<f32> {
        let mut row = vec![0f32; len];
        for h in 0..self.heads {
            for (r, w) in row.iter_mut().zip(self.cross(pos, self.layers - 1, h, len)) {
                *r += w;
            }
        }
        row.iter_mut().for_each(|r| *r /= self.heads as f32);
        row
    }

    /// Row `pos`'s every layer and head: cross-attention over its `len` source positions
    /// and self-attention over its own `positions` (the last slots of a joined cache).
    fn heads(&self, pos: usize, len: usize, positions: usize) -> Option<StepHeads> {
        let sa = self.self_attention.as_ref()?;
        let mut cross = Vec::with_capacity(self.layers);
        let mut own = Vec::with_capacity(self.layers);
        for l in 0..self.layers {
            cross.push(
                (0..self.heads)
                    .map(|h| self.cross(pos, l, h, len).to_vec())
                    .collect(),
            );
            own.push(
                (0..self.heads)
                    .map(|h| {
                        let end = ((pos * self.layers + l) * self.heads + h + 1) * self.t;
                        sa[end - positions.min(self.t)..end].to_vec()
                    })
                    .collect(),
            );
        }
        Some(StepHeads {
            cross,
            self_attention: own,
        })
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

#[cfg(test)]
mod tests;
