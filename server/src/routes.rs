//! HTTP handlers.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use attnscope_model::{DecodeOptions, DecodeStep, Intervention, Mode, Translation, Translator};
use attnscope_protocol::{DoneEvent, StartEvent, TranslateRequest, TranslateResponse, event};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::wire::{self, step_event};
use crate::{AppError, AppState, MAX_BODY_BYTES, MAX_TEXT_CHARS};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/models", get(list_models))
        .route("/api/translate", post(translate))
        .route(
            "/api/render",
            post(crate::render::render).layer(crate::render::body_limit()),
        )
        .fallback(|| async { AppError::InvalidJson("no such API endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn list_models(State(st): State<AppState>) -> Json<Vec<attnscope_protocol::ModelInfo>> {
    Json(st.models.infos())
}

/// A validated request: the model, the tokenised source and the decoding options.
struct Job {
    model_name: String,
    model: Arc<Translator>,
    ids: Vec<u32>,
    source_tokens: Vec<String>,
    opts: DecodeOptions,
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
    })
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
    let (ids, source_tokens) = model.source(&req.text)?;
    model.check_options(ids.len(), &opts)?;
    Ok(Job {
        model_name,
        model,
        ids,
        source_tokens,
        opts,
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
async fn translate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let job = parse(&st, &body)?;
    if wants_sse(&headers) {
        Ok(stream(st, job).await.into_response())
    } else {
        Ok(Json(whole(st, job).await?).into_response())
    }
}

impl Job {
    /// Waits for a decoding permit, then decodes greedily on the blocking pool, counting
    /// steps in [`crate::Stats`]; `on_step` sees each step and may stop the decoding.
    async fn decode(
        self,
        st: &AppState,
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()> + Send + 'static,
    ) -> Result<Translation, AppError> {
        let permit = st
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::Unavailable)?;
        let stats = st.stats.clone();
        let Job {
            model,
            ids,
            source_tokens,
            opts,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _busy = Busy::new(&stats);
            model.translate_source(&ids, source_tokens, &opts, |s| {
                stats.steps.fetch_add(1, Ordering::Relaxed);
                on_step(s)
            })
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)
    }
}

async fn whole(st: AppState, job: Job) -> Result<TranslateResponse, AppError> {
    let model = job.model_name.clone();
    let t = job.decode(&st, |_| ControlFlow::Continue(())).await?;
    Ok(wire::response(model, t))
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
    let (tx, rx) = mpsc::channel::<Event>(16);
    let start = StartEvent {
        model: job.model_name.clone(),
        source_tokens: job.source_tokens.clone(),
    };
    // The channel has room, so the start event goes out before any decoding.
    let _ = tx.try_send(sse_event(event::START, &start));
    tokio::spawn(async move {
        let began = Instant::now();
        let worker_tx = tx.clone();
        let result = job
            .decode(&st, move |s| {
                let step = step_event(s);
                // Fails only when the client is gone: stop decoding.
                match worker_tx.blocking_send(sse_event(event::STEP, &step)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            })
            .await;
        let last = match result {
            Ok(t) if t.stopped => {
                st.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                tracing::info!("client disconnected; decoding stopped");
                return;
            }
            Ok(t) => sse_event(
                event::DONE,
                &DoneEvent {
                    hypotheses: wire::hypotheses(&t),
                    log_prob: t.log_prob,
                    mode: t.mode.to_string(),
                    translation: t.translation,
                    target_tokens: t.target_tokens,
                    elapsed_ms: began.elapsed().as_secs_f64() * 1e3,
                    encoder_attention: t.encoder_attention,
                },
            ),
            Err(e) => sse_event(event::ERROR, &e.body()),
        };
        let _ = tx.send(last).await;
    });
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
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
