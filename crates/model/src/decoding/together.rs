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
//! add in another order). The network side of the batch is in [`rows`] (whatever the
//! architecture), and reading each row's step off the batch's tensors in [`host`].

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use candle_core::{D, Tensor};

use crate::config::{BOS_ID, EOS_ID, PAD_ID};
use crate::decoding::decode::{Decoded, EncoderAttention, Translation};
use crate::decoding::plan::DecodePlan;
use crate::decoding::sentences::{Placement, join_parts};
use crate::decoding::step::{DecodeStep, top_candidates};
use crate::decoding::translator::Translator;
use crate::kernels::fused_loss::log_sum_exp;
use crate::networks::Network;
use crate::networks::attention::{Distribution, Mode};
use crate::{Error, Result};
use host::{HostStep, first_argmax, row_scores};
use rows::{NetRows, Rows};

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

/// One sentence of one plan: a row of the batch while it decodes (its source and limits
/// are the plan's).
struct Row {
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
        // An empty batch takes plans of any key; its distribution comes with the first.
        if self.plans.is_empty() {
            (self.key, self.dist) = (None, None);
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
                .map(|_| Row {
                    steps: Vec::new(),
                    ended: false,
                    encoder_attention: attention.next().flatten(),
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
        for &(id, k) in &self.active {
            let plan = self.open_plan(id)?;
            let targets = plan.plan.targets(k);
            forced.push(targets.eos_last && plan.rows[k].steps.len() + 1 == targets.max_len);
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
            let len = plan.plan.source().sentences[k].ids.len();
            let max_len = plan.plan.targets(k).max_len;
            let row = &mut plan.rows[k];
            let index = row.steps.len();
            let mut step = DecodeStep {
                index,
                token_id: tokens[pos],
                token: tgt.piece(tokens[pos]),
                attention: host.attention(pos, len),
                log_prob: rows[pos][tokens[pos] as usize] - lse[pos],
                forced: forced[pos],
                intervened: false,
                heads: host.heads(pos, len, index + 1),
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
                step.scores = Some(row_scores(&layer_scores, pos, len)?);
            }
            row.steps.push(step);
            let ended = tokens[pos] == EOS_ID || row.steps.len() >= max_len;
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

    fn open_plan(&self, id: usize) -> Result<&Open> {
        self.plans
            .get(&id)
            .ok_or_else(|| Error::Internal(format!("row of plan {id}, which is gone")))
    }
}

impl Translator {
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

mod host;
mod rows;
#[cfg(test)]
mod tests;
