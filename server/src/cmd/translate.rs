//! `attnscope translate` and `attnscope score`.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result, bail};
use attnscope_model::explain::{Baseline, DEFAULT_IG_STEPS, normalise};
use attnscope_model::{
    Attribution, DecodeOptions, ExplainOptions, Intervention, Method, Mode, Segmentation,
    Translation,
};

#[derive(clap::Args)]
pub struct TranslateArgs {
    /// Model name (a folder under --models).
    #[arg(long, default_value = attnscope::DEFAULT_MODEL)]
    model: String,
    /// Sentences decoded together (greedy decoding with the model's own attention only).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Attention distribution: soft, hard, sampled, sparsemax, uniform or shuffled [default:
    /// the model's own].
    #[arg(long)]
    attention: Option<Mode>,
    /// Divides attention scores before the distribution.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Seed of sampled attention.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Beam width (1: greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Longest output, in pieces.
    #[arg(long)]
    max_len: Option<usize>,
    /// Forced decoding: score this translation of every input line instead of decoding.
    #[arg(long)]
    force_target: Option<String>,
    /// Force this start of the translation, then decode freely.
    #[arg(long)]
    target_prefix: Option<String>,
    /// At decoding step STEP attend only to source token SOURCE (0-based), e.g. `2:0`;
    /// repeat for more steps.
    #[arg(long = "intervene", value_name = "STEP:SOURCE", value_parser = parse_intervention)]
    interventions: Vec<Intervention>,
    /// `text`: one translation per line; `json`: one JSON document per line with the source
    /// and target tokens, the attention and every step (as the API answers).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// Translate each line as one sequence, instead of sentence by sentence (by default a
    /// line of several sentences is split, each translated on its own, and the JSON says
    /// which sentence every step belongs to).
    #[arg(long)]
    no_segment: bool,
    /// Attribute each emitted token to the source tokens: gradient_x_input,
    /// integrated_gradients, erasure or word_erasure (comma-separated or repeated; every
    /// piece of a word left out at once). The JSON carries every
    /// row; text prints each target token's three largest shares.
    #[arg(long, value_name = "METHOD", value_delimiter = ',')]
    explain: Vec<Method>,
    /// Integrated gradients' quadrature points.
    #[arg(long, default_value_t = DEFAULT_IG_STEPS)]
    ig_steps: usize,
    /// Integrated gradients' baseline: zero or pad.
    #[arg(long, default_value_t = Baseline::Zero)]
    ig_baseline: Baseline,
    /// Report each step's K most likely tokens with their probabilities (0 to 20): text
    /// prints them under the translation, JSON carries them as each step's `candidates`.
    #[arg(long, value_name = "K", default_value_t = 0)]
    top_k: usize,
    /// JSON: each step carries its attention scores before the distribution (`scores`).
    #[arg(long)]
    scores: bool,
    /// The word alignment the model's chosen method reads off each translation (see
    /// `align-eval`): text prints its links, JSON carries it as `alignment`.
    #[arg(long)]
    align: bool,
}

fn parse_intervention(s: &str) -> Result<Intervention, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not STEP:SOURCE, e.g. 2:0"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{x:?} in {s:?} is not a position (0, 1, 2, ...)"))
    };
    Ok(Intervention {
        step: num(a)?,
        source: num(b)?,
    })
}

impl TranslateArgs {
    fn options(&self) -> DecodeOptions {
        DecodeOptions {
            attention: self.attention,
            temperature: self.temperature,
            seed: self.seed,
            beam: self.beam,
            max_len: self.max_len,
            force_target: self.force_target.clone(),
            target_prefix: self.target_prefix.clone(),
            interventions: self.interventions.clone(),
            top_k: self.top_k,
            scores: self.scores,
        }
    }

    fn explain_options(&self) -> ExplainOptions {
        ExplainOptions {
            methods: self.explain.clone(),
            ig_steps: self.ig_steps,
            baseline: self.ig_baseline,
        }
    }

    fn segmentation(&self) -> Segmentation {
        if self.no_segment {
            Segmentation::Whole
        } else {
            Segmentation::Sentences
        }
    }
}

pub fn run(models: &Path, a: TranslateArgs) -> Result<()> {
    let translator = super::load_model(models, &a.model)?;
    let opts = a.options();
    let explain = a.explain_options();
    explain.check()?;
    let chosen = if a.align {
        let Some(c) = attnscope::wire::chosen_alignment(&a.model, &translator) else {
            let cfg = translator.config();
            if super::eval::default_gold(cfg).is_some() {
                anyhow::bail!(
                    "{} has no alignment method yet; run `attnscope align-eval --model {} --save` to choose one",
                    a.model,
                    a.model
                );
            }
            anyhow::bail!(
                "{} has no alignment method: no gold alignments are known for {} to {}, so none could be chosen; run `attnscope align-eval --model {} --gold DIR --save` with a gold set of its languages",
                a.model,
                cfg.source_lang,
                cfg.target_lang,
                a.model
            );
        };
        Some(c)
    } else {
        None
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    // Default options and plain text: decode in batches, the fast path.
    if opts == DecodeOptions::default()
        && a.format == "text"
        && explain.methods.is_empty()
        && chosen.is_none()
    {
        let mut lines = Vec::new();
        let flush = |lines: &mut Vec<String>, out: &mut std::io::StdoutLock| -> Result<()> {
            for t in translator.translate_batch_text(lines, a.batch, a.segmentation())? {
                writeln!(out, "{t}")?;
            }
            out.flush()?;
            lines.clear();
            Ok(())
        };
        for line in stdin.lock().lines() {
            lines.push(line.context("stdin is not valid UTF-8 text")?);
            if lines.len() >= a.batch.max(1) {
                flush(&mut lines, &mut out)?;
            }
        }
        return flush(&mut lines, &mut out);
    }
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.context("stdin is not valid UTF-8 text")?;
        if line.trim().is_empty() {
            writeln!(out)?;
            continue;
        }
        let (t, explained, alignment) = translator
            .text_source(&line, a.segmentation())
            .and_then(|src| {
                let plan = translator.plan(src, opts.clone())?;
                let t = translator.decode(&plan, |_| ControlFlow::Continue(()))?;
                let explained = translator.explain(&plan, &t, &explain)?;
                let alignment = chosen
                    .as_ref()
                    .map(|c| attnscope::wire::word_alignment(&translator, &plan, &t, c))
                    .transpose()?;
                Ok((t, explained, alignment))
            })
            .with_context(|| format!("line {}", n + 1))?;
        if a.format == "json" {
            let doc = attnscope::wire::response(a.model.clone(), t, &explained, alignment)?;
            writeln!(out, "{}", serde_json::to_string(&doc)?)?;
        } else {
            writeln!(out, "{}", t.translation)?;
            write_candidates(&mut out, &t)?;
            for att in &explained {
                write_shares(&mut out, &t, att)?;
            }
            if let Some(al) = &alignment {
                write_links(&mut out, &t, al)?;
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// The word links of an alignment: `source words ↔ target words`, one line.
fn write_links(
    out: &mut impl Write,
    t: &Translation,
    al: &attnscope_protocol::WordAlignment,
) -> Result<()> {
    let word = |pieces: &[String], [a, b]: [usize; 2]| -> String {
        pieces
            .get(a..b)
            .unwrap_or_default()
            .concat()
            .trim_start_matches('▁')
            .replace('▁', " ")
    };
    let links: Vec<String> = al
        .links
        .iter()
        .map(|l| {
            format!(
                "{}–{}",
                word(&t.source_tokens, l.source),
                word(&t.target_tokens, l.target)
            )
        })
        .collect();
    writeln!(
        out,
        "  alignment ({}, AER {:.1} on {}): {}",
        al.method,
        al.aer,
        al.gold,
        links.join("  ")
    )?;
    Ok(())
}

/// Each step's candidates (when asked for): the emitted piece, then the most likely pieces
/// with their probabilities.
fn write_candidates(out: &mut impl Write, t: &Translation) -> Result<()> {
    for step in t.steps.iter().filter(|s| !s.candidates.is_empty()) {
        let candidates: Vec<String> = step
            .candidates
            .iter()
            .map(|c| format!("{} {:.3}", c.token, c.log_prob.exp()))
            .collect();
        writeln!(
            out,
            "  {:>3} {}\t{}",
            step.index + 1,
            step.token,
            candidates.join(", ")
        )?;
    }
    Ok(())
}

/// One attribution as text: its agreement with the attention, then each target token's
/// three largest shares.
fn write_shares(out: &mut impl Write, t: &Translation, att: &Attribution) -> Result<()> {
    let summary = &attnscope::wire::agreement(std::slice::from_ref(att))[0];
    let tau = summary
        .mean_tau
        .map_or_else(|| "undefined".to_string(), |v| format!("{v:.2}"));
    writeln!(
        out,
        "  {}: mean τ with attention {tau}, same top source token at {:.0}% of steps",
        att.method.label(),
        100.0 * summary.argmax_agreement
    )?;
    for (target, row) in t.target_tokens.iter().zip(&att.raw) {
        let shares = normalise(row);
        let mut order: Vec<usize> = (0..shares.len()).collect();
        order.sort_by(|&i, &j| shares[j].total_cmp(&shares[i]));
        let top: Vec<String> = order
            .iter()
            .take(3)
            .map(|&i| format!("{} {:.2}", t.source_tokens[i], shares[i]))
            .collect();
        writeln!(out, "    {target}\t{}", top.join(", "))?;
    }
    Ok(())
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// BLEU and chrF of `hyp` against `reference`, printed as one line.
pub fn score(hyp: &Path, reference: &Path) -> Result<()> {
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
    let bleu = attnscope_model::evaluation::metrics::corpus_bleu(&h, &r);
    let chrf = attnscope_model::evaluation::metrics::corpus_chrf(&h, &r);
    println!("BLEU {bleu:.2}\tchrF {chrf:.2}\t{} sentences", h.len());
    Ok(())
}
