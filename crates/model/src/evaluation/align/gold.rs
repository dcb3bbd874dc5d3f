//! Reading gold word alignments: the HLT-NAACL 2003 shared-task format of the Hansards
//! en-fr test set ([`load_gold`]), the RWTH German-English Europarl set ([`load_rwth`]), and
//! which of the two a folder holds ([`GoldSet::open`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::Links;
use crate::{Error, Result};

/// Source (English) sentences of the gold set, `<s snum=NNNN> words </s>` per line.
pub const GOLD_SOURCE_FILE: &str = "test.e";
/// Target (French) sentences of the gold set, same format as [`GOLD_SOURCE_FILE`].
pub const GOLD_TARGET_FILE: &str = "test.f";
/// Gold links without NULL links, `SNUM POS_EN POS_FR S|P` per line, positions 1-based.
pub const GOLD_LINKS_FILE: &str = "test.wa.nonullalign";
/// English sentences of the Hansards trial set, on which a model's method is chosen.
pub const TRIAL_SOURCE_FILE: &str = "trial.e";
/// French sentences of the Hansards trial set.
pub const TRIAL_TARGET_FILE: &str = "trial.f";
/// Links of the Hansards trial set.
pub const TRIAL_LINKS_FILE: &str = "trial.wa";
/// Sentences of the RWTH set that act as its trial set (it has none of its own); the rest
/// are the test set.
pub const RWTH_TRIAL_SENTENCES: usize = 50;

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
    load_gold_files(
        &dir.join(GOLD_SOURCE_FILE),
        &dir.join(GOLD_TARGET_FILE),
        &dir.join(GOLD_LINKS_FILE),
    )
}

/// The Hansards trial set: [`TRIAL_SOURCE_FILE`], [`TRIAL_TARGET_FILE`] and
/// [`TRIAL_LINKS_FILE`] in `dir`, in the format of [`load_gold`] (it has no NULL links).
pub fn load_trial(dir: &Path) -> Result<Vec<GoldSentence>> {
    load_gold_files(
        &dir.join(TRIAL_SOURCE_FILE),
        &dir.join(TRIAL_TARGET_FILE),
        &dir.join(TRIAL_LINKS_FILE),
    )
}

/// [`load_gold`] from the three files named.
pub fn load_gold_files(e_path: &Path, f_path: &Path, a_path: &Path) -> Result<Vec<GoldSentence>> {
    let (e_path, f_path, a_path) = (
        e_path.to_path_buf(),
        f_path.to_path_buf(),
        a_path.to_path_buf(),
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

/// English sentences of the RWTH set, one tokenised sentence per line.
pub const RWTH_ENGLISH_FILE: &str = "en.utf8";
/// German sentences of the RWTH set, line by line with [`RWTH_ENGLISH_FILE`].
pub const RWTH_GERMAN_FILE: &str = "de.utf8";
/// RWTH links, one line per sentence: `G-E` sure and `GpE` possible, German first, 1-based.
pub const RWTH_LINKS_FILE: &str = "alignmentDeEn.talp";

/// Reads the RWTH German-English gold alignments (Europarl, 508 pairs) from `dir`, turned
/// round to English → German, the direction the `en→de` models translate: source = English.
///
/// [`RWTH_ENGLISH_FILE`] and [`RWTH_GERMAN_FILE`] hold one tokenised sentence a line;
/// [`RWTH_LINKS_FILE`] holds one line of links per sentence, `G-E` (sure) or `GpE`
/// (possible), German position first, 1-based. The ids are line numbers (`1`, `2`, ...);
/// a line blank in all three files is skipped.
///
/// # Errors
///
/// [`Error::Io`] when a file cannot be read; [`Error::BadFile`], naming the file and line,
/// for files of different lengths, a malformed link or a position 0 or past the end.
pub fn load_rwth(dir: &Path) -> Result<Vec<GoldSentence>> {
    let (en_path, de_path, a_path) = (
        dir.join(RWTH_ENGLISH_FILE),
        dir.join(RWTH_GERMAN_FILE),
        dir.join(RWTH_LINKS_FILE),
    );
    let (en, de, links) = (
        read_text(&en_path)?,
        read_text(&de_path)?,
        read_text(&a_path)?,
    );
    let (en, de, links): (Vec<&str>, Vec<&str>, Vec<&str>) = (
        en.lines().collect(),
        de.lines().collect(),
        links.lines().collect(),
    );
    if en.len() != de.len() || en.len() != links.len() {
        return Err(Error::bad_file(
            &a_path,
            format!(
                "{} English, {} German and {} link lines: they must pair up line by line",
                en.len(),
                de.len(),
                links.len()
            ),
        ));
    }
    let mut gold = Vec::with_capacity(en.len());
    for (i, ((e, d), l)) in en.iter().zip(&de).zip(&links).enumerate() {
        let bad = |message: String| Error::bad_file(&a_path, format!("line {}: {message}", i + 1));
        let source: Vec<String> = e.split_whitespace().map(str::to_string).collect();
        let target: Vec<String> = d.split_whitespace().map(str::to_string).collect();
        if source.is_empty() && target.is_empty() && l.trim().is_empty() {
            continue; // the set's last line is blank in all three files
        }
        let (mut sure, mut possible) = (Links::new(), Links::new());
        for link in l.split_whitespace() {
            let (sep, is_sure) = if link.contains('-') {
                ('-', true)
            } else {
                ('p', false)
            };
            let (g, e) = link
                .split_once(sep)
                .ok_or_else(|| bad(format!("`{link}` is not `G-E` or `GpE`")))?;
            let position = |field: &str, len: usize, side: &str| -> Result<usize> {
                match field.parse::<usize>() {
                    Ok(p) if (1..=len).contains(&p) => Ok(p - 1),
                    _ => Err(bad(format!(
                        "`{link}`: {side} position {field} is not in 1..={len}"
                    ))),
                }
            };
            let pair = (
                position(e, source.len(), "English")?,
                position(g, target.len(), "German")?,
            );
            if is_sure {
                sure.insert(pair);
            }
            possible.insert(pair);
        }
        gold.push(GoldSentence {
            id: (i + 1).to_string(),
            source,
            target,
            sure,
            possible,
        });
    }
    Ok(gold)
}

/// A gold alignment set and the languages it aligns (source first), split into the
/// sentences a method is chosen on (`trial`) and those it is scored on (`sentences`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldSet {
    /// A short name for tables: `hansards-naacl2003` or `rwth-europarl`.
    pub name: &'static str,
    pub source_lang: &'static str,
    pub target_lang: &'static str,
    /// The test sentences.
    pub sentences: Vec<GoldSentence>,
    /// The trial sentences, disjoint from the test ones.
    pub trial: Vec<GoldSentence>,
    /// Where the trial sentences come from, for tables.
    pub trial_note: &'static str,
}

impl GoldSet {
    /// Reads the gold set in `dir`: the Hansards en-fr files ([`load_gold`], with
    /// [`load_trial`] when the trial files are there) or the RWTH de-en ones ([`load_rwth`],
    /// as en→de, the first [`RWTH_TRIAL_SENTENCES`] as trial).
    pub fn open(dir: &Path) -> Result<Self> {
        if dir.join(GOLD_SOURCE_FILE).is_file() {
            let trial = if dir.join(TRIAL_LINKS_FILE).is_file() {
                load_trial(dir)?
            } else {
                Vec::new()
            };
            Ok(GoldSet {
                name: "hansards-naacl2003",
                source_lang: "en",
                target_lang: "fr",
                sentences: load_gold(dir)?,
                trial,
                trial_note: "the Hansards trial set (trial.*)",
            })
        } else if dir.join(RWTH_LINKS_FILE).is_file() {
            let mut sentences = load_rwth(dir)?;
            let trial: Vec<GoldSentence> = sentences
                .drain(..RWTH_TRIAL_SENTENCES.min(sentences.len() / 2))
                .collect();
            Ok(GoldSet {
                name: "rwth-europarl",
                source_lang: "en",
                target_lang: "de",
                sentences,
                trial,
                trial_note: "the first 50 RWTH pairs (the set has no trial split; the test figures are over the other 458)",
            })
        } else {
            Err(Error::Invalid(format!(
                "{} holds no gold alignments this build reads: the Hansards files ({GOLD_SOURCE_FILE}, {GOLD_TARGET_FILE}, {GOLD_LINKS_FILE}) or the RWTH ones ({RWTH_ENGLISH_FILE}, {RWTH_GERMAN_FILE}, {RWTH_LINKS_FILE})",
                dir.display()
            )))
        }
    }
}
