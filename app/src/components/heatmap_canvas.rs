//! The cells of a long heatmap drawn on a `<canvas>` instead of one element per cell: a
//! 200-piece source makes tens of thousands of cells, and laying out that many grid items
//! on every streamed step stalls the page. Rows are drawn as they arrive (the last one again,
//! since a word's row changes while its pieces arrive); everything is redrawn when the view
//! settings change or the canvas grows.

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::CanvasRenderingContext2d;

use crate::tokens::{Hover, Row, outside_block};
use crate::view::ViewSettings;

/// Side of a cell on the canvas, in CSS pixels (the grid's `--cell` in canvas mode).
pub const CELL: u32 = 12;
/// Distance between cells: the cell and the grid's 1 px gap.
pub const PITCH: u32 = CELL + 1;
/// Sources at least this long are drawn on a canvas.
pub const CANVAS_MIN_COLS: usize = 48;
/// The canvas grows by this many rows at a time (growing clears it, so all is redrawn).
const GROW_ROWS: usize = 32;

/// What is on the canvas now.
#[derive(Clone, Copy, Default, PartialEq)]
struct Drawn {
    rows: usize,
    run: u64,
    view: Option<ViewSettings>,
    /// Sentences drawn as blocks.
    blocks: usize,
    width: u32,
    height: u32,
}

fn context(canvas: &web_sys::HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into().ok()
}

/// The colour of a cell outside its row's sentence (a segmented input's off-block cells).
const OFF_BLOCK: &str = "rgba(128, 128, 128, 0.22)";

fn draw_cell(
    ctx: &CanvasRenderingContext2d,
    view: &ViewSettings,
    (t, s): (usize, usize),
    w: f32,
    off: bool,
) {
    let (x, y) = (f64::from(s as u32 * PITCH), f64::from(t as u32 * PITCH));
    ctx.clear_rect(x, y, f64::from(CELL), f64::from(CELL));
    if off {
        ctx.set_fill_style_str(OFF_BLOCK);
        ctx.fill_rect(x, y, f64::from(CELL), f64::from(CELL));
    } else if let Some(colour) = view.css(w) {
        ctx.set_fill_style_str(&colour);
        ctx.fill_rect(x, y, f64::from(CELL), f64::from(CELL));
    }
}

fn draw_row(
    ctx: &CanvasRenderingContext2d,
    view: &ViewSettings,
    t: usize,
    row: &Row,
    blocks: &[(usize, usize)],
) {
    for (s, &w) in row.weights.iter().enumerate() {
        draw_cell(ctx, view, (t, s), w, outside_block(blocks, row.sentence, s));
    }
}

/// The ring around the cell under the pointer or the keyboard focus.
fn draw_ring(ctx: &CanvasRenderingContext2d, t: usize, s: usize) {
    let (x, y) = (f64::from(s as u32 * PITCH), f64::from(t as u32 * PITCH));
    ctx.set_stroke_style_str("#ffd84d");
    ctx.set_line_width(2.0);
    ctx.stroke_rect(
        x + 1.0,
        y + 1.0,
        f64::from(CELL) - 2.0,
        f64::from(CELL) - 2.0,
    );
}

/// The canvas over the cell area of the heatmap grid (rows 2.., columns 2..), with pointer
/// handling that maps a position to a cell.
#[component]
pub fn HeatmapCanvas(
    #[prop(into)] source: Signal<Vec<String>>,
    #[prop(into)] rows: Signal<Vec<Row>>,
    #[prop(into)] view: Signal<ViewSettings>,
    /// The columns `[start, end)` of each input sentence (empty: one sentence).
    #[prop(into)]
    blocks: Signal<Vec<(usize, usize)>>,
    hover: RwSignal<Hover>,
    on_pick: Option<Callback<(usize, usize)>>,
) -> impl IntoView {
    let canvas_ref = NodeRef::<Canvas>::new();
    let drawn = StoredValue::new(Drawn::default());
    Effect::new(move |_| {
        let v = view.get();
        let cols = source.with(Vec::len);
        let b = blocks.get();
        rows.with(|rows| {
            let Some(canvas) = canvas_ref.get() else {
                return;
            };
            let n = rows.len();
            let width = cols as u32 * PITCH;
            let height = (n.div_ceil(GROW_ROWS).max(1) * GROW_ROWS) as u32 * PITCH;
            let run = rows.first().map_or(0, |r| r.run);
            let before = drawn.get_value();
            let resized = before.width != width || before.height != height;
            if before.width != width {
                canvas.set_width(width);
            }
            if before.height != height {
                canvas.set_height(height);
            }
            let Some(ctx) = context(&canvas) else {
                return;
            };
            let full = resized
                || before.run != run
                || before.view != Some(v)
                || before.rows > n
                || before.blocks != b.len();
            let start = if full {
                ctx.clear_rect(0.0, 0.0, f64::from(width), f64::from(height));
                0
            } else {
                before.rows.saturating_sub(1)
            };
            for (t, row) in rows.iter().enumerate().skip(start) {
                draw_row(&ctx, &v, t, row, &b);
            }
            let h = hover.get_untracked();
            if let (Some(t), Some(s)) = (h.tgt, h.src)
                && t < n
                && s < cols
            {
                draw_ring(&ctx, t, s);
            }
            drawn.set_value(Drawn {
                blocks: b.len(),
                rows: n,
                run,
                view: Some(v),
                width,
                height,
            });
        });
    });
    // The focus ring follows the hover: the previous cell is repainted, the new one ringed.
    let ringed = StoredValue::new(None::<(usize, usize)>);
    Effect::new(move |_| {
        let h = hover.get();
        let Some(ctx) = canvas_ref.get().as_ref().and_then(context) else {
            return;
        };
        let v = view.get_untracked();
        let b = blocks.get_untracked();
        rows.with_untracked(|rows| {
            if let Some((t, s)) = ringed.get_value()
                && let Some(row) = rows.get(t)
                && let Some(&w) = row.weights.get(s)
            {
                draw_cell(&ctx, &v, (t, s), w, outside_block(&b, row.sentence, s));
            }
            let now = match (h.tgt, h.src) {
                (Some(t), Some(s)) if rows.get(t).is_some_and(|r| s < r.weights.len()) => {
                    draw_ring(&ctx, t, s);
                    Some((t, s))
                }
                _ => None,
            };
            ringed.set_value(now);
        });
    });
    let cell_at = move |ev: &leptos::ev::MouseEvent| {
        let (x, y) = (ev.offset_x().max(0) as u32, ev.offset_y().max(0) as u32);
        let (t, s) = ((y / PITCH) as usize, (x / PITCH) as usize);
        let inside = t < rows.with_untracked(Vec::len) && s < source.with_untracked(Vec::len);
        inside.then_some(Hover {
            tgt: Some(t),
            src: Some(s),
        })
    };
    view! {
        <div
            class="hm-canvas-wrap"
            style=move || {
                format!(
                    "grid-row:2 / span {};grid-column:2 / span {}",
                    rows.with(Vec::len).max(1),
                    source.with(Vec::len).max(1),
                )
            }
        >
            <canvas
                node_ref=canvas_ref
                class="hm-canvas"
                data-testid="heatmap-canvas"
                on:mousemove=move |ev| {
                    let h = cell_at(&ev).unwrap_or_default();
                    if hover.get_untracked() != h {
                        hover.set(h);
                    }
                }
                on:click=move |ev| {
                    if let Some(h) = cell_at(&ev) {
                        hover.set(h);
                        if let (Some(pick), Some(t), Some(s)) = (on_pick, h.tgt, h.src) {
                            pick.run((t, s));
                        }
                    }
                }
            ></canvas>
        </div>
    }
}
