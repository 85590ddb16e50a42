//! Test helpers: fake nodes (axum on 127.0.0.1:0) whose behaviour is known
//! exactly, temporary directories, and command lines; [`real`] for
//! clusters of real `kv-node` processes.

#![allow(dead_code)]

pub mod real;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kv_loadtester::cli::{parse_from, RunArgs};
use kv_shared::api::KeyQuery;
use kv_shared::SetRequest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The state two fake nodes share: the leader's versions and what was served.
#[derive(Debug, Default)]
pub struct Fake {
    /// key → every value written, in order: version v is `values[v - 1]`.
    pub values: Mutex<HashMap<String, Vec<String>>>,
    /// Client requests (`/set`, `/get`, `/local_read`) received.
    pub requests: AtomicU64,
    /// `/get` reads the lagging node answered with an older version or a 404
    /// after a write (`/local_read`, which the final verification uses, is
    /// not counted).
    pub stale_served: AtomicU64,
    /// Of those, the 404s.
    pub stale_missing_served: AtomicU64,
}

/// How a fake node answers reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads return the latest version.
    Fresh,
    /// Reads return the version before the latest: version v-1, or 404 when v = 1.
    OneBehind,
    /// A deposed leader: writes answer 503 naming node `leader` (term 2), as
    /// a node that learnt of a newer term does; reads are fresh.
    Deposed {
        /// The leader the 503 names.
        leader: u32,
    },
}

#[derive(Clone)]
struct NodeState {
    fake: Arc<Fake>,
    id: u32,
    behaviour: Behaviour,
    status: Option<serde_json::Value>,
}

/// A fake node listening on 127.0.0.1.
pub struct FakeNode {
    /// Its base URL.
    pub url: String,
    listener: Option<tokio::net::TcpListener>,
}

impl FakeNode {
    /// Binds a port (the app is served by [`FakeNode::serve`]).
    pub async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self {
            url,
            listener: Some(listener),
        }
    }

    /// Serves node `id` with `behaviour`; `status` is its `/status` body (404 when `None`).
    pub fn serve(
        &mut self,
        fake: Arc<Fake>,
        id: u32,
        behaviour: Behaviour,
        status: Option<serde_json::Value>,
    ) {
        let state = NodeState {
            fake,
            id,
            behaviour,
            status,
        };
        let app = Router::new()
            .route("/set", post(set))
            .route("/get", get(read))
            .route("/local_read", get(local_read))
            .route("/health", get(health))
            .route("/status", get(status_handler))
            .with_state(state);
        let listener = self.listener.take().expect("served once");
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
}

async fn set(State(s): State<NodeState>, Json(req): Json<SetRequest>) -> Response {
    s.fake.requests.fetch_add(1, Relaxed);
    if let Behaviour::Deposed { leader } = s.behaviour {
        let body = serde_json::json!({
            "error": format!("node {} is not the leader; node {leader} is", s.id),
            "leader": leader, "term": 2,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let version = {
        let mut values = s.fake.values.lock().unwrap();
        let history = values.entry(req.key.clone()).or_default();
        history.push(req.value.clone());
        history.len() as u64
    };
    // Bodies are JSON literals so that optional fields added to the wire
    // types later do not break the fake.
    let status = if version == 1 { "created" } else { "updated" };
    let body = serde_json::json!({
        "key": req.key, "value": req.value, "version": version, "status": status, "served_by": s.id,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn read(State(s): State<NodeState>, Query(q): Query<KeyQuery>) -> Response {
    answer_read(s, q, true)
}

async fn local_read(State(s): State<NodeState>, Query(q): Query<KeyQuery>) -> Response {
    answer_read(s, q, false)
}

/// A read of `q.key` as the node's behaviour says; `count_stale`: whether a
/// lagging answer counts in [`Fake::stale_served`].
fn answer_read(s: NodeState, q: KeyQuery, count_stale: bool) -> Response {
    s.fake.requests.fetch_add(1, Relaxed);
    let history = s
        .fake
        .values
        .lock()
        .unwrap()
        .get(&q.key)
        .cloned()
        .unwrap_or_default();
    let latest = history.len() as u64;
    let served = match s.behaviour {
        Behaviour::Fresh | Behaviour::Deposed { .. } => latest,
        Behaviour::OneBehind => {
            if latest >= 1 && count_stale {
                s.fake.stale_served.fetch_add(1, Relaxed);
            }
            if latest == 1 && count_stale {
                s.fake.stale_missing_served.fetch_add(1, Relaxed);
            }
            latest.saturating_sub(1)
        }
    };
    if served == 0 {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "key not found"})),
        )
            .into_response();
    }
    let value = &history[served as usize - 1];
    Json(serde_json::json!({"key": q.key, "value": value, "version": served, "served_by": s.id}))
        .into_response()
}

async fn health(State(s): State<NodeState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "healthy", "time": "2024-01-01T00:00:00Z", "node_id": s.id,
        "mode": "standalone", "role": "standalone", "keys": 0,
    }))
}

async fn status_handler(State(s): State<NodeState>) -> Response {
    match s.status {
        Some(body) => Json(body).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no /status"})),
        )
            .into_response(),
    }
}

/// `/status` of node 1, leader of a 2-node leader-follower cluster.
pub fn two_node_status(leader_url: &str, follower_url: &str) -> serde_json::Value {
    serde_json::json!({
        "node_id": 1, "url": leader_url, "mode": "leader-follower", "role": "leader", "leader": 1,
        "config": {"n": 2, "w": 1, "r": 1},
        "applied_seq": 0, "keys": 0,
        "peers": [{"id": 2, "url": follower_url, "role": "follower", "up": true}],
    })
}

/// One fast fake node without `/status` (like a standalone node).
pub async fn single_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let mut node = FakeNode::bind().await;
    node.serve(fake.clone(), 1, Behaviour::Fresh, None);
    (fake, node.url)
}

/// Parses a command line (without the program name) into run flags.
pub fn run_args(line: &str) -> RunArgs {
    let argv = std::iter::once("kv-loadtester").chain(line.split_whitespace());
    parse_from(argv).unwrap().run
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("kv-lt-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
