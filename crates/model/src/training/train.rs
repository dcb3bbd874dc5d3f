//! Training a [`Network`] from a TSV of sentence pairs, with resumable checkpoints.
//!
//! The run directory (`runs/<name>/`) holds the options, both tokenizers, `checkpoint.safetensors`
//! (weights and Adam moments), `checkpoint.json` (steps done) and `log.jsonl` (one line per
//! checkpoint). The data order depends only on `(seed, epoch)`, so a resumed run makes the
//! same updates as one that was never stopped. At the end the model is exported to
//! `models/<name>/` and scored on its test split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::decoding::translator::{CONFIG_FILE, WEIGHTS_FILE};
use crate::evaluation::TestItem;
use crate::evaluation::metrics;
use crate::kernels::adam::AdamW;
use crate::networks::Batch;
use crate::networks::init;
use crate::networks::{Network, TrainMode};
use crate::report::TrainingSummary;
use crate::training::data::{self, Example, Pair};
use crate::training::options::TrainOptions;
pub use crate::training::run_log::LogLine;
use crate::training::{card, run_log};
use crate::vocab::Vocab;
use crate::{Error, Result, Translator};

/// The training options, copied into the model directory.
pub const OPTIONS_FILE: &str = "training-options.json";
/// The checkpoint log (`log.jsonl` of the run), copied into the model directory.
pub const LOG_FILE: &str = "training-log.jsonl";

/// Progress reports for a front end (progress bars, logs).
#[derive(Clone, Debug)]
pub enum Event {
    /// A phase starts (reading data, training tokenizers, ...).
    Phase(String),
    /// Training starts or resumes at `done` of `total` steps.
    Begin { total: usize, done: usize },
    Step {
        step: usize,
        loss: f64,
        lr: f64,
        tokens_per_second: f64,
    },
    Checkpoint {
        step: usize,
        train_loss: f64,
        dev_loss: f64,
    },
    /// Test-set decoding: `done` of `total` sentences.
    Eval { done: usize, total: usize },
}

/// How this invocation runs the training: fresh or resumed, and for how long.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Continue the run from its last checkpoint, with its saved options.
    pub resume: bool,
    /// Change the planned number of epochs (and so the learning-rate schedule).
    pub epochs: Option<f64>,
    /// Stop after this many steps in all (a checkpoint is written there) without exporting;
    /// a later `resume` continues exactly as if the run had not stopped.
    pub stop_after: Option<usize>,
    /// Description of the machine, for the model card.
    pub hardware: String,
}

/// Where a finished run put its model and how it scored.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub model_dir: PathBuf,
    pub summary: TrainingSummary,
    pub parameters: usize,
}

#[derive(Serialize, Deserialize)]
struct CheckpointInfo {
    step: usize,
    elapsed_seconds: f64,
    last_train_loss: f64,
    last_dev_loss: f64,
}

/// The checkpoint's own record of the steps it has made (beside the weights and moments).
const STEP_TENSOR: &str = "attnscope.step";

fn json_write<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::files::write(path, text)
}

fn json_read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e))
}

/// Reads training options saved by [`train`] (`options.json` in a run, or
/// [`OPTIONS_FILE`] in a model directory).
pub fn load_options(path: &Path) -> Result<TrainOptions> {
    json_read(path)
}

/// The learning rate at `step`: linear warm-up, then linear decay to a tenth at the end.
pub fn learning_rate(opts: &TrainOptions, step: usize, total: usize) -> f64 {
    if step < opts.warmup_steps {
        return opts.lr * (step + 1) as f64 / opts.warmup_steps as f64;
    }
    let span = total.saturating_sub(opts.warmup_steps).max(1) as f64;
    let done = (step - opts.warmup_steps) as f64 / span;
    opts.lr * (1.0 - 0.9 * done.min(1.0))
}

fn encode_pairs(pairs: &[Pair], src: &Vocab, tgt: &Vocab, max_len: usize) -> Result<Vec<Example>> {
    let mut out = Vec::with_capacity(pairs.len());
    for p in pairs {
        let mut s = src.encode(&p.src)?;
        s.push(crate::config::EOS_ID);
        let t = tgt.encode(&p.tgt)?;
        if s.len() <= max_len && t.len() < max_len {
            out.push(Example { src: s, tgt: t });
        }
    }
    Ok(out)
}

/// Mean cross-entropy per target token of a batch, with the model's own attention and no
/// dropout (as the dev loss is measured).
pub fn batch_loss(model: &Network, cfg: &ModelConfig, batch: &Batch) -> Result<Tensor> {
    model.loss(cfg, batch, &mut TrainMode::eval())
}

fn dev_loss(model: &Network, cfg: &ModelConfig, dev: &[Example], device: &Device) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    let idx: Vec<usize> = (0..dev.len()).collect();
    for chunk in idx.chunks(128) {
        let batch = data::collate(dev, chunk, device)?;
        sum += batch_loss(model, cfg, &batch)?.to_scalar::<f32>()? as f64 * batch.tokens as f64;
        n += batch.tokens;
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// The model a run starts from ([`TrainOptions::init_from`]).
struct StartFrom {
    dir: std::path::PathBuf,
    config: ModelConfig,
    src: Vocab,
    tgt: Vocab,
}

impl StartFrom {
    /// Reads the model folder `dir` and checks that it translates the run's languages.
    fn load(dir: &Path, opts: &TrainOptions) -> Result<Self> {
        let config = ModelConfig::load(&dir.join(CONFIG_FILE))?;
        if (config.source_lang.as_str(), config.target_lang.as_str())
            != (opts.source_lang.as_str(), opts.target_lang.as_str())
        {
            return Err(Error::Invalid(format!(
                "{} translates {} to {}, but this run is {} to {}; start from a model of the same languages",
                dir.display(),
                config.source_lang,
                config.target_lang,
                opts.source_lang,
                opts.target_lang
            )));
        }
        let src = Vocab::load(&dir.join(&config.source_tokenizer))?;
        let tgt = Vocab::load(&dir.join(&config.target_tokenizer))?;
        Ok(StartFrom {
            dir: dir.to_path_buf(),
            config,
            src,
            tgt,
        })
    }

    /// The starting model's configuration with the run's length limit and dropout, and no
    /// scores (they are measured again).
    fn config(&self, opts: &TrainOptions) -> ModelConfig {
        ModelConfig {
            max_len: opts.max_len,
            dropout: opts.dropout,
            source_tokenizer: format!("tokenizer.{}.json", opts.source_lang),
            target_tokenizer: format!("tokenizer.{}.json", opts.target_lang),
            training: None,
            evaluation: None,
            ..self.config.clone()
        }
    }

    /// Sets every variable of `varmap` from the starting model's weights.
    fn load_weights(&self, varmap: &VarMap, device: &Device) -> Result<()> {
        let path = self.dir.join(WEIGHTS_FILE);
        let tensors =
            candle_core::safetensors::load(&path, device).map_err(|e| Error::bad_file(&path, e))?;
        set_variables(varmap, &tensors, &path)
    }
}

/// Sets every variable of `varmap` from `tensors`, read from `path` (a checkpoint or a
/// model's weights); a missing or mis-shaped tensor is that file's fault.
fn set_variables(varmap: &VarMap, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
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

/// Trains (or resumes) the run `runs_dir/<name>` and exports the model to `models_dir/<name>`.
///
/// With `resume`, the options saved in the run directory are used, except `epochs` when
/// `epochs_override` is given.
pub fn train(
    mut opts: TrainOptions,
    runs_dir: &Path,
    models_dir: &Path,
    control: &RunControl,
    progress: &mut dyn FnMut(Event),
) -> Result<Option<TrainReport>> {
    crate::kernels::alloc::keep_freed_memory();
    let (resume, epochs_override, hardware) =
        (control.resume, control.epochs, control.hardware.as_str());
    let run_dir = runs_dir.join(&opts.name);
    let opts_path = run_dir.join("options.json");
    let ckpt_path = run_dir.join("checkpoint.safetensors");
    let info_path = run_dir.join("checkpoint.json");
    if resume {
        if !info_path.is_file() {
            return Err(Error::Invalid(format!(
                "nothing to resume: {} does not exist; run without --resume to start",
                info_path.display()
            )));
        }
        opts = json_read(&opts_path)?;
    } else if info_path.exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run; pass --resume to continue it or delete the folder to start over",
            run_dir.display()
        )));
    }
    if let Some(e) = epochs_override {
        opts.epochs = e;
    }
    let start_from = match &opts.init_from {
        Some(dir) => {
            let from = StartFrom::load(dir, &opts)?;
            // The options say what the run trains.
            let c = &from.config;
            opts.architecture = c.architecture;
            (opts.src_vocab, opts.tgt_vocab) = (c.src_vocab_size, c.tgt_vocab_size);
            (opts.embed_dim, opts.hidden_dim) = (c.embed_dim, c.hidden_dim);
            Some(from)
        }
        None => None,
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    json_write(&opts_path, &opts)?;
    let device = Device::Cpu;

    progress(Event::Phase(format!("reading {}", opts.data.display())));
    let pairs = data::read_tsv(&opts.data)?;
    let mut split = data::split(&pairs, opts.seed, opts.dev_sentences, opts.test_sentences);
    {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        split
            .train
            .shuffle(&mut rand::rngs::StdRng::seed_from_u64(opts.seed));
    }
    if let Some(n) = opts.limit {
        split.train.truncate(n);
    }
    for extra in &opts.extra_data {
        progress(Event::Phase(format!("reading {}", extra.display())));
        split.train.extend(data::read_tsv(extra)?);
    }

    let src_path = run_dir.join(format!("tokenizer.{}.json", opts.source_lang));
    let tgt_path = run_dir.join(format!("tokenizer.{}.json", opts.target_lang));
    let (src_vocab, tgt_vocab) = if resume {
        (Vocab::load(&src_path)?, Vocab::load(&tgt_path)?)
    } else if let Some(from) = &start_from {
        progress(Event::Phase(format!(
            "starting from {}",
            from.dir.display()
        )));
        from.src.save(&src_path)?;
        from.tgt.save(&tgt_path)?;
        (from.src.clone(), from.tgt.clone())
    } else {
        progress(Event::Phase("training subword vocabularies".into()));
        let s = Vocab::train(split.train.iter().map(|p| p.src.as_str()), opts.src_vocab)?;
        let t = Vocab::train(split.train.iter().map(|p| p.tgt.as_str()), opts.tgt_vocab)?;
        s.save(&src_path)?;
        t.save(&tgt_path)?;
        (s, t)
    };
    progress(Event::Phase("tokenising".into()));
    let mut train_ex = encode_pairs(&split.train, &src_vocab, &tgt_vocab, opts.max_len)?;
    if opts.joined > 0.0 {
        let n = (opts.joined * split.train.len() as f64).round() as usize;
        let joined = data::joined(&split.train, n, opts.seed);
        train_ex.extend(encode_pairs(&joined, &src_vocab, &tgt_vocab, opts.max_len)?);
    }
    let mut dev_ex = encode_pairs(&split.dev, &src_vocab, &tgt_vocab, opts.max_len)?;
    dev_ex.truncate(2000);
    if train_ex.is_empty() {
        return Err(Error::Invalid(
            "no training pair is short enough; raise --max-len".into(),
        ));
    }

    let mut config = match &start_from {
        Some(from) => from.config(&opts),
        None => opts.model_config(src_vocab.len(), tgt_vocab.len())?,
    };
    let varmap = VarMap::new();
    let model = Network::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    init::init_network(&varmap, &config, opts.seed)?;
    if let Some(from) = &start_from
        && !(resume && ckpt_path.is_file())
    {
        from.load_weights(&varmap, &device)?;
    }
    let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    let mut opt = AdamW::new(&varmap, opts.lr, 0.0)?;

    let per_epoch = train_ex.len().div_ceil(opts.batch_size);
    let total = ((opts.epochs * per_epoch as f64).round() as usize).max(1);
    let (mut step, mut elapsed_before, mut last_train, mut last_dev) =
        (0usize, 0.0, f64::NAN, f64::NAN);
    if resume && ckpt_path.is_file() {
        let info: CheckpointInfo = json_read(&info_path)?;
        let tensors = candle_core::safetensors::load(&ckpt_path, &device)
            .map_err(|e| Error::bad_file(&ckpt_path, e))?;
        set_variables(&varmap, &tensors, &ckpt_path)?;
        // The weights know their own step: a run killed between writing them and
        // `checkpoint.json` must not pair new weights with an old step count.
        let saved_step = match tensors.get(STEP_TENSOR) {
            Some(t) => t.to_vec1::<i64>()?.first().map(|&s| s as usize),
            None => None,
        }
        .unwrap_or(info.step);
        opt.load_state(&tensors, saved_step)?;
        run_log::repair(&run_dir.join(run_log::FILE), saved_step)?;
        (step, elapsed_before, last_train, last_dev) = (
            saved_step,
            info.elapsed_seconds,
            info.last_train_loss,
            info.last_dev_loss,
        );
    }

    progress(Event::Begin {
        total,
        done: step.min(total),
    });
    let start = Instant::now();
    let mut epoch_batches: Option<(usize, Vec<Vec<usize>>)> = None;
    let (mut loss_sum, mut loss_n) = (0.0, 0usize);
    let (mut window_tokens, mut window_start) = (0usize, Instant::now());
    while step < total {
        if control.stop_after.is_some_and(|n| step >= n) {
            return Ok(None);
        }
        let epoch = step / per_epoch;
        if epoch_batches.as_ref().map(|(e, _)| *e) != Some(epoch) {
            epoch_batches = Some((
                epoch,
                data::batches(&train_ex, opts.batch_size, opts.seed, epoch as u64),
            ));
        }
        let Some((_, batches)) = &epoch_batches else {
            unreachable!("set above")
        };
        let batch = data::collate(&train_ex, &batches[step % per_epoch], &device)?;
        opt.lr = learning_rate(&opts, step, total);
        let loss = model.loss(
            &config,
            &batch,
            &mut TrainMode::for_step(&config, opts.seed, step),
        )?;
        let grads = loss.backward()?;
        opt.step(&grads, 1.0)?;
        let loss = loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Err(Error::Invalid(format!(
                "training diverged at step {step} (loss {loss}); lower --lr"
            )));
        }
        loss_sum += loss;
        loss_n += 1;
        window_tokens += batch.tokens;
        step += 1;
        let secs = window_start.elapsed().as_secs_f64();
        progress(Event::Step {
            step,
            loss,
            lr: opt.lr,
            tokens_per_second: window_tokens as f64 / secs.max(1e-9),
        });
        if secs > 30.0 {
            (window_tokens, window_start) = (0, Instant::now());
        }
        if step % opts.checkpoint_every == 0 || step == total || control.stop_after == Some(step) {
            last_train = loss_sum / loss_n.max(1) as f64;
            (loss_sum, loss_n) = (0.0, 0);
            last_dev = dev_loss(&model, &config, &dev_ex, &device)?;
            let elapsed = elapsed_before + start.elapsed().as_secs_f64();
            let mut tensors: HashMap<String, Tensor> = opt.state()?;
            for v in varmap
                .data()
                .lock()
                .map_err(|_| Error::Internal("poisoned variable map".into()))?
                .iter()
            {
                tensors.insert(v.0.clone(), v.1.as_tensor().clone());
            }
            tensors.insert(STEP_TENSOR.into(), Tensor::new(&[step as i64], &device)?);
            crate::files::write_with(&ckpt_path, |tmp| {
                Ok(candle_core::safetensors::save(&tensors, tmp)?)
            })?;
            let info = CheckpointInfo {
                step,
                elapsed_seconds: elapsed,
                last_train_loss: last_train,
                last_dev_loss: last_dev,
            };
            json_write(&info_path, &info)?;
            let line = LogLine {
                step,
                epoch: step as f64 / per_epoch as f64,
                train_loss: last_train,
                dev_loss: last_dev,
                lr: opt.lr,
                elapsed_seconds: elapsed,
            };
            run_log::append(&run_dir.join(run_log::FILE), &line)?;
            progress(Event::Checkpoint {
                step,
                train_loss: last_train,
                dev_loss: last_dev,
            });
        }
    }
    let training_seconds = elapsed_before + start.elapsed().as_secs_f64();

    // Export.
    let model_dir = models_dir.join(&opts.name);
    std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
    src_vocab.save(&model_dir.join(&config.source_tokenizer))?;
    tgt_vocab.save(&model_dir.join(&config.target_tokenizer))?;
    let weights = model_dir.join(WEIGHTS_FILE);
    crate::files::write_with(&weights, |tmp| Ok(varmap.save(tmp)?))?;

    let translator =
        Translator::from_parts(config.clone(), model, src_vocab, tgt_vocab, parameters)?;
    let (bleu, chrf) = evaluate(&translator, &split.test, &run_dir, progress)?;
    let summary = TrainingSummary {
        data: opts
            .data
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seed: opts.seed,
        train_pairs: train_ex.len(),
        dev_pairs: split.dev.len(),
        test_sentences: split.test.len(),
        steps: step,
        epochs: step as f64 / per_epoch as f64,
        batch_size: opts.batch_size,
        training_seconds,
        hardware: hardware.to_string(),
        final_train_loss: last_train,
        dev_loss: last_dev,
        bleu: Some(bleu),
        chrf: Some(chrf),
    };
    config.training = Some(summary.clone());
    config.save(&model_dir.join(CONFIG_FILE))?;
    json_write(&model_dir.join(OPTIONS_FILE), &opts)?;
    let log = run_dir.join(run_log::FILE);
    if log.is_file() {
        crate::files::copy(&log, &model_dir.join(LOG_FILE))?;
    }
    let card_text = card::model_card(&opts, &config, parameters, card::Figures::default());
    let card_path = model_dir.join("README.md");
    crate::files::write(&card_path, card_text)?;
    Ok(Some(TrainReport {
        model_dir,
        summary,
        parameters,
    }))
}

/// Translates the test split, writes `test.src`, `test.ref` and `test.hyp` into `out_dir`
/// (for checking with other tools), and returns (BLEU, chrF) against the first reference.
pub fn evaluate(
    translator: &Translator,
    test: &[TestItem],
    out_dir: &Path,
    progress: &mut dyn FnMut(Event),
) -> Result<(f64, f64)> {
    let srcs: Vec<String> = test.iter().map(|t| t.src.clone()).collect();
    let refs: Vec<String> = test.iter().map(|t| t.refs[0].clone()).collect();
    let mut hyps = Vec::with_capacity(srcs.len());
    for chunk in srcs.chunks(64) {
        hyps.extend(translator.translate_batch(chunk, 64)?);
        progress(Event::Eval {
            done: hyps.len(),
            total: srcs.len(),
        });
    }
    for (name, lines) in [
        ("test.src", &srcs),
        ("test.ref", &refs),
        ("test.hyp", &hyps),
    ] {
        let p = out_dir.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").map_err(|e| Error::io(&p, e))?;
    }
    Ok((
        metrics::corpus_bleu(&hyps, &refs),
        metrics::corpus_chrf(&hyps, &refs),
    ))
}
