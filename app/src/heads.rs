//! A Transformer's attention per layer and head, unpacked from the stream and arranged as
//! matrices for the layer x head grid: cross-attention (target x source), masked decoder
//! self-attention (target x target, the causal mask above the diagonal) and encoder
//! self-attention (source x source), one head, or averaged over heads or over layers.
//! Pure Rust, unit-tested natively.

use attnscope_protocol::{HeadsAttention, PackedWeights};

/// Which attention of the Transformer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Decoder over encoder: one row per target token, one column per source token.
    Cross,
    /// Masked decoder self-attention: row `t` sees target positions `0..=t`.
    DecoderSelf,
    /// Encoder self-attention: every source token over every source token.
    Encoder,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Cross, Kind::DecoderSelf, Kind::Encoder];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cross => "cross",
            Self::DecoderSelf => "decoder-self",
            Self::Encoder => "encoder",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Cross => "Cross-attention",
            Self::DecoderSelf => "Masked decoder self-attention",
            Self::Encoder => "Encoder self-attention",
        }
    }

    /// Whether cell `(row, col)` is hidden by the causal mask.
    pub fn masked(self, row: usize, col: usize) -> bool {
        self == Self::DecoderSelf && col > row
    }
}

/// One decoding step's weights: `cross[l][h]` over the source, `self_[l][h]` over target
/// positions `0..=t`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepHeads {
    pub cross: Vec<Vec<Vec<f32>>>,
    pub self_: Vec<Vec<Vec<f32>>>,
}

/// Splits packed `[a, b, c]` weights into nested `[a][b][c]` vectors.
fn nest3(p: &PackedWeights) -> Result<Vec<Vec<Vec<f32>>>, String> {
    let [a, b, _] = p.shape[..] else {
        return Err(format!("expected 3 dimensions, got shape {:?}", p.shape));
    };
    let rows = p.rows().map_err(|e| e.to_string())?;
    if rows.len() != a * b {
        return Err(format!("shape {:?} does not match its rows", p.shape));
    }
    Ok(rows.chunks(b.max(1)).map(<[Vec<f32>]>::to_vec).collect())
}

impl StepHeads {
    /// Unpacks a step's `heads` as streamed.
    pub fn unpack(h: &HeadsAttention) -> Result<Self, String> {
        Ok(Self {
            cross: nest3(&h.cross)?,
            self_: nest3(&h.self_attention)?,
        })
    }
}

/// Encoder self-attention `[layer][head][query][key]`, unpacked from `done`.
pub fn unpack_encoder(p: &PackedWeights) -> Result<Vec<Vec<Vec<Vec<f32>>>>, String> {
    let [l, h, q, _] = p.shape[..] else {
        return Err(format!("expected 4 dimensions, got shape {:?}", p.shape));
    };
    let rows = p.rows().map_err(|e| e.to_string())?;
    if rows.len() != l * h * q {
        return Err(format!("shape {:?} does not match its rows", p.shape));
    }
    Ok(rows
        .chunks((h * q).max(1))
        .map(|layer| layer.chunks(q.max(1)).map(<[Vec<f32>]>::to_vec).collect())
        .collect())
}

/// Everything the grid shows for one translation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heads {
    pub steps: Vec<StepHeads>,
    pub encoder: Option<Vec<Vec<Vec<Vec<f32>>>>>,
}

impl Heads {
    /// `(layers, heads)`, from the first step or the encoder; `(0, 0)` when empty.
    pub fn dims(&self) -> (usize, usize) {
        if let Some(s) = self.steps.first() {
            return (s.cross.len(), s.cross.first().map_or(0, Vec::len));
        }
        match &self.encoder {
            Some(e) => (e.len(), e.first().map_or(0, Vec::len)),
            None => (0, 0),
        }
    }

    /// The matrix of one layer and head. Decoder self-attention rows are padded with zeros
    /// to the number of steps (the padded cells are the masked ones).
    pub fn matrix(&self, kind: Kind, layer: usize, head: usize) -> Vec<Vec<f32>> {
        let pick = |m: &Vec<Vec<Vec<f32>>>| {
            m.get(layer)
                .and_then(|l| l.get(head))
                .cloned()
                .unwrap_or_default()
        };
        match kind {
            Kind::Cross => self.steps.iter().map(|s| pick(&s.cross)).collect(),
            Kind::DecoderSelf => {
                let n = self.steps.len();
                self.steps
                    .iter()
                    .map(|s| {
                        let mut row = pick(&s.self_);
                        row.resize(n, 0.0);
                        row
                    })
                    .collect()
            }
            Kind::Encoder => self
                .encoder
                .as_ref()
                .and_then(|e| e.get(layer))
                .and_then(|l| l.get(head))
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The mean over the heads of `layer`.
    pub fn mean_over_heads(&self, kind: Kind, layer: usize) -> Vec<Vec<f32>> {
        let (_, heads) = self.dims();
        mean((0..heads).map(|h| self.matrix(kind, layer, h)).collect())
    }

    /// The mean over the layers of `head`.
    pub fn mean_over_layers(&self, kind: Kind, head: usize) -> Vec<Vec<f32>> {
        let (layers, _) = self.dims();
        mean((0..layers).map(|l| self.matrix(kind, l, head)).collect())
    }
}

/// Element-wise mean of matrices of the same shape (the shape of the first).
pub fn mean(mats: Vec<Vec<Vec<f32>>>) -> Vec<Vec<f32>> {
    let n = mats.len();
    let mut iter = mats.into_iter();
    let Some(mut acc) = iter.next() else {
        return Vec::new();
    };
    for m in iter {
        for (ra, rm) in acc.iter_mut().zip(m) {
            for (a, v) in ra.iter_mut().zip(rm) {
                *a += v;
            }
        }
    }
    for row in &mut acc {
        for a in row.iter_mut() {
            *a /= n as f32;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: usize) -> StepHeads {
        // 2 layers x 2 heads, 3 source tokens; self-attention over t + 1 positions.
        let one_hot = |n: usize, i: usize| (0..n).map(|j| f32::from(u8::from(j == i))).collect();
        StepHeads {
            cross: (0..2)
                .map(|l| (0..2).map(|h| one_hot(3, (l + h + t) % 3)).collect())
                .collect(),
            self_: (0..2)
                .map(|_| (0..2).map(|h| one_hot(t + 1, h.min(t))).collect())
                .collect(),
        }
    }

    #[test]
    fn unpacks_what_the_server_packs() {
        let s = step(1);
        let packed = HeadsAttention {
            cross: PackedWeights::from_nested3(&s.cross).unwrap(),
            self_attention: PackedWeights::from_nested3(&s.self_).unwrap(),
        };
        assert_eq!(StepHeads::unpack(&packed).unwrap(), s);
        let enc = vec![vec![vec![vec![0.5, 0.5], vec![1.0, 0.0]]; 2]; 3];
        let p = PackedWeights::from_nested4(&enc).unwrap();
        assert_eq!(unpack_encoder(&p).unwrap(), enc);
        let flat = PackedWeights::pack(vec![2], &[0.5, 0.5]).unwrap();
        assert!(unpack_encoder(&flat).is_err());
    }

    #[test]
    fn matrices_per_head_and_means() {
        let heads = Heads {
            steps: (0..3).map(step).collect(),
            encoder: None,
        };
        assert_eq!(heads.dims(), (2, 2));
        let cross = heads.matrix(Kind::Cross, 1, 0);
        assert_eq!(cross.len(), 3);
        assert_eq!(cross[0], vec![0.0, 1.0, 0.0]);
        let dec = heads.matrix(Kind::DecoderSelf, 0, 1);
        assert_eq!(
            dec,
            vec![
                vec![1.0, 0.0, 0.0],
                vec![0.0, 1.0, 0.0],
                vec![0.0, 1.0, 0.0]
            ]
        );
        assert!(Kind::DecoderSelf.masked(0, 1) && !Kind::DecoderSelf.masked(1, 1));
        assert!(!Kind::Cross.masked(0, 2));
        let m = heads.mean_over_heads(Kind::Cross, 0);
        assert_eq!(m[0], vec![0.5, 0.5, 0.0]);
        let m = heads.mean_over_layers(Kind::Cross, 0);
        assert_eq!(m[0], vec![0.5, 0.5, 0.0]);
        assert!(heads.matrix(Kind::Encoder, 0, 0).is_empty());
        assert!(mean(Vec::new()).is_empty());
    }
}
