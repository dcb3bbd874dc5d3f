//! The model card (`models/<name>/README.md`) written at the end of training.

use crate::config::{ModelConfig, TrainingSummary};
use crate::train::TrainOptions;

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

pub fn model_card(
    opts: &TrainOptions,
    cfg: &ModelConfig,
    s: &TrainingSummary,
    parameters: usize,
) -> String {
    let score = |v: Option<f64>| {
        v.map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "not measured".into())
    };
    format!(
        "# {name}: {src} → {tgt}, GRU encoder-decoder with additive (Bahdanau) attention\n\n\
A bidirectional GRU encoder and a GRU decoder with additive attention \
(`v · tanh(W_k h_j + W_q s_{{t-1}})`), trained from scratch by `attnscope train` on this \
project's machine. Each decoding step returns the attention weights it used, which attnscope \
streams to the browser.\n\n\
## Architecture\n\n\
| | |\n|---|---|\n\
| parameters | {params} |\n| embeddings | {e} |\n| encoder | bidirectional GRU, {h} per direction |\n\
| decoder | GRU {h}, additive attention {a}, readout {r} |\n\
| vocabularies | BPE, {sv} ({src}) and {tv} ({tgt}) pieces, Hugging Face `tokenizers` |\n\n\
## Data\n\n\
`{data}`: {src}–{tgt} sentence pairs from the **Tatoeba Project** (tatoeba.org) and its \
contributors, as compiled by **www.manythings.org/anki**, licensed **CC BY 2.0 FR** \
(creativecommons.org/licenses/by/2.0). Split by English sentence with seed {seed}, so no test \
sentence was seen in training: {train} training pairs (at most {maxlen} pieces a side), \
{dev} dev pairs, {test} test sentences.\n\n\
## Training\n\n\
{steps} steps of {batch} sentence pairs ({epochs:.2} epochs), AdamW (lr {lr}, warm-up {warm} \
steps, linear decay to a tenth), gradient norm clipped at 1, on {hw} in {time}. Final \
training loss {tl:.3}, dev loss {dl:.3} (cross-entropy per target piece).\n\n\
## Scores on the test split\n\n\
| metric | value |\n|---|---|\n| BLEU | {bleu} |\n| chrF | {chrf} |\n\n\
Greedy decoding; sacrebleu-compatible BLEU (13a tokens) and chrF (character 6-grams, β = 2), \
one reference per sentence (the first translation the data gives). The test files are \
written to `runs/{name}/test.{{src,ref,hyp}}`.\n\n\
## Reproduce\n\n\
```sh\ncargo run --release -p attnscope -- train --name {name} --data {data_path} \
--source-lang {src} --target-lang {tgt} --epochs {epochs_opt} --seed {seed}\n```\n\n\
An interrupted run continues with the same command plus `--resume`.\n",
        name = opts.name,
        src = cfg.source_lang,
        tgt = cfg.target_lang,
        params = thousands(parameters),
        e = cfg.embed_dim,
        h = cfg.hidden_dim,
        a = cfg.attention_dim,
        r = cfg.readout_dim,
        sv = cfg.src_vocab_size,
        tv = cfg.tgt_vocab_size,
        data = s.data,
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
        bleu = score(s.bleu),
        chrf = score(s.chrf),
        data_path = opts.data.display(),
        epochs_opt = opts.epochs,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(8_320_320), "8,320,320");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
    }
}
