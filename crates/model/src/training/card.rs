//! The model card (`models/<name>/README.md`) written at the end of training.

use crate::config::{Architecture, AttentionTraining, ModelConfig, Scorer};
use crate::training::options::TrainOptions;

fn fmt_duration(secs: f64) -> String {
    let m = (secs / 60.0).round() as u64;
    if m >= 60 {
        format!("{} h {:02} min", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

/// `8320320` as `8,320,320`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the architecture is, in one title line and one table, for the card.
fn architecture(cfg: &ModelConfig) -> (String, String) {
    let row = |k: &str, v: String| format!("| {k} | {v} |\n");
    let smoothing = if cfg.label_smoothing > 0.0 {
        row(
            "label smoothing",
            format!("{} (training loss)", cfg.label_smoothing),
        )
    } else {
        String::new()
    };
    let gru = match &cfg.architecture {
        Architecture::Transformer(t) => {
            let title = format!(
                "Transformer encoder-decoder ({}+{} layers, {} heads, d = {})",
                t.layers, t.layers, t.heads, cfg.embed_dim
            );
            let table = row("encoder", format!("{} pre-norm layers: self-attention ({} heads) and feed-forward {}", t.layers, t.heads, t.ff_dim))
                + &row("decoder", format!("{} pre-norm layers: masked self-attention, cross-attention ({} heads each), feed-forward {}", t.layers, t.heads, t.ff_dim))
                + &row("attention", "scaled dot product `softmax(q·k / sqrt(d_head))`, padding and causal masks, key/value cache when decoding".into())
                + &row("positions", "sinusoidal, added to embeddings scaled by sqrt(d)".into())
                + &row("dropout", format!("{}", cfg.dropout))
                + &smoothing;
            return (title, table);
        }
        Architecture::Gru(g) => g,
    };
    let scorer = match gru.scorer {
        Scorer::General => "multiplicative (Luong \"general\") attention `s_{t-1} · W_a h_j`",
        Scorer::Dot => "multiplicative (Luong \"dot\") attention `s_{t-1} · (h_fwd_j + h_bwd_j)`",
        Scorer::Additive => "additive (Bahdanau) attention `v · tanh(W_k h_j + W_q s_{t-1})`",
    };
    let hard = gru.attention_training == AttentionTraining::Hard;
    let title = format!(
        "GRU encoder-decoder with {}{}",
        scorer.split(" `").next().unwrap_or(scorer),
        if hard {
            ", trained with hard attention"
        } else {
            ""
        }
    );
    let table = row(
        "encoder",
        format!("bidirectional GRU, {} per direction", cfg.hidden_dim),
    ) + &row(
        "decoder",
        format!("GRU {}, readout {}", cfg.hidden_dim, cfg.readout_dim),
    ) + &row("attention", scorer.to_string())
        + &row(
            "attention in training",
            if hard {
                "hard: one source position per step, straight-through Gumbel-softmax (forward: one-hot of argmax(scores + Gumbel noise); backward: gradient of softmax(scores + noise), τ = 1); decodes with hard (argmax) attention by default".into()
            } else {
                "soft (softmax)".into()
            },
        )
        + &smoothing;
    (title, table)
}

/// The sentence on checkpoint averaging, when the weights are an average.
fn averaged(s: &crate::report::TrainingSummary) -> String {
    let Some(before) = s
        .dev_loss_before_averaging
        .filter(|_| !s.averaged_steps.is_empty())
    else {
        return String::new();
    };
    let steps: Vec<String> = s.averaged_steps.iter().map(|x| x.to_string()).collect();
    format!(
        " The weights are the mean of the last {} checkpoints' (steps {}; `--average-last`): the \
final weights had dev loss {before:.3}, their mean {:.3}.",
        steps.len(),
        steps.join(", "),
        s.dev_loss
    )
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// Images beside the card, by file name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures<'a> {
    /// The loss curve.
    pub loss: Option<&'a str>,
    /// BLEU by source length.
    pub lengths: Option<&'a str>,
}

/// What the training data adds to the Tatoeba pairs: a second domain and joined pairs.
fn extra_data(opts: &TrainOptions) -> String {
    let mut out = String::new();
    // A file given n times is read n times (oversampled); say so once.
    let mut files: Vec<(String, usize)> = Vec::new();
    for p in &opts.extra_data {
        let file = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match files.iter_mut().find(|(f, _)| *f == file) {
            Some((_, n)) => *n += 1,
            None => files.push((file, 1)),
        }
    }
    for (file, n) in files {
        let times = match n {
            1 => String::new(),
            2 => " (given twice, so each of its pairs is seen twice as often)".to_string(),
            n => format!(" (given {n} times, so each of its pairs is seen {n} times as often)"),
        };
        if file.starts_with("multi30k") {
            out += &format!(
                "Added to training: `{file}`{times}, the **Multi30k** image descriptions (Elliott \
et al. 2016, *Multi30K: Multilingual English-German Image Descriptions*; Elliott et al. 2017 for \
French), a second, descriptive domain with sentences about twice as long. Multi30k is provided \
**for non-commercial research and educational purposes only**, and so is this model.\n\n"
            );
        } else {
            out += &format!("Added to training: `{file}`{times}.\n\n");
        }
    }
    if opts.joined > 0.0 {
        out += &format!(
            "Also added: multi-sentence pairs, {:.0} % as many as the training pairs, each 2 to 4 \
random training pairs joined by a space on both sides (seeded), so that the model sees inputs \
longer than one sentence.\n\n",
            100.0 * opts.joined
        );
    }
    out
}

/// The section on long inputs, pasted sentences and another domain.
fn robustness_section(rows: &[crate::report::SetScore], lengths: Option<&str>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = "## Long inputs and another domain\n\n\
Greedy decoding with the model's own attention. BLEU against every reference the data gives \
for a sentence (Tatoeba often has several), chrF against the first. *Pasted*: 500 inputs of 3 or \
4 test sentences joined by a space, decoded sentence by sentence as the app does by default \
(segmented), or as one sequence. Multi30k test2016 is the standard test set of the WMT \
multimodal task (image descriptions, one reference; scored cased and detokenised, so not \
directly comparable with the lowercased, tokenised scores of that task's papers).\n\n\
| set | slice | segmented | sentences | BLEU | chrF |\n|---|---|---|---|---|---|\n"
        .to_string();
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |\n",
            r.set,
            r.slice,
            if r.segmented { "yes" } else { "no" },
            r.sentences,
            r.bleu,
            r.chrf
        );
    }
    out += "\n";
    if let Some(img) = lengths {
        out += &format!(
            "![BLEU by source length]({img})\n\n(Buckets with fewer than 20 sentences are left out of the chart.)\n\n"
        );
    }
    out
}

/// The model card (`models/<name>/README.md`) from the options the model was trained with and
/// its `config.json` (training summary and, once `attnscope eval` ran, attention analysis).
/// `loss_plot` names the loss-curve image beside the card, if there is one.
pub fn model_card(
    opts: &TrainOptions,
    cfg: &ModelConfig,
    parameters: usize,
    figures: Figures,
) -> String {
    let loss_plot = figures.loss;
    let s = cfg.training.clone().unwrap_or_default();
    let score = |v: Option<f64>| {
        v.map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "not measured".into())
    };
    let (title, arch) = architecture(cfg);
    let name = &opts.name;
    let (src, tgt) = (&cfg.source_lang, &cfg.target_lang);
    let origin = match (&opts.init_from, &s.transferred_from) {
        (Some(dir), Some(pair)) => format!(
            "Trained by `attnscope train --init-from {}` on this project's machine, by transfer \
from that {pair} model (itself trained here; its card is in this repository): training started \
from its source tokenizer, encoder and decoder layers, with a new {tgt} tokenizer, target \
embedding and output layer, and the training below is the transfer's.",
            dir.display()
        ),
        (Some(dir), None) => format!(
            "Fine-tuned by `attnscope train --init-from {}` on this project's machine: training \
started from that model's weights and tokenizers (itself trained here, from scratch or by an \
earlier fine-tune; its card, which says how, is in this repository's history), and the training below is the fine-tune's.",
            dir.display()
        ),
        (None, _) => "Trained from scratch by `attnscope train` on this project's machine.".into(),
    };
    let mut out = format!(
        "# {name}: {src} → {tgt}, {title}\n\n\
{origin} Each decoding step returns \
the attention weights it used, which attnscope streams to the browser.\n\n\
## Architecture\n\n\
| | |\n|---|---|\n\
| parameters | {params} |\n| embeddings | {e} |\n{arch}\
| vocabularies | BPE, {sv} ({src}) and {tv} ({tgt}) pieces, Hugging Face `tokenizers` |\n\n\
## Data\n\n\
`{data}`: {src}–{tgt} sentence pairs from the **Tatoeba Project** (tatoeba.org) and its \
contributors, as compiled by **www.manythings.org/anki**, licensed **CC BY 2.0 FR** \
(creativecommons.org/licenses/by/2.0). Split by English sentence with seed {seed}, so no test \
sentence was seen in training: {train} training pairs{all} (at most {maxlen} pieces a side), \
{dev} dev pairs, {test} test sentences.\n\n\
{extra}\
## Training\n\n\
{steps} steps of {batch} sentence pairs ({epochs:.2} epochs), AdamW (lr {lr}, warm-up {warm} \
steps, linear decay to a tenth), gradient norm clipped at 1, on {hw} in {time}. Final \
training loss {tl:.3}, dev loss {dl:.3} (cross-entropy per target piece).{avg}\n\n",
        params = thousands(parameters),
        e = cfg.embed_dim,
        sv = cfg.src_vocab_size,
        tv = cfg.tgt_vocab_size,
        data = s.data,
        extra = extra_data(opts),
        all = if opts.extra_data.is_empty() && opts.joined == 0.0 {
            ""
        } else {
            " in all, with the additions below"
        },
        seed = s.seed,
        train = s.train_pairs,
        maxlen = cfg.max_len,
        dev = s.dev_pairs,
        test = s.test_sentences,
        steps = s.steps,
        batch = s.batch_size,
        epochs = s.epochs,
        lr = opts.lr,
        warm = opts.warmup_steps,
        hw = s.hardware,
        time = fmt_duration(s.training_seconds),
        tl = s.final_train_loss,
        dl = s.dev_loss,
        avg = averaged(&s),
    );
    if let Some(img) = loss_plot {
        out += &format!(
            "![Training and dev loss per checkpoint]({img})\n\n\
The curve comes from `training-log.jsonl` (one line per checkpoint).\n\n"
        );
    }
    out += &format!(
        "## Scores on the test split\n\n\
| metric | value |\n|---|---|\n| BLEU | {bleu} |\n| chrF | {chrf} |\n\n\
Greedy decoding with the model's own attention; sacrebleu-compatible BLEU (13a tokens) and \
chrF (character 6-grams, β = 2), one reference per sentence (the first translation the data \
gives). `attnscope eval` writes the test files to `runs/{name}/test.{{src,ref,hyp}}`, and \
`scripts/check-sacrebleu.sh` checks both scores against the `sacrebleu` package.\n\n",
        bleu = score(s.bleu),
        chrf = score(s.chrf),
    );
    if let Some(ev) = &cfg.evaluation {
        out += &format!(
            "## Attention\n\n\
Over the greedy translations of {n} test sentences: mean entropy of the attention row per \
step **{h:.3} nats**, mean largest weight **{m:.3}**.\n\n",
            n = ev.sentences,
            h = ev.mean_entropy,
            m = ev.mean_max_weight,
        );
        if let Some(first) = ev.alignment.first() {
            let (language, set, points, text) = if first.gold == "rwth-europarl" {
                (
                    "German",
                    "the RWTH German-English Europarl gold set (the 458 pairs after the first 50, sure and possible links, read as English to German)",
                    "fast_align 27.0 AER on all 508 pairs (grow-diag, lilt/alignment-scripts)",
                    "parliamentary text",
                )
            } else {
                (
                    "French",
                    "the HLT-NAACL 2003 Hansards test set (447 sentences, sure and possible links, no NULL links)",
                    "fast_align 10.5 and GIZA++ 5.9 AER (grow-diag, lilt/alignment-scripts)",
                    "lowercased parliamentary text",
                )
            };
            let trial = ev
                .alignment_trial
                .as_deref()
                .unwrap_or("the test sentences themselves");
            out += &format!(
                "### Word alignment from attention\n\n\
Forced decoding of the gold {language} sentence given the English one, both written as ordinary \
text (the gold set's lowercasing and undone French elisions redone, `de le` → `du`, and the \
links mapped back to the gold words), subword pieces merged to words (sum over a source word's \
pieces, mean over a target word's). Every way of reading links is tried: the attention of each \
layer and head and their means, plain and norm-weighted (Kobayashi et al. 2020), at the step \
that emits a word and at the next one (shifted); links per target word (t2s), per source word \
(s2t) and merged (intersection, union, grow-diag, grow-diag-final), read by argmax, by weight \
≥ τ or by argmax with a distortion prior (SimAlign); final punctuation paired or not. The method \
is chosen on {trial} and scored on {set}. The table shows the best method of each family; the \
explorer draws the chosen one (**bold**). Lower AER is better; reference points: {points}, and \
eflomal trained here on the Tatoeba pairs plus the gold sentences (docs/BENCHMARKS.md). Note \
the domain shift: Tatoeba sentences in training, {text} here. `attnscope align-eval --model \
NAME` lists every method.\n\n\
| method | trial AER | test AER | precision | recall |\n|---|---|---|---|---|\n"
            );
            for a in &ev.alignment {
                let chosen = !a.spec.is_empty() && ev.alignment_method.as_deref() == Some(&a.spec);
                let method = if chosen {
                    format!("**{}**", a.method)
                } else {
                    a.method.clone()
                };
                out += &format!(
                    "| {method} | {} | {} | {} | {} |\n",
                    a.trial_aer.map_or("–".to_string(), pct),
                    pct(a.aer),
                    pct(a.precision),
                    pct(a.recall)
                );
            }
            out += "\n";
        }
        out += &robustness_section(&ev.scores, figures.lengths);
        if let Some(f) = &ev.faithfulness {
            out += &faithfulness_section(f);
        }
    }
    let flags = train_flags(opts);
    out += &format!(
        "## Reproduce\n\n\
```sh\n\
cargo run --release -p attnscope -- train --name {name}{flags}\n\
cargo run --release -p attnscope -- eval --model {name}          # BLEU, chrF, entropy, AER, this card\n\
cargo run --release -p attnscope -- align-eval --model {name}    # the alignment table alone\n\
scripts/check-sacrebleu.sh --hyp runs/{name}/test.hyp --ref runs/{name}/test.ref\n\
```\n\n\
An interrupted run continues with `train --name {name} --resume` from its last checkpoint \
and makes the same updates as an uninterrupted run.\n"
    );
    out
}

/// Does the attention explain the output? Agreement with attributions, and what replacing it
/// changes ([`crate::evaluation::faithfulness`]).
fn faithfulness_section(f: &crate::report::Faithfulness) -> String {
    let label = |name: &str| {
        name.parse::<crate::Method>()
            .map(|m| m.label().to_string())
            .unwrap_or_else(|_| name.to_string())
    };
    let mut out = format!(
        "## Faithfulness: does the attention explain the output?

Over the greedy translations of {n} test sentences ({steps} steps), each step's attention row against each attribution below of the same emitted token's log-probability to the source tokens (integrated gradients with {ig} Gauss–Legendre points from a zero baseline): Kendall's τ-b between the two rows, and how often both put their largest weight on the same token.

| attribution | mean τ with attention | same top token |
|---|---|---|
",
        n = f.sentences,
        steps = f.steps,
        ig = f.ig_steps,
    );
    for a in &f.agreement {
        out += &format!(
            "| {} | {:.2} | {} % |
",
            label(&a.method),
            a.mean_tau,
            pct(a.argmax_agreement)
        );
    }
    out += "
The same sentences decoded again with every step's attention replaced (every layer and head of a Transformer), as Jain & Wallace (2019) test it: tokens and sentences of the output that change (tokens: the positions of the longer of the two outputs outside their longest common subsequence), and the drop in the original translation's log-probability per token when it is forced under the replaced attention. Attention that matters changes the output.

| attention replaced by | tokens changed | sentences changed | log-prob drop per token |
|---|---|---|---|
";
    for c in &f.counterfactuals {
        let what = match c.attention.as_str() {
            "uniform" => "uniform weights",
            "shuffled" => "its own weights, shuffled",
            "hard" => "a one-hot at its argmax",
            other => other,
        };
        out += &format!(
            "| {what} | {} % | {} % | {:.3} nats |
",
            pct(c.tokens_changed),
            pct(c.sentences_changed),
            c.log_prob_drop
        );
    }
    out += "
Reproduce with `attnscope faithfulness --model NAME`; the page shows each row's τ beside its entropy when the heatmap shows an attribution.

";
    out
}

/// The `train` flags that reproduce `opts` (those that differ from the defaults).
fn train_flags(o: &TrainOptions) -> String {
    let mut f = format!(
        " --data {} --source-lang {} --target-lang {} --epochs {} --seed {}",
        o.data.display(),
        o.source_lang,
        o.target_lang,
        o.epochs,
        o.seed
    );
    match &o.architecture {
        Architecture::Transformer(t) => {
            f += &format!(
                " --architecture transformer --layers {} --heads {} --ff-dim {} --dropout {}",
                t.layers, t.heads, t.ff_dim, o.dropout
            );
        }
        Architecture::Gru(g) => {
            if g.scorer != Scorer::Additive {
                f += &format!(" --attention {}", g.scorer);
            }
            if g.attention_training != AttentionTraining::Soft {
                f += &format!(" --attention-training {}", g.attention_training);
            }
            if o.dropout > 0.0 {
                f += &format!(" --dropout {}", o.dropout);
            }
        }
    }
    for p in &o.extra_data {
        f += &format!(" --extra-data {}", p.display());
    }
    if o.joined > 0.0 {
        f += &format!(" --joined {}", o.joined);
    }
    if o.average_last > 1 {
        f += &format!(" --average-last {}", o.average_last);
    }
    if o.label_smoothing > 0.0 {
        f += &format!(" --label-smoothing {}", o.label_smoothing);
    }
    if let Some(dir) = &o.init_from {
        f += &format!(" --init-from {}", dir.display());
    }
    if o.max_len != 48 {
        f += &format!(" --max-len {}", o.max_len);
    }
    f += &format!(" --lr {} --warmup {}", o.lr, o.warmup_steps);
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(8_320_320), "8,320,320");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
    }

    #[test]
    fn a_file_given_twice_is_named_once_and_said_to_be_oversampled() {
        let mut opts = super::TrainOptions::new(
            crate::fixtures::tiny_architecture("additive").unwrap(),
            "m",
            "tatoeba.tsv".into(),
            "en",
            "fr",
        );
        let m30k = std::path::PathBuf::from("data/multi30k-eng-fra.train.tsv");
        opts.extra_data = vec![m30k.clone(), m30k, "more.tsv".into()];
        let text = super::extra_data(&opts);
        assert_eq!(text.matches("Added to training").count(), 2, "{text}");
        assert!(
            text.contains("`multi30k-eng-fra.train.tsv` (given twice"),
            "{text}"
        );
        assert!(text.contains("Added to training: `more.tsv`.\n"), "{text}");
        assert!(text.contains("non-commercial research"));
    }
}
