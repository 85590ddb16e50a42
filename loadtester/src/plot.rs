//! Plots of latency distributions, as SVG and PNG (plotters).
//!
//! Every plot has two panels for one or more histograms:
//! - left, the **histogram**: share of requests per bin, with bins evenly
//!   spaced on a logarithmic latency axis (ten per decade), so that 1 ms and
//!   1 s are both readable;
//! - right, the **percentile distribution** (HdrHistogram's classic view of
//!   the CDF): latency (log scale) against the percentile, with the
//!   percentile axis stretched as `-log10(1 - q)` so that 90 %, 99 %, 99.9 %
//!   and 99.99 % are equally far apart and the long tail is visible.
//!
//! Text in the PNG is drawn with DejaVu Sans, compiled into the binary
//! (crate `dejavu`) and registered with plotters' `ab_glyph` backend, so no
//! system font or font library is needed.

use crate::error::{Error, Result};
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of the PNG, pixels.
pub(crate) const PNG_SIZE: (u32, u32) = (1400, 560);
/// Width and height of the SVG, user units.
pub(crate) const SVG_SIZE: (u32, u32) = (1200, 480);
/// Histogram bins per decade of latency.
const BINS_PER_DECADE: f64 = 10.0;

/// Series colours, in order.
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Registers the embedded font with plotters, once.
///
/// # Errors
/// When the embedded font cannot be parsed (it always can).
pub fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bad = |_| "the embedded DejaVu Sans font could not be loaded".to_owned();
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).map_err(bad)?;
        register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).map_err(bad)
    })
    .clone()
    .map_err(Error::Plot)
}

/// Runs `|root, scale| body` twice — on an SVG backend (`STEM.svg`, scale 1)
/// and on a bitmap backend (`STEM.png`, scaled to its size) — and maps
/// drawing errors to [`Error::Plot`] naming the file. plotters' backends are
/// different types and a closure cannot be generic, hence a macro.
macro_rules! svg_and_png {
    ($stem:expr, |$root:ident, $scale:ident| $body:expr) => {{
        $crate::plot::ensure_font()?;
        let svg = $stem.with_extension("svg");
        {
            let $root = plotters::prelude::SVGBackend::new(&svg, $crate::plot::SVG_SIZE)
                .into_drawing_area();
            let $scale = 1.0;
            $body.map_err(|e| $crate::error::Error::Plot(format!("{}: {e}", svg.display())))?;
        }
        let png = $stem.with_extension("png");
        {
            let $root = plotters::prelude::BitMapBackend::new(&png, $crate::plot::PNG_SIZE)
                .into_drawing_area();
            let $scale = f64::from($crate::plot::PNG_SIZE.0) / f64::from($crate::plot::SVG_SIZE.0);
            $body.map_err(|e| $crate::error::Error::Plot(format!("{}: {e}", png.display())))?;
        }
        Ok(())
    }};
}
pub(crate) use svg_and_png;

/// One line on a plot: a label and a histogram of µs values.
pub type Series<'a> = (&'a str, &'a Histogram<u64>);

/// What to draw.
struct Spec<'a> {
    title: &'a str,
    x_label: &'a str,
    share_label: &'a str,
    series: Vec<Series<'a>>,
}

/// Latency distribution plot (`STEM.svg` and `STEM.png`).
///
/// # Errors
/// A file that cannot be written.
pub fn latency_plot(stem: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    plot(stem, title, ("latency (ms)", "% of requests"), series)
}

/// Read-after-write interval plot (`STEM.svg` and `STEM.png`).
///
/// # Errors
/// A file that cannot be written.
pub fn interval_plot(stem: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    plot(
        stem,
        title,
        (
            "time from write acknowledgement to next read (ms)",
            "% of write → read pairs",
        ),
        series,
    )
}

fn plot(
    stem: &Path,
    title: &str,
    (x_label, share_label): (&str, &str),
    series: &[Series<'_>],
) -> Result<()> {
    let spec = Spec {
        title,
        x_label,
        share_label,
        series: series
            .iter()
            .copied()
            .filter(|(_, h)| !h.is_empty())
            .collect(),
    };
    svg_and_png!(stem, |root, scale| draw(root, &spec, scale))
}

type DrawResult = std::result::Result<(), String>;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    spec: &Spec<'_>,
    scale: f64,
) -> DrawResult {
    let px = |v: f64| (v * scale).round() as i32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(spec.title, ("sans-serif", px(22.0)))
        .map_err(|e| e.to_string())?;
    if spec.series.is_empty() {
        root.draw(&Text::new(
            "no data",
            (px(40.0), px(40.0)),
            ("sans-serif", px(18.0)),
        ))
        .map_err(|e| e.to_string())?;
        return root.present().map_err(|e| e.to_string());
    }
    let (legend_area, panels) = root.split_vertically(px(34.0));
    legend(&legend_area, spec, &px)?;
    let (left, right) = panels.split_horizontally(panels.dim_in_pixel().0 / 2);
    histogram_panel(&left, spec, &px)?;
    percentile_panel(&right, spec, &px)?;
    root.present().map_err(|e| e.to_string())
}

/// One legend for both panels, in a row under the title: a coloured line
/// and the label of each series, with its count.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &Spec<'_>,
    px: &dyn Fn(f64) -> i32,
) -> DrawResult {
    let font: TextStyle = ("sans-serif", px(15.0)).into();
    let mut x = px(70.0);
    let y = px(17.0);
    for (i, (name, h)) in spec.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        area.draw(&PathElement::new(
            vec![(x, y), (x + px(28.0), y)],
            color.stroke_width(px(3.0) as u32),
        ))
        .map_err(|e| e.to_string())?;
        let text = format!("{name} (n={})", h.len());
        let (w, _) = area
            .estimate_text_size(&text, &font)
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new(text, (x + px(36.0), y - px(8.0)), font.clone()))
            .map_err(|e| e.to_string())?;
        x += px(36.0) + w as i32 + px(30.0);
    }
    Ok(())
}

/// Lowest and highest recorded value over all series, in ms.
fn range_ms(series: &[Series<'_>]) -> (f64, f64) {
    let lo = series
        .iter()
        .map(|(_, h)| h.min())
        .min()
        .unwrap_or(1)
        .max(1);
    let hi = series
        .iter()
        .map(|(_, h)| h.max())
        .max()
        .unwrap_or(1)
        .max(lo + 1);
    (lo as f64 / 1000.0, hi as f64 / 1000.0)
}

/// Percent of the values per log bin, as a step line: (bin start ms, %) pairs.
pub fn log_bins(h: &Histogram<u64>, lo_decade: f64, hi_decade: f64) -> Vec<(f64, f64)> {
    let n = ((hi_decade - lo_decade) * BINS_PER_DECADE).round().max(1.0) as usize;
    let mut counts = vec![0u64; n];
    for v in h.iter_recorded() {
        let ms = (v.value_iterated_to() as f64 / 1000.0).max(1e-9);
        let i = ((ms.log10() - lo_decade) * BINS_PER_DECADE).floor();
        counts[(i.max(0.0) as usize).min(n - 1)] += v.count_at_value();
    }
    let total = h.len().max(1) as f64;
    let edge = |i: usize| 10f64.powf(lo_decade + i as f64 / BINS_PER_DECADE);
    let mut pts = Vec::with_capacity(2 * n + 2);
    for (i, c) in counts.iter().enumerate() {
        let pct = *c as f64 * 100.0 / total;
        pts.push((edge(i), pct));
        pts.push((edge(i + 1), pct));
    }
    pts
}

/// `lo..hi` widened to whole decades, so that a log axis always has labelled
/// powers of ten in range (plotters labels only those: values all between
/// 0.2 and 0.9 ms would otherwise get no label at all).
fn decades(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = lo.max(1e-6);
    let down = 10f64.powf(lo.log10().floor());
    let up = 10f64
        .powf((hi.max(lo).log10() + 1e-9).ceil())
        .max(down * 10.0);
    down..up
}

fn fmt_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

fn histogram_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &Spec<'_>,
    px: &dyn Fn(f64) -> i32,
) -> DrawResult {
    let (lo, hi) = range_ms(&spec.series);
    let (lo_dec, hi_dec) = (
        lo.log10().floor(),
        (hi.log10() + 1e-9).ceil().max(lo.log10().floor() + 1.0),
    );
    let bins: Vec<Vec<(f64, f64)>> = spec
        .series
        .iter()
        .map(|(_, h)| log_bins(h, lo_dec, hi_dec))
        .collect();
    let y_max = bins.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("histogram (log-spaced bins)", ("sans-serif", px(16.0)))
        .margin(px(12.0))
        .x_label_area_size(px(45.0))
        .y_label_area_size(px(60.0))
        .build_cartesian_2d(
            (10f64.powf(lo_dec)..10f64.powf(hi_dec)).log_scale(),
            0f64..y_max,
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.share_label)
        .x_label_formatter(&|v| fmt_ms(*v))
        .label_style(("sans-serif", px(13.0)))
        .axis_desc_style(("sans-serif", px(14.0)))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, pts) in bins.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `100 (1 - 10^-x)` as a label: 0 → "0%", 2 → "99%", 3 → "99.9%".
fn fmt_percentile(x: f64) -> String {
    let decimals = (x.round() as i32 - 2).max(0) as usize;
    format!("{:.*}%", decimals, 100.0 * (1.0 - 10f64.powf(-x)))
}

/// (−log10(1 − q), ms) points of a histogram's percentile distribution, x capped at `x_max`.
pub fn percentile_points(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(4)
        .map(|v| {
            let q: f64 = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                x_max
            } else {
                (-(1.0 - q).log10()).min(x_max)
            };
            (
                x,
                h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
            )
        })
        .collect();
    pts.insert(0, (0.0, h.min() as f64 / 1000.0));
    pts
}

fn percentile_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    spec: &Spec<'_>,
    px: &dyn Fn(f64) -> i32,
) -> DrawResult {
    let (lo, hi) = range_ms(&spec.series);
    let most = spec
        .series
        .iter()
        .map(|(_, h)| h.len())
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    // One decade past the resolution of the largest series, 2 to 6 decades.
    let x_max = (most.log10().ceil()).clamp(2.0, 6.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "percentile distribution (tail stretched)",
            ("sans-serif", px(16.0)),
        )
        .margin(px(12.0))
        .margin_right(px(36.0))
        .x_label_area_size(px(45.0))
        .y_label_area_size(px(60.0))
        .build_cartesian_2d(0f64..x_max, decades(lo, hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_labels(x_max as usize + 1)
        .y_desc(
            spec.x_label
                .split(" (")
                .next()
                .unwrap_or("value")
                .to_owned()
                + " (ms)",
        )
        .x_label_formatter(&|x| fmt_percentile(*x))
        .y_label_formatter(&|v| fmt_ms(*v))
        .label_style(("sans-serif", px(13.0)))
        .axis_desc_style(("sans-serif", px(14.0)))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (_, h)) in spec.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                percentile_points(h, x_max),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_bins_put_each_value_in_its_decade_tenth() {
        let mut h = crate::stats::new_histogram();
        h.record(1_000).unwrap(); // 1 ms → first bin of decade 0
        h.record(50_000).unwrap(); // 50 ms
        h.record(50_000).unwrap();
        let pts = log_bins(&h, 0.0, 2.0);
        assert_eq!(pts.len(), 40);
        let pct_at = |ms: f64| {
            pts.iter()
                .step_by(2)
                .find(|p| (p.0 - ms).abs() / ms < 1e-9)
                .map(|p| p.1)
        };
        assert!((pct_at(1.0).unwrap() - 100.0 / 3.0).abs() < 1e-6);
        // 50 ms lies in [10^1.6, 10^1.7).
        assert!((pct_at(10f64.powf(1.6)).unwrap() - 200.0 / 3.0).abs() < 1e-6);
        let total: f64 = pts.iter().step_by(2).map(|p| p.1).sum();
        assert!((total - 100.0).abs() < 1e-6);
    }

    #[test]
    fn sub_millisecond_ranges_widen_to_labelled_decades() {
        assert_eq!(decades(0.3, 0.9), 0.1..1.0);
        assert_eq!(decades(0.25, 40.0), 0.1..100.0);
        assert_eq!(decades(1.0, 1.0), 1.0..10.0);
        assert_eq!(fmt_ms(0.1), "0.1");
    }

    #[test]
    fn percentile_axis_labels_read_as_nines() {
        assert_eq!(fmt_percentile(0.0), "0%");
        assert_eq!(fmt_percentile(1.0), "90%");
        assert_eq!(fmt_percentile(2.0), "99%");
        assert_eq!(fmt_percentile(3.0), "99.9%");
        assert_eq!(fmt_percentile(5.0), "99.999%");
        assert_eq!(fmt_ms(0.25), "0.25");
        assert_eq!(fmt_ms(100.0), "100");
    }

    #[test]
    fn percentile_points_rise_and_end_at_the_max() {
        let mut h = crate::stats::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        let pts = percentile_points(&h, 4.0);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let last = pts.last().unwrap();
        assert_eq!(last.0, 4.0);
        assert!((last.1 - 100.0).abs() < 0.1, "{last:?}");
    }
}
