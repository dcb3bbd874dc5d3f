//! Training-step timing: forward (teacher-forced loss), backward and one AdamW update per
//! batch, on batches of token ids given by the caller so that both sides of the
//! benchmark train on exactly the same pairs.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use attnscope_model::ModelConfig;
use attnscope_model::kernels::adam::AdamW;
use attnscope_model::networks::Network;
use attnscope_model::training::data::Example;
use attnscope_model::training::shards::Shards;
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::Deserialize;

/// What `bench/perf.py` sends on stdin: batches of `(source ids ending with </s>, target
/// ids without specials)`.
#[derive(Deserialize)]
pub struct TrainInput {
    pub batches: Vec<Vec<(Vec<u32>, Vec<u32>)>>,
}

/// Seconds spent in each part of the timed steps, and the target tokens they trained on.
#[derive(Default)]
struct Parts {
    /// Forward and backward passes (all shards, their gradients added up).
    passes: Vec<f64>,
    optimizer: Vec<f64>,
    step: Vec<f64>,
    tokens: usize,
}

/// Loads the shipped weights into trainable variables, takes one untimed warm-up step,
/// then times every batch `reps` times over, each step split into `data_parallel` shards as
/// `attnscope train --data-parallel` does. Returns the JSON report.
pub fn run(
    model_dir: &Path,
    input: &TrainInput,
    reps: usize,
    data_parallel: usize,
) -> Result<serde_json::Value> {
    if input.batches.is_empty() {
        bail!("no training batches on stdin");
    }
    attnscope_model::kernels::alloc::keep_freed_memory();
    let cfg = ModelConfig::load(&model_dir.join("config.json"))?;
    let device = Device::Cpu;
    let mut varmap = VarMap::new();
    let network = Network::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
    let weights = model_dir.join("model.safetensors");
    varmap
        .load(&weights)
        .with_context(|| format!("cannot load {}", weights.display()))?;
    let mut opt = AdamW::new(&varmap, 1e-4, 0.0)?;
    let batches: Vec<Vec<Example>> = input
        .batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|(src, tgt)| Example {
                    src: src.clone(),
                    tgt: tgt.clone(),
                })
                .collect()
        })
        .collect();
    let mut parts = Parts::default();
    let mut step = 0usize;
    let shards = Shards::new(data_parallel)?;
    let vars = varmap.all_vars();
    let mut one = |examples: &[Example], parts: Option<&mut Parts>| -> Result<()> {
        let began = Instant::now();
        let idx: Vec<usize> = (0..examples.len()).collect();
        let g = shards.gradients(&network, &cfg, &vars, examples, &idx, 7, step, &device)?;
        let (loss, grads, tokens) = (g.loss, g.grads, g.tokens);
        let passes = began.elapsed().as_secs_f64();
        opt.step(&grads, 1.0)?;
        let total = began.elapsed().as_secs_f64();
        if !loss.is_finite() {
            bail!("the loss is not finite at step {step}");
        }
        step += 1;
        if let Some(p) = parts {
            p.passes.push(passes);
            p.optimizer.push(total - passes);
            p.step.push(total);
            p.tokens += tokens;
        }
        Ok(())
    };
    one(&batches[0], None)?;
    for _ in 0..reps.max(1) {
        for b in &batches {
            one(b, Some(&mut parts))?;
        }
    }
    let seconds: f64 = parts.step.iter().sum();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    Ok(serde_json::json!({
        "steps": parts.step.len(),
        "data_parallel": shards.count(),
        "target_tokens": parts.tokens,
        "target_tokens_per_s": parts.tokens as f64 / seconds,
        "step_s_median": crate::median(parts.step.clone()),
        "passes_s_mean": mean(&parts.passes),
        "optimizer_s_mean": mean(&parts.optimizer),
    }))
}
