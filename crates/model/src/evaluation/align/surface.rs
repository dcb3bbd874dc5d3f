//! Gold sentences as the models read text. The Hansards gold set is tokenised the way its
//! statistical aligners wanted: lowercased, and French with its elisions and contractions
//! undone (`ce ne est`, `de le`, `à le heure`). A model trained on ordinary text forced to
//! read that translates text it has never seen, and its attention shows it. [`surface`]
//! writes each gold sentence as ordinary text, each written word remembering the gold words
//! it stands for (`du` for `de le`, `l'heure` for `le heure`, a capital first letter), and
//! [`expand`] turns links between written words back into links between gold words, so the
//! scoring is untouched. The peer aligner gets the mirror treatment (its training text is
//! tokenised like the gold, see `bench/reference/align_peer.py`).

use super::Links;

/// A sentence as written, with the gold words behind each written word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Surface {
    /// The written words.
    pub words: Vec<String>,
    /// For each written word, the 0-based gold words it stands for, ascending.
    pub gold: Vec<Vec<usize>>,
}

impl Surface {
    /// The gold words unchanged, one written word each.
    pub fn verbatim(words: &[String]) -> Self {
        Surface {
            words: words.to_vec(),
            gold: (0..words.len()).map(|i| vec![i]).collect(),
        }
    }
}

/// Whether a French word starts with a vowel sound that elides the word before it (a vowel
/// or an `h`, mute in most words).
fn elides_before(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| "aeiouyhéèêëàâäîïôöûüAEIOUYHÉÈÊÀÂÎÔÛ".contains(c))
}

/// The elided form of a French word before a vowel (`le` → `l'`), if it has one.
fn elided(word: &str, next: &str) -> Option<&'static str> {
    Some(match word {
        "le" | "la" => "l'",
        "ne" => "n'",
        "de" => "d'",
        "je" => "j'",
        "me" => "m'",
        "te" => "t'",
        "se" => "s'",
        "que" => "qu'",
        "lorsque" => "lorsqu'",
        "puisque" => "puisqu'",
        "jusque" => "jusqu'",
        "ce" if matches!(next, "est" | "était" | "étaient" | "en") => "c'",
        "si" if matches!(next, "il" | "ils") => "s'",
        _ => return None,
    })
}

/// Old German spellings the RWTH gold keeps and the models never saw.
fn modern_german(word: &str) -> Option<&'static str> {
    Some(match word {
        "daß" => "dass",
        "muß" => "muss",
        "mußte" => "musste",
        "mußten" => "mussten",
        "müßte" => "müsste",
        "müßten" => "müssten",
        "läßt" => "lässt",
        "bißchen" => "bisschen",
        "bewußt" => "bewusst",
        "Ausschuß" => "Ausschuss",
        "Beschluß" => "Beschluss",
        "Schluß" => "Schluss",
        "Einfluß" => "Einfluss",
        "Prozeß" => "Prozess",
        _ => return None,
    })
}

/// A gold sentence of language `lang` as ordinary text: French elisions and contractions
/// redone, German spelling modernised, and the first letter capitalised.
pub fn surface(words: &[String], lang: &str) -> Surface {
    let mut out = Surface {
        words: Vec::new(),
        gold: Vec::new(),
    };
    let mut i = 0;
    while i < words.len() {
        let a = words[i].as_str();
        let b = words.get(i + 1).map(String::as_str);
        let c = words.get(i + 2).map(String::as_str);
        let mut push = |w: String, g: Vec<usize>| {
            out.words.push(w);
            out.gold.push(g);
        };
        if lang == "fr" {
            // de le → du, à le → au (not before a vowel: de l'an), de les → des, à les → aux
            let contracted = match (a, b) {
                ("de", Some("les")) => Some("des"),
                ("à", Some("les")) => Some("aux"),
                ("de", Some("le")) if !c.is_some_and(elides_before) => Some("du"),
                ("à", Some("le")) if !c.is_some_and(elides_before) => Some("au"),
                _ => None,
            };
            if let Some(w) = contracted {
                push(w.to_string(), vec![i, i + 1]);
                i += 2;
                continue;
            }
            if let Some(b) = b {
                if let Some(e) = elided(a, b).filter(|_| elides_before(b)) {
                    push(format!("{e}{b}"), vec![i, i + 1]);
                    i += 2;
                    continue;
                }
                // aujourd' hui → aujourd'hui
                if a.ends_with('\'') && b.chars().next().is_some_and(char::is_alphabetic) {
                    push(format!("{a}{b}"), vec![i, i + 1]);
                    i += 2;
                    continue;
                }
            }
        }
        let w = match lang {
            "de" => modern_german(a).map_or_else(|| a.to_string(), str::to_string),
            _ => a.to_string(),
        };
        push(w, vec![i]);
        i += 1;
    }
    if let Some(first) = out.words.first_mut() {
        let mut chars = first.chars();
        if let Some(c) = chars.next()
            && c.is_lowercase()
        {
            *first = c.to_uppercase().chain(chars).collect();
        }
    }
    out
}

/// Links between written words ([`Surface::words`]) as links between gold words: every gold
/// word of the source side with every gold word of the target side.
pub fn expand(links: &Links, source: &Surface, target: &Surface) -> Links {
    let mut out = Links::new();
    for &(s, t) in links {
        if let (Some(gs), Some(gt)) = (source.gold.get(s), target.gold.get(t)) {
            for &a in gs {
                for &b in gt {
                    out.insert((a, b));
                }
            }
        }
    }
    out
}
