//! The attention heatmap: layout and drawing.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use crate::text::{self, Placement};
use crate::{Format, HeatmapSpec, Palette, PlotError, Scale};

/// Most tokens on one side that a heatmap accepts.
pub const MAX_TOKENS: usize = 1024;
/// Labels longer than this many characters are cut, ending with `…`.
pub const MAX_LABEL_CHARS: usize = 24;

/// Where the parts of a rendered heatmap lie, in pixels of the output image (PNG pixels, or
/// SVG user units). Row `r` of the matrix is target token `r`, counted from the top; column
/// `c` is source token `c`, counted from the left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeatmapGeometry {
    /// Width of the whole image.
    pub width: u32,
    /// Height of the whole image.
    pub height: u32,
    /// Left edge of the cell matrix.
    pub matrix_left: u32,
    /// Top edge of the cell matrix.
    pub matrix_top: u32,
    /// Side of one (square) cell, the gap between cells included.
    pub cell: u32,
    /// Blank pixels between neighbouring cells (0 for dense matrices).
    pub gap: u32,
    /// Number of rows (target tokens).
    pub rows: usize,
    /// Number of columns (source tokens).
    pub cols: usize,
}

impl HeatmapGeometry {
    /// The painted part of cell (`row`, `col`): `(left, top, right, bottom)`, right and bottom
    /// exclusive.
    pub fn cell_rect(&self, row: usize, col: usize) -> (u32, u32, u32, u32) {
        let left = self.matrix_left + col as u32 * self.cell;
        let top = self.matrix_top + row as u32 * self.cell;
        let side = self.cell.saturating_sub(self.gap);
        (left, top, left + side, top + side)
    }

    /// The middle pixel of cell (`row`, `col`).
    pub fn cell_centre(&self, row: usize, col: usize) -> (u32, u32) {
        let (l, t, r, b) = self.cell_rect(row, col);
        ((l + r) / 2, (t + b) / 2)
    }
}

const INK: RGBColor = RGBColor(34, 34, 34);
const MUTED: RGBColor = RGBColor(96, 96, 96);
const FRAME: RGBColor = RGBColor(110, 110, 110);

/// Everything about one heatmap that depends on its inputs, computed before drawing.
pub(crate) struct Layout {
    pub geometry: HeatmapGeometry,
    format: Format,
    /// Pixels per layout unit (2 for PNG, so that it stays sharp when printed; 1 for SVG).
    k: f64,
    label_size: f64,
    /// Only every `stride`-th token is labelled when the cells are too small for all.
    stride: usize,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    cols_vertical: bool,
    title: String,
    title_size: f64,
    title_centre: (f64, f64),
    caption_size: f64,
    source_caption_centre: (f64, f64),
    target_caption_centre: (f64, f64),
    bar_left: f64,
    bar_top: f64,
    bar_width: f64,
    bar_height: f64,
    tick_size: f64,
    ticks: Vec<(f32, String)>,
    bar_caption: &'static str,
    bar_caption_centre: (f64, f64),
}

/// Checks the inputs of a heatmap.
pub(crate) fn validate(spec: &HeatmapSpec) -> Result<(), PlotError> {
    let (rows, cols) = (spec.target_tokens.len(), spec.source_tokens.len());
    if cols == 0 {
        return Err(PlotError::Empty("no source tokens"));
    }
    if rows == 0 {
        return Err(PlotError::Empty("no target tokens"));
    }
    if rows > MAX_TOKENS || cols > MAX_TOKENS {
        return Err(PlotError::TooLarge {
            rows,
            cols,
            max: MAX_TOKENS,
        });
    }
    if spec.weights.len() != rows {
        return Err(PlotError::RowCount {
            found: spec.weights.len(),
            expected: rows,
        });
    }
    for (row, weights) in spec.weights.iter().enumerate() {
        if weights.len() != cols {
            return Err(PlotError::RaggedRow {
                row,
                found: weights.len(),
                expected: cols,
            });
        }
        if let Some((col, &value)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(PlotError::NonFinite { row, col, value });
        }
    }
    if let Scale::Log { floor } = spec.scale
        && !(floor > 0.0 && floor < 1.0)
    {
        return Err(PlotError::InvalidLogFloor(floor));
    }
    Ok(())
}

/// A token's label: control characters made visible, cut to [`MAX_LABEL_CHARS`] characters.
fn label(token: &str) -> String {
    let token = text::printable(token);
    if token.chars().count() <= MAX_LABEL_CHARS {
        token
    } else {
        let mut s: String = token.chars().take(MAX_LABEL_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// Tick positions and labels of the colour bar.
fn ticks(scale: Scale) -> Vec<(f32, String)> {
    match scale {
        Scale::Linear => (0..=5)
            .map(|i| {
                let v = i as f32 / 5.0;
                let text = match i {
                    0 => "0".to_owned(),
                    5 => "1".to_owned(),
                    _ => format!("{v:.1}"),
                };
                (v, text)
            })
            .collect(),
        Scale::Log { floor } => {
            let lowest = floor.log10().ceil() as i32;
            let count = (-lowest + 1).max(1);
            // Keep at most 7 ticks: every second, third, … power of ten.
            let step = ((count + 6) / 7).max(1);
            let mut ticks: Vec<(f32, String)> = (lowest..=0)
                .rev()
                .step_by(step as usize)
                .map(|e| (scale.position(10f32.powi(e)), power_of_ten(e)))
                .collect();
            if ticks.len() < 2 {
                ticks.push((0.0, format_floor(floor)));
            }
            ticks
        }
    }
}

fn power_of_ten(e: i32) -> String {
    match e {
        0 => "1".to_owned(),
        -1 => "0.1".to_owned(),
        -2 => "0.01".to_owned(),
        -3 => "0.001".to_owned(),
        _ => {
            const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
            let mut s = String::from("10");
            if e < 0 {
                s.push('⁻');
            }
            for d in e.unsigned_abs().to_string().chars() {
                let i = d.to_digit(10).unwrap_or(0) as usize;
                s.push(SUPERSCRIPT.get(i).copied().unwrap_or('?'));
            }
            s
        }
    }
}

fn format_floor(floor: f32) -> String {
    let s = format!("{floor:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Layout {
    pub(crate) fn new(spec: &HeatmapSpec, format: Format) -> Result<Self, PlotError> {
        validate(spec)?;
        text::face()?;
        let (rows, cols) = (spec.target_tokens.len(), spec.source_tokens.len());
        let n = rows.max(cols) as f64;

        // Cell side in layout units: big for short sentences, 14 from 43 tokens up to 120,
        // smaller beyond (the matrix stays at most 1680 units across).
        let cell_units = if n <= 120.0 {
            (600.0 / n).clamp(14.0, 40.0)
        } else {
            1680.0 / n
        };
        let matrix_units = cell_units * n;
        let k = match format {
            Format::Svg => 1.0,
            // Twice the resolution for print, less for very large matrices.
            Format::Png => (2400.0 / matrix_units).clamp(1.0, 2.0),
        };
        let u = |v: f64| v * k;
        let cell = u(cell_units).round().max(1.0);
        let gap = if cell_units >= 24.0 { k.round() } else { 0.0 };

        let label_units = (cell_units * 0.75).clamp(8.0, 16.0);
        let stride = if cell_units * 0.75 >= 8.0 {
            1
        } else {
            (11.0 / cell_units).ceil() as usize
        };
        let label_size = u(label_units);
        let row_labels: Vec<String> = spec.target_tokens.iter().map(|t| label(t)).collect();
        let col_labels: Vec<String> = spec.source_tokens.iter().map(|t| label(t)).collect();
        let widest = |labels: &[String]| -> Result<f64, PlotError> {
            let mut w: f64 = 0.0;
            for l in labels.iter().step_by(stride) {
                w = w.max(text::width(l, label_size)?);
            }
            Ok(w)
        };
        let row_w = widest(&row_labels)?;
        let col_w = widest(&col_labels)?;
        let cols_vertical = col_w > cell * stride as f64 - u(4.0);
        let col_h = if cols_vertical { col_w } else { label_size };

        let outer = u(16.0);
        let caption_size = u(14.0);
        let tick_size = u(13.0);
        let title_size = u(20.0);
        let title = text::printable(spec.title);
        let title_w = text::width(&title, title_size)?;
        let matrix_w = cell * cols as f64;
        let matrix_h = cell * rows as f64;
        let ticks = ticks(spec.scale);
        let bar_caption = match spec.scale {
            Scale::Linear => "weight",
            Scale::Log { .. } => "weight (log scale)",
        };
        let mut tick_w: f64 = 0.0;
        for (_, t) in &ticks {
            tick_w = tick_w.max(text::width(t, tick_size)?);
        }
        let bar_caption_w = text::width(bar_caption, caption_size)?;
        let source_caption_w = text::width("source", caption_size)?;
        let target_caption_w = text::width("target", caption_size)?;

        // Horizontal: target caption | row labels | matrix | colour bar | ticks | bar caption.
        let mut x = outer;
        let target_caption_x = x + caption_size / 2.0;
        x += caption_size + u(8.0);
        // Room for the "source" caption when the matrix is narrower than it.
        x += (source_caption_w / 2.0 - matrix_w / 2.0 - row_w - u(6.0)).max(0.0);
        x += row_w + u(6.0);
        let matrix_left = x.round();
        x = matrix_left + matrix_w + u(14.0);
        let bar_left = x.round();
        let bar_width = u(14.0).round();
        x = bar_left + bar_width + u(8.0) + tick_w + u(10.0);
        let bar_caption_x = x + caption_size / 2.0;
        x += caption_size + outer;
        let content_w = x;

        // Vertical: title | source caption | column labels | matrix (and colour bar).
        let mut y = outer;
        let title_y = y + title_size / 2.0;
        if !title.is_empty() {
            y += title_size + u(10.0);
        }
        let source_caption_y = y + caption_size / 2.0;
        y += caption_size + u(6.0) + col_h + u(6.0);
        let matrix_top = y.round();
        let bar_top = matrix_top;
        let bar_height = (matrix_h - gap)
            .max(u(120.0))
            .max(bar_caption_w + u(8.0))
            .max(target_caption_w)
            .round();
        let bottom = matrix_top + matrix_h.max(bar_height);
        let height = (bottom + tick_size * 0.6 + outer).ceil();

        // Centre everything under a title wider than the rest.
        let width = content_w.max(title_w + 2.0 * outer).ceil();
        let shift = ((width - content_w) / 2.0).floor();
        let matrix_left = matrix_left + shift;
        let bar_left = bar_left + shift;

        Ok(Layout {
            geometry: HeatmapGeometry {
                width: width as u32,
                height: height as u32,
                matrix_left: matrix_left as u32,
                matrix_top: matrix_top as u32,
                cell: cell as u32,
                gap: gap as u32,
                rows,
                cols,
            },
            format,
            k,
            label_size,
            stride,
            row_labels,
            col_labels,
            cols_vertical,
            title,
            title_size,
            title_centre: (width / 2.0, title_y),
            caption_size,
            source_caption_centre: (matrix_left + matrix_w / 2.0, source_caption_y),
            target_caption_centre: (target_caption_x + shift, matrix_top + matrix_h / 2.0),
            bar_left,
            bar_top,
            bar_width,
            bar_height,
            tick_size,
            ticks,
            bar_caption,
            bar_caption_centre: (bar_caption_x + shift, bar_top + bar_height / 2.0),
        })
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        (self.geometry.width, self.geometry.height)
    }

    pub(crate) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        spec: &HeatmapSpec,
    ) -> Result<(), PlotError> {
        let g = &self.geometry;
        let u = |v: f64| v * self.k;
        area.fill(&WHITE).map_err(crate::draw_error)?;

        // Cells: one rectangle each, row r = target token r.
        for (r, row) in spec.weights.iter().enumerate() {
            for (c, &w) in row.iter().enumerate() {
                let (l, t, rt, b) = g.cell_rect(r, c);
                let [cr, cg, cb] = spec.palette.colour(spec.scale.position(w));
                area.draw(&Rectangle::new(
                    [(l as i32, t as i32), (rt as i32, b as i32)],
                    RGBColor(cr, cg, cb).filled(),
                ))
                .map_err(crate::draw_error)?;
            }
        }

        let label = Placement {
            size: self.label_size,
            colour: INK,
            align: HPos::Right,
            vertical: false,
        };
        let cell = f64::from(g.cell);
        let half_cell = f64::from(g.cell.saturating_sub(g.gap)) / 2.0;
        let left = f64::from(g.matrix_left);
        let top = f64::from(g.matrix_top);
        // With only every n-th token labelled, a short tick marks which.
        let tick = |from: (f64, f64), to: (f64, f64)| {
            let p = |(x, y): (f64, f64)| (x.round() as i32, y.round() as i32);
            area.draw(&PathElement::new(
                vec![p(from), p(to)],
                MUTED.stroke_width(u(1.0).round().max(1.0) as u32),
            ))
            .map_err(crate::draw_error)
        };
        for (r, l) in self.row_labels.iter().enumerate().step_by(self.stride) {
            let y = top + r as f64 * cell + half_cell;
            text::draw(area, l, (left - u(6.0), y), label)?;
            if self.stride > 1 {
                tick((left - u(4.0), y), (left - 1.0, y))?;
            }
        }
        for (c, l) in self.col_labels.iter().enumerate().step_by(self.stride) {
            let x = left + c as f64 * cell + half_cell;
            if self.stride > 1 {
                tick((x, top - u(4.0)), (x, top - 1.0))?;
            }
            if self.cols_vertical {
                let place = Placement {
                    align: HPos::Left,
                    vertical: true,
                    ..label
                };
                text::draw(area, l, (x, top - u(6.0)), place)?;
            } else {
                let place = Placement {
                    align: HPos::Center,
                    ..label
                };
                let at = (x, top - u(6.0) - self.label_size / 2.0);
                text::draw(area, l, at, place)?;
            }
        }

        let caption = Placement {
            size: self.caption_size,
            colour: MUTED,
            align: HPos::Center,
            vertical: false,
        };
        text::draw(area, "source", self.source_caption_centre, caption)?;
        let vertical_caption = Placement {
            vertical: true,
            ..caption
        };
        text::draw(area, "target", self.target_caption_centre, vertical_caption)?;
        let title = Placement {
            size: self.title_size,
            colour: INK,
            align: HPos::Center,
            vertical: false,
        };
        text::draw(area, &self.title, self.title_centre, title)?;

        self.draw_colour_bar(area, spec.palette)?;
        text::draw(
            area,
            self.bar_caption,
            self.bar_caption_centre,
            vertical_caption,
        )
    }

    fn draw_colour_bar<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        palette: Palette,
    ) -> Result<(), PlotError> {
        let u = |v: f64| v * self.k;
        let (l, t) = (self.bar_left as i32, self.bar_top as i32);
        let (w, h) = (self.bar_width as i32, self.bar_height as i32);
        // One horizontal line per pixel row (not rectangles, so that an SVG's rectangles
        // are exactly the background and the cells). SVG strokes are centred on the
        // coordinate, so there each row is a 2-unit line from the row's top edge, half
        // covered by the next one: no seams when zoomed.
        let (offset, thickness, rows) = match self.format {
            Format::Png => (0, 1, h),
            Format::Svg => (1, 2, h - 2),
        };
        for i in 0..rows {
            let pos = 1.0 - (i as f32 + 0.5) / h as f32;
            let [r, g, b] = palette.colour(pos);
            let y = t + i + offset;
            area.draw(&PathElement::new(
                vec![(l, y), (l + w - 1, y)],
                RGBColor(r, g, b).stroke_width(thickness),
            ))
            .map_err(crate::draw_error)?;
        }
        let line = FRAME.stroke_width(u(1.0).round().max(1.0) as u32);
        area.draw(&PathElement::new(
            vec![
                (l, t),
                (l + w - 1, t),
                (l + w - 1, t + h - 1),
                (l, t + h - 1),
                (l, t),
            ],
            line,
        ))
        .map_err(crate::draw_error)?;
        let tick_label = Placement {
            size: self.tick_size,
            colour: INK,
            align: HPos::Left,
            vertical: false,
        };
        for (pos, label) in &self.ticks {
            let y = (t as f64 + (1.0 - f64::from(*pos)) * f64::from(h - 1)).round() as i32;
            let x = l + w - 1;
            area.draw(&PathElement::new(
                vec![(x, y), (x + u(4.0).round() as i32, y)],
                line,
            ))
            .map_err(crate::draw_error)?;
            let at = (f64::from(x) + u(8.0), f64::from(y));
            text::draw(area, label, at, tick_label)?;
        }
        Ok(())
    }
}
