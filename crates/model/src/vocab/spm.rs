//! SentencePiece models (`.spm` files, as Marian folders carry them), read in Rust without
//! the C++ library, and turned into a Hugging Face `tokenizers` unigram tokenizer that
//! segments text as SentencePiece does.
//!
//! An `.spm` file is a protobuf `ModelProto`: its pieces (text, score, type), the trainer's
//! settings (model type, byte fallback) and the normaliser's (its precompiled character map,
//! whether to add a word-start marker, whether to squeeze whitespace). Only what
//! segmentation needs is read; a model that is not a unigram model is refused by name.

use std::path::Path;

use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{NormalizerWrapper, Tokenizer};

use crate::{Error, Result};

/// What a piece is to SentencePiece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

/// One piece of a SentencePiece model.
#[derive(Clone, Debug, PartialEq)]
pub struct SpmPiece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The parts of a SentencePiece model that segmentation needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SpmModel {
    pub pieces: Vec<SpmPiece>,
    /// `TrainerSpec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field's value.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| Error::Invalid("truncated varint".into()))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Invalid("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::Invalid("field runs past the end".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field number and value, `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Bytes(self.take(8)?),
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| Error::Invalid("length out of range".into()))?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(Error::Invalid(format!("unsupported wire type {w}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn piece(bytes: &[u8]) -> Result<SpmPiece> {
    let mut r = Reader::new(bytes);
    let mut out = SpmPiece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => {
                out.piece = String::from_utf8(b.to_vec())
                    .map_err(|_| Error::Invalid("a piece is not UTF-8".into()))?;
            }
            (2, Value::Fixed32(f)) => out.score = f32::from_bits(f),
            (3, Value::Varint(t)) => {
                out.kind = match t {
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    _ => PieceType::Normal,
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

impl SpmModel {
    /// Reads a `.spm` (`ModelProto`) file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a SentencePiece model: {e}")))
    }

    /// Parses the bytes of a `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut model = SpmModel {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
        };
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (1, Value::Bytes(b)) => model.pieces.push(piece(b)?),
                (2, Value::Bytes(b)) => {
                    let mut t = Reader::new(b);
                    while let Some((f, v)) = t.next()? {
                        match (f, v) {
                            (3, Value::Varint(k)) => model.model_type = k,
                            (35, Value::Varint(k)) => model.byte_fallback = k != 0,
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(b)) => {
                    let mut n = Reader::new(b);
                    while let Some((f, v)) = n.next()? {
                        match (f, v) {
                            (2, Value::Bytes(map)) => model.precompiled_charsmap = map.to_vec(),
                            (3, Value::Varint(k)) => model.add_dummy_prefix = k != 0,
                            (4, Value::Varint(k)) => model.remove_extra_whitespaces = k != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err(Error::Invalid("it has no pieces".into()));
        }
        Ok(model)
    }

    /// A tokenizer that segments text into this model's pieces as SentencePiece does: the
    /// precompiled normalisation, whitespace squeezed and trimmed, `▁` for spaces and at
    /// the start, then the most likely segmentation under the pieces' scores (characters no
    /// piece covers become the unknown piece).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        if self.model_type != 1 {
            let kind = match self.model_type {
                2 => "BPE",
                3 => "word",
                4 => "char",
                _ => "unknown",
            };
            return Err(Error::Invalid(format!(
                "this SentencePiece model is a {kind} model; only unigram models (what Marian opus-mt models use) are supported"
            )));
        }
        let unk = self
            .pieces
            .iter()
            .position(|p| p.kind == PieceType::Unknown)
            .ok_or_else(|| Error::Invalid("the SentencePiece model has no unknown piece".into()))?;
        let vocab = self
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), f64::from(p.score)))
            .collect();
        let model = Unigram::from(vocab, Some(unk), self.byte_fallback)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(model);
        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if !self.precompiled_charsmap.is_empty() {
            let map = Precompiled::from(&self.precompiled_charsmap)
                .map_err(|e| Error::Invalid(format!("its character map does not read: {e}")))?;
            normalizers.push(map.into());
        }
        if self.remove_extra_whitespaces {
            normalizers.push(Strip::new(true, true).into());
            let squeeze = Replace::new(
                tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
                " ",
            )
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
            normalizers.push(squeeze.into());
        }
        tokenizer
            .with_normalizer(Some(Sequence::new(normalizers)))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let prepend = if self.add_dummy_prefix {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        tokenizer.with_pre_tokenizer(Some(Metaspace::new('\u{2581}', prepend, true)));
        tokenizer.with_decoder(Some(MetaspaceDecoder::new('\u{2581}', prepend, true)));
        Ok(tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ModelProto` of `pieces` (text, score, type) and a trainer model type.
    fn proto(pieces: &[(&str, f32, u8)], model_type: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in pieces {
            let mut p = vec![0x0a, text.len() as u8];
            p.extend(text.as_bytes());
            p.push(0x15);
            p.extend(score.to_le_bytes());
            p.extend([0x18, *kind]);
            out.push(0x0a);
            out.push(p.len() as u8);
            out.extend(p);
        }
        out.extend([0x12, 2, 0x18, model_type]);
        out
    }

    #[test]
    fn reads_pieces_and_segments_by_their_scores() {
        let bytes = proto(
            &[
                ("<unk>", 0.0, 2),
                ("</s>", 0.0, 3),
                ("\u{2581}cold", -1.0, 1),
                ("\u{2581}co", -2.0, 1),
                ("ld", -2.0, 1),
                ("\u{2581}", -3.0, 1),
                ("c", -4.0, 1),
                ("o", -4.0, 1),
                ("l", -4.0, 1),
                ("d", -4.0, 1),
            ],
            1,
        );
        let model = SpmModel::parse(&bytes).unwrap();
        assert_eq!(model.pieces.len(), 10);
        assert_eq!(model.pieces[0].kind, PieceType::Unknown);
        assert_eq!(model.pieces[3].score, -2.0);
        let tok = model.tokenizer().unwrap();
        let enc = tok.encode("  cold  cod ", false).unwrap();
        let pieces: Vec<&str> = enc.get_tokens().iter().map(String::as_str).collect();
        assert_eq!(pieces, ["\u{2581}cold", "\u{2581}co", "d"]);
        // A character no piece covers is the unknown piece (the token keeps its text).
        let unknown = tok.encode("cx", false).unwrap();
        assert_eq!(unknown.get_ids().last(), Some(&0));
    }

    #[test]
    fn broken_files_and_other_model_types_are_refused_by_name() {
        let bytes = proto(&[("<unk>", 0.0, 2), ("a", -1.0, 1)], 2);
        let bpe = SpmModel::parse(&bytes).unwrap().tokenizer().unwrap_err();
        assert!(bpe.to_string().contains("BPE model"), "{bpe}");
        for cut in [1, 5, bytes.len() - 3] {
            assert!(SpmModel::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            SpmModel::parse(&[])
                .unwrap_err()
                .to_string()
                .contains("no pieces")
        );
    }
}
