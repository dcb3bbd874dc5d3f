//! Helpers for driving the real page in headless Chromium: the session, waiting for a run
//! or a heatmap, reading cells and attributes, and asking the API what the page should show.
//! Test helpers: a failure panics, with the reason, and fails the test that called it.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use attnscope_protocol::TranslateResponse;
use fantoccini::{Client, Locator};

use crate::{browser, root, start_chromedriver, start_server};

/// What the API answers for `text` with the default model.
pub async fn expected(addr: std::net::SocketAddr, text: &str) -> TranslateResponse {
    expected_with(addr, text, None).await
}

/// What the API answers for `text` with `model` (the default when `None`).
pub async fn expected_with(
    addr: std::net::SocketAddr,
    text: &str,
    model: Option<&str>,
) -> TranslateResponse {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/translate"))
        .json(&serde_json::json!({ "text": text, "model": model }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Attribute `name` of `el`, parsed; panics naming the attribute when it is absent or
/// malformed.
pub async fn attr<T: std::str::FromStr>(el: &fantoccini::elements::Element, name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let raw = el
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {name} attribute"));
    raw.parse()
        .unwrap_or_else(|e| panic!("{name}={raw:?} does not parse: {e:?}"))
}

/// A real server with the shipped models, chromedriver, and a headless Chromium session
/// (keep the driver alive as long as the session).
pub async fn session() -> (std::net::SocketAddr, crate::Chromedriver, Client) {
    let addr = start_server().await.unwrap();
    let driver = start_chromedriver().await.unwrap();
    let c = browser(&driver).await.unwrap();
    (addr, driver, c)
}

/// Waits until the heatmap has `n` cells and the translation is `translation`.
pub async fn wait_for_heatmap(
    c: &Client,
    n: usize,
    translation: &str,
) -> Vec<fantoccini::elements::Element> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cells = c
            .find_all(Locator::Css("[data-testid=heatmap] .cell"))
            .await
            .unwrap();
        let shown = match c.find(Locator::Css("[data-testid=translation]")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if cells.len() == n && shown.trim() == translation {
            return cells;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s: {} cells (want {n}), translation {shown:?} (want {translation:?})",
            cells.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves a screenshot of the page as `target/screenshots/<name>` (best effort).
pub async fn save_screenshot(c: &Client, name: &str) {
    let dir = root().join("target").join("screenshots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(dir.join(name), png);
    }
}

/// The `data-weight`s of a heatmap's cells, as rows.
pub async fn heatmap_rows(c: &Client, testid: &str) -> Vec<Vec<f32>> {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for cell in c
        .find_all(Locator::Css(&format!("[data-testid={testid}] .cell")))
        .await
        .unwrap()
    {
        let tgt: usize = attr(&cell, "data-tgt").await;
        let w: f32 = attr(&cell, "data-weight").await;
        if rows.len() <= tgt {
            rows.resize(tgt + 1, Vec::new());
        }
        rows[tgt].push(w);
    }
    rows
}

/// Waits until the run panel `testid` has finished (or failed).
pub async fn wait_for_run(c: &Client, testid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(panel) = c
            .find(Locator::Css(&format!("[data-testid={testid}]")))
            .await
        {
            let state = panel.attr("data-state").await.unwrap().unwrap_or_default();
            if state == "done" || state == "error" {
                return state;
            }
        }
        assert!(Instant::now() < deadline, "{testid} not done after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `data-*` attribute `name` of every element matching `css`, parsed as numbers.
pub async fn attrs(c: &Client, css: &str, name: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(attr(&e, name).await);
    }
    out
}

/// The API's translation of `body`.
pub async fn api_translate(
    addr: std::net::SocketAddr,
    body: serde_json::Value,
) -> TranslateResponse {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/translate"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The first run's translation as shown.
pub async fn shown_translation(c: &Client) -> String {
    c.find(Locator::Css(
        "[data-testid=run-a] [data-testid=translation]",
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
    .trim()
    .to_owned()
}

/// Clicks the element matching `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the element matching `css`.
pub async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the first heatmap has `n` rows; returns their weights.
pub async fn wait_for_rows(c: &Client, n: usize) -> Vec<Vec<f32>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = heatmap_rows(c, "heatmap").await;
        if rows.len() == n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the heatmap has {} rows, want {n}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the page at `/?query` and waits until its first run is done.
pub async fn open_run(c: &Client, addr: std::net::SocketAddr, query: &str) {
    c.goto(&format!("http://{addr}/?{query}")).await.unwrap();
    assert_eq!(wait_for_run(c, "run-a").await, "done");
}

/// Asserts the layer x head grid shows `maps` cross-attention maps, each `rows` target by
/// `cols` source tokens.
pub async fn assert_cross_grid(c: &Client, maps: usize, rows: usize, cols: usize) {
    let css = "[data-testid=head-map]";
    assert_eq!(attrs(c, css, "data-rows").await, vec![rows; maps]);
    assert_eq!(attrs(c, css, "data-cols").await, vec![cols; maps]);
}
