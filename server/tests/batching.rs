//! Translations decoded in shared batches through the router: requests that arrive while
//! the CPU slots are busy wait together and decode as one batch per model, and every client
//! gets the same events (up to float rounding) and translation as when each decodes alone.
//! (Requests joining a batch midway are checked in the model crate, `decoding::together`.)
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use attnscope::AppState;
use attnscope::gate::Turn;
use attnscope_protocol::PackedWeights;
use axum::http::StatusCode;
use common::{post, state_of};
use serde_json::Value;

/// The requests: two models, one- and several-sentence inputs, some asking for candidates,
/// scores or the alignment, JSON and SSE answers; and a beam search, which decodes alone.
fn requests() -> Vec<(String, &'static str)> {
    let texts = [
        "I am cold.",
        "You are here. We are cold! Is it here?",
        "Is it here?",
        "We are cold! I am here.",
        "I am here, you are cold, we are here.",
    ];
    let mut out = Vec::new();
    for model in ["tiny", "tf"] {
        for (i, text) in texts.iter().enumerate() {
            let body = serde_json::json!({
                "text": text,
                "model": model,
                "top_k": if i % 2 == 0 { 3 } else { 0 },
                "scores": i == 1,
                "max_len": if i == 4 { Some(4) } else { None },
            });
            out.push((body.to_string(), "text/event-stream"));
        }
        let json = serde_json::json!({"text": "You are cold. I am here.", "model": model});
        out.push((json.to_string(), "application/json"));
    }
    let beam = serde_json::json!({"text": "I am cold.", "beam": 3});
    out.push((beam.to_string(), "text/event-stream"));
    out
}

/// An SSE body as `(event, data)` pairs (a JSON answer as one `("json", body)`), with the
/// timings taken out.
fn events(body: &[u8], accept: &str) -> Vec<(String, Value)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut out: Vec<(String, Value)> = Vec::new();
    if accept == "application/json" {
        out.push(("json".to_string(), serde_json::from_str(&text).unwrap()));
    } else {
        let mut name = String::new();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                out.push((name.clone(), serde_json::from_str(d).unwrap()));
            }
        }
    }
    for (_, v) in &mut out {
        if let Some(o) = v.as_object_mut() {
            o.remove("elapsed_ms");
        }
    }
    out
}

/// Equal JSON, numbers within `1e-4` (packed `f16` arrays within one `f16` step).
fn close(a: &Value, b: &Value) -> bool {
    if let (Ok(x), Ok(y)) = (
        serde_json::from_value::<PackedWeights>(a.clone()),
        serde_json::from_value::<PackedWeights>(b.clone()),
    ) {
        let (x, y) = (x.values().unwrap(), y.values().unwrap());
        return x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 2e-3);
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-4
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// Posts every request at once while `st`'s CPU slots are held, lets them go once the
/// batcher has queued `queued` of them, and returns each answer's events in request order.
async fn all_at_once(st: &AppState, queued: usize) -> Vec<Vec<(String, Value)>> {
    let held: Vec<_> = (0..st.gate.slots())
        .map(|_| st.gate.acquire(Turn::First))
        .collect();
    let mut tasks = Vec::new();
    for (body, accept) in requests() {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _, bytes) = post(&st, &body, accept).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            events(&bytes, accept)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while st.batcher.queued() < queued {
        assert!(Instant::now() < deadline, "{} queued", st.batcher.queued());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(held);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_together_decode_as_one_batch_per_model_with_the_same_answers() {
    let models = [("tiny", "additive"), ("tf", "transformer")];
    let (alone, _d1) = state_of(&models);
    let alone = alone.with_batch_rows(1);
    let (batched, _d2) = state_of(&models);
    let n = requests().len();
    // Every request but the beam search queues for a batch.
    let together = all_at_once(&batched, n - 1).await;
    assert_eq!(batched.stats.batched.load(Ordering::Relaxed), n as u64 - 1);
    let one_by_one = all_at_once(&alone, 0).await;
    assert_eq!(alone.stats.batched.load(Ordering::Relaxed), 0);
    assert_eq!(alone.stats.batch_steps.load(Ordering::Relaxed), 0);
    let steps = |evs: &[(String, Value)]| match evs {
        [(e, v)] if e == "json" => v["steps"].as_array().unwrap().len(),
        _ => evs.iter().filter(|(e, _)| e == "step").count(),
    };
    // Each model's requests decoded as one batch, every sentence a row: its steps are its
    // longest sentence's.
    let sentence_steps = |evs: &[(String, Value)]| -> Vec<usize> {
        let steps: Vec<&Value> = match evs {
            [(e, v)] if e == "json" => v["steps"].as_array().unwrap().iter().collect(),
            _ => evs
                .iter()
                .filter(|(e, _)| e == "step")
                .map(|(_, v)| v)
                .collect(),
        };
        let mut per = Vec::new();
        for s in steps {
            let k = s["sentence"].as_u64().unwrap_or(0) as usize;
            per.resize(per.len().max(k + 1), 0);
            per[k] += 1;
        }
        per
    };
    let per_model = n / 2;
    let longest = |range: std::ops::Range<usize>| {
        range
            .flat_map(|i| sentence_steps(&one_by_one[i]))
            .max()
            .unwrap()
    };
    assert_eq!(
        batched.stats.batch_steps.load(Ordering::Relaxed) as usize,
        longest(0..per_model) + longest(per_model..2 * per_model)
    );
    for (i, (a, b)) in one_by_one.iter().zip(&together).enumerate() {
        assert_eq!(a.len(), b.len(), "request {i}");
        assert!(steps(a) > 0, "request {i}");
        for ((ea, va), (eb, vb)) in a.iter().zip(b) {
            assert_eq!(ea, eb, "request {i}");
            assert!(close(va, vb), "request {i}, {ea}:\n{va}\n{vb}");
        }
    }
    assert_eq!(batched.stats.decoding.load(Ordering::Relaxed), 0);
    assert_eq!(batched.stats.inflight.load(Ordering::Relaxed), 0);
    let text = batched
        .metrics
        .render(&batched.stats, batched.worker_count, batched.queue_limit);
    assert!(text.contains("attnscope_batch_steps_total "), "{text}");
    assert!(
        text.contains(&format!("attnscope_batched_translations_total {}", n - 1)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_dropped_from_its_batch_and_the_others_finish() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    let (st, _d) = state_of(&[("tiny", "additive")]);
    let held: Vec<_> = (0..st.gate.slots())
        .map(|_| st.gate.acquire(Turn::First))
        .collect();
    let sse = |text: &str| {
        Request::post("/api/translate")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::from(
                serde_json::json!({"text": text, "max_len": 40}).to_string(),
            ))
            .unwrap()
    };
    let leaving = attnscope::app(st.clone())
        .oneshot(sse("You are here."))
        .await
        .unwrap();
    let staying = {
        let st = st.clone();
        tokio::spawn(async move {
            post(
                &st,
                r#"{"text":"I am cold.","max_len":40}"#,
                "text/event-stream",
            )
            .await
        })
    };
    while st.batcher.queued() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The client hangs up while its request waits for the batch: the batch's first step
    // finds it gone.
    drop(leaving);
    drop(held);
    let (status, _, bytes) = staying.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("event: done"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while st.stats.abandoned.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the leaving client was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(st.stats.batched.load(Ordering::Relaxed), 2);
    assert_eq!(st.stats.decoding.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panics_fails_its_batch_and_the_queue_goes_on() {
    use std::ops::ControlFlow;
    use std::sync::Arc;

    use attnscope::Stats;
    use attnscope::batcher::{Batcher, Member};
    use attnscope::gate::StepGate;
    use attnscope_model::{DecodeOptions, Segmentation, Translator, fixtures};
    use tokio::sync::oneshot;

    let (t, _) = fixtures::tiny_translator(3).unwrap();
    let t = Arc::new(t);
    let stats = Arc::new(Stats::default());
    let batcher = Arc::new(Batcher::new(
        8,
        StepGate::new(1),
        stats.clone(),
        Arc::default(),
    ));
    let plan = |t: &Translator| {
        let opts = DecodeOptions {
            max_len: Some(4),
            ..Default::default()
        };
        t.plan(
            t.text_source("I am cold.", Segmentation::Whole).unwrap(),
            opts,
        )
        .unwrap()
    };
    let key = batcher.key("tiny", &plan(&t)).unwrap();
    let (failed_tx, failed) = oneshot::channel::<bool>();
    batcher.submit(
        key.clone(),
        Member {
            model: t.clone(),
            plan: plan(&t),
            began: Instant::now(),
            on_step: Box::new(|_| panic!("a step callback that panics")),
            on_done: Box::new(move |r| {
                let _ = failed_tx.send(r.is_ok());
            }),
        },
    );
    // Its callbacks went down with the worker: no answer, the sender dropped.
    assert!(failed.await.is_err());
    let (done_tx, done) = oneshot::channel();
    batcher.submit(
        key,
        Member {
            model: t.clone(),
            plan: plan(&t),
            began: Instant::now(),
            on_step: Box::new(|_| ControlFlow::Continue(())),
            on_done: Box::new(move |r| {
                let _ = done_tx.send(r.map(|t| t.steps.len()));
            }),
        },
    );
    let steps = tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .expect("the next request is served")
        .unwrap()
        .unwrap();
    assert!((1..=4).contains(&steps), "{steps}");
    assert_eq!(stats.decoding.load(Ordering::Relaxed), 0);
}
