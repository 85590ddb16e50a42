//! The nodes under load and where each request goes.
//!
//! Nodes come from `--nodes URL,URL,...` or from `--discover URL`, which
//! reads that node's `GET /status` ([`StatusResponse`]: the node itself plus
//! its peers, their roles and the leader). With `--nodes`, the first node's
//! `/status` is read too when it is served, to learn ids, roles and the
//! leader; when the first node does not serve `/status` (a standalone node),
//! the first URL is the leader and each node's id comes from its `/health`.
//!
//! Routing: in leader mode writes go to the leader and reads to any node,
//! the leader only or the followers only (`--read-from`); in leaderless mode
//! every request goes to a node chosen at random.
//!
//! # Following the leader
//! Any node can lead, and the leader changes when it fails. The seeded
//! operation sequence still names a node ([`Targets::pick_write`] at
//! generation time, so the sequence does not depend on timing), but at
//! execute time a write goes to the leader known *now*
//! ([`Targets::write_node`]): one `AtomicUsize`, read with one load on the
//! hot path. What a write's answer says moves it ([`Targets::note_write`]):
//!
//! - a 201 `served_by` another node (a follower forwarded it): that node leads;
//! - a 503 whose JSON body names a `leader` among the nodes, other than the
//!   one the write went to: that node leads;
//! - no answer (connection refused or reset, timeout), or a 503 naming no
//!   usable leader: **rediscovery**, in the background and at most once per
//!   [`REDISCOVERY_INTERVAL`]: every node's `GET /status` with a
//!   [`STATUS_TIMEOUT`] timeout; the leader is the one the answers of the
//!   highest `leader_follower.term` report ([`choose_leader`]: a node that
//!   says it leads, or their `leader` field). Answers of older terms are
//!   ignored: a deposed leader that has not heard of the new term yet still
//!   calls itself leader.
//!
//! The failed request itself is counted as an error, not retried: routing
//! changes only where later writes go. `--read-from leader` reads follow the
//! leader the same way; `--read-from followers` reads that the sequence sent
//! to the node leading now go to the leader of the start instead (a
//! follower now), so reads still avoid the leader.

use crate::cli::{ModeArg, ReadFrom};
use crate::error::{Error, Result};
use kv_shared::cluster::{ClusterConfig, StatusResponse};
use kv_shared::{HealthResponse, Mode, NodeId, Role, Term};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rediscoveries of the leader start at most this often.
pub const REDISCOVERY_INTERVAL: Duration = Duration::from_millis(200);

/// Timeout of each `/status` request of a rediscovery: a paused or
/// unreachable node must not hold it up.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// One node under load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its id, when `/status` told it.
    pub id: Option<NodeId>,
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// Its role, when `/status` told it.
    pub role: Option<Role>,
}

/// The nodes and the routing policy. Clones share the current leader.
#[derive(Debug, Clone)]
pub struct Targets {
    /// How requests are routed.
    pub mode: ModeArg,
    /// The nodes, in the order given or sorted by id when discovered.
    pub nodes: Vec<Node>,
    /// Index of the leader in `nodes` when the run started (leader mode);
    /// [`Targets::current_leader`] follows later changes.
    pub leader: Option<usize>,
    /// N/W/R and delay profile, when `/status` told them.
    pub config: Option<ClusterConfig>,
    /// The replication mode `/status` reported, if any.
    pub cluster_mode: Option<Mode>,
    read_from: ReadFrom,
    writes: Vec<usize>,
    reads: Vec<usize>,
    router: Arc<Router>,
}

/// `Router::leader` when no leader is known.
const NO_LEADER: usize = usize::MAX;
/// `Router::last_discovery_ms` before the first rediscovery.
const NEVER: u64 = u64::MAX;

/// The leader writes go to now, shared by every clone of a [`Targets`].
/// Lock-free: the hot path is one atomic load.
#[derive(Debug)]
struct Router {
    /// Index of the current leader in `Targets::nodes`, or [`NO_LEADER`].
    leader: AtomicUsize,
    /// How often `leader` changed.
    switches: AtomicU64,
    /// Start of the last rediscovery, ms after `epoch`, or [`NEVER`].
    last_discovery_ms: AtomicU64,
    /// Origin of `last_discovery_ms`.
    epoch: Instant,
}

impl Router {
    fn new(leader: Option<usize>) -> Self {
        Self {
            leader: AtomicUsize::new(leader.unwrap_or(NO_LEADER)),
            switches: AtomicU64::new(0),
            last_discovery_ms: AtomicU64::new(NEVER),
            epoch: Instant::now(),
        }
    }

    fn get(&self) -> Option<usize> {
        match self.leader.load(Ordering::Acquire) {
            NO_LEADER => None,
            i => Some(i),
        }
    }

    /// Moves the leader from `from` to `to`, unless another request moved it first.
    fn switch(&self, from: usize, to: usize) {
        if from != to
            && self
                .leader
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the leader a rediscovery found.
    fn set(&self, to: usize) {
        if self.leader.swap(to, Ordering::AcqRel) != to {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a rediscovery may start now (at most one per
    /// [`REDISCOVERY_INTERVAL`]); claims the slot if so.
    fn claim_discovery(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1);
        let last = self.last_discovery_ms.load(Ordering::Acquire);
        let interval = REDISCOVERY_INTERVAL.as_millis() as u64;
        if last != NEVER && now < last.saturating_add(interval) {
            return false;
        }
        self.last_discovery_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What the answer to a write says about where writes should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFeedback {
    /// A 2xx answer; `served_by` is the node that decided it.
    Acknowledged {
        /// The `served_by` of the answer.
        served_by: Option<NodeId>,
    },
    /// No answer: connection refused or reset, timeout, broken body.
    NoAnswer,
    /// An error status, with the `leader` its JSON body names.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body's `leader`.
        leader: Option<NodeId>,
    },
}

/// The leader [`choose_leader`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderChoice {
    /// Its index in the nodes.
    pub index: usize,
    /// The highest term among the answers.
    pub term: Term,
}

/// What one node answered to `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A `/status` body.
    Status(Box<StatusResponse>),
    /// An HTTP answer that is not a status (a node without `/status`).
    NoStatus,
    /// No answer in time.
    Down,
}

impl Probe {
    /// The status, if the node sent one.
    pub fn status(&self) -> Option<&StatusResponse> {
        match self {
            Probe::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the node answered HTTP at all.
    pub fn answered(&self) -> bool {
        !matches!(self, Probe::Down)
    }
}

/// Strips trailing slashes of a base URL.
pub fn clean_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

impl Targets {
    /// Routing over `nodes` with the leader at index `leader` (leader mode).
    ///
    /// # Errors
    /// No nodes; leader mode without a leader; `--read-from followers` with no follower.
    pub fn new(
        mode: ModeArg,
        nodes: Vec<Node>,
        leader: Option<usize>,
        read_from: ReadFrom,
    ) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::Config("no nodes to load".into()));
        }
        let all: Vec<usize> = (0..nodes.len()).collect();
        let (writes, reads) = match mode {
            ModeArg::Leaderless => (all.clone(), all),
            ModeArg::Leader => {
                let l = leader.ok_or_else(|| Error::Config("leader mode needs a leader".into()))?;
                let followers: Vec<usize> = all.iter().copied().filter(|i| *i != l).collect();
                let reads = match read_from {
                    ReadFrom::All => all,
                    ReadFrom::Leader => vec![l],
                    ReadFrom::Followers if followers.is_empty() => {
                        return Err(Error::Config(
                            "--read-from followers, but the cluster has no follower".into(),
                        ))
                    }
                    ReadFrom::Followers => followers,
                };
                (vec![l], reads)
            }
        };
        let router = Arc::new(Router::new(match mode {
            ModeArg::Leader => leader,
            ModeArg::Leaderless => None,
        }));
        Ok(Self {
            mode,
            nodes,
            leader,
            config: None,
            cluster_mode: None,
            read_from,
            writes,
            reads,
            router,
        })
    }

    /// Resolves the nodes from the command line: `--discover URL`, or
    /// `--nodes` (default `http://127.0.0.1:8080`). One URL whose `/status`
    /// names peers stands for the whole cluster (said on stderr), unless
    /// `single_node`.
    ///
    /// # Errors
    /// A discovery URL that does not answer `/status`; see also [`Targets::new`].
    pub async fn resolve(
        client: &reqwest::Client,
        mode: ModeArg,
        nodes: &[String],
        discover: Option<&str>,
        read_from: ReadFrom,
        single_node: bool,
    ) -> Result<Self> {
        if let Some(url) = discover {
            let status = fetch_status(client, &clean_url(url))
                .await
                .map_err(|e| Error::Discovery(format!("GET {url}/status: {e}")))?;
            return Self::from_status(mode, &status, read_from);
        }
        let urls: Vec<String> = if nodes.is_empty() {
            vec!["http://127.0.0.1:8080".into()]
        } else {
            nodes
                .iter()
                .map(|u| clean_url(u))
                .filter(|u| !u.is_empty())
                .collect()
        };
        match fetch_status(client, &urls[0]).await {
            Ok(status) if urls.len() == 1 && !single_node && !status.peers.is_empty() => {
                let t = Self::from_status(mode, &status, read_from)?;
                eprintln!(
                    "{} is one node of a cluster of {}: loading all of them (--single-node to load only it)",
                    urls[0],
                    t.nodes.len()
                );
                Ok(t)
            }
            Ok(status) => Self::from_urls_and_status(mode, &urls, &status, read_from),
            Err(_) => {
                let mut nodes = Vec::with_capacity(urls.len());
                for url in urls {
                    // A node without /status still tells its id and role in /health.
                    let health = fetch_health(client, &url).await.ok();
                    nodes.push(Node {
                        id: health.as_ref().map(|h| h.node_id),
                        role: health.as_ref().map(|h| h.role),
                        url,
                    });
                }
                Self::new(mode, nodes, Some(0), read_from)
            }
        }
    }

    /// Every node `/status` lists, sorted by id.
    ///
    /// # Errors
    /// A mode that contradicts the cluster's; see also [`Targets::new`].
    pub fn from_status(
        mode: ModeArg,
        status: &StatusResponse,
        read_from: ReadFrom,
    ) -> Result<Self> {
        let mut nodes = vec![Node {
            id: Some(status.node_id),
            url: clean_url(&status.url),
            role: Some(status.role),
        }];
        nodes.extend(
            status
                .peers
                .iter()
                .filter(|p| p.id != status.node_id)
                .map(|p| Node {
                    id: Some(p.id),
                    url: clean_url(&p.url),
                    role: Some(p.role),
                }),
        );
        nodes.sort_by_key(|n| n.id);
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        Self::from_urls_and_status(mode, &urls, status, read_from)
    }

    /// The given URLs, with ids, roles and the leader taken from `status`.
    fn from_urls_and_status(
        mode: ModeArg,
        urls: &[String],
        status: &StatusResponse,
        read_from: ReadFrom,
    ) -> Result<Self> {
        check_mode(mode, status.mode)?;
        let known: Vec<(NodeId, String, Role)> =
            std::iter::once((status.node_id, clean_url(&status.url), status.role))
                .chain(
                    status
                        .peers
                        .iter()
                        .map(|p| (p.id, clean_url(&p.url), p.role)),
                )
                .collect();
        let nodes: Vec<Node> = urls
            .iter()
            .map(|url| {
                let hit = known.iter().find(|(_, u, _)| u == url);
                Node {
                    id: hit.map(|h| h.0),
                    url: url.clone(),
                    role: hit.map(|h| h.2),
                }
            })
            .collect();
        let leader_id = status
            .leader
            .or_else(|| known.iter().find(|k| k.2 == Role::Leader).map(|k| k.0));
        let leader = match (mode, leader_id) {
            (ModeArg::Leader, Some(id)) => {
                Some(nodes.iter().position(|n| n.id == Some(id)).ok_or_else(|| {
                    Error::Config(format!(
                        "the leader (node {id}) is not among the nodes given"
                    ))
                })?)
            }
            (ModeArg::Leader, None) if status.mode == Mode::Standalone => Some(0),
            (ModeArg::Leader, None) => {
                return Err(Error::Discovery("the cluster reports no leader".into()))
            }
            (ModeArg::Leaderless, _) => None,
        };
        let mut t = Self::new(mode, nodes, leader, read_from)?;
        t.config = Some(status.config);
        t.cluster_mode = Some(status.mode);
        Ok(t)
    }

    /// The node of the next write of the seeded sequence (leader mode: the
    /// leader of the start; [`Targets::write_node`] routes it at execute time).
    pub fn pick_write(&self, rng: &mut ChaCha8Rng) -> usize {
        pick(&self.writes, rng)
    }

    /// The node of the next read of the seeded sequence.
    pub fn pick_read(&self, rng: &mut ChaCha8Rng) -> usize {
        pick(&self.reads, rng)
    }

    /// The leader writes go to now (leader mode).
    pub fn current_leader(&self) -> Option<usize> {
        match self.mode {
            ModeArg::Leader => self.router.get(),
            ModeArg::Leaderless => None,
        }
    }

    /// How often the leader writes go to changed since the start.
    pub fn leader_switches(&self) -> u64 {
        self.router.switches.load(Ordering::Relaxed)
    }

    /// Where a write the sequence sent to `picked` goes now: the current
    /// leader in leader mode, `picked` in leaderless mode.
    pub fn write_node(&self, picked: usize) -> usize {
        self.current_leader().unwrap_or(picked)
    }

    /// Where a read the sequence sent to `picked` goes now (see the module
    /// docs: `--read-from leader` follows the leader, `--read-from followers`
    /// avoids it).
    pub fn read_node(&self, picked: usize) -> usize {
        let (Some(now), ModeArg::Leader) = (self.current_leader(), self.mode) else {
            return picked;
        };
        match self.read_from {
            ReadFrom::All => picked,
            ReadFrom::Leader => now,
            ReadFrom::Followers if picked == now => self.leader.unwrap_or(picked),
            ReadFrom::Followers => picked,
        }
    }

    /// Index of the node with id `id`.
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == Some(id))
    }

    /// Learns from the answer to a write sent to node `sent_to` (see the
    /// module docs); may start a background rediscovery with `client`.
    pub fn note_write(&self, sent_to: usize, feedback: WriteFeedback, client: &reqwest::Client) {
        if self.mode != ModeArg::Leader {
            return;
        }
        match feedback {
            WriteFeedback::Acknowledged { served_by } => {
                if let Some(i) = served_by.and_then(|id| self.index_of(id)) {
                    self.router.switch(sent_to, i);
                }
            }
            WriteFeedback::NoAnswer => self.rediscover_soon(client),
            WriteFeedback::Refused {
                status: 503,
                leader,
            } => match leader.and_then(|id| self.index_of(id)) {
                Some(i) if i != sent_to => self.router.switch(sent_to, i),
                _ => self.rediscover_soon(client),
            },
            WriteFeedback::Refused { .. } => {}
        }
    }

    /// Starts a background rediscovery unless one started less than
    /// [`REDISCOVERY_INTERVAL`] ago.
    fn rediscover_soon(&self, client: &reqwest::Client) {
        if self.router.claim_discovery() {
            let (this, client) = (self.clone(), client.clone());
            tokio::spawn(async move { this.rediscover(&client).await });
        }
    }

    /// Asks every node's `/status` (timeout [`STATUS_TIMEOUT`]) and routes
    /// writes to the leader of the highest term, if the answers name one.
    /// Returns that leader.
    pub async fn rediscover(&self, client: &reqwest::Client) -> Option<LeaderChoice> {
        let urls: Vec<String> = self.nodes.iter().map(|n| n.url.clone()).collect();
        let probes = probe_statuses(client, &urls, STATUS_TIMEOUT).await;
        let choice = choose_leader(&self.nodes, &probes)?;
        self.router.set(choice.index);
        Some(choice)
    }

    /// The name under which a request's answer is counted: `node ID` from
    /// `served_by`, else from `/status`, else the URL the request went to.
    pub fn label(&self, served_by: Option<NodeId>, sent_to: usize) -> String {
        match served_by.or(self.nodes[sent_to].id) {
            Some(id) => format!("node {id}"),
            None => self.nodes[sent_to].url.clone(),
        }
    }
}

/// The leader named by the answers of the highest term: the node among
/// them whose own role is `leader`, else the `leader` field of one of them
/// (mapped to an index by id, or by the URL the answer lists for that peer).
/// `None` when no answer came, or the newest term has no known leader yet
/// (an election is under way).
pub fn choose_leader(nodes: &[Node], probes: &[Probe]) -> Option<LeaderChoice> {
    let term = |s: &StatusResponse| s.leader_follower.as_ref().map_or(0, |l| l.term);
    let answers: Vec<(usize, &StatusResponse)> = probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.status().map(|s| (i, s)))
        .collect();
    let top = answers.iter().map(|(_, s)| term(s)).max()?;
    let newest = || answers.iter().filter(|(_, s)| term(s) == top);
    let index = newest()
        .find(|(_, s)| s.role == Role::Leader)
        .map(|(i, _)| *i)
        .or_else(|| {
            newest().find_map(|(i, s)| s.leader.and_then(|id| node_index(nodes, *i, s, id)))
        })?;
    Some(LeaderChoice { index, term: top })
}

/// Index of node `id`, as named in `status` (the answer of node `answered`).
fn node_index(
    nodes: &[Node],
    answered: usize,
    status: &StatusResponse,
    id: NodeId,
) -> Option<usize> {
    if status.node_id == id {
        return Some(answered);
    }
    nodes.iter().position(|n| n.id == Some(id)).or_else(|| {
        let url = clean_url(&status.peers.iter().find(|p| p.id == id)?.url);
        nodes.iter().position(|n| n.url == url)
    })
}

/// `GET {url}/status` of every URL at once, each with `timeout`; the
/// answers in the order of `urls`.
pub async fn probe_statuses(
    client: &reqwest::Client,
    urls: &[String],
    timeout: Duration,
) -> Vec<Probe> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let res = client
                .get(format!("{url}{}", kv_shared::STATUS_PATH))
                .timeout(timeout)
                .send()
                .await;
            let probe = match res {
                Ok(r) if r.status().is_success() => match r.json::<StatusResponse>().await {
                    Ok(s) => Probe::Status(Box::new(s)),
                    Err(_) => Probe::NoStatus,
                },
                Ok(_) => Probe::NoStatus,
                Err(_) => Probe::Down,
            };
            (i, probe)
        });
    }
    let mut out = vec![Probe::Down; urls.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, probe)) = joined {
            out[i] = probe;
        }
    }
    out
}

fn pick(pool: &[usize], rng: &mut ChaCha8Rng) -> usize {
    if pool.len() == 1 {
        pool[0]
    } else {
        pool[rng.random_range(0..pool.len())]
    }
}

/// Refuses a `--mode` that contradicts the cluster's own.
fn check_mode(mode: ModeArg, cluster: Mode) -> Result<()> {
    match (mode, cluster) {
        (ModeArg::Leader, Mode::Leaderless) => Err(Error::Config(
            "the cluster is leaderless: use --mode leaderless".into(),
        )),
        (ModeArg::Leaderless, Mode::LeaderFollower) => Err(Error::Config(
            "the cluster is leader-follower: use --mode leader".into(),
        )),
        _ => Ok(()),
    }
}

/// `GET {url}/status` with a short timeout.
///
/// # Errors
/// Transport errors, a non-2xx status or a body that is not a [`StatusResponse`].
pub async fn fetch_status(client: &reqwest::Client, url: &str) -> reqwest::Result<StatusResponse> {
    client
        .get(format!("{url}{}", kv_shared::STATUS_PATH))
        .timeout(Duration::from_secs(3))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// `GET {url}/health` with a short timeout.
///
/// # Errors
/// Transport errors, a non-2xx status or a body that is not a [`HealthResponse`].
pub async fn fetch_health(client: &reqwest::Client, url: &str) -> reqwest::Result<HealthResponse> {
    client
        .get(format!("{url}{}", kv_shared::HEALTH_PATH))
        .timeout(Duration::from_secs(3))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::DelayProfile;
    use rand::SeedableRng;

    /// A `/status` answer of node 2 in a 3-node cluster led by node 1
    /// (built from JSON so that fields added to the type keep their defaults).
    fn status(mode: Mode) -> StatusResponse {
        let peer = |id: u32, role: &str| serde_json::json!({"id": id, "url": format!("http://127.0.0.1:900{id}/"), "role": role, "up": true});
        serde_json::from_value(serde_json::json!({
            "node_id": 2,
            "url": "http://127.0.0.1:9002",
            "mode": mode,
            "role": "follower",
            "leader": 1,
            "config": ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            "applied_seq": 0,
            "keys": 0,
            "peers": [peer(3, "follower"), peer(1, "leader")],
        }))
        .unwrap()
    }

    #[test]
    fn discovery_sorts_nodes_and_sends_writes_to_the_leader() {
        let t = Targets::from_status(
            ModeArg::Leader,
            &status(Mode::LeaderFollower),
            ReadFrom::Followers,
        )
        .unwrap();
        let ids: Vec<_> = t.nodes.iter().map(|n| n.id.unwrap()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(t.nodes[0].url, "http://127.0.0.1:9001");
        assert_eq!(t.leader, Some(0));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(t.pick_write(&mut rng), 0);
            assert_ne!(t.pick_read(&mut rng), 0);
        }
        assert_eq!(t.label(None, 2), "node 3");
        assert_eq!(t.label(Some(9), 2), "node 9");
    }

    #[test]
    fn a_mode_that_contradicts_the_cluster_is_refused() {
        let err = Targets::from_status(ModeArg::Leader, &status(Mode::Leaderless), ReadFrom::All)
            .unwrap_err();
        assert!(err.to_string().contains("--mode leaderless"), "{err}");
    }

    /// `/status` of node `id` of a 3-node cluster: its role, the leader it
    /// knows and its term.
    fn lf_status(id: u32, role: &str, leader: Option<u32>, term: u64) -> Probe {
        let peers: Vec<_> = (1..=3u32)
            .filter(|p| *p != id)
            .map(|p| serde_json::json!({"id": p, "url": format!("http://127.0.0.1:900{p}"), "role": "follower", "up": true}))
            .collect();
        let s: StatusResponse = serde_json::from_value(serde_json::json!({
            "node_id": id, "url": format!("http://127.0.0.1:900{id}"), "mode": "leader-follower",
            "role": role, "leader": leader,
            "config": ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            "applied_seq": 0, "keys": 0, "peers": peers,
            "leader_follower": {"term": term, "commit_seq": 0, "log_start": 1, "floor": 0,
                "catching_up": false, "in_doubt": false, "elections": 0, "rolled_back": 0,
                "rolled_back_acknowledged": 0},
        }))
        .unwrap();
        Probe::Status(Box::new(s))
    }

    fn three_lf_nodes() -> Vec<Node> {
        (1..=3)
            .map(|id| Node {
                id: Some(id),
                url: format!("http://127.0.0.1:900{id}"),
                role: None,
            })
            .collect()
    }

    #[test]
    fn the_leader_is_the_one_the_highest_term_reports() {
        let nodes = three_lf_nodes();
        // Node 1 was paused and still believes it leads term 2; nodes 2 and 3
        // moved on to term 3, which node 3 leads.
        let probes = [
            lf_status(1, "leader", Some(1), 2),
            lf_status(2, "follower", Some(3), 3),
            lf_status(3, "leader", Some(3), 3),
        ];
        let c = choose_leader(&nodes, &probes).unwrap();
        assert_eq!((c.index, c.term), (2, 3));
        // The leader itself silent: its followers' `leader` field names it.
        let probes = [
            lf_status(1, "leader", Some(1), 2),
            lf_status(2, "follower", Some(3), 3),
            Probe::Down,
        ];
        assert_eq!(choose_leader(&nodes, &probes).unwrap().index, 2);
        // A candidate in a newer term knows no leader yet: an election is under way.
        let probes = [
            Probe::Down,
            lf_status(2, "candidate", None, 4),
            lf_status(3, "follower", Some(1), 3),
        ];
        assert_eq!(choose_leader(&nodes, &probes), None);
        assert_eq!(choose_leader(&nodes, &[Probe::Down, Probe::NoStatus]), None);
    }

    #[test]
    fn a_leader_unknown_by_id_is_found_by_the_url_its_follower_lists() {
        let nodes: Vec<Node> = three_lf_nodes()
            .into_iter()
            .map(|n| Node { id: None, ..n })
            .collect();
        let probes = [
            Probe::Down,
            lf_status(2, "follower", Some(3), 5),
            Probe::Down,
        ];
        assert_eq!(
            choose_leader(&nodes, &probes),
            Some(LeaderChoice { index: 2, term: 5 })
        );
    }

    #[test]
    fn writes_follow_the_leader_named_by_answers_and_reads_avoid_it() {
        let t = Targets::new(
            ModeArg::Leader,
            three_lf_nodes(),
            Some(0),
            ReadFrom::Followers,
        )
        .unwrap();
        let client = reqwest::Client::new();
        assert_eq!(t.write_node(0), 0);
        // A 503 that names the leader used changes nothing; one that names node 2 moves writes there.
        t.note_write(
            0,
            WriteFeedback::Refused {
                status: 400,
                leader: Some(2),
            },
            &client,
        );
        assert_eq!(t.current_leader(), Some(0));
        t.note_write(
            0,
            WriteFeedback::Refused {
                status: 503,
                leader: Some(2),
            },
            &client,
        );
        assert_eq!((t.write_node(0), t.leader_switches()), (1, 1));
        // A late answer about the old leader does not undo the move.
        t.note_write(
            0,
            WriteFeedback::Refused {
                status: 503,
                leader: Some(3),
            },
            &client,
        );
        assert_eq!(t.current_leader(), Some(1));
        // A 201 decided by another node (the write was forwarded) moves writes to it.
        t.note_write(
            1,
            WriteFeedback::Acknowledged { served_by: Some(3) },
            &client,
        );
        assert_eq!((t.write_node(0), t.leader_switches()), (2, 2));
        // Reads the sequence sent to the node leading now go to the first leader instead.
        assert_eq!((t.read_node(1), t.read_node(2)), (1, 0));
        // Clones share the route.
        assert_eq!(t.clone().current_leader(), Some(2));
    }

    #[test]
    fn rediscovery_starts_at_most_once_per_interval() {
        let r = Router::new(Some(0));
        assert!(r.claim_discovery());
        assert!(!r.claim_discovery());
        std::thread::sleep(REDISCOVERY_INTERVAL + Duration::from_millis(20));
        assert!(r.claim_discovery());
    }

    #[test]
    fn leaderless_spreads_every_request_over_all_nodes() {
        let nodes = (0..3)
            .map(|i| Node {
                id: None,
                url: format!("http://n{i}"),
                role: None,
            })
            .collect();
        let t = Targets::new(ModeArg::Leaderless, nodes, None, ReadFrom::All).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = [0; 3];
        (0..300).for_each(|_| seen[t.pick_write(&mut rng)] += 1);
        assert!(seen.iter().all(|c| *c > 60), "{seen:?}");
        assert_eq!(t.label(None, 1), "http://n1");
    }
}
