//! Display logic for subword pieces (labels, live detokenization) and the attention rows
//! of a streamed translation. Pure Rust, unit-tested natively.

use attnscope_protocol::{EOS, WORD_START, piece_label};

/// How a piece is shown in labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenLabel {
    /// The text to show: the piece without its word-start marker; a bare marker shows as `▁`.
    pub text: String,
    /// Whether the piece continues the previous word (shown with a subtle marker).
    pub continuation: bool,
    /// Whether the piece is the end-of-sentence token.
    pub eos: bool,
}

impl TokenLabel {
    /// The label of one piece.
    pub fn new(piece: &str) -> Self {
        let eos = piece == EOS;
        let (text, word_start) = piece_label(piece);
        let text = if text.is_empty() { piece } else { text };
        Self {
            text: text.to_owned(),
            continuation: !word_start && !eos,
            eos,
        }
    }

    /// Plain-text form for readouts and tooltips: continuation pieces get a leading `·`.
    pub fn plain(&self) -> String {
        if self.continuation {
            format!("\u{b7}{}", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Joins pieces into text the way the translation will read: word-start markers become
/// spaces, [`EOS`] is dropped, leading space is trimmed. Used while the translation streams.
pub fn detokenize<S: AsRef<str>>(pieces: &[S]) -> String {
    let mut out = String::new();
    for piece in pieces.iter().map(AsRef::as_ref).filter(|p| *p != EOS) {
        out.extend(piece.chars().map(|c| if c == WORD_START { ' ' } else { c }));
    }
    out.trim_start().to_owned()
}

/// One row of the heatmap: a target token and its attention over the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Which translation this row belongs to (keeps rows of successive runs apart).
    pub run: u64,
    /// 0-based position of the token in the target.
    pub index: usize,
    /// The emitted piece.
    pub token: String,
    /// One weight per source token (see [`fit_row`]).
    pub weights: Vec<f32>,
    /// The token was given (target prefix), not chosen by the model.
    pub forced: bool,
    /// The attention of this step was forced onto one source token (what-if).
    pub intervened: bool,
    /// Revision of the row's content: a word's row changes when another of its pieces
    /// arrives, so it is the number of pieces merged into it (0 for a piece's row).
    pub rev: usize,
    /// The input sentence this row translates (0 unless the input was segmented).
    pub sentence: usize,
    /// When the row shows an attribution: its Kendall τ with the step's attention (`None`
    /// while it shows the attention itself, or where τ is undefined).
    pub tau: Option<f32>,
}

/// The source columns `[start, end)` of each input sentence, from the server's sentence
/// list (empty for an input of one sentence: no blocks to draw).
pub fn piece_blocks(sentences: &[attnscope_protocol::SentenceInfo]) -> Vec<(usize, usize)> {
    if sentences.len() < 2 {
        return Vec::new();
    }
    sentences
        .iter()
        .map(|s| (s.source[0], s.source[1]))
        .collect()
}

/// The sentence of a row, read off its weights: the block that holds its largest weight
/// (rows attend only within their sentence); 0 without blocks.
pub fn sentence_of_row(weights: &[f32], blocks: &[(usize, usize)]) -> usize {
    let Some(peak) = argmax(weights) else {
        return 0;
    };
    blocks
        .iter()
        .position(|&(a, b)| (a..b).contains(&peak))
        .unwrap_or(0)
}

/// Whether column `col` lies outside the block of sentence `sentence` (always false without
/// blocks).
pub fn outside_block(blocks: &[(usize, usize)], sentence: usize, col: usize) -> bool {
    blocks
        .get(sentence)
        .is_some_and(|&(a, b)| !(a..b).contains(&col))
}

/// What the pointer is on: a target row, a source column, or a cell (both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hover {
    /// Target token (row) index.
    pub tgt: Option<usize>,
    /// Source token (column) index.
    pub src: Option<usize>,
}

/// Fits a row of attention weights to `n` source tokens: extra weights are dropped and
/// missing ones are zero, so the heatmap always has exactly `n` columns.
pub fn fit_row(mut weights: Vec<f32>, n: usize) -> Vec<f32> {
    weights.resize(n, 0.0);
    weights
}

/// The index of the largest weight (the first on ties), `None` for an empty row.
pub fn argmax(weights: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &w) in weights.iter().enumerate() {
        if best.is_none_or(|(_, b)| w > b) {
            best = Some((i, w));
        }
    }
    best.map(|(i, _)| i)
}

/// The hover readout, target first: `froid → cold: 0.83`.
pub fn readout(target_piece: &str, source_piece: &str, weight: f32) -> String {
    format!(
        "{} \u{2192} {}: {weight:.2}",
        TokenLabel::new(target_piece).plain(),
        TokenLabel::new(source_piece).plain()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            TokenLabel::new("\u{2581}froid"),
            TokenLabel {
                text: "froid".into(),
                continuation: false,
                eos: false
            }
        );
        assert_eq!(
            TokenLabel::new("s"),
            TokenLabel {
                text: "s".into(),
                continuation: true,
                eos: false
            }
        );
        assert_eq!(
            TokenLabel::new("</s>"),
            TokenLabel {
                text: "</s>".into(),
                continuation: false,
                eos: true
            }
        );
        assert_eq!(TokenLabel::new("\u{2581}").text, "\u{2581}");
        assert_eq!(TokenLabel::new("s").plain(), "\u{b7}s");
        assert_eq!(TokenLabel::new("\u{2581}J").plain(), "J");
    }

    #[test]
    fn detokenizes_pieces() {
        let pieces = ["\u{2581}J", "'", "ai", "\u{2581}froid", "\u{2581}.", "</s>"];
        assert_eq!(detokenize(&pieces), "J'ai froid .");
        assert_eq!(detokenize::<&str>(&[]), "");
        assert_eq!(detokenize(&["</s>"]), "");
    }

    #[test]
    fn rows_fit_the_source() {
        assert_eq!(fit_row(vec![0.5, 0.5], 3), vec![0.5, 0.5, 0.0]);
        assert_eq!(fit_row(vec![0.2, 0.3, 0.5], 2), vec![0.2, 0.3]);
    }

    #[test]
    fn blocks_from_sentences() {
        use attnscope_protocol::SentenceInfo;
        let s = |a, b| SentenceInfo {
            text: "x".into(),
            source: [a, b],
            target: None,
            translation: None,
        };
        assert!(piece_blocks(&[s(0, 4)]).is_empty());
        let blocks = piece_blocks(&[s(0, 4), s(4, 7)]);
        assert_eq!(blocks, vec![(0, 4), (4, 7)]);
        assert_eq!(
            sentence_of_row(&[0.0, 0.0, 0.0, 0.0, 0.2, 0.7, 0.1], &blocks),
            1
        );
        assert_eq!(
            sentence_of_row(&[0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0], &blocks),
            0
        );
        assert!(outside_block(&blocks, 0, 5));
        assert!(!outside_block(&blocks, 1, 5));
        assert!(!outside_block(&[], 0, 5));
    }

    #[test]
    fn argmax_picks_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn readout_format() {
        assert_eq!(
            readout("\u{2581}froid", "\u{2581}cold", 0.834),
            "froid \u{2192} cold: 0.83"
        );
        assert_eq!(readout("</s>", "s", 0.5), "</s> \u{2192} \u{b7}s: 0.50");
    }
}
