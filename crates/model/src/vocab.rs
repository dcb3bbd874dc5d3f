//! Subword vocabularies: BPE trained with Hugging Face `tokenizers`, SentencePiece-style pieces.

use std::path::Path;

use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::config::{BOS_ID, EOS_ID, PAD_ID, UNK_ID};
use crate::{Error, Result};

/// The special tokens, in id order: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3.
pub const SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];

/// One punctuation mark or symbol, with the word-start marker before it if any.
const PUNCTUATION: &str = "\u{2581}?[^\\w\\s\u{2581}]";

/// A subword vocabulary for one language.
#[derive(Clone)]
pub struct Vocab {
    tokenizer: Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Vocab {
    /// Trains a BPE vocabulary of `size` pieces (special tokens included) on `sentences`.
    ///
    /// Text is NFKC-normalised (so no-break spaces become spaces), split on whitespace and
    /// punctuation, and a word-initial piece starts with `▁`. A punctuation mark or symbol is
    /// its own pre-token together with the `▁` before it (French `froid ?` gives `▁froid`,
    /// `▁?`), so no piece is a lone `▁`.
    pub fn train<'a>(sentences: impl Iterator<Item = &'a str> + Send, size: usize) -> Result<Self> {
        let model = BPE::builder()
            .unk_token("<unk>".into())
            .build()
            .map_err(tok_err)?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_normalizer(Some(NFKC)).map_err(tok_err)?;
        let pre = Sequence::new(vec![
            Metaspace::new('\u{2581}', PrependScheme::Always, true).into(),
            Split::new(
                SplitPattern::Regex(PUNCTUATION.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err)?
            .into(),
        ]);
        tokenizer.with_pre_tokenizer(Some(pre));
        tokenizer.with_decoder(Some(MetaspaceDecoder::new(
            '\u{2581}',
            PrependScheme::Always,
            true,
        )));
        let specials = SPECIALS
            .iter()
            .map(|s| AddedToken::from(*s, true))
            .collect();
        let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials)
            .build()
            .into();
        tokenizer.train(&mut trainer, sentences).map_err(tok_err)?;
        let vocab = Vocab { tokenizer };
        vocab.check_specials()?;
        Ok(vocab)
    }

    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::bad_file(path, "the tokenizer file is missing"));
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| Error::bad_file(path, e))?;
        let vocab = Vocab { tokenizer };
        vocab
            .check_specials()
            .map_err(|e| Error::bad_file(path, e))?;
        Ok(vocab)
    }

    /// Writes the tokenizer file crash-safely ([`crate::files`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_with(path, |tmp| {
            self.tokenizer
                .save(tmp, false)
                .map_err(|e| Error::bad_file(path, e))
        })
    }

    fn check_specials(&self) -> Result<()> {
        for (id, s) in [PAD_ID, BOS_ID, EOS_ID, UNK_ID].into_iter().zip(SPECIALS) {
            if self.tokenizer.token_to_id(s) != Some(id) {
                return Err(Error::Invalid(format!(
                    "special token {s} must have id {id}"
                )));
            }
        }
        Ok(())
    }

    /// Number of pieces, special tokens included.
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Piece ids of `text`, without any special token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// The piece of an id (`<unk>` for an id outside the vocabulary).
    pub fn piece(&self, id: u32) -> String {
        self.tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| SPECIALS[UNK_ID as usize].to_string())
    }

    /// Detokenised text of `ids`; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self.tokenizer.decode(ids, true).map_err(tok_err)?;
        Ok(text.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_encodes_and_round_trips() {
        let corpus = [
            "I am cold.",
            "I am hot.",
            "You are cold!",
            "We are here.",
            "Is it cold?",
            "Is it cold ?",
            "\"Cold\" !",
            "cold - hot ?!",
        ];
        let v = Vocab::train(corpus.iter().copied().cycle().take(50), 60).unwrap();
        let ids = v.encode("I am cold.").unwrap();
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|&i| i > UNK_ID));
        assert!(v.piece(ids[0]).starts_with('\u{2581}'));
        assert_eq!(v.decode(&ids).unwrap(), "I am cold.");
        // No-break spaces (as in French "froid !") are normalised to plain spaces.
        let nb = v.encode("cold\u{202f}!").unwrap();
        assert_eq!(v.decode(&nb).unwrap(), "cold !");
        // Punctuation after a space keeps its `▁`: no piece is a bare `▁`.
        for text in ["Is it cold ?", "\"Cold\" !", "cold - hot ?!"] {
            let ids = v.encode(text).unwrap();
            let pieces: Vec<String> = ids.iter().map(|&i| v.piece(i)).collect();
            assert!(
                !pieces.iter().any(|p| p == "\u{2581}"),
                "{text}: {pieces:?}"
            );
            assert_eq!(v.decode(&ids).unwrap(), text);
        }
        let q: Vec<String> = v
            .encode("cold ?")
            .unwrap()
            .iter()
            .map(|&i| v.piece(i))
            .collect();
        assert_eq!(q.last().map(String::as_str), Some("\u{2581}?"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        v.save(&p).unwrap();
        assert_eq!(Vocab::load(&p).unwrap().encode("I am cold.").unwrap(), ids);
    }
}
