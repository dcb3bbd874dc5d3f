//! Prometheus metrics (`GET /metrics`): requests and errors per route, latency histograms,
//! the decoding pool and its queue.
//!
//! Hand-written text exposition format (version 0.0.4) over atomics and one mutex-guarded
//! table of request counts: nothing here blocks for longer than an increment.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Stats;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// A cumulative histogram of durations in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {n}");
    }
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(route, status)` -> requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Per route: time until the response head was ready.
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// Time from a translation request until its first step was sent.
    pub first_step: Histogram,
    /// Time from a translation request until its last step.
    pub translation: Histogram,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
        let h = self
            .latency
            .lock()
            .ok()
            .map(|mut m| m.entry(route.to_string()).or_default().clone());
        if let Some(h) = h {
            h.observe(seconds);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, stats: &Stats, workers: usize, queue_limit: usize) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP attnscope_requests_total HTTP requests answered, by route and status.\n# TYPE attnscope_requests_total counter"
        );
        let mut errors = 0;
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "attnscope_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
                if *status >= 400 {
                    errors += n;
                }
            }
        }
        counter(
            &mut out,
            "attnscope_errors_total",
            "Requests answered with a 4xx or 5xx status.",
            errors,
        );
        let _ = writeln!(
            out,
            "# HELP attnscope_request_duration_seconds Time until the response head, by route.\n# TYPE attnscope_request_duration_seconds histogram"
        );
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                h.render(
                    &mut out,
                    "attnscope_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP attnscope_first_step_seconds Time from a translation request to its first decoding step.\n# TYPE attnscope_first_step_seconds histogram"
        );
        self.first_step
            .render(&mut out, "attnscope_first_step_seconds", "");
        let _ = writeln!(
            out,
            "# HELP attnscope_translation_seconds Time from a translation request to its last decoding step.\n# TYPE attnscope_translation_seconds histogram"
        );
        self.translation
            .render(&mut out, "attnscope_translation_seconds", "");
        let decoding = stats.decoding.load(Ordering::Relaxed) as u64;
        let inflight = stats.inflight.load(Ordering::Relaxed) as u64;
        gauge(
            &mut out,
            "attnscope_decoding",
            "Decodings running now.",
            decoding,
        );
        gauge(
            &mut out,
            "attnscope_queue_depth",
            "Admitted requests waiting for a decoding slot.",
            inflight.saturating_sub(decoding),
        );
        gauge(
            &mut out,
            "attnscope_workers",
            "Translations that may decode at once.",
            workers as u64,
        );
        gauge(
            &mut out,
            "attnscope_queue_limit",
            "Requests that may wait beyond the slots before the server answers 503.",
            queue_limit as u64,
        );
        counter(
            &mut out,
            "attnscope_decode_steps_total",
            "Decoding steps made.",
            stats.steps.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "attnscope_abandoned_total",
            "Decodings stopped because the client went away.",
            stats.abandoned.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "attnscope_batch_steps_total",
            "Steps of shared batches, each advancing every translation in its batch.",
            stats.batch_steps.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "attnscope_batched_translations_total",
            "Translations decoded in a shared batch.",
            stats.batched.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "attnscope_rejected_total",
            "Requests answered 503 because the queue was full.",
            stats.rejected.load(Ordering::Relaxed),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_the_text_is_prometheus_format() {
        let m = Metrics::default();
        m.record("/api/translate", 200, 0.003);
        m.record("/api/translate", 200, 0.3);
        m.record("/api/translate", 400, 0.0005);
        m.first_step.observe(0.004);
        let text = m.render(&Stats::default(), 2, 10);
        assert!(
            text.contains("attnscope_requests_total{route=\"/api/translate\",status=\"200\"} 2")
        );
        assert!(text.contains("attnscope_errors_total 1"));
        assert!(text.contains(
            "attnscope_request_duration_seconds_bucket{route=\"/api/translate\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "attnscope_request_duration_seconds_bucket{route=\"/api/translate\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("attnscope_first_step_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("attnscope_first_step_seconds_count 1"));
        assert!(text.contains("attnscope_queue_limit 10"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
