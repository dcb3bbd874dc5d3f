//! The colour scale of the heatmap: an approximation of matplotlib's *viridis*, a
//! perceptually uniform sequential scale that reads the same in light and dark mode and in
//! greyscale. Pure Rust, unit-tested natively.

/// Viridis sampled at 0, 1/8, …, 1 (sRGB); linear interpolation in between stays within a
/// few units of the true scale.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 45, 123],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [40, 174, 128],
    [94, 201, 98],
    [173, 220, 48],
    [253, 231, 37],
];

/// The colour of a weight: `0` is deep purple, `1` is yellow. Out-of-range weights are
/// clamped; NaN counts as `0`.
pub fn viridis(weight: f32) -> [u8; 3] {
    let w = if weight.is_nan() {
        0.0
    } else {
        weight.clamp(0.0, 1.0)
    };
    let last = (VIRIDIS.len() - 1) as f32;
    let pos = w * last;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let t = pos - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |k: usize| (f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * t).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// [`viridis`] as a CSS colour, e.g. `rgb(68,1,84)`.
pub fn css_color(weight: f32) -> String {
    let [r, g, b] = viridis(weight);
    format!("rgb({r},{g},{b})")
}

/// Whether dark text reads better than light text on the colour of `weight` (WCAG relative
/// luminance above the midpoint of black and white contrast).
pub fn wants_dark_text(weight: f32) -> bool {
    let lin = |c: u8| {
        let c = f32::from(c) / 255.0;
        if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let [r, g, b] = viridis(weight);
    let l = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    l > 0.179
}

/// A CSS `linear-gradient` through the scale, for the legend.
pub fn css_gradient() -> String {
    let stops: Vec<String> = VIRIDIS
        .iter()
        .map(|[r, g, b]| format!("rgb({r},{g},{b})"))
        .collect();
    format!("linear-gradient(to right,{})", stops.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_stops_are_exact() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 145, 140]);
        assert_eq!(css_color(0.0), "rgb(68,1,84)");
    }

    #[test]
    fn clamps_and_handles_nan() {
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(7.0), viridis(1.0));
        assert_eq!(viridis(f32::NAN), viridis(0.0));
    }

    #[test]
    fn interpolates_between_stops() {
        assert_eq!(viridis(1.0 / 16.0), [70, 23, 104]);
    }

    #[test]
    fn lightness_increases_monotonically() {
        let luma = |w: f32| {
            let [r, g, b] = viridis(w);
            0.2126 * f32::from(r) + 0.7152 * f32::from(g) + 0.0722 * f32::from(b)
        };
        for i in 0..100 {
            let (a, b) = (i as f32 / 100.0, (i + 1) as f32 / 100.0);
            assert!(luma(a) <= luma(b), "{a} -> {b}");
        }
    }

    #[test]
    fn text_contrast_flips_from_light_to_dark() {
        assert!(!wants_dark_text(0.0));
        assert!(wants_dark_text(1.0));
    }

    #[test]
    fn gradient_lists_every_stop() {
        let g = css_gradient();
        assert!(g.starts_with("linear-gradient(to right,rgb(68,1,84),"));
        assert_eq!(g.matches("rgb(").count(), 9);
    }
}
