//! Plots of what a run's history shows, as SVG and PNG (plotters, the
//! embedded font of [`crate::plot`]):
//! - **t-visibility**: P(a read sent t after the latest 201 of its key
//!   returns it or newer) against t on a log axis, one line per series (per
//!   node in a run, per configuration in the report) — the PBS paper's curve —
//!   and, dashed in the colour of the curve it belongs to, the curve the
//!   WARS model predicts from the same run's delays;
//! - **timeline**: operations per 250 ms that succeeded, failed, or ended
//!   indeterminate, over the run, with every nemesis fault as a shaded band
//!   labelled with what it did.

use crate::error::Result;
use crate::history::{FaultRecord, History, Outcome};
use crate::plot::{svg_and_png, PALETTE};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Timeline bucket, µs.
const BUCKET_US: u64 = 250_000;

/// One t-visibility line: a label and (t in ms, P(fresh) in 0..=1) points,
/// t ascending.
pub type Curve = (String, Vec<(f64, f64)>);

type DrawResult = std::result::Result<(), String>;

/// The t-visibility plot of the measured `curves` and the `predicted` ones
/// (`STEM.svg`, `STEM.png`). A predicted curve `(i, curve)` is drawn dashed
/// in the colour of measured curve `i`, over the time range the measured
/// ones span.
///
/// # Errors
/// A file that cannot be written.
pub fn visibility_plot(
    stem: &Path,
    title: &str,
    curves: &[Curve],
    predicted: &[(usize, Curve)],
) -> Result<()> {
    svg_and_png!(stem, |root, scale| visibility(
        root, title, curves, predicted, scale
    ))
}

fn visibility<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    curves: &[Curve],
    predicted: &[(usize, Curve)],
    scale: f64,
) -> DrawResult {
    let px = |v: f64| (v * scale).round() as i32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", px(20.0)))
        .map_err(|e| e.to_string())?;
    let points = curves.iter().flat_map(|(_, p)| p.iter());
    let (lo, hi) = points.fold((f64::MAX, f64::MIN), |(lo, hi), (t, _)| {
        (lo.min(*t), hi.max(*t))
    });
    if lo > hi {
        root.draw(&Text::new(
            "no read followed an acknowledged write",
            (px(40.0), px(40.0)),
            ("sans-serif", px(18.0)),
        ))
        .map_err(|e| e.to_string())?;
        return root.present().map_err(|e| e.to_string());
    }
    let lo = 10f64.powf(lo.max(1e-3).log10().floor());
    let hi = 10f64.powf((hi.max(lo * 10.0).log10() + 1e-9).ceil());
    let mut chart = ChartBuilder::on(&root)
        .margin(px(14.0))
        .x_label_area_size(px(45.0))
        .y_label_area_size(px(60.0))
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..105f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time from the latest 201 of the key to the read (ms)")
        .y_desc("% of reads that returned it or newer")
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .label_style(("sans-serif", px(13.0)))
        .axis_desc_style(("sans-serif", px(14.0)))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, pts)) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = pts.iter().map(|(t, p)| (*t, p * 100.0)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Circle::new(p, px(3.0), color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    for (i, (label, pts)) in predicted {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .filter(|(t, _)| (lo..=hi).contains(t))
            .map(|(t, p)| (*t, p * 100.0))
            .collect();
        let dash = |style: ShapeStyle| {
            DashedLineSeries::new(pts.clone(), px(6.0) as u32, px(4.0) as u32, style)
        };
        chart
            .draw_series(dash(color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(3))
            });
    }
    series_legend(&mut chart, SeriesLabelPosition::LowerRight, &px)?;
    root.present().map_err(|e| e.to_string())
}

/// The timeline of `history` with its faults (`STEM.svg`, `STEM.png`).
///
/// # Errors
/// A file that cannot be written.
pub fn timeline_plot(stem: &Path, title: &str, history: &History) -> Result<()> {
    svg_and_png!(stem, |root, scale| timeline(root, title, history, scale))
}

/// Operations completed per bucket: (ok, failed, indeterminate).
pub fn buckets(history: &History) -> Vec<[u64; 3]> {
    let end = history.ops.iter().map(|o| o.complete_us).max().unwrap_or(0);
    let n = (end / BUCKET_US + 1).min(100_000) as usize;
    let mut out = vec![[0u64; 3]; n];
    for op in &history.ops {
        let i = ((op.complete_us / BUCKET_US) as usize).min(n - 1);
        let k = match op.outcome {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Indeterminate => 2,
        };
        out[i][k] += 1;
    }
    out
}

fn timeline<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    history: &History,
    scale: f64,
) -> DrawResult {
    let px = |v: f64| (v * scale).round() as i32;
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", px(20.0)))
        .map_err(|e| e.to_string())?;
    let counts = buckets(history);
    let secs = counts.len() as f64 * BUCKET_US as f64 / 1e6;
    let per_s = |c: u64| c as f64 * 1e6 / BUCKET_US as f64;
    let top = counts
        .iter()
        .flat_map(|c| c.iter().copied())
        .map(per_s)
        .fold(1.0, f64::max)
        * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .margin(px(14.0))
        .x_label_area_size(px(45.0))
        .y_label_area_size(px(60.0))
        .build_cartesian_2d(0f64..secs.max(1.0), 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time into the run (s)")
        .y_desc("operations per second")
        .label_style(("sans-serif", px(13.0)))
        .axis_desc_style(("sans-serif", px(14.0)))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, f) in history.faults.iter().enumerate() {
        draw_fault(&mut chart, f, i, secs, top, &px)?;
    }
    let names = ["ok", "failed", "indeterminate (503, timeout)"];
    let colors = [PALETTE[2], PALETTE[3], PALETTE[1]];
    for k in 0..3 {
        let pts: Vec<(f64, f64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| ((i as f64 + 0.5) * BUCKET_US as f64 / 1e6, per_s(c[k])))
            .collect();
        let color = colors[k];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(names[k])
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    series_legend(&mut chart, SeriesLabelPosition::UpperRight, &px)?;
    root.present().map_err(|e| e.to_string())
}

/// The legend of the labelled series, in a white box at `position`.
fn series_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<impl Ranged<ValueType = f64>, RangedCoordf64>>,
    position: SeriesLabelPosition,
    px: &dyn Fn(f64) -> i32,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", px(13.0)))
        .draw()
        .map_err(|e| e.to_string())
}

/// A fault as a shaded band from its start to its end (or the end of the
/// run), with its description at the top.
fn draw_fault<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    f: &FaultRecord,
    i: usize,
    secs: f64,
    top: f64,
    px: &dyn Fn(f64) -> i32,
) -> DrawResult {
    let from = f.at_us as f64 / 1e6;
    let to = f.until_us.map_or(secs, |u| u as f64 / 1e6).max(from + 0.05);
    let shade = RGBColor(120, 120, 120).mix(0.18);
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(from, 0.0), (to, top)],
            shade.filled(),
        )))
        .map_err(|e| e.to_string())?;
    // Labels step down so that neighbouring faults do not overlap.
    let y = top * (0.97 - 0.06 * (i % 4) as f64);
    chart
        .draw_series(std::iter::once(Text::new(
            f.detail.chars().take(48).collect::<String>(),
            (from, y),
            ("sans-serif", px(12.0)),
        )))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryOp;
    use crate::workload::OpKind;

    fn op(id: u64, complete_us: u64, outcome: Outcome) -> HistoryOp {
        HistoryOp {
            id,
            session: 0,
            kind: OpKind::Write,
            key: "k".into(),
            node: None,
            invoke_us: complete_us.saturating_sub(10),
            complete_us,
            outcome,
            value: Some(format!("v{id}")),
            version: None,
        }
    }

    #[test]
    fn operations_land_in_their_quarter_second_by_outcome() {
        let h = History {
            ops: vec![
                op(0, 10_000, Outcome::Ok),
                op(1, 260_000, Outcome::Failed),
                op(2, 270_000, Outcome::Indeterminate),
                op(3, 600_000, Outcome::Ok),
            ],
            faults: Vec::new(),
        };
        assert_eq!(buckets(&h), vec![[1, 0, 0], [0, 1, 1], [1, 0, 0]]);
        assert!(buckets(&History::default()).len() == 1);
    }

    #[test]
    fn both_plots_are_written_as_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("kv-plot-consistency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = History {
            ops: (0..40).map(|i| op(i, i * 50_000, Outcome::Ok)).collect(),
            faults: vec![FaultRecord {
                at_us: 500_000,
                until_us: Some(1_000_000),
                kind: "pause".into(),
                nodes: vec![2],
                detail: "node 2 paused for 500 ms <&>".into(),
            }],
        };
        timeline_plot(&dir.join("timeline"), "timeline", &h).unwrap();
        let curves = vec![(
            "node 1".to_string(),
            vec![(0.5, 0.2), (5.0, 0.8), (500.0, 1.0)],
        )];
        let predicted = vec![(
            0,
            (
                "node 1, WARS".to_string(),
                vec![(0.0, 0.1), (1.0, 0.5), (100.0, 0.9), (1e6, 1.0)],
            ),
        )];
        visibility_plot(&dir.join("vis"), "t-visibility", &curves, &predicted).unwrap();
        visibility_plot(&dir.join("empty"), "t-visibility", &[], &predicted).unwrap();
        for f in ["timeline", "vis", "empty"] {
            let svg = std::fs::read_to_string(dir.join(format!("{f}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{f}");
            assert!(
                std::fs::metadata(dir.join(format!("{f}.png")))
                    .unwrap()
                    .len()
                    > 1000
            );
        }
        let vis = std::fs::read_to_string(dir.join("vis.svg")).unwrap();
        assert!(
            vis.contains("node 1, WARS") && vis.contains("node 1"),
            "the predicted curve is in the legend"
        );
        let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
        assert!(
            svg.contains("node 2 paused") && svg.contains("&lt;&amp;&gt;"),
            "the fault is labelled, escaped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
