//! Training curves: train and dev loss against steps.

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::text;
use crate::{Format, LossCurve, PlotError};

/// Okabe–Ito blue and vermillion: told apart with every common colour-vision deficiency.
const TRAIN: RGBColor = RGBColor(0, 114, 178);
const DEV: RGBColor = RGBColor(213, 94, 0);
const INK: RGBColor = RGBColor(34, 34, 34);

/// Width and height in layout units (SVG pixels; PNG has twice as many).
const SIZE: (f64, f64) = (760.0, 460.0);

pub(crate) struct Plot {
    title: String,
    x_label: String,
    y_label: String,
    labels: [String; 2],
    k: f64,
    x: (f64, f64),
    y: (f64, f64),
}

fn check(series: &'static str, points: &[(f64, f64)]) -> Result<(), PlotError> {
    match points
        .iter()
        .position(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        Some(index) => Err(PlotError::NonFinitePoint { series, index }),
        None => Ok(()),
    }
}

/// The range `lo..hi` of `values`, widened by `pad` of its length on each side (and to a
/// non-empty range when all values are equal).
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = hi - lo;
    if span > 0.0 {
        (lo - pad * span, hi + pad * span)
    } else {
        let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        (lo - d, hi + d)
    }
}

/// The ticks plotters puts on `lo..hi` when asked for at most `max` labels, and their step.
fn plotters_ticks((lo, hi): (f64, f64), max: usize) -> (Vec<f64>, f64) {
    let ticks = RangedCoordf64::from(lo..hi).key_points(max);
    let step = match ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => hi - lo,
    };
    (ticks, step)
}

/// How an axis labels its ticks, chosen from their step.
#[derive(Clone, Copy)]
struct TickFormat {
    decimals: usize,
    /// Write thousands as `12k` (for large step counts).
    thousands: bool,
}

impl TickFormat {
    fn new(step: f64, largest: f64) -> Self {
        let thousands = largest >= 10_000.0 && (step / 500.0).fract().abs() < 1e-9;
        let step = if thousands { step / 1000.0 } else { step };
        // A step of 1, 2 or 5 × 10^e needs -e decimals.
        let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
        TickFormat {
            decimals: decimals.min(6),
            thousands,
        }
    }

    fn format(self, v: f64) -> String {
        let decimals = self.decimals;
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        if self.thousands && v != 0.0 {
            let k = v / 1000.0;
            let s = format!("{k:.1}");
            return format!("{}k", s.trim_end_matches('0').trim_end_matches('.'));
        }
        format!("{v:.decimals$}")
    }
}

impl Plot {
    pub(crate) fn new(curve: &LossCurve, format: Format) -> Result<Self, PlotError> {
        check("train", curve.train)?;
        check("dev", curve.dev)?;
        if curve.train.is_empty() && curve.dev.is_empty() {
            return Err(PlotError::Empty("no loss values"));
        }
        text::face()?;
        let all = || curve.train.iter().chain(curve.dev.iter());
        let x = range(all().map(|p| p.0), 0.0);
        let (ylo, yhi) = range(all().map(|p| p.1), 0.05);
        let y = (
            if ylo < 0.0 && all().all(|p| p.1 >= 0.0) {
                0.0
            } else {
                ylo
            },
            yhi,
        );
        let k = match format {
            Format::Png => 2.0,
            Format::Svg => 1.0,
        };
        Ok(Plot {
            title: text::printable(curve.title),
            x_label: text::printable(curve.x_label),
            y_label: text::printable(curve.y_label),
            labels: curve.labels.map(text::printable),
            k,
            x,
            y,
        })
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        ((SIZE.0 * self.k) as u32, (SIZE.1 * self.k) as u32)
    }

    pub(crate) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        curve: &LossCurve,
    ) -> Result<(), PlotError> {
        let u = |v: f64| v * self.k;
        let px = |v: f64| u(v).round() as u32;
        area.fill(&WHITE).map_err(crate::draw_error)?;
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(px(16.0))
            .margin_right(px(24.0))
            .x_label_area_size(px(46.0))
            .y_label_area_size(px(60.0));
        if !self.title.is_empty() {
            builder.caption(&self.title, text::font(u(20.0)).color(&INK));
        }
        let (x_labels, y_labels) = (8, 10);
        let (x_ticks, x_step) = plotters_ticks(self.x, x_labels);
        let (y_ticks, y_step) = plotters_ticks(self.y, y_labels);
        let largest = |ticks: &[f64]| ticks.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let x_format = TickFormat::new(x_step, largest(&x_ticks));
        let y_format = TickFormat::new(y_step, largest(&y_ticks));
        let mut chart = builder
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)
            .map_err(crate::draw_error)?;
        let x_fmt = |v: &f64| x_format.format(*v);
        let y_fmt = |v: &f64| y_format.format(*v);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(text::font(u(13.0)).color(&INK))
            .axis_desc_style(text::font(u(15.0)).color(&INK))
            .axis_style(INK.stroke_width(px(1.0)))
            .bold_line_style(RGBColor(0, 0, 0).mix(0.08).stroke_width(px(1.0)))
            .light_line_style(TRANSPARENT)
            .set_all_tick_mark_size(px(5.0))
            .x_labels(x_labels)
            .y_labels(y_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(crate::draw_error)?;

        let width = px(2.0);
        let legend_line = move |colour: RGBColor| {
            move |(x, y): (i32, i32)| {
                PathElement::new(
                    vec![(x, y), (x + (u(22.0)) as i32, y)],
                    colour.stroke_width(width),
                )
            }
        };
        if !curve.train.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    curve.train.iter().copied(),
                    TRAIN.stroke_width(width),
                ))
                .map_err(crate::draw_error)?
                .label(&self.labels[0])
                .legend(legend_line(TRAIN));
        }
        if !curve.dev.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    curve.dev.iter().copied(),
                    DEV.stroke_width(width),
                ))
                .map_err(crate::draw_error)?
                .label(&self.labels[1])
                .legend(legend_line(DEV));
            let radius = px(3.5);
            chart
                .draw_series(
                    curve
                        .dev
                        .iter()
                        .map(|&p| Circle::new(p, radius, DEV.filled())),
                )
                .map_err(crate::draw_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(px(12.0))
            .legend_area_size(px(30.0))
            .label_font(text::font(u(14.0)).color(&INK))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(0, 0, 0).mix(0.25))
            .draw()
            .map_err(crate::draw_error)?;
        Ok(())
    }
}
