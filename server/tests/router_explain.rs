//! The router's attribution answers through `oneshot`, with tiny random models: rows per
//! method in JSON and SSE, and the errors of bad options.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use axum::http::StatusCode;
use common::{expect_error, post, state, translate_json};

#[tokio::test]
async fn explained_steps_carry_one_normalised_row_per_method_in_json_and_sse() {
    let (st, _d) = state();
    let body = r#"{"text":"I am cold. You are here.","max_len":4,"explain":["gradient_x_input","integrated_gradients","erasure","word_erasure"],"ig_steps":8,"ig_baseline":"pad"}"#;
    let r = translate_json(&st, body).await;
    assert_eq!(r.agreement.len(), 4);
    for s in &r.steps {
        let names: Vec<&str> = s.attributions.iter().map(|a| a.method.as_str()).collect();
        assert_eq!(
            names,
            [
                "gradient_x_input",
                "integrated_gradients",
                "erasure",
                "word_erasure"
            ]
        );
        let span = &r.sentences[s.sentence];
        for a in &s.attributions {
            assert_eq!(a.weights.len(), r.source_tokens.len());
            let total: f32 = a.weights.iter().sum();
            assert!((total - 1.0).abs() < 1e-4 || total == 0.0, "{total}");
            // Zero outside the step's own sentence, as the attention is.
            for (j, w) in a.weights.iter().enumerate() {
                assert!((span.source[0]..span.source[1]).contains(&j) || *w == 0.0);
            }
            assert!(a.tau.is_none_or(|t| (-1.0..=1.0).contains(&t)));
            assert_eq!(a.delta.is_some(), a.method == "integrated_gradients");
        }
    }
    // The stream carries the same rows on its step events.
    let (status, _, bytes) = post(&st, body, "text/event-stream").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let mut steps: Vec<attnscope_protocol::StepEvent> = text
        .split("\n\n")
        .filter(|e| e.contains("event: step"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Each streamed step carries the row that the JSON answer keeps in its matrix.
    for (s, row) in steps.iter_mut().zip(&r.attention) {
        assert_eq!(&std::mem::take(&mut s.attention), row);
    }
    assert_eq!(steps, r.steps);
    assert!(text.contains("\"agreement\""));
    // Without `explain`, nothing extra.
    let r = translate_json(&st, r#"{"text":"I am cold.","max_len":3}"#).await;
    assert!(r.agreement.is_empty() && r.steps.iter().all(|s| s.attributions.is_empty()));
}

#[tokio::test]
async fn bad_explain_options_get_a_4xx_json_error() {
    let bad = StatusCode::BAD_REQUEST;
    expect_error(
        r#"{"text":"Hi.","explain":["saliency"]}"#,
        bad,
        "invalid_option",
    )
    .await;
    expect_error(
        r#"{"text":"Hi.","explain":["integrated_gradients"],"ig_steps":1000}"#,
        bad,
        "invalid_option",
    )
    .await;
    expect_error(
        r#"{"text":"Hi.","explain":["erasure"],"ig_baseline":"noise"}"#,
        bad,
        "invalid_option",
    )
    .await;
}
