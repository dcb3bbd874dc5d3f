//! The input side of a translation: a text split into sentences (or kept whole) and
//! tokenised, sentence by sentence, into a [`TextSource`].
//!
//! [`Translator::text_source`] finds the sentences with [`crate::decoding::segment`] and
//! tokenises each with the model's source vocabulary, `</s>` appended. Positions in a
//! [`TextSource`] run on over the whole input, so the attention of every sentence lands in
//! one matrix.

use crate::config::EOS_ID;
use crate::decoding::segment;
use crate::decoding::translator::Translator;
use crate::{Error, Result};

/// Whether to split an input into sentences before translating it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Segmentation {
    /// Translate each sentence on its own (the default: the models are trained on sentences).
    #[default]
    Sentences,
    /// Translate the whole input as one sequence.
    Whole,
}

/// One sentence of a tokenised input.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSentence {
    /// The sentence's text as it is in the input.
    pub text: String,
    /// Its piece ids, `</s>` appended.
    pub ids: Vec<u32>,
    /// Its pieces, `</s>` appended.
    pub tokens: Vec<String>,
    /// Position of its first piece in the whole input's pieces.
    pub start: usize,
}

/// An input text, tokenised sentence by sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSource {
    pub sentences: Vec<SourceSentence>,
}

impl TextSource {
    /// An input of one sentence already split into pieces (`ids` ending with `</s>`).
    pub fn one(text: &str, ids: Vec<u32>, tokens: Vec<String>) -> Self {
        TextSource {
            sentences: vec![SourceSentence {
                text: text.trim().to_string(),
                ids,
                tokens,
                start: 0,
            }],
        }
    }

    /// Every piece of the input, sentence after sentence (each ends with `</s>`).
    pub fn tokens(&self) -> Vec<String> {
        self.sentences
            .iter()
            .flat_map(|s| s.tokens.iter().cloned())
            .collect()
    }

    /// The number of source pieces in all.
    pub fn len(&self) -> usize {
        self.sentences.iter().map(|s| s.ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The sentence that holds source position `pos`.
    pub(crate) fn sentence_of(&self, pos: usize) -> Option<usize> {
        self.sentences
            .iter()
            .position(|s| (s.start..s.start + s.ids.len()).contains(&pos))
    }
}

impl Translator {
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

    /// The tokenised sentences of `text` (one when `segmentation` is [`Segmentation::Whole`]
    /// or the text has one sentence). Sentences the tokenizer sees nothing in are dropped.
    pub fn text_source(&self, text: &str, segmentation: Segmentation) -> Result<TextSource> {
        let parts: Vec<&str> = match segmentation {
            Segmentation::Whole => vec![text],
            Segmentation::Sentences => {
                let found = segment::sentences(text);
                if found.len() <= 1 {
                    vec![text]
                } else {
                    found.iter().map(|s| s.text(text)).collect()
                }
            }
        };
        let mut sentences = Vec::with_capacity(parts.len());
        let mut start = 0;
        for part in parts {
            match self.source(part) {
                Ok((ids, tokens)) => {
                    let n = ids.len();
                    sentences.push(SourceSentence {
                        text: part.trim().to_string(),
                        ids,
                        tokens,
                        start,
                    });
                    start += n;
                }
                Err(Error::EmptyInput) => {}
                Err(e) => return Err(e),
            }
        }
        if sentences.is_empty() {
            return Err(Error::EmptyInput);
        }
        Ok(TextSource { sentences })
    }
}
