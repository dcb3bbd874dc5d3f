//! How the heatmaps are drawn: matrix or bipartite lines, subword pieces or whole words, a
//! linear or logarithmic colour scale, a threshold under which weights are not drawn, and a
//! colour-blind-safe palette. Pure Rust, unit-tested natively.

use attnscope_protocol::{EOS, WORD_START};

use crate::tokens::TokenLabel;

/// Matrix heatmap or bipartite alignment lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    #[default]
    Matrix,
    Lines,
}

/// Colour scale (weight as is, or its logarithm, 10⁻³ to 1, which shows small weights) and
/// palette (sequential, readable in greyscale and with colour-vision deficiencies): the
/// image export's own types, so the page and an exported PNG or SVG colour a weight alike.
pub use attnscope_plot::{Palette, Scale};

/// Everything that decides how a weight is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewSettings {
    pub layout: Layout,
    /// Merge subword pieces into words (source weights summed, target rows averaged).
    pub words: bool,
    pub scale: Scale,
    pub palette: Palette,
    /// Weights below this are not drawn (0: draw all).
    pub threshold: f32,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            layout: Layout::Matrix,
            words: false,
            scale: Scale::Linear,
            palette: Palette::Viridis,
            threshold: 0.0,
        }
    }
}

impl ViewSettings {
    /// A hashable summary of everything that changes how a cell is drawn.
    pub fn key(&self) -> (Layout, bool, &'static str, Palette, u32) {
        (
            self.layout,
            self.words,
            self.scale.name(),
            self.palette,
            self.threshold.to_bits(),
        )
    }

    /// The names `POST /api/render` takes for this scale and palette.
    pub fn render_names(&self) -> (&'static str, &'static str) {
        (self.scale.name(), self.palette.name())
    }

    /// Position of `w` on the colour scale, 0 to 1.
    pub fn position(&self, w: f32) -> f32 {
        self.scale.position(w)
    }

    /// The RGB colour of `w`.
    pub fn rgb(&self, w: f32) -> [u8; 3] {
        self.palette.colour(self.position(w))
    }

    /// The CSS colour of `w`, or `None` when it is under the threshold (not drawn).
    pub fn css(&self, w: f32) -> Option<String> {
        if w < self.threshold {
            return None;
        }
        let [r, g, b] = self.rgb(w);
        Some(format!("rgb({r},{g},{b})"))
    }

    /// A CSS gradient through the palette for the legend.
    pub fn gradient(&self) -> String {
        let stops: Vec<String> = (0..=8)
            .map(|i| {
                let t = i as f32 / 8.0;
                let [r, g, b] = self.rgb(self.scale.weight_at(t));
                format!("rgb({r},{g},{b})")
            })
            .collect();
        format!("linear-gradient(to right,{})", stops.join(","))
    }

    /// The legend's ends.
    pub fn legend_ends(&self) -> (&'static str, &'static str) {
        match self.scale {
            Scale::Linear => ("0", "1"),
            Scale::Log { .. } => ("10\u{207b}\u{b3}", "1"),
        }
    }
}

/// Groups piece indices into words: a piece starting with `▁` (or the first piece, or
/// [`EOS`]) starts a word, and pieces without it continue the current one.
pub fn word_groups<S: AsRef<str>>(pieces: &[S]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut after_eos = false;
    for (i, p) in pieces.iter().enumerate() {
        let p = p.as_ref();
        let starts = p.starts_with(WORD_START) || p == EOS || after_eos;
        match groups.last_mut() {
            Some(g) if !starts => g.push(i),
            _ => groups.push(vec![i]),
        }
        after_eos = p == EOS;
    }
    groups
}

/// Where each piece is shown: its own position, or with `words` the position of the word
/// ([`word_groups`]) it belongs to.
pub fn shown_positions<S: AsRef<str>>(pieces: &[S], words: bool) -> Vec<usize> {
    if !words {
        return (0..pieces.len()).collect();
    }
    let mut at = vec![0; pieces.len()];
    for (w, group) in word_groups(pieces).iter().enumerate() {
        for &p in group {
            at[p] = w;
        }
    }
    at
}

/// The middle of the pieces `[a, b)` in shown positions (see [`shown_positions`]), fractional
/// when they span several; a range past the pieces sits at the last one.
pub fn span_middle(at: &[usize], [a, b]: [usize; 2]) -> f32 {
    let pos = |i: usize| at.get(i).or(at.last()).copied().unwrap_or(0);
    (pos(a) + pos(b.max(a + 1) - 1)) as f32 / 2.0
}

/// The label of a word: its pieces' labels joined.
pub fn word_label<S: AsRef<str>>(pieces: &[S], group: &[usize]) -> String {
    let text: String = group
        .iter()
        .filter_map(|&i| pieces.get(i))
        .map(|p| TokenLabel::new(p.as_ref()).text)
        .collect();
    format!("{WORD_START}{text}")
}

/// A piece-level attention matrix merged to words: the weight of a target word on a source
/// word is the sum over the source word's pieces, averaged over the target word's pieces
/// (so rows still sum to 1).
pub fn merge_words(
    rows: &[Vec<f32>],
    source_groups: &[Vec<usize>],
    target_groups: &[Vec<usize>],
) -> Vec<Vec<f32>> {
    target_groups
        .iter()
        .map(|tg| {
            source_groups
                .iter()
                .map(|sg| {
                    let total: f32 = tg
                        .iter()
                        .filter_map(|&t| rows.get(t))
                        .map(|row| sg.iter().filter_map(|&s| row.get(s)).sum::<f32>())
                        .sum();
                    total / tg.len().max(1) as f32
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_palettes() {
        let v = ViewSettings::default();
        assert_eq!(v.rgb(0.0), [68, 1, 84]);
        assert_eq!(v.css(1.0).as_deref(), Some("rgb(253,231,37)"));
        assert_eq!(v.render_names(), ("linear", "viridis"));
        let log = ViewSettings {
            scale: Scale::log(),
            ..v
        };
        assert!((log.position(0.01) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(log.position(0.0), 0.0);
        assert_eq!(log.legend_ends().1, "1");
        let c = ViewSettings {
            palette: Palette::Cividis,
            ..v
        };
        assert_eq!(c.rgb(0.0), attnscope_plot::Palette::Cividis.colour(0.0));
        assert_eq!(c.render_names().1, "cividis");
        let g = ViewSettings {
            palette: Palette::Greys,
            threshold: 0.1,
            ..v
        };
        assert!(g.rgb(1.0)[0] < g.rgb(0.0)[0]);
        assert_eq!(g.css(0.05), None);
        assert!(g.css(0.1).is_some());
        assert_eq!(v.gradient().matches("rgb(").count(), 9);
    }

    #[test]
    fn alignment_links_sit_at_the_middle_of_their_pieces_or_words() {
        let pieces = [
            "\u{2581}The",
            "\u{2581}un",
            "believ",
            "able",
            "\u{2581}.",
            "</s>",
        ];
        let by_piece = shown_positions(&pieces, false);
        assert_eq!(by_piece, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(span_middle(&by_piece, [1, 4]), 2.0);
        assert_eq!(span_middle(&by_piece, [1, 3]), 1.5);
        let by_word = shown_positions(&pieces, true);
        assert_eq!(by_word, vec![0, 1, 1, 1, 2, 3]);
        assert_eq!(span_middle(&by_word, [1, 4]), 1.0);
        assert_eq!(span_middle(&by_word, [4, 5]), 2.0);
        // An empty or out-of-range span stays on the drawing.
        assert_eq!(span_middle(&by_word, [9, 9]), 3.0);
        assert_eq!(span_middle(&[], [0, 1]), 0.0);
    }

    #[test]
    fn pieces_merge_into_words() {
        let src = [
            "\u{2581}I",
            "\u{2581}un",
            "believ",
            "able",
            "\u{2581}.",
            "</s>",
        ];
        let groups = word_groups(&src);
        assert_eq!(groups, vec![vec![0], vec![1, 2, 3], vec![4], vec![5]]);
        assert_eq!(word_label(&src, &groups[1]), "\u{2581}unbelievable");
        assert_eq!(word_label(&src, &groups[3]), "\u{2581}</s>");
        let tgt = ["\u{2581}In", "croy", "able", "</s>"];
        let tgroups = word_groups(&tgt);
        assert_eq!(tgroups, vec![vec![0, 1, 2], vec![3]]);
        let rows = vec![
            vec![0.1, 0.6, 0.2, 0.1, 0.0, 0.0],
            vec![0.0, 0.2, 0.5, 0.3, 0.0, 0.0],
            vec![0.0, 0.0, 0.1, 0.9, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0, 0.2, 0.8],
        ];
        let m = merge_words(&rows, &groups, &tgroups);
        assert_eq!(m.len(), 2);
        assert!((m[0][1] - (0.9 + 1.0 + 1.0) / 3.0).abs() < 1e-6);
        for row in &m {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert!(word_groups::<&str>(&[]).is_empty());
        assert_eq!(word_groups(&["a", "b"]), vec![vec![0, 1]]);
    }
}
