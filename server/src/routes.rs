//! HTTP handlers.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use attnscope_model::explain::{Baseline, DEFAULT_IG_STEPS};
use attnscope_model::{
    Attribution, DecodeOptions, DecodePlan, DecodeStep, ExplainOptions, Intervention, Method, Mode,
    Segmentation, Translation, Translator,
};
use attnscope_protocol::{
    DoneEvent, ErrorBody, StartEvent, TranslateRequest, TranslateResponse, WordAlignment, event,
};
use axum::body::Bytes;
use axum::extract::MatchedPath;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::batcher::{Member, QueueKey};
use crate::gate::{Slot, Turn};
use crate::wire::{self, step_event};
use crate::{AppError, AppState, MAX_BODY_BYTES, MAX_TEXT_CHARS, REQUEST_TIMEOUT};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(crate::openapi::document))
        .route("/api/models", get(list_models))
        .route("/api/translate", post(translate))
        .route(
            "/api/render",
            post(crate::render::render).layer(crate::render::body_limit()),
        )
        .fallback(|| async { AppError::InvalidJson("no such API endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    let static_files = ServeDir::new(&state.dist).append_index_html_on_directories(true);
    let csp = HeaderValue::from_str(&state.csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    Router::new()
        .merge(api)
        .fallback_service(static_files)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %req.method(), uri = %req.uri())
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, Counter::default()))
        .with_state(state)
}

/// The `x-request-id` header: set on every request that lacks one, echoed in the answer and
/// logged with every line of its span.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids `1`, `2`, ... in arrival order (unique per server run).
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        HeaderValue::from_str(&n.to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Counts every answer by route and status, with its latency, for `/metrics`.
async fn track(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| {
            if req.uri().path().starts_with("/api/") {
                "/api/unknown".into()
            } else {
                "static".into()
            }
        });
    let began = Instant::now();
    let res = next.run(req).await;
    st.metrics
        .record(&route, res.status().as_u16(), began.elapsed().as_secs_f64());
    res
}

/// `GET /healthz`: 200 while the server runs, with the number of models served; `degraded`
/// with the folders that could not be loaded, if any.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\", \"models\": N}`, or `\"degraded\"` with `broken`: `[{\"name\", \"error\"}]`")))]
pub(crate) async fn healthz(State(st): State<AppState>) -> Json<serde_json::Value> {
    let broken: Vec<serde_json::Value> = st
        .models
        .broken()
        .iter()
        .map(|(name, error)| serde_json::json!({"name": name, "error": error}))
        .collect();
    let models = st.models.names().len();
    if broken.is_empty() {
        Json(serde_json::json!({"status": "ok", "models": models}))
    } else {
        Json(serde_json::json!({"status": "degraded", "models": models, "broken": broken}))
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain")))]
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let body = st
        .metrics
        .render(&st.stats, st.worker_count, st.queue_limit);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// `GET /api/models`: every loaded model.
#[utoipa::path(get, path = "/api/models", tag = "translation",
    responses((status = 200, description = "Every loaded model with its metadata", body = Vec<attnscope_protocol::ModelInfo>)))]
pub(crate) async fn list_models(
    State(st): State<AppState>,
) -> Json<Vec<attnscope_protocol::ModelInfo>> {
    Json(st.models.infos())
}

/// A validated request: the model, the tokenised source and the decoding options.
struct Job {
    model_name: String,
    model: Arc<Translator>,
    /// The text, split into sentences (or whole) and tokenised, with the decoding options
    /// checked against it.
    plan: DecodePlan,
    /// The attributions asked for (none: decode only).
    explain: ExplainOptions,
    /// The model's alignment method, when the request asked to `align` and it has one.
    align: Option<wire::ChosenAlignment>,
    /// Holds the job's place until its decoding ends.
    admission: crate::Admission,
    /// When the request arrived, for the latency metrics.
    began: Instant,
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

fn parse(st: &AppState, body: &[u8]) -> Result<Job, AppError> {
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

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// `POST /api/translate`: SSE when the client accepts `text/event-stream`, JSON otherwise.
#[utoipa::path(
    post,
    path = "/api/translate",
    tag = "translation",
    request_body = TranslateRequest,
    responses(
        (status = 200, description = "With `Accept: text/event-stream`: Server-Sent Events `start` (StartEvent), one `step` per target token (StepEvent), then `done` (DoneEvent) or `error` (ErrorBody). Otherwise one JSON document.",
            content(
                (TranslateResponse = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 400, description = "Empty text, invalid JSON, unknown mode or an option out of range", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Text or body over the limit", body = ErrorBody),
        (status = 503, description = "Decoding slots and queue full; retry after the `Retry-After` seconds", body = ErrorBody),
    )
)]
pub(crate) async fn translate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|e| AppError::from_body(e, MAX_BODY_BYTES))?;
    let job = parse(&st, &body)?;
    if wants_sse(&headers) {
        Ok(stream(st, job).await.into_response())
    } else {
        Ok(Json(whole(st, job).await?).into_response())
    }
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
struct Decoded {
    translation: Translation,
    explained: Vec<Attribution>,
    alignment: Option<WordAlignment>,
}

impl Job {
    /// The batch queue this job joins, if it decodes in a shared batch (it explains
    /// nothing and its plan can share one: see [`crate::batcher`]).
    fn batch_queue(&self, st: &AppState) -> Option<QueueKey> {
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
    async fn decode(
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
            let _busy = Busy::new(&stats);
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

async fn whole(st: AppState, job: Job) -> Result<TranslateResponse, AppError> {
    let model = job.model_name.clone();
    let d = job
        .decode(&st, |_, slot| {
            if let Some(slot) = slot {
                slot.yield_now();
            }
            ControlFlow::Continue(())
        })
        .await?;
    Ok(wire::response(
        model,
        d.translation,
        &d.explained,
        d.alignment,
    )?)
}

fn sse_event<T: serde::Serialize>(name: &str, data: &T) -> Event {
    match Event::default().event(name).json_data(data) {
        Ok(e) => e,
        Err(e) => {
            let body = AppError::Internal(format!("cannot encode an event: {e}")).body();
            let json = serde_json::to_string(&body).unwrap_or_default();
            Event::default().event(event::ERROR).data(json)
        }
    }
}

async fn stream(
    st: AppState,
    job: Job,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    // A batched decoding must never wait on its client, so its channel holds every event
    // it can send: the start, each step and the last.
    let room = match job.batch_queue(&st) {
        Some(_) => job.plan.max_steps() + 2,
        None => 16,
    };
    let (tx, rx) = mpsc::channel::<Event>(room);
    let start = StartEvent {
        model: job.model_name.clone(),
        source_tokens: job.plan.source().tokens(),
        sentences: wire::source_sentences(job.plan.source()),
    };
    // The channel has room, so the start event goes out before any decoding.
    let _ = tx.try_send(sse_event(event::START, &start));
    // Attributions need the whole translation: its steps go out once it is explained.
    let explaining = !job.explain.methods.is_empty();
    tokio::spawn(async move {
        let began = Instant::now();
        let worker_tx = tx.clone();
        let result = job
            .decode(&st, move |s, slot| {
                if explaining {
                    if let Some(slot) = slot {
                        slot.yield_now();
                    }
                    return if worker_tx.is_closed() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    };
                }
                let event = match step_event(s, &[]) {
                    Ok(step) => sse_event(event::STEP, &step),
                    Err(e) => sse_event(event::ERROR, &AppError::from(e).body()),
                };
                // Alone, the send may wait for a slow client: other decodings use the CPU
                // meanwhile. In a batch the channel has room for every event. Either fails
                // only when the client is gone: stop decoding.
                let sent = match slot {
                    Some(slot) => slot
                        .release_while(|| worker_tx.blocking_send(event))
                        .is_ok(),
                    None => worker_tx.try_send(event).is_ok(),
                };
                if sent {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })
            .await;
        let last = match result {
            Ok(d) if d.translation.stopped => {
                st.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                tracing::info!("client disconnected; decoding stopped");
                return;
            }
            Ok(Decoded {
                translation: t,
                explained,
                alignment,
            }) => match wire::encoder_attention(&t) {
                Ok(_) if explaining && !send_steps(&tx, &t, &explained).await => return,
                Ok(encoder_attention) => sse_event(
                    event::DONE,
                    &DoneEvent {
                        hypotheses: wire::hypotheses(&t),
                        sentences: wire::sentences(&t),
                        log_prob: t.log_prob,
                        mode: t.mode.to_string(),
                        translation: t.translation,
                        target_tokens: t.target_tokens,
                        elapsed_ms: began.elapsed().as_secs_f64() * 1e3,
                        encoder_attention,
                        agreement: wire::agreement(&explained),
                        alignment,
                    },
                ),
                Err(e) => sse_event(event::ERROR, &AppError::from(e).body()),
            },
            Err(e) => sse_event(event::ERROR, &e.body()),
        };
        let _ = tx.send(last).await;
    });
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// Sends every step of an explained translation with its attribution rows; false when the
/// client has gone.
async fn send_steps(tx: &mpsc::Sender<Event>, t: &Translation, explained: &[Attribution]) -> bool {
    for s in &t.steps {
        let event = match step_event(s, explained) {
            Ok(step) => sse_event(event::STEP, &step),
            Err(e) => sse_event(event::ERROR, &AppError::from(e).body()),
        };
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// Counts a running decoding in [`crate::Stats::decoding`] for as long as it lives.
struct Busy<'a>(&'a crate::Stats);

impl<'a> Busy<'a> {
    fn new(stats: &'a crate::Stats) -> Self {
        stats.decoding.fetch_add(1, Ordering::Relaxed);
        Busy(stats)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.decoding.fetch_sub(1, Ordering::Relaxed);
    }
}
