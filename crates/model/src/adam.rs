//! AdamW whose moments can be saved and restored, so a resumed run continues exactly.
//! (candle-nn's `AdamW` keeps its moments private.)

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// An optimiser over every variable of `varmap`, in name order.
    pub fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Invalid("poisoned variable map".into()))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW {
            vars,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update from `grads`, after scaling them so that their global norm is at most
    /// `clip`. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, clip: f64) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let lr_m = self.lr / (1.0 - b1.powi(t));
        let c2 = 1.0 / (1.0 - b2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.affine(scale, 0.0)?;
            let m = (self.m[i].affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
            let v = (self.v[i].affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let denom = v.affine(c2, 0.0)?.sqrt()?.affine(1.0, self.eps)?;
            let theta = var
                .as_tensor()
                .affine(1.0 - self.lr * self.weight_decay, 0.0)?;
            var.set(&(theta - (m.div(&denom)?.affine(lr_m, 0.0))?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(norm)
    }

    /// The moments, named `adam.m.<var>` and `adam.v.<var>`, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("adam.m.{name}"), self.m[i].clone());
            out.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`Self::state`] after `steps` updates.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |k: String| {
                state
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| Error::Invalid(format!("checkpoint lacks {k}")))
            };
            self.m[i] = get(format!("adam.m.{name}"))?;
            self.v[i] = get(format!("adam.v.{name}"))?;
        }
        self.step = steps;
        Ok(())
    }
}
