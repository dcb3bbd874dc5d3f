//! Training a [`Network`] from a TSV of sentence pairs, with resumable checkpoints.
//!
//! The run directory (`runs/<name>/`) holds the options, both tokenizers, `checkpoint.safetensors`
//! (weights and Adam moments), `checkpoint.json` (steps done) and `log.jsonl` (one line per
//! checkpoint). The data order depends only on `(seed, epoch)`, so a resumed run makes the
//! same updates as one that was never stopped. At the end the model is exported to
//! `models/<name>/` and scored on its test split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::config::ModelConfig;
use crate::decoding::translator::Translator;
use crate::decoding::translator::{CONFIG_FILE, WEIGHTS_FILE};
use crate::evaluation::TestItem;
use crate::evaluation::metrics;
use crate::kernels::adam::AdamW;
use crate::networks::Batch;
use crate::networks::init;
use crate::networks::{Network, TrainMode};
use crate::report::TrainingSummary;
use crate::training::card;
use crate::training::checkpoint::{Position, RunFiles, json_read, json_write};
use crate::training::data::{self, Example, Pair};
use crate::training::options::TrainOptions;
pub use crate::training::run_log::LogLine;
use crate::training::shards::Shards;
use crate::training::start::StartFrom;
use crate::vocab::Vocab;
use crate::{Error, Result};

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

/// Trains (or resumes) the run `runs_dir/<name>` and exports the model to `models_dir/<name>`,
/// in five phases: the options, the data, the network, the steps, the export. `None` when
/// `control.stop_after` stopped the run early (a checkpoint holds where it stands).
///
/// With `control.resume`, the options saved in the run directory are used, except `epochs`
/// when `control.epochs` is given.
pub fn train(
    mut opts: TrainOptions,
    runs_dir: &Path,
    models_dir: &Path,
    control: &RunControl,
    progress: &mut dyn FnMut(Event),
) -> Result<Option<TrainReport>> {
    crate::kernels::alloc::keep_freed_memory();
    let run = RunFiles::open(&mut opts, runs_dir, control.resume)?;
    if let Some(e) = control.epochs {
        opts.epochs = e;
    }
    let start_from = match &opts.init_from {
        Some(dir) => Some(StartFrom::load(dir, &opts)?),
        None => None,
    };
    if let Some(from) = &start_from {
        from.adopt_sizes(&mut opts);
    }
    run.create(&opts)?;
    let device = Device::Cpu;
    let data = Data::prepare(&opts, &run, control.resume, start_from.as_ref(), progress)?;
    // A resumed run's checkpoint holds its weights; a new one takes the starting model's.
    let resuming = control.resume && run.has_checkpoint();
    let start_weights = start_from.as_ref().filter(|_| !resuming);
    let mut trainee = Trainee::new(&opts, &data, start_from.as_ref(), start_weights, &device)?;
    let mut at = if resuming {
        run.restore(&trainee.varmap, &mut trainee.opt, &device)?
    } else {
        Position::start()
    };
    if !trainee.run(&opts, &data, &run, control, &mut at, progress)? {
        return Ok(None);
    }
    let transferred_from = start_from
        .filter(|f| f.is_transfer())
        .map(|f| format!("{}→{}", f.config.source_lang, f.config.target_lang));
    let finished = Finished {
        data,
        trainee,
        at,
        transferred_from,
    };
    let report = export(
        finished,
        &opts,
        models_dir,
        &run,
        &control.hardware,
        progress,
    )?;
    Ok(Some(report))
}

/// The run's data: the split, both vocabularies and the encoded pairs.
struct Data {
    split: data::Split,
    src: Vocab,
    tgt: Vocab,
    train: Vec<Example>,
    dev: Vec<Example>,
}

impl Data {
    /// Reads and splits the pairs (shuffled by the seed, cut to `limit`, the extra data
    /// added), takes the vocabularies (the run's own on resume, the starting model's, or new
    /// ones trained on the training side) and encodes what fits `max_len`.
    fn prepare(
        opts: &TrainOptions,
        run: &RunFiles,
        resume: bool,
        start_from: Option<&StartFrom>,
        progress: &mut dyn FnMut(Event),
    ) -> Result<Self> {
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

        let src_path = run.tokenizer(&opts.source_lang);
        let tgt_path = run.tokenizer(&opts.target_lang);
        // A new vocabulary of `size` pieces trained on one side of the training pairs, saved.
        let train_vocab = |lang: &str, side: fn(&data::Pair) -> &str, size: usize| {
            let v = Vocab::train(split.train.iter().map(side), size)?;
            v.save(&run.tokenizer(lang))?;
            Ok::<_, Error>(v)
        };
        let (src, tgt) = if resume {
            (Vocab::load(&src_path)?, Vocab::load(&tgt_path)?)
        } else if let Some(from) = start_from {
            progress(Event::Phase(format!(
                "starting from {}",
                from.dir.display()
            )));
            from.src.save(&src_path)?;
            let tgt = match &from.tgt {
                Some(t) => {
                    t.save(&tgt_path)?;
                    t.clone()
                }
                None => {
                    progress(Event::Phase(format!(
                        "training the {} subword vocabulary",
                        opts.target_lang
                    )));
                    train_vocab(&opts.target_lang, |p| &p.tgt, opts.tgt_vocab)?
                }
            };
            (from.src.clone(), tgt)
        } else {
            progress(Event::Phase("training subword vocabularies".into()));
            let s = train_vocab(&opts.source_lang, |p| &p.src, opts.src_vocab)?;
            let t = train_vocab(&opts.target_lang, |p| &p.tgt, opts.tgt_vocab)?;
            (s, t)
        };
        progress(Event::Phase("tokenising".into()));
        let mut train = encode_pairs(&split.train, &src, &tgt, opts.max_len)?;
        if opts.joined > 0.0 {
            let n = (opts.joined * split.train.len() as f64).round() as usize;
            let joined = data::joined(&split.train, n, opts.seed);
            train.extend(encode_pairs(&joined, &src, &tgt, opts.max_len)?);
        }
        let mut dev = encode_pairs(&split.dev, &src, &tgt, opts.max_len)?;
        dev.truncate(2000);
        if train.is_empty() {
            return Err(Error::Invalid(
                "no training pair is short enough; raise --max-len".into(),
            ));
        }
        Ok(Data {
            split,
            src,
            tgt,
            train,
            dev,
        })
    }

    /// Batches per epoch.
    fn per_epoch(&self, opts: &TrainOptions) -> usize {
        self.train.len().div_ceil(opts.batch_size)
    }
}

/// The network being trained, its variables and optimiser.
struct Trainee {
    config: ModelConfig,
    varmap: VarMap,
    model: Network,
    opt: AdamW,
    parameters: usize,
    device: Device,
    /// The batch's shards, run side by side (`--data-parallel`).
    shards: Shards,
    /// The variables of `varmap`, whose gradients the shards add up.
    vars: Vec<candle_core::Var>,
}

impl Trainee {
    /// The network of the run's configuration (the starting model's, if any), seeded, or
    /// with `start_weights`.
    fn new(
        opts: &TrainOptions,
        data: &Data,
        start_from: Option<&StartFrom>,
        start_weights: Option<&StartFrom>,
        device: &Device,
    ) -> Result<Self> {
        let config = match start_from {
            Some(from) => from.config(opts),
            None => opts.model_config(data.src.len(), data.tgt.len())?,
        };
        let varmap = VarMap::new();
        let model = Network::new(
            &config,
            VarBuilder::from_varmap(&varmap, DType::F32, device),
        )?;
        init::init_network(&varmap, &config, opts.seed)?;
        if let Some(from) = start_weights {
            from.load_weights(&varmap, device)?;
        }
        let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        let opt = AdamW::new(&varmap, opts.lr, 0.0)?;
        let vars = varmap.all_vars();
        Ok(Trainee {
            config,
            varmap,
            model,
            opt,
            parameters,
            device: device.clone(),
            shards: Shards::new(opts.data_parallel)?,
            vars,
        })
    }

    /// Makes the steps from `at` to the end of the plan, with a checkpoint every
    /// `checkpoint_every` steps and at the end, and leaves in `at` the seconds spent in all;
    /// false when `stop_after` stopped it.
    fn run(
        &mut self,
        opts: &TrainOptions,
        data: &Data,
        run: &RunFiles,
        control: &RunControl,
        at: &mut Position,
        progress: &mut dyn FnMut(Event),
    ) -> Result<bool> {
        let per_epoch = data.per_epoch(opts);
        let total = ((opts.epochs * per_epoch as f64).round() as usize).max(1);
        progress(Event::Begin {
            total,
            done: at.step.min(total),
        });
        let (start, elapsed_before) = (Instant::now(), at.elapsed_seconds);
        let mut epoch_batches: Option<(usize, Vec<Vec<usize>>)> = None;
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let (mut window_tokens, mut window_start) = (0usize, Instant::now());
        while at.step < total {
            let step = at.step;
            if control.stop_after.is_some_and(|n| step >= n) {
                return Ok(false);
            }
            let epoch = step / per_epoch;
            if epoch_batches.as_ref().map(|(e, _)| *e) != Some(epoch) {
                epoch_batches = Some((
                    epoch,
                    data::batches(&data.train, opts.batch_size, opts.seed, epoch as u64),
                ));
            }
            let Some((_, batches)) = &epoch_batches else {
                unreachable!("set above")
            };
            self.opt.lr = learning_rate(opts, step, total);
            let step_grads = self.shards.gradients(
                &self.model,
                &self.config,
                &self.vars,
                &data.train,
                &batches[step % per_epoch],
                opts.seed,
                step,
                &self.device,
            )?;
            self.opt.step(&step_grads.grads, 1.0)?;
            let loss = step_grads.loss;
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "training diverged at step {step} (loss {loss}); lower --lr"
                )));
            }
            loss_sum += loss;
            loss_n += 1;
            window_tokens += step_grads.tokens;
            at.step += 1;
            let step = at.step;
            let secs = window_start.elapsed().as_secs_f64();
            progress(Event::Step {
                step,
                loss,
                lr: self.opt.lr,
                tokens_per_second: window_tokens as f64 / secs.max(1e-9),
            });
            if secs > 30.0 {
                (window_tokens, window_start) = (0, Instant::now());
            }
            if step.is_multiple_of(opts.checkpoint_every)
                || step == total
                || control.stop_after == Some(step)
            {
                // The last `average_last` checkpoints of the plan keep their weights (not
                // one made only because `stop_after` stops here).
                let averaged_from = total.saturating_sub(opts.average_last * opts.checkpoint_every);
                let planned = step.is_multiple_of(opts.checkpoint_every) || step == total;
                if opts.average_last > 1 && planned && step > averaged_from {
                    run.save_snapshot(&self.varmap, step, opts.average_last)?;
                }
                at.last_train_loss = loss_sum / loss_n.max(1) as f64;
                (loss_sum, loss_n) = (0.0, 0);
                at.last_dev_loss = dev_loss(&self.model, &self.config, &data.dev, &self.device)?;
                at.elapsed_seconds = elapsed_before + start.elapsed().as_secs_f64();
                let line = LogLine {
                    step,
                    epoch: step as f64 / per_epoch as f64,
                    train_loss: at.last_train_loss,
                    dev_loss: at.last_dev_loss,
                    lr: self.opt.lr,
                    elapsed_seconds: at.elapsed_seconds,
                };
                run.save(&self.varmap, &self.opt, at, &line, &self.device)?;
                progress(Event::Checkpoint {
                    step,
                    train_loss: at.last_train_loss,
                    dev_loss: at.last_dev_loss,
                });
            }
        }
        at.elapsed_seconds = elapsed_before + start.elapsed().as_secs_f64();
        Ok(true)
    }
}

/// A run that has made all its steps.
struct Finished {
    data: Data,
    trainee: Trainee,
    at: Position,
    /// The starting model's language pair, in a transfer to another target language.
    transferred_from: Option<String>,
}

/// Writes the model folder `models_dir/<name>` (tokenizers, weights, configuration with the
/// training summary and test scores, options, log, card) from the finished run.
fn export(
    finished: Finished,
    opts: &TrainOptions,
    models_dir: &Path,
    run: &RunFiles,
    hardware: &str,
    progress: &mut dyn FnMut(Event),
) -> Result<TrainReport> {
    let Finished {
        data,
        trainee,
        at,
        transferred_from,
    } = finished;
    let Trainee {
        mut config,
        varmap,
        model,
        parameters,
        device,
        ..
    } = trainee;
    let averaged_steps = run.average_newest(&varmap, opts.average_last, at.step, &device)?;
    let (dev_loss_now, dev_loss_before_averaging) = if averaged_steps.is_empty() {
        (at.last_dev_loss, None)
    } else {
        progress(Event::Phase(format!(
            "averaged the weights of the last {} checkpoints",
            averaged_steps.len()
        )));
        let averaged = dev_loss(&model, &config, &data.dev, &device)?;
        (averaged, Some(at.last_dev_loss))
    };
    let model_dir = models_dir.join(&opts.name);
    std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
    data.src.save(&model_dir.join(&config.source_tokenizer))?;
    data.tgt.save(&model_dir.join(&config.target_tokenizer))?;
    let weights = model_dir.join(WEIGHTS_FILE);
    crate::files::write_with(&weights, |tmp| Ok(varmap.save(tmp)?))?;

    let per_epoch = data.per_epoch(opts);
    let translator = Translator::from_parts(config.clone(), model, data.src, data.tgt, parameters)?;
    let (bleu, chrf) = evaluate(&translator, &data.split.test, &run.dir, progress)?;
    let summary = TrainingSummary {
        data: opts
            .data
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seed: opts.seed,
        train_pairs: data.train.len(),
        dev_pairs: data.split.dev.len(),
        test_sentences: data.split.test.len(),
        steps: at.step,
        epochs: at.step as f64 / per_epoch as f64,
        batch_size: opts.batch_size,
        training_seconds: at.elapsed_seconds,
        hardware: hardware.to_string(),
        final_train_loss: at.last_train_loss,
        dev_loss: dev_loss_now,
        bleu: Some(bleu),
        chrf: Some(chrf),
        transferred_from,
        averaged_steps,
        dev_loss_before_averaging,
    };
    config.training = Some(summary.clone());
    config.save(&model_dir.join(CONFIG_FILE))?;
    json_write(&model_dir.join(OPTIONS_FILE), opts)?;
    let log = run.log();
    if log.is_file() {
        crate::files::copy(&log, &model_dir.join(LOG_FILE))?;
    }
    let card_text = card::model_card(opts, &config, parameters, card::Figures::default());
    let card_path = model_dir.join("README.md");
    crate::files::write(&card_path, card_text)?;
    Ok(TrainReport {
        model_dir,
        summary,
        parameters,
    })
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
