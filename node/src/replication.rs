//! Which replication a node runs, and the dispatch of client operations to it.
//!
//! The handlers in [`crate::api`] call [`Replication`]; each mode answers in
//! its own way. A new mode adds a variant here and a match arm per method.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::ReplicationError;
use crate::leader_follower::LeaderFollower;
use crate::leaderless::Leaderless;
use crate::reads::{coordinate_read, publish_read, LocalAnswer, Quorum, ReadPolicy};
use crate::store::Store;
use kv_shared::cluster::StatusResponse;
use kv_shared::events::TraceOutcome;
use kv_shared::replication::VersionedValue;
use kv_shared::{GetResponse, Mode, NodeId, SetRequest, SetResponse};
use tokio::task::JoinHandle;

/// The replication a node runs.
#[derive(Debug, Clone)]
pub enum Replication {
    /// A single node: writes and reads are local.
    Standalone,
    /// One leader, N-1 followers (see [`crate::leader_follower`]).
    LeaderFollower(LeaderFollower),
    /// Every node coordinates (see [`crate::leaderless`]).
    Leaderless(Leaderless),
}

impl Replication {
    /// The replication selected by `--mode`.
    ///
    /// # Errors
    /// When the mode is not available in this build.
    pub fn new(
        cluster: &Cluster,
        store: &Store,
        config: &Config,
    ) -> Result<Self, crate::config::FlagError> {
        match cluster.mode() {
            Mode::Standalone => Ok(Self::Standalone),
            Mode::LeaderFollower => Ok(Self::LeaderFollower(LeaderFollower::new(
                cluster.clone(),
                store.clone(),
                config,
            ))),
            Mode::Leaderless => Ok(Self::Leaderless(Leaderless::new(
                cluster.clone(),
                store.clone(),
                config,
            )?)),
        }
    }

    /// Background tasks of the mode; the caller aborts them on stop.
    pub fn spawn_background(&self) -> Vec<JoinHandle<()>> {
        match self {
            Self::Standalone => Vec::new(),
            Self::LeaderFollower(lf) => lf.spawn_background().into_iter().collect(),
            Self::Leaderless(ll) => ll.spawn_background(),
        }
    }

    /// Stops sending to peers.
    pub fn stop(&self) {
        match self {
            Self::LeaderFollower(lf) => lf.stop(),
            Self::Leaderless(ll) => ll.stop(),
            Self::Standalone => {}
        }
    }

    /// `POST /set` (input already validated).
    ///
    /// # Errors
    /// Whatever the mode reports (quorum not met, leader unreachable…).
    pub async fn write(
        &self,
        cluster: &Cluster,
        store: &Store,
        req: SetRequest,
        forwarded_by: Option<NodeId>,
    ) -> Result<SetResponse, ReplicationError> {
        match self {
            Self::Standalone => {
                let (version, status) =
                    store.write_next(&req.key, req.value.clone()).map_err(|e| {
                        ReplicationError::VersionExhausted {
                            key: req.key.clone(),
                            version: e.0,
                        }
                    })?;
                Ok(SetResponse {
                    key: req.key,
                    value: req.value,
                    version,
                    status,
                    served_by: Some(cluster.node_id()),
                    forwarded_by: None,
                })
            }
            Self::LeaderFollower(lf) => lf.write(req, forwarded_by).await,
            Self::Leaderless(ll) => ll.write(req).await,
        }
    }

    /// `GET /get` (key already validated): the newest copy among R replicas.
    ///
    /// # Errors
    /// 404 when no replica asked has the key; 503 when fewer than R answer.
    pub async fn read(
        &self,
        cluster: &Cluster,
        store: &Store,
        key: String,
    ) -> Result<GetResponse, ReplicationError> {
        let (r, policy) = match self {
            Self::Standalone => return local_read(cluster, store, key),
            Self::LeaderFollower(lf) => (
                lf.read_quorum(),
                ReadPolicy {
                    count_self: lf.is_current(),
                    repair: false,
                },
            ),
            Self::Leaderless(_) => (
                cluster.config().r,
                ReadPolicy {
                    count_self: true,
                    repair: true,
                },
            ),
        };
        let local = self.local_answer(&key);
        if r <= 1 && policy.count_self {
            return match local.leader_read {
                // A leader answers R = 1 from its read index, never a write in flight.
                Some(lr) => found(cluster, key, lr.found),
                None => local_read(cluster, store, key),
            };
        }
        let mut outcome = coordinate_read(
            cluster,
            store,
            &key,
            r,
            cluster.peers().leader(),
            policy,
            local,
        )
        .await?;
        let trace = outcome.trace.take();
        let copy = match self {
            Self::LeaderFollower(_) => linearizable(&outcome.quorum),
            _ => Ok(outcome.quorum.newest),
        };
        let answer = match &copy {
            Ok(c) => Ok(c.as_ref().map(|v| v.version)),
            Err(_) => Err(TraceOutcome::NoLeader),
        };
        publish_read(cluster, trace, answer);
        found(cluster, key, copy?)
    }

    /// What this node adds to its copy of `key` in a read answer: its term
    /// and, when it leads a started term, its leader answer (leader-follower).
    pub fn local_answer(&self, key: &str) -> LocalAnswer {
        match self {
            Self::LeaderFollower(lf) => {
                let (term, leader_read) = lf.read_answer(key);
                LocalAnswer {
                    term: Some(term),
                    leader_read,
                }
            }
            Self::Standalone | Self::Leaderless(_) => LocalAnswer::default(),
        }
    }

    /// `GET /status`.
    pub fn status(&self, cluster: &Cluster, store: &Store) -> StatusResponse {
        let mut status = StatusResponse {
            node_id: cluster.node_id(),
            url: cluster.self_url().to_owned(),
            mode: cluster.mode(),
            role: cluster.role(),
            leader: cluster.peers().leader(),
            config: cluster.config(),
            applied_seq: 0,
            keys: store.len(),
            peers: cluster.peer_statuses(),
            leaderless: None,
            leader_follower: None,
            security: None,
            faults: None,
        };
        match self {
            Self::LeaderFollower(lf) => lf.fill_status(&mut status),
            Self::Leaderless(ll) => ll.fill_status(&mut status),
            Self::Standalone => {}
        }
        status
    }

    /// Whether this node takes writes now (leader-follower: it leads and its
    /// term started, or it follows a leader it trusts).
    pub fn is_ready(&self) -> bool {
        self.leader_follower().is_none_or(|lf| lf.is_ready())
    }

    /// The role this node plays now.
    pub fn role(&self, cluster: &Cluster) -> kv_shared::Role {
        match self {
            Self::LeaderFollower(lf) => lf.role(),
            Self::Standalone | Self::Leaderless(_) => cluster.role(),
        }
    }

    /// Whether this node's copy counts towards a read quorum (false on a
    /// leader-follower replica still catching up after its start).
    pub fn is_current(&self) -> bool {
        self.leader_follower().is_none_or(|lf| lf.is_current())
    }

    /// The leader-follower runtime, in that mode.
    pub fn leader_follower(&self) -> Option<&LeaderFollower> {
        match self {
            Self::LeaderFollower(lf) => Some(lf),
            Self::Standalone | Self::Leaderless(_) => None,
        }
    }

    /// The leaderless runtime, in that mode.
    pub fn leaderless(&self) -> Option<&Leaderless> {
        match self {
            Self::Leaderless(ll) => Some(ll),
            Self::Standalone | Self::LeaderFollower(_) => None,
        }
    }
}

/// This node's own copy of `key` (`/local_read`, and `/get` with R = 1).
///
/// # Errors
/// 404 when the node does not have the key.
pub fn local_read(
    cluster: &Cluster,
    store: &Store,
    key: String,
) -> Result<GetResponse, ReplicationError> {
    match store.get(&key) {
        Some(entry) => Ok(GetResponse {
            key,
            value: entry.value,
            version: entry.version,
            served_by: Some(cluster.node_id()),
        }),
        None => Err(ReplicationError::KeyNotFound { key }),
    }
}

/// The answer of a read that found `copy` (404 when `None`).
fn found(
    cluster: &Cluster,
    key: String,
    copy: Option<VersionedValue>,
) -> Result<GetResponse, ReplicationError> {
    match copy {
        Some(v) => Ok(GetResponse {
            key,
            value: v.value,
            version: v.version,
            served_by: Some(cluster.node_id()),
        }),
        None => Err(ReplicationError::KeyNotFound { key }),
    }
}

/// Leader-follower: what a coordinated read returns — the leader's answer
/// (the key as of its read index), provided the leader was among the R
/// replicas and none of them is in a newer term (else that leader was
/// deposed and a newer one may have acknowledged newer writes; R + W > N
/// makes one of the R replicas hold them). 503 otherwise: the client retries.
fn linearizable(outcome: &Quorum) -> Result<Option<VersionedValue>, ReplicationError> {
    match &outcome.leader_read {
        Some(lr) if outcome.max_term.is_none_or(|t| t <= lr.term) => Ok(lr.found.clone()),
        Some(lr) => Err(ReplicationError::NewerTerm {
            leader_term: lr.term,
            seen_term: outcome.max_term.unwrap_or_default(),
        }),
        None => Err(ReplicationError::NoLeaderRead),
    }
}
