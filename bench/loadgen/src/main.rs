//! `attnscope-loadgen`: opens N concurrent streamed translations (`POST /api/translate`,
//! `Accept: text/event-stream`) against a running attnscope server and reports, per run:
//! time to the first `step` event and to the `done` event (p50, p99, max), translations per
//! second, errors by kind, bytes per `step` event, and the server's peak resident memory
//! (`VmHWM` from `/proc`, when given the server's pid).
//!
//! Each of the N clients sends its requests one after another (a closed loop), cycling
//! through a list of 10-word English sentences, until the run's request count is reached.

mod sse;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;

/// Sentences of ten words (plus the final mark), as in the performance brief.
const SENTENCES: &[&str] = &[
    "I think that we should leave before it starts raining.",
    "She told me that her brother lives in a small town.",
    "We have to finish this work before the end of June.",
    "My father usually reads the newspaper while he eats his breakfast.",
    "Do you know where I can buy a ticket for tomorrow?",
    "The children played in the garden until it was dark outside.",
    "He said that he would call me when he got home.",
    "I don't want to go to school on a Saturday.",
];

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server's base address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent streams.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Translations in all (at least one per stream).
    #[arg(long, short = 'n', default_value_t = 200)]
    requests: usize,
    /// Model to ask for (default: the server's default).
    #[arg(long)]
    model: Option<String>,
    /// Translate this text every time instead of the built-in 10-word sentences.
    #[arg(long)]
    text: Option<String>,
    /// Attention mode to ask for.
    #[arg(long)]
    attention: Option<String>,
    /// The server's process id, to read its peak resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Spread the streams' first requests evenly over this many milliseconds (0: all at
    /// once, a burst of first steps).
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// Also print the result as one row of the Markdown table in docs/BENCHMARKS.md.
    #[arg(long)]
    markdown: bool,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Start no new translation after this many seconds (a soak: `-n` then only bounds the
    /// count).
    #[arg(long)]
    seconds: Option<f64>,
}

/// What one streamed translation measured.
#[derive(Default)]
struct Sample {
    first_step: Option<Duration>,
    done: Option<Duration>,
    steps: usize,
    step_bytes: usize,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    concurrency: usize,
    requests: usize,
    ramp_ms: u64,
    model: String,
    completed: usize,
    errors: usize,
    error_kinds: Vec<(String, usize)>,
    first_step_ms: Percentiles,
    translation_ms: Percentiles,
    translations_per_s: f64,
    steps_per_translation: f64,
    bytes_per_step: f64,
    wall_s: f64,
    server_peak_rss_mib: Option<f64>,
}

impl Report {
    /// `| model | streams | ramp | requests | errors | first step p50 / p99 / max | translation
    /// p50 / p99 | translations/s | bytes/step | peak RSS |`
    fn markdown_row(&self) -> String {
        let ms = |x: f64| format!("{x:.1}");
        format!(
            "| {} | {} | {} ms | {} | {} | {} / {} / {} | {} / {} | {:.1} | {:.0} | {} |",
            self.model,
            self.concurrency,
            self.ramp_ms,
            self.requests,
            self.errors,
            ms(self.first_step_ms.p50),
            ms(self.first_step_ms.p99),
            ms(self.first_step_ms.max),
            ms(self.translation_ms.p50),
            ms(self.translation_ms.p99),
            self.translations_per_s,
            self.bytes_per_step,
            self.server_peak_rss_mib
                .map_or("n/a".into(), |m| format!("{m:.0} MiB")),
        )
    }
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut xs: Vec<Duration>) -> Self {
        xs.sort();
        let at = |q: f64| {
            xs.get(((xs.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

async fn one(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> Sample {
    let began = Instant::now();
    let mut sample = Sample::default();
    if let Err(e) = sse::run(client, url, body, began, &mut sample).await {
        sample.error = Some(e.to_string());
    }
    sample
}

/// Peak resident memory of process `pid` in MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status: is the server running?"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM line in /proc status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("empty VmHWM line")?
        .parse()
        .context("VmHWM is not a number")?;
    Ok(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let requests = args.requests.max(args.concurrency);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{}/api/translate", args.url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let stop_at = args
        .seconds
        .map(|s| began + Duration::from_secs_f64(s.max(0.0)));
    let mut tasks = Vec::with_capacity(args.concurrency);
    for k in 0..args.concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        let (model, attention, text) = (
            args.model.clone(),
            args.attention.clone(),
            args.text.clone(),
        );
        let delay = Duration::from_millis(args.ramp_ms * k as u64 / args.concurrency as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut samples = Vec::new();
            loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    return samples;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return samples;
                }
                let text = text.as_deref().unwrap_or(SENTENCES[i % SENTENCES.len()]);
                let mut body = serde_json::json!({ "text": text });
                if let Some(m) = &model {
                    body["model"] = m.clone().into();
                }
                if let Some(a) = &attention {
                    body["attention"] = a.clone().into();
                }
                samples.push(one(&client, &url, &body).await);
            }
        }));
    }
    let mut samples = Vec::with_capacity(requests);
    for t in tasks {
        samples.extend(t.await.context("a client task panicked")?);
    }
    let wall = began.elapsed();

    let mut kinds: Vec<(String, usize)> = Vec::new();
    for e in samples.iter().filter_map(|s| s.error.as_ref()) {
        match kinds.iter_mut().find(|(k, _)| k == e) {
            Some((_, n)) => *n += 1,
            None => kinds.push((e.clone(), 1)),
        }
    }
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let steps: usize = ok.iter().map(|s| s.steps).sum();
    let requests = samples.len();
    let report = Report {
        concurrency: args.concurrency,
        requests,
        ramp_ms: args.ramp_ms,
        model: args.model.clone().unwrap_or_else(|| "(default)".into()),
        completed: ok.len(),
        errors: samples.len() - ok.len(),
        error_kinds: kinds,
        first_step_ms: Percentiles::of(ok.iter().filter_map(|s| s.first_step).collect()),
        translation_ms: Percentiles::of(ok.iter().filter_map(|s| s.done).collect()),
        translations_per_s: ok.len() as f64 / wall.as_secs_f64(),
        steps_per_translation: steps as f64 / ok.len().max(1) as f64,
        bytes_per_step: ok.iter().map(|s| s.step_bytes).sum::<usize>() as f64 / steps.max(1) as f64,
        wall_s: wall.as_secs_f64(),
        server_peak_rss_mib: args.pid.map(peak_rss_mib).transpose()?,
    };
    let line = serde_json::to_string(&report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    if args.markdown {
        println!("{}", report.markdown_row());
    }
    if report.errors > 0 {
        bail!("{} of {requests} translations failed", report.errors);
    }
    Ok(())
}
