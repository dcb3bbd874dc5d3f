//! The router through `oneshot`, with a tiny random model: both answer forms and the errors.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::collections::BTreeMap;

mod common;

use attnscope::{AppState, Models, app};
use attnscope_protocol::{ErrorBody, TranslateResponse};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use common::{expect_error, list_models, post, state, translate_json};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tower::ServiceExt;

#[tokio::test]
async fn models_lists_the_default_model() {
    let (st, _d) = state();
    let models = list_models(&st).await;
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].name, "tiny");
    assert!(models[0].default);
    assert_eq!(models[0].attention, "additive");
    assert!(models[0].parameters > 0);
}

#[tokio::test]
async fn json_answer_has_one_attention_row_per_target_token() {
    let (st, _d) = state();
    let (status, ctype, body) = post(&st, r#"{"text":"I am cold."}"#, "application/json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("application/json"));
    let r: TranslateResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.model, "tiny");
    assert_eq!(r.source_tokens.last().map(String::as_str), Some("</s>"));
    assert_eq!(r.attention.len(), r.target_tokens.len());
    for row in &r.attention {
        assert_eq!(row.len(), r.source_tokens.len());
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // The rows go once: in the matrix, not again in the steps.
    assert_eq!(r.steps.len(), r.attention.len());
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for step in doc["steps"].as_array().unwrap() {
        assert!(step.get("attention").is_none(), "{step}");
    }
}

#[tokio::test]
async fn sse_answer_streams_start_steps_and_done() {
    let (st, _d) = state();
    let (status, ctype, body) = post(
        &st,
        r#"{"text":"You are here.","model":"tiny"}"#,
        "text/event-stream",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let text = String::from_utf8(body).unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"start"));
    assert_eq!(events.last(), Some(&"done"));
    assert!(events[1..events.len() - 1].iter().all(|e| *e == "step"));
    assert!(events.len() > 2);
}

#[tokio::test]
async fn a_paragraph_is_translated_sentence_by_sentence_unless_asked_not_to() {
    let (st, _d) = state();
    let text = "I am cold. You are here. Mr. Smith is late.";
    let r = translate_json(&st, &format!(r#"{{"text":"{text}","max_len":6}}"#)).await;
    assert_eq!(r.sentences.len(), 3, "{:?}", r.sentences);
    assert_eq!(r.sentences[2].text, "Mr. Smith is late.");
    let mut at = 0;
    for (k, s) in r.sentences.iter().enumerate() {
        let [a, b] = s.target.unwrap();
        assert_eq!(a, at);
        at = b;
        for step in &r.steps[a..b] {
            assert_eq!(step.sentence, k);
            let row = &r.attention[step.index];
            let inside: f32 = row[s.source[0]..s.source[1]].iter().sum();
            assert!(
                (inside - 1.0).abs() < 1e-4,
                "row attends within its sentence"
            );
        }
    }
    assert_eq!(at, r.steps.len());
    assert_eq!(r.sentences.last().unwrap().source[1], r.source_tokens.len());
    // The stream announces the sentences first and tags each step.
    let (_, _, body) = post(
        &st,
        &format!(r#"{{"text":"{text}","max_len":6}}"#),
        "text/event-stream",
    )
    .await;
    let text_body = String::from_utf8(body).unwrap();
    let data: Vec<serde_json::Value> = text_body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[0]["sentences"].as_array().unwrap().len(), 3);
    assert!(data[0]["sentences"][0]["target"].is_null());
    let last_step = &data[data.len() - 2];
    assert_eq!(last_step["sentence"], 2);
    assert_eq!(
        data.last().unwrap()["sentences"].as_array().unwrap().len(),
        3
    );
    // segment: false reads the whole text as one sequence.
    let whole = translate_json(
        &st,
        &format!(r#"{{"text":"{text}","segment":false,"max_len":6}}"#),
    )
    .await;
    assert_eq!(whole.sentences.len(), 1);
    assert!(whole.steps.iter().all(|s| s.sentence == 0));
    assert_eq!(
        whole.source_tokens.iter().filter(|t| *t == "</s>").count(),
        1
    );
    // A forced target must give one translation per sentence.
    expect_error(
        &format!(r#"{{"text":"{text}","force_target":"Salut."}}"#),
        StatusCode::BAD_REQUEST,
        "invalid_option",
    )
    .await;
}

#[tokio::test]
async fn transformer_steps_carry_every_head_packed() {
    let (st, _d) = common::state_of(&[("tiny-transformer", "transformer")]);
    let body = r#"{"text":"You are here.","max_len":6}"#;
    let r = translate_json(&st, body).await;
    let src = r.source_tokens.len();
    let enc = r
        .encoder_attention
        .as_ref()
        .expect("encoder self-attention");
    let (layers, heads) = (enc.shape[0], enc.shape[1]);
    assert_eq!(enc.shape, vec![layers, heads, src, src]);
    assert!(layers >= 1 && heads >= 2, "{:?}", enc.shape);
    assert_eq!(r.steps.len(), r.target_tokens.len());
    for (t, step) in r.steps.iter().enumerate() {
        let h = step.heads.as_ref().expect("heads on every step");
        assert_eq!(h.cross.shape, vec![layers, heads, src]);
        assert_eq!(h.self_attention.shape, vec![layers, heads, t + 1]);
        for row in h
            .cross
            .rows()
            .unwrap()
            .iter()
            .chain(&h.self_attention.rows().unwrap())
        {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-2, "{row:?}");
        }
    }
    // The SSE form carries the same packed heads, and the done event the encoder's.
    let (status, _, sse) = post(&st, body, "text/event-stream").await;
    assert_eq!(status, StatusCode::OK);
    let sse = String::from_utf8(sse).unwrap();
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let mut first: attnscope_protocol::StepEvent = serde_json::from_str(data[1]).unwrap();
    // The stream carries the row that the JSON answer keeps in its matrix.
    assert_eq!(std::mem::take(&mut first.attention), r.attention[0]);
    assert_eq!(first, r.steps[0]);
    let done: attnscope_protocol::DoneEvent = serde_json::from_str(data[data.len() - 1]).unwrap();
    assert_eq!(done.encoder_attention.as_ref(), Some(enc));
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error() {
    expect_error(r#"{"text":""}"#, StatusCode::BAD_REQUEST, "empty_text").await;
    expect_error(r#"{"text":"  \n "}"#, StatusCode::BAD_REQUEST, "empty_text").await;
    expect_error(
        r#"{"text":"Hi.","model":"nope"}"#,
        StatusCode::NOT_FOUND,
        "unknown_model",
    )
    .await;
    expect_error(r#"{"text":"#, StatusCode::BAD_REQUEST, "invalid_json").await;
    expect_error(r#"{"text":42}"#, StatusCode::BAD_REQUEST, "invalid_json").await;
    let long = format!(
        r#"{{"text":"{}"}}"#,
        "a".repeat(attnscope::MAX_TEXT_CHARS + 1)
    );
    expect_error(&long, StatusCode::PAYLOAD_TOO_LARGE, "text_too_long").await;
}

#[tokio::test]
async fn an_over_large_or_deeply_nested_body_gets_a_json_error() {
    let (st, _d) = state();
    let big = format!(r#"{{"text":"{}"}}"#, "a".repeat(100 * 1024));
    let (status, ctype, body) = post(&st, &big, "application/json").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let e: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.error, "body_too_large");
    assert!(e.message.contains("65536"), "{}", e.message);
    let nested = format!(
        r#"{{"text":"a","model":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    expect_error(&nested, StatusCode::BAD_REQUEST, "invalid_json").await;
}

#[tokio::test]
async fn bad_decoding_options_get_a_4xx_json_error() {
    let bad = StatusCode::BAD_REQUEST;
    expect_error(
        r#"{"text":"Hi.","attention":"argmax"}"#,
        bad,
        "unknown_mode",
    )
    .await;
    expect_error(r#"{"text":"Hi.","beam":0}"#, bad, "invalid_option").await;
    expect_error(r#"{"text":"Hi.","beam":99}"#, bad, "invalid_option").await;
    expect_error(r#"{"text":"Hi.","beam":"wide"}"#, bad, "invalid_json").await;
    expect_error(r#"{"text":"Hi.","temperature":0}"#, bad, "invalid_option").await;
    expect_error(r#"{"text":"Hi.","max_len":100000}"#, bad, "invalid_option").await;
    expect_error(
        r#"{"text":"Hi.","interventions":[{"step":0,"source":50}]}"#,
        bad,
        "invalid_option",
    )
    .await;
    expect_error(
        r#"{"text":"Hi.","interventions":[{"step":0}]}"#,
        bad,
        "invalid_json",
    )
    .await;
    expect_error(
        r#"{"text":"Hi.","force_target":"Salut.","beam":2}"#,
        bad,
        "invalid_option",
    )
    .await;
}

#[tokio::test]
async fn every_option_reaches_the_decoder() {
    let (st, _d) = state();
    for mode in ["soft", "hard", "sampled", "sparsemax"] {
        let body = format!(r#"{{"text":"I am cold.","attention":"{mode}","temperature":0.5}}"#);
        let r = translate_json(&st, &body).await;
        assert_eq!(r.mode, mode);
        for row in &r.attention {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4);
            if mode == "hard" || mode == "sampled" {
                assert_eq!(
                    row.iter().filter(|&&w| w == 1.0).count(),
                    1,
                    "{mode}: {row:?}"
                );
            }
        }
    }
    let r = translate_json(&st, r#"{"text":"I am cold.","beam":3,"max_len":6}"#).await;
    assert!(!r.hypotheses.is_empty() && r.hypotheses.len() <= 3);
    assert_eq!(r.hypotheses[0].translation, r.translation);
    assert!(r.target_tokens.len() <= 6);
    let r = translate_json(&st, r#"{"text":"I am cold.","force_target":"Tu es ici."}"#).await;
    assert_eq!(r.translation, "Tu es ici.");
    assert!(r.steps.iter().all(|s| s.forced && s.log_prob <= 0.0));
    let r = translate_json(
        &st,
        r#"{"text":"I am cold.","target_prefix":"Nous","max_len":5,"interventions":[{"step":1,"source":0}]}"#,
    )
    .await;
    assert!(r.steps[0].forced && !r.steps[0].intervened);
    if r.steps.len() > 1 {
        assert!(r.steps[1].intervened);
        assert_eq!(r.attention[1][0], 1.0);
    }
}

#[tokio::test]
async fn the_frontend_is_served_at_the_root_with_or_without_a_query() {
    let (st, _d) = state();
    for uri in ["/", "/?text=I%20am%20cold."] {
        let res = app(st.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("attnscope"));
    }
}

#[tokio::test]
async fn no_path_escapes_the_frontend_folder_and_cors_is_same_origin() {
    let (st, d) = state();
    std::fs::write(d.path().join("secret.txt"), "do not serve").unwrap();
    for uri in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
    ] {
        let res = app(st.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("do not serve"),
            "{uri}"
        );
    }
    // No CORS headers: browsers keep other origins out of the API.
    let req = Request::post("/api/translate")
        .header(header::ORIGIN, "http://elsewhere.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"text":"Hi."}"#))
        .unwrap();
    let res = app(st).oneshot(req).await.unwrap();
    assert!(
        res.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}

#[tokio::test]
async fn a_missing_default_model_is_a_clear_startup_error() {
    let err = Models::new(BTreeMap::new(), "bahdanau").err().unwrap();
    assert!(
        err.to_string().contains("attnscope train --name bahdanau"),
        "{err}"
    );
}

#[tokio::test]
async fn a_broken_model_folder_is_listed_with_its_error_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    attnscope_model::fixtures::write_tiny_model(&dir.path().join("good"), 1).unwrap();
    let half = dir.path().join("half");
    attnscope_model::fixtures::write_tiny_model(&half, 2).unwrap();
    // A half-copied folder: the weights are cut short.
    let weights = half.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let models = Models::load_dir(dir.path(), "good").unwrap();
    assert_eq!(models.names(), vec!["good".to_string()]);
    assert!(
        models.broken()["half"].contains("model.safetensors"),
        "{:?}",
        models.broken()
    );
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let st = AppState::new(models, dist);
    let list = list_models(&st).await;
    let names: Vec<(&str, bool)> = list
        .iter()
        .map(|m| (m.name.as_str(), m.error.is_some()))
        .collect();
    assert_eq!(names, vec![("good", false), ("half", true)]);
    let res = app(st.clone())
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let health: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["models"], 1);
    assert_eq!(health["broken"][0]["name"], "half");
    let (status, _, body) = post(&st, r#"{"text":"Hi.","model":"half"}"#, "application/json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let e: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.error, "model_unavailable");
    let (status, _, _) = post(&st, r#"{"text":"Hi."}"#, "application/json").await;
    assert_eq!(status, StatusCode::OK, "the good default still translates");
    // A broken default is a clear start-up error.
    let err = Models::load_dir(dir.path(), "half").err().unwrap();
    assert!(err.to_string().contains("cannot be loaded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_decoding() {
    let (st, _d) = state();
    // The untrained model never emits </s>, so a full decoding runs to the length limit.
    let body = serde_json::json!({ "text": "a ".repeat(500) }).to_string();
    let (_, _, whole) = post(&st, &body, "application/json").await;
    let full = serde_json::from_slice::<TranslateResponse>(&whole)
        .unwrap()
        .target_tokens
        .len() as u64;
    assert!(full >= 200, "full decoding has {full} steps");
    let before = st.stats.steps.load(Ordering::Relaxed);

    let req = Request::post("/api/translate")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::from(body))
        .unwrap();
    let res = app(st.clone()).oneshot(req).await.unwrap();
    let mut stream = res.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("event: step") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream); // what the server does when the client hangs up

    let deadline = Instant::now() + Duration::from_secs(10);
    while st.stats.decoding.load(Ordering::Relaxed) > 0
        || st.stats.abandoned.load(Ordering::Relaxed) == 0
    {
        assert!(
            Instant::now() < deadline,
            "decoding still running 10 s after the stream was dropped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let made = st.stats.steps.load(Ordering::Relaxed) - before;
    // At most the channel's 16 buffered steps, the one being sent, and the first one.
    assert!(
        made <= 20,
        "{made} of {full} steps decoded after the stream was dropped"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_metrics_count_it() {
    let (st, _d) = state();
    let st = st.with_queue(0);
    // Every slot taken: the next translation is refused at once, with a JSON body.
    let held: Vec<_> = (0..st.worker_count).map(|_| st.admit().unwrap()).collect();
    let req = Request::post("/api/translate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"text":"I am cold."}"#))
        .unwrap();
    let res = app(st.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    let e: ErrorBody =
        serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(e.error, "busy");
    // Bad requests are still told what is wrong, not that the server is busy.
    let (status, _, _) = post(&st, r#"{"text":""}"#, "application/json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    drop(held);
    let (status, _, _) = post(&st, r#"{"text":"I am cold."}"#, "application/json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st.stats.inflight.load(Ordering::Relaxed), 0);

    let res = app(st.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    let text =
        String::from_utf8(to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    for needle in [
        "attnscope_requests_total{route=\"/api/translate\",status=\"503\"} 1",
        "attnscope_requests_total{route=\"/api/translate\",status=\"200\"} 1",
        "attnscope_requests_total{route=\"/api/translate\",status=\"400\"} 1",
        "attnscope_rejected_total 1",
        "attnscope_first_step_seconds_count 1",
        "attnscope_queue_depth 0",
        "attnscope_queue_limit 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let res = app(st)
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_option() {
    let (st, _d) = state();
    let res = app(st)
        .oneshot(
            Request::get("/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), 1 << 22).await.unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/translate", "post"),
        ("/api/models", "get"),
        ("/api/render", "post"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{path} {method}");
    }
    let req = &doc["components"]["schemas"]["TranslateRequest"]["properties"];
    for field in [
        "text",
        "model",
        "attention",
        "temperature",
        "beam",
        "max_len",
        "force_target",
        "target_prefix",
        "interventions",
        "segment",
        "explain",
        "ig_steps",
        "ig_baseline",
    ] {
        assert!(req[field].is_object(), "TranslateRequest.{field} missing");
    }
    assert!(doc["components"]["schemas"]["HeadsAttention"]["properties"]["self"].is_object());
    assert!(doc["components"]["schemas"]["SentenceInfo"]["properties"]["source"].is_object());
    assert!(doc["components"]["schemas"]["AttributionRow"]["properties"]["tau"].is_object());
    assert!(doc["paths"]["/api/translate"]["post"]["responses"]["503"].is_object());
}
