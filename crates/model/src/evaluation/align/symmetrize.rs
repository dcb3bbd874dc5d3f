//! Combining the two directional alignments ([`Symmetrization`]): either direction alone,
//! intersection, union, grow-diag or grow-diag-final (Koehn et al. 2003).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Links;
use super::extract::Directions;
use crate::{Error, Result};

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
    /// Steps 1 and 2 of [`Symmetrization::GrowDiagFinal`] without FINAL: only links next to
    /// the intersection are added.
    GrowDiag,
}

impl Symmetrization {
    /// Every method, in the order of the variants.
    pub const ALL: [Symmetrization; 6] = [
        Symmetrization::S2t,
        Symmetrization::T2s,
        Symmetrization::Intersection,
        Symmetrization::Union,
        Symmetrization::GrowDiagFinal,
        Symmetrization::GrowDiag,
    ];

    /// The method's name: `s2t`, `t2s`, `intersection`, `union`, `grow-diag-final`,
    /// `grow-diag`.
    pub fn name(self) -> &'static str {
        match self {
            Symmetrization::S2t => "s2t",
            Symmetrization::T2s => "t2s",
            Symmetrization::Intersection => "intersection",
            Symmetrization::Union => "union",
            Symmetrization::GrowDiagFinal => "grow-diag-final",
            Symmetrization::GrowDiag => "grow-diag",
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
                    "unknown symmetrization `{s}`: use s2t, t2s, intersection, union, grow-diag-final or grow-diag"
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

fn grow_diag(d: &Directions) -> Growing {
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
    a
}

fn grow_diag_final(d: &Directions) -> Links {
    let mut a = grow_diag(d);
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
        Symmetrization::GrowDiag => grow_diag(d).links,
    }
}
