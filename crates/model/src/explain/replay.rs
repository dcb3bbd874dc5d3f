//! Re-running a finished decoding, teacher-forced on its own output, for a batch of source
//! variants at once: the embeddings of attribution (the input itself, points on the path from
//! a baseline) or sources with one token left out (erasure).
//!
//! Each step attends as the decoding did: the model's softmax (differentiable, at the same
//! temperature), a one-hot at the argmax for `hard`, sparsemax with its Jacobian on the
//! chosen support, uniform weights for `uniform`, and, where the decoding's weights were not a
//! function of the scores alone (an intervention, `sampled` or `shuffled` attention), those
//! very weights as constants.

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};

use crate::Result;
use crate::config::BOS_ID;
use crate::kernels::ops::softmax;
use crate::networks::EncoderDecoder;
use crate::networks::attention::{Distribution, Mode};

/// One step of the decoding being explained.
#[derive(Clone, Debug)]
pub(crate) struct ReplayStep {
    /// The token the decoding emitted (and the next step's input).
    pub token: u32,
    /// `[layer][head × source]` weights to use as given (interventions, `sampled`), over the
    /// sentence's own source positions; `None` lets the replay attend.
    pub fixed: Option<Vec<Vec<f32>>>,
}

/// A decoding to re-run: the network, how it attended, its steps.
pub(crate) struct Replay<'a, N> {
    pub network: &'a N,
    pub mode: Mode,
    pub temperature: f32,
    pub steps: &'a [ReplayStep],
}

/// Weights given for one step of a batch: `[layer]` `(R, heads × S)` tensors.
pub(crate) type FixedRows = Option<Vec<Tensor>>;

/// The batch rows of each step's given weights: `rows` turns one layer's `[head × source]`
/// weights into its `(R, …)` tensor; steps that attend freely stay `None`.
pub(crate) fn map_fixed(
    steps: &[ReplayStep],
    rows: impl Fn(&[f32]) -> Result<Tensor>,
) -> Result<Vec<FixedRows>> {
    steps
        .iter()
        .map(|st| {
            st.fixed
                .as_ref()
                .map(|layers| layers.iter().map(|w| rows(w)).collect::<Result<Vec<_>>>())
                .transpose()
        })
        .collect()
}

impl<N: EncoderDecoder> Replay<'_, N> {
    /// Log-probabilities of the decoding's tokens and their gradients with respect to the
    /// source embeddings: row `r` of the batch scores step `targets[r]` only.
    ///
    /// # Shapes
    /// - `emb`: `(R, S, E)` source embeddings; returns `R` log-probabilities and `(R, S, E)`
    ///   gradients
    pub fn gradients(&self, emb: &Tensor, targets: &[usize]) -> Result<(Vec<f32>, Tensor)> {
        let r = emb.dim(0)?;
        let var = Var::from_tensor(emb)?;
        let fixed = self.broadcast_fixed(r)?;
        let mut picked: Vec<Tensor> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        self.forward(
            var.as_tensor(),
            &fixed,
            Some(targets),
            |t, features, alive| {
                // Only the rows that score this step go through the output layer.
                let (at, rows): (Vec<u32>, Vec<usize>) = alive
                    .iter()
                    .enumerate()
                    .filter(|&(_, &row)| targets[row] == t)
                    .map(|(i, &row)| (i as u32, row))
                    .unzip();
                if rows.is_empty() {
                    return Ok(());
                }
                let idx = Tensor::from_vec(at, rows.len(), features.device())?;
                let logits = self.network.logits(&features.index_select(&idx, 0)?)?;
                let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                let token = self.steps[t].token as usize;
                picked.push(lp.narrow(1, token, 1)?.squeeze(1)?);
                order.extend(rows);
                Ok(())
            },
        )?;
        let all = Tensor::cat(&picked, 0)?;
        let grads = all.sum_all()?.backward()?;
        let grad = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        let mut values = vec![0f32; r];
        for (&row, v) in order.iter().zip(all.to_vec1::<f32>()?) {
            values[row] = v;
        }
        Ok((values, grad))
    }

    /// Log-probabilities of every step's token for every source of a batch, without
    /// gradients: `[row][step]`. `fixed` gives each row's weights for the steps that use
    /// given weights, `[step][layer]` `(R, heads × S)`.
    pub fn log_probs(&self, emb: &Tensor, fixed: &[FixedRows]) -> Result<Vec<Vec<f32>>> {
        let r = emb.dim(0)?;
        let mut out = vec![Vec::with_capacity(self.steps.len()); r];
        self.forward(emb, fixed, None, |t, features, _| {
            let lp = candle_nn::ops::log_softmax(&self.network.logits(features)?, D::Minus1)?;
            let token = self.steps[t].token as usize;
            for (row, v) in out.iter_mut().zip(lp.i((.., token))?.to_vec1::<f32>()?) {
                row.push(v);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Each step's given weights, the same for all `r` rows.
    pub fn broadcast_fixed(&self, r: usize) -> Result<Vec<FixedRows>> {
        map_fixed(self.steps, |w| {
            let n = w.len();
            Ok(Tensor::from_vec(w.to_vec(), (1, n), &Device::Cpu)?
                .broadcast_as((r, n))?
                .contiguous()?)
        })
    }

    /// Runs the steps teacher-forced; `on_features` sees each step's features `(R', F)`
    /// (see [`Network::step_features`]) with the batch rows they belong to. With `targets`
    /// (the step each row scores), a row leaves the batch after its step and the run ends
    /// after the last one.
    fn forward(
        &self,
        emb: &Tensor,
        fixed: &[FixedRows],
        targets: Option<&[usize]>,
        mut on_features: impl FnMut(usize, &Tensor, &[usize]) -> Result<()>,
    ) -> Result<()> {
        let (r, s, _) = emb.dims3()?;
        let device = emb.device().clone();
        let mask = Tensor::ones((r, s), DType::F32, &device)?;
        let mut memory = self.network.encode_embedded(emb, &mask)?;
        let mut state = self.network.initial_state(&memory)?;
        let mut alive: Vec<usize> = (0..r).collect();
        let mut hard = Distribution::new(self.mode, self.temperature, 0)?;
        let n_steps = match targets {
            Some(t) => t.iter().map(|&x| x + 1).max().unwrap_or(0),
            None => self.steps.len(),
        };
        for t in 0..n_steps.min(self.steps.len()) {
            let idx = Tensor::from_vec(
                alive.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                alive.len(),
                &device,
            )?;
            let given: Option<Vec<Tensor>> = match fixed.get(t).and_then(|f| f.as_ref()) {
                Some(layers) if alive.len() < r => Some(
                    layers
                        .iter()
                        .map(|w| Ok(w.index_select(&idx, 0)?))
                        .collect::<Result<_>>()?,
                ),
                Some(layers) => Some(layers.clone()),
                None => None,
            };
            let prev = if t == 0 {
                BOS_ID
            } else {
                self.steps[t - 1].token
            };
            let prev = Tensor::full(prev, alive.len(), &device)?;
            let mut layer = 0;
            let (features, next) =
                self.network
                    .step_features(&memory, &state, &prev, &mut |scores| {
                        let l = layer;
                        layer += 1;
                        match given.as_ref().and_then(|g| g.get(l)) {
                            Some(w) => Ok(w.reshape(scores.shape())?),
                            None => self.attend(scores, &mut hard),
                        }
                    })?;
            on_features(t, &features, &alive)?;
            state = next;
            if let Some(targets) = targets {
                let keep: Vec<usize> = (0..alive.len())
                    .filter(|&i| targets[alive[i]] > t)
                    .collect();
                if keep.is_empty() {
                    break;
                }
                if keep.len() < alive.len() {
                    let sel = Tensor::from_vec(
                        keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                        keep.len(),
                        &device,
                    )?;
                    memory = N::select_memory(&memory, &sel)?;
                    state = N::select_state(&state, &sel)?;
                    alive = keep.iter().map(|&i| alive[i]).collect();
                }
            }
        }
        Ok(())
    }

    /// The decoding's own distribution over masked scores `(..., S)`, differentiable where
    /// it has a gradient.
    fn attend(&self, scores: &Tensor, dist: &mut Distribution) -> Result<Tensor> {
        let inv = 1.0 / self.temperature as f64;
        match self.mode {
            Mode::Soft => softmax(&scores.affine(inv, 0.0)?),
            Mode::Sparsemax => {
                // On its support (fixed), sparsemax is z - tau(z), tau = (sum z - 1) / |support|.
                let support = dist.weights(scores)?.gt(0.0)?.to_dtype(DType::F32)?;
                let z = scores.affine(inv, 0.0)?;
                let count = support.sum_keepdim(D::Minus1)?;
                let tau =
                    ((&z * &support)?.sum_keepdim(D::Minus1)? - 1.0)?.broadcast_div(&count)?;
                Ok((z.broadcast_sub(&tau)? * support)?)
            }
            // A one-hot or uniform row has no gradient; `sampled` and `shuffled` steps always
            // come as given weights.
            Mode::Hard | Mode::Uniform | Mode::Sampled | Mode::Shuffled => dist.weights(scores),
        }
    }
}
