//! `attnscope eval`: test-split scores, attention entropy, word alignment error rate (see
//! [`super::align`]), and the model card with its loss curve.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_model::evaluation::TestItem;
use attnscope_model::evaluation::robustness;
use attnscope_model::networks::attention::entropy;
use attnscope_model::report::Evaluation;
use attnscope_model::report::SetScore;
use attnscope_model::training::options::TrainOptions;
use attnscope_model::training::train::{self, LOG_FILE, LogLine, OPTIONS_FILE};
use attnscope_model::training::{card, data};
use attnscope_model::{DecodeOptions, Segmentation, Translator};

/// Where the Hansards gold alignments live, relative to the project root.
pub(crate) const HANSARDS: &str = "../shared/data/align-gold-en-fr-hansards-naacl2003";
/// Where the RWTH German-English gold alignments live, relative to the project root.
pub(crate) const RWTH: &str = "../shared/data/align-gold-de-en-rwth-europarl";

/// The gold alignment set of a model's languages, where there is one: Hansards for en-fr,
/// RWTH (read as en-de) for en-de.
pub(crate) fn default_gold(c: &attnscope_model::ModelConfig) -> Option<&'static Path> {
    match (c.source_lang.as_str(), c.target_lang.as_str()) {
        ("en", "fr") => Some(Path::new(HANSARDS)),
        ("en", "de") => Some(Path::new(RWTH)),
        _ => None,
    }
}
/// File name of the loss curve beside the card.
const LOSS_PLOT: &str = "loss.png";
/// File name of the BLEU-by-length chart beside the card.
const LENGTH_PLOT: &str = "bleu-by-length.png";
/// Multi30k (a second domain: image descriptions), relative to the project root.
const MULTI30K: &str = "../shared/data/multi30k";
/// Pasted inputs (3 or 4 test sentences joined) scored per model.
const PASTED: usize = 500;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Folder of training runs; test files go to <runs>/<model>/.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// The TSV the model was trained on [default: the path recorded at training].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Gold word alignments [default: by the model's languages: the Hansards set for en-fr,
    /// the RWTH set for en-de].
    #[arg(long)]
    gold: Option<PathBuf>,
    /// Test sentences decoded one by one for the attention entropy figures.
    #[arg(long, default_value_t = 500)]
    entropy_sentences: usize,
}

/// The options the model was trained with: in its folder, or in its run.
pub(crate) fn training_options(models: &Path, name: &str, runs: &Path) -> Result<TrainOptions> {
    for p in [
        models.join(name).join(OPTIONS_FILE),
        runs.join(name).join("options.json"),
    ] {
        if p.is_file() {
            return Ok(train::load_options(&p)?);
        }
    }
    bail!(
        "cannot find how {name:?} was trained: neither {} nor {} exists",
        models.join(name).join(OPTIONS_FILE).display(),
        runs.join(name).join("options.json").display()
    )
}

/// The model's training options and its held-out split, rebuilt from the training data
/// (`data` instead of the recorded path when given).
pub(crate) fn test_split(
    models: &Path,
    name: &str,
    runs: &Path,
    data: Option<&Path>,
) -> Result<(TrainOptions, data::Split)> {
    let mut opts = training_options(models, name, runs)?;
    if let Some(d) = data {
        opts.data = d.to_path_buf();
    }
    let pairs = data::read_tsv(&opts.data).with_context(|| {
        format!(
            "the test split is rebuilt from the training data; pass --data if {} moved",
            opts.data.display()
        )
    })?;
    let split = data::split(&pairs, opts.seed, opts.dev_sentences, opts.test_sentences);
    Ok((opts, split))
}

pub fn run(models: &Path, a: EvalArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    let (_, split) = test_split(models, &a.model, &a.runs, a.data.as_deref())?;
    let out = a.runs.join(&a.model);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let progress = super::Progress::new("{spinner} {msg} {bar:30} {pos}/{len}")?;
    progress.bar.set_message("translating the test split");
    let (bleu, chrf) = train::evaluate(&translator, &split.test, &out, &mut |e| {
        if let train::Event::Eval { done, total } = e {
            progress.bar.set_length(total as u64);
            progress.bar.set_position(done as u64);
        }
    })?;
    progress.bar.finish_and_clear();
    println!(
        "{}: BLEU {bleu:.2}, chrF {chrf:.2} on {} test sentences (files in {})",
        a.model,
        split.test.len(),
        out.display()
    );
    let dir = models.join(&a.model);
    let mut cfg = translator.config().clone();
    if let Some(t) = cfg.training.as_mut() {
        t.bleu = Some(bleu);
        t.chrf = Some(chrf);
        t.test_sentences = split.test.len();
    }
    cfg.save(&dir.join(CONFIG_FILE))?;
    drop(translator);
    report_with(
        models,
        &a.model,
        &a.runs,
        a.gold.as_deref(),
        a.entropy_sentences,
    )
}

/// After training: attention entropy, AER, loss curve and card, with default settings.
pub fn report(models: &Path, name: &str, runs: &Path, gold: Option<&Path>) -> Result<()> {
    report_with(models, name, runs, gold, 500)
}

fn report_with(
    models: &Path,
    name: &str,
    runs: &Path,
    gold: Option<&Path>,
    entropy_sentences: usize,
) -> Result<()> {
    let translator = super::load_model(models, name)?;
    let opts = training_options(models, name, runs)?;
    let dir = models.join(name);
    // Keep what the card's figures come from beside the model.
    let opts_copy = dir.join(OPTIONS_FILE);
    if !opts_copy.is_file() {
        attnscope_model::files::write(&opts_copy, serde_json::to_string_pretty(&opts)? + "\n")?;
    }
    let log_copy = dir.join(LOG_FILE);
    let run_log = runs
        .join(name)
        .join(attnscope_model::training::run_log::FILE);
    if run_log.is_file() {
        attnscope_model::files::copy(&run_log, &log_copy)?;
    }

    let test_src = runs.join(name).join("test.src");
    let sentences: Vec<String> = std::fs::read_to_string(&test_src)
        .with_context(|| {
            format!(
                "cannot read {}; run `attnscope eval --model {name}` to translate the test split first",
                test_src.display()
            )
        })?
        .lines()
        .take(entropy_sentences)
        .map(str::to_string)
        .collect();
    let (ent, maxw, n) = attention_stats(&translator, &sentences)?;
    println!(
        "{name}: attention entropy {ent:.3} nats per step, largest weight {maxw:.3} on average ({n} sentences)"
    );

    let mut alignment = None;
    let c = translator.config();
    if let Some(gold) = gold.or_else(|| default_gold(c))
        && gold.is_dir()
    {
        let e = super::align::align_eval(&translator, gold, &Default::default())?;
        super::align::print_alignment(name, &e, Some(20));
        alignment = Some(e);
    }
    let scores = robustness_scores(&translator, &opts)?;
    print_scores(name, &scores);
    let mut cfg = translator.config().clone();
    // Faithfulness has its own command; keep what it measured.
    let faithfulness = cfg.evaluation.take().and_then(|e| e.faithfulness);
    let mut evaluation = Evaluation {
        sentences: n,
        mean_entropy: ent,
        mean_max_weight: maxw,
        scores,
        faithfulness,
        ..Evaluation::default()
    };
    if let Some(e) = &alignment {
        super::align::keep(&mut evaluation, e);
    }
    cfg.evaluation = Some(evaluation);
    cfg.save(&dir.join(CONFIG_FILE))?;
    write_card(&dir, name, &opts, &cfg, translator.parameters())
}

/// Writes the model card in `dir` from `cfg`, with its loss curve (from the training log
/// kept beside the model) and its BLEU-by-length chart.
pub(crate) fn write_card(
    dir: &Path,
    name: &str,
    opts: &TrainOptions,
    cfg: &attnscope_model::ModelConfig,
    parameters: usize,
) -> Result<()> {
    let log_copy = dir.join(LOG_FILE);
    let plot = if log_copy.is_file() {
        write_loss_plot(&log_copy, &dir.join(LOSS_PLOT), name)?;
        Some(LOSS_PLOT)
    } else {
        None
    };
    let length_plot = match cfg.evaluation.as_ref() {
        Some(ev) if write_length_plot(&ev.scores, &dir.join(LENGTH_PLOT), name)? => {
            Some(LENGTH_PLOT)
        }
        _ => None,
    };
    let card = card::model_card(
        opts,
        cfg,
        parameters,
        card::Figures {
            loss: plot,
            lengths: length_plot,
        },
    );
    attnscope_model::files::write(&dir.join("README.md"), card)?;
    println!("wrote {}", dir.join("README.md").display());
    Ok(())
}

/// The Multi30k test2016 file for a model's languages, if the data has one.
fn multi30k_test(source: &str, target: &str) -> Option<PathBuf> {
    let tgt = match (source, target) {
        ("en", "fr") => "fra",
        ("en", "de") => "deu",
        _ => return None,
    };
    let p = Path::new(MULTI30K).join(format!("multi30k-eng-{tgt}.test2016.tsv"));
    p.is_file().then_some(p)
}

/// BLEU by source length on the test split, on pasted test sentences (segmented and whole),
/// and on Multi30k test2016 when the languages have it.
fn robustness_scores(t: &Translator, opts: &TrainOptions) -> Result<Vec<SetScore>> {
    let pairs = data::read_tsv(&opts.data).with_context(|| {
        format!(
            "the test split is rebuilt from the training data; pass --data if {} moved",
            opts.data.display()
        )
    })?;
    let split = data::split(&pairs, opts.seed, opts.dev_sentences, opts.test_sentences);
    let progress = super::Progress::new("{spinner} {msg}")?;
    let mut out = Vec::new();
    progress.bar.set_message("scoring by source length");
    let hyps = robustness::translate(t, &split.test, Segmentation::Whole)?;
    out.extend(robustness::by_length(
        "tatoeba test",
        false,
        &split.test,
        &hyps,
    ));
    let pasted = robustness::pasted(&split.test, PASTED, opts.seed);
    for seg in [Segmentation::Sentences, Segmentation::Whole] {
        progress.bar.set_message("scoring pasted sentences");
        let hyps = robustness::translate(t, &pasted, seg)?;
        let segmented = seg == Segmentation::Sentences;
        out.push(robustness::score(
            "tatoeba test, 3-4 pasted",
            "all",
            segmented,
            &pasted,
            &hyps,
        ));
    }
    let c = t.config();
    if let Some(path) = multi30k_test(&c.source_lang, &c.target_lang) {
        progress.bar.set_message("scoring Multi30k test2016");
        let items: Vec<TestItem> = data::read_tsv(&path)?
            .into_iter()
            .map(|p| TestItem {
                src: p.src,
                refs: vec![p.tgt],
            })
            .collect();
        let hyps = robustness::translate(t, &items, Segmentation::Sentences)?;
        out.extend(robustness::by_length(
            "multi30k test2016",
            true,
            &items,
            &hyps,
        ));
    }
    progress.bar.finish_and_clear();
    Ok(out)
}

fn print_scores(name: &str, rows: &[SetScore]) {
    println!("{name}: BLEU by input (greedy; BLEU against every reference, chrF the first)");
    println!(
        "{:<28} {:<12} {:>9} {:>6} {:>6} {:>6}",
        "set", "slice", "segmented", "n", "BLEU", "chrF"
    );
    for r in rows {
        println!(
            "{:<28} {:<12} {:>9} {:>6} {:>6.1} {:>6.1}",
            r.set,
            r.slice,
            if r.segmented { "yes" } else { "no" },
            r.sentences,
            r.bleu,
            r.chrf
        );
    }
}

/// The chart of BLEU by source length (test split, and Multi30k when scored); false when
/// there is nothing to draw.
fn write_length_plot(rows: &[SetScore], out: &Path, name: &str) -> Result<bool> {
    let points = |set: &str| -> Vec<(f64, f64)> {
        robustness::LENGTH_BUCKETS
            .iter()
            .filter_map(|&(lo, hi)| {
                let slice = format!("{lo}-{hi} words");
                rows.iter()
                    .find(|r| r.set == set && r.slice == slice && r.sentences >= 20)
                    .map(|r| ((lo + hi) as f64 / 2.0, r.bleu))
            })
            .collect()
    };
    let (tatoeba, multi30k) = (points("tatoeba test"), points("multi30k test2016"));
    if tatoeba.is_empty() && multi30k.is_empty() {
        return Ok(false);
    }
    let title = format!("{name}: BLEU by source length");
    let png = attnscope_plot::loss_curve(
        &attnscope_plot::LossCurve {
            title: &title,
            train: &tatoeba,
            dev: &multi30k,
            x_label: "source length (words, bucket midpoint: 1-5, 6-10, 11-20, 21-40)",
            y_label: "BLEU",
            labels: ["Tatoeba test", "Multi30k test2016"],
        },
        attnscope_plot::Format::Png,
    )?;
    attnscope_model::files::write(out, png)?;
    Ok(true)
}

/// Mean entropy and mean largest weight of the attention rows of greedy translations.
fn attention_stats(t: &Translator, sentences: &[String]) -> Result<(f64, f64, usize)> {
    let progress = super::Progress::new("{spinner} {msg} {bar:30} {pos}/{len}")?;
    progress.bar.set_message("measuring attention");
    progress.bar.set_length(sentences.len() as u64);
    let (mut h, mut m, mut rows, mut n) = (0f64, 0f64, 0usize, 0usize);
    for s in sentences {
        if s.trim().is_empty() {
            continue;
        }
        let out = t.translate(s, &DecodeOptions::default(), |_| ControlFlow::Continue(()))?;
        for r in out.attention() {
            h += entropy(r) as f64;
            m += r.iter().copied().fold(0f32, f32::max) as f64;
            rows += 1;
        }
        n += 1;
        progress.bar.inc(1);
    }
    progress.bar.finish_and_clear();
    let rows = rows.max(1) as f64;
    Ok((h / rows, m / rows, n))
}

fn write_loss_plot(log: &Path, out: &Path, name: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut train_pts = Vec::new();
    let mut dev_pts = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: LogLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{} has a line that is not a checkpoint record",
                log.display()
            )
        })?;
        train_pts.push((l.step as f64, l.train_loss));
        dev_pts.push((l.step as f64, l.dev_loss));
    }
    let title = format!("{name}: cross-entropy per target piece");
    let png = attnscope_plot::loss_curve(
        &attnscope_plot::LossCurve {
            title: &title,
            train: &train_pts,
            dev: &dev_pts,
            x_label: "training step",
            y_label: "loss",
            labels: ["train", "dev"],
        },
        attnscope_plot::Format::Png,
    )?;
    attnscope_model::files::write(out, png)?;
    Ok(())
}
