//! Word alignments read off attention and scored against gold alignments.
//!
//! A model forced-decodes a gold target sentence given its source, producing one attention
//! row per target piece over the source pieces. [`piece_owners`] and [`word_matrix`] turn that
//! piece-level matrix into a word-level one (sum over a source word's pieces, mean over a
//! target word's pieces, the `</s>` pieces dropped). [`directions`] extracts the two
//! directional alignments from it ([`Extraction::Argmax`] or [`Extraction::Threshold`]), and
//! [`symmetrize`] combines them ([`Symmetrization`]: either direction alone, intersection,
//! union or grow-diag-final). [`load_gold`] reads the HLT-NAACL 2003 Hansards gold
//! alignments, and [`AlignmentCounts`] scores a corpus of alignments against them with
//! precision, recall and the alignment error rate (AER) of Och & Ney (2003).
//!
//! Links are `(source word, target word)` pairs, 0-based, in a [`Links`] set. A word-level
//! matrix is indexed `m[target][source]` (one row per target word), the orientation of the
//! attention rows a decoder produces.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A set of alignment links `(source word, target word)`, both 0-based.
pub type Links = BTreeSet<(usize, usize)>;

/// Source (English) sentences of the gold set, `<s snum=NNNN> words </s>` per line.
pub const GOLD_SOURCE_FILE: &str = "test.e";
/// Target (French) sentences of the gold set, same format as [`GOLD_SOURCE_FILE`].
pub const GOLD_TARGET_FILE: &str = "test.f";
/// Gold links without NULL links, `SNUM POS_EN POS_FR S|P` per line, positions 1-based.
pub const GOLD_LINKS_FILE: &str = "test.wa.nonullalign";

/// One sentence pair of a gold alignment set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldSentence {
    /// The sentence number as written in the files (`0001`).
    pub id: String,
    /// Source (English) words.
    pub source: Vec<String>,
    /// Target (French) words.
    pub target: Vec<String>,
    /// Sure links `(source word, target word)`, 0-based.
    pub sure: Links,
    /// Possible links, 0-based. Every sure link is also here (S ⊆ P).
    pub possible: Links,
}

struct SentenceLine {
    line: usize,
    snum: u32,
    id: String,
    words: Vec<String>,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parses `<s snum=NNNN> words </s>`.
fn parse_sentence(line: &str) -> Option<(String, u32, Vec<String>)> {
    let rest = line.trim().strip_prefix("<s snum=")?;
    let (id, rest) = rest.split_once('>')?;
    let id = id.trim();
    let snum = id.parse::<u32>().ok()?;
    let words = rest.trim_end().strip_suffix("</s>")?;
    let words = words.split_whitespace().map(str::to_string).collect();
    Some((id.to_string(), snum, words))
}

fn read_sentences(path: &Path) -> Result<Vec<SentenceLine>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (id, snum, words) = parse_sentence(line).ok_or_else(|| {
            Error::bad_file(
                path,
                format!(
                    "line {}: expected `<s snum=NNNN> words </s>`, found `{}`",
                    i + 1,
                    line.trim()
                ),
            )
        })?;
        out.push(SentenceLine {
            line: i + 1,
            snum,
            id,
            words,
        });
    }
    Ok(out)
}

/// Reads a gold alignment set in the HLT-NAACL 2003 shared-task format from `dir`:
/// [`GOLD_SOURCE_FILE`] (`test.e`), [`GOLD_TARGET_FILE`] (`test.f`) and [`GOLD_LINKS_FILE`]
/// (`test.wa.nonullalign`).
///
/// The sentence files hold one `<s snum=NNNN> words </s>` per line (words separated by
/// whitespace), with the same sentence numbers in the same order. The links file holds one
/// `SNUM POS_EN POS_FR S|P` per line, positions 1-based, English = source; they become
/// 0-based `(source, target)` links. A sure (`S`) link goes into both [`GoldSentence::sure`]
/// and [`GoldSentence::possible`]. Blank lines are skipped.
///
/// # Errors
///
/// [`Error::Io`] when a file cannot be read; [`Error::BadFile`], naming the file and line,
/// for a malformed line, sentence files that do not pair up, a duplicate sentence number, a
/// link to an unknown sentence, a position 0 (NULL) or past the end of its sentence, or a
/// label other than `S` and `P`.
pub fn load_gold(dir: &Path) -> Result<Vec<GoldSentence>> {
    let (e_path, f_path, a_path) = (
        dir.join(GOLD_SOURCE_FILE),
        dir.join(GOLD_TARGET_FILE),
        dir.join(GOLD_LINKS_FILE),
    );
    let source = read_sentences(&e_path)?;
    let target = read_sentences(&f_path)?;
    if source.len() != target.len() {
        return Err(Error::bad_file(
            &f_path,
            format!(
                "it has {} sentences but {} has {}",
                target.len(),
                e_path.display(),
                source.len()
            ),
        ));
    }
    let mut gold = Vec::with_capacity(source.len());
    let mut index = BTreeMap::new();
    for (e, f) in source.into_iter().zip(target) {
        if e.snum != f.snum {
            return Err(Error::bad_file(
                &f_path,
                format!(
                    "line {}: sentence {} does not match sentence {} on line {} of {}",
                    f.line,
                    f.id,
                    e.id,
                    e.line,
                    e_path.display()
                ),
            ));
        }
        if index.insert(e.snum, gold.len()).is_some() {
            return Err(Error::bad_file(
                &e_path,
                format!("line {}: sentence {} appears twice", e.line, e.id),
            ));
        }
        gold.push(GoldSentence {
            id: e.id,
            source: e.words,
            target: f.words,
            sure: Links::new(),
            possible: Links::new(),
        });
    }

    let text = read_text(&a_path)?;
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| Error::bad_file(&a_path, format!("line {}: {message}", i + 1));
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [snum, pos_e, pos_f, label] = fields[..] else {
            return Err(bad(format!(
                "expected `SNUM POS_EN POS_FR S|P`, found `{}`",
                line.trim()
            )));
        };
        let sentence = snum
            .parse::<u32>()
            .ok()
            .and_then(|n| index.get(&n))
            .and_then(|&k| gold.get_mut(k))
            .ok_or_else(|| bad(format!("sentence `{snum}` is not in {}", e_path.display())))?;
        let position = |field: &str, side: &str, len: usize| -> Result<usize> {
            match field.parse::<usize>() {
                Ok(0) => Err(bad(format!(
                    "{side} position 0 is a NULL link, which {GOLD_LINKS_FILE} must not have"
                ))),
                Ok(p) if p <= len => Ok(p - 1),
                Ok(p) => Err(bad(format!(
                    "{side} position {p} is out of range: sentence {snum} has {len} {side} words"
                ))),
                Err(_) => Err(bad(format!("`{field}` is not a {side} word position"))),
            }
        };
        let s = position(pos_e, "English", sentence.source.len())?;
        let t = position(pos_f, "French", sentence.target.len())?;
        match label {
            "S" => {
                sentence.sure.insert((s, t));
                sentence.possible.insert((s, t));
            }
            "P" => {
                sentence.possible.insert((s, t));
            }
            other => {
                return Err(bad(format!(
                    "the label must be `S` (sure) or `P` (possible), found `{other}`"
                )));
            }
        }
    }
    Ok(gold)
}

/// Maps each piece of a sentence to the word it belongs to, given how many pieces each word
/// was encoded into (words encoded one by one and the pieces concatenated, in order).
///
/// With `eos` true one more entry, `None`, is appended for the end-of-sentence piece `</s>`
/// that ends both the encoder input and the forced-decoded target; it belongs to no word, and
/// [`word_matrix`] drops it. A word with 0 pieces owns no piece.
///
/// `piece_owners(&[2, 1], true)` is `[Some(0), Some(0), Some(1), None]`.
pub fn piece_owners(pieces_per_word: &[usize], eos: bool) -> Vec<Option<usize>> {
    let mut owners: Vec<Option<usize>> = pieces_per_word
        .iter()
        .enumerate()
        .flat_map(|(word, &n)| std::iter::repeat_n(Some(word), n))
        .collect();
    if eos {
        owners.push(None);
    }
    owners
}

/// Merges a piece-level attention matrix into a word-level one.
///
/// `m[t][s] = mean over target pieces p of t ( sum over source pieces q of s ( piece_attn[p][q] ) )`:
/// the attention a source word receives is the total over its pieces, and a target word's
/// row is the average of its pieces' rows. Pieces whose owner is `None` (`</s>`) are dropped
/// on both sides, so word rows need not sum to 1. A target word with no pieces gets a row of
/// zeros, a source word with no pieces a column of zeros.
///
/// # Shapes
///
/// `piece_attn` has one row per target piece (`tgt_owner.len()` rows, the decoder steps),
/// each over the source pieces (`src_owner.len()` columns). The result has `n_tgt` rows, each
/// over `n_src` source words: `result[target word][source word]`.
///
/// # Errors
///
/// [`Error::Invalid`] when the shapes disagree: a row count other than `tgt_owner.len()`, a
/// row length other than `src_owner.len()`, or an owner `>= n_src` / `>= n_tgt`.
pub fn word_matrix(
    piece_attn: &[Vec<f32>],
    src_owner: &[Option<usize>],
    tgt_owner: &[Option<usize>],
    n_src: usize,
    n_tgt: usize,
) -> Result<Vec<Vec<f32>>> {
    if piece_attn.len() != tgt_owner.len() {
        return Err(Error::Invalid(format!(
            "the attention matrix has {} rows but there are {} target pieces",
            piece_attn.len(),
            tgt_owner.len()
        )));
    }
    if let Some(&Some(w)) = src_owner.iter().find(|o| o.is_some_and(|w| w >= n_src)) {
        return Err(Error::Invalid(format!(
            "a source piece belongs to word {w} but there are {n_src} source words"
        )));
    }
    let mut sums = vec![vec![0.0f32; n_src]; n_tgt];
    let mut counts = vec![0usize; n_tgt];
    for (p, (row, owner)) in piece_attn.iter().zip(tgt_owner).enumerate() {
        if row.len() != src_owner.len() {
            return Err(Error::Invalid(format!(
                "attention row {p} has {} entries but there are {} source pieces",
                row.len(),
                src_owner.len()
            )));
        }
        let Some(t) = *owner else { continue };
        let Some(out) = sums.get_mut(t) else {
            return Err(Error::Invalid(format!(
                "a target piece belongs to word {t} but there are {n_tgt} target words"
            )));
        };
        for (&a, src) in row.iter().zip(src_owner) {
            if let Some(cell) = src.and_then(|s| out.get_mut(s)) {
                *cell += a;
            }
        }
        counts[t] += 1;
    }
    for (row, &n) in sums.iter_mut().zip(&counts) {
        if n > 1 {
            row.iter_mut().for_each(|x| *x /= n as f32);
        }
    }
    Ok(sums)
}

/// How the directional alignments are read off a word-level matrix `m[target][source]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extraction {
    /// Target→source: each target word `t` links to `argmax_s m[t][s]`. Source→target: each
    /// source word `s` links to `argmax_t m[t][s]` (the target word whose row gives it the
    /// most weight). Ties go to the lowest index; an all-zero row or column (a word with no
    /// pieces) gives no link.
    Argmax,
    /// Target→source: `(s, t)` for every cell with `m[t][s] / Σ_s' m[t][s'] >= τ`
    /// (row-normalised). Source→target: every cell with `m[t][s] / Σ_t' m[t'][s] >= τ`
    /// (column-normalised). A row or column summing to 0 gives no link. A word may get
    /// several links or none; for τ > 0.5 at most one per row (column).
    Threshold(f32),
}

/// The two directional alignments of one sentence pair, as `(source, target)` links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directions {
    /// Source→target links: chosen per source word, over a column of the matrix.
    pub s2t: Links,
    /// Target→source links: chosen per target word, over a row of the matrix (the decoder's
    /// own direction: one attention row per emitted word).
    pub t2s: Links,
}

fn argmax(values: impl Iterator<Item = f32>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        if v > 0.0 && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Extracts both directional alignments from a word-level matrix `m[target][source]` (see
/// [`word_matrix`] for the orientation). Rows shorter than the longest are read as padded with
/// zeros.
pub fn directions(m: &[Vec<f32>], extraction: Extraction) -> Directions {
    let n_src = m.iter().map(Vec::len).max().unwrap_or(0);
    let column = |s: usize| m.iter().map(move |row| row.get(s).copied().unwrap_or(0.0));
    let mut out = Directions::default();
    match extraction {
        Extraction::Argmax => {
            for (t, row) in m.iter().enumerate() {
                if let Some(s) = argmax(row.iter().copied()) {
                    out.t2s.insert((s, t));
                }
            }
            for s in 0..n_src {
                if let Some(t) = argmax(column(s)) {
                    out.s2t.insert((s, t));
                }
            }
        }
        Extraction::Threshold(tau) => {
            for (t, row) in m.iter().enumerate() {
                let total: f32 = row.iter().sum();
                if total > 0.0 {
                    for (s, &v) in row.iter().enumerate() {
                        if v / total >= tau {
                            out.t2s.insert((s, t));
                        }
                    }
                }
            }
            for s in 0..n_src {
                let total: f32 = column(s).sum();
                if total > 0.0 {
                    for (t, v) in column(s).enumerate() {
                        if v / total >= tau {
                            out.s2t.insert((s, t));
                        }
                    }
                }
            }
        }
    }
    out
}

/// How the two directional alignments are combined into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Symmetrization {
    /// The source→target links alone.
    S2t,
    /// The target→source links alone.
    T2s,
    /// `s2t ∩ t2s`: high precision.
    Intersection,
    /// `s2t ∪ t2s`: high recall.
    Union,
    /// Grow-diag-final (Koehn, Och & Marcu 2003), following the pseudo-code of Koehn's
    /// *Statistical Machine Translation* (2010) with a fixed visiting order:
    ///
    /// 1. `A = s2t ∩ t2s`.
    /// 2. GROW-DIAG: repeat passes until a pass adds nothing. A pass visits each link of
    ///    `(s2t ∪ t2s) \ A` in ascending `(source, target)` order and adds it to `A` when
    ///    one of its 8 neighbours (`(s±1, t)`, `(s, t±1)`, `(s±1, t±1)`) is in `A` and its
    ///    source word or its target word is not yet aligned in `A`. Links added earlier in
    ///    the same pass count, both as neighbours and for "aligned".
    /// 3. FINAL(t2s), then FINAL(s2t): visit the links of that direction in ascending
    ///    order and add each one whose source word *or* target word is still unaligned (the
    ///    "or" makes this grow-diag-final, not grow-diag-final-and).
    ///
    /// Other implementations (Moses' `symal`, fast_align's `atools`) visit candidates in other
    /// orders, which only matters where two candidates compete for the same words: e.g. with
    /// t2s `{(6,7), (7,6)}` and s2t `{(6,6)}` left for FINAL, this keeps `(6,7)` and `(7,6)`
    /// and drops `(6,6)`.
    GrowDiagFinal,
}

impl Symmetrization {
    /// Every method, in the order of the variants.
    pub const ALL: [Symmetrization; 5] = [
        Symmetrization::S2t,
        Symmetrization::T2s,
        Symmetrization::Intersection,
        Symmetrization::Union,
        Symmetrization::GrowDiagFinal,
    ];

    /// The method's name: `s2t`, `t2s`, `intersection`, `union`, `grow-diag-final`.
    pub fn name(self) -> &'static str {
        match self {
            Symmetrization::S2t => "s2t",
            Symmetrization::T2s => "t2s",
            Symmetrization::Intersection => "intersection",
            Symmetrization::Union => "union",
            Symmetrization::GrowDiagFinal => "grow-diag-final",
        }
    }
}

impl fmt::Display for Symmetrization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Symmetrization {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Symmetrization::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown symmetrization `{s}`: use s2t, t2s, intersection, union or grow-diag-final"
                ))
            })
    }
}

const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, 0),
    (0, -1),
    (1, 0),
    (0, 1),
    (-1, -1),
    (-1, 1),
    (1, -1),
    (1, 1),
];

/// The links of `a` plus the words they cover on each side.
struct Growing {
    links: Links,
    src: BTreeSet<usize>,
    tgt: BTreeSet<usize>,
}

impl Growing {
    fn new(links: Links) -> Self {
        let src = links.iter().map(|&(s, _)| s).collect();
        let tgt = links.iter().map(|&(_, t)| t).collect();
        Growing { links, src, tgt }
    }
    fn either_unaligned(&self, (s, t): (usize, usize)) -> bool {
        !self.src.contains(&s) || !self.tgt.contains(&t)
    }
    fn add(&mut self, (s, t): (usize, usize)) {
        self.links.insert((s, t));
        self.src.insert(s);
        self.tgt.insert(t);
    }
    fn has_neighbour(&self, (s, t): (usize, usize)) -> bool {
        NEIGHBOURS.iter().any(|&(ds, dt)| {
            match (s.checked_add_signed(ds), t.checked_add_signed(dt)) {
                (Some(s), Some(t)) => self.links.contains(&(s, t)),
                _ => false,
            }
        })
    }
}

fn grow_diag_final(d: &Directions) -> Links {
    let union: Links = d.s2t.union(&d.t2s).copied().collect();
    let mut a = Growing::new(d.s2t.intersection(&d.t2s).copied().collect());
    loop {
        let mut added = false;
        for &link in &union {
            if !a.links.contains(&link) && a.either_unaligned(link) && a.has_neighbour(link) {
                a.add(link);
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    for direction in [&d.t2s, &d.s2t] {
        for &link in direction {
            if !a.links.contains(&link) && a.either_unaligned(link) {
                a.add(link);
            }
        }
    }
    a.links
}

/// Combines the two directional alignments of one sentence pair (see [`Symmetrization`]).
pub fn symmetrize(d: &Directions, how: Symmetrization) -> Links {
    match how {
        Symmetrization::S2t => d.s2t.clone(),
        Symmetrization::T2s => d.t2s.clone(),
        Symmetrization::Intersection => d.s2t.intersection(&d.t2s).copied().collect(),
        Symmetrization::Union => d.s2t.union(&d.t2s).copied().collect(),
        Symmetrization::GrowDiagFinal => grow_diag_final(d),
    }
}

/// [`directions`] then [`symmetrize`]: the alignment of one word-level matrix
/// `m[target][source]`.
pub fn align(m: &[Vec<f32>], extraction: Extraction, how: Symmetrization) -> Links {
    symmetrize(&directions(m, extraction), how)
}

/// Baseline: source word `i` linked to target word `i`, for every `i` both sentences have.
pub fn diagonal(n_src: usize, n_tgt: usize) -> Links {
    (0..n_src.min(n_tgt)).map(|i| (i, i)).collect()
}

/// Baseline: each target word `t` linked to the source word at the same relative position,
/// `floor((t + 0.5) · n_src / n_tgt)` (the diagonal stretched to the sentence lengths).
pub fn scaled_diagonal(n_src: usize, n_tgt: usize) -> Links {
    if n_src == 0 {
        return Links::new();
    }
    (0..n_tgt)
        .map(|t| (((2 * t + 1) * n_src / (2 * n_tgt)).min(n_src - 1), t))
        .collect()
}

/// Link counts summed over a corpus, from which [`AlignmentScores`] are computed (corpus
/// level, as the standard `aer` scripts do: sum the counts over sentences, then divide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlignmentCounts {
    /// Sentence pairs added.
    pub sentences: usize,
    /// `Σ |A|`: hypothesis links.
    pub hyp: usize,
    /// `Σ |S|`: sure gold links.
    pub sure: usize,
    /// `Σ |A ∩ S|`.
    pub hyp_sure: usize,
    /// `Σ |A ∩ P|` (with P ⊇ S).
    pub hyp_possible: usize,
}

impl AlignmentCounts {
    /// Adds one sentence pair: hypothesis links `hyp` against its gold sentence.
    pub fn add(&mut self, hyp: &Links, gold: &GoldSentence) {
        self.add_links(hyp, &gold.sure, &gold.possible);
    }

    /// Adds one sentence pair given its sure and possible links. A sure link counts as
    /// possible even when `possible` lacks it.
    pub fn add_links(&mut self, hyp: &Links, sure: &Links, possible: &Links) {
        self.sentences += 1;
        self.hyp += hyp.len();
        self.sure += sure.len();
        self.hyp_sure += hyp.intersection(sure).count();
        self.hyp_possible += hyp
            .iter()
            .filter(|l| possible.contains(l) || sure.contains(l))
            .count();
    }

    /// Precision, recall and AER of the counts so far.
    pub fn scores(&self) -> AlignmentScores {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        AlignmentScores {
            precision: ratio(self.hyp_possible, self.hyp),
            recall: ratio(self.hyp_sure, self.sure),
            aer: 1.0 - ratio(self.hyp_sure + self.hyp_possible, self.hyp + self.sure),
            counts: *self,
        }
    }
}

/// Corpus-level alignment quality (Och & Ney 2003), each in `[0, 1]`, with A the hypothesis,
/// S the sure and P the possible gold links (S ⊆ P), every `|·|` summed over the corpus:
///
/// - precision = |A ∩ P| / |A|
/// - recall = |A ∩ S| / |S|
/// - AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|) (lower is better)
///
/// A ratio with a zero denominator counts as 0 (so an empty corpus has AER 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlignmentScores {
    pub precision: f64,
    pub recall: f64,
    pub aer: f64,
    /// The counts the scores come from.
    pub counts: AlignmentCounts,
}

/// Scores one hypothesis alignment per gold sentence, in order.
///
/// # Errors
///
/// [`Error::Invalid`] when `hyps` and `gold` differ in length.
pub fn score_corpus(gold: &[GoldSentence], hyps: &[Links]) -> Result<AlignmentScores> {
    if gold.len() != hyps.len() {
        return Err(Error::Invalid(format!(
            "{} alignments for {} gold sentences",
            hyps.len(),
            gold.len()
        )));
    }
    let mut counts = AlignmentCounts::default();
    for (h, g) in hyps.iter().zip(gold) {
        counts.add(h, g);
    }
    Ok(counts.scores())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(usize, usize)]) -> Links {
        pairs.iter().copied().collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn toy_gold(sure: &[(usize, usize)], possible_only: &[(usize, usize)]) -> GoldSentence {
        let sure = links(sure);
        let possible = sure.union(&links(possible_only)).copied().collect();
        GoldSentence {
            id: "0001".into(),
            source: vec!["a".into(); 3],
            target: vec!["b".into(); 3],
            sure,
            possible,
        }
    }

    #[test]
    fn scores_a_toy_corpus_by_hand() {
        // Sentence 1: |A| = 3, |S| = 2, |A∩S| = 1 ((0,0)), |A∩P| = 2 ((0,0), (1,2)).
        let g1 = toy_gold(&[(0, 0), (1, 1)], &[(1, 2)]);
        let a1 = links(&[(0, 0), (1, 2), (2, 2)]);
        // Sentence 2: |A| = 2, |S| = 1, |A∩S| = 1, |A∩P| = 2.
        let g2 = toy_gold(&[(0, 0)], &[(0, 1), (1, 1)]);
        let a2 = links(&[(0, 0), (1, 1)]);
        let scores = score_corpus(&[g1, g2], &[a1, a2]).unwrap();
        assert_eq!(
            scores.counts,
            AlignmentCounts {
                sentences: 2,
                hyp: 5,
                sure: 3,
                hyp_sure: 2,
                hyp_possible: 4
            }
        );
        assert!(close(scores.precision, 4.0 / 5.0));
        assert!(close(scores.recall, 2.0 / 3.0));
        // Corpus level: 1 - (2 + 4) / (5 + 3) = 0.25, not the mean of the per-sentence AERs
        // (0.4 and 0).
        assert!(close(scores.aer, 0.25));

        let empty = AlignmentCounts::default().scores();
        assert_eq!((empty.precision, empty.recall, empty.aer), (0.0, 0.0, 1.0));
        assert!(score_corpus(&[], &[Links::new()]).is_err());
    }

    #[test]
    fn sure_links_count_as_possible() {
        let mut c = AlignmentCounts::default();
        c.add_links(&links(&[(0, 0)]), &links(&[(0, 0)]), &Links::new());
        let s = c.scores();
        assert_eq!((s.precision, s.recall, s.aer), (1.0, 1.0, 0.0));
    }

    #[test]
    fn maps_pieces_to_words() {
        assert_eq!(
            piece_owners(&[2, 1], true),
            vec![Some(0), Some(0), Some(1), None]
        );
        assert_eq!(
            piece_owners(&[1, 0, 2], false),
            vec![Some(0), Some(2), Some(2)]
        );
        assert!(piece_owners(&[], true) == vec![None]);
    }

    #[test]
    fn merges_pieces_into_words() {
        // Source: word 0 = pieces 0-1, word 1 = piece 2, </s> = piece 3.
        // Target: word 0 = piece 0, word 1 = pieces 1-2, </s> = piece 3.
        let src = piece_owners(&[2, 1], true);
        let tgt = piece_owners(&[1, 2], true);
        let attn = vec![
            vec![0.1, 0.2, 0.3, 0.4],
            vec![0.5, 0.1, 0.2, 0.2],
            vec![0.3, 0.1, 0.4, 0.2],
            vec![0.0, 0.0, 0.0, 1.0],
        ];
        let m = word_matrix(&attn, &src, &tgt, 2, 2).unwrap();
        // Row 0: [0.1 + 0.2, 0.3]; row 1: mean of [0.6, 0.2] and [0.4, 0.4]. The </s>
        // column and row are gone.
        let want = [[0.3, 0.3], [0.5, 0.3]];
        assert_eq!(m.len(), 2);
        for (row, want) in m.iter().zip(want) {
            assert_eq!(row.len(), 2);
            for (&x, w) in row.iter().zip(want) {
                assert!((x - w).abs() < 1e-6, "{m:?}");
            }
        }

        // A target word with no pieces gets zeros, and no argmax link.
        let m = word_matrix(&attn[..1], &src, &piece_owners(&[1, 0], false), 2, 2).unwrap();
        assert_eq!(m[1], vec![0.0, 0.0]);
        assert_eq!(directions(&m, Extraction::Argmax).t2s, links(&[(0, 0)]));

        // Shape mismatches are errors.
        assert!(word_matrix(&attn[..3], &src, &tgt, 2, 2).is_err());
        assert!(word_matrix(&attn, &src[..3], &tgt, 2, 2).is_err());
        assert!(word_matrix(&attn, &src, &tgt, 1, 2).is_err());
        assert!(word_matrix(&attn, &src, &tgt, 2, 1).is_err());
    }

    /// Rows are target words, columns source words.
    fn matrix() -> Vec<Vec<f32>> {
        vec![
            vec![0.6, 0.3, 0.05, 0.05],
            vec![0.5, 0.4, 0.05, 0.05],
            vec![0.05, 0.1, 0.45, 0.4],
            vec![0.05, 0.05, 0.2, 0.7],
        ]
    }

    #[test]
    fn argmax_in_both_directions() {
        let d = directions(&matrix(), Extraction::Argmax);
        // Rows: t0 -> s0, t1 -> s0, t2 -> s2, t3 -> s3.
        assert_eq!(d.t2s, links(&[(0, 0), (0, 1), (2, 2), (3, 3)]));
        // Columns: s0 -> t0 (0.6), s1 -> t1 (0.4), s2 -> t2 (0.45), s3 -> t3 (0.7).
        assert_eq!(d.s2t, links(&[(0, 0), (1, 1), (2, 2), (3, 3)]));
        let sym = |how| symmetrize(&d, how);
        assert_eq!(
            sym(Symmetrization::Intersection),
            links(&[(0, 0), (2, 2), (3, 3)])
        );
        let all = links(&[(0, 0), (0, 1), (1, 1), (2, 2), (3, 3)]);
        assert_eq!(sym(Symmetrization::Union), all);
        // (0,1) neighbours (0,0) and target 1 is unaligned; then (1,1) neighbours both.
        assert_eq!(sym(Symmetrization::GrowDiagFinal), all);
        assert_eq!(sym(Symmetrization::S2t), d.s2t);
        assert_eq!(sym(Symmetrization::T2s), d.t2s);
        assert_eq!(
            align(&matrix(), Extraction::Argmax, Symmetrization::Intersection),
            sym(Symmetrization::Intersection)
        );
    }

    #[test]
    fn thresholds_normalise_rows_and_columns() {
        let d = directions(&matrix(), Extraction::Threshold(0.28));
        // Rows sum to 1: cells >= 0.28.
        assert_eq!(
            d.t2s,
            links(&[(0, 0), (1, 0), (0, 1), (1, 1), (2, 2), (3, 2), (3, 3)])
        );
        // Column sums: 1.2, 0.85, 0.75, 1.2. s0: 0.6/1.2, 0.5/1.2 >= 0.28; s1: 0.3/0.85,
        // 0.4/0.85; s2: 0.45/0.75 (0.2/0.75 < 0.28); s3: 0.4/1.2, 0.7/1.2.
        assert_eq!(
            d.s2t,
            links(&[(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (3, 2), (3, 3)])
        );
        assert!(directions(&[vec![0.0, 0.0]], Extraction::Threshold(0.1)) == Directions::default());
    }

    #[test]
    fn symmetrizes_with_known_answers() {
        let d = Directions {
            s2t: links(&[(0, 0), (1, 1), (2, 3), (3, 3), (4, 0), (6, 6)]),
            t2s: links(&[(0, 0), (2, 2), (3, 3), (6, 7), (7, 6)]),
        };
        let sym = |how| symmetrize(&d, how);
        assert_eq!(sym(Symmetrization::Intersection), links(&[(0, 0), (3, 3)]));
        assert_eq!(
            sym(Symmetrization::Union),
            links(&[
                (0, 0),
                (1, 1),
                (2, 2),
                (2, 3),
                (3, 3),
                (4, 0),
                (6, 6),
                (6, 7),
                (7, 6)
            ])
        );
        // Grow: (1,1) touches (0,0) diagonally, then (2,2) touches (1,1); (2,3) is refused
        // (source 2 and target 3 are both aligned by then); (4,0), (6,6), (6,7) and (7,6)
        // touch nothing in A. Final(t2s) adds (6,7) and (7,6); final(s2t) adds (4,0) (source
        // 4 unaligned) and refuses (6,6) (source 6 and target 6 now aligned).
        assert_eq!(
            sym(Symmetrization::GrowDiagFinal),
            links(&[(0, 0), (1, 1), (2, 2), (3, 3), (4, 0), (6, 7), (7, 6)])
        );
    }

    #[test]
    fn names_round_trip() {
        for m in Symmetrization::ALL {
            assert_eq!(m.name().parse::<Symmetrization>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert!("gdfa".parse::<Symmetrization>().is_err());
    }

    #[test]
    fn baselines() {
        assert_eq!(diagonal(3, 2), links(&[(0, 0), (1, 1)]));
        assert_eq!(
            scaled_diagonal(2, 4),
            links(&[(0, 0), (0, 1), (1, 2), (1, 3)])
        );
        assert_eq!(scaled_diagonal(4, 2), links(&[(1, 0), (3, 1)]));
        assert!(scaled_diagonal(0, 3).is_empty());
    }

    fn write_fixture(dir: &Path, links_file: &str) {
        std::fs::write(
            dir.join(GOLD_SOURCE_FILE),
            "<s snum=0001> the house .  </s>\n<s snum=0002> yes  </s>\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(GOLD_TARGET_FILE),
            "<s snum=0001> la chambre .  </s>\n<s snum=0002> oui  </s>\n",
        )
        .unwrap();
        std::fs::write(dir.join(GOLD_LINKS_FILE), links_file).unwrap();
    }

    #[test]
    fn loads_a_gold_fixture() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(
            dir.path(),
            "0001 1 1 P\n0001 2 2 S\n0001 3 3 S\n\n0002 1 1 S\n",
        );
        let gold = load_gold(dir.path()).unwrap();
        assert_eq!(gold.len(), 2);
        assert_eq!(gold[0].id, "0001");
        assert_eq!(gold[0].source, vec!["the", "house", "."]);
        assert_eq!(gold[0].target, vec!["la", "chambre", "."]);
        assert_eq!(gold[0].sure, links(&[(1, 1), (2, 2)]));
        assert_eq!(gold[0].possible, links(&[(0, 0), (1, 1), (2, 2)]));
        assert_eq!(gold[1].sure, links(&[(0, 0)]));

        let err = |links_file: &str| {
            write_fixture(dir.path(), links_file);
            load_gold(dir.path()).unwrap_err().to_string()
        };
        let e = err("0001 1 1 S\n0001 2 S\n");
        assert!(e.contains(GOLD_LINKS_FILE) && e.contains("line 2"), "{e}");
        let e = err("0001 1 1 S\n0001 4 1 S\n");
        assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
        let e = err("0002 1 2 S\n");
        assert!(e.contains("line 1") && e.contains("out of range"), "{e}");
        let e = err("0001 0 1 S\n");
        assert!(e.contains("NULL"), "{e}");
        let e = err("0003 1 1 S\n");
        assert!(e.contains("not in"), "{e}");
        let e = err("0001 1 1 X\n");
        assert!(e.contains("label"), "{e}");

        write_fixture(dir.path(), "");
        std::fs::write(
            dir.path().join(GOLD_TARGET_FILE),
            "<s snum=0001> la chambre .  </s>\noui\n",
        )
        .unwrap();
        let e = load_gold(dir.path()).unwrap_err().to_string();
        assert!(e.contains(GOLD_TARGET_FILE) && e.contains("line 2"), "{e}");
        std::fs::remove_file(dir.path().join(GOLD_TARGET_FILE)).unwrap();
        assert!(matches!(load_gold(dir.path()), Err(Error::Io { .. })));
    }

    #[test]
    fn loads_the_real_hansards_gold() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/align-gold-en-fr-hansards-naacl2003");
        if !dir.join(GOLD_LINKS_FILE).exists() {
            return;
        }
        let gold = load_gold(&dir).unwrap();
        assert_eq!(gold.len(), 447);
        assert_eq!(gold[0].id, "0001");
        let sure: usize = gold.iter().map(|g| g.sure.len()).sum();
        let possible: usize = gold.iter().map(|g| g.possible.len()).sum();
        assert_eq!((sure, possible), (4038, 4038 + 13400));
        assert!(gold.iter().all(|g| g.sure.is_subset(&g.possible)));

        let hyps: Vec<Links> = gold.iter().map(|g| g.sure.clone()).collect();
        let s = score_corpus(&gold, &hyps).unwrap();
        assert_eq!((s.aer, s.recall, s.precision), (0.0, 1.0, 1.0));

        // Trivial baselines, for reference (cargo test ... -- --nocapture shows them).
        type Baseline = fn(usize, usize) -> Links;
        let baselines: [(&str, Baseline); 2] =
            [("diagonal", diagonal), ("scaled diagonal", scaled_diagonal)];
        for (name, baseline) in baselines {
            let hyps: Vec<Links> = gold
                .iter()
                .map(|g| baseline(g.source.len(), g.target.len()))
                .collect();
            let s = score_corpus(&gold, &hyps).unwrap();
            eprintln!(
                "{name}: precision {:.4} recall {:.4} AER {:.4} ({} links)",
                s.precision, s.recall, s.aer, s.counts.hyp
            );
            assert!(s.aer > 0.0 && s.aer < 1.0);
        }
    }
}
