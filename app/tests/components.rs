//! Component tests in a real browser (`wasm-bindgen-test`, headless Chromium through
//! chromedriver): the heatmap's cells, hover readout and view changes, the canvas path for
//! long sources, and the attention-mode picker. `scripts/test.sh` runs them with
//! `cargo test -p attnscope-app --target wasm32-unknown-unknown`.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them
#![cfg(target_arch = "wasm32")]

use attnscope_app::components::heatmap::Heatmap;
use attnscope_app::components::model_picker::ModePicker;
use attnscope_app::tokens::{Hover, Row};
use attnscope_app::view::ViewSettings;
use attnscope_protocol::ModelInfo;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Lets the reactive system and the browser catch up (effects run in later tasks).
async fn tick() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 10);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A fresh element to mount into (and panics reported on the console).
fn host() -> web_sys::HtmlElement {
    console_error_panic_hook::set_once();
    let doc = web_sys::window().unwrap().document().unwrap();
    let el: web_sys::HtmlElement = doc.create_element("div").unwrap().dyn_into().unwrap();
    doc.body().unwrap().append_child(&el).unwrap();
    el
}

fn rows(n: usize, cols: usize) -> Vec<Row> {
    (0..n)
        .map(|t| {
            let mut weights = vec![0.0; cols];
            weights[t % cols] = 0.75;
            weights[(t + 1) % cols] += 0.25;
            Row {
                run: 1,
                index: t,
                token: format!("\u{2581}t{t}"),
                weights,
                forced: false,
                intervened: false,
                rev: 0,
                sentence: 0,
                tau: None,
            }
        })
        .collect()
}

fn count(el: &web_sys::HtmlElement, css: &str) -> u32 {
    el.query_selector_all(css).unwrap().length()
}

#[wasm_bindgen_test]
async fn heatmap_cells_grow_with_the_stream_and_hover_reads_a_weight() {
    let el = host();
    let source = RwSignal::new(vec![
        "\u{2581}a".to_owned(),
        "\u{2581}b".into(),
        "</s>".into(),
    ]);
    let shown = RwSignal::new(rows(1, 3));
    let hover = RwSignal::new(Hover::default());
    let view = RwSignal::new(ViewSettings::default());
    let handle = leptos::mount::mount_to(el.clone(), move || {
        view! { <Heatmap source=source rows=shown hover=hover view=view /> }
    });
    tick().await;
    assert_eq!(count(&el, ".cell"), 3);
    shown.update(|r| r.extend(rows(3, 3).into_iter().skip(1)));
    tick().await;
    assert_eq!(count(&el, ".cell"), 9);
    assert_eq!(count(&el, ".row-stat"), 3);

    hover.set(Hover {
        tgt: Some(1),
        src: Some(2),
    });
    tick().await;
    let readout = el.query_selector("[data-testid=readout]").unwrap().unwrap();
    assert_eq!(readout.text_content().unwrap(), "t1 \u{2192} </s>: 0.25");
    assert_eq!(count(&el, ".tgt-label.hl"), 1);
    assert_eq!(count(&el, ".src-label.hl"), 1);

    // A threshold redraws the cells: weights under it are not painted.
    view.update(|v| v.threshold = 0.5);
    tick().await;
    let cells = el.query_selector_all(".cell").unwrap();
    let mut transparent = 0;
    for i in 0..cells.length() {
        let cell: web_sys::Element = cells.item(i).unwrap().dyn_into().unwrap();
        if cell
            .get_attribute("style")
            .unwrap_or_default()
            .contains("transparent")
        {
            transparent += 1;
        }
    }
    assert_eq!(transparent, 6);
    drop(handle);
}

#[wasm_bindgen_test]
async fn a_segmented_input_draws_its_sentences_as_blocks_on_the_grid_and_the_canvas() {
    for cols in [6usize, 60] {
        let el = host();
        let half = cols / 2;
        let source = RwSignal::new(
            (0..cols)
                .map(|i| format!("\u{2581}w{i}"))
                .collect::<Vec<_>>(),
        );
        // Rows 0-1 translate sentence 0 (columns 0..half), rows 2-3 sentence 1.
        let block_rows: Vec<Row> = (0..4)
            .map(|t| {
                let sentence = t / 2;
                let mut weights = vec![0.0; cols];
                weights[sentence * half] = 1.0;
                Row {
                    run: 1,
                    index: t,
                    token: format!("\u{2581}t{t}"),
                    weights,
                    forced: false,
                    intervened: false,
                    rev: 0,
                    sentence,
                    tau: None,
                }
            })
            .collect();
        let shown = RwSignal::new(block_rows);
        let hover = RwSignal::new(Hover::default());
        let blocks = Signal::stored(vec![(0, half), (half, cols)]);
        let handle = leptos::mount::mount_to(el.clone(), move || {
            view! { <Heatmap source=source rows=shown hover=hover blocks=blocks /> }
        });
        tick().await;
        assert_eq!(count(&el, ".hm-row.sent-start"), 1, "{cols} columns");
        assert_eq!(count(&el, ".src-label.sent-start"), 1);
        if cols < 48 {
            assert_eq!(count(&el, ".cell.off"), (4 * half) as u32);
        } else {
            let canvas: web_sys::HtmlCanvasElement = el
                .query_selector("canvas")
                .unwrap()
                .unwrap()
                .dyn_into()
                .unwrap();
            let ctx: web_sys::CanvasRenderingContext2d = canvas
                .get_context("2d")
                .unwrap()
                .unwrap()
                .dyn_into()
                .unwrap();
            // One canvas pixel per cell.
            let alpha = |t: usize, s: usize| {
                ctx.get_image_data(s as f64, t as f64, 1.0, 1.0)
                    .unwrap()
                    .data()
                    .0[3]
            };
            assert_eq!(alpha(0, 1), 255, "inside the block: the weight's colour");
            assert!(
                alpha(0, half + 1) < 100,
                "outside the block: the faint off-block grey"
            );
            assert!(alpha(3, 1) < 100);
        }
        drop(handle);
    }
}

#[wasm_bindgen_test]
async fn a_long_source_is_drawn_on_a_canvas() {
    let el = host();
    let source = RwSignal::new((0..60).map(|i| format!("\u{2581}w{i}")).collect::<Vec<_>>());
    let shown = RwSignal::new(rows(5, 60));
    let hover = RwSignal::new(Hover::default());
    let handle = leptos::mount::mount_to(el.clone(), move || {
        view! { <Heatmap source=source rows=shown hover=hover /> }
    });
    tick().await;
    assert_eq!(count(&el, ".cell"), 0);
    assert_eq!(count(&el, "canvas"), 1);
    assert_eq!(count(&el, ".tgt-label"), 5);
    let canvas: web_sys::HtmlCanvasElement = el
        .query_selector("canvas")
        .unwrap()
        .unwrap()
        .dyn_into()
        .unwrap();
    // One pixel per cell, scaled to 13 CSS pixels a cell (12 and the gap).
    assert_eq!(canvas.width(), 60);
    let style = canvas.get_attribute("style").unwrap_or_default();
    assert!(style.contains("width:780px"), "{style}");
    // Room for 32 rows at first, doubled as the stream grows.
    assert_eq!(canvas.height(), 32);
    shown.set(rows(40, 60));
    tick().await;
    assert_eq!(canvas.height(), 64);
    assert_eq!(count(&el, ".tgt-label"), 40);
    // The cell under the pointer gets a ring element over the canvas, at its place.
    assert_eq!(count(&el, ".hm-ring"), 0);
    hover.set(Hover {
        tgt: Some(2),
        src: Some(5),
    });
    tick().await;
    let ring = el.query_selector(".hm-ring").unwrap().expect("a ring");
    let style = ring.get_attribute("style").unwrap_or_default();
    assert!(style.contains("left:65px;top:26px"), "{style}");
    hover.set(Hover {
        tgt: Some(99),
        src: Some(5),
    });
    tick().await;
    assert_eq!(count(&el, ".hm-ring"), 0, "no ring outside the rows");
    drop(handle);
}

fn model(name: &str, modes: &[&str], default_mode: &str) -> ModelInfo {
    ModelInfo {
        name: name.into(),
        architecture: "gru".into(),
        attention: "additive".into(),
        attention_training: "soft".into(),
        default_mode: default_mode.into(),
        modes: modes.iter().map(|m| m.to_string()).collect(),
        layers: 0,
        heads: 0,
        context_dim: 0,
        source_lang: "en".into(),
        target_lang: "fr".into(),
        default: name == "bahdanau",
        parameters: 1,
        bleu: None,
        chrf: None,
        aer: None,
        alignment_method: None,
        error: None,
    }
}

#[wasm_bindgen_test]
async fn the_mode_picker_lists_the_models_modes_and_switches() {
    let el = host();
    let models = RwSignal::new(vec![
        model(
            "bahdanau",
            &["soft", "hard", "sampled", "sparsemax"],
            "soft",
        ),
        model("hard", &["hard", "soft"], "hard"),
    ]);
    let chosen = RwSignal::new(None::<String>);
    let mode = RwSignal::new(None::<String>);
    let handle = leptos::mount::mount_to(el.clone(), move || {
        view! { <ModePicker id="m" models=models model=chosen mode=mode /> }
    });
    tick().await;
    // The default option, then every mode of the default model.
    assert_eq!(count(&el, "option"), 5);
    let select: web_sys::HtmlSelectElement = el
        .query_selector("select")
        .unwrap()
        .unwrap()
        .dyn_into()
        .unwrap();
    select.set_value("hard");
    select
        .dispatch_event(&web_sys::Event::new("change").unwrap())
        .unwrap();
    tick().await;
    assert_eq!(mode.get_untracked().as_deref(), Some("hard"));
    chosen.set(Some("hard".into()));
    tick().await;
    assert_eq!(count(&el, "option"), 3);
    let first = el.query_selector("option").unwrap().unwrap();
    assert_eq!(first.text_content().unwrap(), "model default (hard)");
    drop(handle);
}
