//! HTTP handlers.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use attnscope_model::{Attribution, Translation};
use attnscope_protocol::{
    DoneEvent, ErrorBody, StartEvent, TranslateRequest, TranslateResponse, event,
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

use crate::job::{Decoded, Job, parse};
use crate::wire::{self, step_event};
use crate::{AppError, AppState, MAX_BODY_BYTES, REQUEST_TIMEOUT};

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
