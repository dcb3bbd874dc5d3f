//! The `attnscope` command: `train` a model, `translate` lines from stdin, or `serve` the web
//! app and its API.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use attnscope_model::Translator;
use attnscope_model::train::{self, Event, TrainOptions};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "attnscope",
    version,
    about = "See how neural translation models attend."
)]
struct Cli {
    /// Folder holding one subfolder per model.
    #[arg(
        long,
        global = true,
        default_value = "models",
        env = "ATTNSCOPE_MODELS"
    )]
    models: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on a TSV of sentence pairs and write it to <models>/<name>/.
    Train(TrainArgs),
    /// Translate stdin, one sentence per line, to stdout, one translation per line.
    Translate {
        /// Model name (a folder under --models).
        #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
        model: String,
        /// Sentences decoded together.
        #[arg(long, default_value_t = 32)]
        batch: usize,
    },
    /// Score translations: corpus BLEU and chrF (sacrebleu's defaults) of a hypothesis file
    /// against a reference file, one sentence per line.
    Score {
        #[arg(long)]
        hyp: PathBuf,
        #[arg(long = "ref")]
        reference: PathBuf,
    },
    /// Serve the web app and its API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// The built frontend (Trunk's output).
        #[arg(long, default_value = "dist", env = "ATTNSCOPE_DIST")]
        dist: PathBuf,
        /// The model used when a request names none.
        #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
        default_model: String,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Model name: output goes to <models>/<name>/, checkpoints to <runs>/<name>/.
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    name: String,
    /// Tab-separated `source<TAB>target` pairs.
    #[arg(long, default_value = "../shared/data/tatoeba-eng-fra.tsv")]
    data: PathBuf,
    #[arg(long, default_value = "en")]
    source_lang: String,
    #[arg(long, default_value = "fr")]
    target_lang: String,
    /// Folder for checkpoints and logs.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Continue the run in <runs>/<name>/ from its last checkpoint (its saved options are used).
    #[arg(long)]
    resume: bool,
    /// Passes over the training data (default 10); with --resume, changes the planned length.
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 8000)]
    src_vocab: usize,
    #[arg(long, default_value_t = 8000)]
    tgt_vocab: usize,
    #[arg(long, default_value_t = 256)]
    embed_dim: usize,
    #[arg(long, default_value_t = 256)]
    hidden_dim: usize,
    /// Longest training pair, in subword pieces per side.
    #[arg(long, default_value_t = 48)]
    max_len: usize,
    #[arg(long, default_value_t = 2000)]
    test_sentences: usize,
    #[arg(long, default_value_t = 1000)]
    dev_sentences: usize,
    /// Use only the first N training pairs (a quick run that proves the pipeline).
    #[arg(long)]
    limit: Option<usize>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match run(cli) {
        // `attnscope translate | head` closes the pipe early: that is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => run_train(&cli.models, args),
        Command::Translate { model, batch } => run_translate(&cli.models, &model, batch),
        Command::Score { hyp, reference } => run_score(&hyp, &reference),
        Command::Serve {
            addr,
            dist,
            default_model,
        } => {
            attnscope::init_tracing();
            let config = attnscope::ServeConfig {
                models_dir: cli.models,
                dist,
                default_model,
            };
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(attnscope::serve(config, addr))
        }
    }
}

fn hardware() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cores} CPU cores ({}), candle CPU backend",
        std::env::consts::ARCH
    )
}

fn run_train(models: &std::path::Path, a: TrainArgs) -> Result<()> {
    let mut opts = TrainOptions::new(&a.name, a.data, &a.source_lang, &a.target_lang);
    opts.seed = a.seed;
    opts.epochs = a.epochs.unwrap_or(opts.epochs);
    opts.batch_size = a.batch_size;
    opts.lr = a.lr;
    opts.src_vocab = a.src_vocab;
    opts.tgt_vocab = a.tgt_vocab;
    opts.embed_dim = a.embed_dim;
    opts.hidden_dim = a.hidden_dim;
    opts.max_len = a.max_len;
    opts.test_sentences = a.test_sentences;
    opts.dev_sentences = a.dev_sentences;
    opts.limit = a.limit;
    opts.checkpoint_every = a.checkpoint_every.max(1);
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if opts.batch_size == 0 || !positive(opts.lr) || !positive(opts.epochs) {
        bail!("--batch-size, --lr and --epochs must be positive");
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  eta {eta}",
        )
        .context("bad progress template")?,
    );
    // Without a terminal the bar is hidden: print plain lines instead, so logs show progress.
    let tty = std::io::stderr().is_terminal();
    let say = |line: String| {
        if tty {
            bar.println(line)
        } else {
            eprintln!("{line}")
        }
    };
    let mut last_ckpt = String::new();
    let mut on_event = |e: Event| match e {
        Event::Phase(p) => say(format!("· {p}")),
        Event::Begin { total, done } => {
            say(format!("training: step {done} of {total}"));
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.reset_eta();
        }
        Event::Step {
            step,
            loss,
            lr,
            tokens_per_second,
        } => {
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {loss:.3}  lr {lr:.1e}  {tokens_per_second:.0} tok/s{last_ckpt}"
            ));
        }
        Event::Checkpoint {
            step,
            train_loss,
            dev_loss,
        } => {
            last_ckpt = format!("  dev {dev_loss:.3}");
            say(format!(
                "checkpoint at step {step}: train loss {train_loss:.3}, dev loss {dev_loss:.3}"
            ));
        }
        Event::Eval { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message("translating the test split");
        }
    };
    let report = train::train(
        opts,
        &a.runs,
        models,
        a.resume,
        a.epochs,
        &hardware(),
        &mut on_event,
    )?;
    bar.finish_and_clear();
    let s = &report.summary;
    println!(
        "wrote {} ({} parameters): BLEU {:.1}, chrF {:.1} on {} test sentences; {:.0} s of training",
        report.model_dir.display(),
        report.parameters,
        s.bleu.unwrap_or(f64::NAN),
        s.chrf.unwrap_or(f64::NAN),
        s.test_sentences,
        s.training_seconds
    );
    Ok(())
}

fn run_translate(models: &std::path::Path, model: &str, batch: usize) -> Result<()> {
    let dir = models.join(model);
    if !dir.join("config.json").is_file() {
        let mut available: Vec<String> = std::fs::read_dir(models)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("config.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        available.sort();
        bail!(
            "no model named {model:?} in {} (no config.json there); available: {}. Train one with `attnscope train --name {model}`",
            models.display(),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        );
    }
    let translator = Translator::load(&dir)
        .with_context(|| format!("cannot load model {model:?} from {}", dir.display()))?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    let flush = |lines: &mut Vec<String>, out: &mut std::io::StdoutLock| -> Result<()> {
        for t in translator.translate_batch(lines, batch)? {
            writeln!(out, "{t}")?;
        }
        out.flush()?;
        lines.clear();
        Ok(())
    };
    for line in stdin.lock().lines() {
        lines.push(line.context("stdin is not valid UTF-8 text")?);
        if lines.len() >= batch.max(1) {
            flush(&mut lines, &mut out)?;
        }
    }
    flush(&mut lines, &mut out)?;
    Ok(())
}

fn read_lines(path: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

fn run_score(hyp: &std::path::Path, reference: &std::path::Path) -> Result<()> {
    let (h, r) = (read_lines(hyp)?, read_lines(reference)?);
    if h.len() != r.len() {
        bail!(
            "{} has {} lines but {} has {}: they must pair up line by line",
            hyp.display(),
            h.len(),
            reference.display(),
            r.len()
        );
    }
    let bleu = attnscope_model::metrics::corpus_bleu(&h, &r);
    let chrf = attnscope_model::metrics::corpus_chrf(&h, &r);
    println!("BLEU {bleu:.2}\tchrF {chrf:.2}\t{} sentences", h.len());
    Ok(())
}
