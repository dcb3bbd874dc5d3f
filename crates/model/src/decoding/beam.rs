//! Beam search that keeps every hypothesis's attention.
//!
//! Each step expands every live hypothesis by its best `2k` next tokens (only the given
//! token while a target prefix is forced), keeps the `k` best continuations by total log
//! probability, and retires those that end with `</s>`. The search stops when `k`
//! hypotheses have finished or the length limit is reached; finished hypotheses are ranked
//! by log probability per token. With `k = 1` it makes exactly the greedy choices.

use candle_core::{D, Tensor};

use crate::Result;
use crate::config::{BOS_ID, EOS_ID};
use crate::decoding::step::{DecodeStep, Hypothesis, StepContext, make_step};
use crate::networks::EncoderDecoder;
use crate::networks::attention::Distribution;
use crate::vocab::Vocab;

struct Live {
    steps: Vec<DecodeStep>,
    log_prob: f32,
}

/// Finished hypotheses, best first (at most `k`).
pub(crate) fn search<N: EncoderDecoder>(
    tgt: &Vocab,
    ctx: &StepContext<N>,
    dist: &mut Distribution,
    prefix: &[u32],
    max_len: usize,
    k: usize,
) -> Result<Vec<Hypothesis>> {
    let device = N::device(ctx.memory).clone();
    let mut live = vec![Live {
        steps: Vec::new(),
        log_prob: 0.0,
    }];
    let mut state = ctx.network.initial_state(ctx.memory)?;
    let mut prev = Tensor::new(&[BOS_ID], &device)?;
    let mut finished: Vec<Hypothesis> = Vec::new();
    let mut expanded: Option<(usize, N::Memory)> = None;
    for index in 0..max_len {
        let n = live.len();
        if expanded.as_ref().map(|(m, _)| *m) != Some(n) {
            let idx = Tensor::zeros(n, candle_core::DType::U32, &device)?;
            expanded = Some((n, N::select_memory(ctx.memory, &idx)?));
        }
        let Some((_, memory)) = &expanded else {
            unreachable!("set above")
        };
        let step_ctx = StepContext {
            network: ctx.network,
            memory,
            interventions: ctx.interventions,
            report: ctx.report,
        };
        let out = step_ctx.step(&state, &prev, index, dist)?;
        let net = &out.net;
        let log_probs = candle_nn::ops::log_softmax(&net.logits, D::Minus1)?.to_vec2::<f32>()?;
        // (score, beam, token), best first; ties keep beam and token order.
        let mut cands: Vec<(f32, usize, u32)> = Vec::new();
        for (b, row) in log_probs.iter().enumerate() {
            if let Some(&t) = prefix.get(index) {
                cands.push((live[b].log_prob + row[t as usize], b, t));
                continue;
            }
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            let top = (2 * k).min(order.len());
            order.select_nth_unstable_by(top - 1, |&x, &y| {
                row[y as usize].total_cmp(&row[x as usize]).then(x.cmp(&y))
            });
            order.truncate(top);
            order.sort_by(|&x, &y| row[y as usize].total_cmp(&row[x as usize]).then(x.cmp(&y)));
            cands.extend(
                order
                    .into_iter()
                    .map(|t| (live[b].log_prob + row[t as usize], b, t)),
            );
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut next: Vec<Live> = Vec::new();
        let (mut parents, mut tokens) = (Vec::new(), Vec::new());
        for (score, b, t) in cands {
            if next.len() >= k || finished.len() >= k {
                break;
            }
            let lp = log_probs[b][t as usize];
            let forced = index < prefix.len();
            let mut step = make_step(tgt, net, b, index, t, lp, forced, out.intervened)?;
            (step.candidates, step.scores) = step_ctx.reported(tgt, &out, &log_probs[b], b)?;
            let mut steps = live[b].steps.clone();
            steps.push(step);
            if t == EOS_ID {
                finished.push(hypothesis(tgt, steps, score)?);
            } else {
                next.push(Live {
                    steps,
                    log_prob: score,
                });
                parents.push(b as u32);
                tokens.push(t);
            }
        }
        if finished.len() >= k || next.is_empty() {
            live.clear();
            break;
        }
        let idx = Tensor::new(parents.as_slice(), &device)?;
        state = N::select_state(&net.state, &idx)?;
        prev = Tensor::new(tokens.as_slice(), &device)?;
        live = next;
    }
    // Hypotheses cut by the length limit count too when fewer than k finished.
    for l in live {
        if finished.len() >= k {
            break;
        }
        finished.push(hypothesis(tgt, l.steps, l.log_prob)?);
    }
    finished.sort_by(|a, b| b.score.total_cmp(&a.score));
    finished.truncate(k);
    Ok(finished)
}

fn hypothesis(tgt: &Vocab, steps: Vec<DecodeStep>, log_prob: f32) -> Result<Hypothesis> {
    let ids: Vec<u32> = steps
        .iter()
        .map(|s| s.token_id)
        .filter(|&t| t != EOS_ID)
        .collect();
    Ok(Hypothesis {
        translation: tgt.decode(&ids)?,
        score: log_prob / steps.len().max(1) as f32,
        log_prob,
        steps,
    })
}
