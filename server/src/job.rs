//! A translation request checked once into a [`Job`] (model, tokenised plan, attributions,
//! alignment, its place in the queue), and how a job decodes: in a shared batch when it
//! can ([`crate::batcher`]), otherwise alone on the blocking pool, one step at a time on a
//! CPU slot of the [`crate::gate::StepGate`].

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use attnscope_model::explain::{Baseline, DEFAULT_IG_STEPS};
use attnscope_model::{
    Attribution, DecodeOptions, DecodePlan, DecodeStep, ExplainOptions, Intervention, Method, Mode,
    Segmentation, Translation, Translator,
};
use attnscope_protocol::{TranslateRequest, WordAlignment};

use crate::batcher::{Member, QueueKey};
use crate::gate::{Slot, Turn};
use crate::wire;
use crate::{AppError, AppState, Decoding, MAX_TEXT_CHARS};

/// A validated request: the model, the tokenised source and the decoding options.
pub(crate) struct Job {
    pub(crate) model_name: String,
    pub(crate) model: Arc<Translator>,
    /// The text, split into sentences (or whole) and tokenised, with the decoding options
    /// checked against it.
    pub(crate) plan: DecodePlan,
    /// The attributions asked for (none: decode only).
    pub(crate) explain: ExplainOptions,
    /// The model's alignment method, when the request asked to `align` and it has one.
    pub(crate) align: Option<wire::ChosenAlignment>,
    /// Holds the job's place until its decoding ends.
    pub(crate) admission: crate::Admission,
    /// When the request arrived, for the latency metrics.
    pub(crate) began: Instant,
}

/// Decoding options from a request; the model checks ranges against the source.
fn options(req: &TranslateRequest) -> Result<DecodeOptions, AppError> {
    let attention = match &req.attention {
        Some(m) => Some(
            m.parse::<Mode>()
                .map_err(|e| AppError::UnknownMode(e.to_string()))?,
        ),
        None => None,
    };
    Ok(DecodeOptions {
        attention,
        temperature: req.temperature.unwrap_or(1.0),
        seed: req.seed.unwrap_or(0),
        beam: req.beam.unwrap_or(1),
        max_len: req.max_len,
        force_target: req.force_target.clone(),
        target_prefix: req.target_prefix.clone(),
        interventions: req
            .interventions
            .iter()
            .map(|i| Intervention {
                step: i.step,
                source: i.source,
            })
            .collect(),
        top_k: req.top_k.unwrap_or(attnscope_protocol::DEFAULT_TOP_K),
        scores: req.scores.unwrap_or(false),
    })
}

/// Attribution options from a request.
fn explain_options(req: &TranslateRequest) -> Result<ExplainOptions, AppError> {
    let invalid = |e: attnscope_model::Error| AppError::InvalidOption(e.to_string());
    let methods = req
        .explain
        .iter()
        .map(|m| m.parse::<Method>().map_err(invalid))
        .collect::<Result<_, _>>()?;
    let baseline = match &req.ig_baseline {
        Some(b) => b.parse::<Baseline>().map_err(invalid)?,
        None => Baseline::default(),
    };
    let opts = ExplainOptions {
        methods,
        ig_steps: req.ig_steps.unwrap_or(DEFAULT_IG_STEPS),
        baseline,
    };
    opts.check().map_err(invalid)?;
    Ok(opts)
}

pub(crate) fn parse(st: &AppState, body: &[u8]) -> Result<Job, AppError> {
    let req: TranslateRequest =
        serde_json::from_slice(body).map_err(|e| AppError::InvalidJson(e.to_string()))?;
    let chars = req.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(AppError::TextTooLong(chars));
    }
    let (model_name, model) = st.models.get(req.model.as_deref())?;
    let opts = options(&req)?;
    let explain = explain_options(&req)?;
    let segmentation = match req.segment {
        Some(false) => Segmentation::Whole,
        _ => Segmentation::Sentences,
    };
    let plan = model.plan(model.text_source(&req.text, segmentation)?, opts)?;
    let align = match req.align {
        Some(true) => st.models.alignment(&model_name).cloned(),
        _ => None,
    };
    Ok(Job {
        model_name,
        model,
        plan,
        explain,
        align,
        admission: st.admit()?,
        began: Instant::now(),
    })
}

/// One of the permits for translations decoding at once ([`AppState::workers`]).
async fn decoding_permit(st: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
    st.workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| AppError::Unavailable)
}

/// A finished decoding and its attributions (empty unless asked for).
pub(crate) struct Decoded {
    pub(crate) translation: Translation,
    pub(crate) explained: Vec<Attribution>,
    pub(crate) alignment: Option<WordAlignment>,
}

impl Job {
    /// The batch queue this job joins, if it decodes in a shared batch (it explains
    /// nothing and its plan can share one: see [`crate::batcher`]).
    pub(crate) fn batch_queue(&self, st: &AppState) -> Option<QueueKey> {
        if !self.explain.methods.is_empty() {
            return None;
        }
        st.batcher.key(&self.model_name, &self.plan)
    }

    /// Waits for a decoding permit, then decodes: in a shared batch when it can (see
    /// [`Self::batch_queue`]), otherwise on the blocking pool, one step at a time on a CPU
    /// slot, explaining the translation if asked; steps are counted in [`crate::Stats`].
    /// `on_step` sees each step, with the held slot when the job decodes alone (to give it
    /// back while it waits on the client; in a batch it must not block), and may stop the
    /// decoding.
    pub(crate) async fn decode(
        self,
        st: &AppState,
        mut on_step: impl FnMut(&DecodeStep, Option<&mut Slot>) -> ControlFlow<()> + Send + 'static,
    ) -> Result<Decoded, AppError> {
        if let Some(queue) = self.batch_queue(st) {
            return self.decode_batched(st, queue, on_step).await;
        }
        let permit = decoding_permit(st).await?;
        let (stats, metrics, gate) = (st.stats.clone(), st.metrics.clone(), st.gate.clone());
        let Job {
            model,
            plan,
            explain,
            align,
            admission,
            began,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            let (_admission, _permit) = (admission, permit);
            let _busy = Decoding::new(&stats);
            let mut slot = gate.acquire(Turn::First);
            let out = model.decode(&plan, |s| {
                if s.index == 0 {
                    metrics.first_step.observe(began.elapsed().as_secs_f64());
                }
                stats.steps.fetch_add(1, Ordering::Relaxed);
                on_step(s, Some(&mut slot))
            });
            let decoded = out.and_then(|translation| {
                let (explained, alignment) = if translation.stopped {
                    (Vec::new(), None)
                } else {
                    let alignment = align
                        .map(|a| wire::word_alignment(&model, &plan, &translation, &a))
                        .transpose()?;
                    (model.explain(&plan, &translation, &explain)?, alignment)
                };
                Ok(Decoded {
                    translation,
                    explained,
                    alignment,
                })
            });
            drop(slot);
            metrics.translation.observe(began.elapsed().as_secs_f64());
            decoded
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)
    }
}

impl Job {
    /// [`Self::decode`] in a shared batch of `queue`.
    async fn decode_batched(
        self,
        st: &AppState,
        queue: QueueKey,
        mut on_step: impl FnMut(&DecodeStep, Option<&mut Slot>) -> ControlFlow<()> + Send + 'static,
    ) -> Result<Decoded, AppError> {
        let permit = decoding_permit(st).await?;
        let Job {
            model,
            plan,
            align,
            admission,
            began,
            ..
        } = self;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The alignment reads the finished translation against its own plan.
        let aligning = align.map(|a| (a, model.clone(), plan.clone()));
        let on_done = move |result: Result<Translation, AppError>| {
            let held = (admission, permit);
            let decoded = result.and_then(|translation| {
                let alignment = match &aligning {
                    Some((a, model, plan)) if !translation.stopped => {
                        Some(wire::word_alignment(model, plan, &translation, a)?)
                    }
                    _ => None,
                };
                Ok(Decoded {
                    translation,
                    explained: Vec::new(),
                    alignment,
                })
            });
            // The job's place is free before its answer goes out.
            drop(held);
            let _ = tx.send(decoded);
        };
        st.batcher.submit(
            queue,
            Member {
                model,
                plan,
                began,
                on_step: Box::new(move |s| on_step(s, None)),
                on_done: Box::new(on_done),
            },
        );
        rx.await.map_err(|_| {
            AppError::Internal("the decoding batch ended without this translation".into())
        })?
    }
}
