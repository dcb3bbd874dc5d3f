//! Loading a trained model and decoding with it, one callback per emitted token.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::bahdanau::Seq2Seq;
use crate::config::{EOS_ID, ModelConfig, PAD_ID};
use crate::vocab::Vocab;
use crate::{Error, Result};

/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";

/// One decoding step, as emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeStep {
    /// 0-based target position.
    pub index: usize,
    pub token_id: u32,
    /// The emitted piece (`</s>` at the end).
    pub token: String,
    /// Attention over the source pieces used at this step; sums to 1.
    pub attention: Vec<f32>,
}

/// A whole greedy translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// Source pieces, ending with `</s>`.
    pub source_tokens: Vec<String>,
    /// Emitted pieces, ending with `</s>` unless the length limit or the caller stopped it.
    pub target_tokens: Vec<String>,
    pub translation: String,
    /// One row per target piece.
    pub attention: Vec<Vec<f32>>,
    /// True when the callback asked to stop before the end of the sentence.
    pub stopped: bool,
}

/// A loaded model with its vocabularies, ready to translate.
pub struct Translator {
    config: ModelConfig,
    model: Seq2Seq,
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
        let model = Seq2Seq::new(&config, vb).map_err(|e| Error::bad_file(&weights, e))?;
        Self::from_parts(config, model, src, tgt, parameters)
    }

    /// A translator from parts already in memory (training, tests).
    pub fn from_parts(
        config: ModelConfig,
        model: Seq2Seq,
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
            model,
            src,
            tgt,
            device: Device::Cpu,
            parameters,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn parameters(&self) -> usize {
        self.parameters
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
        (2 * src_len + 10).min(256)
    }

    /// Greedy decoding of one sentence; `on_step` sees every step as it is made and may stop
    /// decoding by returning `ControlFlow::Break`.
    pub fn translate(
        &self,
        text: &str,
        max_len: Option<usize>,
        on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        let (ids, source_tokens) = self.source(text)?;
        self.translate_source(&ids, source_tokens, max_len, on_step)
    }

    /// [`Self::translate`] from a source already split by [`Self::source`].
    pub fn translate_source(
        &self,
        ids: &[u32],
        source_tokens: Vec<String>,
        max_len: Option<usize>,
        mut on_step: impl FnMut(&DecodeStep) -> ControlFlow<()>,
    ) -> Result<Translation> {
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        let max_len = max_len.unwrap_or_else(|| Self::default_max_len(ids.len()));
        let src = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &self.device)?;
        let mask = Tensor::ones((1, ids.len()), DType::F32, &self.device)?;
        let enc = self.model.encode(&src, &mask)?;
        let mut prev = self.model.bos(1, &enc)?;
        let mut state = enc.init.clone();
        let (mut out_ids, mut target_tokens, mut attention) = (Vec::new(), Vec::new(), Vec::new());
        let mut stopped = false;
        for index in 0..max_len {
            let step = self.model.step(&enc, &prev, &state)?;
            let token_id = step.logits.argmax(D::Minus1)?.i(0)?.to_scalar::<u32>()?;
            let row = step.attention.i(0)?.to_vec1::<f32>()?;
            let ds = DecodeStep {
                index,
                token_id,
                token: self.tgt.piece(token_id),
                attention: row,
            };
            let flow = on_step(&ds);
            target_tokens.push(ds.token);
            attention.push(ds.attention);
            if token_id == EOS_ID {
                break;
            }
            out_ids.push(token_id);
            if flow.is_break() {
                stopped = true;
                break;
            }
            prev = Tensor::new(&[token_id], &self.device)?;
            state = step.state;
        }
        Ok(Translation {
            source_tokens,
            target_tokens,
            translation: self.tgt.decode(&out_ids)?,
            attention,
            stopped,
        })
    }

    /// Greedy translations of many sentences, decoded together in batches of `batch` (for
    /// evaluation and scripting). Empty lines translate to empty strings.
    pub fn translate_batch(&self, texts: &[String], batch: usize) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch.max(1)) {
            out.extend(self.greedy_chunk(chunk)?);
        }
        Ok(out)
    }

    fn greedy_chunk(&self, texts: &[String]) -> Result<Vec<String>> {
        let mut sources = Vec::with_capacity(texts.len());
        for t in texts {
            sources.push(match self.source(t) {
                Ok((ids, _)) => ids,
                Err(Error::EmptyInput) => vec![EOS_ID],
                Err(e) => return Err(e),
            });
        }
        let b = sources.len();
        let s = sources.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![PAD_ID; b * s];
        let mut mask = vec![0f32; b * s];
        for (i, src) in sources.iter().enumerate() {
            ids[i * s..i * s + src.len()].copy_from_slice(src);
            mask[i * s..i * s + src.len()]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let enc = self.model.encode(
            &Tensor::from_vec(ids, (b, s), &self.device)?,
            &Tensor::from_vec(mask, (b, s), &self.device)?,
        )?;
        let mut prev = self.model.bos(b, &enc)?;
        let mut state = enc.init.clone();
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        // The same per-sentence length limit as `translate`.
        let limits: Vec<usize> = sources
            .iter()
            .map(|s| Self::default_max_len(s.len()))
            .collect();
        for _ in 0..Self::default_max_len(s) {
            let step = self.model.step(&enc, &prev, &state)?;
            let next = step.logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (i, &tok) in next.iter().enumerate() {
                if !done[i] {
                    if tok == EOS_ID {
                        done[i] = true;
                    } else {
                        outs[i].push(tok);
                        done[i] = outs[i].len() >= limits[i];
                    }
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            prev = Tensor::from_vec(next, b, &self.device)?;
            state = step.state;
        }
        outs.iter().map(|o| self.tgt.decode(o)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_nn::VarMap;

    pub(crate) fn tiny(seed: u64) -> (Translator, VarMap) {
        crate::fixtures::tiny_translator(seed).unwrap()
    }

    #[test]
    fn steps_have_one_weight_per_source_token_summing_to_one() {
        let (t, _) = tiny(1);
        let mut seen = Vec::new();
        let out = t
            .translate("I am cold.", Some(7), |s| {
                seen.push(s.clone());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(out.source_tokens.last().map(String::as_str), Some("</s>"));
        assert!(!out.target_tokens.is_empty() && out.target_tokens.len() <= 7);
        assert_eq!(seen.len(), out.target_tokens.len());
        assert_eq!(out.attention.len(), out.target_tokens.len());
        for (i, (step, row)) in seen.iter().zip(&out.attention).enumerate() {
            assert_eq!(step.index, i);
            assert_eq!(&step.attention, row);
            assert_eq!(row.len(), out.source_tokens.len());
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
            assert!(row.iter().all(|w| *w >= 0.0));
        }
    }

    #[test]
    fn greedy_decoding_is_deterministic_and_seeded() {
        let a = tiny(3)
            .0
            .translate("You are here.", Some(10), |_| ControlFlow::Continue(()))
            .unwrap();
        let b = tiny(3)
            .0
            .translate("You are here.", Some(10), |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(a, b);
        let c = tiny(4)
            .0
            .translate("You are here.", Some(10), |_| ControlFlow::Continue(()))
            .unwrap();
        assert_ne!(a.attention, c.attention);
    }

    #[test]
    fn batch_decoding_matches_single_sentence_decoding() {
        let (t, _) = tiny(5);
        let texts: Vec<String> = ["I am cold.", "Is it here?", "We are cold!"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let batch = t.translate_batch(&texts, 8).unwrap();
        for (text, b) in texts.iter().zip(&batch) {
            let single = t
                .translate(text, None, |_| ControlFlow::Continue(()))
                .unwrap();
            assert_eq!(&single.translation, b);
        }
    }

    #[test]
    fn callback_can_stop_decoding_and_empty_input_is_an_error() {
        let (t, _) = tiny(2);
        let out = t
            .translate("I am here.", Some(20), |s| {
                if s.index == 1 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert!(out.target_tokens.len() <= 2);
        assert!(matches!(
            t.translate("   ", None, |_| ControlFlow::Continue(())),
            Err(Error::EmptyInput)
        ));
    }

    #[test]
    fn training_steps_lower_the_loss() {
        use crate::data::{Example, collate};
        let (t, varmap) = tiny(9);
        let ex: Vec<Example> = [
            ("I am cold.", "J'ai froid."),
            ("You are here.", "Tu es ici."),
        ]
        .iter()
        .map(|(s, g)| {
            let (src, _) = t.source(s).unwrap();
            Example {
                src,
                tgt: t.tgt.encode(g).unwrap(),
            }
        })
        .collect();
        let batch = collate(&ex, &[0, 1], &Device::Cpu).unwrap();
        let mut opt = crate::adam::AdamW::new(&varmap, 0.01, 0.0).unwrap();
        let first = crate::train::batch_loss(&t.model, &batch)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        for _ in 0..30 {
            let loss = crate::train::batch_loss(&t.model, &batch).unwrap();
            opt.step(&loss.backward().unwrap(), 1.0).unwrap();
        }
        let last = crate::train::batch_loss(&t.model, &batch)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(last < first * 0.75, "loss {first} -> {last}");
    }
}
