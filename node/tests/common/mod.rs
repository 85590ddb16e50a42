//! Helpers shared by the integration tests: real nodes on 127.0.0.1.
//!
//! [`TestNode`] serves one node in this process; [`Cluster`] starts N of them
//! as a leader-follower cluster. Ports: all N listeners are bound first (port
//! 0), then every node's configuration is built with the known URLs, then the
//! nodes are served. A killed node restarts empty on the same port, so its
//! peers need no new address.
#![allow(dead_code)]

use kv_node::config::{ModeArg, RoleArg};
use kv_node::{run, AppState, Config};
use kv_shared::cluster::StatusResponse;
use kv_shared::{GetResponse, NodeId};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The value of the sample `name{labels}` (labels exactly as printed) in
/// `/metrics` text, if present.
pub fn metrics_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A node served in this process on a free port of 127.0.0.1.
pub struct TestNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its state (store, cluster view), for assertions that HTTP cannot make.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestNode {
    /// Starts a node on the address its configuration names (port 0: any free port).
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind((config.bind, config.port)).await.unwrap();
        Self::start_on(listener, config)
    }

    /// Serves a node on an already bound listener.
    pub fn start_on(listener: TcpListener, config: Config) -> Self {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let state = AppState::new(config);
        let task = tokio::spawn(run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            url: format!("http://{addr}"),
            state,
            stop: Some(tx),
            task,
        }
    }

    /// Stops the node gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// `POST {base}{path}` with `body`, signed as node `from` with the tests'
/// cluster secret.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    from: NodeId,
    body: &serde_json::Value,
) -> reqwest::Response {
    let bytes = serde_json::to_vec(body).unwrap();
    let secret = kv_node::security::Secret::new(kv_node::config::TEST_CLUSTER_SECRET);
    let (headers, _) = secret.signed_headers("POST", path, from, &bytes);
    client
        .post(format!("{base}{path}"))
        .headers(headers)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

/// The address a `kv-node` process logs when it listens (`listening on
/// http://ADDR`), from the first 50 lines of its output.
pub fn listening_addr(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Option<String> {
    lines.take(50).map_while(Result::ok).find_map(|l| {
        l.split("listening on http://")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_owned)
    })
}

/// Resident memory of process `pid`, in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `GET url`, parsed as JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A leader-follower cluster of in-process nodes with ids 1..=N. Node 1 is
/// started with `--role leader`, so it campaigns first and leads the first
/// term; [`Cluster::start`] returns once it does and every node follows it.
pub struct Cluster {
    nodes: Vec<Option<TestNode>>,
    configs: Vec<Config>,
    /// One client for the test, with keep-alive.
    pub client: reqwest::Client,
}

impl Cluster {
    /// The id of the first leader (the node started with `--role leader`).
    pub const LEADER: NodeId = 1;

    /// Starts `n` nodes with quorums `w`/`r`; `tweak` adjusts every node's
    /// flags (delay profile, timeouts…) before start.
    pub async fn start(n: u32, w: u32, r: u32, tweak: impl Fn(&mut Config)) -> Self {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let configs: Vec<Config> = (1..=n)
            .map(|id| {
                let mut c = Config::for_tests(id);
                c.port = ports[id as usize - 1];
                c.mode = ModeArg::LeaderFollower;
                c.role = Some(if id == Self::LEADER {
                    RoleArg::Leader
                } else {
                    RoleArg::Follower
                });
                c.peers = peers.clone();
                c.w = Some(w);
                c.r = Some(r);
                c.heartbeat_ms = 50;
                c.write_timeout_ms = 2000;
                c.peer_timeout_ms = 1000;
                tweak(&mut c);
                c
            })
            .collect();
        let nodes = listeners
            .into_iter()
            .zip(&configs)
            .map(|(l, c)| Some(TestNode::start_on(l, c.clone())))
            .collect();
        let cluster = Self {
            nodes,
            configs,
            client: reqwest::Client::new(),
        };
        cluster.wait_all_up().await;
        cluster
    }

    /// Number of nodes.
    pub fn n(&self) -> u32 {
        self.configs.len() as u32
    }

    /// The ids of the followers.
    pub fn followers(&self) -> Vec<NodeId> {
        (2..=self.n()).collect()
    }

    /// Base URL of node `id` (whether running or not).
    pub fn url(&self, id: NodeId) -> String {
        format!("http://127.0.0.1:{}", self.configs[id as usize - 1].port)
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> &TestNode {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    /// Waits until node 1 leads, its term has started, it sees every
    /// follower up, and every running node takes writes (knows the leader);
    /// in leaderless mode, until node 1 sees every peer up.
    pub async fn wait_all_up(&self) {
        wait_until(
            "node 1 leads and every node follows it",
            Duration::from_secs(15),
            || async {
                let Some(s) = self.try_status(Self::LEADER).await else {
                    return false;
                };
                let leaderless = self.configs[0].mode == ModeArg::Leaderless;
                if !(leaderless || s.role == kv_shared::Role::Leader)
                    || !s.peers.iter().all(|p| p.up)
                {
                    return false;
                }
                for id in 1..=self.n() {
                    if self.nodes[id as usize - 1].is_none() {
                        continue;
                    }
                    let h: Option<kv_shared::HealthResponse> = async {
                        let r = self
                            .client
                            .get(format!("{}/health", self.url(id)))
                            .send()
                            .await
                            .ok()?;
                        r.json().await.ok()
                    }
                    .await;
                    if !h.is_some_and(|h| h.ready) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// The node that leads now, as the running nodes report it.
    pub async fn leader(&self) -> Option<NodeId> {
        for id in 1..=self.n() {
            if self.nodes[id as usize - 1].is_none() {
                continue;
            }
            if let Some(s) = self.try_status(id).await {
                if s.role == kv_shared::Role::Leader {
                    return Some(id);
                }
            }
        }
        None
    }

    /// Stops node `id` (its server and its background tasks).
    pub async fn kill(&mut self, id: NodeId) {
        if let Some(node) = self.nodes[id as usize - 1].take() {
            node.stop().await;
        }
    }

    /// Starts node `id` again with an empty store, on its old port.
    pub async fn restart(&mut self, id: NodeId) {
        let config = self.configs[id as usize - 1].clone();
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind((config.bind, config.port)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.expect("the old port is free again");
        self.nodes[id as usize - 1] = Some(TestNode::start_on(listener, config));
    }

    /// `POST /set` on node `id`.
    pub async fn set(&self, id: NodeId, key: &str, value: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/set", self.url(id)))
            .json(&json!({"key": key, "value": value}))
            .send()
            .await
            .unwrap()
    }

    /// `GET /get?key=` on node `id`.
    pub async fn get(&self, id: NodeId, key: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/get", self.url(id)))
            .query(&[("key", key)])
            .send()
            .await
            .unwrap()
    }

    /// `GET /local_read?key=` on node `id`: the value, or None on 404.
    pub async fn local(&self, id: NodeId, key: &str) -> Option<GetResponse> {
        let r = self
            .client
            .get(format!("{}/local_read", self.url(id)))
            .query(&[("key", key)])
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.json().await.unwrap()),
            404 => None,
            s => panic!("local_read answered {s}"),
        }
    }

    /// `GET /metrics` on node `id`: OpenMetrics text, ending with `# EOF`.
    pub async fn metrics(&self, id: NodeId) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.url(id)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        let text = resp.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        text
    }

    /// `GET /status` on node `id`, or None if it does not answer.
    pub async fn try_status(&self, id: NodeId) -> Option<StatusResponse> {
        let r = self
            .client
            .get(format!("{}/status", self.url(id)))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// `GET /status` on node `id`.
    pub async fn status(&self, id: NodeId) -> StatusResponse {
        self.try_status(id).await.expect("node answers /status")
    }

    /// `GET /config` on node `id`.
    pub async fn config(&self, id: NodeId) -> kv_shared::cluster::ClusterConfig {
        get_json(&self.client, &format!("{}/config", self.url(id))).await
    }

    /// `POST /config` on node `id` with a JSON body, as an admin (with the
    /// cluster's admin token, when it has one).
    pub async fn post_config(&self, id: NodeId, body: serde_json::Value) -> reqwest::Response {
        let token = self.configs[0].admin_token.clone();
        self.post_config_as(id, body, token.as_deref()).await
    }

    /// `POST /config` on node `id` with a JSON body and the given admin token.
    pub async fn post_config_as(
        &self,
        id: NodeId,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/config", self.url(id)))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// `POST /admin/faults` on node `id` with the cluster's admin token.
    pub async fn fault(&self, id: NodeId, body: serde_json::Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{}", self.url(id), kv_shared::admin::FAULTS_PATH))
            .json(&body);
        if let Some(t) = &self.configs[0].admin_token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    /// `POST {path}` on node `id` as another member would send it (signed
    /// with the cluster secret).
    pub async fn post_internal(
        &self,
        id: NodeId,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let from = if id == 1 { 2 } else { 1 };
        post_signed(&self.client, &self.url(id), path, from, &body).await
    }

    /// Waits until every running node has applied everything the current
    /// leader has, and the leader sees no running follower behind.
    pub async fn wait_converged(&self) {
        wait_until(
            "every follower caught up",
            Duration::from_secs(20),
            || async {
                let Some(l) = self.leader().await else {
                    return false;
                };
                let leader = self.status(l).await;
                let mut ok = true;
                for id in (1..=self.n()).filter(|&id| id != l) {
                    if self.nodes[id as usize - 1].is_none() {
                        continue;
                    }
                    let lag = leader
                        .peers
                        .iter()
                        .find(|p| p.id == id)
                        .and_then(|p| p.progress.lag_entries);
                    ok &= lag == Some(0) && self.status(id).await.applied_seq == leader.applied_seq;
                }
                ok
            },
        )
        .await;
    }

    /// Cuts node `id` off from every other node, both ways, in each node's
    /// own transport (the test's and a browser's HTTP calls are not cut).
    pub fn isolate(&self, id: NodeId) {
        for other in (1..=self.n()).filter(|&o| o != id) {
            self.node(id)
                .state
                .cluster
                .faults()
                .cut(&[other], true, true);
            self.node(other)
                .state
                .cluster
                .faults()
                .cut(&[id], true, true);
        }
    }

    /// Heals every fault on every running node.
    pub fn heal(&self) {
        for id in 1..=self.n() {
            if let Some(n) = &self.nodes[id as usize - 1] {
                n.state.cluster.faults().heal();
            }
        }
    }

    /// Stops every node.
    pub async fn stop(mut self) {
        for id in 1..=self.n() {
            self.kill(id).await;
        }
    }
}
