//! Training runs as a user stops and starts them: killed at random points and resumed to
//! the same weights, and trained in one data-parallel shard or two.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use common::{run_ok, run_refused, toy_train};

#[test]
fn training_killed_at_random_points_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(&mut toy_train(dir.path(), "whole"), b"");
    let weights = |tag: &str| {
        std::fs::read(dir.path().join(tag).join("models/toy/model.safetensors")).unwrap()
    };
    let reference = weights("whole");
    let mut kills_in_all = 0;
    for run in 0..3u64 {
        let tag = format!("killed{run}");
        // A small xorshift: the kill times differ between runs but not between test runs.
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (run + 1);
        let mut next_delay = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            std::time::Duration::from_millis(2 + state % 80)
        };
        let mut kills = 0;
        loop {
            let mut child = toy_train(dir.path(), &tag).spawn().unwrap();
            let deadline = std::time::Instant::now() + next_delay();
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if std::time::Instant::now() >= deadline || kills >= 30 {
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            };
            match finished {
                Some(status) => {
                    let mut err = String::new();
                    use std::io::Read;
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    assert!(status.success(), "run {run} after {kills} kills: {err}");
                    break;
                }
                None if kills >= 30 => {
                    // Enough kills: let this one finish.
                    assert!(child.wait().unwrap().success());
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                }
            }
        }
        assert_eq!(weights(&tag), reference, "run {run}, killed {kills} times");
        let log =
            std::fs::read_to_string(dir.path().join(&tag).join("runs/toy/log.jsonl")).unwrap();
        for line in log.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("torn log line {line:?}: {e}"));
        }
        eprintln!("run {run}: killed {kills} times, then finished with the same weights");
        kills_in_all += kills;
    }
    assert!(
        kills_in_all >= 3,
        "the runs were killed {kills_in_all} times in all"
    );
}

#[test]
fn training_in_one_shard_or_two_gives_the_same_losses_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    for shards in ["1", "2"] {
        let tag = format!("shards{shards}");
        run_ok(
            toy_train(dir.path(), &tag).args(["--data-parallel", shards]),
            b"",
        );
        let log = dir.path().join(&tag).join("runs/toy/log.jsonl");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let options = dir.path().join(&tag).join("runs/toy/options.json");
        let options: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(options).unwrap()).unwrap();
        assert_eq!(options["data_parallel"].to_string(), shards);
        losses.push(
            lines
                .iter()
                .map(|l| l["train_loss"].as_f64().unwrap())
                .collect::<Vec<_>>(),
        );
    }
    // A GRU without dropout: the shards' gradients add up to the batch's, so the two runs
    // differ by float rounding only.
    assert_eq!(losses[0].len(), losses[1].len());
    for (a, b) in losses[0].iter().zip(&losses[1]) {
        assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{losses:?}");
    }

    run_refused(
        toy_train(dir.path(), "zero").args(["--data-parallel", "0"]),
        "--data-parallel must be between 1 and 64",
    );
}

#[test]
fn label_smoothing_is_recorded_for_resume_and_card_and_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        toy_train(dir.path(), "smooth").args(["--label-smoothing", "0.1"]),
        b"",
    );
    let json = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("smooth").join(p)).unwrap())
            .unwrap()
    };
    assert_eq!(json("runs/toy/options.json")["label_smoothing"], 0.1);
    assert_eq!(json("models/toy/config.json")["label_smoothing"], 0.1);
    let card = std::fs::read_to_string(dir.path().join("smooth/models/toy/README.md")).unwrap();
    assert!(card.contains("| label smoothing | 0.1"), "{card}");
    assert!(card.contains("--label-smoothing 0.1"), "{card}");

    for bad in ["1", "-0.1"] {
        run_refused(
            toy_train(dir.path(), "bad").arg(format!("--label-smoothing={bad}")),
            "--label-smoothing must be at least 0 and below 1",
        );
    }
}
