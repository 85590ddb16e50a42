//! Fault injection (`/admin/faults`) on real nodes over HTTP: every fault
//! kind has its observable effect, shows in `/status` and heals completely.

mod common;
mod ll_support;

use common::{wait_until, Cluster};
use kv_shared::admin::FaultsStatus;
use kv_shared::NodeId;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "fault-tests-admin-token";

async fn lf_cluster(n: u32, w: u32, r: u32) -> Cluster {
    Cluster::start(n, w, r, |c| {
        c.admin_token = Some(TOKEN.into());
        c.election_timeout_ms = 400;
        c.lease_ms = 1_000;
    })
    .await
}

async fn inject(c: &Cluster, id: NodeId, body: serde_json::Value) -> FaultsStatus {
    let r = c.fault(id, body.clone()).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits until some node other than `old` leads, and returns it.
async fn new_leader(c: &Cluster, old: NodeId) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = c.leader().await.filter(|&l| l != old) {
            return l;
        }
        assert!(Instant::now() < deadline, "no other node leads within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn faults_need_the_admin_token_and_valid_values() {
    let c = lf_cluster(3, 2, 2).await;
    let url = format!("{}/admin/faults", c.url(1));
    let r = c
        .client
        .post(&url)
        .json(&json!({"kind": "heal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for bad in [
        json!({"kind": "cut", "peers": [9]}),
        json!({"kind": "cut", "peers": []}),
        json!({"kind": "pause", "duration_ms": 0}),
        json!({"kind": "pause", "duration_ms": 600_001}),
        json!({"kind": "drop", "peers": [2], "probability": 2.0}),
        json!({"kind": "skew", "ms": 300}),
        json!({"kind": "explode"}),
        // Served inside the test program, which a restart must not re-execute.
        json!({"kind": "restart"}),
    ] {
        let r = c.fault(1, bad.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let s = c.status(1).await.faults.unwrap();
    assert_eq!(
        (s.injected, s.active.len()),
        (0, 0),
        "nothing refused was applied"
    );
    // A node without an admin token refuses fault injection altogether.
    let plain = Cluster::start(3, 2, 2, |_| {}).await;
    let r = plain.fault(1, json!({"kind": "heal"})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    plain.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn a_leader_cut_off_both_ways_is_replaced_and_the_heal_reunites_the_cluster() {
    let c = lf_cluster(3, 2, 2).await;
    let old = Cluster::LEADER;
    let others: Vec<NodeId> = c.followers();
    let s = inject(
        &c,
        old,
        json!({"kind": "cut", "peers": others, "direction": "both"}),
    )
    .await;
    assert_eq!(
        s.active.iter().filter(|a| a.kind == "cut").count(),
        4,
        "{s:?}"
    );
    let l = new_leader(&c, old).await;
    assert!(c.set(l, "k", "v").await.status().is_success());
    // The old leader, alone, cannot take writes.
    assert_eq!(
        c.set(old, "k2", "v").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let s = inject(&c, old, json!({"kind": "heal"})).await;
    assert!(s.active.is_empty());
    assert_eq!(s.injected, 1);
    c.wait_converged().await;
    assert_eq!(
        c.local(old, "k").await.map(|g| g.value).as_deref(),
        Some("v")
    );
    c.stop().await;
}

#[tokio::test]
async fn a_one_way_cut_stops_replication_to_one_follower_until_healed() {
    let c = lf_cluster(3, 2, 2).await;
    let l = Cluster::LEADER;
    let f = c.followers()[0];
    inject(
        &c,
        l,
        json!({"kind": "cut", "peers": [f], "direction": "outgoing"}),
    )
    .await;
    assert!(
        c.set(l, "one-way", "v").await.status().is_success(),
        "W=2 still met"
    );
    // Bounded observation: the cut follower does not get the write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.local(f, "one-way").await.is_none(),
        "nothing reaches the cut follower"
    );
    inject(&c, l, json!({"kind": "heal"})).await;
    wait_until(
        "the follower catches up",
        Duration::from_secs(10),
        || async { c.local(f, "one-way").await.is_some() },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn a_paused_leader_answers_nothing_is_replaced_and_follows_when_it_resumes() {
    let c = lf_cluster(3, 2, 2).await;
    let old = Cluster::LEADER;
    inject(&c, old, json!({"kind": "pause", "duration_ms": 6_000})).await;
    // `/admin/faults` still answers during the pause, and lists it.
    let s: FaultsStatus = c
        .client
        .get(format!("{}/admin/faults", c.url(old)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(s.active.iter().any(|a| a.kind == "pause"), "{s:?}");
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = quick.get(format!("{}/health", c.url(old))).send().await;
    assert!(r.is_err(), "a paused node does not answer");
    let l = new_leader(&c, old).await;
    assert!(c.set(l, "k", "after").await.status().is_success());
    wait_until(
        "the old leader follows",
        Duration::from_secs(15),
        || async {
            c.try_status(old)
                .await
                .is_some_and(|s| s.role == kv_shared::Role::Follower)
        },
    )
    .await;
    c.wait_converged().await;
    c.stop().await;
}

#[tokio::test]
async fn delayed_messages_slow_a_write_and_dropped_ones_stop_it() {
    let c = lf_cluster(3, 3, 1).await;
    let l = Cluster::LEADER;
    let f = c.followers();
    inject(
        &c,
        l,
        json!({"kind": "delay", "peers": f, "ms": 300, "direction": "outgoing"}),
    )
    .await;
    let t = Instant::now();
    assert!(c.set(l, "slow", "v").await.status().is_success());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "W=3 waits for the delayed followers"
    );
    inject(&c, l, json!({"kind": "heal"})).await;
    inject(
        &c,
        l,
        json!({"kind": "drop", "peers": [f[0]], "probability": 1.0, "direction": "both"}),
    )
    .await;
    let r = c.set(l, "lost", "v").await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "W=3 cannot be met"
    );
    inject(&c, l, json!({"kind": "heal"})).await;
    c.wait_converged().await;
    c.stop().await;
}

#[tokio::test]
async fn a_clock_skewed_past_the_offset_is_refused_by_the_peers_until_healed() {
    let c = ll_support::start(3, 2, 1, |cfg| cfg.admin_token = Some(TOKEN.into())).await;
    // Within the offset: accepted, versions run ahead of the others'.
    inject(&c, 1, json!({"kind": "skew", "ms": 300})).await;
    assert_eq!(c.set(1, "a", "v").await.status(), StatusCode::CREATED);
    // Beyond it: its peers refuse its messages, so W = 2 is not met.
    inject(&c, 1, json!({"kind": "skew", "ms": 2_000})).await;
    assert_eq!(
        c.set(1, "b", "v").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The write's stamp came from the skewed clock.
    let ll = c.status(1).await.leaderless.unwrap();
    assert!(
        ll.clock_ms >= kv_node::events::wall_ms() + 1_500,
        "the node's clock runs ahead: {ll:?}"
    );
    let refused = c.status(2).await.security.unwrap().invalid_messages;
    assert!(refused >= 1, "node 2 counted the refused messages");
    inject(&c, 1, json!({"kind": "heal"})).await;
    // Its clock stays where it got (never goes back), so wait until the
    // wall clock is within the offset again, then writes go through.
    wait_until(
        "writes through node 1 succeed again",
        Duration::from_secs(20),
        || async { c.set(1, "c", "v").await.status() == StatusCode::CREATED },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_ends_the_process_and_the_restarted_node_catches_up() {
    use kv_loadtester::cluster::{ClusterKind, ClusterSpec, LocalCluster};
    let spec = ClusterSpec {
        kind: ClusterKind::LeaderFollower { w: 2, r: 2 },
        n: 3,
        delay_profile: false,
        node_bin: std::path::PathBuf::from(env!("CARGO_BIN_EXE_kv-node")),
        log_dir: None,
        extra_args: Vec::new(),
        env: vec![("ADMIN_TOKEN".into(), TOKEN.into())],
    };
    let mut cluster = LocalCluster::start(&spec).await.expect("cluster starts");
    let client = reqwest::Client::new();
    let urls = cluster.urls.clone();
    let url = |id: NodeId| urls[id as usize - 1].clone();
    let r = client
        .post(format!("{}/set", url(1)))
        .json(&json!({"key": "before", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .post(format!("{}/admin/faults", url(2)))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let status = cluster
        .wait_exit(2, Duration::from_secs(10))
        .await
        .expect("the node exits");
    assert_eq!(status.code(), Some(137));
    cluster.restart(2).await.expect("restarts");
    cluster
        .wait_converged(Duration::from_secs(20))
        .await
        .expect("converges");
    let got: serde_json::Value =
        common::get_json(&client, &format!("{}/local_read/before", url(2))).await;
    assert_eq!(got["value"], "v", "the restarted node caught up");
    cluster.stop().await;
}

/// A restart replaces node 2's process by a fresh run of the same
/// executable: the same pid, nothing of the old memory (its fault counter
/// starts again at 0), and it catches up from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_starts_the_node_again_empty_in_the_same_process() {
    use kv_loadtester::cluster::{process_state, ClusterKind, ClusterSpec, LocalCluster};
    let spec = ClusterSpec {
        kind: ClusterKind::LeaderFollower { w: 2, r: 2 },
        n: 3,
        delay_profile: false,
        node_bin: std::path::PathBuf::from(env!("CARGO_BIN_EXE_kv-node")),
        log_dir: None,
        extra_args: Vec::new(),
        env: vec![("ADMIN_TOKEN".into(), TOKEN.into())],
    };
    let cluster = LocalCluster::start(&spec).await.expect("cluster starts");
    let client = reqwest::Client::new();
    let url = |id: NodeId| cluster.url(id).to_owned();
    let r = client
        .post(format!("{}/set", url(1)))
        .json(&json!({"key": "before", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let pid = cluster.pid(2).expect("node 2 runs");
    let r = client
        .post(format!("{}/admin/faults", url(2)))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: FaultsStatus = r.json().await.unwrap();
    assert_eq!(body.injected, 1, "the restart is counted by the old run");
    let fresh = |c: reqwest::Client, u: String| async move {
        let Ok(resp) = c.get(format!("{u}/status")).send().await else {
            return false;
        };
        let s: kv_shared::cluster::StatusResponse = resp.json().await.unwrap();
        s.faults.is_some_and(|f| f.injected == 0)
    };
    wait_until(
        "node 2 answers as a fresh run",
        Duration::from_secs(20),
        || fresh(client.clone(), url(2)),
    )
    .await;
    assert_eq!(cluster.pid(2), Some(pid), "the same process");
    assert!(
        process_state(pid).is_some_and(|s| s != 'Z'),
        "still running after the restart"
    );
    wait_until("node 2 caught up", Duration::from_secs(20), || {
        let (c, u) = (client.clone(), url(2));
        async move {
            let Ok(resp) = c.get(format!("{u}/local_read/before")).send().await else {
                return false;
            };
            resp.status() == StatusCode::OK
        }
    })
    .await;
    cluster.stop().await;
}
