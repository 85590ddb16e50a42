//! Followers that crash, restart empty or fall behind catch up from the
//! leader, over real HTTP on 127.0.0.1.

mod common;

use common::{wait_until, Cluster};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every key the test wrote, as node `id` holds it locally.
async fn local_state(
    c: &Cluster,
    id: u32,
    keys: &[String],
) -> BTreeMap<String, Option<(String, u64)>> {
    let mut out = BTreeMap::new();
    for k in keys {
        out.insert(
            k.clone(),
            c.local(id, k).await.map(|g| (g.value, g.version)),
        );
    }
    out
}

/// Writes to `keys` round-robin through the leader until `stop` is set.
fn spawn_writer(
    c: &Cluster,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let (client, url) = (c.client.clone(), c.url(Cluster::LEADER));
    tokio::spawn(async move {
        let mut ok = 0;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) && i < 5000 {
            let key = &keys[i % keys.len()];
            let r = client
                .post(format!("{url}/set"))
                .json(&serde_json::json!({"key": key, "value": format!("v{i}")}))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::CREATED {
                ok += 1;
            }
            i += 1;
        }
        ok
    })
}

async fn kill_restart_converge(log_capacity: u32) {
    let c_config = move |cfg: &mut kv_node::Config| cfg.log_capacity = log_capacity;
    let mut c = Cluster::start(5, 3, 1, c_config).await;
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&c, keys.clone(), stop.clone());

    // Let some writes through, then kill follower 5 while writes go on.
    wait_until("100 writes applied", Duration::from_secs(10), || async {
        c.status(Cluster::LEADER).await.applied_seq >= 100
    })
    .await;
    c.kill(5).await;
    wait_until(
        "the leader sees follower 5 down and behind",
        Duration::from_secs(10),
        || async {
            let s = c.status(Cluster::LEADER).await;
            let p = s.peers.iter().find(|p| p.id == 5).unwrap();
            !p.up && p.progress.lag_entries.unwrap() > 0
        },
    )
    .await;
    let seq_at_kill = c.status(Cluster::LEADER).await.applied_seq;
    wait_until(
        "more writes while 5 is down",
        Duration::from_secs(10),
        || async { c.status(Cluster::LEADER).await.applied_seq >= seq_at_kill + 200 },
    )
    .await;

    // Restart it empty, still under writes: it serves its (empty, stale) copy meanwhile.
    c.restart(5).await;
    wait_until(
        "follower 5 is back up at the leader",
        Duration::from_secs(10),
        || async {
            let s = c.status(Cluster::LEADER).await;
            s.peers.iter().find(|p| p.id == 5).unwrap().up
        },
    )
    .await;
    wait_until(
        "follower 5 applies new writes",
        Duration::from_secs(10),
        || async { c.status(5).await.applied_seq > seq_at_kill + 200 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 300);

    c.wait_converged().await;
    let leader = local_state(&c, Cluster::LEADER, &keys).await;
    for f in c.followers() {
        assert_eq!(
            local_state(&c, f, &keys).await,
            leader,
            "follower {f} holds the leader's exact state"
        );
        assert_eq!(c.status(f).await.keys, c.status(Cluster::LEADER).await.keys);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_killed_under_writes_restarts_empty_and_converges_from_the_log_tail() {
    // The leader's log still holds every entry: the tail alone rebuilds the follower.
    kill_restart_converge(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_killed_under_writes_restarts_empty_and_converges_via_snapshot() {
    // The log holds only 20 entries: the follower gets a snapshot, then the tail.
    kill_restart_converge(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_lag_while_a_follower_is_slow_and_none_once_it_caught_up() {
    // With the ack delay, followers trail a W1 leader; /status shows the lag, then 0.
    let c = Cluster::start(5, 1, 1, |cfg| {
        cfg.ack_delay_ms = Some(300);
    })
    .await;
    for i in 0..20 {
        assert_eq!(
            c.set(1, &format!("k{i}"), "v").await.status(),
            StatusCode::CREATED
        );
    }
    let s = c.status(Cluster::LEADER).await;
    // The log holds the term's first entry, then the 20 writes.
    assert_eq!(
        (s.role, s.applied_seq, s.keys),
        (kv_shared::Role::Leader, 21, 20)
    );
    assert!(
        s.peers.iter().any(|p| p.progress.lag_entries.unwrap() > 0),
        "some follower trails the leader right after the writes: {s:?}"
    );
    c.wait_converged().await;
    let s = c.status(Cluster::LEADER).await;
    for p in &s.peers {
        assert_eq!(
            (p.acked_seq, p.progress.lag_entries, p.progress.lag_ms, p.up),
            (Some(21), Some(0), Some(0), true)
        );
    }
    let f = c.status(3).await;
    assert_eq!(
        (f.role, f.applied_seq, f.keys, f.leader),
        (kv_shared::Role::Follower, 21, 20, Some(1))
    );
    assert_eq!((f.config.n, f.config.w, f.config.r), (5, 1, 1));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_is_replaced_versions_never_repeat_and_it_returns_as_a_follower() {
    // W3: every acknowledged write is on a majority, so the node elected after
    // the leader dies holds them all; its versions start above its term's floor,
    // so no version of a key ever names two values; the old leader restarts
    // empty, follows the new one and ends with the same state.
    let mut c = Cluster::start(5, 3, 1, |_| {}).await;
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let mut last = BTreeMap::new();
    for i in 0..40 {
        let key = &keys[i % keys.len()];
        let r = c.set(1 + (i as u32 % 5), key, &format!("v{i}")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let s: kv_shared::SetResponse = r.json().await.unwrap();
        last.insert(key.clone(), (s.version, s.value));
    }
    c.kill(Cluster::LEADER).await;
    wait_until(
        "another node takes writes",
        Duration::from_secs(10),
        || async { c.set(2, "probe", "p").await.status() == StatusCode::CREATED },
    )
    .await;
    let leader = c.leader().await.expect("a leader");
    assert_ne!(leader, Cluster::LEADER);
    for (key, (version, value)) in &last {
        let g = c
            .local(leader, key)
            .await
            .expect("the new leader holds every acknowledged write");
        assert_eq!((&g.value, g.version), (value, *version), "{key}");
    }
    let s: kv_shared::SetResponse = c.set(3, "k0", "after").await.json().await.unwrap();
    assert!(
        s.version > last["k0"].0 + 1,
        "the new term's floor lifts versions above anything the old leader may have handed out: {} after {}",
        s.version,
        last["k0"].0
    );
    c.restart(Cluster::LEADER).await;
    c.wait_converged().await;
    let status = c.status(Cluster::LEADER).await;
    assert_eq!(status.role, kv_shared::Role::Follower);
    assert_eq!(status.leader, Some(leader));
    let mut all: Vec<String> = keys.clone();
    all.push("probe".into());
    let reference = local_state(&c, leader, &all).await;
    assert!(reference.values().all(Option::is_some));
    for id in 1..=5 {
        assert_eq!(local_state(&c, id, &all).await, reference, "node {id}");
    }
    c.stop().await;
}
