//! Static, publication-quality figures of attnscope: attention heatmaps ([`heatmap`]) and
//! training curves ([`loss_curve`]), as PNG or SVG bytes, drawn with plotters.
//!
//! The crate needs no web stack and no system font library (no fontconfig or freetype): text
//! is measured and, in PNG output, rasterised with ab_glyph from the DejaVu Sans font embedded
//! in the binary (also registered with plotters through its `ab_glyph` feature), which covers
//! the SentencePiece word-start marker `▁` and accented Latin text. SVG output writes escaped
//! `<text>` elements naming the same family, falling back to the viewer's sans-serif face,
//! and does not embed the font. PNG figures have twice the SVG's pixel size, for print.
//!
//! A heatmap has one cell per (target token, source token) pair, row `i` being target token
//! `i` from the top, coloured by a colour-blind-safe [`Palette`] on a linear or log [`Scale`],
//! with token labels on both axes and a colour bar. Its size grows with the token count up to
//! a cap, past which cells shrink and only every n-th token is labelled.
//! [`heatmap_geometry`] tells where the cells of a rendered heatmap lie.

//!
//! The colour scales ([`Palette`], [`Scale`]) need nothing else, so the browser app uses
//! them without the `draw` feature (plotters, the font): the page and the exported images
//! colour a weight the same way.

mod colour;
#[cfg(feature = "draw")]
mod draw;
#[cfg(feature = "draw")]
mod heatmap;
#[cfg(feature = "draw")]
mod loss;
#[cfg(feature = "draw")]
mod text;

pub use colour::{Palette, Scale, UnknownName};
#[cfg(feature = "draw")]
pub use draw::*;
