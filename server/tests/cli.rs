//! The `attnscope` binary as a user runs it: train on a small TSV, resume, translate stdin,
//! and fail clearly on a missing model.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{attnscope, run, run_ok, toy_models, toy_options};

#[test]
fn train_resume_translate_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let models = toy_models(dir.path(), "round-trip");
    let runs = dir.path().join("round-trip").join("runs");
    // `attnscope train` on the toy data, with the options both runs share.
    let train = |extra: &[&str]| {
        let out = toy_options(dir.path(), "round-trip")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let read_config = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let first = train(&["--epochs", "1"]);
    assert!(first.contains("BLEU"), "{first}");
    let toy = models.join("toy");
    for f in [
        "config.json",
        "tokenizer.en.json",
        "tokenizer.fr.json",
        "model.safetensors",
        "README.md",
    ] {
        assert!(toy.join(f).is_file(), "{f} missing");
    }
    let card = std::fs::read_to_string(toy.join("README.md")).unwrap();
    assert!(
        card.contains("Tatoeba")
            && card.contains("manythings.org")
            && card.contains("CC BY 2.0 FR")
    );
    let config = read_config(&toy);
    assert_eq!(config["source_lang"], "en");
    assert_eq!(config["target_lang"], "fr");
    let steps_1 = config["training"]["steps"].as_u64().unwrap();

    // Starting again over an existing run is refused; --resume continues it.
    let again = toy_options(dir.path(), "round-trip")
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    train(&["--resume", "--epochs", "2"]);
    let config = read_config(&toy);
    assert_eq!(config["training"]["steps"].as_u64().unwrap(), 2 * steps_1);

    let mut child = attnscope()
        .args([
            "--models",
            models.to_str().unwrap(),
            "translate",
            "--model",
            "toy",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"I am cold.\n\nWe are here.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);

    // Every decoding option from the command line, with the attention as JSON.
    let json = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "translate",
                "--model",
                "toy",
            ])
            .args(["--attention", "hard", "--beam", "2", "--format", "json"]),
        b"I am cold.\n",
    );
    let doc: attnscope_protocol::TranslateResponse = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(doc.mode, "hard");
    assert!(doc.attention.iter().all(|r| r.contains(&1.0)));
    assert!(!doc.hypotheses.is_empty());
    let forced = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "translate",
                "--model",
                "toy",
            ])
            .args(["--force-target", "Il est ici.", "--intervene", "0:1"]),
        b"I am cold.\n",
    );
    assert_eq!(forced.trim(), "Il est ici.");
    let bad = attnscope()
        .args([
            "--models",
            models.to_str().unwrap(),
            "translate",
            "--model",
            "toy",
        ])
        .args(["--intervene", "first"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("STEP:SOURCE"));

    // Before any alignment was measured, `--align` says how to measure one.
    let (ok, _, err) = run(
        attnscope()
            .args(["--models", models.to_str().unwrap(), "translate"])
            .args(["--model", "toy", "--align"]),
        b"I am cold.\n",
    );
    assert!(
        !ok && err.contains("align-eval --model toy --save"),
        "{err}"
    );

    // `eval` rebuilds the test split, scores it, measures attention and alignments against a
    // gold set, and rewrites the card with a loss curve.
    let gold = dir.path().join("gold");
    std::fs::create_dir_all(&gold).unwrap();
    std::fs::write(
        gold.join("test.e"),
        "<s snum=0001> i am cold .  </s>\n<s snum=0002> we are here .  </s>\n",
    )
    .unwrap();
    std::fs::write(
        gold.join("test.f"),
        "<s snum=0001> j' ai froid .  </s>\n<s snum=0002> nous sommes ici .  </s>\n",
    )
    .unwrap();
    std::fs::write(
        gold.join("test.wa.nonullalign"),
        "0001 1 1 S\n0001 2 2 P\n0001 3 3 S\n0001 4 4 S\n0002 1 1 S\n0002 2 2 S\n0002 3 3 S\n0002 4 4 S\n",
    )
    .unwrap();
    // The trial set, on which the method is chosen.
    std::fs::write(gold.join("trial.e"), "<s snum=1001> you are cold .  </s>\n").unwrap();
    std::fs::write(gold.join("trial.f"), "<s snum=1001> tu as froid .  </s>\n").unwrap();
    std::fs::write(
        gold.join("trial.wa"),
        "1001 1 1 S\n1001 3 3 S\n1001 4 4 S\n",
    )
    .unwrap();
    let report = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "eval",
                "--model",
                "toy",
            ])
            .args([
                "--runs",
                runs.to_str().unwrap(),
                "--gold",
                gold.to_str().unwrap(),
            ]),
        b"",
    );
    assert!(
        report.contains("BLEU") && report.contains("entropy"),
        "{report}"
    );
    assert!(
        report.contains("trial AER") && report.contains("chosen"),
        "{report}"
    );
    let config = read_config(&toy);
    let ev = &config["evaluation"];
    // The best of each family of methods, then the diagonal baseline.
    let rows = ev["alignment"].as_array().unwrap().clone();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows.last().unwrap()["method"]
            .as_str()
            .unwrap()
            .contains("diagonal")
    );
    let aer = rows[0]["aer"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&aer));
    let chosen = ev["alignment_method"].as_str().unwrap().to_string();
    assert!(chosen.starts_with("attention/L1/"), "{chosen}");
    assert!(rows.iter().any(|r| r["spec"] == chosen.as_str()));
    assert_eq!(
        ev["alignment_trial"].as_str().unwrap(),
        "the Hansards trial set (trial.*)"
    );
    assert!(ev["mean_entropy"].as_f64().unwrap() >= 0.0);
    let card = std::fs::read_to_string(toy.join("README.md")).unwrap();
    assert!(
        card.contains("AER") && card.contains("loss.png") && card.contains("attnscope -- eval")
    );
    let png = std::fs::read(toy.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let align = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "align-eval",
                "--model",
                "toy",
            ])
            .args(["--gold", gold.to_str().unwrap()]),
        b"",
    );
    // Every method, best on the trial sentence first: 4 attention sources (plain and
    // norm-weighted, shifted or not) x 7 extractions (argmax, 4 thresholds, 2 priors) x 2
    // punctuation x 6 merges.
    assert!(align.contains("; argmax; t2s"), "{align}");
    let ranked = align
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(ranked, 4 * 7 * 2 * 6, "{align}");
    // The translation's word links by the chosen method.
    let aligned = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "translate",
                "--model",
                "toy",
            ])
            .args(["--align", "--max-len", "4"]),
        b"I am cold.\n",
    );
    assert!(
        aligned.contains("  alignment (") && aligned.contains("AER"),
        "{aligned}"
    );

    // `faithfulness` measures attention against attributions and counterfactual attention,
    // keeps what `eval` measured, and adds its tables to the card.
    let faith = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "faithfulness",
                "--model",
                "toy",
            ])
            .args([
                "--runs",
                runs.to_str().unwrap(),
                "--sentences",
                "2",
                "--ig-steps",
                "2",
            ]),
        b"",
    );
    assert!(
        faith.contains("integrated_gradients") && faith.contains("uniform"),
        "{faith}"
    );
    let config = read_config(&toy);
    let f = &config["evaluation"]["faithfulness"];
    assert_eq!(f["sentences"], 2);
    assert_eq!(f["agreement"].as_array().unwrap().len(), 4);
    assert_eq!(f["counterfactuals"].as_array().unwrap().len(), 3);
    assert_eq!(config["evaluation"]["alignment"].as_array().unwrap(), &rows);
    assert_eq!(config["evaluation"]["alignment_method"], chosen.as_str());
    let card = std::fs::read_to_string(toy.join("README.md")).unwrap();
    assert!(
        card.contains("## Faithfulness") && card.contains("AER"),
        "{card}"
    );

    // `translate --explain` prints each method's agreement and top shares.
    let explained = run_ok(
        attnscope()
            .args([
                "--models",
                models.to_str().unwrap(),
                "translate",
                "--model",
                "toy",
            ])
            .args(["--explain", "gradient_x_input,erasure"]),
        b"I am cold.\n",
    );
    assert!(
        explained.contains("gradient × input: mean τ") && explained.contains("erasure: mean τ"),
        "{explained}"
    );
    let bad = attnscope()
        .args([
            "--models",
            models.to_str().unwrap(),
            "translate",
            "--model",
            "toy",
        ])
        .args(["--explain", "saliency"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("gradient_x_input"));
}

#[test]
fn a_missing_model_fails_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = attnscope()
        .args([
            "--models",
            dir.path().to_str().unwrap(),
            "translate",
            "--model",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\"")
            && err.contains("available: none")
            && err.contains("attnscope train --name nope"),
        "{err}"
    );

    let out = attnscope()
        .args([
            "--models",
            dir.path().to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("attnscope train --name bahdanau"));
}

#[test]
fn score_prints_bleu_and_chrf_and_rejects_unpaired_files() {
    let dir = tempfile::tempdir().unwrap();
    let (h, r, short) = (
        dir.path().join("h"),
        dir.path().join("r"),
        dir.path().join("s"),
    );
    std::fs::write(&h, "J'ai froid.\nIl est ici.\n").unwrap();
    std::fs::write(&r, "J'ai froid.\nIl est là.\n").unwrap();
    std::fs::write(&short, "J'ai froid.\n").unwrap();
    let score = |hyp: &std::path::Path, reference: &std::path::Path| {
        attnscope()
            .args([
                "score",
                "--hyp",
                hyp.to_str().unwrap(),
                "--ref",
                reference.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = score(&h, &h);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("BLEU 100.00\tchrF 100.00\t2 sentences")
    );
    let text = String::from_utf8_lossy(&score(&h, &r).stdout).to_string();
    let bleu: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(bleu > 0.0 && bleu < 100.0, "{text}");
    let out = score(&h, &short);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pair up"));
}
