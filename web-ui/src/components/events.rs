//! Replication events as a log, newest first: pre-votes, campaigns, votes,
//! elections won (with the voters and the term's version floor), leaders
//! stepping down, nodes following a new leader, writes rolled back, nodes
//! caught up after a restart.

use kv_shared::events::{NodeEvent, NodeEventKind};
use std::collections::VecDeque;
use yew::prelude::*;

/// How many events the log shows.
const ROWS: usize = 14;

/// Props of [`Events`].
#[derive(Properties, PartialEq)]
pub struct EventsProps {
    /// The events, oldest first.
    pub events: VecDeque<NodeEvent>,
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
            "node {n} rolled back {key} v{version} (log index {index}){}",
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
    }
}

/// The event log.
#[function_component(Events)]
pub fn events(props: &EventsProps) -> Html {
    // Pre-votes repeat while a node is cut off; the log keeps the rest readable.
    let rows: Vec<&NodeEvent> = props
        .events
        .iter()
        .rev()
        .filter(|e| !matches!(e.kind, NodeEventKind::PreVote))
        .take(ROWS)
        .collect();
    let body = if rows.is_empty() {
        html! { <p class="muted">{ "No election or rollback since the page opened." }</p> }
    } else {
        html! {
            <ol id="node-events" class="events">
                { for rows.iter().map(|e| html! {
                    <li data-kind={kind_name(&e.kind)} data-node={e.node.to_string()}
                        data-term={e.term.to_string()}
                        class={classes!(kind_name(&e.kind))}>
                        <span class="muted small">{ format!("term {} · ", e.term) }</span>
                        { describe(e) }
                    </li>
                }) }
            </ol>
        }
    };
    html! {
        <section class="card">
            <h2>{ "Terms & elections" }
                <span class="muted small">{ " · votes, leaders, rollbacks, as the nodes report them" }</span>
            </h2>
            { body }
        </section>
    }
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
