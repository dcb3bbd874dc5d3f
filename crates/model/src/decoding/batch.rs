//! Greedy translations of many sentences at once, with the model's own attention: the
//! sources padded into one batch, encoded together and decoded step by step until every
//! row has ended (for evaluation, scoring and the command line's plain-text path).

use candle_core::{D, Device, Tensor};

use crate::config::{EOS_ID, PAD_ID};
use crate::decoding::translator::Translator;
use crate::networks::EncoderDecoder;
use crate::networks::attention::Distribution;
use crate::with_network;
use crate::{Error, Result};

impl Translator {
    /// Greedy translations of many sentences with the model's own attention, decoded
    /// together in batches of `batch` (for evaluation and scripting). Empty lines translate
    /// to empty strings.
    pub fn translate_batch(&self, texts: &[String], batch: usize) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch.max(1)) {
            out.extend(self.greedy_chunk(chunk)?);
        }
        Ok(out)
    }

    fn greedy_chunk(&self, texts: &[String]) -> Result<Vec<String>> {
        let mut sources = Vec::with_capacity(texts.len());
        for t in texts {
            sources.push(match self.source(t) {
                Ok((ids, _)) => ids,
                Err(Error::EmptyInput) => vec![EOS_ID],
                Err(e) => return Err(e),
            });
        }
        let b = sources.len();
        let s = sources.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![PAD_ID; b * s];
        let mut mask = vec![0f32; b * s];
        for (i, src) in sources.iter().enumerate() {
            ids[i * s..i * s + src.len()].copy_from_slice(src);
            mask[i * s..i * s + src.len()]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let outs = with_network!(self.network(), |net| {
            self.greedy_ids(net, &sources, ids, mask, (b, s))
        })?;
        outs.iter().map(|o| self.target_vocab().decode(o)).collect()
    }

    /// Greedy decoding of the `(b, s)` padded batch `ids` (its `mask`) with the concrete
    /// network `net`: the output ids of each sentence, `</s>` left out.
    fn greedy_ids<N: EncoderDecoder>(
        &self,
        net: &N,
        sources: &[Vec<u32>],
        ids: Vec<u32>,
        mask: Vec<f32>,
        (b, s): (usize, usize),
    ) -> Result<Vec<Vec<u32>>> {
        let memory = net.encode(
            &Tensor::from_vec(ids, (b, s), &Device::Cpu)?,
            &Tensor::from_vec(mask, (b, s), &Device::Cpu)?,
        )?;
        let mut dist = Distribution::new(self.default_mode(), 1.0, 0)?;
        let mut prev = Tensor::full(crate::config::BOS_ID, b, &Device::Cpu)?;
        let mut state = net.initial_state(&memory)?;
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        // The same per-sentence length limit as `translate`, and the same `</s>` at it for
        // a model whose authors force one.
        let limits: Vec<usize> = sources.iter().map(|s| self.max_len_for(s.len())).collect();
        let eos_last = self.forced_eos();
        for k in 0..self.max_len_for(s) {
            let step = net.step(&memory, &state, &prev, &mut |sc| dist.weights(sc))?;
            let mut next = step.logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (i, tok) in next.iter_mut().enumerate() {
                if eos_last && k + 1 == limits[i] {
                    *tok = EOS_ID;
                }
                let tok = *tok;
                if !done[i] {
                    if tok == EOS_ID {
                        done[i] = true;
                    } else {
                        outs[i].push(tok);
                        done[i] = outs[i].len() >= limits[i];
                    }
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            prev = Tensor::from_vec(next, b, &Device::Cpu)?;
            state = step.state;
        }
        Ok(outs)
    }
}
