//! Gradients against finite differences on tiny random models of every kind.

use std::ops::ControlFlow;

use candle_core::{Device, Tensor};

use super::replay::{Replay, ReplayStep};
use super::*;
use crate::decoding::plan::DecodeOptions;
use crate::fixtures::{KINDS, tiny_translator_of};

#[test]
fn gradient_x_input_matches_finite_differences() {
    for kind in KINDS {
        let (t, _) = tiny_translator_of(kind, 5).unwrap();
        crate::with_network!(t.network(), |net| check(kind, &t, net));
    }
}

/// One tiny model of `kind`, its network `net`.
fn check<N: EncoderDecoder>(kind: &str, t: &Translator, net: &N) {
    {
        let opts = DecodeOptions {
            max_len: Some(4),
            ..Default::default()
        };
        let out = t
            .translate("We are cold!", &opts, |_| ControlFlow::Continue(()))
            .unwrap();
        let (ids, _) = t.source("We are cold!").unwrap();
        let steps: Vec<ReplayStep> = out
            .steps
            .iter()
            .map(|s| ReplayStep {
                token: s.token_id,
                fixed: None,
            })
            .collect();
        let replay = Replay {
            network: net,
            mode: out.mode,
            temperature: 1.0,
            steps: &steps,
        };
        let src = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let x = net.embed_source(&src).unwrap().squeeze(0).unwrap();
        let rows = gradient_x_input(&replay, &x).unwrap().rows;
        let eps = 5e-3f64;
        let fixed = replay.broadcast_fixed(2).unwrap();
        for i in 0..ids.len() {
            // d/dε f(x with token i scaled by 1 + ε) at 0 is token i's gradient × input.
            let mut scale = vec![1f32; ids.len()];
            scale[i] = (1.0 + eps) as f32;
            let up = x
                .broadcast_mul(
                    &Tensor::new(scale.as_slice(), &Device::Cpu)
                        .unwrap()
                        .unsqueeze(1)
                        .unwrap(),
                )
                .unwrap();
            scale[i] = (1.0 - eps) as f32;
            let down = x
                .broadcast_mul(
                    &Tensor::new(scale.as_slice(), &Device::Cpu)
                        .unwrap()
                        .unsqueeze(1)
                        .unwrap(),
                )
                .unwrap();
            let batch = Tensor::stack(&[&up, &down], 0).unwrap();
            let lp = replay.log_probs(&batch, &fixed).unwrap();
            for (step, row) in rows.iter().enumerate() {
                let fd = (lp[0][step] as f64 - lp[1][step] as f64) / (2.0 * eps);
                let g = row[i] as f64;
                assert!(
                    (fd - g).abs() <= 5e-3 + 0.05 * g.abs(),
                    "{kind}: step {step}, token {i}: finite difference {fd}, gradient × input {g}"
                );
            }
        }
        // The replay at x itself gives the decoding's own log-probabilities.
        let lp = replay
            .log_probs(
                &x.unsqueeze(0).unwrap(),
                &replay.broadcast_fixed(1).unwrap(),
            )
            .unwrap();
        for (s, v) in out.steps.iter().zip(&lp[0]) {
            assert!(
                (s.log_prob - v).abs() < 1e-4,
                "{kind}: {} vs {v}",
                s.log_prob
            );
        }
    }
}
