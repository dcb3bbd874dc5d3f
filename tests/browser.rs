//! The real page in headless Chromium through WebDriver, against a real server with the
//! shipped default model. Needs `dist/` (Trunk's output) and Debian's chromium-driver;
//! `scripts/test.sh` provides both. The page helpers are in [`attnscope_tests::page`].
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::time::{Duration, Instant};

use attnscope_protocol::TranslateResponse;
use attnscope_tests::page::*;
use attnscope_tests::{browser, dist_dir, start_chromedriver, start_server};
use fantoccini::Locator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_a_sentence_streams_a_translation_and_a_full_heatmap() {
    assert!(
        dist_dir().join("index.html").is_file(),
        "{} has no index.html: build the frontend with `trunk build --release` (scripts/test.sh does)",
        dist_dir().display()
    );
    let (addr, _driver, c) = session().await;

    let text = "I am cold.";
    let want = expected(addr, text).await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid=source-input]"))
        .await
        .unwrap();
    input.send_keys(text).await.unwrap();
    c.find(Locator::Css("[data-testid=translate-button]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let (rows, cols) = (want.target_tokens.len(), want.source_tokens.len());
    let cells = wait_for_heatmap(&c, rows * cols, &want.translation).await;
    let mut seen = std::collections::HashSet::new();
    for cell in &cells {
        let src: usize = attr(cell, "data-src").await;
        let tgt: usize = attr(cell, "data-tgt").await;
        assert!(src < cols && tgt < rows);
        assert!(seen.insert((src, tgt)), "cell ({src}, {tgt}) twice");
    }
    save_screenshot(&c, "translate.png").await;

    // The URL now carries the sentence; opening such a link translates at once.
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("text="), "{url}");
    let other = "Where is the train station?";
    let want = expected(addr, other).await;
    c.goto(&format!(
        "http://{addr}/?text=Where%20is%20the%20train%20station%3F"
    ))
    .await
    .unwrap();
    wait_for_heatmap(
        &c,
        want.target_tokens.len() * want.source_tokens.len(),
        &want.translation,
    )
    .await;
    save_screenshot(&c, "permalink.png").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_paragraph_is_translated_sentence_by_sentence_in_blocks() {
    let (addr, _driver, c) = session().await;
    let text = "I am cold. Where is the train station? We will go to the beach tomorrow.";
    let want = expected(addr, text).await;
    assert_eq!(want.sentences.len(), 3, "{:?}", want.sentences);
    c.goto(&format!("http://{addr}/")).await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid=source-input]"))
        .await
        .unwrap();
    input.send_keys(text).await.unwrap();
    click(&c, "[data-testid=translate-button]").await;
    let (rows, cols) = (want.target_tokens.len(), want.source_tokens.len());
    let cells = wait_for_heatmap(&c, rows * cols, &want.translation).await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");

    // Each sentence is listed with its own translation.
    let items = c
        .find_all(Locator::Css("[data-testid=sentences] li"))
        .await
        .unwrap();
    assert_eq!(items.len(), 3);
    for (item, s) in items.iter().zip(&want.sentences) {
        let shown = item
            .find(Locator::Css("[data-testid=sentence-translation]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(Some(shown.trim()), s.translation.as_deref());
    }
    // The matrix is block diagonal: exactly the cells outside a row's sentence are hatched,
    // and they hold no weight.
    let mut off = 0;
    for cell in &cells {
        let src: usize = attr(cell, "data-src").await;
        let tgt: usize = attr(cell, "data-tgt").await;
        let w: f32 = attr(cell, "data-weight").await;
        let class = cell.attr("class").await.unwrap().unwrap_or_default();
        let sentence = want.steps[tgt].sentence;
        let [a, b] = want.sentences[sentence].source;
        let outside = !(a..b).contains(&src);
        assert_eq!(
            class.contains("off"),
            outside,
            "cell ({tgt}, {src}): {class}"
        );
        if outside {
            assert_eq!(w, 0.0);
            off += 1;
        }
    }
    assert!(off > 0);
    let starts = c
        .find_all(Locator::Css("[data-testid=heatmap] .hm-row.sent-start"))
        .await
        .unwrap();
    assert_eq!(
        starts.len(),
        2,
        "a rule before the second and third sentence"
    );
    c.execute(
        "document.querySelector('[data-testid=sentences]').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    save_screenshot(&c, "paragraph.png").await;

    // Segmentation off: one sequence, no blocks, and the permalink says so.
    click(&c, "[data-testid=segment-toggle]").await;
    click(&c, "[data-testid=translate-button]").await;
    let whole = api_translate(addr, serde_json::json!({ "text": text, "segment": false })).await;
    wait_for_heatmap(
        &c,
        whole.target_tokens.len() * whole.source_tokens.len(),
        &whole.translation,
    )
    .await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    assert!(
        c.find_all(Locator::Css("[data-testid=heatmap] .cell.off"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.find_all(Locator::Css("[data-testid=sentences] li"))
            .await
            .unwrap()
            .is_empty()
    );
    let url = c.current_url().await.unwrap();
    assert!(url.query().unwrap_or("").contains("seg=0"), "{url}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_vs_hard_is_one_click_and_its_permalink_restores_the_comparison() {
    let (addr, _driver, c) = session().await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    // The presets appear once the model list has loaded (and may be redrawn then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let clicked = match c.find(Locator::Css("[data-testid=preset-soft-hard]")).await {
            Ok(button) => button.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "cannot click the preset: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for run in ["run-a", "run-b"] {
        assert_eq!(wait_for_run(&c, run).await, "done");
    }
    let mode = |testid: &'static str| {
        let c = c.clone();
        async move {
            let panel = c
                .find(Locator::Css(&format!("[data-testid={testid}]")))
                .await
                .unwrap();
            attr::<String>(&panel, "data-mode").await
        }
    };
    assert_eq!(mode("run-a").await, "soft");
    assert_eq!(mode("run-b").await, "hard");

    // Hard attention: every row is one-hot. Soft: rows sum to 1 and some row is spread out.
    let hard = heatmap_rows(&c, "heatmap-b").await;
    assert!(!hard.is_empty());
    for row in &hard {
        assert_eq!(row.iter().filter(|w| **w == 1.0).count(), 1, "{row:?}");
        assert_eq!(row.iter().filter(|w| **w == 0.0).count(), row.len() - 1);
    }
    let soft = heatmap_rows(&c, "heatmap").await;
    for row in &soft {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-3, "{row:?}");
    }
    assert!(soft.iter().any(|r| r.iter().all(|w| *w < 0.99)));
    // The per-step statistics agree: zero entropy for hard rows.
    for stat in c
        .find_all(Locator::Css("[data-testid=heatmap-b] .row-stat"))
        .await
        .unwrap()
    {
        assert_eq!(attr::<String>(&stat, "data-entropy").await, "0.000");
    }
    // Both translations are what the API gives for these settings.
    for (testid, attention) in [("run-a", "soft"), ("run-b", "hard")] {
        let want: TranslateResponse = reqwest::Client::new()
            .post(format!("http://{addr}/api/translate"))
            .json(&serde_json::json!({ "text": "I am cold.", "attention": attention }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let shown = c
            .find(Locator::Css(&format!(
                "[data-testid={testid}] [data-testid=translation]"
            )))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(shown.trim(), want.translation, "{testid}");
    }
    save_screenshot(&c, "compare-soft-hard.png").await;

    // The address bar now restores the whole comparison.
    let url = c.current_url().await.unwrap();
    let query = url.query().unwrap_or("").to_owned();
    for part in ["compare=1", "mode=soft", "mode2=hard"] {
        assert!(query.contains(part), "{url}");
    }
    c.goto("about:blank").await.unwrap();
    c.goto(url.as_str()).await.unwrap();
    for run in ["run-a", "run-b"] {
        assert_eq!(wait_for_run(&c, run).await, "done");
    }
    assert_eq!(mode("run-b").await, "hard");
    assert_eq!(heatmap_rows(&c, "heatmap-b").await, hard);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transformer_grid_shows_every_layer_and_head_with_the_causal_mask() {
    let addr = start_server().await.unwrap();
    let models: Vec<attnscope_protocol::ModelInfo> =
        reqwest::get(format!("http://{addr}/api/models"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let info = models
        .iter()
        .find(|m| m.name == "transformer")
        .expect("the shipped transformer model");
    let (layers, heads) = (info.layers, info.heads);
    assert!(layers > 0 && heads > 0);
    let want = expected_with(addr, "I am cold.", Some("transformer")).await;
    let (t, s) = (want.target_tokens.len(), want.source_tokens.len());

    let driver = start_chromedriver().await.unwrap();
    let c = browser(&driver).await.unwrap();
    open_run(&c, addr, "text=I%20am%20cold.&model=transformer").await;
    let maps = "[data-testid=head-map]";
    // Cross-attention: one target x source map per layer and head.
    assert_cross_grid(&c, layers * heads, t, s).await;
    save_screenshot(&c, "transformer-grid.png").await;

    // Masked decoder self-attention: target x target, the upper triangle greyed.
    c.find(Locator::Css("[data-testid=kind-decoder-self]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(attrs(&c, maps, "data-cols").await, vec![t; layers * heads]);
    c.find(Locator::Css(maps))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let zoom = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-testid=head-zoom]"))
        .await
        .unwrap();
    let masked = zoom.find_all(Locator::Css(".zcell.masked")).await.unwrap();
    assert_eq!(masked.len(), t * (t - 1) / 2);
    let mut sums = vec![0f32; t];
    for cell in zoom.find_all(Locator::Css(".zcell")).await.unwrap() {
        let r: usize = attr(&cell, "data-row").await;
        let w: f32 = attr(&cell, "data-weight").await;
        sums[r] += w;
    }
    for (r, sum) in sums.iter().enumerate() {
        assert!((sum - 1.0).abs() < 0.01, "row {r} sums to {sum}");
    }
    save_screenshot(&c, "transformer-zoom.png").await;

    // The mean over heads: one map per layer. Encoder self-attention: source x source.
    c.find(Locator::Css(
        "[data-testid=heads-aggregate] option[value=mean-heads]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    assert_eq!(attrs(&c, maps, "data-rows").await, vec![t; layers]);
    c.find(Locator::Css("[data-testid=kind-encoder]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(attrs(&c, maps, "data-rows").await, vec![s; layers]);
    assert_eq!(attrs(&c, maps, "data-cols").await, vec![s; layers]);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_attention_on_a_cell_or_a_target_prefix_decodes_again() {
    use fantoccini::key::Key;
    let (addr, _driver, c) = session().await;
    let text = "I am cold.";
    let plain = api_translate(addr, serde_json::json!({ "text": text })).await;
    c.goto(&format!("http://{addr}/?text=I%20am%20cold."))
        .await
        .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    assert_eq!(shown_translation(&c).await, plain.translation);

    // Click the cell (step 1, source 0) with what-if on.
    click(&c, "[data-testid=whatif-toggle]").await;
    click(
        &c,
        "[data-testid=heatmap] .cell[data-tgt='1'][data-src='0']",
    )
    .await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let want = api_translate(
        addr,
        serde_json::json!({ "text": text, "interventions": [{ "step": 1, "source": 0 }] }),
    )
    .await;
    assert_eq!(shown_translation(&c).await, want.translation);
    let rows = heatmap_rows(&c, "heatmap").await;
    assert_eq!(rows[1][0], 1.0, "{:?}", rows[1]);
    assert!(rows[1][1..].iter().all(|w| *w == 0.0));
    let label = c
        .find(Locator::Css(
            "[data-testid=heatmap] .tgt-label[data-row='1']",
        ))
        .await
        .unwrap();
    assert!(attr::<String>(&label, "class").await.contains("intervened"));
    c.find(Locator::Css("[data-testid=whatif]")).await.unwrap();
    save_screenshot(&c, "what-if.png").await;

    // Undo restores the plain translation.
    click(&c, "[data-testid=whatif-reset]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    assert_eq!(shown_translation(&c).await, plain.translation);
    assert!(c.find(Locator::Css("[data-testid=whatif]")).await.is_err());

    // The keyboard does the same: focus the grid, move down and right, press Enter.
    let grid = c.find(Locator::Css("[data-testid=heatmap]")).await.unwrap();
    // Focus starts at the first cell (a click would start where it landed).
    c.execute(
        "document.querySelector('[data-testid=heatmap]').focus()",
        vec![],
    )
    .await
    .unwrap();
    let keys = format!(
        "{}{}{}",
        char::from(Key::Down),
        char::from(Key::Right),
        char::from(Key::Enter)
    );
    grid.send_keys(&keys).await.unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let rows = heatmap_rows(&c, "heatmap").await;
    assert_eq!(rows[1][1], 1.0, "{:?}", rows[1]);
    click(&c, "[data-testid=whatif-reset]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");

    // A target prefix: the translation starts with it and the rest is decoded freely.
    c.find(Locator::Css("[data-testid=prefix-input]"))
        .await
        .unwrap()
        .send_keys("Il")
        .await
        .unwrap();
    click(&c, "[data-testid=prefix-button]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let want = api_translate(
        addr,
        serde_json::json!({ "text": text, "target_prefix": "Il" }),
    )
    .await;
    assert_eq!(shown_translation(&c).await, want.translation);
    assert!(want.translation.starts_with("Il"), "{}", want.translation);
    let first = c
        .find(Locator::Css(
            "[data-testid=heatmap] .tgt-label[data-row='0']",
        ))
        .await
        .unwrap();
    assert!(attr::<String>(&first, "class").await.contains("forced"));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_hypotheses_are_listed_and_choosing_one_shows_its_attention() {
    let (addr, _driver, c) = session().await;
    let text = "She reads a book every evening.";
    let want = api_translate(addr, serde_json::json!({ "text": text, "beam": 4 })).await;
    assert!(want.hypotheses.len() > 1, "{:?}", want.hypotheses);
    c.goto(&format!(
        "http://{addr}/?text=She%20reads%20a%20book%20every%20evening.&beam=4"
    ))
    .await
    .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let items = c
        .find_all(Locator::Css("[data-testid=hypothesis]"))
        .await
        .unwrap();
    assert_eq!(items.len(), want.hypotheses.len());
    assert_eq!(
        items[0].attr("aria-pressed").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(shown_translation(&c).await, want.translation);

    items[1].click().await.unwrap();
    let second = &want.hypotheses[1];
    let deadline = Instant::now() + Duration::from_secs(10);
    while shown_translation(&c).await != second.translation {
        assert!(
            Instant::now() < deadline,
            "the second hypothesis is not shown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = heatmap_rows(&c, "heatmap").await;
    assert_eq!(rows.len(), second.attention.len());
    for (shown, row) in rows.iter().zip(&second.attention) {
        for (a, b) in shown.iter().zip(row) {
            assert!((a - b).abs() < 1e-4, "{shown:?} vs {row:?}");
        }
    }
    let items = c
        .find_all(Locator::Css("[data-testid=hypothesis]"))
        .await
        .unwrap();
    assert_eq!(
        items[1].attr("aria-pressed").await.unwrap().as_deref(),
        Some("true")
    );
    save_screenshot(&c, "beam.png").await;
    c.close().await.unwrap();
}
