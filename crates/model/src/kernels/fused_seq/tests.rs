//! The sequence ops against the step-by-step graph: the same loss and the same gradient
//! for every variable, for each scorer and attention, on a padded batch.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::STEPWISE;
use crate::fixtures::tiny_config;
use crate::networks::{Network, TrainMode};
use crate::training::data::{Example, collate};

/// Loss and gradients (by variable name) of one batch, fused or step by step.
fn loss_and_grads(kind: &str, eval: bool, stepwise: bool) -> (f32, Vec<(String, Vec<f32>)>) {
    loss_and_grads_with(kind, eval, stepwise, 0.0)
}

/// [`loss_and_grads`] at a dropout rate.
fn loss_and_grads_with(
    kind: &str,
    eval: bool,
    stepwise: bool,
    dropout: f64,
) -> (f32, Vec<(String, Vec<f32>)>) {
    STEPWISE.with(|s| s.set(stepwise));
    let mut cfg = tiny_config(kind, 30, 31).unwrap();
    cfg.hidden_dim = 13; // not a multiple of 8: exercises the kernels' tails
    cfg.dropout = dropout;
    let varmap = VarMap::new();
    let net = Network::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    crate::networks::init::init_network(&varmap, &cfg, 5).unwrap();
    let examples = [
        Example {
            src: vec![4, 5, 6, 7, 2],
            tgt: vec![8, 9, 10],
        },
        Example {
            src: vec![11, 2],
            tgt: vec![12, 13, 14, 15, 16],
        },
        Example {
            src: vec![17, 18, 19, 2],
            tgt: vec![20],
        },
    ];
    let batch = collate(&examples, &[0, 1, 2], &Device::Cpu).unwrap();
    let mut mode = if eval {
        TrainMode::eval()
    } else {
        TrainMode::for_step(&cfg, 3, 11)
    };
    let loss = net.loss(&cfg, &batch, &mut mode).unwrap();
    let grads = loss.backward().unwrap();
    let mut out: Vec<(String, Vec<f32>)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(name, var)| {
            let g = grads.get(var.as_tensor()).map_or_else(
                || vec![0.0; var.elem_count()],
                |g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            (name.clone(), g)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    STEPWISE.with(|s| s.set(false));
    (loss.to_scalar::<f32>().unwrap(), out)
}

fn assert_same(kind: &str, eval: bool) {
    let (loss_f, grads_f) = loss_and_grads(kind, eval, false);
    let (loss_s, grads_s) = loss_and_grads(kind, eval, true);
    assert!(
        (loss_f - loss_s).abs() < 1e-5,
        "{kind}: loss {loss_f} vs {loss_s}"
    );
    let mut nonzero = 0;
    for ((name, f), (_, s)) in grads_f.iter().zip(&grads_s) {
        let scale = s.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        for (a, b) in f.iter().zip(s) {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "{kind} {name}: gradient {a} vs {b}"
            );
        }
        nonzero += s.iter().any(|x| *x != 0.0) as usize;
    }
    assert!(
        nonzero > 5,
        "{kind}: only {nonzero} variables have a gradient"
    );
}

#[test]
fn additive_soft_matches_steps() {
    assert_same("additive", false);
}

#[test]
fn general_and_dot_match_steps() {
    assert_same("general", false);
    assert_same("dot", false);
}

#[test]
fn hard_training_and_scoring_match_steps() {
    // Gumbel straight-through (training) and argmax (evaluation).
    assert_same("hard", false);
    assert_same("hard", true);
}

#[test]
fn query_gradient_reaches_the_encoder() {
    // The encoder's recurrent weights get a gradient through both paths.
    let (_, grads) = loss_and_grads("additive", false, false);
    for part in [
        "encoder.gru_fwd.hidden.weight",
        "encoder.gru_bwd.hidden.weight",
        "decoder.attention.query.weight",
    ] {
        let g = &grads.iter().find(|(n, _)| n == part).unwrap().1;
        assert!(g.iter().any(|x| *x != 0.0), "{part} has no gradient");
    }
    let _ = Tensor::zeros(1, DType::F32, &Device::Cpu);
}

#[test]
fn a_grus_dropout_falls_on_training_steps_only() {
    let loss = |eval: bool, dropout: f64| loss_and_grads_with("additive", eval, false, dropout).0;
    assert_eq!(loss(true, 0.0), loss(true, 0.5), "no dropout when scoring");
    let (plain, dropped) = (loss(false, 0.0), loss(false, 0.5));
    assert_ne!(plain, dropped, "dropout changes a training step");
    assert_eq!(
        dropped,
        loss(false, 0.5),
        "seeded: the same step drops the same units"
    );
}
