//! The loaded models, by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use attnscope_model::Translator;
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_protocol::ModelInfo;

use crate::AppError;
use crate::wire::{ChosenAlignment, chosen_alignment};

pub struct Models {
    by_name: BTreeMap<String, Arc<Translator>>,
    /// Each model's chosen alignment method, read once at load (models without one, or with
    /// one this build cannot read, are not here).
    alignments: BTreeMap<String, ChosenAlignment>,
    /// Folders that look like models but could not be loaded, with the reason.
    broken: BTreeMap<String, String>,
    default: String,
}

impl Models {
    /// Loads every subfolder of `dir` that has a `config.json`. A folder that fails to load
    /// (half copied, corrupt) is logged and listed as broken, and the others are served;
    /// `default` must load.
    pub fn load_dir(dir: &Path, default: &str) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the models folder {}", dir.display()))?;
        let mut by_name = BTreeMap::new();
        let mut broken = BTreeMap::new();
        for entry in entries {
            let path = entry?.path();
            if !path.join(CONFIG_FILE).is_file() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match Translator::load(&path) {
                Ok(t) => {
                    by_name.insert(name, Arc::new(t));
                }
                Err(e) => {
                    let why = format!(
                        "{e}; copy the folder again or retrain it with `attnscope train --name {name}`"
                    );
                    tracing::warn!(model = %name, error = %why, "model not loaded; serving the others");
                    broken.insert(name, why);
                }
            }
        }
        if let Some(why) = broken.get(default) {
            bail!(
                "the default model {default:?} in {} cannot be loaded: {why}; or pass --default-model to serve another",
                dir.display()
            );
        }
        let mut models = Self::new(by_name, default)
            .with_context(|| format!("in the models folder {}", dir.display()))?;
        models.broken = broken;
        Ok(models)
    }

    pub fn new(by_name: BTreeMap<String, Arc<Translator>>, default: &str) -> anyhow::Result<Self> {
        if !by_name.contains_key(default) {
            bail!(
                "the default model {default:?} is not there (found: {}); train it with `attnscope train --name {default}` or pass --default-model",
                by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let alignments = by_name
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), chosen_alignment(name, t)?)))
            .collect();
        Ok(Models {
            by_name,
            alignments,
            broken: BTreeMap::new(),
            default: default.to_string(),
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The folders that could not be loaded, with the reason.
    pub fn broken(&self) -> &BTreeMap<String, String> {
        &self.broken
    }

    /// The named model, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<(String, Arc<Translator>), AppError> {
        let name = name.unwrap_or(&self.default);
        if let Some(why) = self.broken.get(name) {
            return Err(AppError::ModelUnavailable {
                name: name.to_string(),
                why: why.clone(),
            });
        }
        match self.by_name.get(name) {
            Some(t) => Ok((name.to_string(), t.clone())),
            None => Err(AppError::UnknownModel {
                name: name.to_string(),
                available: self.names(),
            }),
        }
    }

    /// The chosen alignment method of the loaded model `name`, if it has one.
    pub fn alignment(&self, name: &str) -> Option<&ChosenAlignment> {
        self.alignments.get(name)
    }

    /// What `GET /api/models` lists: every loaded model, then the broken folders.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.by_name
            .iter()
            .map(|(name, t)| {
                crate::wire::model_info(name, t, *name == self.default, self.alignment(name))
            })
            .chain(
                self.broken
                    .iter()
                    .map(|(name, why)| crate::wire::broken_model_info(name, why)),
            )
            .collect()
    }
}
