//! The page's views in headless Chromium against a real server with the shipped default
//! model: export, words, threshold and alignment lines, frame time while streaming a long
//! input, and errors on a phone-sized page in dark mode. Needs what `browser.rs` needs;
//! the page helpers are in [`attnscope_tests::page`].
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::time::{Duration, Instant};

use attnscope_tests::page::*;
use attnscope_tests::{root, start_chromedriver, start_server};
use fantoccini::{Client, Locator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_buttons_download_the_heatmap_as_png_svg_json_and_csv() {
    let addr = start_server().await.unwrap();
    let driver = start_chromedriver().await.unwrap();
    let downloads = root()
        .join("target")
        .join(format!("downloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).unwrap();
    let c = attnscope_tests::browser_with_downloads(&driver, Some(&downloads))
        .await
        .unwrap();
    let want = api_translate(addr, serde_json::json!({ "text": "I am cold." })).await;
    c.goto(&format!("http://{addr}/?text=I%20am%20cold."))
        .await
        .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    for format in ["png", "svg", "json", "csv"] {
        click(&c, &format!("[data-testid=export-{format}]")).await;
        let file = downloads.join(format!("attention.{format}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !file.is_file() || std::fs::metadata(&file).unwrap().len() == 0 {
            assert!(
                Instant::now() < deadline,
                "{} was not downloaded",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Chromium writes to a temporary name, then renames: the file is complete now.
        let bytes = std::fs::read(&file).unwrap();
        match format {
            "png" => assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n")),
            "svg" => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
            "json" => {
                let doc: attnscope_protocol::RenderRequest =
                    serde_json::from_slice(&bytes).unwrap();
                assert_eq!(doc.target_tokens, want.target_tokens);
                assert_eq!(doc.source_tokens, want.source_tokens);
                assert_eq!(doc.attention.len(), want.attention.len());
                // Each row's candidates, as the API gave them.
                let cands: Vec<_> = want.steps.iter().map(|s| s.candidates.clone()).collect();
                assert_eq!(doc.candidates, cands);
                // The export carries the page's view: here the default scale and palette.
                assert_eq!(
                    (doc.scale.as_deref(), doc.palette.as_deref()),
                    (Some("linear"), Some("viridis"))
                );
            }
            _ => {
                let text = String::from_utf8(bytes).unwrap();
                assert_eq!(text.lines().count(), want.target_tokens.len() + 1, "{text}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&downloads);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_threshold_and_lines_views_redraw_and_survive_the_permalink() {
    let (addr, _driver, c) = session().await;
    let text = "She reads a book every evening.";
    let want = api_translate(addr, serde_json::json!({ "text": text })).await;
    let words = |pieces: &[String]| {
        pieces
            .iter()
            .enumerate()
            .filter(|(i, p)| *i == 0 || p.starts_with('\u{2581}') || p.as_str() == "</s>")
            .count()
    };
    c.goto(&format!(
        "http://{addr}/?text=She%20reads%20a%20book%20every%20evening."
    ))
    .await
    .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let grid = "[data-testid=heatmap]";
    let dims = |c: Client| async move {
        let g = c.find(Locator::Css(grid)).await.unwrap();
        (
            attr::<usize>(&g, "data-rows").await,
            attr::<usize>(&g, "data-cols").await,
        )
    };
    assert_eq!(
        dims(c.clone()).await,
        (want.target_tokens.len(), want.source_tokens.len())
    );

    // Words: pieces merged, rows still summing to 1.
    click(&c, "[data-testid=view-units] option[value=words]").await;
    assert_eq!(
        dims(c.clone()).await,
        (words(&want.target_tokens), words(&want.source_tokens))
    );
    for row in heatmap_rows(&c, "heatmap").await {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-3, "{row:?}");
    }

    // A threshold hides the weak cells.
    c.execute(
        "const r = document.querySelector('[data-testid=view-threshold]');
         r.value = '0.3'; r.dispatchEvent(new Event('input', { bubbles: true }));",
        vec![],
    )
    .await
    .unwrap();
    let mut hidden = 0;
    for cell in c.find_all(Locator::Css(".cell")).await.unwrap() {
        let w: f32 = attr(&cell, "data-weight").await;
        let style = cell.attr("style").await.unwrap().unwrap_or_default();
        assert_eq!(style.contains("transparent"), w < 0.3, "{w}: {style}");
        hidden += usize::from(w < 0.3);
    }
    assert!(hidden > 0);

    // Lines: one line per weight over the threshold.
    click(&c, "[data-testid=view-layout] option[value=lines]").await;
    let lines = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-testid=lines]"))
        .await
        .unwrap()
        .find_all(Locator::Css("line[data-weight]"))
        .await
        .unwrap();
    assert!(!lines.is_empty());
    for line in &lines {
        let w: f32 = attr(line, "data-weight").await;
        assert!(w >= 0.3);
    }
    save_screenshot(&c, "lines-words.png").await;

    // Translating again puts the view in the address bar; opening it restores the view.
    click(&c, "[data-testid=translate-button]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let url = c.current_url().await.unwrap();
    for part in ["layout=lines", "words=1", "threshold=0.30"] {
        assert!(url.as_str().contains(part), "{url}");
    }
    c.goto("about:blank").await.unwrap();
    c.goto(url.as_str()).await.unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let again = c
        .find_all(Locator::Css("[data-testid=lines] line[data-weight]"))
        .await
        .unwrap();
    assert_eq!(again.len(), lines.len());
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lines_layout_draws_the_models_chosen_alignment_and_says_its_aer() {
    let (addr, _driver, c) = session().await;
    let text = "The old man gave my sister a red bicycle. She was happy.";
    let want = api_translate(addr, serde_json::json!({ "text": text, "align": true })).await;
    let al = want
        .alignment
        .clone()
        .expect("the default model has a chosen alignment method (attnscope align-eval --save)");
    assert!(!al.links.is_empty());
    c.goto(&format!(
        "http://{addr}/?layout=lines&text={}",
        text.replace(' ', "%20")
    ))
    .await
    .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let svg = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-testid=lines]"))
        .await
        .unwrap();
    let drawn = svg.find_all(Locator::Css("line.word-link")).await.unwrap();
    assert_eq!(drawn.len(), al.links.len());
    // Each link joins the middles of its two words' pieces, in the API's order.
    let middle = |[a, b]: [usize; 2]| (a + b - 1) as f32 / 2.0;
    for (line, link) in drawn.iter().zip(&al.links) {
        let s: f32 = attr(line, "data-src").await;
        let t: f32 = attr(line, "data-tgt").await;
        assert_eq!((s, t), (middle(link.source), middle(link.target)));
    }
    let caption = text_of(&c, "[data-testid=alignment-caption]").await;
    assert!(caption.contains(&al.method), "{caption}");
    assert!(caption.contains(&format!("AER {:.1}", al.aer)), "{caption}");
    c.execute(
        "document.querySelector('[data-testid=lines]').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .unwrap();
    save_screenshot(&c, "alignment-lines.png").await;
    c.close().await.unwrap();
}

/// Not a test but a measurement (`scripts/bench-page.sh`): frame times while the page
/// streams the translation of a 200-piece input. Writes `target/bench/frames.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with scripts/bench-page.sh"]
async fn frame_time_while_streaming_a_200_piece_input() {
    let (addr, _driver, c) = session().await;
    let text = "The children played in the garden until it was dark outside. ".repeat(17);
    let want = api_translate(addr, serde_json::json!({ "text": text.trim() })).await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid=source-input]"))
        .await
        .unwrap();
    input.send_keys(text.trim()).await.unwrap();
    // Record the time between animation frames from the click until the stream is done.
    c.execute(
        "window.__loaf = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__loaf.push({start: e.startTime, dur: e.duration, render: e.renderStart ? e.startTime + e.duration - e.renderStart : 0, style: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0, scripts: e.scripts.map(s => [s.invoker, Math.round(s.duration), Math.round(s.forcedStyleAndLayoutDuration)])}); }).observe({type: 'long-animation-frame', buffered: false});
         window.__frames = []; window.__last = performance.now(); window.__stop = false;
         const tick = (now) => { window.__frames.push(now - window.__last); window.__last = now;
                                 if (!window.__stop) requestAnimationFrame(tick); };
         requestAnimationFrame(tick);",
        vec![],
    )
    .await
    .unwrap();
    let began = Instant::now();
    click(&c, "[data-testid=translate-button]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let wall = began.elapsed().as_secs_f64();
    let frames = c
        .execute("window.__stop = true; return window.__frames;", vec![])
        .await
        .unwrap();
    let mut frames: Vec<f64> = serde_json::from_value(frames).unwrap();
    frames.remove(0); // from the injection to the first frame
    let in_order = frames.clone();
    frames.sort_by(f64::total_cmp);
    let at = |q: f64| frames[((frames.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let cells = c
        .find_all(Locator::Css("[data-testid=heatmap] .cell"))
        .await
        .unwrap()
        .len();
    let canvas = c
        .find(Locator::Css(
            "[data-testid=heatmap] [data-testid=heatmap-canvas]",
        ))
        .await
        .is_ok();
    let grid = c.find(Locator::Css("[data-testid=heatmap]")).await.unwrap();
    let grid_rows: usize = attr(&grid, "data-rows").await;
    let report = serde_json::json!({
        "source_pieces": want.source_tokens.len(),
        "target_pieces": want.target_tokens.len(),
        "dom_cells": cells,
        "canvas": canvas,
        "frames_ms": frames,
        "frames_ms_in_order": in_order,
        // Chromium's Long Animation Frames entries: where a late frame's time went (script,
        // then rendering, of which style and layout).
        "long_animation_frames": c.execute("return window.__loaf;", vec![]).await.unwrap(),
        "frames": frames.len(),
        "frame_ms_p50": at(0.5),
        "frame_ms_p95": at(0.95),
        "frame_ms_max": at(1.0),
        "frames_late": frames.iter().filter(|f| **f > 17.0).count(),
        "stream_wall_s": wall,
    });
    println!("{report}");
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("frames.json"), report.to_string()).unwrap();
    c.execute(
        "document.querySelector('[data-testid=heatmap]').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    save_screenshot(&c, "long-input-canvas.png").await;
    // A source this long is drawn on a canvas, one row per target piece.
    assert!(canvas && cells == 0, "canvas {canvas}, {cells} cells");
    assert_eq!(grid_rows, want.target_tokens.len());
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_shows_the_servers_message_and_the_page_fits_a_phone_in_dark_mode() {
    let (addr, _driver, c) = session().await;
    c.goto(&format!("http://{addr}/")).await.unwrap();
    // Over the server's 2,000-character limit: its JSON error message is shown as is.
    let long = "a ".repeat(1100);
    let status = reqwest::Client::new()
        .post(format!("http://{addr}/api/translate"))
        .json(&serde_json::json!({ "text": long }))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 413);
    let body: attnscope_protocol::ErrorBody = status.json().await.unwrap();
    let input = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid=source-input]"))
        .await
        .unwrap();
    // Typing 2,200 characters key by key is slow: set the value as the browser would.
    c.execute(
        "const t = document.querySelector('[data-testid=source-input]');
         t.value = arguments[0]; t.dispatchEvent(new Event('input', { bubbles: true }));",
        vec![serde_json::Value::String(long.clone())],
    )
    .await
    .unwrap();
    drop(input);
    click(&c, "[data-testid=translate-button]").await;
    assert_eq!(wait_for_run(&c, "run-a").await, "error");
    let shown = c
        .find(Locator::Css("[data-testid=run-a] [data-testid=error]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown.trim(), body.message);

    // 360 px wide, dark colour scheme: nothing wider than the screen but the heatmap's own
    // scroller, and the page background is dark.
    c.set_window_size(360, 800).await.unwrap();
    c.goto(&format!(
        "http://{addr}/?text=Where%20is%20the%20train%20station%3F"
    ))
    .await
    .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the page scrolls sideways at 360 px"
    );
    save_screenshot(&c, "phone.png").await;
    c.close().await.unwrap();
}
