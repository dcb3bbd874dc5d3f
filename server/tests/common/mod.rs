//! Fixtures shared by the server's integration tests: a router state with a tiny random
//! model, requests through the router (`post`, `translate_json`, `expect_error`), and the
//! `attnscope` binary run with a given stdin.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them
#![allow(dead_code)] // each test file uses a part

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use attnscope::{AppState, Models, app};
use attnscope_model::{Translator, fixtures};
use attnscope_protocol::{ErrorBody, ModelInfo, TranslateResponse};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

/// A state serving one tiny seeded model named `tiny` and a one-line frontend.
pub fn state() -> (AppState, tempfile::TempDir) {
    state_of(&[("tiny", "additive")])
}

/// A state serving tiny seeded models `(name, kind)` (the first is the default) and a
/// one-line frontend.
pub fn state_of(models: &[(&str, &str)]) -> (AppState, tempfile::TempDir) {
    state_edited(models, |_, _| {})
}

/// [`state_of`], with `edit(name, folder)` run on each written model folder before it loads
/// (to change its `config.json`, say).
pub fn state_edited(
    models: &[(&str, &str)],
    edit: impl Fn(&str, &Path),
) -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut by_name = BTreeMap::new();
    for (name, kind) in models {
        let mdir = dir.path().join(name);
        fixtures::write_tiny_model_of(&mdir, kind, 1).unwrap();
        edit(name, &mdir);
        by_name.insert(name.to_string(), Arc::new(Translator::load(&mdir).unwrap()));
    }
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>attnscope</title>",
    )
    .unwrap();
    (
        AppState::new(Models::new(by_name, models[0].0).unwrap(), dist),
        dir,
    )
}

/// The `attnscope` binary of this build.
pub fn attnscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnscope"))
}

/// Runs `cmd` with `stdin`; returns whether it succeeded, its stdout and its stderr.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run`], asserting that it fails with a message that contains `says`; returns stderr.
pub fn run_refused(cmd: &mut Command, says: &str) -> String {
    let (ok, _, err) = run(cmd, b"");
    assert!(!ok, "succeeded, but should have said {says:?}");
    assert!(err.contains(says), "{err}");
    err
}

/// [`run`], asserting success; returns stdout as text.
pub fn run_ok(cmd: &mut Command, stdin: &[u8]) -> String {
    let (ok, out, err) = run(cmd, stdin);
    assert!(ok, "{err}");
    String::from_utf8(out).unwrap()
}

/// `POST /api/translate` with `body`, accepting `accept`: status, content type, body.
pub async fn post(st: &AppState, body: &str, accept: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::post("/api/translate")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app(st.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        ctype,
        to_bytes(res.into_body(), 1 << 24).await.unwrap().to_vec(),
    )
}

/// What `GET /api/models` lists.
pub async fn list_models(st: &AppState) -> Vec<ModelInfo> {
    let res = app(st.clone())
        .oneshot(Request::get("/api/models").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap()
}

/// The JSON answer to `body`, which must succeed.
pub async fn translate_json(st: &AppState, body: &str) -> TranslateResponse {
    let (status, _, bytes) = post(st, body, "application/json").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Both answer forms of `body` fail with `status` and the JSON error `code`.
pub async fn expect_error(body: &str, status: StatusCode, code: &str) {
    let (st, _d) = state();
    for accept in ["application/json", "text/event-stream"] {
        let (got, ctype, bytes) = post(&st, body, accept).await;
        assert_eq!(got, status, "{body} ({accept})");
        assert!(ctype.starts_with("application/json"));
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e.error, code);
        assert!(!e.message.is_empty());
    }
}

/// Toy English–French pairs for the CLI's training tests.
const PAIRS: &[(&str, &str)] = &[
    ("I am cold.", "J'ai froid."),
    ("I am hot.", "J'ai chaud."),
    ("You are cold.", "Tu as froid."),
    ("We are here.", "Nous sommes ici."),
    ("He is here.", "Il est ici."),
    ("She is cold.", "Elle a froid."),
    ("I am here.", "Je suis ici."),
    ("It is hot.", "Il fait chaud."),
];

/// Writes the toy pairs six times over to `dir/pairs.tsv` (once) and returns its path.
pub fn toy_tsv(dir: &Path) -> std::path::PathBuf {
    let tsv = dir.join("pairs.tsv");
    if !tsv.is_file() {
        let lines: Vec<String> = (0..6)
            .flat_map(|_| PAIRS.iter().map(|(e, f)| format!("{e}\t{f}")))
            .collect();
        std::fs::write(&tsv, lines.join("\n")).unwrap();
    }
    tsv
}

/// The models folder of [`toy_options`]' run `tag`: the trained model is `toy` in it.
pub fn toy_models(dir: &Path, tag: &str) -> std::path::PathBuf {
    dir.join(tag).join("models")
}

/// `attnscope train` on the toy data in `dir`, into `dir/<tag>/{models,runs}`, with the
/// tiny model's options and no epoch count: the caller adds `--epochs` (and `--resume`).
pub fn toy_options(dir: &Path, tag: &str) -> std::process::Command {
    let tsv = toy_tsv(dir);
    let (models, runs) = (toy_models(dir, tag), dir.join(tag).join("runs"));
    let mut cmd = attnscope();
    cmd.env("RAYON_NUM_THREADS", "1")
        .args([
            "--models",
            models.to_str().unwrap(),
            "train",
            "--name",
            "toy",
        ])
        .args([
            "--data",
            tsv.to_str().unwrap(),
            "--runs",
            runs.to_str().unwrap(),
        ])
        .args([
            "--src-vocab",
            "60",
            "--tgt-vocab",
            "60",
            "--embed-dim",
            "16",
        ])
        .args([
            "--hidden-dim",
            "16",
            "--batch-size",
            "4",
            "--test-sentences",
            "2",
        ])
        .args(["--dev-sentences", "1", "--checkpoint-every", "3"]);
    cmd
}

/// [`toy_options`] for four epochs: the command, ready to spawn (fresh, or `--resume` when
/// the run has a checkpoint).
pub fn toy_train(dir: &Path, tag: &str) -> std::process::Command {
    let mut cmd = toy_options(dir, tag);
    cmd.args(["--epochs", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if dir.join(tag).join("runs/toy/checkpoint.json").is_file() {
        cmd.arg("--resume");
    }
    cmd
}
