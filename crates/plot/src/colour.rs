//! Colour scales: how a weight becomes a position on the colour axis ([`Scale`]) and how that
//! position becomes a colour ([`Palette`]). Their names (`linear`, `log`; `viridis`,
//! `cividis`, `greys`) are defined here once, for the render API, the CLI, the page's
//! controls and its permalinks.

use std::fmt;
use std::str::FromStr;

/// How attention weights map onto the colour axis.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Scale {
    /// The weight itself: 0 is the bottom of the colour bar, 1 its top.
    #[default]
    Linear,
    /// `log10` of the weight, clamped below at `floor` (which must lie in `(0, 1)`): `floor`
    /// and anything smaller is the bottom of the colour bar, 1 its top. Shows where the small
    /// weights of a peaked distribution go.
    Log {
        /// The smallest weight that is told apart from zero, e.g. [`Scale::DEFAULT_LOG_FLOOR`].
        floor: f32,
    },
}

impl Scale {
    /// The floor of [`Scale::log`].
    pub const DEFAULT_LOG_FLOOR: f32 = 1e-3;

    /// A log scale with the floor [`Scale::DEFAULT_LOG_FLOOR`] (`1e-3`).
    pub fn log() -> Self {
        Scale::Log {
            floor: Self::DEFAULT_LOG_FLOOR,
        }
    }

    /// Every kind of scale (the log one at its default floor).
    pub const ALL: [Scale; 2] = [
        Scale::Linear,
        Scale::Log {
            floor: Self::DEFAULT_LOG_FLOOR,
        },
    ];

    /// `linear` or `log`.
    pub const fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log { .. } => "log",
        }
    }

    /// The name people read: `linear` or `logarithmic`.
    pub const fn label(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log { .. } => "logarithmic",
        }
    }

    /// The weight at position `t` of the colour axis (the inverse of [`Self::position`]).
    pub fn weight_at(self, t: f32) -> f32 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Scale::Linear => t,
            Scale::Log { floor } => floor.powf(1.0 - t),
        }
    }

    /// Position of `weight` on the colour axis, in `[0, 1]`. Weights outside `[0, 1]` are
    /// clamped; a non-finite weight maps to 0.
    pub fn position(self, weight: f32) -> f32 {
        let w = if weight.is_finite() {
            weight.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self {
            Scale::Linear => w,
            Scale::Log { floor } => {
                let lo = floor.log10();
                if !lo.is_finite() || lo >= 0.0 {
                    return w;
                }
                ((w.max(floor).log10() - lo) / -lo).clamp(0.0, 1.0)
            }
        }
    }
}

/// The colours of the heatmap cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Palette {
    /// matplotlib's viridis: dark purple (0) through teal to yellow (1). Perceptually uniform
    /// and readable with the common colour-vision deficiencies.
    #[default]
    Viridis,
    /// cividis (Nuñez, Anderton & Renslow 2018): dark blue (0) to yellow (1), optimised for
    /// red-green colour-vision deficiency; near-identical for all viewers.
    Cividis,
    /// White (0) to black (1), linear in CIE lightness: for print in black and white.
    Greys,
}

/// viridis at 0, 0.1, …, 1 (matplotlib's table).
const VIRIDIS: [[u8; 3]; 11] = [
    [68, 1, 84],
    [72, 36, 117],
    [65, 68, 135],
    [53, 95, 141],
    [42, 120, 142],
    [33, 145, 140],
    [34, 168, 132],
    [68, 191, 112],
    [122, 209, 81],
    [189, 223, 38],
    [253, 231, 37],
];

/// cividis at 0, 1/16, …, 1 (sampled from the polynomial fit used by d3-scale-chromatic).
const CIVIDIS: [[u8; 3]; 17] = [
    [0, 32, 81],
    [1, 43, 101],
    [17, 54, 108],
    [38, 66, 110],
    [60, 77, 110],
    [81, 88, 110],
    [98, 100, 111],
    [114, 112, 113],
    [127, 124, 117],
    [140, 136, 119],
    [154, 148, 120],
    [169, 161, 119],
    [187, 175, 113],
    [206, 189, 104],
    [226, 203, 92],
    [243, 218, 79],
    [253, 234, 69],
];

impl Palette {
    pub const ALL: [Palette; 3] = [Palette::Viridis, Palette::Cividis, Palette::Greys];

    /// `viridis`, `cividis` or `greys`.
    pub const fn name(self) -> &'static str {
        match self {
            Palette::Viridis => "viridis",
            Palette::Cividis => "cividis",
            Palette::Greys => "greys",
        }
    }

    /// The colour (sRGB) at position `t` of the colour axis; `t` is clamped to `[0, 1]`.
    pub fn colour(self, t: f32) -> [u8; 3] {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self {
            Palette::Viridis => interpolate(&VIRIDIS, t),
            Palette::Cividis => interpolate(&CIVIDIS, t),
            Palette::Greys => {
                let v = grey_from_lightness(100.0 * (1.0 - f64::from(t)));
                [v, v, v]
            }
        }
    }
}

/// A scale or palette name this crate does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// `scale` or `palette`.
    pub kind: &'static str,
    /// What was asked for.
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = match self.kind {
            "scale" => Scale::ALL.iter().map(|s| s.name()).collect(),
            _ => Palette::ALL.iter().map(|p| p.name()).collect(),
        };
        let (last, init) = names.split_last().unwrap_or((&"", &[]));
        let choices = if init.is_empty() {
            (*last).to_owned()
        } else {
            format!("{} or {last}", init.join(", "))
        };
        write!(f, "unknown {} {:?}; use {choices}", self.kind, self.name)
    }
}

impl std::error::Error for UnknownName {}

/// Case and surrounding spaces do not matter.
fn find<T: Copy>(all: &[T], name: &str, of: fn(T) -> &'static str) -> Option<T> {
    let wanted = name.trim();
    all.iter()
        .copied()
        .find(|&x| of(x).eq_ignore_ascii_case(wanted))
}

impl FromStr for Scale {
    type Err = UnknownName;
    /// `linear`, or `log` at [`Scale::DEFAULT_LOG_FLOOR`].
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        find(&Scale::ALL, s, Scale::name).ok_or_else(|| UnknownName {
            kind: "scale",
            name: s.to_owned(),
        })
    }
}

impl FromStr for Palette {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        find(&Palette::ALL, s, Palette::name).ok_or_else(|| UnknownName {
            kind: "palette",
            name: s.to_owned(),
        })
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Palette {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serde by name (a log scale is written `log`, and read at the default floor).
macro_rules! serde_by_name {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_by_name!(Scale);
serde_by_name!(Palette);

fn interpolate(table: &[[u8; 3]], t: f32) -> [u8; 3] {
    let last = table.len().saturating_sub(1);
    let x = t * last as f32;
    let i = (x.floor() as usize).min(last.saturating_sub(1));
    let f = x - i as f32;
    let (Some(a), Some(b)) = (table.get(i), table.get(i + 1).or(table.get(i))) else {
        return [0, 0, 0];
    };
    let mix = |p: u8, q: u8| (f32::from(p) + (f32::from(q) - f32::from(p)) * f).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// The sRGB grey level whose CIE L* is `lightness` (0..=100).
fn grey_from_lightness(lightness: f64) -> u8 {
    let l = lightness.clamp(0.0, 100.0);
    let y = if l > 8.0 {
        ((l + 16.0) / 116.0).powi(3)
    } else {
        l / 903.3
    };
    let srgb = if y <= 0.003_130_8 {
        12.92 * y
    } else {
        1.055 * y.powf(1.0 / 2.4) - 0.055
    };
    (srgb * 255.0).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_ends() {
        assert_eq!(Palette::Viridis.colour(0.0), [68, 1, 84]);
        assert_eq!(Palette::Viridis.colour(1.0), [253, 231, 37]);
        assert_eq!(Palette::Cividis.colour(0.0), [0, 32, 81]);
        assert_eq!(Palette::Cividis.colour(1.0), [253, 234, 69]);
        assert_eq!(Palette::Greys.colour(0.0), [255, 255, 255]);
        assert_eq!(Palette::Greys.colour(1.0), [0, 0, 0]);
        assert_eq!(Palette::Viridis.colour(f32::NAN), [68, 1, 84]);
        assert_eq!(Palette::Viridis.colour(7.0), [253, 231, 37]);
    }

    #[test]
    fn palettes_get_monotonically_lighter() {
        for p in [Palette::Viridis, Palette::Cividis, Palette::Greys] {
            let luma =
                |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
            let mut prev = if p == Palette::Greys { f32::MAX } else { -1.0 };
            for i in 0..=100 {
                let l = luma(p.colour(i as f32 / 100.0));
                if p == Palette::Greys {
                    assert!(l <= prev, "{p:?} at {i}");
                } else {
                    assert!(l >= prev - 0.5, "{p:?} at {i}");
                }
                prev = l;
            }
        }
    }

    #[test]
    fn names_read_back_whatever_the_case_and_unknown_ones_list_the_choices() {
        for s in Scale::ALL {
            assert_eq!(s.name().parse::<Scale>(), Ok(s));
            assert!((s.position(s.weight_at(0.4)) - 0.4).abs() < 1e-5);
        }
        for p in Palette::ALL {
            assert_eq!(p.to_string().to_uppercase().parse::<Palette>(), Ok(p));
        }
        assert_eq!(" Log ".parse::<Scale>(), Ok(Scale::log()));
        let e = "magma".parse::<Palette>().unwrap_err().to_string();
        assert_eq!(
            e,
            r#"unknown palette "magma"; use viridis, cividis or greys"#
        );
    }

    #[test]
    fn scales() {
        assert_eq!(Scale::Linear.position(0.25), 0.25);
        assert_eq!(Scale::Linear.position(-1.0), 0.0);
        let log = Scale::log();
        assert_eq!(log.position(1.0), 1.0);
        assert_eq!(log.position(0.0), 0.0);
        assert_eq!(log.position(1e-3), 0.0);
        assert!((log.position(0.01) - 1.0 / 3.0).abs() < 1e-5);
        assert!((log.position(0.1) - 2.0 / 3.0).abs() < 1e-5);
    }
}
