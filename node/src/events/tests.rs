//! Tests of the feed: snapshots assembled, traces followed and bounded.

use super::*;
use kv_shared::cluster::{ClusterConfig, DelayProfile};
use kv_shared::cluster::{Seq, StatusResponse};
use kv_shared::events::{ClusterEvent, ReadTrace, TraceOutcome};
use kv_shared::Mode;
use kv_shared::{NodeId, Role};
use serde_json::json;
use std::collections::BTreeMap;

/// A `/status` answer, built from JSON as a client would read it.
fn status(id: NodeId, role: Role, seq: Seq, peers: &[(NodeId, Option<u64>)]) -> StatusResponse {
    let peers: Vec<_> = peers
        .iter()
        .map(|&(p, lag)| {
            json!({
                "id": p, "url": format!("http://n{p}"),
                "role": if p == 1 { Role::Leader } else { Role::Follower },
                "up": true, "lag_entries": lag, "lag_ms": lag.map(|l| l * 100),
            })
        })
        .collect();
    serde_json::from_value(json!({
        "node_id": id, "url": format!("http://n{id}"), "mode": Mode::LeaderFollower,
        "role": role, "leader": 1,
        "config": ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
        "applied_seq": seq, "keys": seq, "peers": peers,
    }))
    .unwrap()
}

#[test]
fn a_followers_view_takes_the_lag_from_the_leaders_status() {
    let own = status(2, Role::Follower, 7, &[(1, None), (3, None)]);
    let leader = status(1, Role::Leader, 9, &[(2, Some(2)), (3, Some(0))]);
    let answers = BTreeMap::from([(1, Ok(leader)), (3, Err("connection refused".into()))]);
    let v = assemble(&own, answers, 42);
    assert_eq!(v.observer, 2);
    assert_eq!(v.at_ms, 42);
    assert_eq!(
        v.replicas.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let [l, me, down] = &v.replicas[..] else {
        panic!()
    };
    assert_eq!((l.role, l.up, l.applied_seq), (Role::Leader, true, Some(9)));
    assert_eq!(
        (me.progress.lag_entries, me.progress.lag_ms),
        (Some(2), Some(200))
    );
    assert!(!down.up);
    assert_eq!(down.error.as_deref(), Some("connection refused"));
    assert_eq!(
        down.progress.lag_entries,
        Some(0),
        "the leader's last word on it"
    );
}

#[tokio::test]
async fn traces_follow_a_write_to_its_replicas_and_end_when_complete() {
    let hub = EventHub::new(DEFAULT_MAX_STREAMS);
    hub.trace_write(1, 1, Some(1), "k", 1, 1, &[2, 3]);
    assert!(
        hub.lock_book().traces.is_empty(),
        "nobody watches: nothing kept"
    );

    let mut rx = hub.inner.tx.subscribe();
    hub.trace_write(1, 5, Some(5), "k", 2, 1, &[2, 3]);
    hub.trace_sent(2, 5..=5);
    hub.trace_sent(2, 5..=5); // a resend does not move the first send
    hub.trace_committed(5);
    hub.trace_acked(3, 0..=5); // never sent to 3: not an ack of this write
    hub.trace_sent(3, 5..=5);
    hub.trace_acked(2, 0..=5);
    hub.trace_acked(3, 0..=9);
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        assert!(p.own_trace);
        let ClusterEvent::Trace(t) = serde_json::from_str(&p.json).unwrap() else {
            panic!("{}", p.json)
        };
        seen.push(t);
    }
    assert_eq!(seen.len(), 6, "{seen:#?}");
    let last = seen.last().unwrap();
    assert!(last.fully_acked() && last.committed_at_ms.is_some());
    assert!(last.replicas.iter().all(|r| r.sent_at_ms <= r.acked_at_ms));
    assert!(
        hub.lock_book().traces.is_empty(),
        "complete traces are dropped"
    );
}

#[tokio::test]
async fn a_write_that_misses_its_quorum_ends_with_its_outcome_and_is_forgotten() {
    let hub = EventHub::new(DEFAULT_MAX_STREAMS);
    let mut rx = hub.inner.tx.subscribe();
    hub.trace_write(1, 9, Some(9), "k", 3, 3, &[2, 3]);
    hub.trace_sent(2, 9..=9);
    hub.trace_acked(2, 9..=9);
    let outcome = TraceOutcome::Failed {
        acked: 2,
        required: 3,
    };
    hub.trace_failed(9, outcome);
    assert!(hub.lock_book().traces.is_empty());
    let last = std::iter::from_fn(|| rx.try_recv().ok()).last().unwrap();
    assert_eq!(last.write_started_at_ms.map(|s| s > 0), Some(true));
    let ClusterEvent::Trace(t) = serde_json::from_str(&last.json).unwrap() else {
        panic!("{}", last.json)
    };
    assert_eq!(t.outcome, Some(outcome));
    assert_eq!(t.committed_at_ms, None);
    assert_eq!(
        hub.recent_for_new_page().len(),
        1,
        "a page opened next sees it failed"
    );
}

#[tokio::test]
async fn read_traces_are_published_at_most_max_reads_per_second() {
    let hub = EventHub::new(DEFAULT_MAX_STREAMS);
    let mut rx = hub.inner.tx.subscribe();
    let read = |at_ms| ReadTrace {
        id: hub.next_read_id(),
        key: "k".into(),
        coordinator: 1,
        r: 2,
        started_at_ms: at_ms,
        finished_at_ms: at_ms,
        replicas: vec![],
        winner: None,
        repaired: vec![],
        outcome: None,
        at_ms,
    };
    for _ in 0..(MAX_READS_PER_SECOND + 5) {
        hub.trace_read(read(5_000));
    }
    hub.trace_read(read(6_000));
    let n = std::iter::from_fn(|| rx.try_recv().ok()).count();
    assert_eq!(n, MAX_READS_PER_SECOND as usize + 1);
}

#[tokio::test]
async fn at_most_max_traced_writes_are_followed_at_once() {
    let hub = EventHub::new(DEFAULT_MAX_STREAMS);
    let _rx = hub.inner.tx.subscribe();
    for id in 0..(MAX_TRACED as u64 + 10) {
        hub.trace_write(1, id, Some(id), "k", id, 1, &[2]);
    }
    assert_eq!(hub.lock_book().traces.len(), MAX_TRACED);
}
