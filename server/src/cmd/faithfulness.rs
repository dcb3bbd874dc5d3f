//! `attnscope faithfulness`: does a model's attention explain its output? Agreement with
//! every attribution and counterfactual attention over the test split
//! ([`attnscope_model::evaluation::faithfulness`]), stored in `config.json` and the model card.

use std::path::{Path, PathBuf};

use anyhow::Result;
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_model::evaluation::faithfulness;
use attnscope_model::report::Evaluation;
use attnscope_model::report::Faithfulness;

#[derive(clap::Args)]
pub struct FaithfulnessArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Folder of training runs (where the training options are, if not beside the model).
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// The TSV the model was trained on [default: the path recorded at training].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test sentences to measure (the first ones of the held-out test split).
    #[arg(long, default_value_t = 200)]
    sentences: usize,
    /// Quadrature points of integrated gradients.
    #[arg(long, default_value_t = 16)]
    ig_steps: usize,
}

pub fn run(models: &Path, a: FaithfulnessArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    let (opts, split) = super::eval::test_split(models, &a.model, &a.runs, a.data.as_deref())?;
    let sources: Vec<String> = split
        .test
        .iter()
        .take(a.sentences)
        .map(|t| t.src.clone())
        .collect();
    let progress = super::Progress::new("{spinner} {msg} {bar:30} {pos}/{len} {eta}")?;
    progress
        .bar
        .set_message("explaining and replacing the attention");
    progress.bar.set_length(sources.len() as u64);
    let f = faithfulness::measure(&translator, &sources, a.ig_steps, |done, _| {
        progress.bar.set_position(done as u64)
    })?;
    progress.bar.finish_and_clear();
    print_faithfulness(&a.model, &f);
    let dir = models.join(&a.model);
    let mut cfg = translator.config().clone();
    cfg.evaluation
        .get_or_insert_with(Evaluation::default)
        .faithfulness = Some(f);
    cfg.save(&dir.join(CONFIG_FILE))?;
    super::eval::write_card(&dir, &a.model, &opts, &cfg, translator.parameters())?;
    println!("wrote {}", dir.join("README.md").display());
    Ok(())
}

fn print_faithfulness(name: &str, f: &Faithfulness) {
    println!(
        "{name}: {} sentences, {} steps; attention against each attribution:",
        f.sentences, f.steps
    );
    for a in &f.agreement {
        println!(
            "  {:<22} mean τ {:+.3}  same top token {:5.1} %",
            a.method,
            a.mean_tau,
            100.0 * a.argmax_agreement
        );
    }
    println!("attention replaced by:");
    for c in &f.counterfactuals {
        println!(
            "  {:<9} tokens changed {:5.1} %  sentences changed {:5.1} %  log-prob drop {:.3} nats/token",
            c.attention,
            100.0 * c.tokens_changed,
            100.0 * c.sentences_changed,
            c.log_prob_drop
        );
    }
}
