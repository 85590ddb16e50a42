//! Each replica's lag over the last minute, as inline SVG sparklines: entries
//! behind the leader (filled) and the age of the oldest unacknowledged entry
//! in ms (line). A stretch where the replica was down is marked red.

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
}

/// Points of a sparkline: x from the window's start to `end_ms`, y scaled so
/// that `max` reaches the top.
pub fn points(
    samples: &VecDeque<LagSample>,
    end_ms: u64,
    max: u64,
    value: fn(&LagSample) -> u64,
) -> Vec<(f64, f64)> {
    let start = end_ms.saturating_sub(LAG_WINDOW_MS);
    samples
        .iter()
        .filter(|s| s.at_ms >= start)
        .map(|s| {
            let x = (s.at_ms - start) as f64 / LAG_WINDOW_MS as f64 * W;
            let y = H - 2.0 - value(s) as f64 / max.max(1) as f64 * (H - 8.0);
            (x, y)
        })
        .collect()
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
    let end_ms = props
        .lag
        .values()
        .filter_map(|s| s.back().map(|l| l.at_ms))
        .max()
        .unwrap_or(0);
    let rows = props
        .replicas
        .iter()
        .filter(|(_, role)| *role != Role::Leader)
        .map(|&(id, role)| chart(id, role, props.lag.get(&id), end_ms));
    html! {
        <section class="card lag">
            <h2>{ "Replication lag" }<span class="muted small">{ " · last minute" }</span></h2>
            <div class="legend">
                <span><i class="swatch entries"></i>{ "entries behind" }</span>
                <span><i class="swatch ms"></i>{ "oldest unacked (ms)" }</span>
                <span><i class="swatch downs"></i>{ "down" }</span>
            </div>
            { for rows }
        </section>
    }
}

fn chart(id: NodeId, role: Role, samples: Option<&VecDeque<LagSample>>, end_ms: u64) -> Html {
    let empty = VecDeque::new();
    let samples = samples.unwrap_or(&empty);
    let last = samples.back().copied();
    let max_e = samples.iter().map(|s| s.entries).max().unwrap_or(0);
    let max_ms = samples.iter().map(|s| s.ms).max().unwrap_or(0);
    let pe = points(samples, end_ms, max_e, |s| s.entries);
    let pm = points(samples, end_ms, max_ms, |s| s.ms);
    let start = end_ms.saturating_sub(LAG_WINDOW_MS);
    let downs = samples.iter().filter(|s| !s.up && s.at_ms >= start).map(|s| {
        let x = (s.at_ms - start) as f64 / LAG_WINDOW_MS as f64 * W;
        html! { <rect class="down" x={format!("{x:.1}")} y="0" width="4.5" height={H.to_string()} /> }
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
             data-entries={last.map_or(0, |l| l.entries).to_string()}>
            <div class="lag-name"><b>{ format!("node {id}") }</b><span class="muted small">{ format!(" {role}") }</span></div>
            <svg viewBox={format!("0 0 {W} {H}")} preserveAspectRatio="none" class="spark">
                { for downs }
                <path class="entries" d={area(&pe)} />
                <path class="ms" d={path(&pm)} />
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
        let samples: VecDeque<LagSample> = [(0u64, 0u64), (30_000, 4), (60_000, 8)]
            .into_iter()
            .map(|(at_ms, entries)| LagSample {
                at_ms,
                entries,
                ms: 0,
                up: true,
            })
            .collect();
        let p = points(&samples, 60_000, 8, |s| s.entries);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (0.0, H - 2.0));
        assert_eq!(p[2], (W, 6.0));
        assert_eq!(path(&p[..1]), format!("M0.0,{:.1}", H - 2.0));
        assert!(area(&p).ends_with(" Z"));
        assert_eq!(area(&[]), "");
    }
}
