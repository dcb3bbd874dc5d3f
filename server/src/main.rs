//! The `attnscope` command: `train` a model, `translate` lines from stdin, `eval` a model
//! (BLEU, chrF, attention entropy, alignment error rate, model card), `align-eval` its
//! attention against gold word alignments, `score` translations, or `serve` the web app and
//! its API.

mod cmd;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc. Serving 64 streams for 10 minutes, glibc's
/// per-thread arenas kept what the decoding threads freed and the server grew from 281 to
/// 1,975 MiB resident; with mimalloc, which purges freed pages after a short delay, it levels
/// off at about 800 MiB (docs/BENCHMARKS.md, "Soak").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v3, as libmimalloc-sys 0.1.49 builds it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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

// Parsed once per run; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train a model on a TSV of sentence pairs and write it to <models>/<name>/.
    Train(cmd::train::TrainArgs),
    /// Translate stdin, one sentence per line, to stdout, one translation per line (or one
    /// JSON document with the attention per line).
    Translate(cmd::translate::TranslateArgs),
    /// Score a model on its held-out test split (BLEU, chrF), measure its attention
    /// (entropy, alignment error rate) and rewrite its card.
    Eval(cmd::eval::EvalArgs),
    /// Word alignments from attention scored against a gold set: AER, precision, recall.
    AlignEval(cmd::align::AlignArgs),
    /// Does the attention explain the output? Its agreement with gradient × input,
    /// integrated gradients and erasure (of pieces and of whole words), and what replacing
    /// it changes, on the test split;
    /// rewrites the model card.
    Faithfulness(cmd::faithfulness::FaithfulnessArgs),
    /// Import a Hugging Face Marian model (an opus-mt folder on this disk) into
    /// <models>/<name>/, so that `serve` lists it and the page opens it.
    ImportHf(cmd::import_hf::ImportArgs),
    /// Export an attention matrix (`translate --format json` output, or a render request) as
    /// a heatmap image (PNG, SVG) or as raw weights (JSON, CSV).
    Render(cmd::render::RenderArgs),
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
        /// Translations that may wait for a decoding slot; beyond that the server answers
        /// 503 with Retry-After.
        #[arg(long, default_value_t = attnscope::DEFAULT_QUEUE)]
        queue: usize,
        /// Translations decoding at once, each on its own thread; they take turns, step by
        /// step, on one CPU slot per core.
        #[arg(long, default_value_t = attnscope::DEFAULT_STREAMS)]
        streams: usize,
        /// Sentences decoded together in one batch: greedy translations that arrive while
        /// others decode share one matrix product a step. 1 decodes each alone.
        #[arg(long, default_value_t = attnscope::batcher::DEFAULT_BATCH_ROWS, value_parser = clap::value_parser!(u16).range(1..=1024))]
        batch_rows: u16,
        /// Niceness (0 to 19) of the threads that decode: above 0 they yield the CPU to
        /// interactive programs, such as a browser on this machine drawing the page while a
        /// long input decodes. 0 keeps the server's own priority. Linux only.
        #[arg(long, default_value_t = attnscope::priority::DEFAULT_DECODE_NICE, env = "ATTNSCOPE_DECODE_NICE", value_parser = clap::value_parser!(i32).range(0..=19))]
        decode_nice: i32,
        /// Open connections at most; more are answered 503 and closed.
        #[arg(long, default_value_t = attnscope::listen::Limits::default().max_connections)]
        max_connections: usize,
        /// Open connections from one IP address at most.
        #[arg(long, default_value_t = attnscope::listen::Limits::default().per_client)]
        per_client: usize,
        /// Seconds a client has to send a request header; also the longest an idle
        /// keep-alive connection is kept open.
        #[arg(long, default_value_t = attnscope::listen::Limits::default().header_read_timeout.as_secs_f64())]
        header_timeout: f64,
    },
}

/// Sets `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` where the user has not, before any
/// thread starts.
///
/// candle asks for the thread count on every matrix multiply, and without this variable it
/// reads `/proc/cpuinfo` each time (a third of a decoding's CPU time on the reference
/// machine). `serve` runs each step on one thread (its step gate already keeps every core
/// busy with different translations); the other commands use every core for the matrix
/// products and the fused kernels (`RAYON_NUM_THREADS`), while candle's own element-wise
/// ops stay on the calling thread (`CANDLE_NUM_THREADS=1`): its pool waits for its workers
/// by spinning, and when anything else runs on the machine a descheduled worker kept the
/// main thread spinning for half of a Transformer training step (1.9x slower, measured with
/// `attnscope-perf --train` beside a build; the same speed on an idle machine).
fn set_thread_count(serving: bool) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = [
        ("RAYON_NUM_THREADS", if serving { 1 } else { cores }),
        ("CANDLE_NUM_THREADS", 1),
    ];
    for (name, n) in wanted {
        if std::env::var_os(name).is_none() {
            // SAFETY: called first thing in `main`, while this process has a single thread.
            unsafe { std::env::set_var(name, n.to_string()) };
        }
    }
}

/// Turns transparent huge pages off for this process (Linux; unless `MIMALLOC_ALLOW_THP` is
/// set). mimalloc asks for huge pages where the kernel's mode is `madvise`, and every stream's
/// decoding thread then held its own: 500 simultaneous streams peaked at 3.2 GB resident, 1.4
/// GB without them, and 64 streams at 693–719 MiB against 455–473 MiB, at much the same speed
/// (docs/BENCHMARKS.md, "Serving memory"). mimalloc reads its own option before `main`, so
/// the process-wide switch is set here instead.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this
        // process; a failure (an old kernel) leaves things as they were.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    set_thread_count(matches!(cli.command, Command::Serve { .. }));
    if matches!(cli.command, Command::Serve { .. }) {
        no_huge_pages();
    }
    if !matches!(cli.command, Command::Serve { .. }) {
        // Training and the other batch commands reuse large tensors all the time: purging
        // their pages only to fault them in again cost 15 % of a training step. They never
        // purge; the server keeps mimalloc's default delay.
        // SAFETY: mi_option_set takes no pointers; it sets a global option before any
        // thread of ours allocates in earnest.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
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
        Command::Train(args) => cmd::train::run(&cli.models, args),
        Command::Translate(args) => cmd::translate::run(&cli.models, args),
        Command::Eval(args) => cmd::eval::run(&cli.models, args),
        Command::AlignEval(args) => cmd::align::run_align(&cli.models, args),
        Command::Faithfulness(args) => cmd::faithfulness::run(&cli.models, args),
        Command::Render(args) => cmd::render::run(args),
        Command::ImportHf(args) => cmd::import_hf::run(&cli.models, args),
        Command::Score { hyp, reference } => cmd::translate::score(&hyp, &reference),
        Command::Serve {
            addr,
            dist,
            default_model,
            queue,
            streams,
            batch_rows,
            decode_nice,
            max_connections,
            per_client,
            header_timeout,
        } => {
            attnscope::init_tracing();
            let header_read_timeout = std::time::Duration::try_from_secs_f64(header_timeout)
                .context("--header-timeout must be a number of seconds, e.g. 10")?;
            let config = attnscope::ServeConfig {
                models_dir: cli.models,
                dist,
                default_model,
                queue,
                streams,
                batch_rows: usize::from(batch_rows),
                decode_nice,
                limits: attnscope::listen::Limits {
                    max_connections,
                    per_client,
                    header_read_timeout,
                },
            };
            // One blocking thread per decoding stream, plus room for file serving.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(streams.max(1) + 64)
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(attnscope::serve(config, addr))
        }
    }
}
