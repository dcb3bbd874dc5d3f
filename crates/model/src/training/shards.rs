//! Data-parallel training steps: a batch split into shards whose forward and backward passes
//! run side by side, one thread each. Each shard's loss is scaled by its share of the
//! batch's target tokens before its backward pass, so the shards' gradients add up to the
//! gradient of the whole batch's mean loss (up to float rounding).
//!
//! On two cores a step of one batch keeps only one busy for much of its time: candle's graph
//! work around every op (allocating results and gradients, recording and walking the graph)
//! runs on the calling thread while the other waits for the next matrix product. Two shards
//! keep both busy with their own work. Each shard runs in its own one-thread rayon pool (for
//! candle's matrix products) with the crate's kernels capped at one thread
//! ([`with_threads`]). A shard's dropout masks and noise depend on `(seed, step, shard)`
//! only, so a run is as reproducible as with one shard.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::config::ModelConfig;
use crate::kernels::threads::with_threads;
use crate::networks::{Network, TrainMode};
use crate::training::data::{Example, collate};
use crate::{Error, Result};

/// What one training step's forward and backward passes produced.
pub struct Gradients {
    /// The batch's mean loss per target token.
    pub loss: f64,
    pub grads: GradStore,
    /// Target tokens of the batch.
    pub tokens: usize,
}

/// Runs a batch as `shards` parts side by side; see the module documentation.
pub struct Shards {
    /// One single-thread pool per shard (none for one shard: it runs on the caller's
    /// thread with every thread candle has).
    pools: Vec<rayon::ThreadPool>,
}

impl Shards {
    /// Workers for `shards` parts (1: the plain step).
    pub fn new(shards: usize) -> Result<Self> {
        let pools = if shards <= 1 {
            Vec::new()
        } else {
            (0..shards)
                .map(|i| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .thread_name(move |_| format!("shard-{i}"))
                        .build()
                        .map_err(|e| Error::Internal(format!("cannot start shard {i}: {e}")))
                })
                .collect::<Result<_>>()?
        };
        Ok(Shards { pools })
    }

    /// Parts a batch is split into.
    pub fn count(&self) -> usize {
        self.pools.len().max(1)
    }

    /// The loss and the gradients of `model` on the examples `idx` of `examples`, training
    /// step `step` of a run seeded with `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn gradients(
        &self,
        model: &Network,
        cfg: &ModelConfig,
        vars: &[Var],
        examples: &[Example],
        idx: &[usize],
        seed: u64,
        step: usize,
        device: &Device,
    ) -> Result<Gradients> {
        let parts = self.count().min(idx.len());
        if parts <= 1 {
            let mode = TrainMode::for_step(cfg, seed, step);
            return one(model, cfg, examples, idx, mode, 1.0, device);
        }
        let per = idx.len().div_ceil(parts);
        // Each shard's loss is scaled by its share of the target tokens before its backward
        // pass, so the shards' gradients only need adding up.
        let tokens =
            |part: &[usize]| -> usize { part.iter().map(|&i| examples[i].tgt.len() + 1).sum() };
        let total = tokens(idx).max(1) as f64;
        let results: Vec<Result<Gradients>> = std::thread::scope(|scope| {
            let handles: Vec<_> = idx
                .chunks(per)
                .zip(&self.pools)
                .enumerate()
                .map(|(shard, (part, pool))| {
                    scope.spawn(move || {
                        pool.install(|| {
                            with_threads(1, || {
                                let mode = TrainMode::for_shard(cfg, seed, step, shard);
                                let share = tokens(part) as f64 / total;
                                one(model, cfg, examples, part, mode, share, device)
                            })
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Internal("a training shard panicked".into()))
                    })
                })
                .collect()
        });
        let results = results.into_iter().collect::<Result<Vec<_>>>()?;
        combine(results, vars, self.count())
    }
}

/// The forward and backward pass of one batch (or shard), the gradients of its loss scaled
/// by `share` (its share of the batch's target tokens).
fn one(
    model: &Network,
    cfg: &ModelConfig,
    examples: &[Example],
    idx: &[usize],
    mut mode: TrainMode,
    share: f64,
    device: &Device,
) -> Result<Gradients> {
    let batch = collate(examples, idx, device)?;
    let loss = model.loss(cfg, &batch, &mut mode)?;
    let grads = if share == 1.0 {
        loss.backward()?
    } else {
        loss.affine(share, 0.0)?.backward()?
    };
    Ok(Gradients {
        loss: share * loss.to_scalar::<f32>()? as f64,
        grads,
        tokens: batch.tokens,
    })
}

/// The shards' losses and gradients (each already scaled by its share) added up, the
/// variables split over `threads` threads.
fn combine(parts: Vec<Gradients>, vars: &[Var], threads: usize) -> Result<Gradients> {
    let tokens: usize = parts.iter().map(|p| p.tokens).sum();
    let loss = parts.iter().map(|p| p.loss).sum();
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Err(Error::Internal("a training step with no shards".into()));
    };
    let rest: Vec<GradStore> = parts.map(|p| p.grads).collect();
    let mut grads = first.grads;
    let sum = |vars: &[Var]| -> Result<Vec<(usize, Tensor)>> {
        let mut out = Vec::new();
        for (i, var) in vars.iter().enumerate() {
            let var = var.as_tensor();
            let mut total: Option<Tensor> = grads.get(var).cloned();
            for store in &rest {
                if let Some(g) = store.get(var) {
                    total = Some(match total {
                        Some(t) => (t + g)?,
                        None => g.clone(),
                    });
                }
            }
            if let Some(t) = total {
                out.push((i, t));
            }
        }
        Ok(out)
    };
    let per = vars.len().div_ceil(threads.max(1)).max(1);
    let sums: Vec<Result<Vec<(usize, Tensor)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = vars
            .chunks(per)
            .enumerate()
            .map(|(c, chunk)| {
                let sum = &sum;
                scope.spawn(move || {
                    with_threads(1, || sum(chunk))
                        .map(|v| v.into_iter().map(|(i, t)| (c * per + i, t)).collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("adding gradients panicked".into())))
            })
            .collect()
    });
    for part in sums {
        for (i, t) in part? {
            grads.insert(vars[i].as_tensor(), t);
        }
    }
    Ok(Gradients {
        loss,
        grads,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EOS_ID;

    /// Pairs of token ids of varied lengths, inside the tiny vocabularies.
    fn examples(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| {
                let mut src: Vec<u32> = (0..3 + i % 5)
                    .map(|j| 4 + ((i * 7 + j * 3) % 30) as u32)
                    .collect();
                src.push(EOS_ID);
                let tgt = (0..2 + (i * 3) % 6)
                    .map(|j| 4 + ((i * 5 + j * 11) % 35) as u32)
                    .collect();
                Example { src, tgt }
            })
            .collect()
    }

    #[test]
    fn shards_give_the_whole_batchs_loss_and_gradients() {
        let dev = Device::Cpu;
        let data = examples(11);
        let idx: Vec<usize> = (0..data.len()).collect();
        for kind in ["additive", "general", "transformer"] {
            let (mut cfg, _, _, varmap, model) = crate::fixtures::parts(kind, 3).unwrap();
            // No dropout: then the shards' masks, drawn apart, cannot differ from the batch's.
            cfg.dropout = 0.0;
            let vars = varmap.all_vars();
            let whole = Shards::new(1).unwrap();
            let want = whole
                .gradients(&model, &cfg, &vars, &data, &idx, 5, 0, &dev)
                .unwrap();
            for n in [2, 3] {
                let shards = Shards::new(n).unwrap();
                assert_eq!(shards.count(), n);
                let got = shards
                    .gradients(&model, &cfg, &vars, &data, &idx, 5, 0, &dev)
                    .unwrap();
                assert_eq!(got.tokens, want.tokens);
                assert!(
                    (got.loss - want.loss).abs() < 1e-5,
                    "{kind}, {n} shards: loss"
                );
                for var in &vars {
                    let (g, w) = (got.grads.get(var), want.grads.get(var));
                    let (Some(g), Some(w)) = (g, w) else {
                        assert!(g.is_none() && w.is_none(), "{kind}: a gradient is missing");
                        continue;
                    };
                    let scale = crate::fixtures::max_diff(w, &w.zeros_like().unwrap()).max(1e-3);
                    let diff = crate::fixtures::max_diff(g, w);
                    assert!(
                        diff <= 1e-4 * scale.max(1.0),
                        "{kind}, {n} shards: {diff} of {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn more_shards_than_pairs_is_the_plain_step() {
        let dev = Device::Cpu;
        let data = examples(1);
        let (cfg, _, _, varmap, model) = crate::fixtures::parts("additive", 3).unwrap();
        let vars = varmap.all_vars();
        let a = Shards::new(1)
            .unwrap()
            .gradients(&model, &cfg, &vars, &data, &[0], 5, 0, &dev)
            .unwrap();
        let b = Shards::new(4)
            .unwrap()
            .gradients(&model, &cfg, &vars, &data, &[0], 5, 0, &dev)
            .unwrap();
        assert_eq!(a.loss, b.loss);
    }

    /// Label smoothing changes the training loss of every architecture (and, with two
    /// shards, as with one) but never the dev loss, which stays the plain cross-entropy.
    #[test]
    fn label_smoothing_reaches_the_training_loss_only() {
        let dev = Device::Cpu;
        let data = examples(6);
        let idx: Vec<usize> = (0..data.len()).collect();
        let batch = crate::training::data::collate(&data, &idx, &dev).unwrap();
        for kind in ["additive", "transformer"] {
            let (mut cfg, _, _, varmap, model) = crate::fixtures::parts(kind, 3).unwrap();
            cfg.dropout = 0.0;
            let vars = varmap.all_vars();
            let step = |cfg: &ModelConfig, n: usize| {
                Shards::new(n)
                    .unwrap()
                    .gradients(&model, cfg, &vars, &data, &idx, 5, 0, &dev)
                    .unwrap()
                    .loss
            };
            let dev_loss = |cfg: &ModelConfig| {
                crate::training::train::batch_loss(&model, cfg, &batch)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let (plain, plain_dev) = (step(&cfg, 1), dev_loss(&cfg));
            assert!((plain - plain_dev as f64).abs() < 1e-5, "{kind}");
            cfg.label_smoothing = 0.1;
            let smoothed = step(&cfg, 1);
            // Near-uniform random predictions: every token costs about the same, so the
            // difference is small, yet far above f32 rounding.
            assert!(
                (smoothed - plain).abs() > 2e-5,
                "{kind}: {smoothed} vs {plain}"
            );
            assert!(
                (step(&cfg, 2) - smoothed).abs() < 1e-5,
                "{kind}: two shards"
            );
            assert_eq!(dev_loss(&cfg), plain_dev, "{kind}: the dev loss changed");
        }
    }
}
