//! The checkpoint log of a training run (`runs/<name>/log.jsonl`): one JSON line per
//! checkpoint, appended as the run goes, and repaired on resume so that a run killed in the
//! middle of a line, or after its last checkpoint, leaves only lines up to that checkpoint.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The log's file name in the run folder.
pub const FILE: &str = "log.jsonl";

/// One line of `log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub step: usize,
    pub epoch: f64,
    pub train_loss: f64,
    pub dev_loss: f64,
    pub lr: f64,
    pub elapsed_seconds: f64,
}

/// Appends `line` to the log at `path`.
pub fn append(path: &Path, line: &LogLine) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let text = serde_json::to_string(line).map_err(|e| Error::Internal(e.to_string()))?;
    writeln!(f, "{text}").map_err(|e| Error::io(path, e))
}

/// Keeps the lines of the checkpoint log up to checkpoint `step`: a run killed while it
/// appended a line, or after its last checkpoint, left a torn or stale last line there.
pub fn repair(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<LogLine>(l).is_ok_and(|line| line.step <= step))
        .collect();
    if kept.len() != text.lines().count() || !text.ends_with('\n') {
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        crate::files::write(path, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: usize) -> LogLine {
        LogLine {
            step,
            epoch: 0.0,
            train_loss: 1.0,
            dev_loss: 1.0,
            lr: 1e-3,
            elapsed_seconds: 1.0,
        }
    }

    #[test]
    fn repair_drops_torn_and_later_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        for s in [200, 400, 600] {
            append(&p, &line(s)).unwrap();
        }
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"step\": 80");
        std::fs::write(&p, &text).unwrap();
        repair(&p, 400).unwrap();
        let kept: Vec<usize> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<LogLine>(l).unwrap().step)
            .collect();
        assert_eq!(kept, vec![200, 400]);
        repair(&dir.path().join("absent.jsonl"), 1).unwrap();
    }
}
