//! Each replica's lag over the last minute, as inline SVG sparklines: entries
//! behind the leader (filled) and the age of the oldest unacknowledged entry
//! in ms (line). A stretch where the replica was down is marked red; each
//! fault injected or healed is a vertical mark (the node's own: solid; the
//! other nodes': faint), its description in the mark's tooltip.

use crate::state::{LagSample, LAG_WINDOW_MS};
use kv_shared::{NodeId, Role};
use std::collections::{BTreeMap, VecDeque};
use yew::prelude::*;

/// Width of a sparkline, in SVG units.
const W: f64 = 260.0;
/// Height of a sparkline, in SVG units.
const H: f64 = 44.0;

/// Props of [`Lag`].
#[derive(Properties, PartialEq)]
pub struct LagProps {
    /// Lag history per replica.
    pub lag: BTreeMap<NodeId, VecDeque<LagSample>>,
    /// The replicas to chart (not the leader), with their roles.
    pub replicas: Vec<(NodeId, Role)>,
    /// Faults injected or healed, on any node.
    #[prop_or_default]
    pub faults: Vec<FaultMark>,
}

/// A fault injected into (or healed on) a node, as its event reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultMark {
    /// The node.
    pub node: NodeId,
    /// When (that node's clock, ms).
    pub at_ms: u64,
    /// What: `cut from 1 (outgoing)`, `healed`…
    pub description: String,
}

/// The stretch of cluster time the charts cover: the last minute, or since
/// the first sample when the page has been open for less than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant shown (cluster ms).
    pub start: u64,
    /// Length shown, in ms (at least [`MIN_SPAN_MS`]).
    pub span: u64,
}

/// Shortest stretch a chart covers, in ms.
pub const MIN_SPAN_MS: u64 = 5_000;

impl Window {
    /// The window ending at the newest sample of `lag`.
    pub fn of(lag: &BTreeMap<NodeId, VecDeque<LagSample>>) -> Window {
        let end = lag
            .values()
            .filter_map(|s| s.back())
            .map(|l| l.at_ms)
            .max()
            .unwrap_or(0);
        let first = lag
            .values()
            .filter_map(|s| s.front())
            .map(|l| l.at_ms)
            .min()
            .unwrap_or(end);
        let start = end.saturating_sub(LAG_WINDOW_MS).max(first);
        Window {
            start,
            span: (end - start).max(MIN_SPAN_MS),
        }
    }

    /// The x coordinate of cluster time `at_ms`.
    pub fn x(&self, at_ms: u64) -> f64 {
        at_ms.saturating_sub(self.start) as f64 / self.span as f64 * W
    }
}

/// Points of a sparkline over `window`, y scaled so that `max` reaches the top.
pub fn points(
    samples: &VecDeque<LagSample>,
    window: Window,
    max: u64,
    value: fn(&LagSample) -> u64,
) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter(|s| s.at_ms >= window.start)
        .map(|s| {
            let y = H - 2.0 - value(s) as f64 / max.max(1) as f64 * (H - 8.0);
            (window.x(s.at_ms), y)
        })
        .collect()
}

/// The x ranges where the replica was down: each down sample until the next
/// sample (the last one: a short mark), merged when they touch.
pub fn down_spans(samples: &VecDeque<LagSample>, window: Window) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = Vec::new();
    let visible: Vec<&LagSample> = samples.iter().filter(|s| s.at_ms >= window.start).collect();
    for (i, s) in visible.iter().enumerate().filter(|(_, s)| !s.up) {
        let x0 = window.x(s.at_ms);
        let x1 = visible.get(i + 1).map_or(x0 + 2.0, |n| window.x(n.at_ms));
        match spans.last_mut() {
            Some(last) if last.1 >= x0 => last.1 = x1,
            _ => spans.push((x0, x1)),
        }
    }
    spans
}

fn path(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .enumerate()
        .map(|(i, (x, y))| format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn area(points: &[(f64, f64)]) -> String {
    match (points.first(), points.last()) {
        (Some(first), Some(last)) => format!(
            "M{:.1},{H} {} L{:.1},{H} Z",
            first.0,
            path(points).replacen('M', "L", 1),
            last.0
        ),
        _ => String::new(),
    }
}

/// The lag charts.
#[function_component(Lag)]
pub fn lag(props: &LagProps) -> Html {
    let window = Window::of(&props.lag);
    let label = if window.span >= LAG_WINDOW_MS {
        " · last minute".to_owned()
    } else {
        format!(" · last {} s", window.span.div_ceil(1_000))
    };
    let rows = props
        .replicas
        .iter()
        .filter(|(_, role)| *role != Role::Leader)
        .map(|&(id, role)| chart(id, role, props.lag.get(&id), window, &props.faults));
    html! {
        <section class="card lag">
            <h2>{ "Replication lag" }<span class="muted small">{ label }</span></h2>
            <div class="legend">
                <span><i class="swatch entries"></i>{ "entries behind" }</span>
                <span><i class="swatch ms"></i>{ "oldest unacked (ms)" }</span>
                <span><i class="swatch downs"></i>{ "down" }</span>
                <span><i class="swatch fault"></i>{ "fault / heal" }</span>
            </div>
            { for rows }
        </section>
    }
}

/// The marks of `faults` within `window` for the chart of node `id`.
fn fault_marks(id: NodeId, faults: &[FaultMark], window: Window) -> Html {
    faults
        .iter()
        .filter(|f| f.at_ms >= window.start && f.at_ms <= window.start + window.span)
        .map(|f| {
            let x = format!("{:.1}", window.x(f.at_ms));
            let class = classes!(
                "fault-mark",
                if f.node == id { "own" } else { "other" },
                (f.description == "healed").then_some("heal")
            );
            html! {
                <line class={class} data-node={f.node.to_string()} x1={x.clone()} x2={x} y1="0" y2={H.to_string()}>
                    <title>{ format!("node {}: {}", f.node, f.description) }</title>
                </line>
            }
        })
        .collect()
}

fn chart(
    id: NodeId,
    role: Role,
    samples: Option<&VecDeque<LagSample>>,
    window: Window,
    faults: &[FaultMark],
) -> Html {
    let empty = VecDeque::new();
    let samples = samples.unwrap_or(&empty);
    let last = samples.back().copied();
    let max_e = samples.iter().map(|s| s.entries).max().unwrap_or(0);
    let max_ms = samples.iter().map(|s| s.ms).max().unwrap_or(0);
    let pe = points(samples, window, max_e, |s| s.entries);
    let pm = points(samples, window, max_ms, |s| s.ms);
    let downs = down_spans(samples, window).into_iter().map(|(x0, x1)| {
        html! {
            <rect class="down" x={format!("{x0:.1}")} y="0" width={format!("{:.1}", (x1 - x0).max(2.0))}
                height={H.to_string()} />
        }
    });
    let behind = last.is_some_and(|l| l.entries > 0);
    let up = last.is_none_or(|l| l.up);
    let text = match last {
        None => "no data yet".to_owned(),
        Some(l) if !l.up => "down".to_owned(),
        Some(l) if l.entries == 0 => "caught up".to_owned(),
        Some(l) => format!("{} behind · {} ms", l.entries, l.ms),
    };
    html! {
        <div class="lag-row" id={format!("lag-{id}")} data-behind={behind.to_string()} data-up={up.to_string()}
             data-entries={last.map_or(0, |l| l.entries).to_string()}
             data-peak-entries={max_e.to_string()} data-peak-ms={max_ms.to_string()}
             data-samples={samples.len().to_string()}
             data-down-samples={samples.iter().filter(|s| !s.up).count().to_string()}>
            <div class="lag-name"><b>{ format!("node {id}") }</b><span class="muted small">{ format!(" {role}") }</span></div>
            <svg viewBox={format!("0 0 {W} {H}")} preserveAspectRatio="none" class="spark">
                { for downs }
                <path class="entries" d={area(&pe)} />
                <path class="ms" d={path(&pm)} />
                { fault_marks(id, faults, window) }
            </svg>
            <div class={classes!("lag-now", if !up { "bad" } else if behind { "warn" } else { "good" })}>
                { text }
                <div class="muted small">{ format!("peak {max_e} · {max_ms} ms") }</div>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_the_window_and_scales_to_its_peak() {
        let samples: VecDeque<LagSample> = [(100_000u64, 0u64), (130_000, 4), (160_000, 8)]
            .into_iter()
            .map(|(at_ms, entries)| LagSample {
                at_ms,
                entries,
                ms: 0,
                up: true,
            })
            .collect();
        let lag = BTreeMap::from([(2, samples.clone())]);
        let window = Window::of(&lag);
        assert_eq!(
            window,
            Window {
                start: 100_000,
                span: 60_000
            }
        );
        let p = points(&samples, window, 8, |s| s.entries);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (0.0, H - 2.0));
        assert_eq!(p[2], (W, 6.0));
        assert_eq!(path(&p[..1]), format!("M0.0,{:.1}", H - 2.0));
        assert!(area(&p).ends_with(" Z"));
        assert_eq!(area(&[]), "");
    }

    #[test]
    fn a_young_page_charts_what_it_has_and_an_old_one_the_last_minute() {
        let at = |t: &[u64]| -> BTreeMap<NodeId, VecDeque<LagSample>> {
            let s = t
                .iter()
                .map(|&at_ms| LagSample {
                    at_ms,
                    entries: 0,
                    ms: 0,
                    up: true,
                })
                .collect();
            BTreeMap::from([(2, s)])
        };
        assert_eq!(
            Window::of(&at(&[1_000, 9_000])),
            Window {
                start: 1_000,
                span: 8_000
            }
        );
        assert_eq!(Window::of(&at(&[1_000, 2_000])).span, MIN_SPAN_MS);
        assert_eq!(
            Window::of(&at(&[0, 200_000])),
            Window {
                start: 140_000,
                span: 60_000
            }
        );
    }

    #[test]
    fn down_stretches_are_drawn_as_one_band() {
        let s: VecDeque<LagSample> = [
            (0u64, true),
            (1_000, false),
            (2_000, false),
            (3_000, true),
            (4_000, false),
        ]
        .into_iter()
        .map(|(at_ms, up)| LagSample {
            at_ms,
            entries: 0,
            ms: 0,
            up,
        })
        .collect();
        let w = Window {
            start: 0,
            span: 4_000,
        };
        let x = |ms: f64| ms / 4_000.0 * W;
        assert_eq!(
            down_spans(&s, w),
            vec![(x(1_000.0), x(3_000.0)), (W, W + 2.0)]
        );
    }
}
