//! A model imported from Hugging Face on the real page: the tiny random Marian folder of the
//! parity test, imported into a models folder of its own, served, and opened by permalink
//! in headless Chromium; the layer x head grid shows every layer's and head's
//! cross-attention with the API's shapes.
#![allow(clippy::unwrap_used)] // test helpers fail the test that calls them

use attnscope_model::import::marian::{ImportOptions, import};
use attnscope_protocol::ModelInfo;
use attnscope_tests::page::*;
use attnscope_tests::{browser, root, start_chromedriver, start_server_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_marian_model_opens_in_the_layer_by_head_grid() {
    let models = std::env::temp_dir().join(format!("attnscope-imported-{}", std::process::id()));
    let fixture = root().join("crates/model/tests/fixtures/marian-tiny");
    let opts = ImportOptions {
        name: "opus-tiny".into(),
        ..ImportOptions::default()
    };
    import(&fixture, &models, &opts).unwrap();
    let addr = start_server_with(&models, "opus-tiny").await.unwrap();

    let listed: Vec<ModelInfo> = reqwest::get(format!("http://{addr}/api/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info = listed.iter().find(|m| m.name == "opus-tiny").unwrap();
    assert_eq!(
        (info.architecture.as_str(), info.layers, info.heads),
        ("transformer", 2, 2)
    );
    assert_eq!(
        (info.source_lang.as_str(), info.target_lang.as_str()),
        ("en", "fr")
    );

    let want = expected_with(addr, "I am cold.", Some("opus-tiny")).await;
    let (t, s) = (want.target_tokens.len(), want.source_tokens.len());
    let driver = start_chromedriver().await.unwrap();
    let c = browser(&driver).await.unwrap();
    open_run(&c, addr, "text=I%20am%20cold.&model=opus-tiny").await;
    // Cross-attention: one target x source map for each of 2 layers x 2 heads.
    assert_cross_grid(&c, 4, t, s).await;
    save_screenshot(&c, "imported-grid.png").await;
    c.close().await.unwrap();
    std::fs::remove_dir_all(&models).ok();
}
