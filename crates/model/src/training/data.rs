//! Sentence pairs: reading the TSV, a seeded split by source sentence, and length-bucketed
//! batches.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::{BOS_ID, EOS_ID, PAD_ID};
use crate::evaluation::TestItem;
use crate::networks::Batch;
use crate::{Error, Result};

/// One sentence and its translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub src: String,
    pub tgt: String,
}

/// Reads `source<TAB>target` lines; extra columns (attribution) are ignored.
pub fn read_tsv(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split('\t');
        match (cols.next(), cols.next()) {
            (Some(s), Some(t)) if !s.trim().is_empty() && !t.trim().is_empty() => {
                pairs.push(Pair {
                    src: s.trim().to_string(),
                    tgt: t.trim().to_string(),
                })
            }
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!("line {} is not `source<TAB>target`", n + 1),
                ));
            }
        }
    }
    if pairs.is_empty() {
        return Err(Error::bad_file(path, "no sentence pairs found"));
    }
    Ok(pairs)
}

/// Train, dev and test sets that share no source sentence.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Vec<Pair>,
    pub dev: Vec<Pair>,
    pub test: Vec<TestItem>,
}

/// Groups pairs by source sentence, shuffles the sentences with `seed`, and puts
/// `test_sentences` of them in test, the next `dev_sentences` in dev and the rest in train.
pub fn split(pairs: &[Pair], seed: u64, dev_sentences: usize, test_sentences: usize) -> Split {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<&Pair>> = HashMap::new();
    for p in pairs {
        groups
            .entry(p.src.as_str())
            .or_insert_with(|| {
                order.push(p.src.as_str());
                Vec::new()
            })
            .push(p);
    }
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let test_n = test_sentences.min(order.len());
    let dev_n = dev_sentences.min(order.len() - test_n);
    let test = order[..test_n]
        .iter()
        .map(|s| TestItem {
            src: s.to_string(),
            refs: groups[s].iter().map(|p| p.tgt.clone()).collect(),
        })
        .collect();
    let take = |keys: &[&str]| {
        keys.iter()
            .flat_map(|s| groups[s].iter().map(|p| (*p).clone()))
            .collect()
    };
    Split {
        dev: take(&order[test_n..test_n + dev_n]),
        train: take(&order[test_n + dev_n..]),
        test,
    }
}

/// `count` multi-sentence pairs, each made of 2 to 4 pairs of `pairs` drawn at random (with
/// `seed`) and joined by a space on both sides: the remedy for models that have only ever
/// seen one short sentence at a time (long and pasted inputs). Empty when `pairs` has fewer
/// than two pairs.
pub fn joined(pairs: &[Pair], count: usize, seed: u64) -> Vec<Pair> {
    use rand::Rng;
    if pairs.len() < 2 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6a6f_696e);
    (0..count)
        .map(|_| {
            let k = rng.random_range(2..=4usize);
            let parts: Vec<&Pair> = (0..k)
                .map(|_| &pairs[rng.random_range(0..pairs.len())])
                .collect();
            Pair {
                src: parts
                    .iter()
                    .map(|p| p.src.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                tgt: parts
                    .iter()
                    .map(|p| p.tgt.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        })
        .collect()
}

/// A tokenised pair: source ids end with `</s>`; target ids have no special token.
#[derive(Clone, Debug)]
pub struct Example {
    pub src: Vec<u32>,
    pub tgt: Vec<u32>,
}

/// Indices of `examples` grouped into batches of about equal length, in a seeded order
/// that depends only on `(seed, epoch)`.
pub fn batches(examples: &[Example], batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch));
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.shuffle(&mut rng);
    let mut out = Vec::new();
    // Sort within pools of 64 batches so that padding is small but order stays random.
    for pool in idx.chunks_mut(batch_size * 64) {
        pool.sort_by_key(|&i| (examples[i].tgt.len(), examples[i].src.len()));
        out.extend(pool.chunks(batch_size).map(|c| c.to_vec()));
    }
    out.shuffle(&mut rng);
    out
}

pub fn collate(examples: &[Example], idx: &[usize], device: &Device) -> Result<Batch> {
    let b = idx.len();
    let s = idx
        .iter()
        .map(|&i| examples[i].src.len())
        .max()
        .unwrap_or(1);
    let t = idx
        .iter()
        .map(|&i| examples[i].tgt.len() + 1)
        .max()
        .unwrap_or(1);
    let (mut src, mut mask) = (vec![PAD_ID; b * s], vec![0f32; b * s]);
    let mut tgt_in = vec![PAD_ID; b * t];
    let (mut positions, mut labels) = (Vec::new(), Vec::new());
    for (row, &i) in idx.iter().enumerate() {
        let ex = &examples[i];
        src[row * s..row * s + ex.src.len()].copy_from_slice(&ex.src);
        mask[row * s..row * s + ex.src.len()]
            .iter_mut()
            .for_each(|m| *m = 1.0);
        tgt_in[row * t] = BOS_ID;
        tgt_in[row * t + 1..row * t + 1 + ex.tgt.len()].copy_from_slice(&ex.tgt);
        for (j, &y) in ex.tgt.iter().chain(std::iter::once(&EOS_ID)).enumerate() {
            positions.push((row * t + j) as u32);
            labels.push(y);
        }
    }
    let tokens = labels.len();
    Ok(Batch {
        src: Tensor::from_vec(src, (b, s), device)?,
        src_mask: Tensor::from_vec(mask, (b, s), device)?,
        tgt_in: Tensor::from_vec(tgt_in, (b, t), device)?,
        positions: Tensor::from_vec(positions, tokens, device)?,
        labels: Tensor::from_vec(labels, tokens, device)?,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<Pair> {
        (0..50)
            .flat_map(|i| {
                [
                    Pair {
                        src: format!("s{i}"),
                        tgt: format!("a{i}"),
                    },
                    Pair {
                        src: format!("s{i}"),
                        tgt: format!("b{i}"),
                    },
                ]
            })
            .collect()
    }

    #[test]
    fn split_is_by_source_and_seeded() {
        let p = pairs();
        let a = split(&p, 7, 5, 10);
        assert_eq!(a.test.len(), 10);
        assert_eq!(a.dev.len(), 10);
        assert_eq!(a.train.len(), 70);
        assert!(a.test.iter().all(|t| t.refs.len() == 2));
        let test_src: Vec<&str> = a.test.iter().map(|t| t.src.as_str()).collect();
        assert!(
            a.train
                .iter()
                .chain(&a.dev)
                .all(|p| !test_src.contains(&p.src.as_str()))
        );
        let b = split(&p, 7, 5, 10);
        assert_eq!(a.test, b.test);
        assert_ne!(split(&p, 8, 5, 10).test, a.test);
    }

    #[test]
    fn joined_pairs_concatenate_two_to_four_pairs_on_both_sides() {
        let p: Vec<Pair> = (0..20)
            .map(|i| Pair {
                src: format!("s{i}."),
                tgt: format!("t{i}."),
            })
            .collect();
        let j = joined(&p, 200, 3);
        assert_eq!(j.len(), 200);
        let mut sizes = std::collections::BTreeSet::new();
        for pair in &j {
            let (s, t): (Vec<&str>, Vec<&str>) =
                (pair.src.split(' ').collect(), pair.tgt.split(' ').collect());
            assert_eq!(s.len(), t.len());
            assert!((2..=4).contains(&s.len()));
            sizes.insert(s.len());
            for (a, b) in s.iter().zip(&t) {
                assert_eq!(a[1..], b[1..], "pieces stay paired: {pair:?}");
            }
        }
        assert_eq!(sizes.len(), 3, "all of 2, 3 and 4 occur");
        assert_eq!(j, joined(&p, 200, 3));
        assert_ne!(j, joined(&p, 200, 4));
        assert!(joined(&p[..1], 5, 3).is_empty());
    }

    #[test]
    fn batches_cover_everything_once_and_depend_on_epoch() {
        let ex: Vec<Example> = (0..100)
            .map(|i| Example {
                src: vec![5; 1 + i % 7],
                tgt: vec![6; 1 + i % 5],
            })
            .collect();
        let b = batches(&ex, 8, 1, 0);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(b, batches(&ex, 8, 1, 0));
        assert_ne!(b, batches(&ex, 8, 1, 1));
    }

    #[test]
    fn collate_pads_and_labels() {
        let ex = vec![
            Example {
                src: vec![7, 2],
                tgt: vec![9],
            },
            Example {
                src: vec![7, 8, 2],
                tgt: vec![9, 10],
            },
        ];
        let b = collate(&ex, &[0, 1], &Device::Cpu).unwrap();
        assert_eq!(
            b.src.to_vec2::<u32>().unwrap(),
            vec![vec![7, 2, 0], vec![7, 8, 2]]
        );
        assert_eq!(
            b.tgt_in.to_vec2::<u32>().unwrap(),
            vec![vec![1, 9, 0], vec![1, 9, 10]]
        );
        assert_eq!(b.positions.to_vec1::<u32>().unwrap(), vec![0, 1, 3, 4, 5]);
        assert_eq!(b.labels.to_vec1::<u32>().unwrap(), vec![9, 2, 9, 10, 2]);
        assert_eq!(b.tokens, 5);
    }
}
