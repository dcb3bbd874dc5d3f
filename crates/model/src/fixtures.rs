//! Small random models for tests and demos: seeded weights, vocabularies trained on a toy
//! corpus. They decode real (untrained, so meaningless) translations with real attention.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use crate::bahdanau::Seq2Seq;
use crate::decode::{CONFIG_FILE, WEIGHTS_FILE};
use crate::init::init_seeded;
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

fn parts(seed: u64) -> Result<(ModelConfig, Vocab, Vocab, VarMap, Seq2Seq)> {
    let src = Vocab::train(EN.iter().copied().cycle().take(40), 40)?;
    let tgt = Vocab::train(FR.iter().copied().cycle().take(40), 45)?;
    let mut cfg = ModelConfig::bahdanau("en", "fr", src.len(), tgt.len());
    (
        cfg.embed_dim,
        cfg.hidden_dim,
        cfg.attention_dim,
        cfg.readout_dim,
    ) = (8, 12, 10, 9);
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    init_seeded(&varmap, seed)?;
    Ok((cfg, src, tgt, varmap, model))
}

/// A tiny seeded model in memory, with its variables (for training tests).
pub fn tiny_translator(seed: u64) -> Result<(Translator, VarMap)> {
    let (cfg, src, tgt, varmap, model) = parts(seed)?;
    let params = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    Ok((
        Translator::from_parts(cfg, model, src, tgt, params)?,
        varmap,
    ))
}

/// Writes a tiny seeded model directory (config, tokenizers, weights) to `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<()> {
    let (cfg, src, tgt, varmap, _) = parts(seed)?;
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    src.save(&dir.join(&cfg.source_tokenizer))?;
    tgt.save(&dir.join(&cfg.target_tokenizer))?;
    varmap.save(dir.join(WEIGHTS_FILE))?;
    cfg.save(&dir.join(CONFIG_FILE))
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
            t.translate("I am cold.", Some(5), |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap()
        };
        assert_eq!(go(&loaded), go(&mem));
        assert_eq!(loaded.parameters(), mem.parameters());
    }
}
