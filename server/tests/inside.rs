//! Inside a step, through the router and the CLI: each step's candidates (`top_k`, five by
//! default) and, on request, its attention scores; out-of-range options get the JSON error.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use attnscope_protocol::{score_weights, softmax};
use axum::http::StatusCode;
use common::{attnscope, expect_error, run_ok, state_of, translate_json};

#[tokio::test]
async fn steps_carry_candidates_and_on_request_the_scores() {
    let (st, _d) = state_of(&[("tiny", "additive"), ("tf", "transformer")]);
    // Five candidates by default, the emitted token first; no scores unless asked.
    let r = translate_json(&st, r#"{"text":"I am cold.","max_len":4}"#).await;
    assert!(!r.steps.is_empty());
    for s in &r.steps {
        assert_eq!(s.candidates.len(), 5);
        assert_eq!(s.candidates[0].token, s.token);
        assert!((s.candidates[0].log_prob - s.log_prob).abs() < 1e-6);
        assert!(s.scores.is_none());
    }
    let none = translate_json(&st, r#"{"text":"I am cold.","max_len":4,"top_k":0}"#).await;
    assert!(none.steps.iter().all(|s| s.candidates.is_empty()));

    // The scores give back the attention the page shows: the softmax of a GRU's row, the
    // mean of a Transformer's last-layer heads' softmaxes.
    for model in ["tiny", "tf"] {
        let body = format!(
            r#"{{"text":"I am cold. You are here.","model":"{model}","max_len":4,"top_k":2,"scores":true}}"#
        );
        let r = translate_json(&st, &body).await;
        assert_eq!(r.sentences.len(), 2);
        for s in &r.steps {
            assert_eq!(s.candidates.len(), 2);
            let scores = s.scores.as_ref().unwrap();
            let span = r.sentences[s.sentence].source;
            assert_eq!(scores.first, span[0], "{model}");
            let last = scores.values.last().unwrap();
            let mut mean = vec![0f32; span[1] - span[0]];
            for head in last {
                for (m, w) in mean.iter_mut().zip(softmax(head)) {
                    *m += w / last.len() as f32;
                }
            }
            for (j, m) in mean.iter().enumerate() {
                let a = r.attention[s.index][span[0] + j];
                assert!((m - a).abs() < 1e-5, "{model} step {}: {m} vs {a}", s.index);
            }
            assert_eq!(
                score_weights(&last[0], "soft", 1.0).unwrap(),
                softmax(&last[0])
            );
        }
    }
}

#[tokio::test]
async fn too_many_candidates_is_a_json_error() {
    expect_error(
        r#"{"text":"Hi.","top_k":21}"#,
        StatusCode::BAD_REQUEST,
        "invalid_option",
    )
    .await;
    expect_error(
        r#"{"text":"Hi.","scores":"yes"}"#,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
}

#[test]
fn the_cli_prints_each_steps_candidates() {
    let dir = tempfile::tempdir().unwrap();
    attnscope_model::fixtures::write_tiny_model_of(&dir.path().join("tiny"), "additive", 1)
        .unwrap();
    let models = dir.path().to_str().unwrap();
    // `translate` on the tiny model, three steps at most, with `extra` options.
    let translate = |extra: &[&str]| {
        run_ok(
            attnscope()
                .args(["--models", models, "translate", "--model", "tiny"])
                .args(["--max-len", "3"])
                .args(extra),
            b"I am cold.\n",
        )
    };
    let text = translate(&["--top-k", "2"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!((2..=4).contains(&lines.len()), "{text}");
    for (n, line) in lines[1..].iter().enumerate() {
        let (head, cands) = line.split_once('\t').unwrap();
        assert!(
            head.trim_start().starts_with(&(n + 1).to_string()),
            "{line}"
        );
        let token = head.split_whitespace().nth(1).unwrap();
        assert_eq!(cands.split(", ").count(), 2, "{line}");
        assert!(cands.starts_with(token), "{line}");
    }
    let json = translate(&["--top-k", "3", "--scores", "--format", "json"]);
    let r: attnscope_protocol::TranslateResponse = serde_json::from_str(json.trim()).unwrap();
    assert!(
        r.steps
            .iter()
            .all(|s| s.candidates.len() == 3 && s.scores.is_some())
    );
    // `render` keeps them: a JSON export with one list per row, a CSV column.
    let doc = run_ok(
        attnscope().args(["render", "--format", "json"]),
        json.as_bytes(),
    );
    let req: attnscope_protocol::RenderRequest = serde_json::from_str(doc.trim()).unwrap();
    assert_eq!(req.candidates.len(), r.steps.len());
    assert_eq!(req.candidates[0], r.steps[0].candidates);
    let csv = run_ok(
        attnscope().args(["render", "--format", "csv"]),
        json.as_bytes(),
    );
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",candidates"), "{header}");
}
