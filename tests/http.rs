//! The API over real HTTP: a server on port 0 with the shipped default model.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use attnscope_protocol::{
    DoneEvent, ErrorBody, ModelInfo, StartEvent, StepEvent, TranslateResponse,
};
use attnscope_tests::{parse_sse, start_server};

async fn post(
    addr: std::net::SocketAddr,
    body: serde_json::Value,
    accept: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/translate"))
        .header("accept", accept)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_stream_agree_and_the_default_model_translates_sensibly() {
    let addr = start_server().await.unwrap();
    let models: Vec<ModelInfo> = reqwest::get(format!("http://{addr}/api/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models.iter().any(|m| m.name == "bahdanau"
        && m.default
        && m.source_lang == "en"
        && m.target_lang == "fr"));

    let text = "I am cold.";
    let res = post(
        addr,
        serde_json::json!({ "text": text }),
        "application/json",
    )
    .await;
    assert_eq!(res.status(), 200);
    let whole: TranslateResponse = res.json().await.unwrap();
    assert!(
        whole.translation.to_lowercase().contains("froid"),
        "{text:?} gave {:?}",
        whole.translation
    );

    let res = post(
        addr,
        serde_json::json!({ "text": text, "model": "bahdanau" }),
        "text/event-stream",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&res.text().await.unwrap());
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("start"));
    let start: StartEvent = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(start.source_tokens, whole.source_tokens);
    let steps: Vec<StepEvent> = events
        .iter()
        .filter(|e| e.0 == "step")
        .map(|e| serde_json::from_str(&e.1).unwrap())
        .collect();
    assert_eq!(steps.len(), whole.target_tokens.len());
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.index, i);
        assert_eq!(s.token, whole.target_tokens[i]);
        assert_eq!(s.attention, whole.attention[i]);
        assert_eq!(s.attention.len(), start.source_tokens.len());
        assert!((s.attention.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "done");
    let done: DoneEvent = serde_json::from_str(data).unwrap();
    assert_eq!(done.translation, whole.translation);
    assert_eq!(done.target_tokens, whole.target_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_http_is_a_json_4xx_and_the_server_keeps_serving() {
    let addr = start_server().await.unwrap();
    for (body, status, code) in [
        (serde_json::json!({ "text": "" }), 400, "empty_text"),
        (
            serde_json::json!({ "text": "Hello.", "model": "no-such-model" }),
            404,
            "unknown_model",
        ),
        (serde_json::json!({ "txet": "Hello." }), 400, "invalid_json"),
    ] {
        let res = post(addr, body, "text/event-stream").await;
        assert_eq!(res.status(), status);
        let e: ErrorBody = res.json().await.unwrap();
        assert_eq!(e.error, code);
    }
    // Odd but valid text translates normally.
    for text in [
        "<b>Hi</b> 😀 !!!",
        "\u{200f}Hello\u{200f}",
        &"a".repeat(300),
    ] {
        let res = post(
            addr,
            serde_json::json!({ "text": text }),
            "application/json",
        )
        .await;
        assert_eq!(res.status(), 200, "{text:?}");
    }
}

/// A stream that is waiting or decoding when the server is asked to stop still runs to its
/// end; the server stops once it has, and takes no new connection meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_running_stream_finish() {
    use attnscope::{AppState, Models};
    let models =
        Models::load_dir(&attnscope_tests::models_dir(), attnscope::DEFAULT_MODEL).unwrap();
    let state = AppState::new(models, attnscope_tests::dist_dir());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(attnscope::serve_until(
        listener,
        state.clone(),
        attnscope::listen::Limits::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    // Hold every decoding slot, so the request is admitted but cannot start decoding.
    let slots = state
        .workers
        .clone()
        .acquire_many_owned(state.worker_count as u32)
        .await
        .unwrap();
    let target = "le chat dort sur le canapé . ".repeat(12);
    let res = post(
        addr,
        serde_json::json!({ "text": "The cat is sleeping on the sofa.", "force_target": target }),
        "text/event-stream",
    )
    .await;
    assert_eq!(res.status(), 200);
    stop_tx.send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !server.is_finished(),
        "the server stopped with a stream open"
    );
    // New connections are refused once shutdown has begun.
    let late = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await;
    assert!(late.is_err(), "a new connection was served during shutdown");
    drop(slots);
    let body = res.text().await.unwrap();
    let events = parse_sse(&body);
    let done = events
        .iter()
        .find(|(n, _)| n == "done")
        .expect("done event");
    let done: DoneEvent = serde_json::from_str(&done.1).unwrap();
    assert!(
        done.target_tokens.len() > 80,
        "{}",
        done.target_tokens.len()
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server did not stop after its last stream")
        .unwrap()
        .unwrap();
}
