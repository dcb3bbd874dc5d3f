//! The embedded font: text measurement, and text rendering for PNG output.
//!
//! plotters' own ab_glyph path places each glyph without its side bearing and at whole
//! pixels, and its baseline differs from the SVG backend's, so PNG output goes through
//! [`PngCanvas`]: plotters' bitmap backend with a text renderer that lays glyphs out with
//! kerning and subpixel positions, and anchors text the way plotters' SVG backend does. PNG
//! and SVG output then agree on where text goes.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, Glyph, GlyphId, PxScale, ScaleFont, point};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontDesc, FontFamily, FontStyle, FontTransform, register_font};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

use crate::PlotError;

/// The font family every text of a plot uses. In PNG output it is the embedded DejaVu Sans;
/// in SVG output it is written as the `font-family` attribute, so a viewer uses its own
/// DejaVu Sans, or else its default sans-serif face.
pub(crate) const FAMILY: &str = "DejaVu Sans, sans-serif";

/// DejaVu Sans 2.37 (Debian's fonts-dejavu-core); see `assets/fonts/DejaVuSans-LICENSE.txt`.
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// DejaVu Sans' x-height (1120 of 2048 units per em).
const X_HEIGHT_EM: f32 = 1120.0 / 2048.0;

/// The parsed embedded font, also registered with plotters (once per process) as [`FAMILY`]
/// and as `sans-serif`, the family plotters' chart labels default to, so that plotters can
/// measure text for SVG charts.
pub(crate) fn face() -> Result<&'static FontRef<'static>, PlotError> {
    static FACE: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FACE.get_or_init(|| {
        let registered = [FAMILY, "sans-serif"]
            .iter()
            .all(|name| register_font(name, FontStyle::Normal, DEJAVU_SANS).is_ok());
        if registered {
            FontRef::try_from_slice(DEJAVU_SANS).ok()
        } else {
            None
        }
    })
    .as_ref()
    .ok_or(PlotError::Font)
}

/// The plot font at `size`: plotters' text size, whose em is `size / 1.24` pixels (the factor
/// plotters' SVG backend divides by to get its `font-size`).
pub(crate) fn font(size: f64) -> FontDesc<'static> {
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Normal)
}

/// Pixels per em for plotters' text size `size`.
fn em(size: f64) -> f32 {
    (size / 1.24) as f32
}

/// One line of text laid out on a baseline at y = 0, starting at x = 0.
struct Run {
    glyphs: Vec<(GlyphId, f32)>,
    width: f32,
    scale: PxScale,
}

fn layout(face: &FontRef<'static>, text: &str, size: f64) -> Run {
    let em = em(size);
    let height_per_em = face
        .units_per_em()
        .map(|u| face.height_unscaled() / u)
        .unwrap_or(1.0);
    let scale = PxScale::from(em * height_per_em);
    let scaled = face.as_scaled(scale);
    let mut glyphs = Vec::with_capacity(text.len());
    let mut x = 0.0;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        glyphs.push((id, x));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    Run {
        glyphs,
        width: x,
        scale,
    }
}

/// `text` with control characters made visible (`\n`, `\t` and `\r` as those two-character
/// escapes, others as U+FFFD), since they have no glyph and are not allowed in SVG (XML) text.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Width in pixels of `text` set horizontally at `size`.
pub(crate) fn width(text: &str, size: f64) -> Result<f64, PlotError> {
    Ok(f64::from(layout(face()?, text, size).width))
}

/// Where and how one piece of text goes.
#[derive(Clone, Copy)]
pub(crate) struct Placement {
    /// Font size (plotters' size; see [`font`]).
    pub size: f64,
    pub colour: RGBColor,
    /// Anchor along the text's own direction: where `at` lies along the text.
    pub align: HPos,
    /// Reads bottom to top (rotated a quarter turn counter-clockwise) instead of left to right.
    pub vertical: bool,
}

/// Draws `text` with the middle of its lowercase letters on the line through `at` (across the
/// text's direction), anchored along it by `place.align`.
pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    at: (f64, f64),
    place: Placement,
) -> Result<(), PlotError> {
    if text.is_empty() {
        return Ok(());
    }
    let transform = if place.vertical {
        FontTransform::Rotate270
    } else {
        FontTransform::None
    };
    let style = font(place.size)
        .transform(transform)
        .color(&place.colour)
        .pos(Pos::new(place.align, VPos::Center));
    area.draw_text(text, &style, (at.0.round() as i32, at.1.round() as i32))
        .map_err(crate::draw_error)
}

type BitMapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

/// plotters' RGB bitmap backend, with text drawn by the embedded font (see the module docs).
pub(crate) struct PngCanvas<'a> {
    inner: BitMapBackend<'a>,
    face: &'static FontRef<'static>,
}

impl<'a> PngCanvas<'a> {
    pub(crate) fn new(rgb: &'a mut [u8], size: (u32, u32)) -> Result<Self, PlotError> {
        Ok(PngCanvas {
            inner: BitMapBackend::with_buffer(rgb, size),
            face: face()?,
        })
    }
}

impl DrawingBackend for PngCanvas<'_> {
    type ErrorType = BitMapError;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<BitMapError>> {
        let run = layout(self.face, text, style.size());
        Ok((run.width.ceil() as u32, em(style.size()).ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<BitMapError>> {
        let colour = style.color();
        if colour.alpha <= 0.0 {
            return Ok(());
        }
        let run = layout(self.face, text, style.size());
        let em = em(style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -run.width / 2.0,
            HPos::Right => -run.width,
        };
        // Baseline below the anchor, as plotters' SVG backend sets `dy`.
        let baseline = match anchor.v_pos {
            VPos::Top => 0.76 * em,
            VPos::Center => 0.5 * X_HEIGHT_EM * em,
            VPos::Bottom => -0.5 * X_HEIGHT_EM * em,
        };
        let transform = style.transform();
        let mut pixels: Vec<(BackendCoord, f32)> = Vec::new();
        for &(id, x) in &run.glyphs {
            let glyph: Glyph = id.with_scale_and_position(run.scale, point(x + dx, baseline));
            let Some(outline) = self.face.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
            outline.draw(|gx, gy, coverage| {
                if coverage > 0.0 {
                    let (lx, ly) = (x0 + gx as i32, y0 + gy as i32);
                    // The pixel square [lx, lx+1) × [ly, ly+1), turned about the anchor.
                    let (tx, ty) = match transform {
                        FontTransform::None => (lx, ly),
                        FontTransform::Rotate90 => (-ly - 1, lx),
                        FontTransform::Rotate180 => (-lx - 1, -ly - 1),
                        FontTransform::Rotate270 => (ly, -lx - 1),
                    };
                    pixels.push(((pos.0 + tx, pos.1 + ty), coverage.min(1.0)));
                }
            });
        }
        for (p, coverage) in pixels {
            let c = BackendColor {
                alpha: colour.alpha * f64::from(coverage),
                rgb: colour.rgb,
            };
            self.inner.draw_pixel(p, c)?;
        }
        Ok(())
    }
}
