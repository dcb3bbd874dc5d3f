//! The model crate's layout, kept by the compiler's neighbour: the layers (folders) depend
//! only downwards, kernels ← networks ← decoding ← explain ← evaluation ← training ← import, with the
//! shared description (config, vocab, errors, files, names) usable by all; and no module
//! depends, through any chain of `crate::` paths, on itself (a child may use its parent's
//! items). Comments and test code are not counted.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = [
    "kernels",
    "networks",
    "decoding",
    "explain",
    "evaluation",
    "training",
    "import",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `networks/rnn.rs` → `networks::rnn`; `networks/mod.rs` → `networks`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod" && p != "lib")
        .collect();
    parts.join("::")
}

/// The code of a file that is not a comment nor inside its `#[cfg(test)]` module.
fn code_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if !t.starts_with("//") {
            lines.push(line);
        }
    }
    lines
}

/// The names `lib.rs` re-exports (`pub use a::b::{X, Y};`) with the module each comes from,
/// so that `crate::X` counts as a use of `a::b`.
fn reexports(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in code_lines(lib) {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let (path, names) = match rest.split_once("::{") {
            Some((p, n)) => (p.to_string(), n.trim_end_matches('}').to_string()),
            None => match rest.rsplit_once("::") {
                Some((p, n)) => (p.to_string(), n.to_string()),
                None => continue,
            },
        };
        let segs: Vec<&str> = path.split("::").collect();
        let Some(module) = (1..=segs.len())
            .rev()
            .map(|n| segs[..n].join("::"))
            .find(|m| modules.contains(m))
        else {
            continue;
        };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.insert(name.to_string(), module.clone());
        }
    }
    out
}

/// Every module of the crate and the modules its code names by a `crate::` path (a name
/// `lib.rs` re-exports counts as its own module).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexported = reexports(&lib, &modules);
    assert!(
        reexported.contains_key("Translator"),
        "lib.rs re-exports not found: {reexported:?}"
    );
    let mut edges = BTreeMap::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut to = BTreeSet::new();
        // `use crate::{A, b::C};` names several paths at once.
        let code = code_lines(&text).join("\n");
        for (i, _) in code.match_indices("crate::") {
            let after = &code[i + "crate::".len()..];
            let paths: Vec<String> = match after.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|p| {
                        let p = p.split(" as ").next().unwrap_or(p);
                        p.split_whitespace().collect::<String>()
                    })
                    .collect(),
                None => vec![
                    after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect(),
                ],
            };
            for path in paths {
                let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                // The longest prefix of the path that is a module, or a re-exported name.
                let target = (1..=segs.len())
                    .rev()
                    .map(|n| segs[..n].join("::"))
                    .find(|m| modules.contains(m))
                    .or_else(|| segs.first().and_then(|n| reexported.get(*n).cloned()));
                if let Some(t) = target {
                    let ancestor = from == t || from.starts_with(&format!("{t}::"));
                    if !ancestor {
                        to.insert(t);
                    }
                }
            }
        }
        edges.insert(from, to);
    }
    edges
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|l| *l == top)
}

#[test]
fn layers_depend_only_downwards() {
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        let Some(lf) = layer(&from) else { continue };
        for to in tos {
            if to == "fixtures" {
                wrong.push(format!("{from} uses the test fixtures outside tests"));
            }
            if let Some(lt) = layer(&to)
                && lt > lf
            {
                wrong.push(format!(
                    "{from} ({}) uses {to} ({}), a layer above it",
                    LAYERS[lf], LAYERS[lt]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_module_depends_on_itself() {
    let g = graph();
    // Depth-first search with colours: 1 on the stack, 2 done.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(m.to_owned(), 1);
        stack.push(m.to_owned());
        for n in g.get(m).into_iter().flatten() {
            match colour.get(n.as_str()).copied() {
                Some(1) => {
                    let start = stack.iter().position(|s| s == n).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(n.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(n, g, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(m.to_owned(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for m in g.keys() {
        if !colour.contains_key(m)
            && let Some(cycle) = visit(m, &g, &mut colour, &mut Vec::new())
        {
            panic!("module circle: {}", cycle.join(" -> "));
        }
    }
    assert!(g.len() > 30, "found only {} modules", g.len());
}
