//! The subcommands of the `attnscope` binary, one module each.

pub mod align;
pub mod eval;
pub mod faithfulness;
pub mod import_hf;
pub mod render;
pub mod train;
pub mod translate;

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use attnscope_model::Translator;
use attnscope_model::decoding::translator::CONFIG_FILE;
use indicatif::{ProgressBar, ProgressStyle};

/// A short description of this machine for model cards.
pub fn hardware() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cores} CPU cores ({}), candle CPU backend",
        std::env::consts::ARCH
    )
}

/// Loads `<models>/<name>`, or explains which models exist and how to train one.
pub fn load_model(models: &Path, name: &str) -> Result<Translator> {
    let dir = models.join(name);
    if !dir.join(CONFIG_FILE).is_file() {
        let mut available: Vec<String> = std::fs::read_dir(models)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join(CONFIG_FILE).is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        available.sort();
        bail!(
            "no model named {name:?} in {} (no config.json there); available: {}. Train one with `attnscope train --name {name}`",
            models.display(),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        );
    }
    Translator::load(&dir)
        .with_context(|| format!("cannot load model {name:?} from {}", dir.display()))
}

/// A progress bar on a terminal; hidden otherwise (then `say` prints plain lines).
pub struct Progress {
    pub bar: ProgressBar,
    tty: bool,
}

impl Progress {
    pub fn new(template: &str) -> Result<Self> {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template(template).context("bad progress template")?);
        Ok(Progress {
            bar,
            tty: std::io::stderr().is_terminal(),
        })
    }

    /// A line above the bar, or on stderr when there is no terminal.
    pub fn say(&self, line: String) {
        if self.tty {
            self.bar.println(line)
        } else {
            eprintln!("{line}")
        }
    }
}
