//! AdamW whose moments can be saved and restored, so a resumed run continues exactly.
//! (candle-nn's `AdamW` keeps its moments private.)
//!
//! On the CPU the update is one fused pass per variable, in place: it reads the gradient
//! and the two moments once and writes the weight and moments once, where the tensor
//! formulation (kept for other devices) allocates about a dozen temporaries per variable
//! and runs each of its element maps on one thread. The global gradient norm is likewise a
//! single read of every gradient.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// The first and second moments of one variable.
enum Moments {
    /// CPU f32 variables: plain buffers updated by [`FusedUpdate`].
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Anything else: tensors updated with tensor ops.
    Tensor { m: Tensor, v: Tensor },
}

pub struct AdamW {
    vars: Vec<(String, Var)>,
    moments: Vec<Moments>,
    step: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Whether `t` is an f32 tensor on the CPU (the fused kernels' domain).
fn host_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// `Σ x²`, in f32 lanes over blocks of 4,096 values (so that it vectorises) summed in f64.
fn sum_of_squares(values: &[f32]) -> f64 {
    values
        .chunks(4096)
        .map(|block| {
            let (x8, tail) = block.as_chunks::<8>();
            let mut lanes = [0f32; 8];
            for x in x8 {
                for l in 0..8 {
                    lanes[l] += x[l] * x[l];
                }
            }
            let tail: f32 = tail.iter().map(|x| x * x).sum();
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
        })
        .sum()
}

impl AdamW {
    /// An optimiser over every variable of `varmap`, in name order.
    pub fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Internal("poisoned variable map".into()))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let moments = vars
            .iter()
            .map(|(_, var)| {
                let t = var.as_tensor();
                Ok(if host_f32(t) {
                    let n = t.elem_count();
                    Moments::Host {
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    }
                } else {
                    Moments::Tensor {
                        m: t.zeros_like()?,
                        v: t.zeros_like()?,
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            vars,
            moments,
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
                sq += if host_f32(g) && g.is_contiguous() {
                    crate::kernels::fused::read(g, "gradient norm", sum_of_squares)?
                } else {
                    g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64
                };
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let lr_m = self.lr / (1.0 - b1.powi(t));
        let c2 = 1.0 / (1.0 - b2.powi(t));
        let decay = 1.0 - self.lr * self.weight_decay;
        for ((_, var), moments) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            match moments {
                Moments::Host { m, v } if var.as_tensor().is_contiguous() => {
                    let g = g.contiguous()?;
                    let op = FusedUpdate {
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                        hyper: Hyper {
                            scale: scale as f32,
                            b1: b1 as f32,
                            b2: b2 as f32,
                            lr_m: lr_m as f32,
                            c2: c2 as f32,
                            eps: self.eps as f32,
                            decay: decay as f32,
                        },
                    };
                    var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Host { .. } => {
                    return Err(Error::Invalid(
                        "AdamW: a CPU variable is not contiguous".into(),
                    ));
                }
                Moments::Tensor { m, v } => {
                    let g = g.affine(scale, 0.0)?;
                    let new_m = (m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
                    let new_v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
                    let denom = new_v.affine(c2, 0.0)?.sqrt()?.affine(1.0, self.eps)?;
                    let theta = var.as_tensor().affine(decay, 0.0)?;
                    var.set(&(theta - (new_m.div(&denom)?.affine(lr_m, 0.0))?)?)?;
                    *m = new_m;
                    *v = new_v;
                }
            }
        }
        Ok(norm)
    }

    /// The moments, named `adam.m.<var>` and `adam.v.<var>`, for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for ((name, var), moments) in self.vars.iter().zip(&self.moments) {
            let (m, v) = match moments {
                Moments::Host { m, v } => {
                    let t = var.as_tensor();
                    (
                        Tensor::from_slice(m, t.shape(), t.device())?,
                        Tensor::from_slice(v, t.shape(), t.device())?,
                    )
                }
                Moments::Tensor { m, v } => (m.clone(), v.clone()),
            };
            out.insert(format!("adam.m.{name}"), m);
            out.insert(format!("adam.v.{name}"), v);
        }
        Ok(out)
    }

    /// Restores moments saved by [`Self::state`] after `steps` updates.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for ((name, var), moments) in self.vars.iter().zip(self.moments.iter_mut()) {
            let get = |k: String| {
                let t = state
                    .get(&k)
                    .ok_or_else(|| Error::Invalid(format!("checkpoint lacks {k}")))?;
                if t.shape() != var.as_tensor().shape() {
                    return Err(Error::Invalid(format!(
                        "checkpoint's {k} has shape {:?}, the model's variable {:?}",
                        t.dims(),
                        var.as_tensor().dims()
                    )));
                }
                Ok(t.clone())
            };
            let (m, v) = (
                get(format!("adam.m.{name}"))?,
                get(format!("adam.v.{name}"))?,
            );
            *moments = match moments {
                Moments::Host { .. } => Moments::Host {
                    m: m.flatten_all()?.to_vec1::<f32>()?,
                    v: v.flatten_all()?.to_vec1::<f32>()?,
                },
                Moments::Tensor { .. } => Moments::Tensor { m, v },
            };
        }
        self.step = steps;
        Ok(())
    }
}

/// Variables below this many values are updated on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// One AdamW update of a contiguous f32 variable (the destination) from its gradient (the
/// source), with the moments held by the optimiser.
struct FusedUpdate<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    hyper: Hyper,
}

/// The per-step constants of the update.
#[derive(Clone, Copy)]
struct Hyper {
    /// Gradient scale from clipping.
    scale: f32,
    b1: f32,
    b2: f32,
    /// Learning rate over the first moment's bias correction.
    lr_m: f32,
    /// One over the second moment's bias correction.
    c2: f32,
    eps: f32,
    /// `1 - lr * weight_decay`.
    decay: f32,
}

impl Hyper {
    fn update(&self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((w, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
            let g = g * self.scale;
            *m = self.b1 * *m + (1.0 - self.b1) * g;
            *v = self.b2 * *v + (1.0 - self.b2) * g * g;
            let denom = (*v * self.c2).sqrt() + self.eps;
            *w = *w * self.decay - self.lr_m * *m / denom;
        }
    }
}

impl InplaceOp2 for FusedUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let theta = crate::kernels::fused::slice_mut(s1, l1, "adamw-update")?;
        let g = crate::kernels::fused::slice(s2, l2, "adamw-update")?;
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if theta.len() != g.len() || theta.len() != m.len() || theta.len() != v.len() {
            candle_core::bail!("adamw-update: the gradient or moments do not match the variable")
        }
        let hyper = self.hyper;
        let threads = crate::kernels::threads::threads().max(1);
        if threads == 1 || theta.len() < PARALLEL_MIN {
            hyper.update(theta, g, &mut m[..], &mut v[..]);
            return Ok(());
        }
        let per = theta.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = theta
                .chunks_mut(per)
                .zip(g.chunks(per))
                .zip(m.chunks_mut(per))
                .zip(v.chunks_mut(per));
            let first = parts.next();
            for (((t, g), m), v) in parts {
                scope.spawn(move || hyper.update(t, g, m, v));
            }
            if let Some((((t, g), m), v)) = first {
                hyper.update(t, g, m, v);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused CPU update and the tensor formulation give the same weights and moments.
    #[test]
    fn fused_update_matches_tensor_formula() {
        let dev = Device::Cpu;
        let run = |fused: bool| -> (Vec<f32>, Vec<f32>) {
            let varmap = VarMap::new();
            let init: Vec<f32> = (0..200_000)
                .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                .collect();
            let w = Tensor::from_vec(init, (400, 500), &dev).unwrap();
            let var = Var::from_tensor(&w).unwrap();
            varmap
                .data()
                .lock()
                .unwrap()
                .insert("w".into(), var.clone());
            let mut opt = AdamW::new(&varmap, 1e-2, 0.1).unwrap();
            if !fused {
                opt.moments = vec![Moments::Tensor {
                    m: w.zeros_like().unwrap(),
                    v: w.zeros_like().unwrap(),
                }];
            }
            for step in 0..3 {
                let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap()
                    + var
                        .as_tensor()
                        .affine(step as f64 + 1.0, 0.0)
                        .unwrap()
                        .sin()
                        .unwrap()
                        .sum_all()
                        .unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads, 5.0).unwrap();
            }
            let m = opt.state().unwrap()["adam.m.w"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (
                var.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                m,
            )
        };
        let (wf, mf) = run(true);
        let (wt, mt) = run(false);
        for (a, b) in wf.iter().zip(&wt).chain(mf.iter().zip(&mt)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(wf.iter().zip(&wt).any(|(a, _)| *a != 0.0));
    }

    /// Moments saved by `state` and restored by `load_state` continue the same run.
    #[test]
    fn state_round_trips() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let var = Var::from_tensor(&Tensor::ones((3, 4), DType::F32, &dev).unwrap()).unwrap();
        varmap
            .data()
            .lock()
            .unwrap()
            .insert("w".into(), var.clone());
        let mut opt = AdamW::new(&varmap, 1e-2, 0.0).unwrap();
        let grads = var
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 1.0).unwrap();
        let state = opt.state().unwrap();
        let mut other = AdamW::new(&varmap, 1e-2, 0.0).unwrap();
        other.load_state(&state, opt.steps()).unwrap();
        assert_eq!(other.steps(), 1);
        assert_eq!(
            other.state().unwrap()["adam.v.w"].to_vec2::<f32>().unwrap(),
            state["adam.v.w"].to_vec2::<f32>().unwrap()
        );
        let mut bad = state.clone();
        bad.insert(
            "adam.m.w".into(),
            Tensor::ones(5, DType::F32, &dev).unwrap(),
        );
        assert!(other.load_state(&bad, 1).is_err());
    }
}
