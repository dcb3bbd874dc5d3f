//! Shared helpers of the end-to-end tests: a real attnscope server on a free port, a
//! chromedriver, and a Server-Sent-Events reader; [`page`] drives the page in Chromium.

pub mod page;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use attnscope::{AppState, Models, app};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The shipped models (`models/`), or `ATTNSCOPE_MODELS` when set.
pub fn models_dir() -> PathBuf {
    std::env::var_os("ATTNSCOPE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// Trunk's output (`dist/`), or `ATTNSCOPE_DIST` when set.
pub fn dist_dir() -> PathBuf {
    std::env::var_os("ATTNSCOPE_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("dist"))
}

/// Starts the real router with the shipped models on 127.0.0.1:0 and returns its address.
pub async fn start_server() -> Result<SocketAddr> {
    start_server_with(&models_dir(), attnscope::DEFAULT_MODEL).await
}

/// [`start_server`] with the models of `dir`, `default` the one a request gets when it
/// names none.
pub async fn start_server_with(dir: &std::path::Path, default: &str) -> Result<SocketAddr> {
    let models = Models::load_dir(dir, default)?;
    // Decoding at the priority `attnscope serve` gives it (ATTNSCOPE_DECODE_NICE as there).
    let nice = std::env::var("ATTNSCOPE_DECODE_NICE").ok();
    attnscope::priority::set_decode_nice(
        nice.and_then(|n| n.parse().ok())
            .unwrap_or(attnscope::priority::DEFAULT_DECODE_NICE),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app(AppState::new(models, dist_dir()));
    tokio::spawn(async move { axum_serve(listener, router).await });
    Ok(addr)
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let limits = attnscope::listen::Limits::default();
    if let Err(e) = attnscope::listen::serve(listener, router, limits, std::future::pending()).await
    {
        eprintln!("test server stopped: {e}");
    }
}

/// Events `(name, data)` of a complete Server-Sent-Events body.
pub fn parse_sse(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut name, mut data) = (String::new(), Vec::<String>::new());
    for line in body.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                out.push((
                    if name.is_empty() {
                        "message".into()
                    } else {
                        name.clone()
                    },
                    data.join("\n"),
                ));
            }
            name.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            name = v.trim_start().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
        }
    }
    out
}

/// A chromedriver child process, killed on drop.
pub struct Chromedriver {
    child: Child,
    pub url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `chromedriver` (or `CHROMEDRIVER`) on a free port and waits until it answers.
pub async fn start_chromedriver() -> Result<Chromedriver> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {exe}: install Debian's chromium-driver (scripts/setup.sh --browser does)"))?;
    let driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return Ok(driver);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{exe} did not answer on port {port} within 20 s")
}

/// A headless Chromium session through `driver`.
pub async fn browser(driver: &Chromedriver) -> Result<fantoccini::Client> {
    browser_with_downloads(driver, None).await
}

/// [`browser`], saving downloads into `downloads` without asking when given.
pub async fn browser_with_downloads(
    driver: &Chromedriver,
    downloads: Option<&std::path::Path>,
) -> Result<fantoccini::Client> {
    let mut caps = serde_json::Map::new();
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
    ];
    let chrome = std::env::var("CHROME").ok().or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| p.to_string())
    });
    let mut opts = serde_json::json!({ "args": args });
    if let Some(bin) = chrome {
        opts["binary"] = serde_json::Value::String(bin);
    }
    if let Some(dir) = downloads {
        opts["prefs"] = serde_json::json!({
            "download.default_directory": dir,
            "download.prompt_for_download": false,
        });
    }
    caps.insert("goog:chromeOptions".into(), opts);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = fantoccini::ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .context("cannot open a Chromium session through chromedriver")?;
    Ok(client)
}
