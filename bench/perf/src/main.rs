//! `attnscope-perf`: times a shipped model on sentences read from stdin (one per line) and
//! prints one JSON object. `bench/perf.py` runs it interleaved with the PyTorch reference
//! (`bench/reference/`) and builds the table in docs/BENCHMARKS.md.
//!
//! - latency: greedy decoding of each sentence alone (batch 1), `--reps` times after one
//!   warm-up pass; the median milliseconds per sentence over all timed runs.
//! - throughput: `translate_batch` over all the sentences in batches of `--batch`; sentences
//!   per second, best of `--reps`.
//! - training (`--train`): stdin is JSON `{"batches": [[[src ids], [tgt ids]], ...]}`; each
//!   batch is one step of forward, backward and AdamW from the shipped weights, `--reps`
//!   passes after one warm-up step; target tokens per second (see `train.rs`).
//! - matrix multiply (`--gemm`): GFLOP/s of candle's f32 matmul at a square size and at
//!   the output layer's shape, the machine's practical peak for this code.
//!
//! Model loading is not timed. Set the thread count with `RAYON_NUM_THREADS`; candle's
//! element-wise ops run on the calling thread (`CANDLE_NUM_THREADS=1`), as in `attnscope`.

use std::io::BufRead;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use attnscope_model::{DecodeOptions, Mode, Translator};
use clap::Parser;

mod train;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The model folder (e.g. models/bahdanau).
    #[arg(long, required_unless_present = "gemm")]
    model: Option<PathBuf>,
    /// Attention mode: soft, hard, sampled, sparsemax, uniform or shuffled (default: the
    /// model's own).
    #[arg(long)]
    attention: Option<String>,
    /// Timed passes over the sentences.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Training: shards each batch is split into, trained side by side (as `attnscope
    /// train --data-parallel`).
    #[arg(long, default_value_t = 1)]
    data_parallel: usize,
    /// Batch size of the throughput measurement (0: skip it).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Time training steps on the batches of token ids given as JSON on stdin.
    #[arg(long)]
    train: bool,
    /// Measure the f32 matrix-multiply rate instead (no model or stdin needed).
    #[arg(long)]
    gemm: bool,
}

/// GFLOP/s of `(m, k) x (k, n)` products, best of five timed batches of about 2 GFLOP:
/// through the product the networks use (`attnscope_model::kernels::gemm::matmul`, the
/// AVX-512 kernels where the CPU has them) or through candle's own `matmul`. With
/// `transposed`, `b` is a transposed `(n, k)` weight, as the dense layers read it.
fn gemm_rate(m: usize, k: usize, n: usize, ours: bool, transposed: bool) -> Result<f64> {
    use candle_core::{Device, Tensor};
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let b = match transposed {
        true => Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?.t()?,
        false => Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?,
    };
    let product = || -> Result<Tensor> {
        Ok(match ours {
            true => attnscope_model::kernels::gemm::matmul(&a, &b)?,
            false => a.matmul(&b)?,
        })
    };
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e9 / flops).ceil() as usize).max(3);
    for _ in 0..3 {
        product()?;
    }
    let mut best = 0f64;
    for _ in 0..5 {
        let began = Instant::now();
        for _ in 0..reps {
            product()?;
        }
        best = best.max(flops * reps as f64 / began.elapsed().as_secs_f64() / 1e9);
    }
    Ok(best)
}

/// GFLOP/s of `(m, k) x (n, k)ᵀ` through a weight packed once
/// (`attnscope_model::kernels::gemm::PackedWeight`, AVX2 and FMA), timed as [`gemm_rate`];
/// `None` where the CPU cannot run it.
fn packed_rate(m: usize, k: usize, n: usize) -> Result<Option<f64>> {
    use attnscope_model::kernels::gemm::PackedWeight;
    if !PackedWeight::runs_here() {
        return Ok(None);
    }
    let w: Vec<f32> = (0..n * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
    let packed = PackedWeight::pack(&w, n, k)?;
    let threads = candle_core::utils::get_num_threads();
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e9 / flops).ceil() as usize).max(3);
    let mut best = 0f64;
    for _ in 0..5 {
        let began = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(packed.product(&x, m, threads)?);
        }
        best = best.max(flops * reps as f64 / began.elapsed().as_secs_f64() / 1e9);
    }
    Ok(Some(best))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn main() -> Result<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // As `attnscope` runs every command (server/src/main.rs, `set_thread_count`):
        // candle's element-wise ops on the calling thread.
        // SAFETY: first thing in `main`, while this process has a single thread.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    let args = Args::parse();
    if args.gemm {
        // Decoding's products: a batch of `m` steps through the output layer (256 -> 8000)
        // and through a GRU's gates (256 -> 768), each weight transposed as it lies.
        let mut decoding = serde_json::Map::new();
        for m in [1, 4, 8, 16, 48, 128] {
            for (k, n) in [(256, 8000), (256, 768)] {
                let ours = gemm_rate(m, k, n, true, true)?;
                let candle = gemm_rate(m, k, n, false, true)?;
                let packed = packed_rate(m, k, n)?;
                decoding.insert(
                    format!("{m}x{k}x{n}"),
                    serde_json::json!({"ours_gflops": ours, "candle_gflops": candle, "packed_gflops": packed}),
                );
            }
        }
        let report = serde_json::json!({
            "decoding_products_transposed": decoding,
            "square_1024_gflops": gemm_rate(1024, 1024, 1024, true, false)?,
            "output_layer_704x256x8000_gflops": gemm_rate(704, 256, 8000, true, false)?,
            "output_layer_transposed_gflops": gemm_rate(704, 256, 8000, true, true)?,
            "candle_square_1024_gflops": gemm_rate(1024, 1024, 1024, false, false)?,
            "candle_output_layer_704x256x8000_gflops": gemm_rate(704, 256, 8000, false, false)?,
        });
        println!("{report}");
        return Ok(());
    }
    let Some(model_dir) = args.model.as_deref() else {
        bail!("give the model folder with --model (e.g. --model models/bahdanau)");
    };
    if args.train {
        let input: train::TrainInput = serde_json::from_reader(std::io::stdin().lock())
            .context("stdin is not training batches as JSON ({\"batches\": [[[src], [tgt]]]})")?;
        println!(
            "{}",
            train::run(model_dir, &input, args.reps, args.data_parallel)?
        );
        return Ok(());
    }
    let sentences: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot read sentences from stdin")?
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if sentences.is_empty() {
        bail!("no sentences on stdin: give one per line");
    }
    let model = Translator::load(model_dir)
        .with_context(|| format!("cannot load {}", model_dir.display()))?;
    let attention = args
        .attention
        .as_deref()
        .map(str::parse::<Mode>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = DecodeOptions {
        attention,
        ..Default::default()
    };
    let one = |s: &str| -> Result<f64> {
        let began = Instant::now();
        model.translate(s, &opts, |_| ControlFlow::Continue(()))?;
        Ok(began.elapsed().as_secs_f64() * 1e3)
    };
    for s in &sentences {
        one(s)?; // warm-up
    }
    let mut times = Vec::with_capacity(args.reps * sentences.len());
    for _ in 0..args.reps {
        for s in &sentences {
            times.push(one(s)?);
        }
    }
    let mut throughput = None;
    if args.batch > 0 && attention.is_none() {
        let mut best = 0f64;
        for _ in 0..args.reps.max(1) {
            let began = Instant::now();
            model.translate_batch(&sentences, args.batch)?;
            best = best.max(sentences.len() as f64 / began.elapsed().as_secs_f64());
        }
        throughput = Some(best);
    }
    let report = serde_json::json!({
        "sentences": sentences.len(),
        "latency_ms_median": median(times.clone()),
        "latency_ms_all": times,
        "throughput_sentences_per_s": throughput,
        "batch": args.batch,
    });
    println!("{report}");
    Ok(())
}
