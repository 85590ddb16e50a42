//! Leaderless recovery over real HTTP on 127.0.0.1: hinted handoff,
//! anti-entropy and read repair bring replicas back to the same state.

mod common;
mod ll_support;

use common::wait_until;
use kv_shared::GetResponse;
use ll_support::{contents, start, wait_identical, write};
use reqwest::StatusCode;
use std::time::Duration;

/// Hints that nodes 1–4 hold for node 5, summed from their `/status`.
async fn hints_for_node_5(c: &common::Cluster) -> u64 {
    let mut hints = 0;
    for id in 1..=4 {
        let s = c.status(id).await;
        let peer = s.peers.iter().find(|p| p.id == 5).unwrap();
        hints += peer.progress.pending_hints.unwrap();
    }
    hints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_restarted_empty_is_brought_to_the_exact_state_of_the_others() {
    // N = 5, W = 3: writes go on while node 5 is down; restarted empty, it
    // receives the writes it missed as hints and everything older through
    // anti-entropy, until its store equals every other node's.
    let mut c = start(5, 3, 1, |_| {}).await;
    for i in 0..100u32 {
        write(&c, i % 5 + 1, &format!("old-{i}"), &format!("v{i}")).await;
    }
    wait_identical(
        &c,
        &[1, 2, 3, 4, 5],
        "the first 100 keys everywhere",
        Duration::from_secs(20),
    )
    .await;

    c.kill(5).await;
    for i in 0..100u32 {
        write(&c, i % 4 + 1, &format!("new-{i}"), &format!("n{i}")).await;
    }
    for i in 0..30u32 {
        write(&c, i % 4 + 1, &format!("old-{i}"), &format!("updated-{i}")).await;
    }
    // A write answers after W = 3 acks; its failed send to node 5 becomes a
    // hint moments later, on its coordinator.
    wait_until(
        "one hint per missed write",
        Duration::from_secs(10),
        || async { hints_for_node_5(&c).await == 130 },
    )
    .await;

    c.restart(5).await;
    wait_identical(
        &c,
        &[1, 2, 3, 4, 5],
        "node 5 equal to the others",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(contents(&c, 5).len(), 200);
    wait_until(
        "every hint for node 5 delivered",
        Duration::from_secs(10),
        || async { hints_for_node_5(&c).await == 0 },
    )
    .await;
    let mut delivered = 0;
    let mut repaired = 0;
    for id in 1..=5 {
        let ll = c.status(id).await.leaderless.unwrap();
        delivered += ll.delivered_hints;
        repaired += ll.anti_entropy_keys_repaired;
    }
    assert!(delivered >= 130, "hints delivered: {delivered}");
    // 70 of the old keys were never hinted: only anti-entropy could bring them.
    assert!(repaired >= 70, "keys repaired by anti-entropy: {repaired}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anti_entropy_spreads_writes_only_one_replica_holds() {
    // Writes that reached one replica only (as after a partition; put into
    // its store directly, so no hint exists) spread to every replica, and a
    // newer version elsewhere is not overwritten by an older one.
    let c = start(3, 3, 1, |_| {}).await;
    let stale = write(&c, 1, "contested", "first").await;
    let store2 = &c.node(2).state.store;
    for i in 0..200u64 {
        store2.apply(&format!("p-{i}"), format!("x{i}"), stale.version + i);
    }
    let newer = write(&c, 3, "contested", "second").await;
    store2.apply("contested", "stale".into(), stale.version);
    wait_identical(
        &c,
        &[1, 2, 3],
        "the partitioned writes everywhere",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(contents(&c, 1).len(), 201);
    let g = c.local(2, "contested").await.unwrap();
    assert_eq!((g.value.as_str(), g.version), ("second", newer.version));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_over_all_replicas_returns_the_newest_and_repairs_the_others() {
    // R = N = 3, anti-entropy off: a read answers the highest version any
    // replica holds and pushes it to the replicas that answered older.
    let c = start(3, 1, 3, |cfg| cfg.anti_entropy_ms = 0).await;
    let first = write(&c, 1, "k", "v1").await;
    wait_until("v1 everywhere", Duration::from_secs(5), || async {
        let mut all = true;
        for id in 1..=3 {
            all &= c
                .local(id, "k")
                .await
                .is_some_and(|g| g.version == first.version);
        }
        all
    })
    .await;
    // Only node 2 holds v2 (a write whose replication was lost).
    c.node(2)
        .state
        .store
        .apply("k", "v2".into(), first.version + 1);
    let r = c.get(1, "k").await;
    assert_eq!(r.status(), StatusCode::OK);
    let g: GetResponse = r.json().await.unwrap();
    assert_eq!((g.value.as_str(), g.version), ("v2", first.version + 1));
    wait_until("nodes 1 and 3 repaired", Duration::from_secs(5), || async {
        let mut all = true;
        for id in [1, 3] {
            all &= c.local(id, "k").await.is_some_and(|g| g.value == "v2");
        }
        all
    })
    .await;
    c.stop().await;
}
