//! [`Batcher`]: concurrent translations decoded in shared batches, one matrix product a step
//! for all of them instead of one per stream.
//!
//! A request whose plan can share a batch (greedy, a fixed attention: see
//! [`DecodePlan::batch_key`]) joins the queue of its model and key instead of decoding on a
//! thread of its own. Each queue has up to one batch worker per CPU slot of the
//! [`StepGate`], started as requests arrive. A worker runs a [`BatchDecoder`]: before each
//! batch step it takes the requests waiting in its queue (up to [`Batcher::rows`]
//! sentences in the batch) and joins them to the rows already decoding, then advances every
//! row by one token while it holds a slot, giving the slot back between steps like any
//! decoding. So a request alone decodes at once, and one that arrives under load starts at
//! the next batch step, together with everything that arrived meanwhile. Each request gets
//! its steps and its translation as they come, through its own [`Member`] callbacks; one
//! that stops (its client left) leaves the batch at its next step. A worker whose batch and
//! queue are empty ends.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use attnscope_model::{BatchDecoder, BatchKey, DecodePlan, DecodeStep, Translation, Translator};

use crate::AppError;
use crate::gate::{StepGate, Turn};
use crate::metrics::Metrics;
use crate::{Decoding, Stats};

/// Sentences a batch takes by default.
pub const DEFAULT_BATCH_ROWS: u16 = 256;

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
    /// Batch workers of this queue running now.
    workers: usize,
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
    // Every update of the queues is a single push, pop or counter change: a panicking
    // holder leaves them consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A member's callbacks while it decodes.
struct Hooks {
    began: Instant,
    on_step: OnStep,
    on_done: OnDone,
    _decoding: Decoding,
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

    /// The most sentences a batch decodes at once.
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

    /// Queues `member` for a batch of `key`, and starts a worker for the queue if it has
    /// fewer than one per CPU slot. Must be called within the tokio runtime.
    pub fn submit(self: &Arc<Self>, key: QueueKey, member: Member) {
        let model = member.model.clone();
        let mut queues = lock(&self.queues);
        let queue = queues.entry(key.clone()).or_default();
        queue.waiting.push_back(member);
        if queue.workers < self.gate.slots() {
            queue.workers += 1;
            drop(queues);
            self.start(key, model);
        }
    }

    /// Starts a batch worker for queue `key` (already counted in its `workers`).
    fn start(self: &Arc<Self>, key: QueueKey, model: Arc<Translator>) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run(&key, &model));
    }

    /// The waiting requests that fit in a batch decoding `rows` sentences now: at least one
    /// when the batch is empty. `None` tells the worker to end: its batch and the queue are
    /// empty (it is no longer counted, so the next request starts a new one).
    fn take(&self, key: &QueueKey, rows: usize) -> Option<Vec<Member>> {
        let mut queues = lock(&self.queues);
        let queue = queues.get_mut(key)?;
        if rows == 0 && queue.waiting.is_empty() {
            queue.workers = queue.workers.saturating_sub(1);
            if queue.workers == 0 {
                queues.remove(key);
            }
            return None;
        }
        let (mut taken, mut total) = (Vec::new(), rows);
        while let Some(next) = queue.waiting.front() {
            let r = next.plan.source().sentences.len();
            if total > 0 && total + r > self.rows {
                break;
            }
            total += r;
            taken.extend(queue.waiting.pop_front());
        }
        Some(taken)
    }

    /// A batch worker of queue `key` (model `model`). A panic ends the translations in its
    /// batch with an error (their callbacks are dropped) and hands the queue to a new worker
    /// if requests wait, so the queue never stalls.
    fn run(self: &Arc<Self>, key: &QueueKey, model: &Arc<Translator>) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.serve(key, model);
        }));
        if served.is_err() {
            tracing::error!("a batch worker panicked; its translations ended with an error");
            let mut queues = lock(&self.queues);
            let Some(queue) = queues.get_mut(key) else {
                return;
            };
            if queue.waiting.is_empty() {
                queue.workers = queue.workers.saturating_sub(1);
                if queue.workers == 0 {
                    queues.remove(key);
                }
            } else {
                drop(queues);
                self.start(key.clone(), model.clone());
            }
        }
    }

    /// Takes waiting requests of queue `key` into a batch before every step, until the batch
    /// and the queue are empty.
    fn serve(self: &Arc<Self>, key: &QueueKey, model: &Translator) {
        let (stats, metrics) = (&*self.stats, &*self.metrics);
        let mut slot = self.gate.acquire(Turn::First);
        let mut batch = BatchDecoder::new(model);
        let hooks: RefCell<HashMap<usize, Hooks>> = RefCell::default();
        let mut next_id = 0;
        let finish = |id: usize, result: Result<Translation, AppError>| {
            let Some(Hooks {
                began,
                on_done,
                _decoding: decoding,
                ..
            }) = hooks.borrow_mut().remove(&id)
            else {
                return;
            };
            // No longer decoding once its answer goes out.
            drop(decoding);
            metrics.translation.observe(began.elapsed().as_secs_f64());
            on_done(result);
        };
        let fail_all = |e: attnscope_model::Error| {
            tracing::error!("a decoding batch failed: {e}");
            let ids: Vec<usize> = hooks.borrow().keys().copied().collect();
            for id in ids {
                finish(id, Err(AppError::Internal(format!("decoding failed: {e}"))));
            }
        };
        while let Some(members) = self.take(key, batch.rows()) {
            let mut plans = Vec::with_capacity(members.len());
            for m in members {
                hooks.borrow_mut().insert(
                    next_id,
                    Hooks {
                        began: m.began,
                        on_step: m.on_step,
                        on_done: m.on_done,
                        _decoding: Decoding::new(&self.stats),
                    },
                );
                plans.push((next_id, m.plan));
                next_id += 1;
            }
            stats
                .batched
                .fetch_add(plans.len() as u64, Ordering::Relaxed);
            if let Err(e) = batch.admit(plans) {
                fail_all(e);
                batch = BatchDecoder::new(model);
                continue;
            }
            stats.batch_steps.fetch_add(1, Ordering::Relaxed);
            let stepped = batch.step(
                &mut |id, s| {
                    if s.index == 0 {
                        let began = hooks.borrow().get(&id).map(|h| h.began);
                        if let Some(b) = began {
                            metrics.first_step.observe(b.elapsed().as_secs_f64());
                        }
                    }
                    stats.steps.fetch_add(1, Ordering::Relaxed);
                    match hooks.borrow_mut().get_mut(&id) {
                        Some(h) => (h.on_step)(s),
                        None => ControlFlow::Break(()),
                    }
                },
                &mut |id, t| finish(id, Ok(t)),
            );
            if let Err(e) = stepped {
                fail_all(e);
                batch = BatchDecoder::new(model);
            }
            slot.yield_now();
        }
    }
}
