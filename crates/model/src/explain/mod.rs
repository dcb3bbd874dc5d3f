//! Attribution: how much each source token mattered to each emitted token, measured three
//! ways beside the attention the decoder used, so a reader can check the heatmap.
//!
//! Every method explains `f_t(x) = log p(y_t | x, y_<t)`, the log-probability of the token
//! the decoding emitted at step `t`, as a function of the source token embeddings `x`
//! (before a Transformer's scaling and positions), the output so far held fixed
//! (teacher-forced on the decoding's own tokens, which covers greedy, beam, forced and
//! prefixed outputs alike), attending as the decoding did ([`replay`]):
//!
//! - [`Method::GradientXInput`]: `∑_e ∂f_t/∂x_{i,e} · x_{i,e}` (Shrikumar et al. 2016);
//! - [`Method::IntegratedGradients`]: `∑_e (x − x')_{i,e} ∫₀¹ ∂f_t/∂x_{i,e}(x' + α(x − x')) dα`
//!   (Sundararajan et al. 2017), the integral by Gauss–Legendre quadrature as Captum's
//!   default `gausslegendre` method takes it, from a zero or `<pad>`-embedding baseline `x'`;
//!   by completeness its row sums to `f_t(x) − f_t(x')`, and the remainder is reported as
//!   the convergence delta;
//! - [`Method::Erasure`]: `f_t(x) − f_t(x without token i)`, leave one out (Li et al. 2016),
//!   teacher-forced on the same output; [`Method::WordErasure`] leaves out every piece of
//!   a word at once and splits the drop evenly over them ([`erasure`]).
//!
//! Each is a signed row per step over the source tokens (raw values); [`normalise`] gives
//! the row the heatmap shows, absolute values summing to 1. Every row comes with its
//! [`Agreement`] with the attention row of the same step. A text translated sentence by
//! sentence is explained sentence by sentence, its rows 0 outside their own sentence.

mod agreement;
mod erasure;
mod replay;

use std::ops::Range;

use candle_core::{Device, Tensor};

pub use agreement::{Agreement, kendall_tau};
use replay::{Replay, ReplayStep};

use crate::config::PAD_ID;
use crate::decoding::decode::Translation;
use crate::decoding::plan::DecodePlan;
use crate::decoding::step::DecodeStep;
use crate::networks::EncoderDecoder;
use crate::networks::attention::Mode;
use crate::with_network;
use crate::{Error, Result, Translator, Vocab};

/// An attribution method; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    GradientXInput,
    IntegratedGradients,
    Erasure,
    WordErasure,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::GradientXInput,
        Method::IntegratedGradients,
        Method::Erasure,
        Method::WordErasure,
    ];

    /// The name in the API, the CLI and permalinks.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GradientXInput => "gradient_x_input",
            Method::IntegratedGradients => "integrated_gradients",
            Method::Erasure => "erasure",
            Method::WordErasure => "word_erasure",
        }
    }

    /// The name people read.
    pub fn label(self) -> &'static str {
        match self {
            Method::GradientXInput => "gradient × input",
            Method::IntegratedGradients => "integrated gradients",
            Method::Erasure => "erasure",
            Method::WordErasure => "erasure of whole words",
        }
    }
}

crate::names::named!(Method, as_str, "attribution method");

/// Where integrated gradients start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Baseline {
    /// All-zero embeddings (Captum's default).
    #[default]
    Zero,
    /// The `<pad>` token's embedding at every position.
    Pad,
}

impl Baseline {
    pub const ALL: [Baseline; 2] = [Baseline::Zero, Baseline::Pad];

    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::Zero => "zero",
            Baseline::Pad => "pad",
        }
    }
}

crate::names::named!(Baseline, as_str, "integrated-gradients baseline");

/// Integrated gradients' default number of quadrature points.
pub const DEFAULT_IG_STEPS: usize = 32;
/// The most quadrature points accepted.
pub const MAX_IG_STEPS: usize = 128;
/// The most gradient rows (target tokens × quadrature points) integrated gradients takes on
/// for one sentence.
pub const MAX_IG_ROWS: usize = 16_384;
/// Rows re-run in one batch.
const CHUNK_ROWS: usize = 96;

/// What to explain, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainOptions {
    /// The methods, in the order their rows are reported (repeats are ignored).
    pub methods: Vec<Method>,
    /// Quadrature points of integrated gradients.
    pub ig_steps: usize,
    pub baseline: Baseline,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            methods: Vec::new(),
            ig_steps: DEFAULT_IG_STEPS,
            baseline: Baseline::Zero,
        }
    }
}

impl ExplainOptions {
    /// Checks the ranges (so a server can reject a request before it decodes).
    pub fn check(&self) -> Result<()> {
        if self.methods.contains(&Method::IntegratedGradients)
            && !(1..=MAX_IG_STEPS).contains(&self.ig_steps)
        {
            return Err(Error::Invalid(format!(
                "ig_steps {} is out of range; use 1 to {MAX_IG_STEPS}",
                self.ig_steps
            )));
        }
        Ok(())
    }

    /// The methods without repeats, in order.
    pub fn methods(&self) -> Vec<Method> {
        let mut out: Vec<Method> = Vec::new();
        for &m in &self.methods {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }
}

/// One method's rows for a whole translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub method: Method,
    /// `[step][source]` signed scores over every source position (0 outside the step's
    /// sentence).
    pub raw: Vec<Vec<f32>>,
    /// Per step, how the row agrees with the attention row (over its sentence's positions).
    pub agreement: Vec<Agreement>,
    /// Integrated gradients only, per step: the row's sum minus `f_t(x) − f_t(x')`, the
    /// quadrature's error (Captum's convergence delta).
    pub convergence_delta: Option<Vec<f32>>,
}

impl Attribution {
    /// Row `step` as the heatmap shows it (see [`normalise`]).
    pub fn normalised(&self, step: usize) -> Vec<f32> {
        self.raw.get(step).map(|r| normalise(r)).unwrap_or_default()
    }
}

/// Absolute values scaled to sum to 1 (a row of zeros stays zeros).
pub fn normalise(row: &[f32]) -> Vec<f32> {
    let total: f32 = row.iter().map(|v| v.abs()).sum();
    if total > 0.0 && total.is_finite() {
        row.iter().map(|v| v.abs() / total).collect()
    } else {
        vec![0.0; row.len()]
    }
}

/// What one method gives for one sentence: `[step][source]` rows, and the convergence
/// deltas of integrated gradients.
struct SentenceRows {
    rows: Vec<Vec<f32>>,
    delta: Option<Vec<f32>>,
}

impl Translator {
    /// Attributions of translation `t`, decoded from `plan`, one per method of `opts`. See
    /// the module documentation.
    pub fn explain(
        &self,
        plan: &DecodePlan,
        t: &Translation,
        opts: &ExplainOptions,
    ) -> Result<Vec<Attribution>> {
        opts.check()?;
        let src = plan.source();
        let methods = opts.methods();
        let (n, width) = (t.steps.len(), t.source_tokens.len());
        let mut out: Vec<Attribution> = methods
            .iter()
            .map(|&method| Attribution {
                method,
                raw: vec![vec![0.0; width]; n],
                agreement: vec![
                    Agreement {
                        tau: None,
                        argmax_agrees: false,
                    };
                    n
                ],
                convergence_delta: (method == Method::IntegratedGradients).then(|| vec![0.0; n]),
            })
            .collect();
        if methods.is_empty() {
            return Ok(out);
        }
        for span in &t.sentences {
            let sentence = src
                .sentences
                .iter()
                .find(|s| s.start == span.source.start && s.ids.len() == span.source.len())
                .filter(|_| span.source.end <= width && span.target.end <= n)
                .ok_or_else(|| {
                    Error::Internal("the translation does not belong to this input".into())
                })?;
            let steps = &t.steps[span.target.clone()];
            if steps.is_empty() {
                continue;
            }
            let cols = span.source.clone();
            for (att, &method) in out.iter_mut().zip(&methods) {
                let got = self.explain_sentence(
                    method,
                    &sentence.ids,
                    steps,
                    cols.clone(),
                    t.mode,
                    plan.options().temperature,
                    opts,
                )?;
                for (k, row) in got.rows.into_iter().enumerate() {
                    let step = span.target.start + k;
                    att.agreement[step] =
                        Agreement::of(&t.steps[step].attention[cols.clone()], &normalise(&row));
                    att.raw[step][cols.clone()].copy_from_slice(&row);
                }
                if let (Some(all), Some(delta)) = (att.convergence_delta.as_mut(), got.delta) {
                    all[span.target.clone()].copy_from_slice(&delta);
                }
            }
        }
        Ok(out)
    }

    /// One method over one sentence: `ids` its source, `steps` its decoding steps (attention
    /// in whole-input coordinates, its own at `cols`).
    #[allow(clippy::too_many_arguments)]
    fn explain_sentence(
        &self,
        method: Method,
        ids: &[u32],
        steps: &[DecodeStep],
        cols: Range<usize>,
        mode: Mode,
        temperature: f32,
        opts: &ExplainOptions,
    ) -> Result<SentenceRows> {
        let replay_steps: Vec<ReplayStep> = steps
            .iter()
            .map(|st| ReplayStep {
                token: st.token_id,
                fixed: (st.intervened || matches!(mode, Mode::Sampled | Mode::Shuffled))
                    .then(|| given(st, &cols)),
            })
            .collect();
        with_network!(self.network(), |net| {
            explain_with(
                net,
                self.source_vocab(),
                method,
                ids,
                &replay_steps,
                steps,
                mode,
                temperature,
                opts,
            )
        })
    }
}

/// [`Translator::explain_sentence`] with the concrete network `net`; `vocab` names the
/// source pieces, which word erasure groups into words.
#[allow(clippy::too_many_arguments)]
fn explain_with<N: EncoderDecoder>(
    net: &N,
    vocab: &Vocab,
    method: Method,
    ids: &[u32],
    replay_steps: &[ReplayStep],
    steps: &[DecodeStep],
    mode: Mode,
    temperature: f32,
    opts: &ExplainOptions,
) -> Result<SentenceRows> {
    let replay = Replay {
        network: net,
        mode,
        temperature,
        steps: replay_steps,
    };
    let src = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu)?;
    let x = net.embed_source(&src)?.squeeze(0)?;
    match method {
        Method::GradientXInput => gradient_x_input(&replay, &x),
        Method::IntegratedGradients => {
            let baseline = match opts.baseline {
                Baseline::Zero => x.zeros_like()?,
                Baseline::Pad => {
                    let pad = Tensor::full(PAD_ID, (1, ids.len()), &Device::Cpu)?;
                    net.embed_source(&pad)?.squeeze(0)?
                }
            };
            let f_x: Vec<f32> = steps.iter().map(|s| s.log_prob).collect();
            integrated_gradients(&replay, &x, &baseline, opts.ig_steps, &f_x)
        }
        Method::Erasure => erasure::erasure(&replay, ids, steps, &erasure::pieces(ids.len())),
        Method::WordErasure => {
            let words = erasure::words(ids, |id| vocab.piece(id));
            erasure::erasure(&replay, ids, steps, &words)
        }
    }
}

/// The weights a step used, `[layer][head × source]` over `cols`.
fn given(step: &DecodeStep, cols: &Range<usize>) -> Vec<Vec<f32>> {
    match &step.heads {
        Some(h) => h
            .cross
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .flat_map(|head| head[cols.clone()].iter().copied())
                    .collect()
            })
            .collect(),
        None => vec![step.attention[cols.clone()].to_vec()],
    }
}

/// `(S, E)` embeddings repeated into `(R, S, E)`.
fn repeat(x: &Tensor, r: usize) -> Result<Tensor> {
    let (s, e) = x.dims2()?;
    Ok(x.unsqueeze(0)?.broadcast_as((r, s, e))?.contiguous()?)
}

fn gradient_x_input<N: EncoderDecoder>(replay: &Replay<N>, x: &Tensor) -> Result<SentenceRows> {
    let n = replay.steps.len();
    let mut rows = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK_ROWS) {
        let targets: Vec<usize> = (start..(start + CHUNK_ROWS).min(n)).collect();
        let (_, grad) = replay.gradients(&repeat(x, targets.len())?, &targets)?;
        let scores = grad.broadcast_mul(&x.unsqueeze(0)?)?.sum(2)?;
        rows.extend(scores.to_vec2::<f32>()?);
    }
    Ok(SentenceRows { rows, delta: None })
}

fn integrated_gradients<N: EncoderDecoder>(
    replay: &Replay<N>,
    x: &Tensor,
    baseline: &Tensor,
    points: usize,
    f_x: &[f32],
) -> Result<SentenceRows> {
    let n = replay.steps.len();
    if n * points > MAX_IG_ROWS {
        return Err(Error::Invalid(format!(
            "integrated gradients over {n} target tokens × {points} points is more than {MAX_IG_ROWS} gradients; lower ig_steps"
        )));
    }
    let s = x.dim(0)?;
    let diff = (x - baseline)?;
    let quadrature = gauss_legendre(points);
    let all: Vec<(usize, f64, f64)> = (0..n)
        .flat_map(|t| quadrature.iter().map(move |&(a, w)| (t, a, w)))
        .collect();
    let mut rows = vec![vec![0f32; s]; n];
    for chunk in all.chunks(CHUNK_ROWS) {
        let r = chunk.len();
        let alphas: Vec<f32> = chunk.iter().map(|c| c.1 as f32).collect();
        let weights: Vec<f32> = chunk.iter().map(|c| c.2 as f32).collect();
        let targets: Vec<usize> = chunk.iter().map(|c| c.0).collect();
        let alphas = Tensor::from_vec(alphas, (r, 1, 1), &Device::Cpu)?;
        let emb = repeat(baseline, r)?.add(&repeat(&diff, r)?.broadcast_mul(&alphas)?)?;
        let (_, grad) = replay.gradients(&emb, &targets)?;
        let weights = Tensor::from_vec(weights, (r, 1, 1), &Device::Cpu)?;
        let scores = grad
            .broadcast_mul(&weights)?
            .broadcast_mul(&diff.unsqueeze(0)?)?
            .sum(2)?
            .to_vec2::<f32>()?;
        for (&t, row) in targets.iter().zip(scores) {
            for (acc, v) in rows[t].iter_mut().zip(row) {
                *acc += v;
            }
        }
    }
    let fixed = replay.broadcast_fixed(1)?;
    let f_base = replay
        .log_probs(&baseline.unsqueeze(0)?, &fixed)?
        .pop()
        .unwrap_or_default();
    let delta = rows
        .iter()
        .zip(f_x.iter().zip(&f_base))
        .map(|(row, (fx, fb))| row.iter().sum::<f32>() - (fx - fb))
        .collect();
    Ok(SentenceRows {
        rows,
        delta: Some(delta),
    })
}

/// `n`-point Gauss–Legendre quadrature on `[0, 1]`: `(node, weight)` pairs, weights summing
/// to 1 (NumPy's `leggauss` mapped from `[-1, 1]`, as Captum's `gausslegendre` does).
pub fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // Newton's method on P_n from the usual first guess for the i-th root.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let k = k as f64;
                let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            derivative = n as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / derivative;
            x -= dx;
            if dx.abs() < 1e-15 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * derivative * derivative);
        out.push(((1.0 + x) / 2.0, w / 2.0));
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 32] {
            let q = gauss_legendre(n);
            let total: f64 = q.iter().map(|p| p.1).sum();
            assert!((total - 1.0).abs() < 1e-12, "n={n}: weights sum to {total}");
            // Exact for degree 2n - 1: ∫₀¹ x^(2n-1) dx = 1 / 2n.
            let d = 2 * n - 1;
            let got: f64 = q.iter().map(|(x, w)| w * x.powi(d as i32)).sum();
            assert!((got - 1.0 / (d + 1) as f64).abs() < 1e-10, "n={n}: {got}");
            assert!(q.iter().all(|p| (0.0..=1.0).contains(&p.0)));
        }
    }

    #[test]
    fn rows_normalise_to_absolute_shares() {
        assert_eq!(normalise(&[1.0, -3.0]), vec![0.25, 0.75]);
        assert_eq!(normalise(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn methods_parse_and_print_the_same_names() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        }
        assert!("saliency".parse::<Method>().is_err());
        assert_eq!("pad".parse::<Baseline>().unwrap(), Baseline::Pad);
    }
}

#[cfg(test)]
mod gradient_tests;
