//! Reading each row's step off a batch step's tensors: its attention copied to the host once
//! for all rows, its token chosen from its logits.

use candle_core::{D, IndexOp, Tensor};

use crate::Result;
use crate::decoding::step::{StepHeads, StepScores};
use crate::networks::NetStep;

/// The index of a row's largest value, the first of equal ones (as candle's `argmax`).
pub(super) fn first_argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (j, &x) in row.iter().enumerate() {
        if row[best] < x {
            best = j;
        }
    }
    best as u32
}

/// A batch step's attention, copied to the host once for all rows.
pub(super) struct HostStep {
    /// `(B, L, heads, S)` cross-attention.
    cross: Vec<f32>,
    /// `(B, L, heads, T)` decoder self-attention (Transformer only).
    self_attention: Option<Vec<f32>>,
    layers: usize,
    heads: usize,
    /// Source positions and self-attention slots of the padded batch.
    s: usize,
    t: usize,
}

impl HostStep {
    pub fn new(net: &NetStep<()>) -> Result<Self> {
        let (_, layers, heads, s) = net.cross.dims4()?;
        let (self_attention, t) = match &net.self_attention {
            Some(sa) => (
                Some(sa.flatten_all()?.to_vec1::<f32>()?),
                sa.dim(D::Minus1)?,
            ),
            None => (None, 0),
        };
        Ok(HostStep {
            cross: net.cross.flatten_all()?.to_vec1::<f32>()?,
            self_attention,
            layers,
            heads,
            s,
            t,
        })
    }

    /// Row `pos`'s cross-attention of `layer` and `head` over its own `len` positions.
    fn cross(&self, pos: usize, layer: usize, head: usize, len: usize) -> &[f32] {
        let at = ((pos * self.layers + layer) * self.heads + head) * self.s;
        &self.cross[at..at + len]
    }

    /// Row `pos`'s streamed attention row: the mean of the last layer's heads.
    pub fn attention(&self, pos: usize, len: usize) -> Vec<f32> {
        let mut row = vec![0f32; len];
        for h in 0..self.heads {
            for (r, w) in row.iter_mut().zip(self.cross(pos, self.layers - 1, h, len)) {
                *r += w;
            }
        }
        row.iter_mut().for_each(|r| *r /= self.heads as f32);
        row
    }

    /// Row `pos`'s every layer and head: cross-attention over its `len` source positions
    /// and self-attention over its own `positions` (the last slots of a joined cache).
    pub fn heads(&self, pos: usize, len: usize, positions: usize) -> Option<StepHeads> {
        let sa = self.self_attention.as_ref()?;
        let mut cross = Vec::with_capacity(self.layers);
        let mut own = Vec::with_capacity(self.layers);
        for l in 0..self.layers {
            cross.push(
                (0..self.heads)
                    .map(|h| self.cross(pos, l, h, len).to_vec())
                    .collect(),
            );
            own.push(
                (0..self.heads)
                    .map(|h| {
                        let end = ((pos * self.layers + l) * self.heads + h + 1) * self.t;
                        sa[end - positions.min(self.t)..end].to_vec()
                    })
                    .collect(),
            );
        }
        Some(StepHeads {
            cross,
            self_attention: own,
        })
    }
}

/// Batch position `pos`'s attention scores, one `(B, S)` or `(B, heads, 1, S)` tensor per
/// layer, over its own `len` source positions.
pub(super) fn row_scores(layers: &[Tensor], pos: usize, len: usize) -> Result<StepScores> {
    let mut values = Vec::with_capacity(layers.len());
    for layer in layers {
        let r = layer.i(pos)?;
        let s = r.dim(D::Minus1)?;
        let heads = r.elem_count() / s.max(1);
        let mut rows = r.reshape((heads, s))?.to_vec2::<f32>()?;
        rows.iter_mut().for_each(|h| h.truncate(len));
        values.push(rows);
    }
    Ok(StepScores { first: 0, values })
}
