//! The decoder's key/value cache ([`KvCache`]): what a step attends to of the positions
//! decoded before it, per layer, with the rows of a batch selected, reordered (beam search)
//! or joined from batches at different positions (a server's shared batches).

use candle_core::Tensor;

use crate::Result;

/// Decoder self-attention keys and values of the positions decoded so far.
///
/// Rows joined to a batch that had already decoded some positions ([`Self::join`]) keep
/// their own positions at the end of the cache: row `r`'s start at slot `starts[r]`, the
/// slots before it are masked, and its next position is `len - starts[r]`.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Per decoder layer, `(B, heads, t, dh)` keys and values; empty while `t == 0`.
    pub(super) layers: Vec<(Tensor, Tensor)>,
    pub(super) len: usize,
    pub(super) batch: usize,
    /// Per row, the slot of its first position (all 0 unless rows were joined).
    pub(super) starts: Vec<usize>,
}

impl KvCache {
    /// The batch rows `idx` (u32, `(B',)`) in that order, repeats allowed (beam search).
    ///
    /// Slots that every kept row masks (those before the earliest kept row's start) are
    /// dropped, so a batch that rows keep joining and leaving holds only what its oldest
    /// row needs.
    pub fn select(&self, idx: &Tensor) -> Result<KvCache> {
        let rows = idx.to_vec1::<u32>()?;
        let starts: Vec<usize> = rows.iter().map(|&r| self.starts[r as usize]).collect();
        let cut = starts.iter().copied().min().unwrap_or(0);
        let keep = |t: &Tensor| -> Result<Tensor> {
            let t = t.index_select(idx, 0)?;
            Ok(if cut > 0 {
                t.narrow(2, cut, self.len - cut)?
            } else {
                t
            })
        };
        Ok(KvCache {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| Ok((keep(k)?, keep(v)?)))
                .collect::<Result<_>>()?,
            len: self.len - cut,
            batch: rows.len(),
            starts: starts.iter().map(|s| s - cut).collect(),
        })
    }

    /// This batch's rows, then `other`'s (which may have decoded fewer positions, or more):
    /// the shorter cache is padded at its start with masked slots, so every row attends to
    /// exactly its own positions.
    pub fn join(&self, other: &KvCache) -> Result<KvCache> {
        let len = self.len.max(other.len);
        let template = self.layers.first().or(other.layers.first());
        let padded = |c: &KvCache| -> Result<Vec<(Tensor, Tensor)>> {
            let Some((tk, _)) = template else {
                return Ok(Vec::new());
            };
            let (_, heads, _, dh) = tk.dims4()?;
            let layers = self.layers.len().max(other.layers.len());
            (0..layers)
                .map(|i| {
                    let pad = |t: Option<&Tensor>| -> Result<Tensor> {
                        let lead = Tensor::zeros(
                            (c.batch, heads, len - c.len, dh),
                            tk.dtype(),
                            tk.device(),
                        )?;
                        Ok(match t {
                            Some(t) if c.len < len => Tensor::cat(&[&lead, t], 2)?,
                            Some(t) => t.clone(),
                            None => lead,
                        })
                    };
                    let kv = c.layers.get(i);
                    Ok((pad(kv.map(|(k, _)| k))?, pad(kv.map(|(_, v)| v))?))
                })
                .collect()
        };
        let (a, b) = (padded(self)?, padded(other)?);
        let layers = a
            .into_iter()
            .zip(b)
            .map(|((ka, va), (kb, vb))| {
                Ok((Tensor::cat(&[ka, kb], 0)?, Tensor::cat(&[va, vb], 0)?))
            })
            .collect::<Result<_>>()?;
        let mut starts: Vec<usize> = self.starts.iter().map(|s| s + len - self.len).collect();
        starts.extend(other.starts.iter().map(|s| s + len - other.len));
        Ok(KvCache {
            layers,
            len,
            batch: self.batch + other.batch,
            starts,
        })
    }

    /// Positions cached: the position the next step decodes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
}
