//! Reading one Server-Sent Events translation stream and timing its events.

use std::time::Instant;

use anyhow::{Result, bail};
use attnscope_protocol::event;
use futures::StreamExt;

use crate::Sample;

/// Sends `body` to `url` asking for a stream and records into `sample` when the first
/// `step` and the `done` event arrive (relative to `began`) and the size of each step.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    began: Instant,
    sample: &mut Sample,
) -> Result<()> {
    let resp = client
        .post(url)
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    let mut bytes = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut name = String::new();
    while let Some(chunk) = bytes.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                match name.as_str() {
                    event::STEP => {
                        sample.first_step.get_or_insert_with(|| began.elapsed());
                        sample.steps += 1;
                        sample.step_bytes += data.trim_start().len();
                    }
                    event::DONE => {
                        sample.done = Some(began.elapsed());
                        return Ok(());
                    }
                    event::ERROR => bail!("error event"),
                    _ => {}
                }
            }
        }
    }
    bail!("stream ended without a done event")
}
