//! `attnscope import-hf` as a user runs it: a Marian folder (the tiny random one the parity
//! test uses) becomes a model that `translate` opens, and every folder it cannot import is
//! refused with a message that names what is wrong and what to do.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use std::path::{Path, PathBuf};

use common::{attnscope, run, run_ok};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/model/tests/fixtures/marian-tiny")
}

/// A copy of the fixture in `dir/name`, changed by `edit`.
fn copy(dir: &Path, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    edit(&to);
    to
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string()).unwrap();
}

/// Runs `import-hf` into `models`; its success and stderr.
fn import(models: &Path, folder: &Path, extra: &[&str]) -> (bool, String) {
    let (ok, _, err) = run(
        attnscope()
            .args(["--models", models.to_str().unwrap(), "import-hf"])
            .arg(folder)
            .args(extra),
        b"",
    );
    (ok, err)
}

#[test]
fn an_imported_marian_model_translates_with_every_layer_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let (ok, err) = import(&models, &fixture(), &["--name", "opus-tiny"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("en → fr") && err.contains("opus-tiny"),
        "{err}"
    );
    let card = std::fs::read_to_string(models.join("opus-tiny/README.md")).unwrap();
    assert!(
        card.contains("imported Marian") && card.contains("License"),
        "{card}"
    );
    let json = run_ok(
        attnscope().args([
            "--models",
            models.to_str().unwrap(),
            "translate",
            "--model",
            "opus-tiny",
            "--format",
            "json",
            "--max-len",
            "6",
        ]),
        b"I am cold.\n",
    );
    let r: attnscope_protocol::TranslateResponse = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(r.source_tokens, ["▁I", "▁a", "m", "▁cold", ".", "</s>"]);
    assert_eq!(r.steps.len(), 6);
    let heads = r.steps[0].heads.as_ref().unwrap();
    assert_eq!(heads.cross.shape, vec![2, 2, 6], "layers, heads, source");
    let enc = r.encoder_attention.as_ref().unwrap();
    assert_eq!(enc.shape, vec![2, 2, 6, 6]);

    // The same name again needs --force.
    let (ok, err) = import(&models, &fixture(), &["--name", "opus-tiny"]);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, err) = import(&models, &fixture(), &["--name", "opus-tiny", "--force"]);
    assert!(ok, "{err}");
}

#[test]
fn folders_it_cannot_import_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.path().join("nowhere"), "is not a folder"),
        (
            copy(dir.path(), "no-weights", |d| {
                std::fs::remove_file(d.join("model.safetensors")).unwrap()
            }),
            "model.safetensors or pytorch_model.bin",
        ),
        (
            copy(dir.path(), "bart", |d| {
                edit_config(d, "model_type", "bart".into())
            }),
            "model_type \"marian\"",
        ),
        (
            copy(dir.path(), "separate", |d| {
                edit_config(d, "share_encoder_decoder_embeddings", false.into())
            }),
            "separate source and target vocabularies",
        ),
        (
            copy(dir.path(), "no-spm", |d| {
                std::fs::remove_file(d.join("target.spm")).unwrap()
            }),
            "no target.spm",
        ),
        (
            copy(dir.path(), "pre-norm", |d| {
                edit_config(d, "normalize_before", true.into())
            }),
            "normalize_before",
        ),
    ];
    for (folder, says) in cases {
        let (ok, err) = import(&models, &folder, &["--name", "x"]);
        assert!(!ok, "{}", folder.display());
        assert!(err.contains(says), "{}: {err}", folder.display());
    }
    // No languages anywhere: the flags give them.
    let bare = copy(dir.path(), "bare", |d| {
        std::fs::remove_file(d.join("tokenizer_config.json")).unwrap()
    });
    let (ok, err) = import(&models, &bare, &["--name", "bare"]);
    assert!(!ok && err.contains("--source-lang"), "{err}");
    let flags = [
        "--name",
        "bare",
        "--source-lang",
        "en",
        "--target-lang",
        "fr",
    ];
    let (ok, err) = import(&models, &bare, &flags);
    assert!(ok, "{err}");
    assert!(
        !models.join("x").exists(),
        "a refused import writes nothing"
    );
}
