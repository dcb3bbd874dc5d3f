//! Validate once: a translation request checked against a model and its input.
//!
//! [`Translator::plan`] takes a tokenised input ([`TextSource`]) and the [`DecodeOptions`]
//! and checks every range once: the beam width, the candidates, the length limit, the
//! temperature, the interventions. It splits a forced target and a target prefix into the
//! input's sentences (the i-th goes with the i-th input sentence), tokenises them and fixes
//! each sentence's length limit. The result, a [`DecodePlan`], is what
//! [`Translator::decode`] consumes: decoding checks nothing again, and a server rejects a
//! bad request before it streams anything.
//!
//! How the options carry over to the sentences of a segmented input: `max_len` and `beam`
//! apply to each sentence; an intervention applies in the sentence that holds its source
//! position, at its step counted over the whole output (a step that falls outside that
//! sentence's translation is not applied, as a step past the end of a single sentence is
//! not).

use crate::config::EOS_ID;
use crate::decoding::segment;
use crate::decoding::source::TextSource;
use crate::decoding::step::{Intervention, Report};
use crate::decoding::translator::Translator;
pub use crate::decoding::translator::{MAX_OUTPUT, default_max_len};
use crate::networks::attention::{Distribution, Mode};
use crate::{Error, Result};

/// The widest beam accepted.
pub const MAX_BEAM: usize = 16;
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
    pub(crate) fn report(&self) -> Report {
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

/// One sentence's targets, tokenised: what its decoding is held to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SentenceTargets {
    /// Forced decoding: these ids, `</s>` included.
    pub forced: Option<Vec<u32>>,
    /// Forced first ids, then free decoding.
    pub prefix: Vec<u32>,
    /// The most steps.
    pub max_len: usize,
    /// The last of them is `</s>` unless the translation ended before (an imported model
    /// whose authors force it, [`crate::config::Generation`]).
    pub eos_last: bool,
}

/// A translation request checked against a model and its input; see the module
/// documentation. Built by [`Translator::plan`], consumed by [`Translator::decode`].
#[derive(Clone, Debug)]
pub struct DecodePlan {
    source: TextSource,
    options: DecodeOptions,
    /// The options' distribution with the model's own mode filled in.
    distribution: Distribution,
    /// One per source sentence.
    targets: Vec<SentenceTargets>,
}

impl DecodePlan {
    /// The input.
    pub fn source(&self) -> &TextSource {
        &self.source
    }

    /// The options as asked (the attention mode may be `None`: see [`Self::mode`]).
    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    /// The attention distribution decoding uses.
    pub fn mode(&self) -> Mode {
        self.distribution.mode
    }

    /// A fresh distribution, its generator seeded as asked (each sentence starts afresh).
    pub(crate) fn distribution(&self) -> Distribution {
        self.distribution.clone()
    }

    /// The most steps decoding can take: every sentence's limit, added up.
    pub fn max_steps(&self) -> usize {
        self.targets.iter().map(|t| t.max_len).sum()
    }

    /// What sentence `k` is held to.
    pub(crate) fn targets(&self, k: usize) -> &SentenceTargets {
        &self.targets[k]
    }

    /// The interventions that fall in sentence `k`, whose output starts at step `offset`,
    /// within its limit of steps, in the sentence's own coordinates.
    pub(crate) fn interventions(&self, k: usize, offset: usize) -> Vec<Intervention> {
        let (Some(sentence), Some(targets)) = (self.source.sentences.get(k), self.targets.get(k))
        else {
            return Vec::new();
        };
        self.options
            .interventions
            .iter()
            .filter(|iv| self.source.sentence_of(iv.source) == Some(k))
            .filter_map(|iv| {
                let step = iv.step.checked_sub(offset)?;
                (step < targets.max_len).then_some(Intervention {
                    step,
                    source: iv.source - sentence.start,
                })
            })
            .collect()
    }
}

impl Translator {
    /// Checks `options` against `source` once and tokenises what they force; see the module
    /// documentation. Every error here is the caller's (`Error::Invalid`).
    pub fn plan(&self, source: TextSource, options: DecodeOptions) -> Result<DecodePlan> {
        if source.is_empty() {
            return Err(Error::EmptyInput);
        }
        check_ranges(&options)?;
        let mode = options.attention.unwrap_or_else(|| self.default_mode());
        let distribution = Distribution::new(mode, options.temperature, options.seed)?;
        let n = source.sentences.len();
        let forced = per_sentence(options.force_target.as_deref(), "force_target", n, true)?;
        let prefix = per_sentence(options.target_prefix.as_deref(), "target_prefix", n, false)?;
        let targets = source
            .sentences
            .iter()
            .zip(forced.iter().zip(&prefix))
            .map(|(s, (f, p))| {
                self.sentence_targets(s.ids.len(), f.as_deref(), p.as_deref(), &options)
            })
            .collect::<Result<Vec<_>>>()?;
        // A single sentence's steps are known to end at its limit; a segmented input's
        // steps run on over the whole output, and each sentence's length is known only
        // once it is decoded.
        let limit = (n == 1).then(|| targets[0].max_len);
        check_interventions(&options.interventions, source.len(), limit)?;
        Ok(DecodePlan {
            source,
            options,
            distribution,
            targets,
        })
    }

    /// The forced ids, prefix ids and length limit of a sentence of `src_len` pieces.
    fn sentence_targets(
        &self,
        src_len: usize,
        forced: Option<&str>,
        prefix: Option<&str>,
        opts: &DecodeOptions,
    ) -> Result<SentenceTargets> {
        let forced = match forced {
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
        let prefix = match prefix {
            Some(p) => self.tgt.encode(p)?,
            None => Vec::new(),
        };
        let max_len = match &forced {
            Some(f) => f.len(),
            None => opts
                .max_len
                .unwrap_or_else(|| self.max_len_for(src_len))
                .max(prefix.len() + 1),
        };
        if max_len > MAX_OUTPUT {
            return Err(Error::Invalid(format!(
                "target_prefix has {} pieces; the limit is {}",
                prefix.len(),
                MAX_OUTPUT - 1
            )));
        }
        Ok(SentenceTargets {
            eos_last: self.forced_eos() && forced.is_none(),
            forced,
            prefix,
            max_len,
        })
    }
}

/// The beam width, the candidates and the length limit against their ranges.
fn check_ranges(opts: &DecodeOptions) -> Result<()> {
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
    Ok(())
}

/// A target-side text for each of `n` input sentences: the whole text for one sentence;
/// otherwise split the way the input is, at most one part per input sentence, and
/// `exactly` one each (a forced target) or the first ones (a prefix).
fn per_sentence(
    text: Option<&str>,
    what: &str,
    n: usize,
    exactly: bool,
) -> Result<Vec<Option<String>>> {
    let Some(text) = text.filter(|_| n > 1) else {
        return Ok(vec![text.map(str::to_string); n]);
    };
    let parts: Vec<String> = segment::sentences(text)
        .iter()
        .map(|s| s.text(text).to_string())
        .collect();
    if parts.len() > n {
        return Err(Error::Invalid(format!(
            "{what} has {} sentences but the text has {n}: give at most one per input sentence, or turn segmentation off",
            parts.len()
        )));
    }
    if exactly && parts.len() != n {
        return Err(Error::Invalid(format!(
            "{what} has {} sentences but the text has {n}: give one translation per sentence, or turn segmentation off",
            parts.len()
        )));
    }
    let mut parts: Vec<Option<String>> = parts.into_iter().map(Some).collect();
    parts.resize(n, None);
    Ok(parts)
}

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
