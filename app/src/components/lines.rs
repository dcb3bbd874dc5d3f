//! The bipartite view: source tokens along the top, target tokens along the bottom, joined
//! by lines whose colour and width follow the attention weight (SVG), and, once the
//! translation is done, the word alignment the model's chosen method reads off it, as dark
//! lines between the middles of the linked words.

use leptos::prelude::*;

use crate::tokens::{Row, TokenLabel};
use crate::view::ViewSettings;

/// Horizontal room per token, in SVG units.
const STEP: f32 = 64.0;
/// Height of the drawing.
const HEIGHT: f32 = 220.0;
/// Weights under this are not drawn even without a threshold (they would only add noise).
const FLOOR: f32 = 0.02;

/// The lines view of one run. Every drawn line is `<line data-src data-tgt data-weight>`.
#[component]
pub fn Lines(
    #[prop(into)] source: Signal<Vec<String>>,
    #[prop(into)] rows: Signal<Vec<Row>>,
    #[prop(into)] view: Signal<ViewSettings>,
    /// Word alignment links as (source, target) positions in the shown tokens, fractional at
    /// a word's middle; each drawn as `<line class="word-link">`.
    #[prop(into)]
    links: Signal<Vec<(f32, f32)>>,
    /// `data-testid` of the `<svg>`.
    testid: &'static str,
) -> impl IntoView {
    let width = move || {
        let n = source.with(Vec::len).max(rows.with(Vec::len)).max(1);
        n as f32 * STEP
    };
    let x = |i: usize| (i as f32 + 0.5) * STEP;
    let xf = |i: f32| (i + 0.5) * STEP;
    let label = |piece: &str| TokenLabel::new(piece).plain();
    view! {
        <div class="heatmap-scroll">
            <svg
                class="lines"
                data-testid=testid
                role="img"
                aria-label="Attention as lines from each target token to the source tokens it looked at"
                width=move || width().to_string()
                height=HEIGHT.to_string()
                viewBox=move || format!("0 0 {} {HEIGHT}", width())
            >
                {move || {
                    let v = view.get();
                    let floor = v.threshold.max(FLOOR);
                    rows.get()
                        .iter()
                        .flat_map(|row| {
                            let t = row.index;
                            row.weights
                                .iter()
                                .enumerate()
                                .filter(|(_, w)| **w >= floor)
                                .map(|(s, &w)| {
                                    let [r, g, b] = v.rgb(w);
                                    view! {
                                        <line
                                            x1=x(s).to_string()
                                            y1="34"
                                            x2=x(t).to_string()
                                            y2=(HEIGHT - 34.0).to_string()
                                            stroke=format!("rgb({r},{g},{b})")
                                            stroke-width=(0.5 + 5.0 * w).to_string()
                                            stroke-opacity=(0.25 + 0.75 * w).to_string()
                                            data-src=s.to_string()
                                            data-tgt=t.to_string()
                                            data-weight=w.to_string()
                                        ></line>
                                    }
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect_view()
                }}
                {move || {
                    links
                        .get()
                        .into_iter()
                        .map(|(s, t)| {
                            view! {
                                <line
                                    class="word-link"
                                    x1=xf(s).to_string()
                                    y1="34"
                                    x2=xf(t).to_string()
                                    y2=(HEIGHT - 34.0).to_string()
                                    data-src=s.to_string()
                                    data-tgt=t.to_string()
                                ></line>
                            }
                        })
                        .collect_view()
                }}
                {move || {
                    source
                        .get()
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            view! {
                                <text x=x(i).to_string() y="20" class="line-label">
                                    {label(p)}
                                </text>
                            }
                        })
                        .collect_view()
                }}
                {move || {
                    rows.get()
                        .iter()
                        .map(|row| {
                            view! {
                                <text
                                    x=x(row.index).to_string()
                                    y=(HEIGHT - 12.0).to_string()
                                    class="line-label"
                                >
                                    {label(&row.token)}
                                </text>
                            }
                        })
                        .collect_view()
                }}
            </svg>
        </div>
    }
}
