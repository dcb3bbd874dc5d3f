//! The explorer as a teaching tool, on the real page in headless Chromium with the shipped
//! models: the player steps through a run (buttons, keys, play, the permalink's `step=`) and
//! the heatmap shows exactly the API's rows up to the step; the step view lists the
//! candidates with the probabilities forced decoding gives them, and choosing one decodes
//! again with it; the score view rebuilds every weight from the API's scores.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use std::time::{Duration, Instant};

use attnscope_protocol::TranslateResponse;
use attnscope_tests::page::*;
use fantoccini::{Client, Locator};

const TEXT: &str = "I am cold.";

fn assert_rows(shown: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(shown.len(), want.len(), "{what}");
    for (t, (a, b)) in shown.iter().zip(want).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: row {t}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{what}: row {t}: {a:?} vs {b:?}");
        }
    }
}

async fn text(c: &Client, css: &str) -> String {
    text_of(c, css).await.trim().to_owned()
}

fn detokenize(pieces: &[String]) -> String {
    pieces
        .iter()
        .filter(|p| *p != "</s>")
        .map(|p| p.replace('\u{2581}', " "))
        .collect::<String>()
        .trim()
        .to_owned()
}

async fn press(c: &Client, key: &str) {
    c.execute(
        "window.dispatchEvent(new KeyboardEvent('keydown', {key: arguments[0]}))",
        vec![serde_json::json!(key)],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_steps_through_a_run_and_the_permalink_keeps_the_step() {
    let (addr, _driver, c) = session().await;
    let want = expected(addr, TEXT).await;
    let n = want.attention.len();
    assert!(n >= 3, "{:?}", want.target_tokens);
    c.goto(&format!("http://{addr}/?text=I%20am%20cold."))
        .await
        .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    assert_rows(&wait_for_rows(&c, n).await, &want.attention, "live");
    assert_eq!(
        text(&c, "[data-testid=play-position]").await,
        format!("all {n} steps")
    );

    // Buttons: the first step, then one forward at a time; the heatmap, the translation and
    // the target strip show exactly the steps so far.
    click(&c, "[data-testid=play-first]").await;
    for k in 0..n {
        if k > 0 {
            click(&c, "[data-testid=play-forward]").await;
        }
        let rows = wait_for_rows(&c, k + 1).await;
        assert_rows(&rows, &want.attention[..=k], &format!("step {}", k + 1));
        assert_eq!(
            shown_translation(&c).await,
            detokenize(&want.target_tokens[..=k]),
            "step {}",
            k + 1
        );
        assert_eq!(
            text(&c, "[data-testid=play-position]").await,
            format!("step {} of {n}", k + 1)
        );
        let inside = c
            .find(Locator::Css("[data-testid=step-inside]"))
            .await
            .unwrap();
        assert_eq!(attr::<usize>(&inside, "data-step").await, k);
    }
    // Keys: back, back, then Home and End.
    press(&c, "ArrowLeft").await;
    press(&c, "ArrowLeft").await;
    wait_for_rows(&c, n - 2).await;
    press(&c, "Home").await;
    wait_for_rows(&c, 1).await;
    press(&c, "End").await;
    wait_for_rows(&c, n).await;
    assert_eq!(shown_translation(&c).await, want.translation);

    // The step goes into the permalink, and the permalink opens at that step.
    press(&c, "Home").await;
    press(&c, "ArrowRight").await;
    wait_for_rows(&c, 2).await;
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().contains("step=2"), "{url}");
    c.goto(url.as_str()).await.unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    assert_rows(
        &wait_for_rows(&c, 2).await,
        &want.attention[..2],
        "from the permalink",
    );

    // Play at 8 steps a second runs to the last step and stops there.
    c.find(Locator::Css("[data-testid=play-speed]"))
        .await
        .unwrap()
        .select_by_value("8")
        .await
        .unwrap();
    click(&c, "[data-testid=play-toggle]").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pressed = c
            .find(Locator::Css("[data-testid=play-toggle]"))
            .await
            .unwrap()
            .attr("aria-pressed")
            .await
            .unwrap();
        let pos = text(&c, "[data-testid=play-position]").await;
        if pressed.as_deref() == Some("false") && pos == format!("step {n} of {n}") {
            break;
        }
        assert!(Instant::now() < deadline, "play did not finish: {pos}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_rows(&wait_for_rows(&c, n).await, &want.attention, "played");
    save_screenshot(&c, "playback.png").await;
}

/// The API's translation of `TEXT` with `extra` options.
async fn api(addr: std::net::SocketAddr, extra: serde_json::Value) -> TranslateResponse {
    let mut body = serde_json::json!({ "text": TEXT });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    api_translate(addr, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_match_forced_decoding_and_the_score_view_rebuilds_the_weights() {
    let (addr, _driver, c) = session().await;
    // Step 2 of the default model: its candidates, as the API gives them.
    let want = api(addr, serde_json::json!({})).await;
    let step = &want.steps[1];
    c.goto(&format!("http://{addr}/?text=I%20am%20cold.&step=2"))
        .await
        .unwrap();
    assert_eq!(wait_for_run(&c, "run-a").await, "done");
    wait_for_rows(&c, 2).await;
    let items = c
        .find_all(Locator::Css("[data-testid=candidates] li"))
        .await
        .unwrap();
    assert_eq!(items.len(), step.candidates.len());
    assert_eq!(items.len(), 5);
    for (li, cand) in items.iter().zip(&step.candidates) {
        assert_eq!(li.attr("data-token").await.unwrap().unwrap(), cand.token);
        let p: f32 = attr(li, "data-prob").await;
        assert!((p - cand.log_prob.exp()).abs() < 1e-6);
    }
    assert_eq!(step.candidates[0].token, step.token);

    // Forcing the runner-up after the first token scores it as the candidate says.
    let runner = &step.candidates[1];
    let forced_text = detokenize(&[want.target_tokens[0].clone(), runner.token.clone()]);
    let forced = api(addr, serde_json::json!({ "force_target": forced_text })).await;
    if forced.target_tokens[..2] == [want.target_tokens[0].clone(), runner.token.clone()] {
        assert!(
            (forced.steps[1].log_prob - runner.log_prob).abs() < 1e-4,
            "forced {} vs candidate {}",
            forced.steps[1].log_prob,
            runner.log_prob
        );
    }
    // Choosing it decodes again with it at step 2.
    let buttons = c
        .find_all(Locator::Css("[data-testid=candidate-choose]"))
        .await
        .unwrap();
    assert_eq!(
        buttons[0].attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    buttons[1].click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = c
            .find_all(Locator::Css("[data-testid=heatmap] .tgt-label"))
            .await
            .unwrap();
        let whatif = c.find(Locator::Css("[data-testid=whatif]")).await.is_ok();
        if whatif && rows.len() >= 2 {
            let label = rows[1].text().await.unwrap();
            if label.trim().trim_start_matches('\u{b7}')
                == runner.token.trim_start_matches('\u{2581}')
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the chosen candidate was not decoded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The score view, opened by the permalink: every weight is the softmax of the API's
    // scores and equals the weight used; for the Transformer the mean over the last layer's
    // heads.
    for model in ["bahdanau", "transformer"] {
        let scored = api(addr, serde_json::json!({ "model": model, "scores": true })).await;
        let t = 2.min(scored.steps.len() - 1);
        c.goto(&format!(
            "http://{addr}/?text=I%20am%20cold.&model={model}&step={}&inside=1",
            t + 1
        ))
        .await
        .unwrap();
        assert_eq!(wait_for_run(&c, "run-a").await, "done");
        let deadline = Instant::now() + Duration::from_secs(30);
        let rows = loop {
            let rows = c
                .find_all(Locator::Css("[data-testid=score-row]"))
                .await
                .unwrap();
            if !rows.is_empty() {
                break rows;
            }
            assert!(Instant::now() < deadline, "{model}: no score view");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let scores = scored.steps[t].scores.as_ref().unwrap();
        let heads = scores.values.last().unwrap();
        assert_eq!(rows.len(), heads[0].len(), "{model}");
        for (k, row) in rows.iter().enumerate() {
            let e: f32 = attr(row, "data-score").await;
            let w: f32 = attr(row, "data-weight").await;
            let used: f32 = attr(row, "data-used").await;
            assert!((e - heads[0][k]).abs() < 1e-5, "{model} column {k}");
            assert!((w - used).abs() < 1e-4, "{model} column {k}: {w} vs {used}");
            assert!((used - scored.attention[t][k]).abs() < 1e-6);
        }
        let formulas = c
            .find_all(Locator::Css("[data-testid=score-formula]"))
            .await
            .unwrap();
        assert_eq!(formulas.len(), heads.len(), "{model}: one line per head");
        // Choosing another source token shows its weight being made.
        rows[0].click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let view = c
                .find(Locator::Css("[data-testid=score-view]"))
                .await
                .unwrap();
            if view.attr("data-col").await.ok().flatten().as_deref() == Some("0") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{model}: the click did not select"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let line = text(&c, "[data-testid=score-formula]").await;
        assert!(line.contains(&format!("e = {:.3}", heads[0][0])), "{line}");
        save_screenshot(&c, &format!("inside-{model}.png")).await;
    }
}
