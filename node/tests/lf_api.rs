//! The client API of a leader-follower cluster over real HTTP: `/config`,
//! forwarding, and the 503s of quorums that cannot be met.

mod common;

use common::{metrics_sample, wait_until, Cluster};
use kv_shared::cluster::{ClusterConfig, DelayProfile};
use kv_shared::replication::INTERNAL_READS_STREAM_PATH;
use kv_shared::{ErrorBody, NodeId, SetResponse};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

async fn error(resp: reqwest::Response, status: StatusCode) -> ErrorBody {
    assert_eq!(resp.status(), status, "status of {}", resp.url());
    resp.json().await.unwrap()
}

#[tokio::test]
async fn config_rejects_quorums_outside_one_to_n_and_applies_valid_ones_cluster_wide() {
    // W and R must be 1..=N; a valid change made on any node reaches every node.
    let c = Cluster::start(5, 3, 3, |cfg| cfg.admin_token = Some("s3cret".into())).await;
    for (body, needle) in [
        (json!({"w": 0}), "w must be between 1 and n=5, got 0"),
        (json!({"w": 6}), "w must be between 1 and n=5, got 6"),
        (
            json!({"r": 9, "w": 1}),
            "r must be between 1 and n=5, got 9",
        ),
        (json!({"w": "two"}), "w"),
        (json!({"w": -1}), "w"),
    ] {
        let e = error(
            c.post_config(3, body.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(e.error.contains(needle), "{body}: {}", e.error);
    }
    let bad_json = c
        .client
        .post(format!("{}/config", c.url(1)))
        .header("content-type", "application/json")
        .body("{w:")
        .send()
        .await
        .unwrap();
    error(bad_json, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        (c.config(1).await.w, c.config(1).await.r),
        (3, 3),
        "refused changes change nothing"
    );

    let resp = c.post_config(4, json!({"w": 5, "r": 1})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cfg: ClusterConfig = resp.json().await.unwrap();
    assert_eq!((cfg.n, cfg.w, cfg.r), (5, 5, 1));
    for id in 1..=5 {
        assert_eq!(
            (c.config(id).await.w, c.config(id).await.r),
            (5, 1),
            "node {id}"
        );
    }

    // With an admin token configured, W/R and delay changes need it: 401 without.
    let delays = json!({"delay_profile": {"send_ms": 0, "ack_ms": 5, "remote_read_ms": 0}});
    for body in [delays.clone(), json!({"w": 1})] {
        error(
            c.post_config_as(1, body, None).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    error(
        c.post_config_as(2, json!({"r": 5}), Some("wrong")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(c.config(3).await.r, 1, "refused changes change nothing");
    let ok = c
        .client
        .post(format!("{}/config", c.url(1)))
        .bearer_auth("s3cret")
        .json(&delays)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let expected = DelayProfile {
        send_ms: 0,
        ack_ms: 5,
        remote_read_ms: 0,
    };
    for id in 1..=5 {
        assert_eq!(c.config(id).await.delay_profile, expected, "node {id}");
    }
    c.stop().await;
}

#[tokio::test]
async fn a_change_sent_to_a_follower_is_in_force_on_every_node_when_it_answers() {
    // POST /config at a follower goes through the leader's log; its 200 means
    // every node runs the new W and R (no waiting afterwards).
    let c = Cluster::start(5, 5, 1, |_| {}).await;
    let r = c.post_config(3, json!({"w": 1, "r": 5})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let applied: ClusterConfig = r.json().await.unwrap();
    assert_eq!((applied.w, applied.r), (1, 5));
    for id in 1..=5 {
        let cfg = c.config(id).await;
        assert_eq!((cfg.w, cfg.r), (1, 5), "node {id}");
    }
    // The node-to-node endpoint of leaderless mode cannot bypass the log.
    let envelope = kv_shared::replication::ConfigEnvelope {
        config: ClusterConfig::new(5, 1, 1, DelayProfile::OFF).unwrap(),
        epoch: 99,
        origin: 3,
    };
    let without_secret = c
        .client
        .post(format!("{}/internal/config", c.url(2)))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    error(without_secret, StatusCode::UNAUTHORIZED).await;
    let r = c
        .post_internal(
            2,
            "/internal/config",
            serde_json::to_value(envelope).unwrap(),
        )
        .await;
    let e = error(r, StatusCode::CONFLICT).await;
    assert!(e.error.contains("leader's log"), "{}", e.error);
    assert_eq!(c.config(2).await.r, 5);
    c.stop().await;
}

#[tokio::test]
async fn delay_profile_changes_are_forbidden_without_an_admin_token() {
    // No --admin-token: admin calls get 403, W/R changes still work.
    let c = Cluster::start(3, 2, 2, |_| {}).await;
    let body = json!({"w": 1, "delay_profile": {"send_ms": 1, "ack_ms": 1, "remote_read_ms": 1}});
    let e = error(c.post_config(1, body).await, StatusCode::FORBIDDEN).await;
    assert!(e.error.contains("admin"), "{}", e.error);
    assert_eq!(c.config(2).await.w, 2);
    assert_eq!(
        c.post_config(1, json!({"w": 1})).await.status(),
        StatusCode::OK
    );
    c.stop().await;
}

#[tokio::test]
async fn followers_forward_writes_to_the_leader_and_say_who_served_them() {
    // A write sent to a follower is decided by the leader; the answer names both.
    let c = Cluster::start(5, 3, 1, |_| {}).await;
    for f in c.followers() {
        let r = c.set(f, "k", &format!("from-{f}")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let s: SetResponse = r.json().await.unwrap();
        assert_eq!(
            (s.served_by, s.forwarded_by, s.version),
            (Some(1), Some(f), u64::from(f) - 1)
        );
    }
    // Validation happens before forwarding, with the same errors as the leader's.
    error(c.set(3, "", "v").await, StatusCode::BAD_REQUEST).await;
    // A direct write at the leader carries no forwarded_by.
    let s: SetResponse = c.set(1, "k", "direct").await.json().await.unwrap();
    assert_eq!((s.served_by, s.forwarded_by), (Some(1), None));
    c.stop().await;
}

#[tokio::test]
async fn while_the_leader_is_down_writes_answer_503_then_a_new_leader_takes_them() {
    // Right after the leader dies a follower's write is 503 naming it; within a
    // few election timeouts another node leads and the same write answers 201.
    // Reads answer 503 too: a read returns what the leader committed, so it
    // needs a leader (as etcd's linearizable reads do).
    let mut c = Cluster::start(5, 3, 3, |_| {}).await;
    assert_eq!(c.set(2, "k", "v").await.status(), StatusCode::CREATED);
    c.kill(Cluster::LEADER).await;
    let e = error(c.set(2, "k", "w").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(e.leader, Some(1));
    assert!(e.term.is_some(), "the error names the term: {e:?}");
    let r = c.get(3, "k").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let e: kv_shared::ErrorBody = r.json().await.unwrap();
    assert!(e.error.contains("leader"), "{e:?}");
    wait_until(
        "a new leader takes writes",
        Duration::from_secs(10),
        || async { c.set(2, "k", "w").await.status() == StatusCode::CREATED },
    )
    .await;
    let s: SetResponse = c.set(2, "k", "w2").await.json().await.unwrap();
    assert!(
        s.served_by.is_some_and(|l| l != 1),
        "served by {:?}",
        s.served_by
    );
    let g: kv_shared::GetResponse = c.get(4, "k").await.json().await.unwrap();
    assert_eq!(g.value, "w2");
    c.stop().await;
}

#[tokio::test]
async fn write_answers_503_with_acked_and_required_when_w_cannot_be_met() {
    // W5 with a follower down: 503 after the write timeout, acked 4 of 5; the write
    // stays applied on the leader and the live followers.
    let mut c = Cluster::start(5, 5, 1, |cfg| cfg.write_timeout_ms = 400).await;
    c.kill(5).await;
    let e = error(c.set(2, "k", "v").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!((e.acked, e.required), (Some(4), Some(5)));
    assert!(e.error.contains("quorum"), "{}", e.error);
    wait_until(
        "the write reached the live followers",
        Duration::from_secs(5),
        || async {
            let mut all = true;
            for id in 1..=4 {
                all &= c.local(id, "k").await.is_some();
            }
            all
        },
    )
    .await;
    // With W lowered to 4 the same cluster accepts writes again.
    assert_eq!(
        c.post_config(1, json!({"w": 4})).await.status(),
        StatusCode::OK
    );
    assert_eq!(c.set(1, "k", "v2").await.status(), StatusCode::CREATED);
    // And the missing follower gets everything once it is back.
    c.restart(5).await;
    c.wait_converged().await;
    assert_eq!(c.local(5, "k").await.unwrap().version, 2);
    c.stop().await;
}

#[tokio::test]
async fn read_answers_503_when_fewer_than_r_replicas_answer() {
    // R5 with two followers down: only 3 replicas can answer.
    let mut c = Cluster::start(5, 1, 5, |_| {}).await;
    assert_eq!(c.set(1, "k", "v").await.status(), StatusCode::CREATED);
    c.kill(4).await;
    c.kill(5).await;
    let e = error(c.get(2, "k").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!((e.acked, e.required), (Some(3), Some(5)));
    assert_eq!(
        c.post_config(1, json!({"r": 3})).await.status(),
        StatusCode::OK
    );
    assert_eq!(c.get(2, "k").await.status(), StatusCode::OK);
    c.stop().await;
}

#[tokio::test]
async fn coordinated_reads_return_the_newest_copy_and_leave_replicas_to_the_log() {
    // A follower that has not applied a W1 write yet still answers a read over
    // R = 3 with it (the leader's copy wins); nothing is written back to it: it
    // gets the write from the leader's log, like every other replica.
    let c = Cluster::start(3, 1, 3, |cfg| cfg.ack_delay_ms = Some(1500)).await;
    assert_eq!(c.set(1, "k", "v").await.status(), StatusCode::CREATED);
    assert!(
        c.local(3, "k").await.is_none(),
        "follower 3 has not applied it yet"
    );
    let g: kv_shared::GetResponse = c.get(3, "k").await.json().await.unwrap();
    assert_eq!((g.version, g.served_by), (1, Some(3)));
    assert!(
        c.local(3, "k").await.is_none(),
        "no read repair in leader-follower mode"
    );
    // By default the leader was asked in batches over one reads stream,
    // never with a request of its own; an odd key arrives whole.
    odd_key_read(&c).await;
    assert!(read_batches_answered(&c, 1).await >= 2);
    assert_eq!(reads_streams_opened(&c, 1).await, 1);
    assert_eq!(single_asks_answered(&c, 1).await, 0);
    let forged = json!({"from": 1, "records": [{"key": "k", "value": "forged", "version": 9}]});
    let r = c.post_internal(3, "/internal/repair", forged).await;
    error(r, StatusCode::CONFLICT).await;
    wait_until(
        "follower 3 applied the write from the log",
        Duration::from_secs(5),
        || async { c.local(3, "k").await.is_some_and(|g| g.value == "v") },
    )
    .await;
    c.stop().await;
}

#[tokio::test]
async fn with_batching_off_each_ask_is_a_request_of_its_own() {
    let c = Cluster::start(3, 3, 3, |cfg| cfg.read_batches_in_flight = 0).await;
    odd_key_read(&c).await;
    assert!(single_asks_answered(&c, 1).await >= 1);
    assert_eq!(read_batches_answered(&c, 1).await, 0);
    assert_eq!(reads_streams_opened(&c, 1).await, 0);
    c.stop().await;
}

/// Writes and reads over R = 3 at node 3 a key that the query string must
/// encode (`GET /internal/read`): it arrives whole.
async fn odd_key_read(c: &Cluster) {
    let odd = "a b&c=d/é?";
    assert_eq!(c.set(1, odd, "odd").await.status(), StatusCode::CREATED);
    let g: kv_shared::GetResponse = c.get(3, odd).await.json().await.unwrap();
    assert_eq!((g.value.as_str(), g.version), ("odd", 1));
}

/// How many `GET /internal/read` node `id` answered, from its `/metrics`.
async fn single_asks_answered(c: &Cluster, id: NodeId) -> u64 {
    let series = r#"kv_http_requests_total{route="/internal/read",method="GET",status="200"}"#;
    metrics_sample(&c.metrics(id).await, series).map_or(0, |n| n as u64)
}

/// How many `POST /internal/reads` node `id` answered, from its `/metrics`
/// (each batch over a reads stream counts as one).
async fn read_batches_answered(c: &Cluster, id: NodeId) -> u64 {
    let series = r#"kv_http_requests_total{route="/internal/reads",method="POST",status="200"}"#;
    metrics_sample(&c.metrics(id).await, series).map_or(0, |n| n as u64)
}

#[tokio::test]
async fn concurrent_reads_share_batches_to_a_peer_and_each_gets_its_own_copy() {
    // One batch in flight per peer, held 300 ms by the remote-read delay:
    // the reads made meanwhile ask the leader together, in the next batch.
    let c = Cluster::start(3, 3, 3, |cfg| {
        cfg.read_batches_in_flight = 1;
        cfg.remote_read_delay_ms = Some(300);
    })
    .await;
    let reads = 30;
    for i in 0..reads {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(c.set(1, &k, &v).await.status(), StatusCode::CREATED);
    }
    let before = read_batches_answered(&c, 1).await;
    // Two rounds, one after the other: each needs at least one batch.
    for round in 0..2 {
        concurrent_reads(&c, 3, reads, round).await;
    }
    let batches = read_batches_answered(&c, 1).await - before;
    // Every read asked the leader (the first candidate); far fewer batches
    // than reads carried the asks.
    assert!(
        (2..reads as u64 / 3).contains(&batches),
        "{batches} batches for {reads} reads"
    );
    // All of them over one reads stream from node 3, opened once.
    assert_eq!(reads_streams_opened(&c, 1).await, 1);
    c.stop().await;
}

/// Reads `k0`…`k{reads-1}` at node `at` all at once and checks each gets
/// its own value (`v{i}`, version 1).
async fn concurrent_reads(c: &Cluster, at: NodeId, reads: usize, round: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..reads {
        let (client, url) = (c.client.clone(), c.url(at));
        tasks.spawn(async move {
            let resp = client
                .get(format!("{url}/get?key=k{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "read of k{i}");
            (i, resp.json::<kv_shared::GetResponse>().await.unwrap())
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, g) = r.unwrap();
        let want = (format!("v{i}"), 1);
        assert_eq!((g.value, g.version), want, "round {round}, read of k{i}");
    }
}

/// How many reads streams node `id` accepted (upgrades of
/// `POST /internal/reads/stream`), from its `/metrics`.
async fn reads_streams_opened(c: &Cluster, id: NodeId) -> u64 {
    let series = format!(
        r#"kv_http_requests_total{{route="{INTERNAL_READS_STREAM_PATH}",method="POST",status="101"}}"#
    );
    metrics_sample(&c.metrics(id).await, &series).map_or(0, |n| n as u64)
}

#[tokio::test]
async fn a_stopped_node_answers_no_batch_on_its_reads_stream_and_a_new_one_serves_again() {
    // N = R = 3: a read at node 3 needs the copies of both others.
    let mut c = Cluster::start(3, 3, 3, |cfg| cfg.read_batches_in_flight = 1).await;
    let reads = 8;
    for i in 0..reads {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(c.set(1, &k, &v).await.status(), StatusCode::CREATED);
    }
    c.wait_converged().await;
    concurrent_reads(&c, 3, reads, 0).await;
    assert_eq!(reads_streams_opened(&c, 2).await, 1);
    // Node 2 stops: the stream node 3 holds to it must not answer any more
    // (its server is gone, the stream too), so R = 3 cannot be met.
    c.kill(2).await;
    let r = c.get(3, "k0").await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "read with node 2 stopped"
    );
    // Back (empty, then caught up from the leader): a new stream serves.
    c.restart(2).await;
    wait_until("node 2 caught up", Duration::from_secs(10), || async {
        c.local(2, &format!("k{}", reads - 1)).await.is_some()
    })
    .await;
    wait_until(
        "a read at node 3 meets R = 3 again",
        Duration::from_secs(10),
        || async { c.get(3, "k0").await.status() == StatusCode::OK },
    )
    .await;
    concurrent_reads(&c, 3, reads, 1).await;
    assert_eq!(
        reads_streams_opened(&c, 2).await,
        1,
        "the restarted node's own count"
    );
    c.stop().await;
}

#[tokio::test]
async fn large_batches_travel_beyond_the_client_body_limit() {
    // Concurrent 60 KB writes accumulate into batches larger than the 128 KB client limit.
    let c = Cluster::start(3, 3, 1, |cfg| cfg.ack_delay_ms = Some(50)).await;
    let value = "x".repeat(60 * 1024);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (client, url, value) = (c.client.clone(), c.url(1), value.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{url}/set"))
                .json(&json!({"key": format!("big{i}"), "value": value}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(c.status(3).await.keys, 12);
    c.stop().await;
}

#[tokio::test]
async fn standalone_node_reports_status_and_config() {
    // A standalone node is a cluster of one: N=W=R=1, no peers.
    let n = common::TestNode::start(kv_node::Config::for_tests(9)).await;
    let client = reqwest::Client::new();
    let s: kv_shared::cluster::StatusResponse = client
        .get(format!("{}/status", n.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s.node_id, s.mode, s.role),
        (9, kv_shared::Mode::Standalone, kv_shared::Role::Standalone)
    );
    assert_eq!((s.config.n, s.config.w, s.config.r), (1, 1, 1));
    assert!(s.peers.is_empty());
    let r = client
        .post(format!("{}/config", n.url))
        .json(&json!({"w": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    n.stop().await;
}
