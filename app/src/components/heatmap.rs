//! The attention heatmap: a CSS grid of divs, rows = target tokens, columns = source tokens.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::compare::{entropy, max_weight};
use crate::components::heatmap_canvas::{CANVAS_MIN_COLS, CELL, HeatmapCanvas};
use crate::components::token::TokenText;
use crate::tokens::{Hover, Row, argmax, outside_block, readout};
use crate::view::ViewSettings;

/// Reads which cell or label an event happened on (event delegation: one listener for the
/// whole grid instead of one per cell).
fn hover_of(target: Option<web_sys::EventTarget>) -> Hover {
    let Some(el) = target.and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else {
        return Hover::default();
    };
    let attr = |el: &web_sys::Element, name: &str| {
        el.get_attribute(name).and_then(|v| v.parse::<usize>().ok())
    };
    if let Ok(Some(cell)) = el.closest(".cell") {
        return Hover {
            tgt: attr(&cell, "data-tgt"),
            src: attr(&cell, "data-src"),
        };
    }
    if let Ok(Some(label)) = el.closest(".src-label") {
        return Hover {
            tgt: None,
            src: attr(&label, "data-col"),
        };
    }
    if let Ok(Some(label)) = el.closest(".tgt-label") {
        return Hover {
            tgt: attr(&label, "data-row"),
            src: None,
        };
    }
    Hover::default()
}

/// The readout for a hover state: the cell's weight, or for a lone row or column its
/// strongest link.
fn readout_text(hover: Hover, source: &[String], rows: &[Row]) -> Option<String> {
    let (t, s) = match (hover.tgt, hover.src) {
        (Some(t), Some(s)) => (t, s),
        (Some(t), None) => (t, argmax(&rows.get(t)?.weights)?),
        (None, Some(s)) => {
            let column: Vec<f32> = rows
                .iter()
                .map(|r| r.weights.get(s).copied().unwrap_or(0.0))
                .collect();
            (argmax(&column)?, s)
        }
        (None, None) => return None,
    };
    let row = rows.get(t)?;
    Some(readout(&row.token, source.get(s)?, *row.weights.get(s)?))
}

/// The heatmap with its hover readout and colour legend.
///
/// Each cell is `<div class="cell" data-src="<column>" data-tgt="<row>" data-weight="<w>">`
/// coloured by the view settings (palette, scale, threshold). Source labels (`.src-label[data-col]`) head the columns,
/// target labels (`.tgt-label[data-row]`) start the rows; the labels of the hovered cell get
/// the class `hl`. Each row ends with its step's entropy and peak weight
/// (`.row-stat[data-entropy][data-max]`). Rows are appended as steps arrive. `testid` names
/// the grid (`data-testid`), so two heatmaps on one page stay apart. A segmented input draws
/// its sentences as blocks: a cell outside its row's sentence has the class `off` (hatched),
/// and the first column and row of each later sentence the class `sent-start` (a rule).
#[component]
pub fn Heatmap(
    /// Source pieces or words (columns).
    #[prop(into)]
    source: Signal<Vec<String>>,
    /// Rows received so far.
    #[prop(into)]
    rows: Signal<Vec<Row>>,
    /// Palette, scale and threshold.
    #[prop(into, default = Signal::stored(ViewSettings::default()))]
    view: Signal<ViewSettings>,
    /// Shared hover state.
    hover: RwSignal<Hover>,
    /// `data-testid` of the grid.
    #[prop(default = "heatmap")]
    testid: &'static str,
    /// The columns `[start, end)` of each input sentence (empty: one sentence).
    #[prop(into, default = Signal::stored(Vec::new()))]
    blocks: Signal<Vec<(usize, usize)>>,
    /// Called with `(target row, source column)` when a cell is clicked, or chosen with the
    /// keyboard (arrow keys move, Enter or Space picks).
    #[prop(optional)]
    on_pick: Option<Callback<(usize, usize)>>,
) -> impl IntoView {
    let cols = move || source.with(Vec::len);
    // Long sources: cells on a canvas (see `heatmap_canvas`), labels still in the grid.
    let on_canvas = move || cols() >= CANVAS_MIN_COLS;
    let from_canvas = |ev: &leptos::ev::MouseEvent| {
        ev.target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|e| e.tag_name().eq_ignore_ascii_case("canvas"))
    };
    let on_point = move |ev: leptos::ev::MouseEvent| {
        if from_canvas(&ev) {
            return;
        }
        let h = hover_of(ev.target());
        if hover.get_untracked() != h {
            hover.set(h);
        }
    };
    let on_click = move |ev: leptos::ev::MouseEvent| {
        if from_canvas(&ev) {
            return;
        }
        let h = hover_of(ev.target());
        hover.set(h);
        if let (Some(pick), Some(t), Some(s)) = (on_pick, h.tgt, h.src) {
            pick.run((t, s));
        }
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let (n_rows, n_cols) = (rows.with_untracked(Vec::len), cols());
        if n_rows == 0 || n_cols == 0 {
            return;
        }
        let h = hover.get_untracked();
        let (t, s) = (h.tgt.unwrap_or(0), h.src.unwrap_or(0));
        let next = match ev.key().as_str() {
            "ArrowUp" => (t.saturating_sub(1), s),
            "ArrowDown" => ((t + 1).min(n_rows - 1), s),
            "ArrowLeft" => (t, s.saturating_sub(1)),
            "ArrowRight" => (t, (s + 1).min(n_cols - 1)),
            "Home" => (t, 0),
            "End" => (t, n_cols - 1),
            "Enter" | " " => {
                ev.prevent_default();
                if let Some(pick) = on_pick {
                    pick.run((t, s));
                }
                return;
            }
            _ => return,
        };
        ev.prevent_default();
        hover.set(Hover {
            tgt: Some(next.0),
            src: Some(next.1),
        });
    };
    let text = move || {
        let h = hover.get();
        source.with(|s| rows.with(|r| readout_text(h, s, r)))
    };
    view! {
        <div class="heatmap-scroll">
            <div
                class="heatmap"
                data-testid=testid
                role="grid"
                aria-label="Attention weights: rows are French tokens, columns are English tokens"
                data-rows=move || rows.with(Vec::len).to_string()
                data-cols=move || cols().to_string()
                data-canvas=move || on_canvas().to_string()
                data-sentences=move || blocks.with(Vec::len).max(1).to_string()
                style=move || {
                    let cell = if on_canvas() { format!(";--cell:{CELL}px") } else { String::new() };
                    format!("--cols:{}{cell}", cols().max(1))
                }
                tabindex="0"
                aria-description="Arrow keys move between cells; Enter picks the cell"
                on:mouseover=on_point
                on:click=on_click
                on:keydown=on_key
                on:focus=move |_| {
                    if hover.get_untracked() == Hover::default() && rows.with_untracked(|r| !r.is_empty()) {
                        hover.set(Hover { tgt: Some(0), src: Some(0) });
                    }
                }
                on:mouseleave=move |_| hover.set(Hover::default())
            >
                <div class="hm-row hm-head" role="row">
                    <div class="hm-corner" aria-hidden="true"></div>
                    <For
                        each=move || source.get().into_iter().enumerate()
                        key=|(i, piece)| (*i, piece.clone())
                        children=move |(i, piece)| {
                            view! {
                                <div
                                    class="src-label"
                                    class:sent-start=move || blocks.with(|b| b.iter().skip(1).any(|&(a, _)| a == i))
                                    role="columnheader"
                                    data-col=i.to_string()
                                    class:hl=move || hover.get().src == Some(i)
                                >
                                    <TokenText piece=piece />
                                </div>
                            }
                        }
                    />
                    <div class="stat-head" role="columnheader" title="Entropy of the step's attention in nats (0: one source token), and its largest weight">
                        "H \u{b7} max"
                    </div>
                </div>
                // Cells are static (no per-cell effects, which made long streams stutter): a
                // row is redrawn when its key changes, and the key holds what it shows.
                <For
                    each=move || {
                        let v = view.get();
                        let b = blocks.get();
                        let rows = rows.get();
                        let starts: Vec<bool> = rows
                            .iter()
                            .enumerate()
                            .map(|(i, r)| b.len() > 1 && i > 0 && rows[i - 1].sentence != r.sentence)
                            .collect();
                        rows.into_iter()
                            .zip(starts)
                            .map(move |(row, start)| (row, v, start, b.clone()))
                            .collect::<Vec<_>>()
                    }
                    key=|(row, v, start, b)| (row.run, row.index, row.token.clone(), row.rev, v.key(), *start, b.len())
                    children=move |(row, v, start, b)| {
                        let t = row.index;
                        let tgt = t.to_string();
                        let drawn = !on_canvas();
                        let sentence = row.sentence;
                        let cells = drawn.then(|| row
                            .weights
                            .iter()
                            .enumerate()
                            .map(|(s, &w)| {
                                let off = outside_block(&b, sentence, s);
                                view! {
                                    <div
                                        class="cell"
                                        class:off=off
                                        role="gridcell"
                                        data-src=s.to_string()
                                        data-tgt=tgt.clone()
                                        data-weight=w.to_string()
                                        style=match v.css(w) {
                                            Some(c) => format!("background-color:{c}"),
                                            None => "background-color:transparent".to_owned(),
                                        }
                                    ></div>
                                }
                            })
                            .collect_view());
                        let (h, peak) = (entropy(&row.weights), max_weight(&row.weights));
                        view! {
                            <div class="hm-row" class:sent-start=start role="row" data-sentence=sentence.to_string()>
                                <div
                                    class="tgt-label"
                                    class:intervened=row.intervened
                                    class:forced=row.forced
                                    title=if row.intervened {
                                        "attention forced here (what-if)"
                                    } else if row.forced {
                                        "token given in the target prefix"
                                    } else {
                                        ""
                                    }
                                    role="rowheader"
                                    data-row=t.to_string()
                                    class:hl=move || hover.get().tgt == Some(t)
                                >
                                    <TokenText piece=row.token />
                                </div>
                                {cells}
                                <div
                                    class="row-stat"
                                    role="gridcell"
                                    data-entropy=format!("{h:.3}")
                                    data-max=format!("{peak:.3}")
                                    data-tau=row.tau.map(|t| format!("{t:.3}"))
                                    title=row.tau.map(|_| "entropy \u{b7} peak weight \u{b7} Kendall \u{3c4} with the attention")
                                >
                                    {match row.tau {
                                        Some(t) => format!("{h:.2} \u{b7} {peak:.2} \u{b7} \u{3c4} {t:.2}"),
                                        None => format!("{h:.2} \u{b7} {peak:.2}"),
                                    }}
                                </div>
                            </div>
                        }
                    }
                />
                <Show when=on_canvas>
                    <HeatmapCanvas
                        source=source
                        rows=rows
                        blocks=blocks
                        view=view
                        hover=hover
                        on_pick=on_pick
                    />
                </Show>
                // The cell under the pointer or the keyboard focus, without an effect on every
                // cell: a one-rule stylesheet.
                {move || {
                    let h = hover.get();
                    let (t, s) = (h.tgt?, h.src?);
                    // On the canvas, the canvas draws the ring itself.
                    (!on_canvas()).then(|| {
                        view! {
                            <style>
                                {format!(
                                    "[data-testid={testid}] .cell[data-tgt=\"{t}\"][data-src=\"{s}\"]{{outline:3px solid var(--hl);outline-offset:-1px;position:relative;z-index:1}}",
                                )}
                            </style>
                        }
                    })
                }}
            </div>
        </div>
        <div class="heatmap-foot">
            <div class="legend" aria-label="Colour scale of the weights">
                <span>{move || view.get().legend_ends().0}</span>
                <span
                    class="legend-bar"
                    style=move || format!("background:{}", view.get().gradient())
                ></span>
                <span>{move || view.get().legend_ends().1}</span>
            </div>
            <output class="readout" data-testid="readout" aria-live="polite">
                {move || text().unwrap_or_else(|| "Hover a cell to read its weight.".to_owned())}
            </output>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readout_for_cells_rows_and_columns() {
        let source = vec!["\u{2581}cold".to_owned(), "</s>".to_owned()];
        let rows = vec![
            Row {
                run: 1,
                index: 0,
                token: "\u{2581}froid".into(),
                weights: vec![0.8, 0.2],
                forced: false,
                intervened: false,
                rev: 0,
                sentence: 0,
                tau: None,
            },
            Row {
                run: 1,
                index: 1,
                token: "</s>".into(),
                weights: vec![0.1, 0.9],
                forced: false,
                intervened: false,
                rev: 0,
                sentence: 0,
                tau: None,
            },
        ];
        let h = |tgt, src| Hover { tgt, src };
        assert_eq!(
            readout_text(h(Some(0), Some(1)), &source, &rows).as_deref(),
            Some("froid \u{2192} </s>: 0.20")
        );
        assert_eq!(
            readout_text(h(Some(0), None), &source, &rows).as_deref(),
            Some("froid \u{2192} cold: 0.80")
        );
        assert_eq!(
            readout_text(h(None, Some(1)), &source, &rows).as_deref(),
            Some("</s> \u{2192} </s>: 0.90")
        );
        assert_eq!(readout_text(h(None, None), &source, &rows), None);
        assert_eq!(readout_text(h(Some(5), Some(0)), &source, &rows), None);
    }
}
