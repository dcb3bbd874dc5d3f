//! `attnscope align-eval`: word alignments read off a model's attention (every layer, head,
//! their means, norm-weighted, shifted) and off its attributions, scored against a gold set
//! (AER, precision, recall); the method is chosen on the trial sentences and reported on the
//! test ones. `--save` keeps the choice and the card's table in the model folder; `eval`
//! does the same as part of its run.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use attnscope_model::evaluation::align::{self, AlignEvaluation, AlignOptions};
use attnscope_model::report::Evaluation;
use attnscope_model::{ExplainOptions, Method, Translator};

#[derive(clap::Args)]
pub struct AlignArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Gold set: a folder with `test.e`, `test.f`, `test.wa.nonullalign` and the trial files
    /// `trial.e`, `trial.f`, `trial.wa` (Hansards en-fr) or `en.utf8`, `de.utf8`,
    /// `alignmentDeEn.talp` (RWTH, read as en-de; its first 50 pairs act as trial)
    /// [default: by the model's languages].
    #[arg(long)]
    gold: Option<PathBuf>,
    /// Weight thresholds of the thresholded extraction to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = align::THRESHOLDS)]
    threshold: Vec<f32>,
    /// Also read alignments off these attributions of the forced translation
    /// (gradient_x_input, integrated_gradients, erasure, word_erasure; comma-separated), beside
    /// the attention.
    #[arg(long, value_name = "METHOD", value_delimiter = ',')]
    explain: Vec<Method>,
    /// Quadrature points of integrated gradients.
    #[arg(long, default_value_t = 16)]
    ig_steps: usize,
    /// Show the model the gold sentences in the gold set's own tokenisation (lowercased,
    /// French elisions undone) instead of as ordinary text.
    #[arg(long)]
    gold_tokens: bool,
    /// Print only the best N methods (by trial AER) [default: every method].
    #[arg(long)]
    top: Option<usize>,
    /// Keep the chosen method and the card's table in the model's config.json and card.
    #[arg(long)]
    save: bool,
    /// Folder of training runs (for the card's training options, with --save).
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
}

/// Every alignment method of `t` on the gold set in `gold_dir`, with the attributions of
/// `opts.explain` (none: the attention only).
pub fn align_eval(t: &Translator, gold_dir: &Path, opts: &AlignOptions) -> Result<AlignEvaluation> {
    let set = align::GoldSet::open(gold_dir)?;
    let pair = (
        t.config().source_lang.as_str(),
        t.config().target_lang.as_str(),
    );
    if pair != (set.source_lang, set.target_lang) {
        bail!(
            "{} aligns {} to {}, but this model translates {} to {}; pass --gold with a set of the model's languages (the Hansards set is en-fr, the RWTH set de-en, read as en-de)",
            gold_dir.display(),
            set.source_lang,
            set.target_lang,
            pair.0,
            pair.1
        );
    }
    let progress = super::Progress::new("{spinner} {msg} {bar:30} {pos}/{len} {eta}")?;
    progress
        .bar
        .set_message("forced decoding of the gold pairs");
    let result = align::evaluate(t, &set, opts, &mut |done, total| {
        progress.bar.set_length(total as u64);
        progress.bar.set_position(done as u64);
    })?;
    progress.bar.finish_and_clear();
    Ok(result)
}

/// Prints every method (or the best `top`), best trial AER first, then the diagonal.
pub(crate) fn print_alignment(name: &str, e: &AlignEvaluation, top: Option<usize>) {
    let (trial, test) = e.methods.first().map_or((0, 0), |m| {
        (m.trial.counts.sentences, m.test.counts.sentences)
    });
    println!(
        "{name}: word alignment, {} gold; methods chosen on {} ({trial} sentences), scored on {test} test sentences",
        e.gold, e.trial_note
    );
    println!(
        "{:<4} {:<100} {:>9} {:>8} {:>10} {:>7}",
        "rank", "method", "trial AER", "AER", "precision", "recall"
    );
    let shown = top.unwrap_or(e.methods.len());
    for (i, m) in e.methods.iter().take(shown).enumerate() {
        println!(
            "{:<4} {:<100} {:>9.1} {:>8.1} {:>10.1} {:>7.1}",
            i + 1,
            e.label(&m.method),
            100.0 * m.trial.aer,
            100.0 * m.test.aer,
            100.0 * m.test.precision,
            100.0 * m.test.recall
        );
    }
    println!(
        "{:<4} {:<100} {:>9.1} {:>8.1} {:>10.1} {:>7.1}",
        "",
        "length-scaled diagonal (baseline)",
        100.0 * e.diagonal.trial.aer,
        100.0 * e.diagonal.test.aer,
        100.0 * e.diagonal.test.precision,
        100.0 * e.diagonal.test.recall
    );
    if let Some(c) = e.chosen() {
        println!(
            "chosen (best on trial, read from attention; the explorer draws it): {} = `{}`, test AER {:.1}",
            e.label(&c.method),
            c.method,
            100.0 * c.test.aer
        );
    }
}

/// Stores the card's rows and the chosen method in `evaluation`.
pub(crate) fn keep(evaluation: &mut Evaluation, e: &AlignEvaluation) {
    evaluation.alignment = e.card_rows();
    evaluation.alignment_method = e.chosen().map(|c| c.method.to_string());
    evaluation.alignment_trial = Some(e.trial_note.to_string());
}

pub fn run_align(models: &Path, a: AlignArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    let Some(gold) = a
        .gold
        .clone()
        .or_else(|| super::eval::default_gold(translator.config()).map(Path::to_path_buf))
    else {
        bail!(
            "no gold alignments are known for {} to {}; pass --gold with a folder of them",
            translator.config().source_lang,
            translator.config().target_lang
        );
    };
    if !gold.is_dir() {
        bail!(
            "no gold alignments at {}; pass --gold with a folder holding test.e, test.f and test.wa.nonullalign (Hansards en-fr) or en.utf8, de.utf8 and alignmentDeEn.talp (RWTH, for en-de models)",
            gold.display()
        );
    }
    let opts = AlignOptions {
        thresholds: a.threshold.clone(),
        explain: ExplainOptions {
            methods: a.explain.clone(),
            ig_steps: a.ig_steps,
            ..ExplainOptions::default()
        },
        as_written: !a.gold_tokens,
    };
    let result = align_eval(&translator, &gold, &opts)?;
    print_alignment(&a.model, &result, a.top);
    if a.save {
        let opts = super::eval::training_options(models, &a.model, &a.runs)?;
        let dir = models.join(&a.model);
        let mut cfg = translator.config().clone();
        keep(
            cfg.evaluation.get_or_insert_with(Evaluation::default),
            &result,
        );
        cfg.save(&dir.join(attnscope_model::decoding::translator::CONFIG_FILE))?;
        super::eval::write_card(&dir, &a.model, &opts, &cfg, translator.parameters())?;
    }
    Ok(())
}
