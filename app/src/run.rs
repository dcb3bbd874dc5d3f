//! One translation run: its configuration (model, attention mode) and the reactive state of
//! its stream (phase, tokens, attention rows, error). The page has one run, or two when
//! comparing; each streams on its own and can be cancelled by the next request.

use attnscope_protocol::{
    AgreementSummary, AttentionScores, Candidate, HypothesisInfo, InterventionSpec, SentenceInfo,
    StepEvent, TranslateRequest, WordAlignment,
};
use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use web_sys::AbortController;

use crate::api;
use crate::events::StreamEvent;
use crate::heads::{Heads, StepHeads, unpack_encoder};
use crate::tokens::{Row, detokenize, fit_row, piece_blocks, sentence_of_row};

/// Where a run stands (`data-state` of its panel and of the page's `<main>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Nothing requested yet.
    #[default]
    Idle,
    /// Request sent, events arriving.
    Streaming,
    /// `done` received.
    Done,
    /// The request or the decoding failed; the message is shown.
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Streaming => "streaming",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// What a run asks the server for; `None` fields use the server's or the model's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunConfig {
    pub model: Option<String>,
    pub mode: Option<String>,
    /// Beam width; `None` or 1 decodes greedily.
    pub beam: Option<usize>,
    /// What the heatmap shows: `None` the attention, else an attribution method's name
    /// (one of [`attnscope_protocol::EXPLAIN_METHODS`]).
    pub show: Option<String>,
}

/// A what-if on top of a translation: attention forced at some steps, a given target prefix,
/// and the translation before them (to show what changed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WhatIf {
    pub interventions: Vec<InterventionSpec>,
    pub prefix: String,
    /// Target pieces of the translation before the first change.
    pub baseline: Vec<String>,
}

impl WhatIf {
    pub fn is_active(&self) -> bool {
        !self.interventions.is_empty() || !self.prefix.trim().is_empty()
    }
}

/// What one step computed besides its heatmap row: the tokens it weighed and, when asked
/// for, its attention scores (for the step view).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepDetail {
    /// The most likely tokens, best first.
    pub candidates: Vec<Candidate>,
    /// The attention scores before the distribution.
    pub scores: Option<AttentionScores>,
    /// The attention the decoder used (whatever the heatmap shows).
    pub attention: Vec<f32>,
    /// Natural log of the emitted token's probability.
    pub log_prob: f32,
    /// The token was given (target prefix), not chosen.
    pub forced: bool,
    /// An intervention set this step's attention.
    pub intervened: bool,
}

/// The reactive state of one run (all signals, so it is `Copy`).
#[derive(Clone, Copy)]
pub struct Run {
    /// The chosen model (`None`: the server's default).
    pub model: RwSignal<Option<String>>,
    /// The chosen attention mode (`None`: the model's default).
    pub mode: RwSignal<Option<String>>,
    /// Beam width (`None`: greedy).
    pub beam: RwSignal<Option<usize>>,
    /// What the heatmap shows (`None`: the attention; else an attribution method).
    pub show: RwSignal<Option<String>>,
    /// The shown attribution's agreement with the attention over the translation.
    pub agreement: RwSignal<Option<AgreementSummary>>,
    /// With beam search: every final hypothesis, best first.
    pub hypotheses: RwSignal<Vec<HypothesisInfo>>,
    /// The hypothesis shown in the heatmap.
    pub chosen: RwSignal<usize>,
    pub phase: RwSignal<Phase>,
    pub error: RwSignal<Option<String>>,
    pub source: RwSignal<Vec<String>>,
    /// The input's sentences (from the `start` event; with their translations after `done`).
    pub sentences: RwSignal<Vec<SentenceInfo>>,
    pub rows: RwSignal<Vec<Row>>,
    pub translation: RwSignal<String>,
    /// The model and mode that produced the rows (from the `start` and `done` events).
    pub used_model: RwSignal<Option<String>>,
    pub used_mode: RwSignal<Option<String>>,
    pub elapsed_ms: RwSignal<Option<f64>>,
    /// A Transformer's attention per layer and head (empty for other models).
    pub heads: RwSignal<Heads>,
    /// Forced attention and target prefix of the current decoding.
    pub what_if: RwSignal<WhatIf>,
    /// Each step's candidates and scores, in step order (the streamed translation's; a
    /// beam hypothesis chosen later has none).
    pub details: RwSignal<Vec<StepDetail>>,
    /// Whether requests ask for each step's attention scores (the score view is open).
    pub scores: RwSignal<bool>,
    /// The word alignment the model's chosen method reads off the translation (after
    /// `done`, for models that have a method).
    pub alignment: RwSignal<Option<WordAlignment>>,
    /// The text of the last request, for re-decoding.
    text: StoredValue<String>,
    /// Whether the last request turned segmentation off (whole text as one sequence).
    whole: StoredValue<bool>,
    /// Bumped by every request; events of an older request are dropped.
    run: StoredValue<u64>,
    /// Cancels the request in flight when a new one starts.
    abort: StoredValue<Option<AbortController>, LocalStorage>,
    /// What the last [`Self::submit`] asked to run after `done` (the page updates its
    /// permalink), run again by [`Self::rerun`].
    on_done: StoredValue<Option<Rc<dyn Fn()>>, LocalStorage>,
}

impl Run {
    pub fn new(config: RunConfig) -> Self {
        Self {
            model: RwSignal::new(config.model),
            mode: RwSignal::new(config.mode),
            beam: RwSignal::new(config.beam),
            show: RwSignal::new(config.show),
            agreement: RwSignal::new(None),
            hypotheses: RwSignal::new(Vec::new()),
            chosen: RwSignal::new(0),
            phase: RwSignal::new(Phase::Idle),
            error: RwSignal::new(None),
            source: RwSignal::new(Vec::new()),
            sentences: RwSignal::new(Vec::new()),
            rows: RwSignal::new(Vec::new()),
            translation: RwSignal::new(String::new()),
            used_model: RwSignal::new(None),
            used_mode: RwSignal::new(None),
            elapsed_ms: RwSignal::new(None),
            heads: RwSignal::new(Heads::default()),
            what_if: RwSignal::new(WhatIf::default()),
            details: RwSignal::new(Vec::new()),
            scores: RwSignal::new(false),
            alignment: RwSignal::new(None),
            text: StoredValue::new(String::new()),
            whole: StoredValue::new(false),
            run: StoredValue::new(0),
            abort: StoredValue::new_local(None),
            on_done: StoredValue::new_local(None),
        }
    }

    /// This run, asking for scores whenever `other` does (one switch for a comparison).
    pub fn sharing_scores(self, other: Run) -> Self {
        Self {
            scores: other.scores,
            ..self
        }
    }

    /// The configuration as chosen now.
    pub fn config(self) -> RunConfig {
        RunConfig {
            model: self.model.get_untracked(),
            mode: self.mode.get_untracked(),
            beam: self.beam.get_untracked(),
            show: self.show.get_untracked(),
        }
    }

    /// Shows beam hypothesis `i` (its tokens and attention) in the heatmap.
    pub fn choose(self, i: usize) {
        let Some(h) = self.hypotheses.with_untracked(|hs| hs.get(i).cloned()) else {
            return;
        };
        // A new run number: the heatmap keys its rows by (run, index), so the rows of the
        // chosen hypothesis replace the shown ones instead of being taken for them.
        let run = self.run.get_value() + 1;
        self.run.set_value(run);
        let n = self.source.with_untracked(Vec::len);
        let blocks = self.sentences.with_untracked(|s| piece_blocks(s));
        self.rows.set(
            h.target_tokens
                .into_iter()
                .zip(h.attention)
                .enumerate()
                .map(|(index, (token, weights))| Row {
                    run,
                    index,
                    token,
                    sentence: sentence_of_row(&weights, &blocks),
                    weights: fit_row(weights, n),
                    forced: false,
                    intervened: false,
                    rev: 0,
                    tau: None,
                })
                .collect(),
        );
        self.translation.set(h.translation);
        self.chosen.set(i);
    }

    /// Target pieces received so far.
    pub fn target_tokens(self) -> Vec<String> {
        self.rows
            .with(|r| r.iter().map(|r| r.token.clone()).collect())
    }

    /// Starts translating `text` afresh (cancelling this run's translation in flight and
    /// dropping any what-if), sentence by sentence unless `whole`; `on_done` runs after a
    /// successful `done` event.
    pub fn submit(self, text: String, whole: bool, on_done: impl Fn() + 'static) {
        self.what_if.set(WhatIf::default());
        self.whole.set_value(whole);
        let on_done: Rc<dyn Fn()> = Rc::new(on_done);
        self.on_done.set_value(Some(on_done.clone()));
        self.start(text, move || on_done());
    }

    /// At step `step`, forces the attention onto source token `source` (keeping earlier
    /// forced steps) and decodes again.
    pub fn force(self, step: usize, source: usize) {
        self.change(|w| {
            w.interventions.retain(|i| i.step < step);
            w.interventions.push(InterventionSpec { step, source });
        });
    }

    /// Decodes again with the target as it was before step `step`, then `piece` forced at
    /// that step (a candidate the decoder weighed), then freely.
    pub fn choose_candidate(self, step: usize, piece: &str) {
        let mut pieces: Vec<String> = self
            .rows
            .with_untracked(|r| r.iter().take(step).map(|r| r.token.clone()).collect());
        pieces.push(piece.to_owned());
        self.set_prefix(detokenize(&pieces));
    }

    /// Decodes again with `prefix` as the start of the target.
    pub fn set_prefix(self, prefix: String) {
        self.change(|w| w.prefix = prefix);
    }

    /// Decodes the last text again with the options as chosen now, keeping any what-if
    /// (nothing happens before a first translation).
    pub fn rerun(self) {
        let text = self.text.get_value();
        if !text.trim().is_empty() {
            let on_done = self.on_done.get_value();
            self.start(text, move || {
                if let Some(f) = &on_done {
                    f();
                }
            });
        }
    }

    /// Drops the what-if and decodes the plain translation again.
    pub fn reset_what_if(self) {
        self.what_if.set(WhatIf::default());
        self.start(self.text.get_value(), || ());
    }

    fn change(self, f: impl FnOnce(&mut WhatIf)) {
        let tokens = self.target_tokens_now();
        self.what_if.update(|w| {
            if !w.is_active() {
                w.baseline = tokens;
            }
            f(w);
        });
        self.start(self.text.get_value(), || ());
    }

    /// The text of the last request.
    pub fn text_now(self) -> String {
        self.text.get_value()
    }

    /// Target pieces shown now (untracked).
    pub fn target_tokens_now(self) -> Vec<String> {
        self.rows
            .with_untracked(|r| r.iter().map(|r| r.token.clone()).collect())
    }

    fn start(self, text: String, on_done: impl Fn() + 'static) {
        self.text.set_value(text.clone());
        let run = self.run.get_value() + 1;
        self.run.set_value(run);
        if let Some(previous) = self.abort.get_value() {
            previous.abort();
        }
        let controller = AbortController::new().ok();
        let signal = controller.as_ref().map(AbortController::signal);
        self.abort.set_value(controller);

        self.phase.set(Phase::Streaming);
        self.error.set(None);
        self.source.set(Vec::new());
        self.sentences.set(Vec::new());
        self.rows.set(Vec::new());
        self.translation.set(String::new());
        self.used_model.set(None);
        self.used_mode.set(None);
        self.elapsed_ms.set(None);
        self.heads.set(Heads::default());
        self.hypotheses.set(Vec::new());
        self.agreement.set(None);
        self.chosen.set(0);
        self.details.set(Vec::new());
        self.alignment.set(None);

        let config = self.config();
        let what_if = self.what_if.get_untracked();
        let prefix = what_if.prefix.trim().to_owned();
        let request = TranslateRequest {
            model: config.model,
            attention: config.mode,
            beam: config.beam.filter(|b| *b > 1),
            interventions: what_if.interventions,
            target_prefix: (!prefix.is_empty()).then_some(prefix),
            segment: self.whole.get_value().then_some(false),
            explain: config.show.into_iter().collect(),
            scores: self.scores.get_untracked().then_some(true),
            align: Some(true),
            ..TranslateRequest::new(text)
        };
        let current = move || self.run.get_value() == run;
        // Events are applied at most once per animation frame (or after 100 ms, should the
        // page be hidden and frames stop): a fast stream delivers dozens of steps between two
        // frames, and re-rendering after each one held a 200-piece heatmap's frames to 5 a
        // second.
        let queue = Rc::new(std::cell::RefCell::new(Vec::<StreamEvent>::new()));
        let scheduled = Rc::new(std::cell::Cell::new(false));
        let flush = {
            let (queue, scheduled) = (queue.clone(), scheduled.clone());
            let on_done = Rc::new(on_done);
            move || {
                scheduled.set(false);
                let events = std::mem::take(&mut *queue.borrow_mut());
                if current() && self.apply_all(run, events) {
                    on_done();
                }
            }
        };
        spawn_local(async move {
            let result = api::translate(&request, signal.as_ref(), |event| {
                queue.borrow_mut().push(event);
                if !scheduled.replace(true) {
                    request_animation_frame(flush.clone());
                    set_timeout(flush.clone(), std::time::Duration::from_millis(100));
                }
            })
            .await;
            if !current() {
                return;
            }
            if let Err(e) = result {
                self.error.set(Some(e.message));
                self.phase.set(Phase::Error);
            }
        });
    }

    /// Applies the events that arrived since the last frame, in order; true when they held a
    /// successful `done`. Consecutive steps are applied together: one update of each signal
    /// and one detokenization of the translation, not one per step.
    fn apply_all(self, run: u64, events: Vec<StreamEvent>) -> bool {
        let mut done = false;
        let mut steps = Vec::new();
        for event in events {
            match event {
                StreamEvent::Step(step) => steps.push(step),
                other => {
                    self.apply_steps(run, std::mem::take(&mut steps));
                    done |= self.apply(other);
                }
            }
        }
        self.apply_steps(run, steps);
        done
    }

    /// Appends streamed steps to the rows, their details and heads, and the translation.
    fn apply_steps(self, run: u64, steps: Vec<StepEvent>) {
        if steps.is_empty() {
            return;
        }
        let n = self.source.with_untracked(Vec::len);
        let show = self.show.get_untracked();
        let mut heads = Vec::new();
        for step in &steps {
            if let Some(h) = &step.heads {
                match StepHeads::unpack(h) {
                    Ok(h) => heads.push(h),
                    Err(e) => self
                        .error
                        .set(Some(format!("Bad heads from the server: {e}"))),
                }
            }
        }
        if !heads.is_empty() {
            self.heads.update(|all| all.steps.extend(heads));
        }
        self.details.update(|d| {
            d.extend(steps.iter().map(|step| StepDetail {
                candidates: step.candidates.clone(),
                scores: step.scores.clone(),
                attention: step.attention.clone(),
                log_prob: step.log_prob,
                forced: step.forced,
                intervened: step.intervened,
            }));
        });
        self.rows.update(|rows| {
            for step in steps {
                let (weights, tau) = shown_row(&step, show.as_deref());
                rows.push(Row {
                    run,
                    index: rows.len(),
                    token: step.token,
                    sentence: step.sentence,
                    weights: fit_row(weights, n),
                    forced: step.forced,
                    intervened: step.intervened,
                    rev: 0,
                    tau,
                });
            }
        });
        let pieces: Vec<String> = self
            .rows
            .with_untracked(|r| r.iter().map(|r| r.token.clone()).collect());
        self.translation.set(detokenize(&pieces));
    }

    /// Applies one event other than a step; true for a successful `done`.
    fn apply(self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Step(_) => {}
            StreamEvent::Start(start) => {
                self.used_model.set(Some(start.model));
                self.source.set(start.source_tokens);
                self.sentences.set(start.sentences);
            }
            StreamEvent::Done(done) => {
                if let Some(enc) = &done.encoder_attention {
                    match unpack_encoder(enc) {
                        Ok(e) => self.heads.update(|h| h.encoder = Some(e)),
                        Err(e) => self
                            .error
                            .set(Some(format!("Bad heads from the server: {e}"))),
                    }
                }
                self.translation.set(done.translation);
                self.elapsed_ms.set(Some(done.elapsed_ms));
                self.used_mode.set(Some(done.mode));
                self.hypotheses.set(done.hypotheses);
                self.alignment.set(done.alignment);
                let show = self.show.get_untracked();
                self.agreement.set(
                    done.agreement
                        .into_iter()
                        .find(|a| Some(&a.method) == show.as_ref()),
                );
                if !done.sentences.is_empty() {
                    self.sentences.set(done.sentences);
                }
                self.phase.set(Phase::Done);
                return true;
            }
            StreamEvent::Error(err) => {
                self.error.set(Some(err.message));
                self.phase.set(Phase::Error);
            }
        }
        false
    }
}

/// The weights a step's heatmap row shows: the attribution named `show` when the step
/// carries it (with its τ against the attention), else the attention.
pub fn shown_row(step: &StepEvent, show: Option<&str>) -> (Vec<f32>, Option<f32>) {
    match show.and_then(|m| step.attributions.iter().find(|a| a.method == m)) {
        Some(a) => (a.weights.clone(), a.tau),
        None => (step.attention.clone(), None),
    }
}
