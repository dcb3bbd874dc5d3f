//! The attnscope web server: serves the built frontend and an HTTP API that translates with
//! candle models and streams every decoding step (token + attention) as Server-Sent Events.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] binds it and shuts down
//! gracefully. Decoding runs on tokio's blocking pool, at most [`AppState::workers`]
//! translations at a time, each computing only while it holds one of the [`gate::StepGate`]'s
//! CPU slots (first steps first, then round-robin, one step at a time). Steps go out through a
//! bounded channel: when the client disconnects the channel closes and decoding stops at the
//! next step.

pub mod batcher;
mod error;
pub mod gate;
mod job;
pub mod listen;
pub mod metrics;
mod models;
mod openapi;
pub mod priority;
pub mod render;
mod routes;
mod security;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use anyhow::Context;
use axum::Router;
use tokio::sync::Semaphore;

pub use error::AppError;
pub use models::Models;

/// The model a request uses when it names none, and the one `attnscope train` writes by default.
pub const DEFAULT_MODEL: &str = "bahdanau";
/// Longest text accepted by `POST /api/translate`, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Translations that may wait for a decoding slot before the server answers 503.
pub const DEFAULT_QUEUE: usize = 1024;
/// Translations decoding at once (each on its own blocking thread, sharing the CPU slots).
pub const DEFAULT_STREAMS: usize = 512;
/// Longest time a request may take until its response head (a stream may then run on).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What `attnscope serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub models_dir: PathBuf,
    pub dist: PathBuf,
    pub default_model: String,
    /// Translations that may wait beyond the decoding slots; more get 503.
    pub queue: usize,
    /// Translations decoding at once.
    pub streams: usize,
    /// Sentences decoded together in one batch (1: every translation alone).
    pub batch_rows: usize,
    /// Connection caps and the header-read timeout.
    pub limits: listen::Limits,
    /// Niceness of the decoding threads ([`priority`]; 0: the server's own).
    pub decode_nice: i32,
}

/// Counters of the decoding work, for tests and monitoring.
#[derive(Debug, Default)]
pub struct Stats {
    /// Decodings running right now.
    pub decoding: AtomicUsize,
    /// Decoding steps made since start.
    pub steps: AtomicU64,
    /// Decodings stopped early because the client went away.
    pub abandoned: AtomicU64,
    /// Translation requests admitted and not yet finished (waiting or decoding).
    pub inflight: AtomicUsize,
    /// Requests turned away with 503 because the queue was full.
    pub rejected: AtomicU64,
    /// Steps taken by the batches of the [`batcher::Batcher`] (each advances every
    /// translation in its batch by one token).
    pub batch_steps: AtomicU64,
    /// Translations decoded in a shared batch.
    pub batched: AtomicU64,
}

/// Counts one translation in [`Stats::decoding`] for as long as it lives (until it is
/// dropped, a panicking decoder's too).
pub(crate) struct Decoding(Arc<Stats>);

impl Decoding {
    pub(crate) fn new(stats: &Arc<Stats>) -> Self {
        stats
            .decoding
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Decoding(stats.clone())
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        self.0
            .decoding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A translation's place in the system, from admission until its decoding ends.
#[derive(Debug)]
pub struct Admission(Arc<Stats>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0
            .inflight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<Models>,
    /// Permits for translations decoding at once (see [`Self::worker_count`]).
    pub workers: Arc<Semaphore>,
    /// CPU slots (one per core) that decoding steps and image rendering take turns on.
    pub gate: Arc<gate::StepGate>,
    /// Folder of the built frontend.
    pub dist: PathBuf,
    pub stats: Arc<Stats>,
    /// The Content-Security-Policy sent with every response (see `security.rs`).
    pub csp: Arc<str>,
    /// Translations decoding at once (the permits of `workers`).
    pub worker_count: usize,
    /// Translations that may wait beyond the slots.
    pub queue_limit: usize,
    pub metrics: Arc<metrics::Metrics>,
    /// Queues of the translations that decode in shared batches.
    pub batcher: Arc<batcher::Batcher>,
}

impl AppState {
    pub fn new(models: Models, dist: PathBuf) -> Self {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let index = std::fs::read_to_string(dist.join("index.html")).unwrap_or_default();
        let (gate, stats, metrics) = (gate::StepGate::new(n), Arc::default(), Arc::default());
        AppState {
            models: Arc::new(models),
            workers: Arc::new(Semaphore::new(DEFAULT_STREAMS)),
            batcher: Arc::new(batcher::Batcher::new(
                usize::from(batcher::DEFAULT_BATCH_ROWS),
                gate.clone(),
                Arc::clone(&stats),
                Arc::clone(&metrics),
            )),
            gate,
            csp: security::content_security_policy(&index).into(),
            dist,
            stats,
            worker_count: DEFAULT_STREAMS,
            queue_limit: DEFAULT_QUEUE,
            metrics,
        }
    }

    /// The same state with batches of at most `rows` sentences (1: no batching).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batcher = Arc::new(batcher::Batcher::new(
            rows,
            self.gate.clone(),
            self.stats.clone(),
            self.metrics.clone(),
        ));
        self
    }

    /// The same state with `queue` translations allowed to wait beyond the decoding slots.
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue_limit = queue;
        self
    }

    /// The same state with `streams` translations decoding at once (at least one).
    pub fn with_streams(mut self, streams: usize) -> Self {
        let streams = streams.max(1);
        self.workers = Arc::new(Semaphore::new(streams));
        self.worker_count = streams;
        self
    }

    /// Admits one more translation, or refuses with 503 when the slots and the queue are full.
    pub fn admit(&self) -> Result<Admission, AppError> {
        use std::sync::atomic::Ordering;
        let limit = self.worker_count + self.queue_limit;
        let mut cur = self.stats.inflight.load(Ordering::Relaxed);
        loop {
            if cur >= limit {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(AppError::Busy {
                    waiting: cur.saturating_sub(self.worker_count),
                });
            }
            match self.stats.inflight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Admission(self.stats.clone())),
                Err(now) => cur = now,
            }
        }
    }
}

/// The router: `/api/models`, `/api/translate`, and the frontend at `/`.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Logs to stderr; `RUST_LOG` picks the level (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads the models, binds `addr` and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig, addr: SocketAddr) -> anyhow::Result<()> {
    listen::check(&config.limits)?;
    let models = Models::load_dir(&config.models_dir, &config.default_model)?;
    if !config.dist.join("index.html").is_file() {
        anyhow::bail!(
            "{} has no index.html: build the frontend first (`trunk build --release`, or use scripts/run.sh)",
            config.dist.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is it already in use?"))?;
    let local = listener.local_addr()?;
    tracing::info!(models = ?models.names(), "attnscope listening on http://{local}");
    priority::set_decode_nice(config.decode_nice);
    let state = AppState::new(models, config.dist)
        .with_queue(config.queue)
        .with_streams(config.streams)
        .with_batch_rows(config.batch_rows);
    serve_until(listener, state, config.limits, shutdown_signal()).await
}

/// Serves `state` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting connections and returns once every open connection (streams in progress
/// included) has finished.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: listen::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listen::serve(listener, app(state), limits, shutdown).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
