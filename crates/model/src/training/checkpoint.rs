//! A run's folder and its checkpoint: what makes a training resumable.
//!
//! `runs/<name>/` holds `options.json` (the run's options), both tokenizers,
//! `checkpoint.safetensors` (weights, Adam moments and the step they belong to),
//! `checkpoint.json` (steps done, time spent, the last losses) and the log. [`RunFiles::open`]
//! decides whether the invocation starts or resumes a run (and refuses the wrong one);
//! [`RunFiles::save`] writes a checkpoint crash-safely and [`RunFiles::restore`] reads it
//! back, trusting the step stored with the weights over `checkpoint.json`. With
//! `--average-last N`, `snapshots/step-<step>.safetensors` keeps the weights of the run's last
//! checkpoints, which [`RunFiles::average_newest`] turns into the shipped weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::kernels::adam::AdamW;
use crate::training::options::TrainOptions;
use crate::training::run_log::{self, LogLine};
use crate::{Error, Result};

/// The checkpoint's own record of the steps it has made (beside the weights and moments).
const STEP_TENSOR: &str = "attnscope.step";

/// Where a run stands: steps done, time spent before this invocation, the last losses.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Position {
    pub step: usize,
    pub elapsed_seconds: f64,
    pub last_train_loss: f64,
    pub last_dev_loss: f64,
}

impl Position {
    /// A run that has not made a step.
    pub fn start() -> Self {
        Position {
            step: 0,
            elapsed_seconds: 0.0,
            last_train_loss: f64::NAN,
            last_dev_loss: f64::NAN,
        }
    }
}

/// The files of one run folder.
pub(crate) struct RunFiles {
    pub dir: PathBuf,
    options: PathBuf,
    checkpoint: PathBuf,
    info: PathBuf,
}

pub(crate) fn json_write<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    crate::files::write(path, text)
}

pub(crate) use crate::files::read_json as json_read;

impl RunFiles {
    /// The run `runs_dir/<name>` of `opts`: with `resume`, its saved options (which replace
    /// `opts`); otherwise a new run, refused if the folder already holds one.
    pub fn open(opts: &mut TrainOptions, runs_dir: &Path, resume: bool) -> Result<Self> {
        let dir = runs_dir.join(&opts.name);
        let run = RunFiles {
            options: dir.join("options.json"),
            checkpoint: dir.join("checkpoint.safetensors"),
            info: dir.join("checkpoint.json"),
            dir,
        };
        if resume {
            if !run.info.is_file() {
                return Err(Error::Invalid(format!(
                    "nothing to resume: {} does not exist; run without --resume to start",
                    run.info.display()
                )));
            }
            *opts = json_read(&run.options)?;
        } else if run.info.exists() {
            return Err(Error::Invalid(format!(
                "{} already holds a run; pass --resume to continue it or delete the folder to start over",
                run.dir.display()
            )));
        }
        Ok(run)
    }

    /// Creates the folder and records the options the run trains with.
    pub fn create(&self, opts: &TrainOptions) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        json_write(&self.options, opts)
    }

    /// The tokenizer file of language `lang`.
    pub fn tokenizer(&self, lang: &str) -> PathBuf {
        self.dir.join(format!("tokenizer.{lang}.json"))
    }

    /// The run's log of checkpoints.
    pub fn log(&self) -> PathBuf {
        self.dir.join(run_log::FILE)
    }

    /// The folder of weight snapshots kept for averaging.
    fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Writes the weights of step `step` as a snapshot (before its checkpoint, so a run
    /// killed between the two remakes the step and writes the same snapshot again) and
    /// removes all but the newest `keep`.
    pub fn save_snapshot(&self, varmap: &VarMap, step: usize, keep: usize) -> Result<()> {
        let dir = self.snapshots_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("step-{step:08}.safetensors"));
        crate::files::write_with(&path, |tmp| Ok(varmap.save(tmp)?))?;
        let all = self.snapshots(usize::MAX)?;
        for (_, old) in &all[..all.len().saturating_sub(keep)] {
            std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
        }
        Ok(())
    }

    /// The snapshots of steps up to `last`, oldest first.
    pub fn snapshots(&self, last: usize) -> Result<Vec<(usize, PathBuf)>> {
        let dir = self.snapshots_dir();
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let step = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-")?.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(step) = step.filter(|&s| s <= last) {
                out.push((step, path));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Sets `varmap` to the mean of the newest `n` snapshots of steps up to `last` and
    /// returns their steps; with fewer than two (or `n` below 2) it changes nothing and
    /// returns none.
    pub fn average_newest(
        &self,
        varmap: &VarMap,
        n: usize,
        last: usize,
        device: &Device,
    ) -> Result<Vec<usize>> {
        if n < 2 {
            return Ok(Vec::new());
        }
        let snapshots = self.snapshots(last)?;
        let newest = &snapshots[snapshots.len().saturating_sub(n)..];
        if newest.len() < 2 {
            return Ok(Vec::new());
        }
        let paths: Vec<PathBuf> = newest.iter().map(|(_, p)| p.clone()).collect();
        average(varmap, &paths, device)?;
        Ok(newest.iter().map(|(s, _)| *s).collect())
    }

    /// Whether a checkpoint's weights are on disk.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint.is_file()
    }

    /// Sets the variables and the optimiser from the checkpoint and returns where the run
    /// stands; the log is cut back to that step.
    pub fn restore(&self, varmap: &VarMap, opt: &mut AdamW, device: &Device) -> Result<Position> {
        let info: Position = json_read(&self.info)?;
        let tensors = candle_core::safetensors::load(&self.checkpoint, device)
            .map_err(|e| Error::bad_file(&self.checkpoint, e))?;
        set_variables(varmap, &tensors, &self.checkpoint)?;
        // The weights know their own step: a run killed between writing them and
        // `checkpoint.json` must not pair new weights with an old step count.
        let saved_step = match tensors.get(STEP_TENSOR) {
            Some(t) => t.to_vec1::<i64>()?.first().map(|&s| s as usize),
            None => None,
        }
        .unwrap_or(info.step);
        opt.load_state(&tensors, saved_step)?;
        run_log::repair(&self.log(), saved_step)?;
        Ok(Position {
            step: saved_step,
            ..info
        })
    }

    /// Writes the weights, the optimiser's moments and `at` (weights first, each file
    /// replaced whole), and appends `line` to the log.
    pub fn save(
        &self,
        varmap: &VarMap,
        opt: &AdamW,
        at: &Position,
        line: &LogLine,
        device: &Device,
    ) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = opt.state()?;
        for v in varmap
            .data()
            .lock()
            .map_err(|_| Error::Internal("poisoned variable map".into()))?
            .iter()
        {
            tensors.insert(v.0.clone(), v.1.as_tensor().clone());
        }
        tensors.insert(STEP_TENSOR.into(), Tensor::new(&[at.step as i64], device)?);
        crate::files::write_with(&self.checkpoint, |tmp| {
            Ok(candle_core::safetensors::save(&tensors, tmp)?)
        })?;
        json_write(&self.info, at)?;
        run_log::append(&self.log(), line)
    }
}

/// Sets every variable of `varmap` to the mean of its values in the weight files `paths`
/// (checkpoint averaging: Polyak and Juditsky 1992; Vaswani et al. 2017 average the last
/// checkpoints of a run). Nothing changes when `paths` is empty.
fn average(varmap: &VarMap, paths: &[PathBuf], device: &Device) -> Result<()> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(());
    };
    let load =
        |p: &Path| candle_core::safetensors::load(p, device).map_err(|e| Error::bad_file(p, e));
    let mut sum = load(first)?;
    for p in rest {
        let next = load(p)?;
        for (name, total) in sum.iter_mut() {
            let t = next
                .get(name)
                .ok_or_else(|| Error::bad_file(p, format!("lacks {name}")))?;
            *total = total
                .add(t)
                .map_err(|e| Error::bad_file(p, format!("{name}: {e}")))?;
        }
    }
    let n = paths.len() as f64;
    for total in sum.values_mut() {
        *total = total.affine(1.0 / n, 0.0)?;
    }
    set_variables(varmap, &sum, first)
}

/// Sets every variable of `varmap` from `tensors`, read from `path` (a checkpoint or a
/// model's weights); a missing or mis-shaped tensor is that file's fault.
pub(crate) fn set_variables(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Internal("poisoned variable map".into()))?;
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::bad_file(path, format!("lacks {name}")))?;
        var.set(t)
            .map_err(|e| Error::bad_file(path, format!("{name}: {e}")))?;
    }
    Ok(())
}
