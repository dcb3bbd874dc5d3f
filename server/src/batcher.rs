//! [`Batcher`]: concurrent translations decoded in shared batches, one matrix product a step
//! for all of them instead of one per stream.
//!
//! A request whose plan can share a batch (greedy, a fixed attention: see
//! [`DecodePlan::batch_key`]) joins the queue of its model and key instead of decoding on a
//! thread of its own. The first to join an empty queue starts a batch worker on the
//! blocking pool. The worker waits for a CPU slot of the [`StepGate`] as a first step (so
//! ahead of the decodings already running), then takes every request queued by then, up to
//! [`Batcher::rows`] sentences, and decodes them together, giving its slot back between
//! batch steps like any decoding. Requests that arrive meanwhile queue for the next batch,
//! whose worker is already waiting for a slot: alone, a request decodes at once; under a
//! burst, the first decodes alone and the rest start together one step later. Each request
//! gets its steps and its translation as they come, through its own [`Member`] callbacks;
//! one that stops (its client left) leaves the batch at its next step.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use attnscope_model::{BatchKey, DecodePlan, DecodeStep, Translation, Translator};

use crate::AppError;
use crate::Stats;
use crate::gate::{StepGate, Turn};
use crate::metrics::Metrics;

/// Sentences a batch takes by default.
pub const DEFAULT_BATCH_ROWS: u16 = 64;

/// Which queue a request joins: its model and what its plan shares with the others.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueueKey {
    model: String,
    key: BatchKey,
}

/// What a batch member does with each of its steps; `Break` takes it out of the batch.
pub type OnStep = Box<dyn FnMut(&DecodeStep) -> ControlFlow<()> + Send>;

/// What a batch member does with its translation (or the batch's error).
pub type OnDone = Box<dyn FnOnce(Result<Translation, AppError>) + Send>;

/// A request waiting for a batch or decoding in one.
pub struct Member {
    pub model: Arc<Translator>,
    pub plan: DecodePlan,
    /// When the request arrived, for the latency metrics.
    pub began: Instant,
    /// Sees each step as it is made; `Break` takes the request out of the batch. It must not
    /// block: the whole batch waits for it.
    pub on_step: OnStep,
    /// Gets the translation (or the batch's error) as soon as it is done.
    pub on_done: OnDone,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Member>,
}

/// The queues of requests waiting for a batch; see the module documentation.
pub struct Batcher {
    rows: usize,
    queues: Mutex<HashMap<QueueKey, Queue>>,
    gate: Arc<StepGate>,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the queues is a single push or pop: a panicking holder leaves them
    // consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batcher {
    /// Batches of at most `rows` sentences (1 turns batching off) on `gate`'s slots.
    pub fn new(rows: usize, gate: Arc<StepGate>, stats: Arc<Stats>, metrics: Arc<Metrics>) -> Self {
        Batcher {
            rows: rows.max(1),
            queues: Mutex::default(),
            gate,
            stats,
            metrics,
        }
    }

    /// The most sentences a batch takes.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The queue a plan of model `model` joins, or `None` when it decodes alone (batching
    /// is off, or the plan cannot share a batch).
    pub fn key(&self, model: &str, plan: &DecodePlan) -> Option<QueueKey> {
        if self.rows < 2 {
            return None;
        }
        plan.batch_key().map(|key| QueueKey {
            model: model.to_string(),
            key,
        })
    }

    /// Requests waiting for a batch right now.
    pub fn queued(&self) -> usize {
        lock(&self.queues).values().map(|q| q.waiting.len()).sum()
    }

    /// Queues `member` for a batch of `key`, starting a worker for it if none is waiting.
    /// Must be called within the tokio runtime.
    pub fn submit(self: &Arc<Self>, key: QueueKey, member: Member) {
        let mut queues = lock(&self.queues);
        let start = !queues.contains_key(&key);
        queues
            .entry(key.clone())
            .or_default()
            .waiting
            .push_back(member);
        drop(queues);
        if start {
            self.start(key);
        }
    }

    fn start(self: &Arc<Self>, key: QueueKey) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run(&key));
    }

    /// Takes the requests of the next batch of `key`: the queue's first ones up to
    /// [`Self::rows`] sentences (at least one request). A queue left with requests gets its
    /// next worker; an emptied one is removed, so the next request starts one.
    fn take(self: &Arc<Self>, key: &QueueKey) -> Vec<Member> {
        let mut queues = lock(&self.queues);
        let Some(queue) = queues.get_mut(key) else {
            return Vec::new();
        };
        let (mut taken, mut rows) = (Vec::new(), 0);
        while let Some(next) = queue.waiting.front() {
            let r = next.plan.source().sentences.len();
            if !taken.is_empty() && rows + r > self.rows {
                break;
            }
            rows += r;
            taken.extend(queue.waiting.pop_front());
        }
        if queue.waiting.is_empty() {
            queues.remove(key);
        } else {
            drop(queues);
            self.start(key.clone());
        }
        taken
    }

    /// A batch worker: waits for a slot, takes its batch and decodes it.
    fn run(self: &Arc<Self>, key: &QueueKey) {
        let mut slot = self.gate.acquire(Turn::First);
        let members = self.take(key);
        let Some(model) = members.first().map(|m| m.model.clone()) else {
            return;
        };
        self.stats
            .decoding
            .fetch_add(members.len(), Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .batched
            .fetch_add(members.len() as u64, Ordering::Relaxed);
        let mut plans = Vec::with_capacity(members.len());
        let mut began = Vec::with_capacity(members.len());
        let mut on_step = Vec::with_capacity(members.len());
        let mut on_done = Vec::with_capacity(members.len());
        for m in members {
            plans.push(m.plan);
            began.push(m.began);
            on_step.push(m.on_step);
            on_done.push(Some(m.on_done));
        }
        let refs: Vec<&DecodePlan> = plans.iter().collect();
        let (stats, metrics) = (&self.stats, &self.metrics);
        let mut finish = |i: usize, result: Result<Translation, AppError>| {
            if let Some(done) = on_done[i].take() {
                stats.decoding.fetch_sub(1, Ordering::Relaxed);
                metrics
                    .translation
                    .observe(began[i].elapsed().as_secs_f64());
                done(result);
            }
        };
        let result = model.decode_together(
            &refs,
            &mut |i, s| {
                if s.index == 0 {
                    metrics.first_step.observe(began[i].elapsed().as_secs_f64());
                }
                stats.steps.fetch_add(1, Ordering::Relaxed);
                (on_step[i])(s)
            },
            &mut |i, t| finish(i, Ok(t)),
            &mut || slot.yield_now(),
        );
        if let Err(e) = result {
            tracing::error!("a decoding batch failed: {e}");
            for i in 0..refs.len() {
                finish(i, Err(AppError::Internal(format!("decoding failed: {e}"))));
            }
        }
    }
}
