//! Helpers of the leaderless scenario tests: a leaderless cluster built on the
//! shared in-process [`Cluster`] helper, and assertions over real HTTP.
#![allow(dead_code)]

use crate::common::{wait_until, Cluster};
use kv_node::config::ModeArg;
use kv_node::Config;
use kv_shared::cluster::StatusResponse;
use kv_shared::replication::Record;
use kv_shared::{NodeId, SetResponse};
use reqwest::StatusCode;
use std::time::Duration;

/// Starts `n` leaderless nodes (ids 1..=n) with quorums `w`/`r`; `tweak`
/// adjusts every node's flags after the leaderless defaults of the tests
/// (anti-entropy every 300 ms, short timeouts).
pub async fn start(n: u32, w: u32, r: u32, tweak: impl Fn(&mut Config)) -> Cluster {
    Cluster::start(n, w, r, |c| {
        c.mode = ModeArg::Leaderless;
        c.role = None;
        c.anti_entropy_ms = 300;
        tweak(c);
    })
    .await
}

/// `POST /set` that must answer 201.
pub async fn write(c: &Cluster, node: NodeId, key: &str, value: &str) -> SetResponse {
    let r = c.set(node, key, value).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "write of {key} at node {node}: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// Every record of node `id`'s store, sorted by key.
pub fn contents(c: &Cluster, id: NodeId) -> Vec<Record> {
    let mut r = c.node(id).state.store.records();
    r.sort_by(|a, b| a.key.cmp(&b.key));
    r
}

/// Waits until the stores of every node in `ids` hold exactly the same records.
pub async fn wait_identical(c: &Cluster, ids: &[NodeId], what: &str, limit: Duration) {
    wait_until(what, limit, || async {
        let first = contents(c, ids[0]);
        ids[1..].iter().all(|id| contents(c, *id) == first)
    })
    .await;
}

/// The leaderless part of node `id`'s `/status`.
pub async fn ll_status(c: &Cluster, id: NodeId) -> StatusResponse {
    let s = c.status(id).await;
    assert!(
        s.leaderless.is_some(),
        "node {id} reports leaderless fields"
    );
    s
}
