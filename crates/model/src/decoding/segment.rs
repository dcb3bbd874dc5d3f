//! Sentence segmentation of an input text, so that a pasted paragraph is translated one
//! sentence at a time (the models are trained on single sentences and short joined runs).
//!
//! Boundaries are Unicode's (UAX #29 sentence boundaries, `unicode-segmentation`), then
//! repaired where UAX #29 is known to be wrong for English: a break after a common
//! abbreviation ("Mr.", "Dr.", "e.g.", "U.S."), or after a single-letter initial ("J. K.
//! Rowling"), is taken back. Each [`Sentence`] is a byte range of the input with its
//! surrounding white space trimmed; text without a sentence end is one sentence.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

/// Abbreviations (lowercase, without their final period) that do not end a sentence when a
/// period follows them, even before a capital letter.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "e.g", "i.e", "cf",
    "no", "vol", "fig", "approx", "dept", "est", "gen", "gov", "lt", "col", "sgt", "capt", "rev",
    "hon", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "u.s", "u.k",
    "a.m", "p.m", "ph.d", "b.a", "m.a", "d.c",
];

/// One sentence of an input: its byte range in the input, white space trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub range: Range<usize>,
}

impl Sentence {
    /// The sentence's text within `input` (the text it was found in).
    pub fn text<'a>(&self, input: &'a str) -> &'a str {
        &input[self.range.clone()]
    }
}

/// Whether a piece of text that ends a UAX #29 segment ends with an abbreviation or an
/// initial, so that the break after it is not a sentence end.
fn ends_with_abbreviation(segment: &str) -> bool {
    let trimmed = segment.trim_end();
    let Some(body) = trimmed.strip_suffix('.') else {
        return false;
    };
    let word = body
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"' || c == '\u{201c}')
        .next()
        .unwrap_or("");
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    // A single capital initial ("J." in "J. K. Rowling").
    let mut chars = word.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_uppercase())
}

/// The sentences of `text`, in order; empty when `text` is only white space.
pub fn sentences(text: &str) -> Vec<Sentence> {
    let mut out: Vec<Sentence> = Vec::new();
    let mut start: Option<usize> = None;
    for (at, segment) in text.split_sentence_bound_indices() {
        let begin = *start.get_or_insert(at);
        let end = at + segment.len();
        if ends_with_abbreviation(segment) && end < text.len() {
            continue;
        }
        push_trimmed(text, begin..end, &mut out);
        start = None;
    }
    if let Some(begin) = start {
        push_trimmed(text, begin..text.len(), &mut out);
    }
    out
}

fn push_trimmed(text: &str, range: Range<usize>, out: &mut Vec<Sentence>) {
    let piece = &text[range.clone()];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    if lead + trail < piece.len() {
        out.push(Sentence {
            range: range.start + lead..range.end - trail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<&str> {
        sentences(text).iter().map(|s| s.text(text)).collect()
    }

    #[test]
    fn splits_at_sentence_ends_and_trims() {
        assert_eq!(
            split("  I am cold. Where is the station?  It is late!\n"),
            vec!["I am cold.", "Where is the station?", "It is late!"]
        );
        assert_eq!(split("no end at all"), vec!["no end at all"]);
        assert!(split(" \n\t").is_empty());
        assert_eq!(
            split("One.Two."),
            vec!["One.Two."],
            "no space: not a boundary"
        );
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            split("Mr. Smith met Dr. Jones at 3 p.m. on Monday. They talked."),
            vec![
                "Mr. Smith met Dr. Jones at 3 p.m. on Monday.",
                "They talked."
            ]
        );
        assert_eq!(
            split("J. K. Rowling wrote it. I read it."),
            vec!["J. K. Rowling wrote it.", "I read it."]
        );
        assert_eq!(
            split("We visited the U.S. Then we went home."),
            vec!["We visited the U.S. Then we went home."],
            "an abbreviation at a real boundary is kept together (the safe error)"
        );
        assert_eq!(
            split("Bring fruit, e.g. apples."),
            vec!["Bring fruit, e.g. apples."]
        );
    }

    #[test]
    fn quotes_and_other_scripts() {
        assert_eq!(
            split("He said \"Stop.\" Then he left."),
            vec!["He said \"Stop.\"", "Then he left."]
        );
        assert_eq!(split("Ça va ? Oui. 好。"), vec!["Ça va ?", "Oui.", "好。"]);
    }

    #[test]
    fn ranges_point_into_the_input() {
        let text = "A cat.  A dog.";
        let s = sentences(text);
        assert_eq!(s[0].range, 0..6);
        assert_eq!(s[1].range, 8..14);
    }
}
