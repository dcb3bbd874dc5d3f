//! `attnscope render`: an attention matrix as a heatmap image (PNG, SVG) or as raw weights
//! (JSON, CSV), from the output of `attnscope translate --format json` or a render request.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use attnscope::render::{self, Format};
use attnscope_protocol::{RenderRequest, TranslateResponse};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// One JSON document: the output of `attnscope translate --format json` for one sentence,
    /// or a render request (`source_tokens`, `target_tokens`, `attention`, as `POST
    /// /api/render` takes) [default: stdin].
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where to write the export [default: stdout].
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// png, svg, json or csv [default: from the extension of --output, else png].
    #[arg(long)]
    format: Option<String>,
    /// Title above the figure ("" for none) [default: the model and the translation, or the
    /// request's own title].
    #[arg(long)]
    title: Option<String>,
    /// How weights map to colours: linear or log [default: the request's, else linear].
    #[arg(long)]
    scale: Option<String>,
    /// The colours: viridis, cividis or greys [default: the request's, else viridis].
    #[arg(long)]
    palette: Option<String>,
    /// Draw beam hypothesis N (0 is the best) of a translation made with `--beam`.
    #[arg(long, value_name = "N")]
    hypothesis: Option<usize>,
}

pub fn run(a: RenderArgs) -> Result<()> {
    let format = match (&a.format, &a.output) {
        (Some(f), _) => f.parse::<Format>()?,
        (None, Some(path)) => Format::from_path(path).with_context(|| {
            format!(
                "cannot tell the format from {}: give --format png, svg, json or csv, or an output file ending in one of them",
                path.display()
            )
        })?,
        (None, None) => Format::default(),
    };
    let stdout = std::io::stdout();
    if a.output.is_none() && format == Format::Png && stdout.is_terminal() {
        bail!("not writing PNG bytes to a terminal: give --output FILE, or redirect stdout");
    }
    let mut request = read_request(&a)?;
    if let Some(title) = a.title {
        request.title = (!title.is_empty()).then_some(title);
    }
    if a.scale.is_some() {
        request.scale = a.scale;
    }
    if a.palette.is_some() {
        request.palette = a.palette;
    }
    let bytes = render::draw(&request, format)?;
    match &a.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} target × {} source tokens, {} bytes)",
                path.display(),
                request.target_tokens.len(),
                request.source_tokens.len(),
                bytes.len()
            );
        }
        None => {
            let mut out = stdout.lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The one JSON document of the input, as a render request.
fn read_request(a: &RenderArgs) -> Result<RenderRequest> {
    let (bytes, name) = match &a.input {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "no input: pipe one JSON document into stdin, e.g. `echo \"I am cold.\" | attnscope translate --format json | attnscope render --output attention.png`, or give --input FILE"
                );
            }
            let mut bytes = Vec::new();
            stdin.read_to_end(&mut bytes).context("cannot read stdin")?;
            (bytes, "stdin".to_string())
        }
    };
    let mut docs = serde_json::Deserializer::from_slice(&bytes).into_iter::<serde_json::Value>();
    let doc = match docs.next() {
        None => bail!("{name} holds no JSON document"),
        Some(doc) => doc.with_context(|| format!("{name} is not valid JSON"))?,
    };
    if docs.next().is_some() {
        bail!(
            "{name} holds more than one JSON document (translate writes one per input line): render one at a time, e.g. through `head -n 1`"
        );
    }
    let is_translation = doc
        .as_object()
        .is_some_and(|o| o.contains_key("translation") || o.contains_key("model"));
    if !is_translation {
        if a.hypothesis.is_some() {
            bail!(
                "--hypothesis picks a beam hypothesis of `attnscope translate --format json` output, but {name} holds a render request"
            );
        }
        return serde_json::from_value(doc).with_context(|| {
            format!(
                "{name} is neither the output of `attnscope translate --format json` nor a render request (source_tokens, target_tokens, attention, and optionally title, scale, palette)"
            )
        });
    }
    let t: TranslateResponse = serde_json::from_value(doc).with_context(|| {
        format!("{name} is not valid `attnscope translate --format json` output")
    })?;
    let (translation, target_tokens, attention, label, candidates) = match a.hypothesis {
        None => {
            let candidates = if t.steps.iter().any(|s| !s.candidates.is_empty()) {
                t.steps.into_iter().map(|s| s.candidates).collect()
            } else {
                Vec::new()
            };
            (
                t.translation,
                t.target_tokens,
                t.attention,
                String::new(),
                candidates,
            )
        }
        Some(n) => {
            let count = t.hypotheses.len();
            if count == 0 {
                bail!(
                    "this translation has no beam hypotheses: translate with --beam K (K > 1) to draw hypothesis {n}"
                );
            }
            let Some(h) = t.hypotheses.into_iter().nth(n) else {
                bail!(
                    "there is no hypothesis {n}: this translation has {count} (0 to {})",
                    count - 1
                );
            };
            (
                h.translation,
                h.target_tokens,
                h.attention,
                format!(", hypothesis {n}"),
                Vec::new(),
            )
        }
    };
    let mut title = format!("{}{label}: {translation}", t.model);
    if title.chars().count() > render::MAX_TITLE_CHARS {
        title = title.chars().take(render::MAX_TITLE_CHARS - 1).collect();
        title.push('…');
    }
    Ok(RenderRequest {
        title: Some(title),
        source_tokens: t.source_tokens,
        target_tokens,
        attention,
        scale: None,
        palette: None,
        candidates,
    })
}
