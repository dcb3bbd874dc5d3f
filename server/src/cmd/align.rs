//! `attnscope align-eval`: word alignments read off a model's attention, and off its
//! attributions, scored against a gold set (AER, precision, recall); `eval` runs the
//! attention's part for the model card.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use attnscope_model::evaluation::align::{self, AlignmentCounts, Extraction, Symmetrization};
use attnscope_model::report::AlignmentResult;
use attnscope_model::{DecodeOptions, ExplainOptions, Method, TextSource, Translator};

#[derive(clap::Args)]
pub struct AlignArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Gold set: a folder with `test.e`, `test.f`, `test.wa.nonullalign` (Hansards en-fr) or
    /// `en.utf8`, `de.utf8`, `alignmentDeEn.talp` (RWTH, read as en-de) [default: by the
    /// model's languages].
    #[arg(long)]
    gold: Option<PathBuf>,
    /// Weight threshold of the thresholded extraction.
    #[arg(long, default_value_t = 0.3)]
    threshold: f32,
    /// Also read alignments off these attributions of the forced translation
    /// (gradient_x_input, integrated_gradients, erasure; comma-separated), beside the
    /// attention.
    #[arg(long, value_name = "METHOD", value_delimiter = ',')]
    explain: Vec<Method>,
    /// Quadrature points of integrated gradients.
    #[arg(long, default_value_t = 16)]
    ig_steps: usize,
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

/// AER, precision and recall of every extraction and merge over the gold set, read off the
/// attention and off each attribution of `explain` (none: the attention only).
pub fn align_eval(
    t: &Translator,
    gold_dir: &Path,
    threshold: f32,
    explain: &ExplainOptions,
) -> Result<Vec<AlignmentResult>> {
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
    let gold = set.sentences;
    let methods = explain.methods();
    // The matrices alignments are read from: the attention, then each attribution.
    let sources: Vec<String> = std::iter::once(String::new())
        .chain(methods.iter().map(|m| format!("{} ", m.label())))
        .collect();
    let extractions = [
        ("argmax".to_string(), Extraction::Argmax),
        (
            format!("weight ≥ {threshold}"),
            Extraction::Threshold(threshold),
        ),
    ];
    let per_source = extractions.len() * Symmetrization::ALL.len();
    let mut counts = vec![AlignmentCounts::default(); sources.len() * per_source];
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
        let opts = DecodeOptions {
            force_target: Some(target.clone()),
            ..DecodeOptions::default()
        };
        let text = TextSource::one(&g.source.join(" "), src_ids, src_tokens);
        let plan = t.plan(text, opts)?;
        let out = t.decode(&plan, |_| ControlFlow::Continue(()))?;
        let forced: Vec<u32> = out.steps.iter().map(|s| s.token_id).collect();
        if forced[..forced.len() - 1] != tgt_ids[..] {
            bail!(
                "sentence {}: the target splits differently word by word than as a whole",
                g.id
            );
        }
        let src_owner = align::piece_owners(&src_counts, true);
        let tgt_owner = align::piece_owners(&tgt_counts, true);
        let explained = t.explain(&plan, &out, explain)?;
        let own: Vec<Vec<f32>> = out.attention().into_iter().map(<[f32]>::to_vec).collect();
        let rows = std::iter::once(own).chain(
            explained
                .iter()
                .map(|a| (0..a.raw.len()).map(|s| a.normalised(s)).collect()),
        );
        let mut k = 0;
        for rows in rows {
            let m = align::word_matrix(
                &rows,
                &src_owner,
                &tgt_owner,
                g.source.len(),
                g.target.len(),
            )?;
            for (_, ext) in &extractions {
                let d = align::directions(&m, *ext);
                for how in Symmetrization::ALL {
                    counts[k].add(&align::symmetrize(&d, how), g);
                    k += 1;
                }
            }
        }
        progress.bar.inc(1);
    }
    progress.bar.finish_and_clear();
    let mut out = Vec::new();
    let mut k = 0;
    for (source, (ext_name, _)) in sources
        .iter()
        .flat_map(|s| extractions.iter().map(move |e| (s, e)))
    {
        for how in Symmetrization::ALL {
            let s = counts[k].scores();
            out.push(AlignmentResult {
                gold: set.name.into(),
                method: format!("{source}{ext_name}, {}", how.name()),
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

pub(crate) fn print_alignment(name: &str, rows: &[AlignmentResult]) {
    println!(
        "{name}: word alignment from attention, {} gold ({} sentences)",
        rows.first().map_or("no", |r| r.gold.as_str()),
        rows.first().map_or(0, |r| r.sentences)
    );
    println!(
        "{:<44} {:>6} {:>10} {:>7}",
        "method", "AER", "precision", "recall"
    );
    for r in rows {
        println!(
            "{:<44} {:>6.1} {:>10.1} {:>7.1}",
            r.method,
            100.0 * r.aer,
            100.0 * r.precision,
            100.0 * r.recall
        );
    }
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
    let explain = ExplainOptions {
        methods: a.explain.clone(),
        ig_steps: a.ig_steps,
        ..ExplainOptions::default()
    };
    let rows = align_eval(&translator, &gold, a.threshold, &explain)?;
    print_alignment(&a.model, &rows);
    Ok(())
}
