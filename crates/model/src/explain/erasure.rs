//! Erasure (Li et al. 2016): the drop in each emitted token's log-probability when part of
//! the source is left out and the same output is scored again. The part is one subword
//! piece ([`super::Method::Erasure`]) or one whole word, every piece of it at once
//! ([`super::Method::WordErasure`]): leaving out `▁parl` alone lets the model still read
//! the word from `iament`, so per piece a long word's share is split and blurred.

use std::ops::Range;

use candle_core::{Device, Tensor};

use super::SentenceRows;
use super::replay::{FixedRows, Replay, ReplayStep, map_fixed};
use crate::config::UNK_ID;
use crate::networks::EncoderDecoder;
use crate::{DecodeStep, Result};

/// Variants re-run in one batch.
const CHUNK_VARIANTS: usize = 96;

/// One range per piece: what [`super::Method::Erasure`] leaves out in turn.
pub(crate) fn pieces(s: usize) -> Vec<Range<usize>> {
    (0..s).map(|i| i..i + 1).collect()
}

/// The words of a source, as ranges of its pieces (`piece` gives each id's text). A piece
/// continues the word before it when it does not start one (`▁`), begins with a letter or
/// digit, and follows a piece that ends in one or is a bare `▁`; special tokens (`</s>`,
/// `<unk>`) and punctuation stand alone.
pub(crate) fn words(ids: &[u32], piece: impl Fn(u32) -> String) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut previous_joins = false;
    for (i, &id) in ids.iter().enumerate() {
        let text = piece(id);
        let special = id <= UNK_ID;
        let first_alnum = text.chars().next().is_some_and(char::is_alphanumeric);
        let continues = !special && previous_joins && first_alnum && !text.starts_with('▁');
        match out.last_mut() {
            Some(last) if continues => last.end = i + 1,
            _ => out.push(i..i + 1),
        }
        previous_joins = !special
            && text
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '▁');
    }
    out
}

/// The erasure rows of one sentence: `rows[t][i]` is `f_t(x) − f_t(x without the group of
/// i)`, split evenly over the group's pieces (so a word's pieces sum to its drop). A group
/// that is the whole source is not left out (its pieces score 0).
pub(crate) fn erasure<N: EncoderDecoder>(
    replay: &Replay<N>,
    ids: &[u32],
    steps: &[DecodeStep],
    groups: &[Range<usize>],
) -> Result<SentenceRows> {
    let s = ids.len();
    let n = steps.len();
    let mut rows = vec![vec![0f32; s]; n];
    // Groups of one length make one batch of sources of one length.
    let mut lengths: Vec<usize> = groups
        .iter()
        .map(|g| g.len())
        .filter(|&len| len > 0 && len < s)
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    for len in lengths {
        let same: Vec<&Range<usize>> = groups.iter().filter(|g| g.len() == len).collect();
        for chunk in same.chunks(CHUNK_VARIANTS) {
            let mut variants = Vec::with_capacity(chunk.len() * (s - len));
            for g in chunk {
                variants.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|(j, _)| !g.contains(j))
                        .map(|(_, &id)| id),
                );
            }
            let src = Tensor::from_vec(variants, (chunk.len(), s - len), &Device::Cpu)?;
            let emb = replay.network.embed_source(&src)?;
            let fixed = erased_fixed(replay.steps, chunk, s)?;
            let lp = replay.log_probs(&emb, &fixed)?;
            for (g, lp_g) in chunk.iter().zip(lp) {
                for (t, v) in lp_g.into_iter().enumerate() {
                    let share = (steps[t].log_prob - v) / len as f32;
                    rows[t][(*g).clone()].fill(share);
                }
            }
        }
    }
    Ok(SentenceRows { rows, delta: None })
}

/// Given weights for sources with a group of positions left out, one row per group of
/// `erased` (all of one length): each head's weights without the group, renormalised
/// (uniform when nothing is left).
fn erased_fixed(
    steps: &[ReplayStep],
    erased: &[&Range<usize>],
    s: usize,
) -> Result<Vec<FixedRows>> {
    let left = s - erased.first().map_or(0, |g| g.len());
    map_fixed(steps, |w| {
        let heads = w.len() / s;
        let mut data = Vec::with_capacity(erased.len() * heads * left);
        for g in erased {
            for head in w.chunks(s) {
                let kept: Vec<f32> = head
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| !g.contains(j))
                    .map(|(_, &v)| v)
                    .collect();
                let total: f32 = kept.iter().sum();
                if total > 1e-12 {
                    data.extend(kept.iter().map(|v| v / total));
                } else {
                    data.extend(std::iter::repeat_n(1.0 / left as f32, left));
                }
            }
        }
        Ok(Tensor::from_vec(
            data,
            (erased.len(), heads * left),
            &Device::Cpu,
        )?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str]) -> Vec<Range<usize>> {
        // Ids 10.. for the pieces, 2 (`</s>`) for "</s>", 3 (`<unk>`) for "<unk>".
        let ids: Vec<u32> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| match *p {
                "</s>" => 2,
                "<unk>" => 3,
                _ => 10 + i as u32,
            })
            .collect();
        words(&ids, |id| match id {
            2 => "</s>".to_string(),
            3 => "<unk>".to_string(),
            _ => pieces[id as usize - 10].to_string(),
        })
    }

    #[test]
    fn words_join_continuation_pieces_only() {
        assert_eq!(
            split(&["▁the", "▁parl", "iament", "'", "s", "▁vote", ".", "</s>"]),
            vec![0..1, 1..3, 3..4, 4..5, 5..6, 6..7, 7..8]
        );
        assert_eq!(
            split(&["▁a", "b", "c", "<unk>", "d", "▁2", "0", "</s>"]),
            vec![0..3, 3..4, 4..5, 5..7, 7..8]
        );
        assert_eq!(
            split(&["▁", "Y", "ou", "▁", "<unk>", "</s>"]),
            vec![0..3, 3..4, 4..5, 5..6]
        );
        assert_eq!(split(&[]), Vec::<Range<usize>>::new());
    }
}
