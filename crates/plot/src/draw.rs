//! The figures themselves (feature `draw`): heatmaps and loss curves drawn with plotters.

use crate::colour::{Palette, Scale};

use plotters::coord::Shift;
use plotters::prelude::*;

pub use crate::heatmap::{HeatmapGeometry, MAX_LABEL_CHARS, MAX_TOKENS};

/// Output image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// PNG bytes (8-bit RGB).
    Png,
    /// SVG text (UTF-8 bytes).
    Svg,
}

impl Format {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }

    /// The media type, e.g. for an HTTP `Content-Type`.
    pub fn mime_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
        }
    }
}

/// What a heatmap shows.
#[derive(Clone, Copy, Debug)]
pub struct HeatmapSpec<'a> {
    /// Title above the figure; empty for none.
    pub title: &'a str,
    /// Source pieces: the columns, labelled above the matrix (vertically when too wide).
    pub source_tokens: &'a [String],
    /// Target pieces: the rows, labelled on the left.
    pub target_tokens: &'a [String],
    /// One row per target token, each with one weight per source token, in `[0, 1]`
    /// (values outside are clamped; non-finite values are an error).
    pub weights: &'a [Vec<f32>],
    /// How weights map to colours.
    pub scale: Scale,
    /// The colours.
    pub palette: Palette,
}

/// A training curve: loss against step for the training and the dev set.
#[derive(Clone, Copy, Debug)]
pub struct LossCurve<'a> {
    /// Title above the figure; empty for none.
    pub title: &'a str,
    /// `(step, loss)` points of the training loss, in drawing order.
    pub train: &'a [(f64, f64)],
    /// `(step, loss)` points of the dev loss, drawn with markers; may be empty.
    pub dev: &'a [(f64, f64)],
    /// Label of the x axis, e.g. `"step"`.
    pub x_label: &'a str,
    /// Label of the y axis, e.g. `"loss"`.
    pub y_label: &'a str,
    /// Legend names of the two series, e.g. `["train", "dev"]`.
    pub labels: [&'a str; 2],
}

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Nothing to draw.
    #[error("nothing to plot: {0}")]
    Empty(&'static str),
    /// The weights have a different number of rows than there are target tokens.
    #[error("the weights have {found} rows, but there are {expected} target tokens")]
    RowCount {
        /// Rows of weights.
        found: usize,
        /// Target tokens.
        expected: usize,
    },
    /// A row of weights has a different length than there are source tokens.
    #[error("row {row} of the weights has {found} values, but there are {expected} source tokens")]
    RaggedRow {
        /// Index of the row (target token).
        row: usize,
        /// Values in that row.
        found: usize,
        /// Source tokens.
        expected: usize,
    },
    /// A weight is NaN or infinite.
    #[error("the weight at row {row}, column {col} is not a finite number ({value})")]
    NonFinite {
        /// Row (target token).
        row: usize,
        /// Column (source token).
        col: usize,
        /// The value.
        value: f32,
    },
    /// More tokens than [`MAX_TOKENS`] on a side.
    #[error("{rows}×{cols} tokens is too large to draw (at most {max} per side)")]
    TooLarge {
        /// Target tokens.
        rows: usize,
        /// Source tokens.
        cols: usize,
        /// The limit.
        max: usize,
    },
    /// A [`Scale::Log`] floor outside `(0, 1)`.
    #[error("the floor of a log scale must lie strictly between 0 and 1, not {0}")]
    InvalidLogFloor(f32),
    /// A loss-curve point with a NaN or infinite coordinate.
    #[error("point {index} of the {series} loss is not finite")]
    NonFinitePoint {
        /// `"train"` or `"dev"`.
        series: &'static str,
        /// Index of the point.
        index: usize,
    },
    /// The embedded font could not be loaded.
    #[error("the embedded font could not be loaded")]
    Font,
    /// plotters failed to draw.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

pub(crate) fn draw_error(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Draws an attention heatmap: PNG bytes or SVG text bytes.
///
/// # Errors
/// [`PlotError`] for empty token lists, weights whose shape does not match the tokens,
/// non-finite weights, an invalid log floor, or more than [`MAX_TOKENS`] tokens on a side.
pub fn heatmap(spec: &HeatmapSpec, format: Format) -> Result<Vec<u8>, PlotError> {
    let layout = crate::heatmap::Layout::new(spec, format)?;
    render(&HeatmapFigure { layout, spec }, format)
}

/// Where the cells of [`heatmap`]'s image for `spec` and `format` lie, without drawing it.
///
/// # Errors
/// The same as [`heatmap`].
pub fn heatmap_geometry(spec: &HeatmapSpec, format: Format) -> Result<HeatmapGeometry, PlotError> {
    Ok(crate::heatmap::Layout::new(spec, format)?.geometry)
}

/// Draws a loss curve: PNG bytes or SVG text bytes.
///
/// # Errors
/// [`PlotError`] when both series are empty or a point is not finite.
pub fn loss_curve(curve: &LossCurve, format: Format) -> Result<Vec<u8>, PlotError> {
    let plot = crate::loss::Plot::new(curve, format)?;
    render(&LossFigure { plot, curve }, format)
}

/// A figure that can be drawn on either of plotters' backends.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

struct HeatmapFigure<'s, 'a> {
    layout: crate::heatmap::Layout,
    spec: &'s HeatmapSpec<'a>,
}

impl Figure for HeatmapFigure<'_, '_> {
    fn size(&self) -> (u32, u32) {
        self.layout.size()
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        self.layout.draw(area, self.spec)
    }
}

struct LossFigure<'s, 'a> {
    plot: crate::loss::Plot,
    curve: &'s LossCurve<'a>,
}

impl Figure for LossFigure<'_, '_> {
    fn size(&self) -> (u32, u32) {
        self.plot.size()
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        self.plot.draw(area, self.curve)
    }
}

fn render(figure: &impl Figure, format: Format) -> Result<Vec<u8>, PlotError> {
    let (w, h) = figure.size();
    match format {
        Format::Png => {
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            {
                let area = crate::text::PngCanvas::new(&mut rgb, (w, h))?.into_drawing_area();
                figure.draw(&area)?;
                area.present().map_err(draw_error)?;
            }
            encode_png(&rgb, w, h)
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let area = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                figure.draw(&area)?;
                area.present().map_err(draw_error)?;
            }
            Ok(svg.into_bytes())
        }
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, PlotError> {
    let png_error = |e: png::EncodingError| PlotError::Png(e.to_string());
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}
