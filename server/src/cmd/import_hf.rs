//! `attnscope import-hf`: a Hugging Face Marian checkpoint folder (an opus-mt model as the
//! user downloaded it) becomes a model under `--models` that `serve` lists and the page
//! opens ([`attnscope_model::import::marian`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_model::import::marian::{ImportOptions, import};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The checkpoint folder: config.json, model.safetensors (or pytorch_model.bin),
    /// source.spm, target.spm, vocab.json (and, if present, tokenizer_config.json,
    /// generation_config.json, README.md for the license).
    dir: PathBuf,
    /// Name of the model folder to write under --models.
    #[arg(long)]
    name: String,
    /// Source language code, when tokenizer_config.json and the folder's name do not say.
    #[arg(long)]
    source_lang: Option<String>,
    /// Target language code, likewise.
    #[arg(long)]
    target_lang: Option<String>,
    /// Replace a model of that name that is already there.
    #[arg(long)]
    force: bool,
}

pub fn run(models: &Path, a: ImportArgs) -> Result<()> {
    if !a.dir.is_dir() {
        bail!(
            "{} is not a folder; give the folder of a downloaded Marian model (e.g. the files of Helsinki-NLP/opus-mt-en-de)",
            a.dir.display()
        );
    }
    if a.name.is_empty() || a.name.contains(['/', '\\']) || a.name.starts_with('.') {
        bail!(
            "--name {:?} is not a folder name; use letters, digits and dashes",
            a.name
        );
    }
    let target = models.join(&a.name);
    if target.join(CONFIG_FILE).exists() && !a.force {
        bail!(
            "{} already holds a model; choose another --name or pass --force to replace it",
            target.display()
        );
    }
    let started = Instant::now();
    let opts = ImportOptions {
        name: a.name.clone(),
        source_lang: a.source_lang,
        target_lang: a.target_lang,
    };
    let out = import(&a.dir, models, &opts)
        .with_context(|| format!("cannot import {}", a.dir.display()))?;
    eprintln!(
        "imported {} ({} → {}, {} parameters, {} pieces) into {} in {:.2} s; `attnscope serve` lists it as {:?}",
        a.dir.display(),
        out.config.source_lang,
        out.config.target_lang,
        out.parameters,
        out.vocab,
        out.dir.display(),
        started.elapsed().as_secs_f64(),
        a.name
    );
    Ok(())
}
