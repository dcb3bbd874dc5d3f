//! The export buttons of a run: the heatmap as shown (pieces or words, the view's scale and
//! palette, the rows up to the player's step) as PNG or SVG drawn by the server, or its
//! weights as JSON or CSV, with each row's candidates when the rows are the streamed pieces.

use attnscope_protocol::RenderRequest;
use leptos::prelude::*;

use crate::run::Run;
use crate::tokens::Row;
use crate::view::ViewSettings;

/// The export buttons, and the server's message when an export fails.
#[component]
pub fn ExportBar(
    run: Run,
    /// Source pieces or words, as the heatmap shows them.
    source: Memo<Vec<String>>,
    /// The heatmap's rows, as shown.
    rows: Memo<Vec<Row>>,
    view: Signal<ViewSettings>,
) -> impl IntoView {
    let (shown_source, shown_rows) = (source, rows);
    let export_error = RwSignal::new(None::<String>);
    let export = move |format: &'static str| {
        // The heatmap as shown: pieces or words, with the view's scale and palette.
        let (scale, palette) = view.get_untracked().render_names();
        let request = RenderRequest {
            source_tokens: shown_source.get_untracked(),
            target_tokens: shown_rows
                .with_untracked(|r| r.iter().map(|r| r.token.clone()).collect()),
            attention: shown_rows.with_untracked(|r| r.iter().map(|r| r.weights.clone()).collect()),
            // The server takes titles of up to 200 characters.
            title: Some(
                format!(
                    "{} \u{2192} {}{}",
                    run.text_now(),
                    run.translation.get_untracked(),
                    run.show
                        .get_untracked()
                        .as_deref()
                        .and_then(attnscope_protocol::explain_method)
                        .map(|m| format!(" ({})", m.label))
                        .unwrap_or_default()
                )
                .chars()
                .take(200)
                .collect(),
            ),
            scale: Some(scale.to_owned()),
            palette: Some(palette.to_owned()),
            // Each row's candidates, when the rows are the streamed pieces.
            candidates: if view.get_untracked().words || run.chosen.get_untracked() != 0 {
                Vec::new()
            } else {
                let rows = shown_rows.with_untracked(Vec::len);
                let lists: Vec<_> = run.details.with_untracked(|d| {
                    d.iter().take(rows).map(|s| s.candidates.clone()).collect()
                });
                if lists.len() == rows {
                    lists
                } else {
                    Vec::new()
                }
            },
        };
        export_error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(e) = crate::api::export(&request, format).await {
                export_error.set(Some(e.message));
            }
        });
    };
    view! {
        <div class="export" role="group" aria-label="Export this heatmap">
            <span class="examples-label">"Export:"</span>
            {["png", "svg", "json", "csv"]
                .into_iter()
                .map(|format| {
                    view! {
                        <button
                            type="button"
                            class="example"
                            data-testid=format!("export-{format}")
                            on:click=move |_| export(format)
                        >
                            {format.to_uppercase()}
                        </button>
                    }
                })
                .collect_view()}
            {move || {
                export_error
                    .get()
                    .map(|m| view! { <span class="models-error" role="alert">{m}</span> })
            }}
        </div>
    }
}
