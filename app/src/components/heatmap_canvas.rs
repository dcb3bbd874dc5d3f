//! The cells of a long heatmap drawn on a `<canvas>` instead of one element per cell: a
//! 200-piece source makes tens of thousands of cells, and laying out that many grid items
//! on every streamed step stalls the page.
//!
//! The canvas holds one pixel per cell, scaled up by CSS (`image-rendering: pixelated`), with
//! the gaps between cells drawn over it by the stylesheet. The pixels live in a buffer here:
//! a streamed step writes its row (and the last one again, since a word's row changes while
//! its pieces arrive) and puts just those rows; everything is recomputed when the view
//! settings change and put in one call. Drawing each cell as a 12-pixel rectangle cost
//! three canvas calls per cell and a backing store of tens of megabytes, and every growth of
//! the canvas redrew all of it: 150 to 300 ms frames while a 200-piece source streamed.

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, ImageData};

use crate::tokens::{Hover, Row, outside_block};
use crate::view::ViewSettings;

/// Side of a cell as shown, in CSS pixels (the grid's `--cell` in canvas mode).
pub const CELL: u32 = 12;
/// Distance between cells: the cell and the grid's 1 px gap.
pub const PITCH: u32 = CELL + 1;
/// Sources at least this long are drawn on a canvas.
pub const CANVAS_MIN_COLS: usize = 48;
/// The canvas starts with room for this many rows and doubles when it runs out.
const FIRST_ROWS: usize = 32;

/// Rows the canvas has room for when it shows `n`: [`FIRST_ROWS`], doubled as needed.
fn capacity(n: usize) -> usize {
    let mut rows = FIRST_ROWS;
    while rows < n {
        rows *= 2;
    }
    rows
}

/// What is on the canvas now.
#[derive(Clone, Default, PartialEq)]
struct Drawn {
    rows: usize,
    run: u64,
    view: Option<ViewSettings>,
    /// Sentences drawn as blocks.
    blocks: usize,
    cols: usize,
    /// Rows the canvas has room for.
    capacity: usize,
}

fn context(canvas: &web_sys::HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok()??.dyn_into().ok()
}

/// The colour of a cell outside its row's sentence (a segmented input's off-block cells):
/// grey at 22 % opacity.
const OFF_BLOCK: [u8; 4] = [128, 128, 128, 56];

/// The RGBA pixel of one cell (transparent under the view's threshold).
fn pixel(view: &ViewSettings, w: f32, off: bool) -> [u8; 4] {
    if off {
        OFF_BLOCK
    } else if w < view.threshold {
        [0; 4]
    } else {
        let [r, g, b] = view.rgb(w);
        [r, g, b, 255]
    }
}

/// Writes row `t`'s pixels into `pixels` (`cols` RGBA pixels a row).
fn paint_row(
    pixels: &mut [u8],
    cols: usize,
    view: &ViewSettings,
    t: usize,
    row: &Row,
    blocks: &[(usize, usize)],
) {
    let line = &mut pixels[t * cols * 4..(t + 1) * cols * 4];
    for (s, px) in line.chunks_exact_mut(4).enumerate() {
        let w = row.weights.get(s).copied().unwrap_or(0.0);
        px.copy_from_slice(&pixel(view, w, outside_block(blocks, row.sentence, s)));
    }
}

/// Puts rows `from..to` of `pixels` on the canvas.
fn put_rows(ctx: &CanvasRenderingContext2d, pixels: &[u8], cols: usize, from: usize, to: usize) {
    if to <= from || cols == 0 {
        return;
    }
    let part = &pixels[from * cols * 4..to * cols * 4];
    if let Ok(image) =
        ImageData::new_with_u8_clamped_array_and_sh(Clamped(part), cols as u32, (to - from) as u32)
    {
        let _ = ctx.put_image_data(&image, 0.0, from as f64);
    }
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
    let pixels = StoredValue::new(Vec::<u8>::new());
    Effect::new(move |_| {
        let v = view.get();
        let cols = source.with(Vec::len);
        let b = blocks.get();
        rows.with(|rows| {
            let Some(canvas) = canvas_ref.get() else {
                return;
            };
            let n = rows.len();
            let run = rows.first().map_or(0, |r| r.run);
            let before = drawn.get_value();
            let capacity = capacity(n);
            let full = before.cols != cols
                || before.capacity != capacity
                || before.run != run
                || before.view != Some(v)
                || before.rows > n
                || before.blocks != b.len();
            if before.cols != cols {
                canvas.set_width(cols as u32);
            }
            if before.capacity != capacity {
                canvas.set_height(capacity as u32);
            }
            let Some(ctx) = context(&canvas) else {
                return;
            };
            let start = if full {
                0
            } else {
                before.rows.saturating_sub(1)
            };
            pixels.update_value(|px| {
                px.resize(cols * capacity * 4, 0);
                if full {
                    px.fill(0);
                }
                for (t, row) in rows.iter().enumerate().skip(start) {
                    paint_row(px, cols, &v, t, row, &b);
                }
                let to = if full { capacity } else { n };
                put_rows(&ctx, px, cols, start, to);
            });
            drawn.set_value(Drawn {
                blocks: b.len(),
                rows: n,
                run,
                view: Some(v),
                cols,
                capacity,
            });
        });
    });
    // The ring around the cell under the pointer or the keyboard focus.
    let ring = move || {
        let h = hover.get();
        let (t, s) = (h.tgt?, h.src?);
        let inside = t < rows.with(Vec::len) && s < source.with(Vec::len);
        inside.then(|| format!("left:{}px;top:{}px", s as u32 * PITCH, t as u32 * PITCH))
    };
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
                style=move || {
                    format!(
                        "width:{}px;height:{}px",
                        source.with(Vec::len) as u32 * PITCH,
                        capacity(rows.with(Vec::len)) as u32 * PITCH,
                    )
                }
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
            <div class="hm-canvas-gaps" aria-hidden="true"></div>
            {move || ring().map(|style| view! { <div class="hm-ring" aria-hidden="true" style=style></div> })}
        </div>
    }
}
