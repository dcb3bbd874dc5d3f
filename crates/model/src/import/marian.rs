//! Hugging Face Marian (`MarianMTModel`, the Helsinki-NLP opus-mt family) as an attnscope
//! model folder.
//!
//! A Marian checkpoint is a post-norm encoder-decoder Transformer with sinusoidal positions
//! in halves, scaled embeddings shared by the encoder, the decoder and the output layer,
//! and a `final_logits_bias`; its text goes through two SentencePiece models whose pieces
//! are numbered by a joint `vocab.json`. [`import`] checks the folder against what this
//! build can run (a clear error names anything else), and writes a model folder that
//! [`crate::Translator::load`] opens like one trained here:
//!
//! - `config.json`: a Transformer with [`TransformerLayout::Marian`] and the checkpoint's
//!   activation and sizes, and how `generate` ends a translation by default (its
//!   `max_new_tokens` or `max_length`, 20 new tokens when neither file sets one, and
//!   `forced_eos_token_id`), which
//!   decoding then follows when a request sets no length;
//! - `model.safetensors`: the weights under attnscope's names. The vocabulary is reordered so
//!   that attnscope's special ids hold (`<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3, then every
//!   other piece in `vocab.json` order): `<s>` is a copy of the row of Marian's decoder start
//!   token (its `<pad>`), and the output bias of `<s>` and of every single-token
//!   `bad_words_ids` entry (Marian's `<pad>`) is -1e9, so they are never emitted, as
//!   `generate` never emits them;
//! - `tokenizer.source.json`, `tokenizer.target.json`: each side's SentencePiece model as a
//!   unigram tokenizer, with the reordered vocabulary as its piece table;
//! - `README.md`: a card saying what the model is, where it came from and its license line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::{
    Activation, Architecture, Generation, ModelConfig, TransformerConfig, TransformerLayout,
};
use crate::decoding::translator::{CONFIG_FILE, WEIGHTS_FILE};
use crate::import::marian_card::{CardFacts, card};
use crate::vocab::spm::SpmModel;
use crate::vocab::{SPECIALS, Vocab};
use crate::{Error, Result};

/// The output bias that keeps a token from ever being chosen.
const BANNED: f32 = -1e9;
/// Tokenizer file names of an imported model.
pub const SOURCE_TOKENIZER: &str = "tokenizer.source.json";
pub const TARGET_TOKENIZER: &str = "tokenizer.target.json";

/// What to call the imported model and, when the folder does not say, its languages.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The model folder's name under the models folder.
    pub name: String,
    pub source_lang: Option<String>,
    pub target_lang: Option<String>,
}

/// An imported model.
#[derive(Clone, Debug)]
pub struct Imported {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub parameters: usize,
    /// Pieces in the vocabulary (after adding `<s>`).
    pub vocab: usize,
}

/// The checkpoint's `config.json`, as far as this importer reads it.
struct HfConfig {
    d_model: usize,
    layers: usize,
    heads: usize,
    ff_dim: usize,
    activation: Activation,
    vocab_size: usize,
    pad: usize,
    eos: usize,
    decoder_start: usize,
    max_positions: usize,
    bad_words: Vec<usize>,
    /// How `generate` ends a translation, by default.
    generation: Generation,
    name_or_path: Option<String>,
}

/// The tokens `generate` makes when neither file sets a length.
const HF_DEFAULT_NEW_TOKENS: usize = 20;

fn bad(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {what}", dir.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    crate::files::read_json(path)
}

fn usize_field(cfg: &Value, key: &str) -> Option<usize> {
    cfg.get(key).and_then(Value::as_u64).map(|v| v as usize)
}

impl HfConfig {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(bad(
                dir,
                "no config.json; give the folder a Hugging Face model was saved to (save_pretrained, or a download of the model's files)",
            ));
        }
        let cfg = read_json(&path)?;
        let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
        if model_type != "marian" {
            return Err(bad(
                dir,
                format!(
                    "config.json says model_type {model_type:?}; attnscope imports Marian translation models (model_type \"marian\", e.g. Helsinki-NLP/opus-mt-*)"
                ),
            ));
        }
        let need = |key: &str| {
            usize_field(&cfg, key).ok_or_else(|| {
                bad(
                    dir,
                    format!("config.json lacks {key}, which a Marian config has"),
                )
            })
        };
        let d_model = need("d_model")?;
        let layers = need("encoder_layers")?;
        let heads = need("encoder_attention_heads")?;
        let ff_dim = need("encoder_ffn_dim")?;
        for (key, want) in [
            ("decoder_layers", layers),
            ("decoder_attention_heads", heads),
            ("decoder_ffn_dim", ff_dim),
        ] {
            if let Some(got) = usize_field(&cfg, key)
                && got != want
            {
                return Err(bad(
                    dir,
                    format!(
                        "{key} is {got} but the encoder's is {want}; attnscope's Transformer has the same shape on both sides"
                    ),
                ));
            }
        }
        if cfg.get("normalize_before").and_then(Value::as_bool) == Some(true) {
            return Err(bad(
                dir,
                "normalize_before is true (a pre-norm Marian); only post-norm Marian models (every opus-mt model) are supported",
            ));
        }
        if cfg.get("scale_embedding").and_then(Value::as_bool) == Some(false) {
            return Err(bad(
                dir,
                "scale_embedding is false; only Marian models that scale their embeddings (every opus-mt model) are supported",
            ));
        }
        if cfg
            .get("share_encoder_decoder_embeddings")
            .and_then(Value::as_bool)
            == Some(false)
        {
            return Err(bad(
                dir,
                "share_encoder_decoder_embeddings is false: this model has separate source and target vocabularies, which the importer does not support yet; models with one shared vocabulary (most opus-mt models) import",
            ));
        }
        let vocab_size = need("vocab_size")?;
        if let Some(dv) = usize_field(&cfg, "decoder_vocab_size")
            && dv != vocab_size
        {
            return Err(bad(
                dir,
                format!(
                    "decoder_vocab_size {dv} differs from vocab_size {vocab_size}: separate vocabularies are not supported yet"
                ),
            ));
        }
        let act = cfg
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        let activation = match act {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "swish" | "silu" => Activation::Swish,
            other => {
                return Err(bad(
                    dir,
                    format!(
                        "activation_function {other:?} is not supported; relu, gelu and swish are"
                    ),
                ));
            }
        };
        let pad = need("pad_token_id")?;
        let eos = need("eos_token_id")?;
        let decoder_start = usize_field(&cfg, "decoder_start_token_id").unwrap_or(pad);
        let generation = dir.join("generation_config.json");
        let generation = if generation.is_file() {
            Some(read_json(&generation)?)
        } else {
            None
        };
        let bad_words = generation
            .as_ref()
            .and_then(|g| g.get("bad_words_ids"))
            .or_else(|| cfg.get("bad_words_ids"))
            .and_then(Value::as_array)
            .map(|lists| {
                lists
                    .iter()
                    .filter_map(Value::as_array)
                    .filter(|l| l.len() == 1)
                    .filter_map(|l| l[0].as_u64().map(|v| v as usize))
                    .collect()
            })
            .unwrap_or_default();
        // A generation setting: generation_config.json's, else config.json's.
        let setting = |key: &str| {
            generation
                .as_ref()
                .and_then(|g| g.get(key))
                .filter(|v| !v.is_null())
                .or_else(|| cfg.get(key).filter(|v| !v.is_null()))
                .and_then(Value::as_u64)
                .map(|v| v as usize)
        };
        // `max_length` counts the decoder start; without either, `generate` makes 20 new
        // tokens.
        let max_new_tokens = setting("max_new_tokens")
            .or_else(|| setting("max_length").map(|l| l.saturating_sub(1)))
            .unwrap_or(HF_DEFAULT_NEW_TOKENS);
        let generation = Generation {
            max_new_tokens: max_new_tokens.max(1),
            forced_eos: setting("forced_eos_token_id") == Some(eos),
        };
        Ok(HfConfig {
            generation,
            d_model,
            layers,
            heads,
            ff_dim,
            activation,
            vocab_size,
            pad,
            eos,
            decoder_start,
            max_positions: usize_field(&cfg, "max_position_embeddings").unwrap_or(512),
            bad_words,
            name_or_path: cfg
                .get("_name_or_path")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }
}

/// The checkpoint's tensors by name, without a leading `model.`.
fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let safetensors = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    let tensors: Vec<(String, Tensor)> = if safetensors.is_file() {
        candle_core::safetensors::load(&safetensors, &Device::Cpu)
            .map_err(|e| Error::bad_file(&safetensors, e))?
            .into_iter()
            .collect()
    } else if bin.is_file() {
        candle_core::pickle::read_all(&bin).map_err(|e| Error::bad_file(&bin, e))?
    } else {
        return Err(bad(
            dir,
            "no weights: the folder needs model.safetensors or pytorch_model.bin (sharded checkpoints are not supported)",
        ));
    };
    tensors
        .into_iter()
        .map(|(name, t)| {
            let name = name.strip_prefix("model.").unwrap_or(&name).to_string();
            Ok((name, t.to_dtype(DType::F32)?))
        })
        .collect()
}

/// `vocab.json` as pieces in id order (ids it skips become `<unused-N>`), and the id of
/// `<unk>`.
fn read_vocab(dir: &Path, size: usize) -> Result<(Vec<String>, usize)> {
    let path = dir.join("vocab.json");
    if !path.is_file() {
        return Err(bad(
            dir,
            "no vocab.json: a Marian folder numbers its SentencePiece pieces with it",
        ));
    }
    let map: HashMap<String, u64> =
        serde_json::from_value(read_json(&path)?).map_err(|e| Error::bad_file(&path, e))?;
    let mut pieces: Vec<Option<String>> = vec![None; size];
    for (piece, id) in map {
        let id = id as usize;
        if id >= size {
            return Err(Error::bad_file(
                &path,
                format!("id {id} of {piece:?} is past the model's vocabulary of {size}"),
            ));
        }
        pieces[id] = Some(piece);
    }
    let pieces: Vec<String> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.unwrap_or_else(|| format!("<unused-{i}>")))
        .collect();
    let unk = pieces
        .iter()
        .position(|p| p == "<unk>")
        .ok_or_else(|| Error::bad_file(&path, "it has no <unk>"))?;
    Ok((pieces, unk))
}

/// The languages: the options', else `tokenizer_config.json`'s, else an `opus-mt-xx-yy` name.
fn languages(dir: &Path, hf: &HfConfig, opts: &ImportOptions) -> Result<(String, String)> {
    let tc = dir.join("tokenizer_config.json");
    let tc = if tc.is_file() {
        Some(read_json(&tc)?)
    } else {
        None
    };
    if let Some(tc) = &tc
        && tc.get("separate_vocabs").and_then(Value::as_bool) == Some(true)
    {
        return Err(bad(
            dir,
            "tokenizer_config.json says separate_vocabs: separate source and target vocabularies are not supported yet",
        ));
    }
    let from_tc = |key: &str| {
        tc.as_ref()
            .and_then(|t| t.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = hf.name_or_path.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let from_name = name
        .rsplit_once("opus-mt-")
        .and_then(|(_, pair)| pair.split_once('-'))
        .map(|(s, t)| (s.to_string(), t.to_string()));
    let src = opts
        .source_lang
        .clone()
        .or_else(|| from_tc("source_lang"))
        .or_else(|| from_name.as_ref().map(|p| p.0.clone()));
    let tgt = opts
        .target_lang
        .clone()
        .or_else(|| from_tc("target_lang"))
        .or_else(|| from_name.as_ref().map(|p| p.1.clone()));
    match (src, tgt) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(bad(
            dir,
            "the languages are not in tokenizer_config.json nor in the folder's name; give --source-lang and --target-lang",
        )),
    }
}

/// Rows `perm` of a `(V, D)` matrix (or of a `(V,)` vector).
fn rows(t: &Tensor, perm: &Tensor) -> Result<Tensor> {
    Ok(t.index_select(perm, 0)?)
}

/// Imports the Marian folder `src` into `models_dir/<name>`; see the module documentation.
pub fn import(src: &Path, models_dir: &Path, opts: &ImportOptions) -> Result<Imported> {
    let hf = HfConfig::read(src)?;
    let (source_lang, target_lang) = languages(src, &hf, opts)?;
    let (old_pieces, unk) = read_vocab(src, hf.vocab_size)?;
    for id in [hf.pad, hf.eos, hf.decoder_start] {
        if id >= hf.vocab_size {
            return Err(bad(
                src,
                format!(
                    "special token id {id} is past the vocabulary of {}",
                    hf.vocab_size
                ),
            ));
        }
    }
    let spms = ["source.spm", "target.spm"].map(|f| src.join(f));
    for p in &spms {
        if !p.is_file() {
            return Err(bad(
                src,
                format!(
                    "no {}: a Marian folder carries its SentencePiece models as source.spm and target.spm",
                    p.file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default()
                ),
            ));
        }
    }

    // attnscope's order: <pad>, <s> (the decoder start), </s>, <unk>, then the rest.
    let mut perm: Vec<u32> = vec![
        hf.pad as u32,
        hf.decoder_start as u32,
        hf.eos as u32,
        unk as u32,
    ];
    perm.extend(
        (0..hf.vocab_size as u32).filter(|&i| ![hf.pad, hf.eos, unk].contains(&(i as usize))),
    );
    let mut pieces: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    pieces.extend(perm[4..].iter().map(|&i| old_pieces[i as usize].clone()));
    let new_id: HashMap<usize, usize> = perm
        .iter()
        .enumerate()
        .skip(4)
        .map(|(new, &old)| (old as usize, new))
        .chain([(hf.pad, 0), (hf.eos, 2), (unk, 3)])
        .collect();
    let v = perm.len();
    let perm_t = Tensor::new(perm.as_slice(), &Device::Cpu)?;

    let w = read_weights(src)?;
    let get = |name: &str| {
        w.get(name).cloned().ok_or_else(|| {
            bad(
                src,
                format!("the weights lack {name}; is this a MarianMTModel checkpoint?"),
            )
        })
    };
    let shared = get("shared.weight")
        .or_else(|_| get("encoder.embed_tokens.weight"))
        .map_err(|_| {
            bad(
                src,
                "the weights lack the shared embeddings (model.shared.weight)",
            )
        })?;
    let (rows_v, d) = shared.dims2()?;
    if rows_v != hf.vocab_size || d != hf.d_model {
        return Err(bad(
            src,
            format!(
                "the embeddings are {rows_v} x {d}; config.json says {} x {}",
                hf.vocab_size, hf.d_model
            ),
        ));
    }
    let lm_head = w
        .get("lm_head.weight")
        .cloned()
        .unwrap_or_else(|| shared.clone());
    let mut bias: Vec<f32> = match w.get("final_logits_bias") {
        Some(b) => rows(&b.flatten_all()?, &perm_t)?.to_vec1()?,
        None => vec![0.0; v],
    };
    bias[1] = BANNED;
    for b in &hf.bad_words {
        if let Some(&n) = new_id.get(b) {
            bias[n] = BANNED;
        }
    }
    let embedding = rows(&shared, &perm_t)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    out.insert("encoder.embedding.weight".into(), embedding.clone());
    out.insert("decoder.embedding.weight".into(), embedding);
    out.insert("decoder.output.weight".into(), rows(&lm_head, &perm_t)?);
    out.insert(
        "decoder.output.bias".into(),
        Tensor::new(bias.as_slice(), &Device::Cpu)?,
    );
    let attn = [
        ("q_proj", "q"),
        ("k_proj", "k"),
        ("v_proj", "v"),
        ("out_proj", "o"),
    ];
    let mut copy = |from: String, to: String| -> Result<()> {
        for leaf in ["weight", "bias"] {
            out.insert(format!("{to}.{leaf}"), get(&format!("{from}.{leaf}"))?);
        }
        Ok(())
    };
    for side in ["encoder", "decoder"] {
        for i in 0..hf.layers {
            let (f, t) = (format!("{side}.layers.{i}"), format!("{side}.layers.{i}"));
            let mut blocks = vec![("self_attn", "self_attn")];
            if side == "decoder" {
                blocks.push(("encoder_attn", "cross_attn"));
            }
            for (hf_block, ours) in blocks {
                for (a, b) in attn {
                    copy(format!("{f}.{hf_block}.{a}"), format!("{t}.{ours}.{b}"))?;
                }
            }
            copy(
                format!("{f}.self_attn_layer_norm"),
                format!("{t}.self_attn_norm"),
            )?;
            if side == "decoder" {
                copy(
                    format!("{f}.encoder_attn_layer_norm"),
                    format!("{t}.cross_attn_norm"),
                )?;
            }
            copy(format!("{f}.fc1"), format!("{t}.ff.fc1"))?;
            copy(format!("{f}.fc2"), format!("{t}.ff.fc2"))?;
            copy(format!("{f}.final_layer_norm"), format!("{t}.ff_norm"))?;
        }
    }
    let parameters = out.values().map(Tensor::elem_count).sum::<usize>() - 2 * v * d;

    let transformer = TransformerConfig {
        layers: hf.layers,
        heads: hf.heads,
        ff_dim: hf.ff_dim,
        layout: TransformerLayout::Marian,
        activation: hf.activation,
    };
    let mut config = ModelConfig::new(
        Architecture::Transformer(transformer),
        &source_lang,
        &target_lang,
        v,
        v,
    );
    (config.embed_dim, config.hidden_dim) = (d, d);
    (config.attention_dim, config.readout_dim) = (d, d);
    config.dropout = 0.0;
    config.max_len = hf.max_positions;
    config.generation = Some(hf.generation);
    config.source_tokenizer = SOURCE_TOKENIZER.into();
    config.target_tokenizer = TARGET_TOKENIZER.into();
    config.check()?;

    let vocabs = spms
        .iter()
        .map(|p| Vocab::mapped(SpmModel::read(p)?.tokenizer()?, pieces.clone()))
        .collect::<Result<Vec<_>>>()?;
    let dir = models_dir.join(&opts.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    vocabs[0].save(&dir.join(SOURCE_TOKENIZER))?;
    vocabs[1].save(&dir.join(TARGET_TOKENIZER))?;
    let weights = dir.join(WEIGHTS_FILE);
    crate::files::write_with(&weights, |tmp| {
        Ok(candle_core::safetensors::save(&out, tmp)?)
    })?;
    config.save(&dir.join(CONFIG_FILE))?;
    let facts = CardFacts {
        origin: hf
            .name_or_path
            .clone()
            .unwrap_or_else(|| src.display().to_string()),
        layers: hf.layers,
        heads: hf.heads,
        d_model: hf.d_model,
        ff_dim: hf.ff_dim,
        activation: hf.activation,
        parameters,
    };
    let card = card(src, &facts, &config, &opts.name);
    crate::files::write(&dir.join("README.md"), card)?;
    Ok(Imported {
        dir,
        config,
        parameters,
        vocab: v,
    })
}
