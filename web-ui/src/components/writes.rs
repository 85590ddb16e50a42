//! Recent writes on a timeline: when the coordinator sent each write to each
//! replica, when each acknowledgement came back, and when the client got its
//! answer. With W=1 the answer comes first and the acks trail behind; with
//! W=N the answer waits for the last ack. Each row is the write as known at
//! the drawn instant; a write that failed (503), began before the page
//! opened or stopped getting acknowledgements says so instead of waiting.

use crate::lab::{version_label, version_title};
use crate::state::{outcome_words, TraceEnd, GIVE_UP_MS};
use kv_shared::events::WriteTrace;
use kv_shared::Version;
use std::collections::BTreeSet;
use yew::prelude::*;

/// How many writes the timeline shows.
const ROWS: usize = 8;
/// Width of a timeline, in SVG units.
const TRACK: f64 = 420.0;

/// Props of [`Writes`].
#[derive(Properties, PartialEq)]
pub struct WritesProps {
    /// Recent writes as known at the drawn instant, oldest first, with how
    /// each ended.
    pub traces: Vec<(WriteTrace, TraceEnd)>,
    /// The cluster time being drawn, when known.
    pub playback: Option<f64>,
    /// Writes some node rolled back: (key, version).
    #[prop_or_default]
    pub rolled_back: BTreeSet<(String, Version)>,
}

/// Milliseconds from the write's start to the last thing known about it.
fn span_ms(t: &WriteTrace) -> u64 {
    t.replicas
        .iter()
        .flat_map(|r| [r.sent_at_ms, r.acked_at_ms])
        .chain([t.committed_at_ms])
        .flatten()
        .max()
        .unwrap_or(t.started_at_ms)
        .saturating_sub(t.started_at_ms)
        .min(GIVE_UP_MS)
}

/// The outcome column: the summary, or how the write ended.
pub fn outcome_text(t: &WriteTrace, end: TraceEnd) -> String {
    match end {
        TraceEnd::Open => summary(t),
        TraceEnd::Failed(o) => format!("503 · {}", outcome_words(o)),
        TraceEnd::BeforePage => "began before this page opened".to_owned(),
        TraceEnd::GaveUp => format!("{} · no more acks expected", summary(t)),
    }
}

fn end_name(end: TraceEnd) -> &'static str {
    match end {
        TraceEnd::Open => "open",
        TraceEnd::Failed(_) => "failed",
        TraceEnd::BeforePage => "before-page",
        TraceEnd::GaveUp => "gave-up",
    }
}

/// A one-line summary: when the client was answered and how many acks came.
pub fn summary(t: &WriteTrace) -> String {
    let acked: Vec<u64> = t
        .replicas
        .iter()
        .filter_map(|r| r.acked_at_ms.map(|a| a.saturating_sub(t.started_at_ms)))
        .collect();
    let answered = match t.committed_at_ms {
        Some(c) => format!("answered after {} ms", c.saturating_sub(t.started_at_ms)),
        None => "waiting for W acks".to_owned(),
    };
    let acks = if t.replicas.is_empty() {
        String::new()
    } else if acked.len() == t.replicas.len() {
        format!(
            " · all {} acks after {} ms",
            acked.len(),
            acked.iter().max().unwrap_or(&0)
        )
    } else {
        format!(" · {}/{} acked", acked.len(), t.replicas.len())
    };
    let unreachable: Vec<String> = t
        .replicas
        .iter()
        .filter(|r| r.failed_at_ms.is_some() && r.acked_at_ms.is_none())
        .map(|r| r.id.to_string())
        .collect();
    let hinted = if unreachable.is_empty() {
        String::new()
    } else {
        format!(" · node {} unreachable (hint kept)", unreachable.join(", "))
    };
    format!("{answered}{acks}{hinted}")
}

/// The recent-writes timeline.
#[function_component(Writes)]
pub fn writes(props: &WritesProps) -> Html {
    let rows: Vec<&(WriteTrace, TraceEnd)> = props.traces.iter().rev().take(ROWS).collect();
    let scale_ms = rows
        .iter()
        .filter(|(_, end)| *end != TraceEnd::BeforePage)
        .map(|(t, _)| span_ms(t))
        .max()
        .unwrap_or(0)
        .max(100) as f64;
    let body = if rows.is_empty() {
        html! { <p class="muted">{ "No write yet. Send one from the operations panel." }</p> }
    } else {
        html! {
            <table class="writes">
                <thead><tr>
                    <th>{ "write" }</th>
                    <th>{ format!("0 → {} ms", scale_ms as u64) }</th>
                    <th>{ "outcome" }</th>
                </tr></thead>
                <tbody>{ for rows.iter().map(|(t, end)| {
                    let rolled = props.rolled_back.contains(&(t.key.clone(), t.version));
                    row(t, *end, scale_ms, props.playback, rolled)
                }) }</tbody>
            </table>
        }
    };
    html! {
        <section class="card">
            <h2>{ "Recent writes" }
                <span class="muted small">{ " · sends, acks and the client's answer, timed by the coordinator" }</span>
            </h2>
            { body }
        </section>
    }
}

fn row(
    t: &WriteTrace,
    end: TraceEnd,
    scale_ms: f64,
    playback: Option<f64>,
    rolled_back: bool,
) -> Html {
    let x = |at: u64| {
        (at.saturating_sub(t.started_at_ms) as f64 / scale_ms * (TRACK - 20.0) + 10.0)
            .min(TRACK - 2.0)
    };
    let markers = t.replicas.iter().map(|r| {
        let sent = r.sent_at_ms.map(|s| html! {
            <line class="sent" x1={format!("{:.1}", x(s))} x2={format!("{:.1}", x(s))} y1="8" y2="24" />
        });
        let acked = r.acked_at_ms.map(|a| html! {
            <g class="ack" transform={format!("translate({:.1},16)", x(a))}>
                <circle r="7" />
                <text y="3.5">{ r.id }</text>
            </g>
        });
        html! { <>{ sent }{ acked }</> }
    });
    let committed = t.committed_at_ms.map(|c| {
        html! {
            <g class="answered" transform={format!("translate({:.1},0)", x(c))}>
                <line y1="2" y2="30" />
            </g>
        }
    });
    let cursor = playback
        .filter(|&p| end == TraceEnd::Open && !t.settled() && p >= t.started_at_ms as f64)
        .map(|p| {
            let px = ((p - t.started_at_ms as f64) / scale_ms * (TRACK - 20.0) + 10.0).min(TRACK - 2.0);
            html! { <line class="cursor" x1={format!("{px:.1}")} x2={format!("{px:.1}")} y1="2" y2="30" /> }
        });
    html! {
        <tr data-key={t.key.clone()} data-version={t.version.to_string()}
            data-rolled-back={rolled_back.to_string()} data-outcome={end_name(end)}
            data-started-ms={t.started_at_ms.to_string()} data-coordinator={t.coordinator.to_string()}
            data-acked={t.replicas.iter().filter(|r| r.acked_at_ms.is_some()).count().to_string()}
            class={classes!(rolled_back.then_some("rolled-back"), end_name(end))}>
            <td class="what">
                <code>{ &t.key }</code>
                <span class="muted small version" title={version_title(t.version)}>{ format!(" {}", version_label(t.version)) }</span>
                { t.seq.map(|s| html! { <span class="muted small">{ format!(" · seq {s}") }</span> }) }
                <span class="pill">{ format!("W{}", t.w) }</span>
                <span class="pill coord" title="the node that coordinated the write">{ format!("via {}", t.coordinator) }</span>
            </td>
            <td class="track">
                <svg viewBox={format!("0 0 {TRACK} 32")} preserveAspectRatio="none">
                    <line class="axis" x1="10" x2={(TRACK - 10.0).to_string()} y1="16" y2="16" />
                    { for markers }
                    { committed }
                    { cursor }
                </svg>
            </td>
            <td class="outcome small">{
                if rolled_back {
                    "rolled back: the elected leader's log does not hold it".to_owned()
                } else {
                    outcome_text(t, end)
                }
            }</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::events::ReplicaTrace;

    #[test]
    fn the_summary_says_when_the_client_was_answered_and_how_acks_went() {
        let mut t = WriteTrace {
            id: 1,
            seq: Some(1),
            key: "k".into(),
            version: 1,
            coordinator: 1,
            w: 1,
            started_at_ms: 1_000,
            committed_at_ms: Some(1_002),
            replicas: vec![
                ReplicaTrace {
                    id: 2,
                    sent_at_ms: Some(1_001),
                    acked_at_ms: Some(1_105),
                    failed_at_ms: None,
                },
                ReplicaTrace {
                    id: 3,
                    sent_at_ms: Some(1_201),
                    acked_at_ms: None,
                    failed_at_ms: None,
                },
            ],
            outcome: None,
            at_ms: 1_201,
        };
        assert_eq!(summary(&t), "answered after 2 ms · 1/2 acked");
        assert_eq!(span_ms(&t), 201);
        t.replicas[1].acked_at_ms = Some(1_305);
        assert_eq!(summary(&t), "answered after 2 ms · all 2 acks after 305 ms");
        t.committed_at_ms = None;
        assert_eq!(summary(&t), "waiting for W acks · all 2 acks after 305 ms");
        let failed = TraceEnd::Failed(kv_shared::events::TraceOutcome::Failed {
            acked: 1,
            required: 3,
        });
        assert_eq!(
            outcome_text(&t, failed),
            "503 · failed: 1 of 3 replicas in time"
        );
        assert_eq!(
            outcome_text(&t, TraceEnd::BeforePage),
            "began before this page opened"
        );
    }
}
