//! The word alignment a model's chosen method reads off a translation, through the router
//! with tiny random models: asked for with `align`, in the JSON answer and the `done` event,
//! listed with its AER by `/api/models`, and left out (never an error) for a model without a
//! readable method.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use attnscope::AppState;
use attnscope_model::ModelConfig;
use attnscope_model::decoding::translator::CONFIG_FILE;
use attnscope_model::report::{AlignmentResult, Evaluation};
use axum::http::StatusCode;
use common::{list_models, post, state_edited, translate_json};

/// Tiny models `(name, kind, method spec)`; a spec of `None` leaves the model unmeasured.
fn state_with(models: &[(&str, &str, Option<&str>)]) -> (AppState, tempfile::TempDir) {
    let kinds: Vec<(&str, &str)> = models.iter().map(|(n, k, _)| (*n, *k)).collect();
    state_edited(&kinds, |name, dir| {
        let Some(Some(spec)) = models.iter().find(|m| m.0 == name).map(|m| m.2) else {
            return;
        };
        let path = dir.join(CONFIG_FILE);
        let mut cfg = ModelConfig::load(&path).unwrap();
        cfg.evaluation = Some(Evaluation {
            alignment: vec![AlignmentResult {
                gold: "hansards-naacl2003".into(),
                method: format!("label of {spec}"),
                spec: spec.to_string(),
                trial_aer: Some(0.40),
                aer: 0.42,
                precision: 0.5,
                recall: 0.6,
                sentences: 447,
            }],
            alignment_method: Some(spec.to_string()),
            ..Evaluation::default()
        });
        cfg.save(&path).unwrap();
    })
}

#[tokio::test]
async fn asked_for_the_alignment_comes_in_json_and_in_the_done_event() {
    let (st, _d) = state_with(&[
        (
            "gru",
            "additive",
            Some("attention/L1/Hmean+argmax+grow-diag-final+punct"),
        ),
        (
            "tr",
            "transformer",
            Some("attention/Lmean/Hmean/norm/shift+threshold=0.3+s2t"),
        ),
        ("plain", "additive", None),
        ("odd", "additive", Some("attention/L9/Hmean+loudest+s2t")),
    ]);
    for model in ["gru", "tr"] {
        let body = format!(
            r#"{{"text":"I am cold. You are here.","model":"{model}","max_len":6,"align":true}}"#
        );
        let r = translate_json(&st, &body).await;
        let al = r
            .alignment
            .clone()
            .unwrap_or_else(|| panic!("{model}: no alignment"));
        assert!(al.method.starts_with("label of attention/"));
        assert!((al.aer - 42.0).abs() < 1e-9 && al.gold == "hansards-naacl2003");
        assert!(!al.links.is_empty());
        for l in &al.links {
            // Each link stays inside one sentence.
            assert!(r.sentences.iter().any(|s| {
                let t = s.target.unwrap();
                s.source[0] <= l.source[0]
                    && l.source[1] <= s.source[1]
                    && t[0] <= l.target[0]
                    && l.target[1] <= t[1]
            }));
        }
        // The stream's done event carries the same links.
        let (status, _, bytes) = post(&st, &body, "text/event-stream").await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(bytes).unwrap();
        let done: attnscope_protocol::DoneEvent = text
            .split("\n\n")
            .filter(|e| e.contains("event: done"))
            .find_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .unwrap();
        assert_eq!(done.alignment, Some(al));
        // Not asked for: not computed.
        let r = translate_json(&st, &body.replace(r#","align":true"#, "")).await;
        assert!(r.alignment.is_none());
    }
    // No method, or one this build cannot read: the translation comes without alignment.
    for model in ["plain", "odd"] {
        let body = format!(r#"{{"text":"I am cold.","model":"{model}","max_len":4,"align":true}}"#);
        let r = translate_json(&st, &body).await;
        assert!(r.alignment.is_none() && !r.translation.is_empty());
    }
    // The listing says which method each model draws and its AER.
    let models = list_models(&st).await;
    let by = |n: &str| models.iter().find(|m| m.name == n).unwrap().clone();
    assert_eq!(by("gru").aer, Some(42.0));
    assert_eq!(
        by("tr").alignment_method.as_deref(),
        Some("label of attention/Lmean/Hmean/norm/shift+threshold=0.3+s2t")
    );
    assert_eq!((by("plain").aer, by("odd").alignment_method), (None, None));
}
