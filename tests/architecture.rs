//! ARCHITECTURE.md's crate table against `cargo metadata`, so the table cannot drift: every
//! workspace crate has a row whose folder is its manifest's; every dependency the row names is
//! a real dependency of the crate (plain names, `attnscope-` left off, e.g. `model`); and
//! every workspace crate it depends on is named.
#![allow(clippy::unwrap_used)] // a test: failures panic with the reason

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

struct Row {
    folder: String,
    depends_on: BTreeSet<String>,
}

/// The rows of the table under `## Crates`: crate name → folder and named dependencies.
fn table(text: &str) -> BTreeMap<String, Row> {
    let section = text
        .split("## Crates")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("ARCHITECTURE.md has a `## Crates` section");
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "a crate row has 4 cells: {line}");
        let unquote = |s: &str| s.trim_matches('`').to_owned();
        let depends_on = cells[3]
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or("").trim_matches('`'))
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect();
        rows.insert(
            unquote(cells[0]),
            Row {
                folder: unquote(cells[1]),
                depends_on,
            },
        );
    }
    rows
}

#[test]
fn the_crate_table_matches_cargo_metadata() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = std::fs::canonicalize(&root).unwrap();
    let rows = table(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let short = |n: &str| {
        n.strip_prefix("attnscope-")
            .unwrap_or(if n == "attnscope" { "attnscope" } else { n })
            .to_owned()
    };
    let mut wrong = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let Some(row) = rows.get(name) else {
            wrong.push(format!("{name} has no row"));
            continue;
        };
        let manifest = Path::new(p["manifest_path"].as_str().unwrap());
        let folder = manifest.parent().unwrap().strip_prefix(&root).unwrap();
        if folder != Path::new(&row.folder) {
            wrong.push(format!(
                "{name} lives in {}, not {}",
                folder.display(),
                row.folder
            ));
        }
        let deps: Vec<&serde_json::Value> = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .collect();
        let actual: BTreeSet<String> = deps
            .iter()
            .map(|d| short(d["name"].as_str().unwrap()))
            .collect();
        for named in &row.depends_on {
            if !actual.contains(named) {
                wrong.push(format!(
                    "{name}'s row names {named}, which it does not depend on"
                ));
            }
        }
        for d in &deps {
            let dep = d["name"].as_str().unwrap();
            if members.contains(dep) && !row.depends_on.contains(&short(dep)) {
                wrong.push(format!("{name} depends on {dep}; its row does not say so"));
            }
        }
    }
    for name in rows.keys() {
        if !members.contains(name) {
            wrong.push(format!(
                "the table lists {name}, which is not a workspace crate"
            ));
        }
    }
    assert!(wrong.is_empty(), "ARCHITECTURE.md:\n{}", wrong.join("\n"));
}
