//! `attnscope train`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use attnscope_model::config::{Architecture, ArchitectureFields, AttentionTraining, Scorer};
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_model::training::options::TrainOptions;
use attnscope_model::training::train::{self, Event};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Model name: output goes to <models>/<name>/, checkpoints to <runs>/<name>/.
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    name: String,
    /// Tab-separated `source<TAB>target` pairs.
    #[arg(long, default_value = "../shared/data/tatoeba-eng-fra.tsv")]
    data: PathBuf,
    /// More pairs added whole to training, e.g. a second domain (repeatable); dev and test
    /// come from --data alone.
    #[arg(long = "extra-data", value_name = "TSV")]
    extra_data: Vec<PathBuf>,
    /// Add this many multi-sentence pairs (2 to 4 training pairs joined), as a fraction of the
    /// training pairs; raise --max-len to fit them.
    #[arg(long, default_value_t = 0.0)]
    joined: f64,
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
    /// Peak learning rate [default: 2e-3 for a GRU, 7e-4 for a transformer].
    #[arg(long)]
    lr: Option<f64>,
    /// Steps of linear learning-rate warm-up [default: 300 for a GRU, 1000 for a transformer].
    #[arg(long)]
    warmup: Option<usize>,
    /// `gru` (bidirectional GRU encoder, GRU decoder with attention) or `transformer`.
    #[arg(long, default_value = "gru", value_parser = ["gru", "transformer"])]
    architecture: String,
    /// GRU attention scorer: `additive` (Bahdanau), `general` or `dot` (Luong).
    #[arg(long, default_value = "additive", value_parser = Scorer::ALL.map(Scorer::name))]
    attention: String,
    /// `soft`, or `hard`: one source position per step, trained with straight-through
    /// Gumbel-softmax (GRU only).
    #[arg(long, default_value = "soft", value_parser = AttentionTraining::ALL.map(AttentionTraining::name))]
    attention_training: String,
    /// Transformer layers in the encoder and in the decoder.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Transformer attention heads per layer.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer feed-forward size.
    #[arg(long, default_value_t = 1024)]
    ff_dim: usize,
    /// Dropout rate: a transformer's on every sublayer, a GRU's on the readout before the
    /// output layer [default: 0 for a GRU, 0.1 for a transformer].
    #[arg(long)]
    dropout: Option<f64>,
    /// Label smoothing of the training loss: the reference token's target probability is
    /// 1 - ε and ε is spread over the vocabulary (0 turns it off; 0.1 is usual). The dev
    /// loss stays the plain cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
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
    /// Stop after this many steps in all (saving a checkpoint there) without finishing;
    /// `--resume` continues exactly as if the run had not stopped.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Ship the mean of the weights of the last N checkpoints (the final one included)
    /// instead of the final weights: checkpoint averaging, usually a little better and never
    /// slower to decode. The run keeps those weights under `runs/<name>/snapshots/`; 0 or
    /// 1: the final weights.
    #[arg(long, default_value_t = 0)]
    average_last: usize,
    /// Start from this model's weights and tokenizers (a model name under --models, or a
    /// folder) instead of random ones: fine-tuning, e.g. with --extra-data. Its architecture
    /// and sizes are used; lower --lr and --warmup for a gentle start. A model of the same
    /// source language but another target language is a transfer: its source tokenizer,
    /// encoder and decoder layers are taken, a new target tokenizer, embedding and output
    /// layer are trained.
    #[arg(long, value_name = "MODEL")]
    init_from: Option<PathBuf>,
    /// Split each batch into N shards whose forward and backward passes run side by side,
    /// one thread each, their gradients then summed (weighted by target tokens): on two cores
    /// both stay busy with candle's per-op work. 1: the whole batch on one thread, its
    /// matrix products spread over every core. Saved with the run, so `--resume` keeps it.
    #[arg(long, default_value_t = 2, value_name = "N")]
    data_parallel: usize,
}

/// The network the flags describe; the library checks it as it checks a `config.json`.
fn architecture(a: &TrainArgs) -> Result<Architecture> {
    Ok(Architecture::try_from(ArchitectureFields {
        architecture: a.architecture.clone(),
        attention: a.attention.clone(),
        attention_training: a.attention_training.parse()?,
        layers: a.layers,
        heads: a.heads,
        ff_dim: a.ff_dim,
        layout: Default::default(),
        activation: Default::default(),
    })?)
}

pub fn run(models: &Path, a: TrainArgs) -> Result<()> {
    let init_from = a.init_from.clone().map(|m| {
        let named = models.join(&m);
        if named.join(CONFIG_FILE).is_file() {
            named
        } else {
            m
        }
    });
    // Starting from a model, its architecture sets the defaults (learning rate, dropout).
    let arch = match &init_from {
        Some(dir) => attnscope_model::ModelConfig::load(&dir.join(CONFIG_FILE))?.architecture,
        None => architecture(&a)?,
    };
    let mut opts = TrainOptions::new(arch, &a.name, a.data, &a.source_lang, &a.target_lang);
    opts.seed = a.seed;
    opts.epochs = a.epochs.unwrap_or(opts.epochs);
    opts.batch_size = a.batch_size;
    opts.lr = a.lr.unwrap_or(opts.lr);
    opts.warmup_steps = a.warmup.unwrap_or(opts.warmup_steps);
    opts.dropout = a.dropout.unwrap_or(opts.dropout);
    if !(0.0..1.0).contains(&a.label_smoothing) {
        bail!("--label-smoothing must be at least 0 and below 1 (0.1 is usual)");
    }
    opts.label_smoothing = a.label_smoothing;
    opts.src_vocab = a.src_vocab;
    opts.tgt_vocab = a.tgt_vocab;
    opts.embed_dim = a.embed_dim;
    opts.hidden_dim = a.hidden_dim;
    opts.max_len = a.max_len;
    opts.test_sentences = a.test_sentences;
    opts.dev_sentences = a.dev_sentences;
    opts.limit = a.limit;
    opts.extra_data = a.extra_data;
    opts.init_from = init_from;
    opts.joined = a.joined;
    if !(opts.joined.is_finite() && (0.0..=10.0).contains(&opts.joined)) {
        bail!("--joined must be a fraction between 0 and 10");
    }
    opts.checkpoint_every = a.checkpoint_every.max(1);
    opts.average_last = a.average_last;
    if !(1..=64).contains(&a.data_parallel) {
        bail!("--data-parallel must be between 1 and 64 shards");
    }
    opts.data_parallel = a.data_parallel;
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if opts.batch_size == 0 || !positive(opts.lr) || !positive(opts.epochs) {
        bail!("--batch-size, --lr and --epochs must be positive");
    }
    let progress = super::Progress::new(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  eta {eta}",
    )?;
    let (bar, say) = (&progress.bar, |l: String| progress.say(l));
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
    let control = train::RunControl {
        resume: a.resume,
        epochs: a.epochs,
        stop_after: a.stop_after,
        hardware: super::hardware(),
    };
    let Some(report) = train::train(opts, &a.runs, models, &control, &mut on_event)? else {
        bar.finish_and_clear();
        println!(
            "stopped at step {} as asked (checkpoint saved); continue with --resume",
            a.stop_after.unwrap_or_default()
        );
        return Ok(());
    };
    bar.finish_and_clear();
    let s = &report.summary;
    let name = report
        .model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "wrote {} ({} parameters): BLEU {:.1}, chrF {:.1} on {} test sentences; {:.0} s of training",
        report.model_dir.display(),
        report.parameters,
        s.bleu.unwrap_or(f64::NAN),
        s.chrf.unwrap_or(f64::NAN),
        s.test_sentences,
        s.training_seconds
    );
    super::eval::report(models, &name, &a.runs, None)?;
    Ok(())
}
