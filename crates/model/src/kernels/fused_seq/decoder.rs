//! The teacher-forced attention decoder as one op (see the parent module).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::{at_b, axpy, column_sum, dot, gru_step, host, linear, times};
use crate::kernels::fused_rnn::{cell_backward, score_backward};

// ---------------------------------------------------------------------------------------
// Decoder: teacher-forced attention GRU over the whole target
// ---------------------------------------------------------------------------------------

/// How the decoder loop scores the source.
pub enum LoopScore {
    /// `v · tanh(keys + W_q s + b_q)`; keys `(B, S, A)`.
    Additive { wq: Tensor, bq: Tensor, v: Tensor },
    /// `keys · s`; keys `(B, S, H)` (Luong's general and dot scorers).
    Dot,
}

/// Which weights the decoder loop attends with.
pub enum LoopAttention {
    Soft,
    /// One-hot at the argmax; no gradient reaches the scores.
    Argmax,
    /// Straight-through Gumbel: one-hot of `argmax(scores + g)` forward, the gradient of
    /// `softmax((scores + g) / tau)` backward. `noise[t]` holds `B * S` values.
    Gumbel {
        noise: Vec<Vec<f32>>,
        tau: f32,
    },
}

/// What one decoder step keeps for the backward pass.
struct Saved {
    s_prev: Vec<f32>,
    q: Vec<f32>,
    /// The distribution whose gradient is used (softmax, possibly of noisy scores).
    p: Vec<f32>,
    /// The weights used.
    w: Vec<f32>,
    c: Vec<f32>,
    gi: Vec<f32>,
    gh: Vec<f32>,
}

/// The teacher-forced decoder of [`crate::networks::rnn::Seq2Seq`] over all target positions.
///
/// Inputs: keys `(B, S, K)`, encoder states `(B, S, 2H)`, and one flat tensor of, in
/// order, the projected target embeddings `(T, B, 3H)`, the context input weight
/// `(3H, 2H)`, the hidden weight `(3H, H)` and bias `(3H,)`, the initial state `(B, H)`,
/// and for the additive score `W_q` `(A, H)`, `b_q` `(A,)` and `v` `(A,)`
/// ([`DecoderLoop::pack`]). Output: `(B, T, 3H)`, each position's new state then context.
pub struct DecoderLoop {
    additive: bool,
    /// 0 when no gradient reaches the scores (argmax).
    tau: f32,
    saved: Vec<Saved>,
    out: Vec<f32>,
    /// (B, S, T, H, K)
    dims: (usize, usize, usize, usize, usize),
}

/// Weights and inputs of one decoder loop, detached or not.
pub struct LoopInputs<'a> {
    pub gi_e: &'a Tensor,
    pub wc: &'a Tensor,
    pub whh: &'a Tensor,
    pub bhh: &'a Tensor,
    pub s0: &'a Tensor,
}

impl DecoderLoop {
    /// The flat third input of the op.
    pub fn pack(inputs: &LoopInputs, score: &LoopScore) -> Result<Tensor> {
        let mut parts = vec![
            inputs.gi_e.flatten_all()?,
            inputs.wc.flatten_all()?,
            inputs.whh.flatten_all()?,
            inputs.bhh.flatten_all()?,
            inputs.s0.flatten_all()?,
        ];
        if let LoopScore::Additive { wq, bq, v } = score {
            parts.extend([wq.flatten_all()?, bq.flatten_all()?, v.flatten_all()?]);
        }
        Tensor::cat(&parts, 0)
    }

    /// Runs the decoder (detached) and returns the op that records it.
    ///
    /// `mask_bias`: `(B, S)`, 0 at tokens and -1e9 at padding.
    pub fn run(
        keys: &Tensor,
        states: &Tensor,
        mask_bias: &Tensor,
        inputs: &LoopInputs,
        score: &LoopScore,
        attention: &LoopAttention,
    ) -> Result<Self> {
        let (b, s, k) = keys.dims3()?;
        let (t_len, _, h3) = inputs.gi_e.dims3()?;
        let hd = h3 / 3;
        let h2 = 2 * hd;
        if states.dims3()? != (b, s, h2) || inputs.s0.dims2()? != (b, hd) {
            bail!(
                "decoder-loop: keys {:?}, states {:?} and initial state {:?} do not match",
                keys.dims(),
                states.dims(),
                inputs.s0.dims()
            )
        }
        let dev = keys.device().clone();
        let keys_t = keys.detach().contiguous()?;
        let states_t = states.detach().contiguous()?;
        let (wc, whh, bhh) = (inputs.wc.detach(), inputs.whh.detach(), inputs.bhh.detach());
        let gi_e = host(inputs.gi_e)?;
        let bias = host(mask_bias)?;
        let keys_v = host(&keys_t)?;
        let states_v = host(&states_t)?;
        let mut s_cur = host(inputs.s0)?;
        let (tau, hard) = match attention {
            LoopAttention::Gumbel { tau, .. } => (*tau, true),
            LoopAttention::Argmax => (1.0, true),
            LoopAttention::Soft => (1.0, false),
        };
        let mut saved = Vec::with_capacity(t_len);
        let mut out = vec![0f32; b * t_len * h3];
        for t in 0..t_len {
            let s_t = Tensor::from_slice(&s_cur, (b, hd), &dev)?;
            let (q, mut scores) = match score {
                LoopScore::Additive { wq, bq, v } => {
                    let q = linear(&s_t, &wq.detach(), Some(&bq.detach()))?;
                    let raw = keys_t.apply_op3(
                        &q,
                        &v.detach(),
                        crate::kernels::fused_rnn::AdditiveScore,
                    )?;
                    (host(&q)?, host(&raw)?)
                }
                LoopScore::Dot => {
                    let mut raw = vec![0f32; b * s];
                    for (i, r) in raw.iter_mut().enumerate() {
                        let bi = i / s;
                        *r = dot(&keys_v[i * k..(i + 1) * k], &s_cur[bi * hd..(bi + 1) * hd]);
                    }
                    (Vec::new(), raw)
                }
            };
            for (x, m) in scores.iter_mut().zip(&bias) {
                *x += m;
            }
            if let LoopAttention::Gumbel { noise, .. } = attention {
                let Some(g) = noise.get(t).filter(|g| g.len() == b * s) else {
                    bail!("decoder-loop: Gumbel noise for step {t} is missing or the wrong size")
                };
                for (x, g) in scores.iter_mut().zip(g) {
                    *x += g;
                }
            }
            let mut p = vec![0f32; b * s];
            let mut w = vec![0f32; b * s];
            for ((row, p), w) in scores
                .chunks_exact(s)
                .zip(p.chunks_exact_mut(s))
                .zip(w.chunks_exact_mut(s))
            {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut arg = 0;
                for (j, &x) in row.iter().enumerate() {
                    if x > row[arg] {
                        arg = j;
                    }
                }
                let mut sum = 0f32;
                for (p, &x) in p.iter_mut().zip(row) {
                    *p = ((x - max) / tau).exp();
                    sum += *p;
                }
                for p in p.iter_mut() {
                    *p /= sum;
                }
                if hard {
                    w[arg] = 1.0;
                } else {
                    w.copy_from_slice(p);
                }
            }
            let mut c = vec![0f32; b * h2];
            for bi in 0..b {
                let c = &mut c[bi * h2..(bi + 1) * h2];
                for j in 0..s {
                    let wt = w[bi * s + j];
                    if wt != 0.0 {
                        let row = (bi * s + j) * h2;
                        axpy(wt, &states_v[row..row + h2], c);
                    }
                }
            }
            let c_t = Tensor::from_slice(&c, (b, h2), &dev)?;
            let mut gi = host(&linear(&c_t, &wc, None)?)?;
            for (x, e) in gi.iter_mut().zip(&gi_e[t * b * h3..(t + 1) * b * h3]) {
                *x += e;
            }
            let gh = host(&linear(&s_t, &whh, Some(&bhh))?)?;
            let s_new = gru_step(&gi, &gh, &s_cur, None, hd);
            for bi in 0..b {
                let o = (bi * t_len + t) * h3;
                out[o..o + hd].copy_from_slice(&s_new[bi * hd..(bi + 1) * hd]);
                out[o + hd..o + h3].copy_from_slice(&c[bi * h2..(bi + 1) * h2]);
            }
            let s_prev = std::mem::replace(&mut s_cur, s_new);
            saved.push(Saved {
                s_prev,
                q,
                p,
                w,
                c,
                gi,
                gh,
            });
        }
        let trains_scores = !matches!(attention, LoopAttention::Argmax);
        Ok(DecoderLoop {
            additive: matches!(score, LoopScore::Additive { .. }),
            tau: if trains_scores { tau } else { 0.0 },
            saved,
            out,
            dims: (b, s, t_len, hd, k),
        })
    }
}

impl CustomOp3 for DecoderLoop {
    fn name(&self) -> &'static str {
        "decoder-loop"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, _, t, hd, _) = self.dims;
        Ok((
            CpuStorage::F32(self.out.clone()),
            Shape::from((b, t, 3 * hd)),
        ))
    }

    fn bwd(
        &self,
        keys: &Tensor,
        states: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, s, t_len, hd, k) = self.dims;
        let (h2, h3) = (2 * hd, 3 * hd);
        let dev = keys.device().clone();
        let keys_v = host(keys)?;
        let states_v = host(states)?;
        let grad = host(grad)?;
        let packed_v = host(packed)?;
        // Offsets of the packed parts.
        let n_gi = t_len * b * h3;
        let (o_wc, o_whh) = (n_gi, n_gi + h3 * h2);
        let o_bhh = o_whh + h3 * hd;
        let o_s0 = o_bhh + h3;
        let o_wq = o_s0 + b * hd;
        let wc = Tensor::from_slice(&packed_v[o_wc..o_whh], (h3, h2), &dev)?;
        let whh = Tensor::from_slice(&packed_v[o_whh..o_bhh], (h3, hd), &dev)?;
        let (wq, v) = if self.additive {
            let v = &packed_v[o_wq + k * hd + k..o_wq + k * hd + 2 * k];
            (
                Some(Tensor::from_slice(
                    &packed_v[o_wq..o_wq + k * hd],
                    (k, hd),
                    &dev,
                )?),
                v.to_vec(),
            )
        } else {
            (None, Vec::new())
        };
        let mut d_keys = vec![0f32; b * s * k];
        let mut d_states = vec![0f32; b * s * h2];
        let mut d_v = vec![0f32; k];
        let mut d_gi_all = vec![0f32; t_len * b * h3];
        let mut d_gh_all = vec![0f32; t_len * b * h3];
        let mut d_q_all = vec![0f32; if self.additive { t_len * b * k } else { 0 }];
        let mut s_prev_all = vec![0f32; t_len * b * hd];
        let mut c_all = vec![0f32; t_len * b * h2];
        let mut ds = vec![0f32; b * hd];
        for t in (0..t_len).rev() {
            let sv = &self.saved[t];
            for bi in 0..b {
                let o = (bi * t_len + t) * h3;
                for (d, g) in ds[bi * hd..(bi + 1) * hd].iter_mut().zip(&grad[o..o + hd]) {
                    *d += g;
                }
            }
            let r3 = t * b * h3..(t + 1) * b * h3;
            let mut ds_next = vec![0f32; b * hd];
            {
                let (d_gi, d_gh) = (&mut d_gi_all[r3.clone()], &mut d_gh_all[r3.clone()]);
                cell_backward(
                    hd,
                    &sv.gi,
                    &sv.gh,
                    &sv.s_prev,
                    None,
                    &ds,
                    d_gi,
                    d_gh,
                    &mut ds_next,
                );
            }
            // Context: from the GRU input and from the output.
            let mut dc = times(&d_gi_all[r3.clone()], &wc)?;
            for bi in 0..b {
                let o = (bi * t_len + t) * h3 + hd;
                for (d, g) in dc[bi * h2..(bi + 1) * h2].iter_mut().zip(&grad[o..o + h2]) {
                    *d += g;
                }
            }
            // Weights: dw[b, j] = dc[b] · states[b, j]; states get w[b, j] dc[b].
            let mut dw = vec![0f32; b * s];
            for bi in 0..b {
                let dcb = &dc[bi * h2..(bi + 1) * h2];
                for j in 0..s {
                    let row = (bi * s + j) * h2;
                    dw[bi * s + j] = dot(dcb, &states_v[row..row + h2]);
                    let wt = sv.w[bi * s + j];
                    if wt != 0.0 {
                        axpy(wt, dcb, &mut d_states[row..row + h2]);
                    }
                }
            }
            if self.tau > 0.0 {
                // Softmax backward (of scores / tau for the straight-through estimator).
                let mut d_scores = vec![0f32; b * s];
                for ((d, p), g) in d_scores
                    .chunks_exact_mut(s)
                    .zip(sv.p.chunks_exact(s))
                    .zip(dw.chunks_exact(s))
                {
                    let inner = dot(p, g);
                    for ((d, &p), &g) in d.iter_mut().zip(p).zip(g) {
                        *d = p * (g - inner) / self.tau;
                    }
                }
                if self.additive {
                    let d_q = &mut d_q_all[t * b * k..(t + 1) * b * k];
                    score_backward(
                        k,
                        s,
                        &keys_v,
                        &sv.q,
                        &v,
                        &d_scores,
                        &mut d_keys,
                        d_q,
                        &mut d_v,
                    );
                    if let Some(wq) = &wq {
                        let through = times(d_q, wq)?;
                        for (d, x) in ds_next.iter_mut().zip(&through) {
                            *d += x;
                        }
                    }
                } else {
                    for bi in 0..b {
                        let sb = &sv.s_prev[bi * hd..(bi + 1) * hd];
                        let dsb = &mut ds_next[bi * hd..(bi + 1) * hd];
                        for j in 0..s {
                            let g = d_scores[bi * s + j];
                            let row = (bi * s + j) * k;
                            axpy(g, sb, &mut d_keys[row..row + k]);
                            axpy(g, &keys_v[row..row + k], dsb);
                        }
                    }
                }
            }
            let through = times(&d_gh_all[r3], &whh)?;
            for (d, x) in ds_next.iter_mut().zip(&through) {
                *d += x;
            }
            ds = ds_next;
            s_prev_all[t * b * hd..(t + 1) * b * hd].copy_from_slice(&sv.s_prev);
            c_all[t * b * h2..(t + 1) * b * h2].copy_from_slice(&sv.c);
        }
        let d_bhh = column_sum(&d_gh_all, h3);
        let d_whh = at_b(d_gh_all, h3, s_prev_all.clone(), hd)?;
        let d_wc = at_b(d_gi_all.clone(), h3, c_all, h2)?;
        let mut parts = vec![
            Tensor::from_vec(d_gi_all, n_gi, &dev)?,
            d_wc.flatten_all()?,
            d_whh.flatten_all()?,
            Tensor::from_vec(d_bhh, h3, &dev)?,
            Tensor::from_vec(ds, b * hd, &dev)?,
        ];
        if self.additive {
            let d_bq = column_sum(&d_q_all, k);
            let d_wq = at_b(d_q_all, k, s_prev_all, hd)?;
            parts.extend([
                d_wq.flatten_all()?,
                Tensor::from_vec(d_bq, k, &dev)?,
                Tensor::from_vec(d_v, k, &dev)?,
            ]);
        }
        Ok((
            Some(Tensor::from_vec(d_keys, (b, s, k), &dev)?),
            Some(Tensor::from_vec(d_states, (b, s, h2), &dev)?),
            Some(Tensor::cat(&parts, 0)?),
        ))
    }
}
