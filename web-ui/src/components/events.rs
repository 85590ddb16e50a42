//! The event log, newest first, up to the drawn instant: what the nodes
//! report (campaigns, votes, elections won with the voters and the term's
//! version floor, leaders stepping down, nodes following a new leader, writes
//! rolled back, nodes caught up, configurations in force, faults, hints handed
//! off, anti-entropy rounds that repaired keys) and what the page observed
//! (replicas going down and coming back, W/R changes, 503s).

use crate::lab::version_label;
use crate::state::LogEntry;
use kv_shared::events::{NodeEvent, NodeEventKind};
use std::collections::VecDeque;
use yew::prelude::*;

/// How many entries the log shows.
const ROWS: usize = 30;

/// Props of [`Events`].
#[derive(Properties, PartialEq)]
pub struct EventsProps {
    /// The log, oldest first.
    pub log: VecDeque<LogEntry>,
    /// The drawn instant (cluster ms): later entries are not shown yet.
    pub until: Option<f64>,
}

/// The kind of an event, as the page's `data-kind` names it.
pub fn kind_name(k: &NodeEventKind) -> &'static str {
    match k {
        NodeEventKind::PreVote => "pre-vote",
        NodeEventKind::Campaign => "campaign",
        NodeEventKind::Voted { .. } => "voted",
        NodeEventKind::Elected { .. } => "elected",
        NodeEventKind::SteppedDown { .. } => "stepped-down",
        NodeEventKind::Following { .. } => "following",
        NodeEventKind::TermStarted => "term-started",
        NodeEventKind::RolledBack { .. } => "rolled-back",
        NodeEventKind::CaughtUp { .. } => "caught-up",
        NodeEventKind::ConfigInForce { .. } => "config",
        NodeEventKind::Fault { .. } => "fault",
        NodeEventKind::HintsDelivered { .. } => "hints-delivered",
        NodeEventKind::AntiEntropy { .. } => "anti-entropy",
    }
}

/// One event in words.
pub fn describe(e: &NodeEvent) -> String {
    let n = e.node;
    match &e.kind {
        NodeEventKind::PreVote => format!(
            "node {n} heard no leader and asks whether it would get votes in term {}",
            e.term + 1
        ),
        NodeEventKind::Campaign => format!("node {n} campaigns in term {}", e.term),
        NodeEventKind::Voted { candidate } => {
            format!("node {n} votes for node {candidate} in term {}", e.term)
        }
        NodeEventKind::Elected { votes, floor } => format!(
            "node {n} leads term {} (votes of {}); versions start at {floor}",
            e.term,
            votes
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        NodeEventKind::SteppedDown { reason } => format!("node {n} stops leading: {reason}"),
        NodeEventKind::Following { leader } => {
            format!("node {n} follows node {leader} (term {})", e.term)
        }
        NodeEventKind::TermStarted => format!("node {n} takes writes in term {}", e.term),
        NodeEventKind::RolledBack {
            key,
            version,
            index,
            acknowledged,
        } => format!(
            "node {n} rolled back {key} {} (log index {index}){}",
            version_label(*version),
            if *acknowledged {
                ": it had answered 201 (W < majority)"
            } else {
                ""
            }
        ),
        NodeEventKind::CaughtUp { index } => {
            format!("node {n} caught up to index {index}: counts towards R again")
        }
        NodeEventKind::ConfigInForce { config } => {
            format!("node {n} runs W={} R={}", config.w, config.r)
        }
        NodeEventKind::Fault { description } => format!("node {n}: {description}"),
        NodeEventKind::HintsDelivered { to, count } => format!(
            "node {n} handed {count} hinted write{} to node {to}",
            if *count == 1 { "" } else { "s" }
        ),
        NodeEventKind::AntiEntropy {
            peer,
            buckets,
            repaired,
            completed,
        } => format!(
            "anti-entropy node {n} ↔ node {peer}: {buckets} bucket{} differed, {repaired} key{} repaired{}",
            if *buckets == 1 { "" } else { "s" },
            if *repaired == 1 { "" } else { "s" },
            if *completed { "" } else { " (cut short)" }
        ),
    }
}

/// The event log.
#[function_component(Events)]
pub fn events(props: &EventsProps) -> Html {
    let until = props.until.unwrap_or(f64::INFINITY);
    let rows: Vec<&LogEntry> = props
        .log
        .iter()
        .rev()
        .filter(|e| e.at_ms as f64 <= until)
        .take(ROWS)
        .collect();
    let body = if rows.is_empty() {
        html! { <p class="muted">{ "Nothing has happened since the page opened." }</p> }
    } else {
        html! {
            <ol id="node-events" class="events log">
                { for rows.iter().map(|e| html! {
                    <li data-kind={e.kind.clone()} data-at={e.at_ms.to_string()}
                        data-node={e.node.map(|n| n.to_string()).unwrap_or_default()}
                        data-term={e.term.map(|t| t.to_string()).unwrap_or_default()}
                        class={classes!(e.kind.clone())}>
                        <span class="muted small when">{ clock_label(e.at_ms) }</span>
                        { e.term.map(|t| html! { <span class="muted small">{ format!("term {t} · ") }</span> }) }
                        { &e.text }
                    </li>
                }) }
            </ol>
        }
    };
    html! {
        <section class="card">
            <h2>{ "Event log" }
                <span class="muted small">{ " · elections, faults, outages, W/R changes, 503s, hints, anti-entropy" }</span>
            </h2>
            { body }
        </section>
    }
}

/// A cluster time as `HH:MM:SS.mmm` (UTC).
pub fn clock_label(at_ms: u64) -> String {
    let d = at_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03} ",
        d / 3_600_000,
        d / 60_000 % 60,
        d / 1_000 % 60,
        d % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_sentences() {
        let e = |kind| NodeEvent {
            node: 2,
            at_ms: 0,
            term: 7,
            kind,
        };
        assert_eq!(
            describe(&e(NodeEventKind::Elected {
                votes: vec![2, 3, 4],
                floor: 10_021
            })),
            "node 2 leads term 7 (votes of 2, 3, 4); versions start at 10021"
        );
        assert_eq!(
            describe(&e(NodeEventKind::RolledBack {
                key: "k".into(),
                version: 4,
                index: 9,
                acknowledged: true
            })),
            "node 2 rolled back k v4 (log index 9): it had answered 201 (W < majority)"
        );
        assert_eq!(kind_name(&NodeEventKind::TermStarted), "term-started");
    }
}
