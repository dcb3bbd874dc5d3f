//! Small random models for tests and demos: seeded weights, vocabularies trained on a toy
//! corpus. They decode real (untrained, so meaningless) translations with real attention.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use crate::config::{Architecture, AttentionTraining, Scorer, TransformerConfig};
use crate::decoding::translator::{CONFIG_FILE, WEIGHTS_FILE};
use crate::networks::Network;
use crate::{ModelConfig, Result, Translator, Vocab};

const EN: [&str; 5] = [
    "I am cold.",
    "You are here.",
    "We are cold!",
    "Is it here?",
    "I am here.",
];
const FR: [&str; 5] = [
    "J'ai froid.",
    "Tu es ici.",
    "Nous avons froid !",
    "Est-ce ici ?",
    "Je suis ici.",
];

/// The kinds of tiny model: the GRU scorers, a GRU trained with hard attention, and a
/// Transformer.
pub const KINDS: [&str; 5] = ["additive", "general", "dot", "hard", "transformer"];

/// The configuration of a tiny model of `kind` (one of [`KINDS`]).
pub fn tiny_config(kind: &str, src_vocab: usize, tgt_vocab: usize) -> Result<ModelConfig> {
    let mut cfg = ModelConfig::new(tiny_architecture(kind)?, "en", "fr", src_vocab, tgt_vocab);
    if let Architecture::Transformer(_) = cfg.architecture {
        cfg.embed_dim = 16;
    } else {
        (
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.attention_dim,
            cfg.readout_dim,
        ) = (8, 12, 10, 9);
    }
    cfg.max_len = 24;
    cfg.check()?;
    Ok(cfg)
}

/// The architecture of a tiny model of `kind` (one of [`KINDS`]).
pub fn tiny_architecture(kind: &str) -> Result<Architecture> {
    Ok(match kind {
        "transformer" => Architecture::Transformer(TransformerConfig::new(2, 2, 24)),
        "hard" => Architecture::gru(Scorer::Additive, AttentionTraining::Hard),
        scorer => Architecture::gru(scorer.parse()?, AttentionTraining::Soft),
    })
}

pub(crate) fn parts(kind: &str, seed: u64) -> Result<(ModelConfig, Vocab, Vocab, VarMap, Network)> {
    let src = Vocab::train(EN.iter().copied().cycle().take(40), 40)?;
    let tgt = Vocab::train(FR.iter().copied().cycle().take(40), 45)?;
    let cfg = tiny_config(kind, src.len(), tgt.len())?;
    let varmap = VarMap::new();
    let model = Network::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    crate::networks::init::init_network(&varmap, &cfg, seed)?;
    Ok((cfg, src, tgt, varmap, model))
}

/// A tiny seeded GRU model with additive attention in memory, with its variables.
pub fn tiny_translator(seed: u64) -> Result<(Translator, VarMap)> {
    tiny_translator_of("additive", seed)
}

/// A tiny seeded model of `kind` (one of [`KINDS`]) in memory, with its variables.
pub fn tiny_translator_of(kind: &str, seed: u64) -> Result<(Translator, VarMap)> {
    let (cfg, src, tgt, varmap, model) = parts(kind, seed)?;
    let params = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    Ok((
        Translator::from_parts(cfg, model, src, tgt, params)?,
        varmap,
    ))
}

/// Writes a tiny seeded GRU model directory (config, tokenizers, weights) to `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<()> {
    write_tiny_model_of(dir, "additive", seed)
}

/// Writes a tiny seeded model of `kind` (one of [`KINDS`]) to the directory `dir`.
pub fn write_tiny_model_of(dir: &Path, kind: &str, seed: u64) -> Result<()> {
    let (cfg, src, tgt, varmap, _) = parts(kind, seed)?;
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    src.save(&dir.join(&cfg.source_tokenizer))?;
    tgt.save(&dir.join(&cfg.target_tokenizer))?;
    varmap.save(dir.join(WEIGHTS_FILE))?;
    cfg.save(&dir.join(CONFIG_FILE))
}

/// The largest absolute difference between two tensors of the same shape (tests compare
/// fused kernels with the candle compositions they replace).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("two f32 tensors of one shape")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_written_tiny_model_loads_and_translates_like_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        super::write_tiny_model(dir.path(), 11).unwrap();
        let loaded = crate::Translator::load(dir.path()).unwrap();
        let (mem, _) = super::tiny_translator(11).unwrap();
        let go = |t: &crate::Translator| {
            let opts = crate::DecodeOptions {
                max_len: Some(5),
                ..Default::default()
            };
            t.translate("I am cold.", &opts, |_| std::ops::ControlFlow::Continue(()))
                .unwrap()
        };
        let (a, b) = (go(&loaded), go(&mem));
        if crate::kernels::dense_layer::DenseLayer::packs_here() {
            // The loaded model's products run on packed weights, which add their terms in
            // another order: the same tokens, the same numbers up to float rounding.
            assert_eq!(a.target_tokens, b.target_tokens);
            assert!((a.log_prob - b.log_prob).abs() < 1e-4);
            for (x, y) in a.steps.iter().zip(&b.steps) {
                let d = x
                    .attention
                    .iter()
                    .zip(&y.attention)
                    .map(|(p, q)| (p - q).abs());
                assert!(d.fold(0f32, f32::max) < 1e-5, "{x:?} against {y:?}");
            }
        } else {
            assert_eq!(a, b);
        }
        assert_eq!(loaded.parameters(), mem.parameters());
    }
}
