//! A leader that starts says, in `/health`, whether it takes writes yet.

mod common;

use common::{get_json, wait_until, TestNode};
use kv_node::config::{ModeArg, RoleArg};
use kv_node::Config;
use kv_shared::HealthResponse;
use reqwest::StatusCode;
use std::time::Duration;

async fn health(c: &reqwest::Client, url: &str) -> HealthResponse {
    get_json(c, &format!("{url}/health")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_leader_is_not_ready_until_it_has_recovered_its_followers_state() {
    // The followers' ports accept connections but never answer, so the leader's
    // recovery waits for its peer timeout; meanwhile it is alive but not ready.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let leader_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader_port = leader_listener.local_addr().unwrap().port();
    let mut config = Config::for_tests(1);
    config.port = leader_port;
    config.mode = ModeArg::LeaderFollower;
    config.role = Some(RoleArg::Leader);
    config.peers = format!("1=http://127.0.0.1:{leader_port},2={silent_url},3={silent_url}");
    config.w = Some(1);
    config.r = Some(1);
    config.peer_timeout_ms = 3000;
    let leader = TestNode::start_on(leader_listener, config);
    let c = reqwest::Client::new();

    let h = health(&c, &leader.url).await;
    assert_eq!(h.status, "healthy");
    assert!(!h.ready, "a recovering leader says it is not ready: {h:?}");
    let r = c
        .post(format!("{}/set", leader.url))
        .json(&serde_json::json!({"key": "k", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    wait_until("the leader is ready", Duration::from_secs(15), || async {
        health(&c, &leader.url).await.ready
    })
    .await;
    let r = c
        .post(format!("{}/set", leader.url))
        .json(&serde_json::json!({"key": "k", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "a ready leader takes writes (W=1)"
    );
    leader.stop().await;
    drop(silent);
}
