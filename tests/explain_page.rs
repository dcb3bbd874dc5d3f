//! Attribution on the real page in headless Chromium: the "Attention vs attribution" preset
//! puts a run's attention beside an attribution of the same translation, every cell shows
//! what the API computes, each row carries its τ with the attention, the permalink restores
//! it, and the "Heatmap shows" picker switches method and translates again.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::time::{Duration, Instant};

use attnscope_protocol::TranslateResponse;
use attnscope_tests::page::*;
use fantoccini::{Client, Locator};

const TEXT: &str = "I am cold.";

/// The API's rows of `method` for `TEXT`, as the page should show them.
fn rows_of(r: &TranslateResponse, method: &str) -> Vec<Vec<f32>> {
    r.steps
        .iter()
        .map(|s| {
            s.attributions
                .iter()
                .find(|a| a.method == method)
                .map(|a| a.weights.clone())
                .unwrap_or_else(|| panic!("step {} has no {method} row", s.index))
        })
        .collect()
}

fn assert_rows_close(shown: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(shown.len(), want.len(), "{what}: rows");
    for (t, (a, b)) in shown.iter().zip(want).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: row {t}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{what}: row {t}: {a:?} vs {b:?}");
        }
    }
}

async fn click_when_ready(c: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(button) => button.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "cannot click {css}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_and_attribution_side_by_side_in_one_click_by_permalink_and_by_picker() {
    let (addr, _driver, c) = session().await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    click_when_ready(&c, "[data-testid=preset-attribution]").await;
    for run in ["run-a", "run-b"] {
        assert_eq!(wait_for_run(&c, run).await, "done");
    }
    let want = api_translate(
        addr,
        serde_json::json!({ "text": TEXT, "explain": ["integrated_gradients", "erasure"] }),
    )
    .await;
    // Left: the attention; right: integrated gradients of the same translation.
    assert_rows_close(
        &heatmap_rows(&c, "heatmap").await,
        &want.attention,
        "attention",
    );
    let ig = rows_of(&want, "integrated_gradients");
    assert_rows_close(
        &heatmap_rows(&c, "heatmap-b").await,
        &ig,
        "integrated gradients",
    );
    for testid in ["run-a", "run-b"] {
        let shown = text_of(
            &c,
            &format!("[data-testid={testid}] [data-testid=translation]"),
        )
        .await;
        assert_eq!(shown.trim(), want.translation, "{testid}");
    }
    // Each attribution row says how it agrees with the attention; attention rows do not.
    let stats = c
        .find_all(Locator::Css("[data-testid=heatmap-b] .row-stat"))
        .await
        .unwrap();
    assert_eq!(stats.len(), want.steps.len());
    for (stat, step) in stats.iter().zip(&want.steps) {
        let tau = stat.attr("data-tau").await.unwrap();
        let api = step.attributions[0].tau.map(|t| format!("{t:.3}"));
        assert_eq!(tau, api, "step {}", step.index);
    }
    assert!(
        c.find_all(Locator::Css("[data-testid=heatmap] .row-stat[data-tau]"))
            .await
            .unwrap()
            .is_empty()
    );
    let about = text_of(&c, "[data-testid=run-b] [data-testid=show-about]").await;
    assert!(about.contains("baseline"), "{about}");
    let meta = text_of(&c, "[data-testid=run-b] [data-testid=meta]").await;
    assert!(meta.contains("integrated gradients vs attention"), "{meta}");
    c.execute(
        "document.querySelector('[data-testid=run-a] [data-testid=show-select]').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    save_screenshot(&c, "attribution.png").await;

    // The permalink restores the comparison with the attribution.
    let url = c.current_url().await.unwrap();
    assert!(
        url.query()
            .unwrap_or("")
            .contains("show2=integrated_gradients"),
        "{url}"
    );
    c.goto("about:blank").await.unwrap();
    c.goto(url.as_str()).await.unwrap();
    for run in ["run-a", "run-b"] {
        assert_eq!(wait_for_run(&c, run).await, "done");
    }
    assert_rows_close(
        &heatmap_rows(&c, "heatmap-b").await,
        &ig,
        "integrated gradients, reloaded",
    );

    // The picker switches the first run to erasure and translates again.
    c.find(Locator::Css(
        "[data-testid=run-a] [data-testid=show-select]",
    ))
    .await
    .unwrap()
    .select_by_value("erasure")
    .await
    .unwrap();
    let erasure = rows_of(&want, "erasure");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = heatmap_rows(&c, "heatmap").await;
        let close = shown.len() == erasure.len()
            && shown.iter().zip(&erasure).all(|(a, b)| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
            });
        if close {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "erasure rows not shown: {shown:?} vs {erasure:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("show=erasure"), "{url}");
    c.close().await.unwrap();
}
