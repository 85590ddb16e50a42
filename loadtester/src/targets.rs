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

use crate::cli::{ModeArg, ReadFrom};
use crate::error::{Error, Result};
use kv_shared::cluster::{ClusterConfig, StatusResponse};
use kv_shared::{HealthResponse, Mode, NodeId, Role};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

/// The nodes and the routing policy.
#[derive(Debug, Clone)]
pub struct Targets {
    /// How requests are routed.
    pub mode: ModeArg,
    /// The nodes, in the order given or sorted by id when discovered.
    pub nodes: Vec<Node>,
    /// Index of the leader in `nodes` (leader mode).
    pub leader: Option<usize>,
    /// N/W/R and delay profile, when `/status` told them.
    pub config: Option<ClusterConfig>,
    /// The replication mode `/status` reported, if any.
    pub cluster_mode: Option<Mode>,
    writes: Vec<usize>,
    reads: Vec<usize>,
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
        Ok(Self {
            mode,
            nodes,
            leader,
            config: None,
            cluster_mode: None,
            writes,
            reads,
        })
    }

    /// Resolves the nodes from the command line: `--discover URL`, or
    /// `--nodes` (default `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// A discovery URL that does not answer `/status`; see also [`Targets::new`].
    pub async fn resolve(
        client: &reqwest::Client,
        mode: ModeArg,
        nodes: &[String],
        discover: Option<&str>,
        read_from: ReadFrom,
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

    /// The node of the next write.
    pub fn pick_write(&self, rng: &mut ChaCha8Rng) -> usize {
        pick(&self.writes, rng)
    }

    /// The node of the next read.
    pub fn pick_read(&self, rng: &mut ChaCha8Rng) -> usize {
        pick(&self.reads, rng)
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
        .get(format!("{url}/status"))
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
        .get(format!("{url}/health"))
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
