//! `POST /api/render` through the real router (`oneshot`, with the tiny random model of
//! router.rs), and `attnscope render` fed by `attnscope translate --format json`.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

mod common;

use attnscope::{AppState, app};
use attnscope_protocol::{ErrorBody, RenderRequest};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use common::{attnscope, run, state};
use tower::ServiceExt;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

struct Answer {
    status: StatusCode,
    content_type: String,
    disposition: String,
    body: Vec<u8>,
}

async fn post(st: &AppState, uri: &str, body: impl Into<Body>) -> Answer {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let res = app(st.clone()).oneshot(req).await.unwrap();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (content_type, disposition) = (
        header(header::CONTENT_TYPE),
        header(header::CONTENT_DISPOSITION),
    );
    Answer {
        status: res.status(),
        content_type,
        disposition,
        body: to_bytes(res.into_body(), 1 << 26).await.unwrap().to_vec(),
    }
}

/// Three target tokens over four source tokens, with tokens that CSV must quote.
fn sample() -> RenderRequest {
    RenderRequest {
        source_tokens: ["\u{2581}a,\"b\"", "\u{2581}cat", "two\nlines", "</s>"]
            .map(String::from)
            .to_vec(),
        target_tokens: ["\u{2581}le", "\u{2581}chat, \"c\"", "</s>"]
            .map(String::from)
            .to_vec(),
        attention: vec![
            vec![0.7, 0.1, 0.1, 0.1],
            vec![0.05, 0.9, 0.0, 0.05],
            vec![0.25, 0.25, 0.25, 0.25],
        ],
        title: Some("Le chat".into()),
        scale: Some("log".into()),
        palette: Some("cividis".into()),
        candidates: Vec::new(),
    }
}

/// Splits CSV text (RFC 4180: quoted fields may hold commas, doubled quotes and line breaks)
/// into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => {
                assert!(field.is_empty(), "a quote inside an unquoted field");
                quoted = true;
            }
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && record.is_empty(), "{text:?}");
    records
}

#[tokio::test]
async fn each_format_has_its_content_type_and_a_decodable_body() {
    let (st, _d) = state();
    let req = sample();
    let json = serde_json::to_string(&req).unwrap();

    for uri in ["/api/render", "/api/render?format=png"] {
        let a = post(&st, uri, json.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.content_type, "image/png");
        assert_eq!(a.disposition, r#"attachment; filename="attention.png""#);
        assert!(a.body.starts_with(PNG_SIGNATURE));
        assert_eq!(&a.body[12..16], b"IHDR");
        let width = u32::from_be_bytes(a.body[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(a.body[20..24].try_into().unwrap());
        assert!(width > 100 && height > 100, "{width}x{height}");
    }

    let a = post(&st, "/api/render?format=svg", json.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "image/svg+xml");
    assert_eq!(a.disposition, r#"attachment; filename="attention.svg""#);
    let svg = String::from_utf8(a.body).unwrap();
    assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.contains("Le chat") && svg.trim_end().ends_with("</svg>"));

    let a = post(&st, "/api/render?format=json", json.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("application/json"));
    assert_eq!(a.disposition, r#"attachment; filename="attention.json""#);
    assert_eq!(
        serde_json::from_slice::<RenderRequest>(&a.body).unwrap(),
        req
    );

    let a = post(&st, "/api/render?format=CSV", json).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "text/csv; charset=utf-8");
    assert_eq!(a.disposition, r#"attachment; filename="attention.csv""#);
    let csv = String::from_utf8(a.body).unwrap();
    // One header line, one line per target token, and the line break inside "two\nlines".
    assert_eq!(csv.lines().count(), 1 + req.target_tokens.len() + 1);
    assert!(
        csv.starts_with("target\\source,\"\u{2581}a,\"\"b\"\"\",\u{2581}cat,\"two\nlines\",</s>\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\n\"\u{2581}chat, \"\"c\"\"\",0.05,0.9,0,0.05\n"),
        "{csv}"
    );
    let records = parse_csv(&csv);
    assert_eq!(records.len(), 1 + req.target_tokens.len());
    assert_eq!(records[0][0], "target\\source");
    assert_eq!(records[0][1..], req.source_tokens[..]);
    for (record, (token, row)) in records[1..]
        .iter()
        .zip(req.target_tokens.iter().zip(&req.attention))
    {
        assert_eq!(&record[0], token);
        let weights: Vec<f32> = record[1..].iter().map(|w| w.parse().unwrap()).collect();
        assert_eq!(&weights, row);
    }
}

#[tokio::test]
async fn float_error_above_one_is_clamped_and_defaults_apply() {
    let (st, _d) = state();
    let body =
        r#"{"source_tokens":["a","b"],"target_tokens":["c"],"attention":[[1.0000002,-0.0000001]]}"#;
    let a = post(&st, "/api/render?format=json", body).await;
    assert_eq!(a.status, StatusCode::OK);
    let echoed: RenderRequest = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(echoed.attention, vec![vec![1.0, 0.0]]);
    assert_eq!(
        (echoed.title, echoed.scale, echoed.palette),
        (None, None, None)
    );
    let a = post(&st, "/api/render", body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.starts_with(PNG_SIGNATURE));
}

/// Posts `body` (to `?format=png` unless `uri` says otherwise) and expects a 400 with `code`,
/// whose message contains `hint`.
async fn expect_400(st: &AppState, uri: &str, body: &str, code: &str, hint: &str) {
    let a = post(st, uri, body.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri} {body}");
    assert!(a.content_type.starts_with("application/json"), "{body}");
    let e: ErrorBody = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(e.error, code, "{body}: {}", e.message);
    assert!(e.message.contains(hint), "{body}: {}", e.message);
}

#[tokio::test]
async fn bad_render_requests_get_a_400_json_error() {
    let (st, _d) = state();
    let png = "/api/render?format=png";
    let doc = |src: &str, tgt: &str, att: &str, extra: &str| {
        format!(r#"{{"source_tokens":{src},"target_tokens":{tgt},"attention":{att}{extra}}}"#)
    };
    let ok = |extra: &str| doc(r#"["a","b"]"#, r#"["c"]"#, "[[0.5,0.5]]", extra);
    let bad = "invalid_render";
    expect_400(
        &st,
        png,
        &doc("[]", r#"["c"]"#, "[[]]", ""),
        bad,
        "source_tokens is empty",
    )
    .await;
    expect_400(
        &st,
        png,
        &doc(r#"["a"]"#, "[]", "[]", ""),
        bad,
        "target_tokens is empty",
    )
    .await;
    expect_400(
        &st,
        png,
        &doc(r#"["a","b"]"#, r#"["c","d"]"#, "[[0.5,0.5]]", ""),
        bad,
        "one row per target token",
    )
    .await;
    expect_400(
        &st,
        png,
        &doc(r#"["a","b"]"#, r#"["c","d"]"#, "[[0.5,0.5],[1]]", ""),
        bad,
        "one weight per source token",
    )
    .await;
    for weights in ["[[1.5,0]]", "[[-0.2,1]]", "[[1e39,0]]"] {
        expect_400(
            &st,
            png,
            &doc(r#"["a","b"]"#, r#"["c"]"#, weights, ""),
            bad,
            "[0, 1]",
        )
        .await;
    }
    let many: Vec<String> = (0..=attnscope::render::MAX_TOKENS)
        .map(|i| format!("t{i}"))
        .collect();
    let row = format!("[{}]", vec!["0"; many.len()].join(","));
    expect_400(
        &st,
        png,
        &doc(
            &serde_json::to_string(&many).unwrap(),
            r#"["c"]"#,
            &format!("[{row}]"),
            "",
        ),
        bad,
        "at most 512",
    )
    .await;
    let title = format!(
        r#","title":"{}""#,
        "x".repeat(attnscope::render::MAX_TITLE_CHARS + 1)
    );
    expect_400(&st, png, &ok(&title), bad, "shorten").await;
    expect_400(
        &st,
        "/api/render?format=gif",
        &ok(""),
        "unknown_format",
        "png, svg, json or csv",
    )
    .await;
    expect_400(
        &st,
        "/api/render?fmt=svg",
        &ok(""),
        bad,
        "format=png|svg|json|csv",
    )
    .await;
    expect_400(
        &st,
        png,
        &ok(r#","scale":"cubic""#),
        "unknown_scale",
        "linear or log",
    )
    .await;
    expect_400(
        &st,
        png,
        &ok(r#","palette":"jet""#),
        "unknown_palette",
        "viridis",
    )
    .await;
    expect_400(
        &st,
        png,
        &ok(r#","colour":"red""#),
        "invalid_json",
        "colour",
    )
    .await;
    expect_400(&st, png, r#"{"source_tokens":"#, "invalid_json", "JSON").await;
}

#[tokio::test]
async fn the_render_body_limit_takes_a_200x200_matrix_and_no_more_than_its_limit() {
    let (st, _d) = state();
    let n = 200;
    let tokens: Vec<String> = (0..n).map(|i| format!("\u{2581}w{i}")).collect();
    let attention: Vec<Vec<f32>> = (0..n)
        .map(|r| {
            (0..n)
                .map(|c| if r == c { 0.5 } else { 0.5 / (n - 1) as f32 })
                .collect()
        })
        .collect();
    let req = RenderRequest {
        source_tokens: tokens.clone(),
        target_tokens: tokens,
        attention,
        title: None,
        scale: None,
        palette: None,
        candidates: Vec::new(),
    };
    let json = serde_json::to_string(&req).unwrap();
    assert!(json.len() > 4 * attnscope::MAX_BODY_BYTES, "{}", json.len());
    let a = post(&st, "/api/render?format=png", json.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.starts_with(PNG_SIGNATURE));
    // The larger limit is this route's only.
    let translate = format!(r#"{{"text":"{}"}}"#, "a ".repeat(attnscope::MAX_BODY_BYTES));
    let a = post(&st, "/api/translate", translate).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

    let over = format!(
        r#"{{"source_tokens":["a"],"target_tokens":["b"],"attention":[[1]],"title":"{}"}}"#,
        "x".repeat(attnscope::render::MAX_BODY_BYTES)
    );
    let a = post(&st, "/api/render", over).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let e: ErrorBody = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(e.error, "body_too_large");
    assert!(
        e.message
            .contains(&attnscope::render::MAX_BODY_BYTES.to_string())
    );
}

#[test]
fn translate_json_piped_into_render_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    attnscope_model::fixtures::write_tiny_model(&dir.path().join("tiny"), 1).unwrap();
    let models = dir.path().to_str().unwrap();
    let translate = |extra: &[&str]| {
        let (ok, json, err) = run(
            attnscope()
                .args(["--models", models, "translate", "--model", "tiny"])
                .args(["--format", "json"])
                .args(extra),
            b"I am cold.\n",
        );
        assert!(ok, "{err}");
        json
    };
    let json = translate(&[]);
    let png = dir.path().join("attention.png");
    let (ok, _, err) = run(
        attnscope().args(["render", "--output", png.to_str().unwrap()]),
        &json,
    );
    assert!(ok, "{err}");
    assert!(err.contains("wrote"), "{err}");
    assert!(std::fs::read(&png).unwrap().starts_with(PNG_SIGNATURE));

    // The format from --format, to stdout; the doc's tokens, with the title, scale and
    // palette the flags give.
    let input = dir.path().join("t.json");
    std::fs::write(&input, &json).unwrap();
    let (ok, out, err) = run(
        attnscope()
            .args(["render", "--input", input.to_str().unwrap()])
            .args(["--format", "json", "--title", "T", "--scale", "log"])
            .args(["--palette", "greys"]),
        b"",
    );
    assert!(ok, "{err}");
    let t: attnscope_protocol::TranslateResponse = serde_json::from_slice(&json).unwrap();
    let r: RenderRequest = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (r.source_tokens, r.target_tokens),
        (t.source_tokens, t.target_tokens)
    );
    assert_eq!(
        (r.title.as_deref(), r.scale.as_deref(), r.palette.as_deref()),
        (Some("T"), Some("log"), Some("greys"))
    );

    // A beam hypothesis, as SVG picked by the file extension.
    let beam = translate(&["--beam", "3"]);
    let svg = dir.path().join("h1.svg");
    let (ok, _, err) = run(
        attnscope().args(["render", "--hypothesis", "1", "-o", svg.to_str().unwrap()]),
        &beam,
    );
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    // Errors say what to do.
    let fails = |args: &[&str], stdin: &[u8], hint: &str| {
        let (ok, _, err) = run(attnscope().arg("render").args(args), stdin);
        assert!(!ok && err.contains(hint), "{args:?}: {err}");
    };
    fails(&["--hypothesis", "0", "--format", "csv"], &json, "--beam");
    fails(
        &["--hypothesis", "9", "--format", "csv"],
        &beam,
        "there is no hypothesis 9",
    );
    fails(&["-o", "x.gif"], &json, "--format png, svg, json or csv");
    fails(
        &["--format", "csv", "--palette", "jet"],
        &json,
        "viridis, cividis or greys",
    );
    let two = [json.as_slice(), json.as_slice()].concat();
    fails(&["--format", "csv"], &two, "more than one JSON document");
    fails(&["--format", "csv"], b"", "no JSON document");
}

#[tokio::test]
async fn candidates_travel_in_the_json_and_csv_exports() {
    let (st, _d) = state();
    let cand = |token: &str, p: f32| attnscope_protocol::Candidate {
        token: token.into(),
        log_prob: p.ln(),
    };
    let req = RenderRequest {
        candidates: vec![
            vec![cand("\u{2581}le", 0.75), cand("\u{2581}la", 0.25)],
            vec![cand("\u{2581}chat, \"c\"", 0.5)],
            vec![],
        ],
        ..sample()
    };
    let json = post(
        &st,
        "/api/render?format=json",
        serde_json::to_string(&req).unwrap(),
    )
    .await;
    assert_eq!(json.status, StatusCode::OK);
    let back: RenderRequest = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(back.candidates, req.candidates);
    let csv = post(
        &st,
        "/api/render?format=csv",
        serde_json::to_string(&req).unwrap(),
    )
    .await;
    let records = parse_csv(&String::from_utf8(csv.body).unwrap());
    assert_eq!(records[0].last().unwrap(), "candidates");
    assert_eq!(
        records[1].last().unwrap(),
        "\u{2581}le 0.75 \u{2581}la 0.25"
    );
    assert_eq!(records[2].last().unwrap(), "\u{2581}chat, \"c\" 0.5");
    assert_eq!(records[3].last().unwrap(), "");
    assert!(records.iter().all(|r| r.len() == records[0].len()));

    // One list per row, or none; log-probabilities at most 0.
    let short = RenderRequest {
        candidates: vec![vec![]],
        ..sample()
    };
    expect_400(
        &st,
        "/api/render?format=json",
        &serde_json::to_string(&short).unwrap(),
        "invalid_render",
        "one list per target token",
    )
    .await;
    let positive = RenderRequest {
        candidates: vec![vec![cand("x", 2.0)], vec![], vec![]],
        ..sample()
    };
    expect_400(
        &st,
        "/api/render?format=csv",
        &serde_json::to_string(&positive).unwrap(),
        "invalid_render",
        "at most 0",
    )
    .await;
}
