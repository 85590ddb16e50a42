//! `GET /metrics` over real HTTP: requests counted by route pattern and
//! status (a quorum failure is a 503 of `/set`), latency histograms, and the
//! `/status` figures — the leader's lag per follower, its term, faults.

mod common;

use common::{metrics_sample as sample, wait_until, Cluster};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_show_the_leaders_view_of_its_followers() {
    let c = Cluster::start(3, 2, 2, |cfg| {
        cfg.admin_token = Some("metrics-token".into())
    })
    .await;
    let leader = Cluster::LEADER;
    for i in 0..3 {
        assert_eq!(c.set(leader, &format!("k{i}"), "v").await.status(), 201);
    }
    assert_eq!(c.get(leader, "k0").await.status(), 200);
    assert_eq!(c.get(leader, "k0").await.status(), 200);
    let text = c.metrics(leader).await;
    // Route patterns, never keys, as labels.
    assert_eq!(
        sample(
            &text,
            r#"kv_http_requests_total{route="/set",method="POST",status="201"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"kv_http_requests_total{route="/get",method="GET",status="200"}"#
        ),
        Some(2.0)
    );
    assert!(!text.contains("k0"), "no key in any label");
    assert_eq!(
        sample(
            &text,
            r#"kv_http_request_duration_seconds_count{route="/set"}"#
        ),
        Some(3.0)
    );
    assert_eq!(sample(&text, "kv_is_leader"), Some(1.0));
    assert_eq!(sample(&text, "kv_faults_injected_total"), Some(0.0));
    assert!(sample(&text, "kv_term").is_some_and(|t| t >= 1.0), "{text}");
    assert_eq!(sample(&text, "kv_write_quorum"), Some(2.0));
    for peer in [2, 3] {
        let lag = format!(r#"kv_replication_lag_entries{{peer="{peer}"}}"#);
        assert!(
            sample(&text, &lag).is_some(),
            "lag of follower {peer}: {text}"
        );
    }
    // The followers' appends arrive as counted node-to-node requests.
    let follower = c.metrics(2).await;
    assert!(
        follower.contains(r#"route="/internal/lf/append",method="POST",status="200""#),
        "{follower}"
    );
    assert_eq!(sample(&follower, "kv_is_leader"), Some(0.0));

    // Cut the leader off from both followers: a write cannot meet W = 2,
    // answers 503, and the fault shows as injected and active.
    let cut = c
        .fault(leader, json!({"kind": "cut", "peers": [2, 3]}))
        .await;
    assert!(cut.status().is_success(), "{}", cut.text().await.unwrap());
    let resp = c.set(leader, "cut", "v").await;
    assert_eq!(resp.status(), 503);
    let text = c.metrics(leader).await;
    assert_eq!(
        sample(
            &text,
            r#"kv_http_requests_total{route="/set",method="POST",status="503"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "kv_faults_injected_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(sample(&text, "kv_faults_active").is_some_and(|n| n >= 1.0));
    // Healed, whichever node leads then (the cut may have cost node 1 its
    // term) shows its followers' lag drained to zero.
    assert!(c
        .fault(leader, json!({"kind": "heal"}))
        .await
        .status()
        .is_success());
    assert_eq!(
        sample(&c.metrics(leader).await, "kv_faults_active"),
        Some(0.0)
    );
    wait_until(
        "a leader whose followers caught up",
        Duration::from_secs(15),
        || async {
            for id in 1..=3u32 {
                let text = c.metrics(id).await;
                let peers = (1..=3u32).filter(|p| *p != id);
                if sample(&text, "kv_is_leader") == Some(1.0)
                    && peers.clone().count() == 2
                    && peers.into_iter().all(|p| {
                        sample(
                            &text,
                            &format!(r#"kv_replication_lag_entries{{peer="{p}"}}"#),
                        ) == Some(0.0)
                    })
                {
                    return true;
                }
            }
            false
        },
    )
    .await;
}
