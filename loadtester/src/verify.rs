//! The final read-back: is every acknowledged write still in the cluster,
//! and on which nodes?
//!
//! 1. **Probe.** Every node's `GET /status`. A node that does not answer is
//!    left out (its keys count as `unreachable` for it): a killed or paused
//!    node would otherwise cost a timeout per key.
//! 2. **Convergence** (leader mode only). The current leader's `applied_seq`
//!    (and term) at the start is the target; `/status` is polled every
//!    100 ms, for at most [`CONVERGENCE_LIMIT`], until every node that
//!    answers has applied at least that much, is in that term or a later
//!    one, and is not `catching_up`. A node that lags then is a fact worth
//!    reporting, not a reason to wait forever: the read-back goes on and
//!    [`Convergence`] says who lagged.
//! 3. **Read-back.** Each acknowledged key's `GET /local_read` on every
//!    node that answered (the node's own copy, never coordinated).
//! 4. **Classification** ([`tally`]): per key, over the copies of all nodes,
//!    the highest version decides `ok` / `lost` / `value_mismatch` (a key is
//!    *lost* only when no node holds the acknowledged version or a newer
//!    one: gone from the cluster); per node, a copy at the acknowledged
//!    version or newer is `ok`, an older copy or none is `behind`. In
//!    leaderless mode `per_node` is informational (read repair and
//!    anti-entropy are expected to close the gaps); in leader mode a
//!    converged cluster should have `diverged == 0`.
//!
//! The lost writes are listed in full ([`Verification::lost_writes`], at most
//! [`MAX_LOST_LISTED`]) so that a test can compare them with the writes the
//! nodes report rolled back.

use crate::cli::ModeArg;
use crate::error::{Error, Result};
use crate::keys::key_name;
use crate::stale::Acked;
use crate::targets::{choose_leader, probe_statuses, Probe, Targets};
use kv_shared::cluster::{Seq, StatusResponse};
use kv_shared::{GetResponse, Term, Version};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Longest wait for the nodes to catch up with the leader before reading back.
pub const CONVERGENCE_LIMIT: Duration = Duration::from_secs(15);
/// Most lost writes listed in [`Verification::lost_writes`].
pub const MAX_LOST_LISTED: usize = 100_000;
/// Timeout of the `/status` requests of the probe and the convergence wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest timeout of one `/local_read` of the read-back.
const READ_TIMEOUT_CAP: Duration = Duration::from_secs(5);
/// Keys read back at once.
const PARALLEL_KEYS: usize = 32;

/// The result of the final read-back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Where the values were read: `every node (highest version)`, or
    /// `leader` in summaries of older versions of the tool.
    pub source: String,
    /// Keys with an acknowledged write.
    pub keys: u64,
    /// Keys whose highest version over all nodes is at least the acknowledged one.
    pub ok: u64,
    /// Keys whose highest version over all nodes is older than the
    /// acknowledged one, or that no node holds: gone from the cluster.
    pub lost: u64,
    /// Keys whose highest copy has the acknowledged version but another value
    /// (leaderless: a concurrent write with an equal version won).
    pub value_mismatch: u64,
    /// Keys no node answered for.
    pub unreachable: u64,
    /// A few of the failing keys, with what was expected and found.
    pub examples: Vec<String>,
    /// Every lost acknowledged write (at most [`MAX_LOST_LISTED`]), sorted by key.
    #[serde(default)]
    pub lost_writes: Vec<LostWrite>,
    /// Per node: which acknowledged keys it holds, in the order of the nodes.
    #[serde(default)]
    pub per_node: Vec<NodeVerification>,
    /// Sum of `behind` over the nodes: copies missing or older than acknowledged.
    #[serde(default)]
    pub diverged: u64,
    /// Leader mode: the wait for every node to catch up before the read-back.
    #[serde(default)]
    pub convergence: Option<Convergence>,
}

/// An acknowledged write no node holds any more.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LostWrite {
    /// The key.
    pub key: String,
    /// The version it was acknowledged with.
    pub version: Version,
}

/// What one node holds of the acknowledged keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerification {
    /// `node ID`, or the URL.
    pub node: String,
    /// Keys it holds at the acknowledged version or newer.
    pub ok: u64,
    /// Keys it holds at an older version, or not at all.
    pub behind: u64,
    /// Keys it holds at the acknowledged version with another value.
    pub value_mismatch: u64,
    /// Keys it did not answer for (down, paused, or a failed request).
    pub unreachable: u64,
}

/// How the wait for convergence went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convergence {
    /// The leader whose position was the target, if one was found.
    pub leader: Option<String>,
    /// Its `applied_seq` at the start of the verification.
    pub target_seq: Seq,
    /// Its term then.
    pub term: Term,
    /// Whether every answering node reached the target in time.
    pub converged: bool,
    /// How long the wait took, ms.
    pub waited_ms: u64,
    /// The nodes that had not reached it when the wait ended.
    pub lagging: Vec<String>,
}

/// What one node's `/local_read` of a key returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCopy {
    /// 200 with this version and value.
    Found {
        /// The version.
        version: Version,
        /// The value.
        value: String,
    },
    /// 404.
    Missing,
    /// No answer, or an error.
    Unreachable,
}

/// Reads back every write of `acked` (keys named with `prefix`) from every
/// node of `targets`, after the convergence wait in leader mode. Requests
/// time out after `timeout` (at most 5 s).
///
/// # Errors
/// Only when a read-back task panics; unreachable nodes are counted, not errors.
pub async fn verify(
    client: &reqwest::Client,
    targets: &Targets,
    acked: &[Acked],
    prefix: &str,
    timeout: Duration,
) -> Result<Verification> {
    let urls: Vec<String> = targets.nodes.iter().map(|n| n.url.clone()).collect();
    let labels: Vec<String> = (0..urls.len()).map(|i| targets.label(None, i)).collect();
    let (probes, convergence) = match targets.mode {
        ModeArg::Leader => {
            let (probes, c) = converge(client, targets, &urls, &labels, CONVERGENCE_LIMIT).await;
            (probes, Some(c))
        }
        ModeArg::Leaderless => (probe_statuses(client, &urls, PROBE_TIMEOUT).await, None),
    };
    let reachable: Arc<Vec<Option<String>>> = Arc::new(
        urls.iter()
            .zip(&probes)
            .map(|(u, p)| p.answered().then(|| u.clone()))
            .collect(),
    );
    let timeout = timeout.min(READ_TIMEOUT_CAP);
    let limit = Arc::new(Semaphore::new(PARALLEL_KEYS));
    let mut tasks = tokio::task::JoinSet::new();
    for a in acked.iter().cloned() {
        let (client, reachable, limit) = (client.clone(), reachable.clone(), limit.clone());
        let key = key_name(prefix, a.key);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let copies = read_copies(&client, &reachable, &key, timeout).await;
            (key, a, copies)
        });
    }
    let mut v = Verification {
        source: "every node (highest version)".into(),
        keys: acked.len() as u64,
        per_node: labels
            .iter()
            .map(|l| NodeVerification {
                node: l.clone(),
                ..Default::default()
            })
            .collect(),
        convergence,
        ..Default::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let (key, a, copies) =
            joined.map_err(|e| Error::Config(format!("verification task: {e}")))?;
        tally(&mut v, &key, &a, &copies);
    }
    finish(&mut v);
    Ok(v)
}

/// Sorts the lists and caps them; sums `diverged`.
fn finish(v: &mut Verification) {
    v.examples.sort();
    v.examples.truncate(10);
    v.lost_writes.sort();
    v.lost_writes.truncate(MAX_LOST_LISTED);
    v.diverged = v.per_node.iter().map(|n| n.behind).sum();
}

/// Each node's copy of `key` (`None` in `urls`: the node is left out).
async fn read_copies(
    client: &reqwest::Client,
    urls: &[Option<String>],
    key: &str,
    timeout: Duration,
) -> Vec<NodeCopy> {
    let mut copies = Vec::with_capacity(urls.len());
    for url in urls {
        let Some(url) = url else {
            copies.push(NodeCopy::Unreachable);
            continue;
        };
        let res = client
            .get(format!("{url}{}", kv_shared::LOCAL_READ_PATH))
            .query(&[("key", key)])
            .timeout(timeout)
            .send()
            .await;
        copies.push(match res {
            Ok(r) if r.status().is_success() => match r.json::<GetResponse>().await {
                Ok(g) => NodeCopy::Found {
                    version: g.version,
                    value: g.value,
                },
                Err(_) => NodeCopy::Unreachable,
            },
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => NodeCopy::Missing,
            _ => NodeCopy::Unreachable,
        });
    }
    copies
}

/// Counts one key into `v`: `copies[i]` is what node `i` holds
/// (`v.per_node` has one entry per node).
pub fn tally(v: &mut Verification, key: &str, a: &Acked, copies: &[NodeCopy]) {
    for (node, copy) in v.per_node.iter_mut().zip(copies) {
        match copy {
            NodeCopy::Unreachable => node.unreachable += 1,
            NodeCopy::Missing => node.behind += 1,
            NodeCopy::Found { version, .. } if *version < a.version => node.behind += 1,
            NodeCopy::Found { version, value } if *version == a.version && *value != a.value => {
                node.value_mismatch += 1
            }
            NodeCopy::Found { .. } => node.ok += 1,
        }
    }
    let answered = copies.iter().any(|c| *c != NodeCopy::Unreachable);
    let best = copies
        .iter()
        .filter_map(|c| match c {
            NodeCopy::Found { version, value } => Some((*version, value)),
            _ => None,
        })
        .max_by_key(|(version, _)| *version);
    let lost = |v: &mut Verification, found: String| {
        v.lost += 1;
        v.lost_writes.push(LostWrite {
            key: key.to_owned(),
            version: a.version,
        });
        v.examples
            .push(format!("{key}: acknowledged v{}, {found}", a.version));
    };
    match best {
        None if !answered => {
            v.unreachable += 1;
            v.examples.push(format!("{key}: no node answered"));
        }
        None => lost(v, "no node holds it".into()),
        Some((ver, _)) if ver < a.version => lost(v, format!("newest copy v{ver}")),
        Some((ver, val)) if ver == a.version && *val != a.value => {
            v.value_mismatch += 1;
            v.examples
                .push(format!("{key}: v{ver} holds another value"));
        }
        Some(_) => v.ok += 1,
    }
}

/// The nodes (indexes) that have not caught up with `target` (the leader's
/// `applied_seq` and term): a lower `applied_seq`, an older term, or
/// `catching_up`. Nodes without a status are not waited for.
pub fn lagging(target: Option<(Seq, Term)>, probes: &[Probe]) -> Vec<usize> {
    let (seq, term) = target.unwrap_or((0, 0));
    probes
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.status().is_some_and(|s| {
                let lf = s.leader_follower.as_ref();
                s.applied_seq < seq || lf.is_some_and(|l| l.catching_up || l.term < term)
            })
        })
        .map(|(i, _)| i)
        .collect()
}

/// The leader's position: `(applied_seq, term)` of the leader the probes
/// name, else of the node the targets route writes to.
fn target_of(targets: &Targets, probes: &[Probe]) -> Option<(usize, Seq, Term)> {
    let leader = choose_leader(&targets.nodes, probes)
        .map(|c| c.index)
        .or_else(|| targets.current_leader())?;
    let s: &StatusResponse = probes.get(leader)?.status()?;
    let term = s.leader_follower.as_ref().map_or(0, |l| l.term);
    Some((leader, s.applied_seq, term))
}

/// Polls `/status` until every answering node caught up with the leader's
/// position at the start, or `limit` passes. Returns the last probes.
async fn converge(
    client: &reqwest::Client,
    targets: &Targets,
    urls: &[String],
    labels: &[String],
    limit: Duration,
) -> (Vec<Probe>, Convergence) {
    let start = Instant::now();
    let mut probes = probe_statuses(client, urls, PROBE_TIMEOUT).await;
    let target = target_of(targets, &probes);
    let position = target.map(|(_, seq, term)| (seq, term));
    let poll = Duration::from_millis(100);
    // Bounded in time and in count (each round takes at least `poll`).
    let rounds = limit.as_millis() / poll.as_millis() + 1;
    let mut behind = lagging(position, &probes);
    for _ in 0..rounds {
        if behind.is_empty() || start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(poll).await;
        probes = probe_statuses(client, urls, PROBE_TIMEOUT).await;
        behind = lagging(position, &probes);
    }
    let c = Convergence {
        leader: target.map(|(i, _, _)| labels[i].clone()),
        target_seq: position.map_or(0, |p| p.0),
        term: position.map_or(0, |p| p.1),
        converged: behind.is_empty(),
        waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        lagging: behind.iter().map(|i| labels[*i].clone()).collect(),
    };
    (probes, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::{ClusterConfig, DelayProfile};
    use kv_shared::leader_follower::LeaderFollowerStatus;

    fn acked(key: u64, version: Version, value: &str) -> Acked {
        Acked {
            key,
            version,
            value: value.into(),
        }
    }

    fn found(version: Version, value: &str) -> NodeCopy {
        NodeCopy::Found {
            version,
            value: value.into(),
        }
    }

    fn three_nodes() -> Verification {
        Verification {
            per_node: ["node 1", "node 2", "node 3"]
                .map(|n| NodeVerification {
                    node: n.into(),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_key_is_lost_only_when_no_node_holds_the_acknowledged_version() {
        // k1: node 1 holds it, node 2 an older copy, node 3 nothing → ok, two nodes behind.
        // k2: the newest copy anywhere is older than acknowledged → lost.
        // k3: nobody holds it; node 3 is down → lost.
        // k4: newer than acknowledged on node 2 (a later, unacknowledged write) → ok.
        // k5: the acknowledged version with another value → value_mismatch.
        // k6: no node answered → unreachable.
        let mut v = three_nodes();
        let u = NodeCopy::Unreachable;
        let cases = [
            (
                acked(1, 10, "a"),
                [found(10, "a"), found(9, "x"), NodeCopy::Missing],
            ),
            (
                acked(2, 20, "b"),
                [found(19, "x"), found(3, "y"), NodeCopy::Missing],
            ),
            (
                acked(3, 5, "c"),
                [NodeCopy::Missing, NodeCopy::Missing, u.clone()],
            ),
            (
                acked(4, 7, "d"),
                [found(7, "d"), found(10_007, "e"), found(7, "d")],
            ),
            (
                acked(5, 8, "f"),
                [found(8, "g"), found(8, "g"), found(8, "g")],
            ),
            (acked(6, 1, "h"), [u.clone(), u.clone(), u.clone()]),
        ];
        for (a, copies) in &cases {
            tally(&mut v, &key_name("k", a.key), a, copies);
        }
        finish(&mut v);
        assert_eq!(
            (v.ok, v.lost, v.value_mismatch, v.unreachable),
            (2, 2, 1, 1)
        );
        assert_eq!(
            v.lost_writes,
            [
                LostWrite {
                    key: "k-00000002".into(),
                    version: 20
                },
                LostWrite {
                    key: "k-00000003".into(),
                    version: 5
                }
            ]
        );
        let per: Vec<(u64, u64, u64, u64)> = v
            .per_node
            .iter()
            .map(|n| (n.ok, n.behind, n.value_mismatch, n.unreachable))
            .collect();
        assert_eq!(per, [(2, 2, 1, 1), (1, 3, 1, 1), (1, 2, 1, 2)]);
        assert_eq!(v.diverged, 7);
        assert_eq!(v.examples.len(), 4, "{:?}", v.examples);
    }

    #[test]
    fn summaries_without_the_per_node_fields_still_parse() {
        let old = r#"{"source":"leader","keys":3,"ok":3,"lost":0,"value_mismatch":0,
                      "unreachable":0,"examples":[]}"#;
        let v: Verification = serde_json::from_str(old).unwrap();
        assert_eq!((v.keys, v.diverged, v.per_node.len()), (3, 0, 0));
        assert_eq!(v.convergence, None);
    }

    /// A follower's `/status` (built from JSON so that fields added to the
    /// type keep their defaults).
    fn status(applied: Seq, term: Term, catching_up: bool) -> Probe {
        let s: StatusResponse = serde_json::from_value(serde_json::json!({
            "node_id": 2, "url": "http://n2", "mode": "leader-follower", "role": "follower",
            "leader": 1, "config": ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            "applied_seq": applied, "keys": 0, "peers": [],
            "leader_follower": LeaderFollowerStatus { term, catching_up, ..Default::default() },
        }))
        .unwrap();
        Probe::Status(Box::new(s))
    }

    #[test]
    fn convergence_waits_for_position_term_and_catch_up_but_not_for_silent_nodes() {
        let probes = [
            status(40, 3, false), // caught up
            status(39, 3, false), // one entry short
            status(45, 2, false), // longer log of an older term: not rolled back yet
            status(41, 3, true),  // restarted empty, still catching up
            Probe::Down,
            Probe::NoStatus,
        ];
        assert_eq!(lagging(Some((40, 3)), &probes), [1, 2, 3]);
        assert_eq!(lagging(None, &probes), [3]);
    }
}
