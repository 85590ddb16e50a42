//! Leaderless clusters over real HTTP on 127.0.0.1: the write path through
//! any coordinator, the assignment's inconsistency window, convergence of
//! concurrent writes, W not met, run-time W/R, `/status` and bad input.

mod common;
mod ll_support;

use common::{wait_until, Cluster, TestNode};
use kv_node::config::{DelayProfileArg, ModeArg};
use kv_node::{AppState, Config};
use kv_shared::leaderless::{LL_WRITE_PATH, LL_WRITE_STREAM_PATH};
use kv_shared::{ErrorBody, GetResponse, Mode, NodeId, Role, SetResponse};
use ll_support::{start, write};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// A deterministic pick among `1..=n` (xorshift over a fixed seed).
fn pick(seed: u64, n: u32, not: u32) -> u32 {
    let mut x = seed | 1;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x % u64::from(n)) as u32 + 1;
        if id != not {
            return id;
        }
    }
}

async fn get_value(c: &Cluster, node: u32, key: &str) -> Option<GetResponse> {
    let r = c.get(node, key).await;
    match r.status() {
        StatusCode::OK => Some(r.json().await.unwrap()),
        StatusCode::NOT_FOUND => None,
        s => panic!("get at node {node} answered {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inside_the_window_other_nodes_return_the_old_value_and_after_201_the_new_one() {
    // Delay profile on, W = N = 5, R = 1: between the coordinator applying a
    // write and its 201, other replicas still serve the old value; after the
    // 201 every replica holds the new one.
    let c = start(5, 5, 1, |cfg| {
        cfg.delay_profile = DelayProfileArg::Assignment;
        cfg.write_timeout_ms = 5_000;
        cfg.anti_entropy_ms = 0;
    })
    .await;
    for (round, seed) in [(1u32, 0x5eed_u64), (2, 0xfeed)] {
        let coordinator = pick(seed, 5, 0);
        let other = pick(seed ^ 0xabc, 5, coordinator);
        let old = write(&c, pick(seed ^ 1, 5, 0), "k", &format!("old-{round}")).await;

        let (client, url) = (c.client.clone(), c.url(coordinator));
        let new_value = format!("new-{round}");
        let body = json!({"key": "k", "value": new_value});
        let pending = tokio::spawn(async move {
            client
                .post(format!("{url}/set"))
                .json(&body)
                .send()
                .await
                .unwrap()
        });

        // Wait for the coordinator to hold the new value, then look elsewhere
        // while the write is still unanswered.
        let seen_old_at = std::cell::Cell::new(None);
        wait_until(
            "the old value observed at another node inside the window",
            Duration::from_secs(5),
            || async {
                let at_coordinator = c.local(coordinator, "k").await.map(|g| g.value);
                if at_coordinator.as_deref() != Some(new_value.as_str()) {
                    return false;
                }
                for node in (1..=5).filter(|n| *n != coordinator) {
                    let g = get_value(&c, node, "k").await.unwrap();
                    if g.value == old.value && !pending.is_finished() {
                        seen_old_at.set(Some(node));
                    }
                }
                seen_old_at.get().is_some()
            },
        )
        .await;
        assert!(
            !pending.is_finished(),
            "the window was observed before the 201"
        );

        let resp = pending.await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let set: SetResponse = resp.json().await.unwrap();
        assert!(set.version > old.version, "versions grow per key");
        assert_eq!(set.served_by, Some(coordinator));
        for node in [coordinator, other] {
            let g = get_value(&c, node, "k").await.unwrap();
            assert_eq!(
                (g.value.as_str(), g.version),
                (new_value.as_str(), set.version),
                "node {node}"
            );
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_different_coordinators_converge_to_the_highest_version() {
    // Five clients write the same key at once, each through another node;
    // afterwards every replica holds the write with the highest version.
    for w in [5u32, 1] {
        let c = start(5, w, 1, |cfg| cfg.anti_entropy_ms = 0).await;
        for k in 0..5 {
            let key = format!("race-{k}");
            let mut writes = Vec::new();
            for node in 1..=5u32 {
                let (client, url) = (c.client.clone(), c.url(node));
                let body = json!({"key": key, "value": format!("from-{node}")});
                writes.push(tokio::spawn(async move {
                    let r = client
                        .post(format!("{url}/set"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                    r.json::<SetResponse>().await.unwrap()
                }));
            }
            let mut answers = Vec::new();
            for t in writes {
                answers.push(t.await.unwrap());
            }
            let mut versions: Vec<u64> = answers.iter().map(|a| a.version).collect();
            versions.sort_unstable();
            versions.dedup();
            assert_eq!(
                versions.len(),
                5,
                "every coordinator stamped a distinct version"
            );
            let winner = answers.iter().max_by_key(|a| a.version).unwrap();
            wait_until(
                &format!("W={w}: every replica holds the winner of {key}"),
                Duration::from_secs(10),
                || async {
                    let mut all = true;
                    for node in 1..=5 {
                        let g = c.local(node, &key).await;
                        all &= g.is_some_and(|g| {
                            g.version == winner.version && g.value == winner.value
                        });
                    }
                    all
                },
            )
            .await;
        }
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_grow_per_key_whichever_node_coordinates() {
    // Sequential writes of one key through rotating coordinators get
    // increasing versions: each coordinator stamps above its copy of the key.
    let c = start(3, 3, 1, |cfg| cfg.anti_entropy_ms = 0).await;
    let mut last = 0;
    for i in 0..12u32 {
        let node = i % 3 + 1;
        let w = write(&c, node, "seq", &format!("v{i}")).await;
        assert!(w.version > last, "write {i} through node {node}");
        assert_eq!(w.status == kv_shared::WriteStatus::Created, i == 0);
        last = w.version;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w_not_met_answers_503_with_acked_and_required_and_the_hint_lands_later() {
    // W = N = 3 with one node down: 503 {"error","acked","required"}; the
    // write stays on the live replicas and reaches the third by hinted
    // handoff once it is back (anti-entropy off, so only the hint can do it).
    let mut c = start(3, 3, 1, |cfg| cfg.anti_entropy_ms = 0).await;
    c.kill(3).await;
    let r = c.set(1, "k", "v").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(
        (body.acked, body.required),
        (Some(2), Some(3)),
        "{}",
        body.error
    );
    assert!(body.error.contains("quorum"), "{}", body.error);
    assert_eq!(c.local(2, "k").await.unwrap().value, "v", "not undone");

    let s = c.status(1).await;
    let hints = s
        .peers
        .iter()
        .find(|p| p.id == 3)
        .unwrap()
        .progress
        .pending_hints;
    assert_eq!(hints, Some(1));
    assert_eq!(s.leaderless.unwrap().writes_failed, 1);

    c.restart(3).await;
    wait_until(
        "the hint reaches node 3",
        Duration::from_secs(10),
        || async { c.local(3, "k").await.is_some_and(|g| g.value == "v") },
    )
    .await;
    wait_until(
        "node 1 has no hint left",
        Duration::from_secs(5),
        || async {
            let s = c.status(1).await;
            s.peers.iter().all(|p| p.progress.pending_hints == Some(0))
        },
    )
    .await;
    // With every replica back, W = 3 is met again.
    write(&c, 1, "k", "v2").await;
    c.stop().await;
}

/// Node `id`'s count of `series` in `/metrics` (0 when absent).
async fn counted(c: &Cluster, id: NodeId, series: &str) -> u64 {
    common::metrics_sample(&c.metrics(id).await, series).map_or(0, |n| n as u64)
}

/// How many writes streams node `id` accepted (upgrades of
/// `POST /internal/ll/write/stream`).
async fn writes_streams_opened(c: &Cluster, id: NodeId) -> u64 {
    let series = format!(
        r#"kv_http_requests_total{{route="{LL_WRITE_STREAM_PATH}",method="POST",status="101"}}"#
    );
    counted(c, id, &series).await
}

/// How many `LlWrite` messages node `id` took (as requests or as frames of a
/// stream, which `/metrics` counts as the request they stand for).
async fn writes_taken(c: &Cluster, id: NodeId) -> u64 {
    let series =
        format!(r#"kv_http_requests_total{{route="{LL_WRITE_PATH}",method="POST",status="200"}}"#);
    counted(c, id, &series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_writes_travel_over_one_stream_per_peer_that_a_stopped_node_stops_answering() {
    // W = N = 3: every write at node 1 needs both others' acknowledgements
    // (anti-entropy off: only the coordinator's batches carry records).
    let mut c = start(3, 3, 1, |cfg| cfg.anti_entropy_ms = 0).await;
    let sequential = 12;
    for i in 0..sequential {
        write(&c, 1, &format!("k{i}"), "v").await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (client, url) = (c.client.clone(), c.url(1));
        tasks.spawn(async move {
            let r = client
                .post(format!("{url}/set"))
                .json(&json!({"key": format!("c{i}"), "value": "v"}))
                .send()
                .await
                .unwrap();
            (i, r.status())
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, status) = r.unwrap();
        assert_eq!(status, StatusCode::CREATED, "concurrent write c{i}");
    }
    for peer in [2, 3] {
        // One batch per sequential write at least, all over one stream.
        assert_eq!(writes_streams_opened(&c, peer).await, 1, "node {peer}");
        let taken = writes_taken(&c, peer).await;
        assert!(taken >= sequential, "node {peer} took {taken} batches");
        assert_eq!(c.local(peer, "c15").await.unwrap().value, "v");
    }
    // Node 2 stops: the stream node 1 holds to it must not acknowledge
    // anything any more, so W = 3 cannot be met.
    c.kill(2).await;
    let r = c.set(1, "after", "v").await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "write with node 2 stopped"
    );
    // Back (empty): the hint lands and a new stream carries the next writes.
    c.restart(2).await;
    wait_until(
        "a write at node 1 meets W = 3 again",
        Duration::from_secs(10),
        || async { c.set(1, "back", "v").await.status() == StatusCode::CREATED },
    )
    .await;
    assert_eq!(writes_streams_opened(&c, 2).await, 1, "restarted node 2");
    assert_eq!(c.local(2, "back").await.unwrap().value, "v");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w_and_r_change_at_run_time_on_every_node() {
    // POST /config on one node changes W and R cluster-wide; a bad value is a 400.
    let mut c = start(3, 3, 1, |cfg| cfg.anti_entropy_ms = 0).await;
    let r = c.post_config(2, json!({"w": 1, "r": 3})).await;
    assert_eq!(r.status(), StatusCode::OK);
    for node in 1..=3 {
        wait_until(
            &format!("node {node} runs W=1 R=3"),
            Duration::from_secs(5),
            || async {
                let cfg = c.config(node).await;
                (cfg.w, cfg.r) == (1, 3)
            },
        )
        .await;
    }
    for bad in [json!({"w": 0}), json!({"r": 4})] {
        let r = c.post_config(1, bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let _: ErrorBody = r.json().await.unwrap();
    }
    // W = 1 writes succeed with a node down; R = 3 reads cannot.
    c.kill(3).await;
    write(&c, 1, "k", "v").await;
    let r = c.get(2, "k").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.required, Some(3));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_mode_quorums_clock_hints_and_anti_entropy() {
    // Defaults W = N, R = 1; /status shows the clock, hints per peer and the
    // last anti-entropy round.
    let c = start(3, 3, 1, |cfg| {
        cfg.w = None;
        cfg.r = None;
    })
    .await;
    let w = write(&c, 2, "k", "v").await;
    let s = ll_support::ll_status(&c, 2).await;
    assert_eq!(
        (s.node_id, s.mode, s.role),
        (2, Mode::Leaderless, Role::Peer)
    );
    assert_eq!((s.config.n, s.config.w, s.config.r), (3, 3, 1));
    assert_eq!(s.keys, 1);
    let ll = s.leaderless.unwrap();
    assert!(ll.clock >= w.version);
    let now = chrono::Utc::now().timestamp_millis() as u64;
    assert!(
        ll.clock_ms.abs_diff(now) < 60_000,
        "clock_ms {} vs now {now}",
        ll.clock_ms
    );
    assert_eq!(ll.anti_entropy_ms, 300);
    assert!(s
        .peers
        .iter()
        .all(|p| p.up && p.progress.pending_hints == Some(0)));
    wait_until(
        "an anti-entropy round ran on node 1",
        Duration::from_secs(10),
        || async {
            let s = c.status(1).await;
            let ll = s.leaderless.unwrap();
            ll.anti_entropy_rounds > 0 && ll.last_anti_entropy.is_some_and(|r| r.completed)
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn bad_internal_requests_are_json_errors() {
    // Malformed anti-entropy requests are 400; leaderless endpoints on a
    // standalone node are 409; a leaderless node id above 255 is refused.
    let c = start(2, 2, 1, |cfg| cfg.anti_entropy_ms = 0).await;
    let digest = |shape: serde_json::Value, level: u32| json!({"from": 2, "session": 1, "shape": shape, "level": level, "nodes": [0]});
    for body in [
        digest(json!({"fanout": 2, "depth": 2}), 0),
        digest(json!({"fanout": 16, "depth": 3}), 9),
        json!({"from": 2}),
    ] {
        let r = common::post_signed(&c.client, &c.url(1), "/internal/ll/digest", 2, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let _: ErrorBody = r.json().await.unwrap();
    }
    c.stop().await;

    let standalone = TestNode::start(Config::for_tests(1)).await;
    let r = common::post_signed(
        &reqwest::Client::new(),
        &standalone.url,
        "/internal/ll/write",
        2,
        &json!({"from": 2, "clock": 1, "records": []}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let _: ErrorBody = r.json().await.unwrap();
    standalone.stop().await;

    let mut big = Config::for_tests(300);
    big.mode = ModeArg::Leaderless;
    big.peers = "1=http://127.0.0.1:1".into();
    let err = AppState::try_new(big).unwrap_err();
    assert!(err.0.contains("255"), "{err}");
}
