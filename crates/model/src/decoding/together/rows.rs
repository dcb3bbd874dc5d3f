//! The network side of a [`super::BatchDecoder`]: the encoded sources and decoder states of
//! its rows, whatever the architecture, behind one object-safe trait.

use candle_core::{Device, IndexOp, Tensor};

use crate::decoding::decode::{EncoderAttention, nested4};
use crate::decoding::step::{Report, StepContext};
use crate::networks::attention::Distribution;
use crate::networks::{EncoderDecoder, NetStep};
use crate::{Error, Result};

/// The network side of a running batch, whatever the architecture: the encoded sources
/// and decoder state of the rows, in batch order.
pub(super) trait Rows {
    /// Encodes `(b, s)` padded sources and appends them as new rows; returns each new
    /// row's encoder self-attention over its own `lens[r]` positions, where the network
    /// has one.
    fn admit(
        &mut self,
        ids: Vec<u32>,
        mask: Vec<f32>,
        lens: &[usize],
    ) -> Result<Vec<Option<EncoderAttention>>>;

    /// One step of every row from the previous tokens `prev` `(B,)`; keeps the new state.
    /// Returns the step (without its state) and, when `scores`, the attention scores.
    fn step(
        &mut self,
        prev: &Tensor,
        dist: &mut Distribution,
        scores: bool,
    ) -> Result<(NetStep<()>, Vec<Tensor>)>;

    /// Keeps the rows `idx` (u32), in that order.
    fn keep(&mut self, idx: &Tensor) -> Result<()>;

    /// Drops every row.
    fn clear(&mut self);
}

/// [`Rows`] of the concrete network `N`.
pub(super) struct NetRows<'m, N: EncoderDecoder> {
    pub net: &'m N,
    pub device: Device,
    pub batch: Option<(N::Memory, N::State)>,
}

impl<N: EncoderDecoder> Rows for NetRows<'_, N> {
    fn admit(
        &mut self,
        ids: Vec<u32>,
        mask: Vec<f32>,
        lens: &[usize],
    ) -> Result<Vec<Option<EncoderAttention>>> {
        let b = lens.len();
        let s = ids.len() / b.max(1);
        let memory = self.net.encode(
            &Tensor::from_vec(ids, (b, s), &self.device)?,
            &Tensor::from_vec(mask, (b, s), &self.device)?,
        )?;
        let mut attention = Vec::with_capacity(b);
        for (r, &len) in lens.iter().enumerate() {
            attention.push(match N::encoder_attention(&memory) {
                // (B, L, heads, S, S): the row's own block, without the padding.
                Some(enc) => Some(nested4(&enc.i(r)?.narrow(2, 0, len)?.narrow(3, 0, len)?)?),
                None => None,
            });
        }
        let state = self.net.initial_state(&memory)?;
        self.batch = Some(match self.batch.take() {
            Some((m, st)) => (N::join_memory(&m, &memory)?, N::join_state(&st, &state)?),
            None => (memory, state),
        });
        Ok(attention)
    }

    fn step(
        &mut self,
        prev: &Tensor,
        dist: &mut Distribution,
        scores: bool,
    ) -> Result<(NetStep<()>, Vec<Tensor>)> {
        let (memory, state) = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::Internal("a batch step with no rows".into()))?;
        let ctx = StepContext {
            network: self.net,
            memory,
            interventions: &[],
            report: Report { top_k: 0, scores },
        };
        let out = ctx.step(state, prev, 0, dist)?;
        let NetStep {
            logits,
            state,
            cross,
            self_attention,
        } = out.net;
        if let Some((_, st)) = &mut self.batch {
            *st = state;
        }
        let step = NetStep {
            logits,
            state: (),
            cross,
            self_attention,
        };
        Ok((step, out.scores))
    }

    fn keep(&mut self, idx: &Tensor) -> Result<()> {
        if let Some((m, st)) = self.batch.take() {
            self.batch = Some((N::select_memory(&m, idx)?, N::select_state(&st, idx)?));
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.batch = None;
    }
}
