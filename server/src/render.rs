//! Export of an attention matrix ([`RenderRequest`]) as a heatmap image (PNG, SVG) or as the
//! raw weights (JSON, CSV), shared by `POST /api/render` ([`render`]) and `attnscope render`
//! ([`draw`]).
//!
//! Everything is checked before anything is drawn ([`validate`]): both token lists non-empty
//! and at most [`MAX_TOKENS`] long, one row of weights per target token, one weight per source
//! token in each row, every weight finite and in `[0, 1]` (up to [`WEIGHT_TOLERANCE`] of float
//! error, which is clamped away), a known scale and palette, a title of at most
//! [`MAX_TITLE_CHARS`] characters.

use std::path::Path;
use std::str::FromStr;

use attnscope_plot::{HeatmapSpec, Palette, PlotError, Scale};
use attnscope_protocol::ErrorBody;
use attnscope_protocol::RenderRequest;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{AppError, AppState};

/// Largest body accepted by `POST /api/render`, in bytes: room for a matrix of [`MAX_TOKENS`]
/// per side even with 17 significant digits per weight (about 6 MB; attnscope's own `f32`
/// weights take about 3 MB, and a 200×200 matrix about 400 KB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most tokens on one side of a rendered matrix.
pub const MAX_TOKENS: usize = 512;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// How far a weight may lie outside `[0, 1]` (float error, e.g. of a softmax) and still be
/// accepted; it is clamped into `[0, 1]`.
pub const WEIGHT_TOLERANCE: f32 = 1e-3;

/// What an attention matrix is exported as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// A heatmap as PNG bytes.
    #[default]
    Png,
    /// A heatmap as SVG text.
    Svg,
    /// The validated [`RenderRequest`] as JSON: the raw weights document.
    Json,
    /// The raw weights as CSV: a header row `target\source,<source tokens>`, then one row per
    /// target token, the token first.
    Csv,
}

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 4] = [Format::Png, Format::Svg, Format::Json, Format::Csv];

    /// The file extension, without the dot; also the name used in `?format=`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    /// The HTTP `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The HTTP `Content-Disposition`: a download named `attention.<extension>`.
    pub fn content_disposition(self) -> &'static str {
        match self {
            Format::Png => r#"attachment; filename="attention.png""#,
            Format::Svg => r#"attachment; filename="attention.svg""#,
            Format::Json => r#"attachment; filename="attention.json""#,
            Format::Csv => r#"attachment; filename="attention.csv""#,
        }
    }

    /// The format a file name's extension asks for, if it names one (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        Format::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(ext))
    }
}

impl FromStr for Format {
    type Err = AppError;

    /// `png`, `svg`, `json` or `csv`, in any case.
    fn from_str(s: &str) -> Result<Self, AppError> {
        Format::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| AppError::UnknownFormat(s.to_string()))
    }
}

/// A [`RenderRequest`] that passed [`validate`]: weights clamped into `[0, 1]`, scale and
/// palette resolved. Exporting it cannot fail for a reason the client could fix.
#[derive(Clone, Debug)]
pub struct Validated {
    request: RenderRequest,
    scale: Scale,
    palette: Palette,
}

fn invalid(message: String) -> AppError {
    AppError::InvalidRender(message)
}

fn parse_scale(name: &str) -> Result<Scale, AppError> {
    name.parse()
        .map_err(|_| AppError::UnknownScale(name.to_string()))
}

fn parse_palette(name: &str) -> Result<Palette, AppError> {
    name.parse()
        .map_err(|_| AppError::UnknownPalette(name.to_string()))
}

/// Checks `request` and clamps float error out of its weights.
///
/// # Errors
/// [`AppError::InvalidRender`] for empty or too long token lists, a shape that does not match
/// the tokens, a non-finite weight or one outside `[0, 1]`, or too long a title;
/// [`AppError::UnknownScale`] and [`AppError::UnknownPalette`] for names not known.
pub fn validate(mut request: RenderRequest) -> Result<Validated, AppError> {
    let (rows, cols) = (request.target_tokens.len(), request.source_tokens.len());
    for (side, n, what) in [
        ("source_tokens", cols, "the columns"),
        ("target_tokens", rows, "the rows"),
    ] {
        if n == 0 {
            return Err(invalid(format!(
                "{side} is empty: give at least one token ({what} of the matrix)"
            )));
        }
        if n > MAX_TOKENS {
            return Err(invalid(format!(
                "there are {n} {side}; at most {MAX_TOKENS} per side can be rendered: cut the sentence"
            )));
        }
    }
    if request.attention.len() != rows {
        return Err(invalid(format!(
            "attention has {} rows but there are {rows} target_tokens: give one row per target token",
            request.attention.len()
        )));
    }
    for (r, row) in request.attention.iter_mut().enumerate() {
        if row.len() != cols {
            return Err(invalid(format!(
                "attention row {r} (target token {:?}) has {} weights but there are {cols} source_tokens: give one weight per source token",
                request.target_tokens[r],
                row.len()
            )));
        }
        for (c, w) in row.iter_mut().enumerate() {
            if !w.is_finite() {
                return Err(invalid(format!(
                    "the weight at attention row {r}, column {c} is not a finite number ({w}): weights must lie in [0, 1]"
                )));
            }
            if !(-WEIGHT_TOLERANCE..=1.0 + WEIGHT_TOLERANCE).contains(w) {
                return Err(invalid(format!(
                    "the weight at attention row {r}, column {c} is {w}: weights must lie in [0, 1]"
                )));
            }
            *w = w.clamp(0.0, 1.0);
        }
    }
    check_candidates(&request)?;
    if let Some(title) = &request.title {
        let n = title.chars().count();
        if n > MAX_TITLE_CHARS {
            return Err(invalid(format!(
                "the title has {n} characters; at most {MAX_TITLE_CHARS} fit above the figure: shorten it"
            )));
        }
    }
    let scale = request
        .scale
        .as_deref()
        .map(parse_scale)
        .transpose()?
        .unwrap_or_default();
    let palette = request
        .palette
        .as_deref()
        .map(parse_palette)
        .transpose()?
        .unwrap_or_default();
    Ok(Validated {
        request,
        scale,
        palette,
    })
}

/// The candidates are absent or one list per row, of at most 20 tokens with finite
/// log-probabilities no greater than 0.
fn check_candidates(request: &RenderRequest) -> Result<(), AppError> {
    let c = &request.candidates;
    if c.is_empty() {
        return Ok(());
    }
    if c.len() != request.target_tokens.len() {
        return Err(invalid(format!(
            "candidates has {} lists but there are {} target_tokens: give one list per target token, or none",
            c.len(),
            request.target_tokens.len()
        )));
    }
    for (r, list) in c.iter().enumerate() {
        if list.len() > MAX_CANDIDATES {
            return Err(invalid(format!(
                "candidates of row {r} has {} tokens; at most {MAX_CANDIDATES} per row",
                list.len()
            )));
        }
        if let Some(bad) = list
            .iter()
            .find(|x| !x.log_prob.is_finite() || x.log_prob > WEIGHT_TOLERANCE)
        {
            return Err(invalid(format!(
                "candidate {:?} of row {r} has log_prob {}: a log-probability is finite and at most 0",
                bad.token, bad.log_prob
            )));
        }
    }
    Ok(())
}

/// The most candidates a row may carry (the API's largest `top_k`).
const MAX_CANDIDATES: usize = 20;

impl Validated {
    /// The request as validated (weights clamped).
    pub fn request(&self) -> &RenderRequest {
        &self.request
    }

    /// The export in `format`. Drawing a large matrix takes a while: call it off the async
    /// worker threads.
    ///
    /// # Errors
    /// [`AppError::RenderFailed`] when drawing or encoding fails.
    pub fn export(&self, format: Format) -> Result<Vec<u8>, AppError> {
        match format {
            Format::Png => self.image(attnscope_plot::Format::Png),
            Format::Svg => self.image(attnscope_plot::Format::Svg),
            Format::Json => {
                let mut json = serde_json::to_vec(&self.request)
                    .map_err(|e| AppError::RenderFailed(format!("cannot write JSON: {e}")))?;
                json.push(b'\n');
                Ok(json)
            }
            Format::Csv => Ok(self.csv().into_bytes()),
        }
    }

    fn image(&self, format: attnscope_plot::Format) -> Result<Vec<u8>, AppError> {
        let r = &self.request;
        let spec = HeatmapSpec {
            title: r.title.as_deref().unwrap_or(""),
            source_tokens: &r.source_tokens,
            target_tokens: &r.target_tokens,
            weights: &r.attention,
            scale: self.scale,
            palette: self.palette,
        };
        attnscope_plot::heatmap(&spec, format).map_err(|e| match e {
            // Validation rules these out; should the plot crate disagree, it is the input.
            PlotError::Empty(_)
            | PlotError::RowCount { .. }
            | PlotError::RaggedRow { .. }
            | PlotError::NonFinite { .. }
            | PlotError::TooLarge { .. } => invalid(e.to_string()),
            other => AppError::RenderFailed(other.to_string()),
        })
    }

    fn csv(&self) -> String {
        let r = &self.request;
        let mut out = String::from(r"target\source");
        for token in &r.source_tokens {
            out.push(',');
            push_csv_field(&mut out, token);
        }
        if !r.candidates.is_empty() {
            out.push_str(",candidates");
        }
        out.push('\n');
        for (i, (token, row)) in r.target_tokens.iter().zip(&r.attention).enumerate() {
            push_csv_field(&mut out, token);
            for w in row {
                out.push(',');
                out.push_str(&w.to_string());
            }
            if let Some(list) = r.candidates.get(i) {
                // `piece probability` pairs, best first, separated by spaces.
                let cell: Vec<String> = list
                    .iter()
                    .map(|c| format!("{} {}", c.token, c.log_prob.exp()))
                    .collect();
                out.push(',');
                push_csv_field(&mut out, &cell.join(" "));
            }
            out.push('\n');
        }
        out
    }
}

/// Appends `field` as one CSV field (RFC 4180): quoted, with inner quotes doubled, when it holds
/// a comma, a quote or a line break.
fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Validates `request`, then exports it in `format`.
///
/// # Errors
/// Those of [`validate`] and [`Validated::export`].
pub fn draw(request: &RenderRequest, format: Format) -> Result<Vec<u8>, AppError> {
    validate(request.clone())?.export(format)
}

/// The body limit of `POST /api/render`: [`MAX_BODY_BYTES`], instead of the API's
/// [`crate::MAX_BODY_BYTES`].
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY_BYTES)
}

/// The query string of `POST /api/render`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderQuery {
    /// `png` (default), `svg`, `json` or `csv`.
    #[serde(default)]
    format: Option<String>,
}

/// `POST /api/render?format=png|svg|json|csv`: a [`RenderRequest`] exported as a download.
#[utoipa::path(
    post,
    path = "/api/render",
    tag = "export",
    params(("format" = Option<String>, Query, description = "png (default), svg, json or csv")),
    request_body = RenderRequest,
    responses(
        (status = 200, description = "The heatmap image (PNG or SVG), or the raw weights (JSON or CSV), as an attachment"),
        (status = 400, description = "Invalid matrix, format, scale or palette", body = ErrorBody),
        (status = 413, description = "Body over the render limit", body = ErrorBody),
    )
)]
pub async fn render(
    State(st): State<AppState>,
    query: Result<Query<RenderQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(|e| {
        invalid(format!(
            "bad query string ({}): the only parameter is format=png|svg|json|csv",
            e.body_text()
        ))
    })?;
    let format = match &query.format {
        Some(f) => f.parse::<Format>()?,
        None => Format::default(),
    };
    let body = body.map_err(|e| AppError::from_body(e, MAX_BODY_BYTES))?;
    let request: RenderRequest =
        serde_json::from_slice(&body).map_err(|e| AppError::InvalidJson(e.to_string()))?;
    let validated = validate(request)?;
    let bytes = match format {
        Format::Json | Format::Csv => validated.export(format)?,
        Format::Png | Format::Svg => {
            // Drawing is CPU work like decoding: it takes a CPU slot.
            let gate = st.gate.clone();
            tokio::task::spawn_blocking(move || {
                let _slot = gate.acquire(crate::gate::Turn::First);
                validated.export(format)
            })
            .await
            .map_err(|e| AppError::RenderFailed(e.to_string()))??
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CONTENT_DISPOSITION, format.content_disposition()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_names_and_file_extensions() {
        assert_eq!("PNG".parse::<Format>().unwrap(), Format::Png);
        assert_eq!(" csv".parse::<Format>().unwrap(), Format::Csv);
        assert!(matches!(
            "gif".parse::<Format>(),
            Err(AppError::UnknownFormat(_))
        ));
        assert_eq!(Format::from_path(Path::new("a/b.SVG")), Some(Format::Svg));
        assert_eq!(
            Format::from_path(Path::new("weights.json")),
            Some(Format::Json)
        );
        assert_eq!(Format::from_path(Path::new("attention")), None);
        assert_eq!(Format::from_path(Path::new("x.gif")), None);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks_only() {
        let mut out = String::new();
        for f in ["\u{2581}chat", "a,\"b\"", "two\nlines", "</s>"] {
            push_csv_field(&mut out, f);
            out.push('|');
        }
        assert_eq!(out, "\u{2581}chat|\"a,\"\"b\"\"\"|\"two\nlines\"|</s>|");
    }
}
