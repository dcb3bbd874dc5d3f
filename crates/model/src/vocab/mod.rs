//! Subword vocabularies: BPE trained with Hugging Face `tokenizers`, SentencePiece-style
//! pieces; or, for an imported model ([`crate::import`]), a SentencePiece model ([`spm`])
//! whose pieces are mapped to the model's own ids through a piece table.

pub mod spm;

use std::collections::HashMap;
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
    /// The model's ids of the tokenizer's pieces, when they are not the tokenizer's own
    /// (an imported model's joint vocabulary).
    table: Option<PieceTable>,
}

/// The pieces of a model's vocabulary in id order, and the way back.
#[derive(Clone)]
struct PieceTable {
    pieces: Vec<String>,
    ids: HashMap<String, u32>,
}

impl PieceTable {
    fn new(pieces: Vec<String>) -> Self {
        let ids = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        PieceTable { pieces, ids }
    }
}

/// The key of a mapped vocabulary's file: `{"pieces": [...], "tokenizer": {...}}`.
const PIECES_KEY: &str = "pieces";
const TOKENIZER_KEY: &str = "tokenizer";

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
        let vocab = Vocab {
            tokenizer,
            table: None,
        };
        vocab.check_specials()?;
        Ok(vocab)
    }

    /// A vocabulary that segments with `tokenizer` and numbers its pieces by their place
    /// in `pieces` (the model's vocabulary, which starts with [`SPECIALS`]); a piece not in
    /// `pieces` is `<unk>`.
    pub fn mapped(tokenizer: Tokenizer, pieces: Vec<String>) -> Result<Self> {
        let vocab = Vocab {
            tokenizer,
            table: Some(PieceTable::new(pieces)),
        };
        vocab.check_specials()?;
        Ok(vocab)
    }

    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::bad_file(path, "the tokenizer file is missing"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e))?;
        let vocab = match (doc.get(PIECES_KEY), doc.get(TOKENIZER_KEY)) {
            (Some(pieces), Some(tok)) => {
                let pieces: Vec<String> =
                    serde_json::from_value(pieces.clone()).map_err(|e| Error::bad_file(path, e))?;
                let tokenizer: Tokenizer = tok
                    .to_string()
                    .parse()
                    .map_err(|e| Error::bad_file(path, e))?;
                Vocab {
                    tokenizer,
                    table: Some(PieceTable::new(pieces)),
                }
            }
            _ => Vocab {
                tokenizer: text.parse().map_err(|e| Error::bad_file(path, e))?,
                table: None,
            },
        };
        vocab
            .check_specials()
            .map_err(|e| Error::bad_file(path, e))?;
        Ok(vocab)
    }

    /// Writes the tokenizer file crash-safely ([`crate::files`]); a mapped vocabulary
    /// writes its piece table beside the tokenizer.
    pub fn save(&self, path: &Path) -> Result<()> {
        match &self.table {
            None => crate::files::write_with(path, |tmp| {
                self.tokenizer
                    .save(tmp, false)
                    .map_err(|e| Error::bad_file(path, e))
            }),
            Some(table) => {
                let tok: serde_json::Value = serde_json::from_str(
                    &self
                        .tokenizer
                        .to_string(false)
                        .map_err(|e| Error::Tokenizer(e.to_string()))?,
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
                let doc = serde_json::json!({ PIECES_KEY: table.pieces, TOKENIZER_KEY: tok });
                crate::files::write(path, doc.to_string())
            }
        }
    }

    fn check_specials(&self) -> Result<()> {
        for (id, s) in [PAD_ID, BOS_ID, EOS_ID, UNK_ID].into_iter().zip(SPECIALS) {
            let found = match &self.table {
                None => self.tokenizer.token_to_id(s),
                Some(t) => t.ids.get(s).copied(),
            };
            if found != Some(id) {
                return Err(Error::Invalid(format!(
                    "special token {s} must have id {id}"
                )));
            }
        }
        Ok(())
    }

    /// Number of pieces, special tokens included.
    pub fn len(&self) -> usize {
        match &self.table {
            None => self.tokenizer.get_vocab_size(true),
            Some(t) => t.pieces.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Piece ids of `text`, without any special token. With a piece table, a leading
    /// language code `>>xx<<` that the table holds is its own first piece (as Marian's
    /// multilingual models expect).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let Some(table) = &self.table else {
            let enc = self.tokenizer.encode(text, false).map_err(tok_err)?;
            return Ok(enc.get_ids().to_vec());
        };
        let mut ids = Vec::new();
        let mut rest = text;
        if let Some(code) = language_code(text)
            && let Some(&id) = table.ids.get(code)
        {
            ids.push(id);
            rest = &text[code.len()..];
        }
        // By the tokenizer's piece, not the token's text: a character the tokenizer does
        // not know is its unknown piece, even where the table holds that text.
        let enc = self.tokenizer.encode(rest, false).map_err(tok_err)?;
        ids.extend(enc.get_ids().iter().map(|&i| {
            self.tokenizer
                .id_to_token(i)
                .and_then(|piece| table.ids.get(&piece).copied())
                .unwrap_or(UNK_ID)
        }));
        Ok(ids)
    }

    /// The piece of an id (`<unk>` for an id outside the vocabulary).
    pub fn piece(&self, id: u32) -> String {
        let piece = match &self.table {
            None => self.tokenizer.id_to_token(id),
            Some(t) => t.pieces.get(id as usize).cloned(),
        };
        piece.unwrap_or_else(|| SPECIALS[UNK_ID as usize].to_string())
    }

    /// Detokenised text of `ids`; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let Some(table) = &self.table else {
            let text = self.tokenizer.decode(ids, true).map_err(tok_err)?;
            return Ok(text.trim().to_string());
        };
        let text: String = ids
            .iter()
            .filter(|&&id| id > UNK_ID)
            .filter_map(|&id| table.pieces.get(id as usize))
            .map(|p| p.as_str())
            .collect();
        Ok(text.replace('\u{2581}', " ").trim().to_string())
    }
}

/// A leading `>>xx<<` language code (Marian's multilingual targets).
fn language_code(text: &str) -> Option<&str> {
    if !text.starts_with(">>") {
        return None;
    }
    text.find("<<").map(|end| &text[..end + 2])
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
