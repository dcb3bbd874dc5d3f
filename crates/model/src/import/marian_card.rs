//! The model card of an imported Marian model: what it is, where it came from, its license
//! line as the folder states it, its shape, and what the import changed.

use std::path::Path;

use crate::config::{Activation, ModelConfig};

/// The license line of the folder: `license:` in its README's front matter, else the first
/// line of a LICENSE file.
fn license(src: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(src.join("README.md")) {
        let front = text.strip_prefix("---")?.split("\n---").next()?.to_string();
        if let Some(line) = front
            .lines()
            .find_map(|l| l.trim().strip_prefix("license:"))
        {
            return Some(line.trim().trim_matches('"').to_string());
        }
    }
    for name in ["LICENSE", "LICENSE.txt", "LICENSE.md"] {
        if let Ok(text) = std::fs::read_to_string(src.join(name))
            && let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty())
        {
            return Some(first.to_string());
        }
    }
    None
}

/// What the card says of the checkpoint.
pub(crate) struct CardFacts {
    /// Where it came from: its `_name_or_path`, or the folder.
    pub origin: String,
    pub layers: usize,
    pub heads: usize,
    pub d_model: usize,
    pub ff_dim: usize,
    pub activation: Activation,
    pub parameters: usize,
}

/// The model card (`README.md`) of a model imported from `src` as `name`.
pub(crate) fn card(src: &Path, hf: &CardFacts, config: &ModelConfig, name: &str) -> String {
    let (source_lang, target_lang) = (&config.source_lang, &config.target_lang);
    let origin = &hf.origin;
    let parameters = hf.parameters;
    let license = license(src).unwrap_or_else(|| {
        "not stated in the folder; see the model's page where it was downloaded".into()
    });
    let act = match hf.activation {
        Activation::Relu => "ReLU",
        Activation::Gelu => "GELU",
        Activation::Swish => "swish",
    };
    format!(
        "# {name}: {source_lang} → {target_lang}, imported Marian Transformer\n\n\
         Imported by `attnscope import-hf` from `{origin}` (a Hugging Face `MarianMTModel` folder). \
         attnscope did not train it: its translations and attention are that model's. \
         Each decoding step returns the attention of every layer and head, which attnscope streams to the browser.\n\n\
         **License (from the folder):** {license}\n\n\
         ## Architecture\n\n\
         Marian encoder-decoder Transformer, post-norm: {layers} encoder and {layers} decoder layers, \
         {heads} heads, width {d}, feed-forward {ff} with {act}, sinusoidal positions, embeddings scaled by √{d} \
         and shared by the encoder, the decoder and the output layer; {parameters} parameters \
         (the shared embedding counted once), a vocabulary of {v} SentencePiece pieces.\n\n\
         ## What the import changed\n\n\
         - The vocabulary is reordered so that attnscope's special ids hold (`<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3); \
         `<s>` is a copy of Marian's decoder start token (its `<pad>`). The pieces are the model's own: \
         `source.spm` and `target.spm` segment the text, `vocab.json` numbers the pieces.\n\
         - `<s>` and the tokens `bad_words_ids` bans are never emitted (their output bias is -1e9), as `generate` never emits them; \
         so a step's probabilities leave out the little mass the model gives them.\n\
         - Greedy decoding by default (the checkpoint's `generation_config.json` may ask for a beam; choose one on the page).\n\n\
         ## Reproduce\n\n\
         ```sh\nattnscope import-hf {src} --name {name}\n```\n",
        layers = hf.layers,
        heads = hf.heads,
        d = hf.d_model,
        ff = hf.ff_dim,
        v = config.tgt_vocab_size,
        src = src.display(),
    )
}
