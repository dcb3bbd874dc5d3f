//! Alignment methods: which matrix of a forced decoding the links are read from
//! ([`AlignSource`]: attention of one layer or head or their mean, shifted or not,
//! norm-weighted or not; or an attribution) and how ([`AlignMethod`]: the extraction, the
//! symmetrization and the handling of final punctuation). [`PieceMatrices`] holds what one
//! forced decoding offers and hands out any source's piece-level matrix; [`AlignMethod::align`]
//! turns a word-level matrix into links.

use std::fmt;
use std::str::FromStr;

use super::Links;
use super::extract::{Directions, Extraction, directions};
use super::symmetrize::{Symmetrization, symmetrize};
use crate::decoding::values::AttentionValues;
use crate::explain::{Attribution, Method};
use crate::{DecodeStep, Error, Result};

/// The matrix alignment links are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlignSource {
    /// Cross-attention weights.
    Attention {
        /// 0-based layer; `None`: the mean over the layers.
        layer: Option<usize>,
        /// 0-based head; `None`: the mean over the heads.
        head: Option<usize>,
        /// Each weight times the size of what it mixes ([`AttentionValues`]): `α_hj ‖v_hj‖`
        /// for one head, `‖Σ_h α_hj v_hj‖` for a layer's heads together.
        norm: bool,
        /// The attention of the step where the target word is the decoder's *input* (the
        /// step after the one that emits it), as Garg et al. (2019) and Chen et al. (2020)
        /// read alignments.
        shift: bool,
    },
    /// An attribution of each emitted token's log-probability to the source tokens (rows
    /// normalised to absolute values summing to 1).
    Attribution(Method),
    /// Where the attention and an attribution agree: the cell-wise product of the mean
    /// attention of every layer and head and the attribution, each row normalised to sum
    /// to 1 (a product of experts: a link needs both to weigh the source token).
    Agreement(Method),
}

impl AlignSource {
    /// The row the app streams: the mean over the last layer's heads.
    pub fn streamed(layers: usize) -> Self {
        AlignSource::Attention {
            layer: Some(layers.saturating_sub(1)),
            head: None,
            norm: false,
            shift: false,
        }
    }

    /// Every attention source of a model with `layers` layers of `heads` heads: each layer's
    /// heads and their mean, the mean of the layers (when there are several), each plain and
    /// norm-weighted, at the output step and shifted.
    pub fn attention_sources(layers: usize, heads: usize) -> Vec<AlignSource> {
        let mut cells: Vec<(Option<usize>, Option<usize>)> = Vec::new();
        for l in 0..layers {
            cells.push((Some(l), None));
            if heads > 1 {
                cells.extend((0..heads).map(|h| (Some(l), Some(h))));
            }
        }
        if layers > 1 {
            cells.push((None, None));
        }
        let mut out = Vec::new();
        for shift in [false, true] {
            for norm in [false, true] {
                for &(layer, head) in &cells {
                    out.push(AlignSource::Attention {
                        layer,
                        head,
                        norm,
                        shift,
                    });
                }
            }
        }
        out
    }

    /// Whether the server can compute it from a decoding alone (attributions need more
    /// passes).
    pub fn from_attention(self) -> bool {
        matches!(self, AlignSource::Attention { .. })
    }

    /// The name people read, for a model of `layers` layers and `heads` heads.
    pub fn label(self, layers: usize, heads: usize) -> String {
        match self {
            AlignSource::Attribution(m) => m.label().to_string(),
            AlignSource::Agreement(m) => format!("attention × {}", m.label()),
            AlignSource::Attention {
                layer,
                head,
                norm,
                shift,
            } => {
                let mut s = if layers <= 1 && heads <= 1 {
                    "attention".to_string()
                } else {
                    let l = layer.map_or("all layers".to_string(), |l| format!("layer {}", l + 1));
                    match head {
                        Some(h) => format!("{l}, head {}", h + 1),
                        None if heads > 1 => format!("{l}, mean of heads"),
                        None => l,
                    }
                };
                if norm {
                    s.push_str(", norm-weighted");
                }
                if shift {
                    s.push_str(", shifted");
                }
                s
            }
        }
    }
}

impl fmt::Display for AlignSource {
    /// `attention/L2/Hmean[/norm][/shift]` (1-based), an attribution's API name, or
    /// `agreement/` and an attribution's API name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AlignSource::Attribution(m) => f.write_str(m.as_str()),
            AlignSource::Agreement(m) => write!(f, "agreement/{}", m.as_str()),
            AlignSource::Attention {
                layer,
                head,
                norm,
                shift,
            } => {
                let l = layer.map_or("Lmean".to_string(), |l| format!("L{}", l + 1));
                let h = head.map_or("Hmean".to_string(), |h| format!("H{}", h + 1));
                write!(f, "attention/{l}/{h}")?;
                if norm {
                    f.write_str("/norm")?;
                }
                if shift {
                    f.write_str("/shift")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for AlignSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "unknown alignment source `{s}`: use attention/L<n>|Lmean/H<n>|Hmean[/norm][/shift], an attribution method or agreement/<attribution method>"
            ))
        };
        if let Some(m) = s.strip_prefix("agreement/") {
            return m
                .parse::<Method>()
                .map(AlignSource::Agreement)
                .map_err(|_| bad());
        }
        let Some(rest) = s.strip_prefix("attention/") else {
            return s
                .parse::<Method>()
                .map(AlignSource::Attribution)
                .map_err(|_| bad());
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let index = |p: &str, prefix: char| -> Result<Option<usize>> {
            let v = p.strip_prefix(prefix).ok_or_else(bad)?;
            if v == "mean" {
                return Ok(None);
            }
            match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Some(n - 1)),
                _ => Err(bad()),
            }
        };
        let (Some(l), Some(h)) = (parts.first(), parts.get(1)) else {
            return Err(bad());
        };
        let (layer, head) = (index(l, 'L')?, index(h, 'H')?);
        let flags = &parts[2..];
        if flags.iter().any(|f| *f != "norm" && *f != "shift") {
            return Err(bad());
        }
        Ok(AlignSource::Attention {
            layer,
            head,
            norm: flags.contains(&"norm"),
            shift: flags.contains(&"shift"),
        })
    }
}

/// One way to read word alignments off a forced decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignMethod {
    pub source: AlignSource,
    pub extraction: Extraction,
    pub symmetrization: Symmetrization,
    /// When both sentences end in punctuation, link those two words to each other and read
    /// the other links with them left out: a final full stop gathers weight from many words
    /// (a sink) without being their translation.
    pub final_punctuation: bool,
}

impl AlignMethod {
    /// The name people read.
    pub fn label(&self, layers: usize, heads: usize) -> String {
        format!(
            "{}; {}; {}{}",
            self.source.label(layers, heads),
            self.extraction.label(),
            self.symmetrization.name(),
            if self.final_punctuation {
                "; final punctuation paired"
            } else {
                ""
            }
        )
    }

    /// The links of a word-level matrix `m[target][source]` of sentences `source` and
    /// `target` (the words, for the final punctuation).
    pub fn align(&self, m: &[Vec<f32>], source: &[String], target: &[String]) -> Links {
        self.merge(&self.directions(m, source, target))
    }

    /// The first half of [`Self::align`]: the directional links by this method's extraction
    /// and punctuation handling, which every symmetrization of them shares.
    pub fn directions(&self, m: &[Vec<f32>], source: &[String], target: &[String]) -> Directed {
        let pair = self.final_punctuation
            && matches!(
                (source.last(), target.last()),
                (Some(s), Some(t)) if is_punctuation(s) && is_punctuation(t)
            )
            && m.len() == target.len();
        if !pair {
            return Directed {
                directions: directions(m, self.extraction),
                paired: None,
            };
        }
        let (ls, lt) = (source.len() - 1, target.len() - 1);
        let trimmed: Vec<Vec<f32>> = m[..lt]
            .iter()
            .map(|row| row.iter().take(ls).copied().collect())
            .collect();
        Directed {
            directions: directions(&trimmed, self.extraction),
            paired: Some((ls, lt)),
        }
    }

    /// The second half of [`Self::align`]: the directional links merged by this method's
    /// symmetrization, with the paired final punctuation.
    pub fn merge(&self, d: &Directed) -> Links {
        let mut links = symmetrize(&d.directions, self.symmetrization);
        links.extend(d.paired);
        links
    }

    /// Whether `other` reads the same directional links (it differs at most in how it merges
    /// them).
    pub fn same_directions(&self, other: &AlignMethod) -> bool {
        self.source == other.source
            && self.extraction == other.extraction
            && self.final_punctuation == other.final_punctuation
    }
}

/// The directional links of one sentence pair by one method, before merging
/// ([`AlignMethod::directions`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directed {
    pub directions: Directions,
    /// The final punctuation marks' link, when they were paired and left out of the matrix.
    pub paired: Option<(usize, usize)>,
}

/// A word made of punctuation only (`.`, `?`, `!`, `...`, `»`).
pub fn is_punctuation(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| !c.is_alphanumeric())
}

impl fmt::Display for AlignMethod {
    /// `SOURCE+EXTRACTION+SYMMETRIZATION[+punct]`, e.g.
    /// `attention/L2/Hmean/norm+argmax+grow-diag-final+punct`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{}+{}{}",
            self.source,
            self.extraction.spec(),
            self.symmetrization.name(),
            if self.final_punctuation { "+punct" } else { "" }
        )
    }
}

impl FromStr for AlignMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('+').collect();
        let (source, extraction, sym, rest) = match parts[..] {
            [a, b, c] => (a, b, c, None),
            [a, b, c, d] => (a, b, c, Some(d)),
            _ => {
                return Err(Error::Invalid(format!(
                    "`{s}` is not an alignment method: write SOURCE+EXTRACTION+SYMMETRIZATION[+punct], e.g. attention/L1/Hmean+argmax+grow-diag-final"
                )));
            }
        };
        if rest.is_some_and(|r| r != "punct") {
            return Err(Error::Invalid(format!(
                "`{s}`: the fourth part of an alignment method can only be `punct`"
            )));
        }
        Ok(AlignMethod {
            source: source.parse()?,
            extraction: Extraction::from_spec(extraction)?,
            symmetrization: sym.parse()?,
            final_punctuation: rest.is_some(),
        })
    }
}

/// Everything one forced decoding offers to read alignments from, at piece level.
pub struct PieceMatrices {
    /// `[layer][head][step][source]`.
    cross: Vec<Vec<Vec<Vec<f32>>>>,
    /// `‖v‖`, `[layer][head][source]`, when values were given.
    norms: Option<Vec<Vec<Vec<f32>>>>,
    /// `‖Σ_h α_hj v_hj‖`, `[layer][step][source]`, when values were given.
    mixed: Option<Vec<Vec<Vec<f32>>>>,
    attributions: Vec<Attribution>,
    /// The sentence's source positions in the attribution rows.
    source: std::ops::Range<usize>,
}

impl PieceMatrices {
    /// From the steps of one decoded sentence (their source positions `first..first + n`),
    /// the attention values of that sentence if norm-weighted sources are wanted, and its
    /// attributions.
    pub fn new(
        steps: &[DecodeStep],
        source: std::ops::Range<usize>,
        values: Option<&AttentionValues>,
        attributions: Vec<Attribution>,
    ) -> Result<Self> {
        let cut = |row: &[f32]| -> Result<Vec<f32>> {
            row.get(source.clone()).map(<[f32]>::to_vec).ok_or_else(|| {
                Error::Invalid(format!(
                    "an attention row of {} entries has no source positions {source:?}",
                    row.len()
                ))
            })
        };
        let cross: Vec<Vec<Vec<Vec<f32>>>> = match steps.first().and_then(|s| s.heads.as_ref()) {
            None => vec![vec![
                steps
                    .iter()
                    .map(|s| cut(&s.attention))
                    .collect::<Result<_>>()?,
            ]],
            Some(first) => {
                let (layers, heads) = (first.cross.len(), first.cross.first().map_or(0, Vec::len));
                let mut out = vec![vec![Vec::with_capacity(steps.len()); heads]; layers];
                for s in steps {
                    let h = s.heads.as_ref().ok_or_else(|| {
                        Error::Invalid("some steps carry their heads and some do not".into())
                    })?;
                    for (l, layer) in h.cross.iter().enumerate() {
                        for (k, row) in layer.iter().enumerate() {
                            if let Some(v) = out.get_mut(l).and_then(|o| o.get_mut(k)) {
                                v.push(cut(row)?);
                            }
                        }
                    }
                }
                out
            }
        };
        let (norms, mixed) = match values {
            None => (None, None),
            Some(v) => {
                let norms = v.norms()?;
                let mut mixed = Vec::with_capacity(cross.len());
                for (l, layer) in cross.iter().enumerate() {
                    let rows = (0..steps.len())
                        .map(|t| {
                            let w: Vec<Vec<f32>> = layer.iter().map(|h| h[t].clone()).collect();
                            v.mixed_norms(l, &w)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    mixed.push(rows);
                }
                (Some(norms), Some(mixed))
            }
        };
        Ok(PieceMatrices {
            cross,
            norms,
            mixed,
            attributions,
            source,
        })
    }

    /// Layers and heads of the attention.
    pub fn shape(&self) -> (usize, usize) {
        (self.cross.len(), self.cross.first().map_or(0, Vec::len))
    }

    /// The piece-level matrix `[step][source]` of `source`, or `None` when this decoding
    /// does not offer it (a layer or head the model lacks, norm-weighting without values, an
    /// attribution not computed).
    pub fn matrix(&self, source: AlignSource) -> Option<Vec<Vec<f32>>> {
        match source {
            AlignSource::Agreement(m) => {
                let attention = self.matrix(AlignSource::Attention {
                    layer: None,
                    head: None,
                    norm: false,
                    shift: false,
                })?;
                let attribution = self.matrix(AlignSource::Attribution(m))?;
                Some(
                    attention
                        .iter()
                        .zip(&attribution)
                        .map(|(a, b)| {
                            let row: Vec<f32> = a.iter().zip(b).map(|(x, y)| x * y).collect();
                            let total: f32 = row.iter().sum();
                            if total > 0.0 {
                                row.iter().map(|v| v / total).collect()
                            } else {
                                row
                            }
                        })
                        .collect(),
                )
            }
            AlignSource::Attribution(m) => {
                let a = self.attributions.iter().find(|a| a.method == m)?;
                (0..a.raw.len())
                    .map(|s| {
                        a.normalised(s)
                            .get(self.source.clone())
                            .map(<[f32]>::to_vec)
                    })
                    .collect()
            }
            AlignSource::Attention {
                layer,
                head,
                norm,
                shift,
            } => {
                let layers: Vec<usize> = match layer {
                    Some(l) if l < self.cross.len() => vec![l],
                    Some(_) => return None,
                    None => (0..self.cross.len()).collect(),
                };
                let mut parts = Vec::new();
                for l in layers {
                    parts.push(self.layer_matrix(l, head, norm)?);
                }
                let mut m = mean(&parts)?;
                if shift {
                    m = shifted(&m);
                }
                Some(m)
            }
        }
    }

    fn layer_matrix(&self, l: usize, head: Option<usize>, norm: bool) -> Option<Vec<Vec<f32>>> {
        let heads = self.cross.get(l)?;
        match (head, norm) {
            (Some(h), false) => heads.get(h).cloned(),
            (Some(h), true) => {
                let n = self.norms.as_ref()?.get(l)?.get(h)?;
                Some(
                    heads
                        .get(h)?
                        .iter()
                        .map(|row| row.iter().zip(n).map(|(a, b)| a * b).collect())
                        .collect(),
                )
            }
            (None, false) => mean(heads),
            (None, true) => self.mixed.as_ref()?.get(l).cloned(),
        }
    }
}

/// The cell-wise mean of equally shaped matrices.
fn mean(parts: &[Vec<Vec<f32>>]) -> Option<Vec<Vec<f32>>> {
    let first = parts.first()?;
    let n = parts.len() as f32;
    Some(
        (0..first.len())
            .map(|t| {
                (0..first[t].len())
                    .map(|s| parts.iter().map(|p| p[t][s]).sum::<f32>() / n)
                    .collect()
            })
            .collect(),
    )
}

/// Rows moved up by one: target piece `t` gets the row of step `t + 1`, where it is the
/// decoder's input. The last row (the step that emits `</s>`, which aligns nothing) keeps
/// its own.
pub fn shifted(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let n = rows.len();
    (0..n).map(|t| rows[(t + 1).min(n - 1)].clone()).collect()
}
