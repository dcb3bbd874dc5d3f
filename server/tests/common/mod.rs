//! Fixtures shared by the server's integration tests: a router state with a tiny random
//! model, and the `attnscope` binary run with a given stdin.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them
#![allow(dead_code)] // each test file uses a part

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use attnscope::{AppState, Models};
use attnscope_model::{Translator, fixtures};

/// A state serving one tiny seeded model named `tiny` and a one-line frontend.
pub fn state() -> (AppState, tempfile::TempDir) {
    state_of(&[("tiny", "additive")])
}

/// A state serving tiny seeded models `(name, kind)` (the first is the default) and a
/// one-line frontend.
pub fn state_of(models: &[(&str, &str)]) -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut by_name = BTreeMap::new();
    for (name, kind) in models {
        let mdir = dir.path().join(name);
        fixtures::write_tiny_model_of(&mdir, kind, 1).unwrap();
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

/// [`run`], asserting success; returns stdout as text.
pub fn run_ok(cmd: &mut Command, stdin: &[u8]) -> String {
    let (ok, out, err) = run(cmd, stdin);
    assert!(ok, "{err}");
    String::from_utf8(out).unwrap()
}
