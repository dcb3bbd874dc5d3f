//! A model's chosen alignment method applied to a translation as the explorer shows it:
//! the pieces grouped into words ([`piece_words`]), each sentence's matrix of the method's
//! source merged to words, and the links read off it ([`align_translation`]), each word a
//! range of piece positions so that the page can draw them over its tokens.

use std::ops::Range;

use super::extract::word_matrix;
use super::methods::{AlignMethod, AlignSource, PieceMatrices, is_punctuation};
use crate::decoding::decode::Translation;
use crate::{DecodePlan, Result, Translator};

/// One link of a translation's alignment: a source word and a target word, each as the
/// range of its pieces (positions in the whole source and the whole target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WordLink {
    pub source: Range<usize>,
    pub target: Range<usize>,
}

/// The words of a run of pieces: a word starts at a piece carrying the word-start marker
/// `▁`, at a piece of punctuation only, and after one; `</s>` belongs to none. Returns each
/// piece's word (`None` for `</s>`), each word's piece range, and each word's text.
pub fn piece_words(pieces: &[String]) -> (Vec<Option<usize>>, Vec<Range<usize>>, Vec<String>) {
    let mut owners = Vec::with_capacity(pieces.len());
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut previous_punctuation = false;
    for (i, p) in pieces.iter().enumerate() {
        if p == "</s>" {
            owners.push(None);
            previous_punctuation = false;
            continue;
        }
        let text = p.trim_start_matches('▁');
        let punctuation = is_punctuation(text);
        let starts = spans.is_empty()
            || p.starts_with('▁')
            || punctuation
            || previous_punctuation
            || owners.last().is_some_and(Option::is_none);
        if starts {
            spans.push(i..i + 1);
            words.push(text.to_string());
        } else if let (Some(span), Some(word)) = (spans.last_mut(), words.last_mut()) {
            span.end = i + 1;
            word.push_str(text);
        }
        owners.push(Some(spans.len() - 1));
        previous_punctuation = punctuation;
    }
    (owners, spans, words)
}

/// The links `method` reads off `translation` (decoded from `plan`), sentence by sentence.
/// A norm-weighted method encodes each sentence once more for its attention values.
pub fn align_translation(
    t: &Translator,
    plan: &DecodePlan,
    translation: &Translation,
    method: &AlignMethod,
) -> Result<Vec<WordLink>> {
    let norm = matches!(method.source, AlignSource::Attention { norm: true, .. });
    let mut out = Vec::new();
    for (span, sentence) in translation.sentences.iter().zip(&plan.source().sentences) {
        let steps = translation
            .steps
            .get(span.target.clone())
            .unwrap_or_default();
        if steps.is_empty() {
            continue;
        }
        let values = if norm {
            Some(t.attention_values(&sentence.ids)?)
        } else {
            None
        };
        let matrices = PieceMatrices::new(steps, span.source.clone(), values.as_ref(), Vec::new())?;
        let Some(rows) = matrices.matrix(method.source) else {
            continue;
        };
        let src_pieces = translation
            .source_tokens
            .get(span.source.clone())
            .unwrap_or_default();
        let tgt_pieces: Vec<String> = steps.iter().map(|s| s.token.clone()).collect();
        let (src_owner, src_spans, src_words) = piece_words(src_pieces);
        let (tgt_owner, tgt_spans, tgt_words) = piece_words(&tgt_pieces);
        let m = word_matrix(
            &rows,
            &src_owner,
            &tgt_owner,
            src_words.len(),
            tgt_words.len(),
        )?;
        for (s, t) in method.align(&m, &src_words, &tgt_words) {
            if let (Some(a), Some(b)) = (src_spans.get(s), tgt_spans.get(t)) {
                out.push(WordLink {
                    source: a.start + span.source.start..a.end + span.source.start,
                    target: b.start + span.target.start..b.end + span.target.start,
                });
            }
        }
    }
    Ok(out)
}
