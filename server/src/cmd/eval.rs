//! `attnscope eval` and `attnscope align-eval`: test-split scores, attention entropy, word
//! alignment error rate, and the model card with its loss curve.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use attnscope_model::align::{self, AlignmentCounts, Extraction, Symmetrization};
use attnscope_model::attention::entropy;
use attnscope_model::config::{AlignmentResult, Evaluation};
use attnscope_model::data::TestItem;
use attnscope_model::robustness::{self, SetScore};
use attnscope_model::train::{self, LOG_FILE, LogLine, OPTIONS_FILE, TrainOptions};
use attnscope_model::{DecodeOptions, Segmentation, Translator, card, data};

/// Where the Hansards gold alignments live, relative to the project root.
const HANSARDS: &str = "../shared/data/align-gold-en-fr-hansards-naacl2003";
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
    /// Gold word alignments (English-French models only).
    #[arg(long, default_value = HANSARDS)]
    gold: PathBuf,
    /// Test sentences decoded one by one for the attention entropy figures.
    #[arg(long, default_value_t = 500)]
    entropy_sentences: usize,
}

#[derive(clap::Args)]
pub struct AlignArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Gold set: `test.e`, `test.f`, `test.wa.nonullalign`.
    #[arg(long, default_value = HANSARDS)]
    gold: PathBuf,
    /// Weight threshold of the thresholded extraction.
    #[arg(long, default_value_t = 0.3)]
    threshold: f32,
}

/// The options the model was trained with: in its folder, or in its run.
fn training_options(models: &Path, name: &str, runs: &Path) -> Result<TrainOptions> {
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

pub fn run(models: &Path, a: EvalArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    let mut opts = training_options(models, &a.model, &a.runs)?;
    if let Some(d) = &a.data {
        opts.data = d.clone();
    }
    let pairs = data::read_tsv(&opts.data).with_context(|| {
        format!(
            "the test split is rebuilt from the training data; pass --data if {} moved",
            opts.data.display()
        )
    })?;
    let split = data::split(&pairs, opts.seed, opts.dev_sentences, opts.test_sentences);
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
    cfg.save(&dir.join("config.json"))?;
    drop(translator);
    report_with(models, &a.model, &a.runs, &a.gold, a.entropy_sentences)
}

/// After training: attention entropy, AER, loss curve and card, with default settings.
pub fn report(models: &Path, name: &str, runs: &Path, gold: Option<&Path>) -> Result<()> {
    report_with(models, name, runs, gold.unwrap_or(Path::new(HANSARDS)), 500)
}

fn report_with(
    models: &Path,
    name: &str,
    runs: &Path,
    gold: &Path,
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
    let run_log = runs.join(name).join(attnscope_model::run_log::FILE);
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

    let mut alignment = Vec::new();
    let c = translator.config();
    if c.source_lang == "en" && c.target_lang == "fr" && gold.is_dir() {
        alignment = align_eval(&translator, gold, 0.3)?;
        print_alignment(name, &alignment);
    }
    let scores = robustness_scores(&translator, &opts)?;
    print_scores(name, &scores);
    let mut cfg = translator.config().clone();
    cfg.evaluation = Some(Evaluation {
        sentences: n,
        mean_entropy: ent,
        mean_max_weight: maxw,
        alignment,
        scores,
    });
    cfg.save(&dir.join("config.json"))?;
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
        &opts,
        &cfg,
        translator.parameters(),
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
        for r in &out.attention {
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

/// Pieces of each word, encoded one word at a time (the pre-tokenizer splits on spaces
/// first, so this is how the whole sentence is split too).
fn word_pieces(v: &attnscope_model::Vocab, words: &[String]) -> Result<(Vec<u32>, Vec<usize>)> {
    let (mut ids, mut counts) = (Vec::new(), Vec::new());
    for w in words {
        let p = v.encode(w)?;
        counts.push(p.len());
        ids.extend(p);
    }
    Ok((ids, counts))
}

/// AER, precision and recall of every extraction and merge over the gold set.
pub fn align_eval(t: &Translator, gold_dir: &Path, threshold: f32) -> Result<Vec<AlignmentResult>> {
    let gold = align::load_gold(gold_dir)?;
    let extractions = [
        ("argmax".to_string(), Extraction::Argmax),
        (
            format!("weight ≥ {threshold}"),
            Extraction::Threshold(threshold),
        ),
    ];
    let mut counts =
        vec![AlignmentCounts::default(); extractions.len() * Symmetrization::ALL.len()];
    let progress = super::Progress::new("{spinner} {msg} {bar:30} {pos}/{len}")?;
    progress
        .bar
        .set_message("forced decoding of the gold pairs");
    progress.bar.set_length(gold.len() as u64);
    for g in &gold {
        let (mut src_ids, src_counts) = word_pieces(t.source_vocab(), &g.source)?;
        src_ids.push(attnscope_model::config::EOS_ID);
        let src_tokens = src_ids.iter().map(|&i| t.source_vocab().piece(i)).collect();
        let target = g.target.join(" ");
        let (tgt_ids, tgt_counts) = word_pieces(t.target_vocab(), &g.target)?;
        let out = t.translate_source(
            &src_ids,
            src_tokens,
            &DecodeOptions {
                force_target: Some(target.clone()),
                ..DecodeOptions::default()
            },
            |_| ControlFlow::Continue(()),
        )?;
        let forced: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
        if forced[..forced.len() - 1] != tgt_ids[..] {
            bail!(
                "sentence {}: the target splits differently word by word than as a whole",
                g.id
            );
        }
        let src_owner = align::piece_owners(&src_counts, true);
        let tgt_owner = align::piece_owners(&tgt_counts, true);
        let m = align::word_matrix(
            &out.attention,
            &src_owner,
            &tgt_owner,
            g.source.len(),
            g.target.len(),
        )?;
        let mut k = 0;
        for (_, ext) in &extractions {
            let d = align::directions(&m, *ext);
            for how in Symmetrization::ALL {
                counts[k].add(&align::symmetrize(&d, how), g);
                k += 1;
            }
        }
        progress.bar.inc(1);
    }
    progress.bar.finish_and_clear();
    let mut out = Vec::new();
    let mut k = 0;
    for (ext_name, _) in &extractions {
        for how in Symmetrization::ALL {
            let s = counts[k].scores();
            out.push(AlignmentResult {
                gold: "hansards-naacl2003".into(),
                method: format!("{ext_name}, {}", how.name()),
                aer: s.aer,
                precision: s.precision,
                recall: s.recall,
                sentences: s.counts.sentences,
            });
            k += 1;
        }
    }
    Ok(out)
}

fn print_alignment(name: &str, rows: &[AlignmentResult]) {
    println!(
        "{name}: word alignment from attention, Hansards gold ({} sentences)",
        rows.first().map_or(0, |r| r.sentences)
    );
    println!(
        "{:<28} {:>6} {:>10} {:>7}",
        "method", "AER", "precision", "recall"
    );
    for r in rows {
        println!(
            "{:<28} {:>6.1} {:>10.1} {:>7.1}",
            r.method,
            100.0 * r.aer,
            100.0 * r.precision,
            100.0 * r.recall
        );
    }
}

pub fn run_align(models: &Path, a: AlignArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    if !a.gold.is_dir() {
        bail!(
            "no gold alignments at {}; pass --gold with a folder holding test.e, test.f and test.wa.nonullalign",
            a.gold.display()
        );
    }
    let rows = align_eval(&translator, &a.gold, a.threshold)?;
    print_alignment(&a.model, &rows);
    Ok(())
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
