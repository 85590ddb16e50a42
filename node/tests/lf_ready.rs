//! A leader-follower node says, in `/health`, whether it takes writes: only
//! once a leader is elected and its term has started. Before that, a write
//! answers 503 at once, naming the term.

mod common;

use common::{get_json, wait_until, TestNode};
use kv_node::config::{ModeArg, RoleArg};
use kv_node::Config;
use kv_shared::{ErrorBody, HealthResponse};
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

async fn health(c: &reqwest::Client, url: &str) -> HealthResponse {
    get_json(c, &format!("{url}/health")).await
}

fn node_config(id: u32, port: u16, peers: &str) -> Config {
    let mut config = Config::for_tests(id);
    config.port = port;
    config.mode = ModeArg::LeaderFollower;
    config.role = (id == 1).then_some(RoleArg::Leader);
    config.peers = peers.to_owned();
    config.w = Some(1);
    config.r = Some(1);
    config.heartbeat_ms = 50;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_writes_only_once_a_leader_is_elected() {
    // Node 1 starts alone (2 and 3 are not up yet): it cannot win a majority, so
    // it is alive but not ready and a write is refused at once with the term.
    // Once the others start, node 1 is elected and every node is ready.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let peers = (1..=3)
        .map(|i| format!("{i}=http://127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut listeners = listeners.into_iter();
    let first = TestNode::start_on(listeners.next().unwrap(), node_config(1, ports[0], &peers));
    let c = reqwest::Client::new();

    let h = health(&c, &first.url).await;
    assert_eq!(h.status, "healthy");
    assert!(!h.ready, "no leader yet: {h:?}");
    let started = Instant::now();
    let r = c
        .post(format!("{}/set", first.url))
        .json(&serde_json::json!({"key": "k", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(1), "never hangs");
    let e: ErrorBody = r.json().await.unwrap();
    assert!(e.term.is_some() && e.error.contains("no leader"), "{e:?}");

    let others: Vec<TestNode> = listeners
        .enumerate()
        .map(|(i, l)| TestNode::start_on(l, node_config(i as u32 + 2, ports[i + 1], &peers)))
        .collect();
    let urls: Vec<String> = std::iter::once(first.url.clone())
        .chain(others.iter().map(|n| n.url.clone()))
        .collect();
    wait_until("every node is ready", Duration::from_secs(15), || async {
        for u in &urls {
            if !health(&c, u).await.ready {
                return false;
            }
        }
        true
    })
    .await;
    let r = c
        .post(format!("{}/set", urls[2]))
        .json(&serde_json::json!({"key": "k", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "a ready node takes writes");
    first.stop().await;
    for n in others {
        n.stop().await;
    }
}
