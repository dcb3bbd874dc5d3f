//! Loading a trained model and decoding with it, one callback per emitted token.
//!
//! [`DecodeOptions`] choose the attention distribution ([`Mode`] and temperature), greedy
//! or beam search, forced decoding of a given target, a forced target prefix, and
//! interventions that force the attention of one step onto one source position. Every
//! [`DecodeStep`] carries the attention the decoder actually used, and for a Transformer
//! every layer's and head's cross- and self-attention.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::config::{EOS_ID, ModelConfig};
use crate::decoding::beam;
use crate::decoding::step::{
    DecodeStep, Hypothesis, Intervention, Report, SentenceSpan, StepContext, make_step,
};
use crate::networks::attention::{Distribution, Mode};
use crate::networks::{EncoderDecoder, Network};
use crate::vocab::Vocab;
use crate::with_network;
use crate::{Error, Result};

/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The widest beam accepted.
pub const MAX_BEAM: usize = 16;
/// The longest output accepted, in pieces.
pub const MAX_OUTPUT: usize = 256;
/// The most candidates a step reports.
pub const MAX_TOP_K: usize = 20;

/// How to decode. `Default` is the model's own attention, greedy, no forcing.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// The attention distribution; `None` uses the model's own (`hard` for a model trained
    /// with hard attention, `soft` otherwise).
    pub attention: Option<Mode>,
    /// Divides the scores before the distribution (`soft`, `sampled`, `sparsemax`).
    pub temperature: f32,
    /// Seed of the generator used by `sampled` attention.
    pub seed: u64,
    /// Beam width; 1 is greedy decoding.
    pub beam: usize,
    /// Longest output in pieces; by default `min(2 S + 10, 256)` for `S` source pieces.
    pub max_len: Option<usize>,
    /// Forced decoding: score this target sentence instead of choosing tokens.
    pub force_target: Option<String>,
    /// Force these first target tokens, then decode freely.
    pub target_prefix: Option<String>,
    pub interventions: Vec<Intervention>,
    /// Each step reports its `top_k` most likely tokens (0 to [`MAX_TOP_K`]; default 0).
    pub top_k: usize,
    /// Each step reports its attention scores before the distribution.
    pub scores: bool,
}

impl DecodeOptions {
    fn report(&self) -> Report {
        Report {
            top_k: self.top_k,
            scores: self.scores,
        }
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            attention: None,
            temperature: 1.0,
            seed: 0,
            beam: 1,
            max_len: None,
            force_target: None,
            target_prefix: None,
            interventions: Vec::new(),
            top_k: 0,
            scores: false,
        }
    }
}

/// A whole translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// Source pieces, ending with `</s>`.
    pub source_tokens: Vec<String>,
    /// Emitted pieces, ending with `</s>` unless the length limit or the caller stopped it.
    pub target_tokens: Vec<String>,
    pub translation: String,
    /// One row per target piece.
    pub attention: Vec<Vec<f32>>,
    /// Every step in full (log probabilities, heads).
    pub steps: Vec<DecodeStep>,
    /// Sum of the emitted tokens' log probabilities.
    pub log_prob: f32,
    /// The attention distribution used.
    pub mode: Mode,
    /// `[layer][head][query][key]` encoder self-attention (Transformer only).
    pub encoder_attention: Option<EncoderAttention>,
    /// With beam search, every final hypothesis, best first (the first is this translation).
    pub hypotheses: Vec<Hypothesis>,
    /// True when the callback asked to stop before the end of the sentence.
    pub stopped: bool,
    /// The input's sentences, each with its source positions and target steps: one span
    /// over everything unless the input was segmented into several ([`crate::decoding::sentences`]).
    pub sentences: Vec<SentenceSpan>,
}

/// A loaded model with its vocabularies, ready to translate.
pub struct Translator {
    config: ModelConfig,
    network: Network,
    src: Vocab,
    tgt: Vocab,
    device: Device,
    parameters: usize,
}

impl Translator {
    /// Loads `config.json`, both tokenizers and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::load(&dir.join(CONFIG_FILE))?;
        let src = Vocab::load(&dir.join(&config.source_tokenizer))?;
        let tgt = Vocab::load(&dir.join(&config.target_tokenizer))?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(Error::bad_file(&weights, "the weights file is missing"));
        }
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(&weights, &device)
            .map_err(|e| Error::bad_file(&weights, e))?;
        let parameters = tensors.values().map(|t| t.elem_count()).sum();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let network = Network::new(&config, vb).map_err(|e| Error::bad_file(&weights, e))?;
        Self::from_parts(config, network, src, tgt, parameters)
    }

    /// A translator from parts already in memory (training, tests).
    pub fn from_parts(
        config: ModelConfig,
        network: Network,
        src: Vocab,
        tgt: Vocab,
        parameters: usize,
    ) -> Result<Self> {
        if src.len() != config.src_vocab_size || tgt.len() != config.tgt_vocab_size {
            return Err(Error::Invalid(format!(
                "tokenizer sizes {}/{} do not match the config's {}/{}",
                src.len(),
                tgt.len(),
                config.src_vocab_size,
                config.tgt_vocab_size
            )));
        }
        Ok(Translator {
            config,
            network,
            src,
            tgt,
            device: Device::Cpu,
            parameters,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn parameters(&self) -> usize {
        self.parameters
    }

    pub fn target_vocab(&self) -> &Vocab {
        &self.tgt
    }

    pub fn source_vocab(&self) -> &Vocab {
        &self.src
    }

    /// The attention the model was trained with: `hard` or `soft`.
    pub fn default_mode(&self) -> Mode {
        match self.config.attention_training() {
            crate::config::AttentionTraining::Hard => Mode::Hard,
            crate::config::AttentionTraining::Soft => Mode::Soft,
        }
    }

    /// Source ids and pieces of `text`, `</s>` appended.
    pub fn source(&self, text: &str) -> Result<(Vec<u32>, Vec<String>)> {
        if text.trim().is_empty() {
            return Err(Error::EmptyInput);
        }
        let mut ids = self.src.encode(text)?;
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        ids.push(EOS_ID);
        let pieces = ids.iter().map(|&i| self.src.piece(i)).collect();
        Ok((ids, pieces))
    }

    /// The default length limit for a source of `src_len` pieces.
    pub fn default_max_len(src_len: usize) -> usize {
        (2 * src_len + 10).min(MAX_OUTPUT)
    }

    /// Decodes one sentence; `on_step` sees every step as it is made (with beam search, the
    /// best hypothesis's steps once the search ends) and may stop decoding by returning
    /// `ControlFlow::Break`.
    pub fn translate(
        &self,
        text: &str,
        opts: &DecodeOptions,
        on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        let (ids, source_tokens) = self.source(text)?;
        let mut t = self.translate_source(&ids, source_tokens, opts, on_step)?;
        if let Some(span) = t.sentences.first_mut() {
            span.text = text.trim().to_string();
        }
        Ok(t)
    }

    /// Checks options against a source of `src_len` pieces (so a server can reject a bad
    /// request before it streams anything).
    pub fn check_options(&self, src_len: usize, opts: &DecodeOptions) -> Result<()> {
        self.plan(src_len, opts)?;
        Distribution::new(Mode::Soft, opts.temperature, 0)?;
        Ok(())
    }

    /// Checks options against a source of `src_len` pieces; returns the forced target ids
    /// (with `</s>`), the prefix ids and the length limit.
    pub(crate) fn plan(
        &self,
        src_len: usize,
        opts: &DecodeOptions,
    ) -> Result<(Option<Vec<u32>>, Vec<u32>, usize)> {
        if opts.beam == 0 || opts.beam > MAX_BEAM {
            return Err(Error::Invalid(format!(
                "beam width {} is out of range; use 1 (greedy) to {MAX_BEAM}",
                opts.beam
            )));
        }
        if opts.top_k > MAX_TOP_K {
            return Err(Error::Invalid(format!(
                "top_k {} is out of range; use 0 (no candidates) to {MAX_TOP_K}",
                opts.top_k
            )));
        }
        if let Some(m) = opts.max_len
            && (m == 0 || m > MAX_OUTPUT)
        {
            return Err(Error::Invalid(format!(
                "max_len {m} is out of range; use 1 to {MAX_OUTPUT}"
            )));
        }
        let forced = match &opts.force_target {
            Some(t) => {
                if opts.beam > 1 || opts.target_prefix.is_some() {
                    return Err(Error::Invalid(
                        "force_target scores one given translation: leave beam at 1 and target_prefix empty".into(),
                    ));
                }
                let mut ids = self.tgt.encode(t)?;
                if ids.is_empty() {
                    return Err(Error::Invalid("force_target is empty".into()));
                }
                ids.push(EOS_ID);
                if ids.len() > MAX_OUTPUT {
                    return Err(Error::Invalid(format!(
                        "force_target has {} pieces; the limit is {MAX_OUTPUT}",
                        ids.len()
                    )));
                }
                Some(ids)
            }
            None => None,
        };
        let prefix = match &opts.target_prefix {
            Some(p) => self.tgt.encode(p)?,
            None => Vec::new(),
        };
        let max_len = match &forced {
            Some(f) => f.len(),
            None => opts
                .max_len
                .unwrap_or_else(|| Self::default_max_len(src_len))
                .max(prefix.len() + 1),
        };
        if max_len > MAX_OUTPUT {
            return Err(Error::Invalid(format!(
                "target_prefix has {} pieces; the limit is {}",
                prefix.len(),
                MAX_OUTPUT - 1
            )));
        }
        check_interventions(&opts.interventions, src_len, Some(max_len))?;
        Ok((forced, prefix, max_len))
    }

    /// [`Self::translate`] from a source already split by [`Self::source`].
    pub fn translate_source(
        &self,
        ids: &[u32],
        source_tokens: Vec<String>,
        opts: &DecodeOptions,
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        let (forced, prefix, max_len) = self.plan(ids.len(), opts)?;
        let mode = opts.attention.unwrap_or_else(|| self.default_mode());
        let mut dist = Distribution::new(mode, opts.temperature, opts.seed)?;
        let plan = Plan {
            forced: forced.as_deref(),
            prefix: &prefix,
            max_len,
        };
        let Decoded {
            steps,
            stopped,
            hypotheses,
            encoder_attention,
        } = with_network!(&self.network, |m| {
            self.decode_with(m, ids, opts, &plan, &mut dist, &mut on_step)
        })?;
        let out_ids: Vec<u32> = steps
            .iter()
            .map(|s| s.token_id)
            .filter(|&t| t != EOS_ID)
            .collect();
        let translation = self.tgt.decode(&out_ids)?;
        let sentences = vec![SentenceSpan {
            text: String::new(),
            source: 0..source_tokens.len(),
            target: 0..steps.len(),
            translation: translation.clone(),
        }];
        Ok(Translation {
            source_tokens,
            target_tokens: steps.iter().map(|s| s.token.clone()).collect(),
            translation,
            sentences,
            attention: steps.iter().map(|s| s.attention.clone()).collect(),
            log_prob: steps.iter().map(|s| s.log_prob).sum(),
            steps,
            mode,
            encoder_attention,
            hypotheses,
            stopped,
        })
    }

    /// Beam search with any width, 1 included (which [`Self::translate`] decodes greedily
    /// instead): every final hypothesis, best first.
    pub fn beam_search(&self, text: &str, opts: &DecodeOptions) -> Result<Vec<Hypothesis>> {
        let (ids, _) = self.source(text)?;
        let (forced, prefix, max_len) = self.plan(ids.len(), opts)?;
        if forced.is_some() {
            return Err(Error::Invalid(
                "beam search does not take force_target".into(),
            ));
        }
        let mode = opts.attention.unwrap_or_else(|| self.default_mode());
        let mut dist = Distribution::new(mode, opts.temperature, opts.seed)?;
        with_network!(&self.network, |m| {
            let memory = self.encode_one(m, &ids)?;
            let ctx = StepContext {
                network: m,
                memory: &memory,
                interventions: &opts.interventions,
                report: opts.report(),
            };
            beam::search(&self.tgt, &ctx, &mut dist, &prefix, max_len, opts.beam)
        })
    }

    /// Encodes one source sentence.
    fn encode_one<N: EncoderDecoder>(&self, net: &N, ids: &[u32]) -> Result<N::Memory> {
        let src = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &self.device)?;
        let mask = Tensor::ones((1, ids.len()), DType::F32, &self.device)?;
        net.encode(&src, &mask)
    }

    /// One sentence with the concrete network `net`.
    fn decode_with<N: EncoderDecoder>(
        &self,
        net: &N,
        ids: &[u32],
        opts: &DecodeOptions,
        plan: &Plan,
        dist: &mut Distribution,
        on_step: &mut dyn FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Decoded> {
        let memory = self.encode_one(net, ids)?;
        let encoder_attention = match N::encoder_attention(&memory) {
            Some(t) => Some(nested4(&t.i(0)?)?),
            None => None,
        };
        let ctx = StepContext {
            network: net,
            memory: &memory,
            interventions: &opts.interventions,
            report: opts.report(),
        };
        if opts.beam > 1 {
            let hyps = beam::search(&self.tgt, &ctx, dist, plan.prefix, plan.max_len, opts.beam)?;
            let mut stopped = false;
            let best = hyps.first().map(|h| h.steps.clone()).unwrap_or_default();
            for s in &best {
                if on_step(s).is_break() {
                    stopped = true;
                    break;
                }
            }
            return Ok(Decoded {
                steps: best,
                stopped,
                hypotheses: hyps,
                encoder_attention,
            });
        }
        let (steps, stopped) =
            self.single_path(&ctx, dist, plan.forced, plan.prefix, plan.max_len, on_step)?;
        Ok(Decoded {
            steps,
            stopped,
            hypotheses: Vec::new(),
            encoder_attention,
        })
    }

    /// Greedy, forced or prefixed decoding of one hypothesis.
    fn single_path<N: EncoderDecoder>(
        &self,
        ctx: &StepContext<N>,
        dist: &mut Distribution,
        forced: Option<&[u32]>,
        prefix: &[u32],
        max_len: usize,
        on_step: &mut dyn FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<(Vec<DecodeStep>, bool)> {
        let mut prev = Tensor::new(&[crate::config::BOS_ID], &self.device)?;
        let mut state = ctx.network.initial_state(ctx.memory)?;
        let mut steps = Vec::new();
        for index in 0..max_len {
            let out = ctx.step(&state, &prev, index, dist)?;
            let log_probs = candle_nn::ops::log_softmax(&out.net.logits, D::Minus1)?.i(0)?;
            let given = match forced {
                Some(f) => Some(f[index]),
                None => prefix.get(index).copied(),
            };
            let token_id = match given {
                Some(t) => t,
                None => log_probs.argmax(D::Minus1)?.to_scalar::<u32>()?,
            };
            let log_prob = log_probs.i(token_id as usize)?.to_scalar::<f32>()?;
            let mut step = make_step(
                &self.tgt,
                &out.net,
                0,
                index,
                token_id,
                log_prob,
                given.is_some(),
                out.intervened,
            )?;
            if ctx.report != Report::default() {
                let row = if ctx.report.top_k > 0 {
                    log_probs.to_vec1::<f32>()?
                } else {
                    Vec::new()
                };
                (step.candidates, step.scores) = ctx.reported(&self.tgt, &out, &row, 0)?;
            }
            let flow = on_step(&step);
            steps.push(step);
            if token_id == EOS_ID {
                return Ok((steps, false));
            }
            if flow.is_break() {
                return Ok((steps, true));
            }
            prev = Tensor::new(&[token_id], &self.device)?;
            state = out.net.state;
        }
        Ok((steps, false))
    }
}

/// One decoded sentence: its steps, whether the callback stopped it, the beam's hypotheses
/// (beam search only) and the encoder self-attention.
struct Decoded {
    steps: Vec<DecodeStep>,
    stopped: bool,
    hypotheses: Vec<Hypothesis>,
    encoder_attention: Option<EncoderAttention>,
}

/// What a decoding of one sentence is held to: a forced target, a prefix, a length limit.
struct Plan<'a> {
    forced: Option<&'a [u32]>,
    prefix: &'a [u32],
    max_len: usize,
}

/// Encoder self-attention of one sentence, `[layer][head][query][key]`.
pub type EncoderAttention = Vec<Vec<Vec<Vec<f32>>>>;

/// Checks interventions against a source of `src_len` pieces and, when it is known, a
/// length limit of `max_len` steps: each names a source position, and one per step.
pub(crate) fn check_interventions(
    interventions: &[Intervention],
    src_len: usize,
    max_len: Option<usize>,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for iv in interventions {
        if iv.source >= src_len {
            return Err(Error::Invalid(format!(
                "intervention at step {} names source position {}, but the source has {src_len} pieces (0 to {})",
                iv.step,
                iv.source,
                src_len.saturating_sub(1)
            )));
        }
        if let Some(max_len) = max_len
            && iv.step >= max_len
        {
            return Err(Error::Invalid(format!(
                "intervention at step {} is past the last step ({})",
                iv.step,
                max_len - 1
            )));
        }
        if !seen.insert(iv.step) {
            return Err(Error::Invalid(format!(
                "two interventions at step {}; give one per step",
                iv.step
            )));
        }
    }
    Ok(())
}

/// `(L, heads, S, S)` to nested vectors.
fn nested4(t: &Tensor) -> Result<Vec<Vec<Vec<Vec<f32>>>>> {
    let mut out = Vec::new();
    for l in 0..t.dim(0)? {
        out.push(t.i(l)?.to_vec3::<f32>()?);
    }
    Ok(out)
}
