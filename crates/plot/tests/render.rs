//! Renders heatmaps and loss curves in both formats and checks the bytes: PNG decodes with the
//! promised size and cell colours, SVG has one rectangle per cell and escaped text, bad input
//! errors. Writes sample images to `target/plot-samples/` for a person to look at.

use std::path::PathBuf;

use attnscope_plot::{
    Format, HeatmapSpec, LossCurve, Palette, PlotError, Scale, heatmap, heatmap_geometry,
    loss_curve,
};

fn tokens(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A soft alignment: each target row peaks near its diagonal position, rows sum to 1.
fn soft_alignment(rows: usize, cols: usize, sharpness: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f32 / 1000.0
    };
    (0..rows)
        .map(|r| {
            let centre = (r as f32 + 0.5) * cols as f32 / rows as f32 - 0.5;
            let raw: Vec<f32> = (0..cols)
                .map(|c| {
                    let d = c as f32 - centre;
                    (-(d * d) / sharpness).exp() + 0.02 * noise()
                })
                .collect();
            let sum: f32 = raw.iter().sum();
            raw.iter().map(|v| v / sum).collect()
        })
        .collect()
}

fn sample_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plot-samples");
    std::fs::create_dir_all(&dir).expect("create target/plot-samples");
    dir
}

fn save(name: &str, bytes: &[u8]) {
    std::fs::write(sample_dir().join(name), bytes).expect("write sample");
}

struct Decoded {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Decoded {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

fn decode_png(bytes: &[u8]) -> Decoded {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Decoded {
        width: info.width,
        height: info.height,
        rgb: buf,
    }
}

struct French {
    source: Vec<String>,
    target: Vec<String>,
    weights: Vec<Vec<f32>>,
}

/// 6 English target rows over 8 French source columns, with accents.
fn french() -> French {
    let source = tokens(&["▁L'", "élève", "▁lit", "▁à", "▁l'", "école", "▁.", "</s>"]);
    let target = tokens(&["▁The", "▁student", "▁reads", "▁at", "▁school", "</s>"]);
    let weights = vec![
        vec![0.78, 0.12, 0.02, 0.01, 0.03, 0.01, 0.01, 0.02],
        vec![0.06, 0.86, 0.03, 0.01, 0.01, 0.01, 0.01, 0.01],
        vec![0.01, 0.05, 0.88, 0.02, 0.01, 0.01, 0.01, 0.01],
        vec![0.01, 0.01, 0.04, 0.81, 0.09, 0.02, 0.01, 0.01],
        vec![0.01, 0.01, 0.01, 0.03, 0.22, 0.68, 0.02, 0.02],
        vec![0.01, 0.01, 0.01, 0.01, 0.01, 0.04, 0.46, 0.45],
    ];
    French {
        source,
        target,
        weights,
    }
}

impl French {
    fn spec(&self, scale: Scale, palette: Palette) -> HeatmapSpec<'_> {
        HeatmapSpec {
            title: "Attention fr→en: « L'élève lit à l'école. »",
            source_tokens: &self.source,
            target_tokens: &self.target,
            weights: &self.weights,
            scale,
            palette,
        }
    }
}

#[test]
fn png_heatmap_decodes_with_cells_in_place() {
    let f = french();
    let spec = f.spec(Scale::Linear, Palette::Viridis);
    let bytes = heatmap(&spec, Format::Png).expect("render");
    save("heatmap-fr-en-6x8.png", &bytes);
    let img = decode_png(&bytes);
    let g = heatmap_geometry(&spec, Format::Png).expect("geometry");
    assert_eq!((img.width, img.height), (g.width, g.height));
    assert_eq!((g.rows, g.cols), (6, 8));
    assert!(g.width > 400 && g.height > 300, "{g:?}");
    // Every cell's middle has exactly its palette colour: row r is target token r.
    for (r, row) in f.weights.iter().enumerate() {
        for (c, &w) in row.iter().enumerate() {
            let (x, y) = g.cell_centre(r, c);
            let expected = Palette::Viridis.colour(Scale::Linear.position(w));
            assert_eq!(img.pixel(x, y), expected, "cell ({r}, {c})");
        }
    }
    // The matrix is not the white background, and the image has text (dark pixels) outside it.
    let (l, t, _, _) = g.cell_rect(0, 0);
    let (_, _, r, b) = g.cell_rect(5, 7);
    let mut dark_outside = 0;
    for y in 0..img.height {
        for x in 0..img.width {
            let p = img.pixel(x, y);
            let inside = x >= l && x < r && y >= t && y < b;
            if !inside && p.iter().all(|&v| v < 100) {
                dark_outside += 1;
            }
        }
    }
    assert!(
        dark_outside > 1000,
        "labels drawn: {dark_outside} dark pixels"
    );
    // Labels sit left of the matrix, on the rows.
    let (_, row_top, _, row_bottom) = g.cell_rect(1, 0);
    let dark_left_of_row = (0..l)
        .flat_map(|x| (row_top..row_bottom).map(move |y| (x, y)))
        .filter(|&(x, y)| img.pixel(x, y).iter().all(|&v| v < 100))
        .count();
    assert!(dark_left_of_row > 50, "row label of ▁student");
}

#[test]
fn svg_heatmap_has_one_rect_per_cell_and_escaped_labels() {
    let source = tokens(&[
        "<b>",
        "▁&",
        "\"quoted\"",
        "it's",
        "élève",
        "\n\u{7}",
        "</s>",
    ]);
    let target = tokens(&["▁Straße", "¿", "</s>"]);
    let weights = soft_alignment(3, 7, 1.0, 3);
    let spec = HeatmapSpec {
        title: "Escaping <script>alert(1)</script> & co",
        source_tokens: &source,
        target_tokens: &target,
        weights: &weights,
        scale: Scale::Linear,
        palette: Palette::Cividis,
    };
    let bytes = heatmap(&spec, Format::Svg).expect("render");
    save("heatmap-escaping.svg", &bytes);
    let svg = String::from_utf8(bytes).expect("UTF-8");
    assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
    assert!(svg.trim_end().ends_with("</svg>"));
    // The background and one rectangle per cell; the colour bar is drawn with lines.
    assert_eq!(svg.matches("<rect").count(), 1 + 3 * 7);
    // Control characters are shown, not written raw (they are not allowed in XML).
    assert!(svg.contains("\\n\u{FFFD}"));
    assert!(!svg.contains('\u{7}'));
    assert!(svg.contains("&lt;b&gt;"));
    assert!(svg.contains("▁&amp;"));
    assert!(svg.contains("&quot;quoted&quot;"));
    assert!(svg.contains("&lt;/s&gt;"));
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(!svg.contains("<b>") && !svg.contains("<script"));
    assert!(
        svg.contains(">\n▁Straße\n<") || svg.contains(">▁Straße<"),
        "label text"
    );
    assert!(svg.contains("¿"));
    assert!(svg.contains("élève"));
    // The matching PNG has the same layout scaled.
    let png = heatmap(&spec, Format::Png).expect("render png");
    save("heatmap-escaping.png", &png);
    decode_png(&png);
    // Every '&' in the document starts an entity.
    for (i, _) in svg.match_indices('&') {
        let rest = &svg[i..];
        assert!(
            ["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "bare & at {i}: {}",
            &rest[..rest.len().min(20)]
        );
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let f = french();
    let none: Vec<String> = Vec::new();
    let no_rows: Vec<Vec<f32>> = Vec::new();
    let empty_source = HeatmapSpec {
        source_tokens: &none,
        weights: &no_rows,
        ..f.spec(Scale::Linear, Palette::Greys)
    };
    let empty_target = HeatmapSpec {
        target_tokens: &none,
        weights: &no_rows,
        ..f.spec(Scale::Linear, Palette::Greys)
    };
    let mut ragged_weights = f.weights.clone();
    ragged_weights[3].pop();
    let ragged = HeatmapSpec {
        weights: &ragged_weights,
        ..f.spec(Scale::Linear, Palette::Greys)
    };
    let short_weights = f.weights[..5].to_vec();
    let short = HeatmapSpec {
        weights: &short_weights,
        ..f.spec(Scale::Linear, Palette::Greys)
    };
    let mut nan_weights = f.weights.clone();
    nan_weights[2][5] = f32::NAN;
    let nan = HeatmapSpec {
        weights: &nan_weights,
        ..f.spec(Scale::Linear, Palette::Greys)
    };
    let bad_floor = f.spec(Scale::Log { floor: 0.0 }, Palette::Greys);
    let bad_floor_high = f.spec(Scale::Log { floor: 1.0 }, Palette::Greys);
    for format in [Format::Png, Format::Svg] {
        assert!(matches!(
            heatmap(&empty_source, format),
            Err(PlotError::Empty(_))
        ));
        assert!(matches!(
            heatmap(&empty_target, format),
            Err(PlotError::Empty(_))
        ));
        let err = heatmap(&ragged, format).expect_err("ragged");
        assert!(
            matches!(
                err,
                PlotError::RaggedRow {
                    row: 3,
                    found: 7,
                    expected: 8
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "row 3 of the weights has 7 values, but there are 8 source tokens"
        );
        assert!(matches!(
            heatmap(&short, format),
            Err(PlotError::RowCount {
                found: 5,
                expected: 6
            })
        ));
        assert!(matches!(
            heatmap(&nan, format),
            Err(PlotError::NonFinite { row: 2, col: 5, .. })
        ));
        assert!(matches!(
            heatmap(&bad_floor, format),
            Err(PlotError::InvalidLogFloor(_))
        ));
        assert!(matches!(
            heatmap(&bad_floor_high, format),
            Err(PlotError::InvalidLogFloor(_))
        ));
        let empty_curve = LossCurve {
            title: "t",
            train: &[],
            dev: &[],
            x_label: "step",
            y_label: "loss",
            labels: ["train", "dev"],
        };
        assert!(matches!(
            loss_curve(&empty_curve, format),
            Err(PlotError::Empty(_))
        ));
        let nan_curve = LossCurve {
            train: &[(0.0, 1.0), (1.0, f64::NAN)],
            ..empty_curve
        };
        assert!(matches!(
            loss_curve(&nan_curve, format),
            Err(PlotError::NonFinitePoint {
                series: "train",
                index: 1
            })
        ));
    }
}

#[test]
fn log_scale_differs_from_linear_on_small_weights() {
    let source = tokens(&["▁a", "▁b", "▁c", "▁d"]);
    let target = tokens(&["▁x", "▁y"]);
    let weights = vec![
        vec![0.002, 0.01, 0.03, 0.05],
        vec![0.04, 0.005, 0.001, 0.02],
    ];
    let linear = HeatmapSpec {
        title: "small weights",
        source_tokens: &source,
        target_tokens: &target,
        weights: &weights,
        scale: Scale::Linear,
        palette: Palette::Viridis,
    };
    let log = HeatmapSpec {
        scale: Scale::log(),
        ..linear
    };
    let lin_png = heatmap(&linear, Format::Png).expect("linear");
    let log_png = heatmap(&log, Format::Png).expect("log");
    save("heatmap-small-linear.png", &lin_png);
    save("heatmap-small-log.png", &log_png);
    let (lin_img, log_img) = (decode_png(&lin_png), decode_png(&log_png));
    let g = heatmap_geometry(&log, Format::Png).expect("geometry");
    let mut differing = 0;
    for (r, row) in weights.iter().enumerate() {
        for (c, &w) in row.iter().enumerate() {
            let (x, y) = g.cell_centre(r, c);
            let lin = lin_img.pixel(x, y);
            let lg = log_img.pixel(x, y);
            assert_eq!(lg, Palette::Viridis.colour(Scale::log().position(w)));
            // Linear: all near the bottom of viridis (dark); log: spread out.
            assert!(lin[1] < 80, "linear cell ({r},{c}) = {lin:?}");
            if lin != lg {
                differing += 1;
            }
        }
    }
    assert!(differing >= 7, "{differing} of 8 cells differ");
    // 0.05 sits well up the log axis: green channel of viridis rises.
    let (x, y) = g.cell_centre(0, 3);
    assert!(log_img.pixel(x, y)[1] > 120);
    let svg = String::from_utf8(heatmap(&log, Format::Svg).expect("svg")).expect("utf8");
    assert!(svg.contains("0.001") && svg.contains("log scale"));
}

#[test]
fn loss_curve_renders_in_both_formats() {
    let train: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let step = i as f64 * 100.0;
            let wiggle = 0.08 * ((i as f64) * 0.7).sin();
            (step, 1.2 + 6.5 * (-step / 3500.0).exp() + wiggle)
        })
        .collect();
    let dev: Vec<(f64, f64)> = (0..=10)
        .map(|i| {
            let step = i as f64 * 2000.0;
            (
                step,
                1.55 + 6.0 * (-step / 3200.0).exp() + 0.0004 * (i as f64).powi(3),
            )
        })
        .collect();
    let curve = LossCurve {
        title: "bahdanau en→fr: cross-entropy",
        train: &train,
        dev: &dev,
        x_label: "step",
        y_label: "loss",
        labels: ["train", "dev"],
    };
    let png = loss_curve(&curve, Format::Png).expect("png");
    save("loss-curve.png", &png);
    let img = decode_png(&png);
    assert_eq!((img.width, img.height), (1520, 920));
    // Both series' colours appear.
    let has = |c: [u8; 3]| img.rgb.chunks(3).any(|p| p == c);
    assert!(has([0, 114, 178]), "train line");
    assert!(has([213, 94, 0]), "dev line");
    let svg = String::from_utf8(loss_curve(&curve, Format::Svg).expect("svg")).expect("utf8");
    save("loss-curve.svg", svg.as_bytes());
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for text in ["train", "dev", "step", "loss", "bahdanau en→fr"] {
        assert!(svg.contains(text), "{text}");
    }
    // A single series and a single point work too.
    let single = LossCurve {
        title: "",
        train: &[(5.0, 2.0)],
        dev: &[],
        x_label: "epoch",
        y_label: "loss",
        labels: ["train", "dev"],
    };
    decode_png(&loss_curve(&single, Format::Png).expect("single point"));
}

fn word_tokens(n: usize, seed: usize) -> Vec<String> {
    const WORDS: [&str; 16] = [
        "▁the",
        "▁élève",
        "▁Straße",
        "▁¿por",
        "▁qué",
        "s",
        "▁international",
        "ing",
        "▁naïve",
        "▁Übersetzung",
        "▁a",
        "▁ça",
        "▁coöperate",
        "ed",
        "▁über",
        "▁,",
    ];
    let mut v: Vec<String> = (0..n - 1)
        .map(|i| WORDS[(i * 7 + seed) % WORDS.len()].to_owned())
        .collect();
    v.push("</s>".to_owned());
    v
}

#[test]
fn large_heatmaps_stay_bounded_and_render() {
    for (rows, cols, name) in [
        (60, 60, "60x60"),
        (120, 120, "120x120"),
        (150, 200, "150x200"),
    ] {
        let source = word_tokens(cols, 1);
        let target = word_tokens(rows, 5);
        let weights = soft_alignment(rows, cols, 2.0, rows as u64);
        let spec = HeatmapSpec {
            title: "A long sentence pair",
            source_tokens: &source,
            target_tokens: &target,
            weights: &weights,
            scale: Scale::Linear,
            palette: Palette::Viridis,
        };
        let g = heatmap_geometry(&spec, Format::Png).expect("geometry");
        assert!(g.width <= 4000 && g.height <= 4000, "{name}: {g:?}");
        let png = heatmap(&spec, Format::Png).expect(name);
        save(&format!("heatmap-{name}.png"), &png);
        let img = decode_png(&png);
        assert_eq!((img.width, img.height), (g.width, g.height));
        let (x, y) = g.cell_centre(rows - 1, cols - 1);
        assert_eq!(
            img.pixel(x, y),
            Palette::Viridis.colour(weights[rows - 1][cols - 1])
        );
        let svg = heatmap(&spec, Format::Svg).expect(name);
        let svg = String::from_utf8(svg).expect("utf8");
        assert_eq!(svg.matches("<rect").count(), 1 + rows * cols, "{name}");
    }
}

#[test]
fn other_palettes_and_log_samples() {
    let f = french();
    for (scale, palette, name) in [
        (Scale::log(), Palette::Cividis, "heatmap-fr-en-log-cividis"),
        (Scale::Linear, Palette::Greys, "heatmap-fr-en-greys"),
    ] {
        let spec = f.spec(scale, palette);
        let png = heatmap(&spec, Format::Png).expect(name);
        save(&format!("{name}.png"), &png);
        decode_png(&png);
        let svg = heatmap(&spec, Format::Svg).expect(name);
        save(&format!("{name}.svg"), &svg);
    }
    // A single cell with a long title and a long token: nothing is cut off.
    let source = tokens(&["▁antidisestablishmentarianism-and-more-and-more"]);
    let target = tokens(&["▁x"]);
    let weights = vec![vec![1.0]];
    let spec = HeatmapSpec {
        title: "One cell, and a title much wider than the matrix below it",
        source_tokens: &source,
        target_tokens: &target,
        weights: &weights,
        scale: Scale::Linear,
        palette: Palette::Viridis,
    };
    let png = heatmap(&spec, Format::Png).expect("1x1");
    save("heatmap-1x1.png", &png);
    let img = decode_png(&png);
    // The outermost pixel columns and rows are background.
    for x in 0..img.width {
        assert_eq!(img.pixel(x, 0), [255, 255, 255]);
        assert_eq!(img.pixel(x, img.height - 1), [255, 255, 255]);
    }
    for y in 0..img.height {
        assert_eq!(img.pixel(0, y), [255, 255, 255]);
        assert_eq!(img.pixel(img.width - 1, y), [255, 255, 255]);
    }
}

#[test]
fn embedded_font_covers_the_labels() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/fonts/DejaVuSans.ttf"
    ))
    .expect("font file");
    use ab_glyph::Font;
    let font = ab_glyph::FontRef::try_from_slice(&bytes).expect("valid TTF");
    for c in "▁élèveStraße¿¡«»→…⁻⁰¹²³⁴⁵⁶⁷⁸⁹çœæøåñüöäÉÈÀ€–—’".chars()
    {
        assert_ne!(font.glyph_id(c).0, 0, "no glyph for {c:?}");
    }
}
