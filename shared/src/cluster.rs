//! Cluster-level types: quorum configuration, delay profile and `/status`.
//!
//! `GET /status` on every node answers a [`StatusResponse`]; the dashboard
//! and the load tester read it to find the nodes, their roles and their lag.
//! `GET /config` answers a [`ClusterConfig`], `POST /config` takes a
//! [`ConfigUpdate`].

use crate::ids::{Mode, NodeId, Role};
use crate::limits::MAX_DELAY_MS;
use serde::{Deserialize, Serialize};

/// Position in the leader's replication log (leader-follower mode).
pub type Seq = u64;

/// The artificial delays of the assignment's delay profile, in milliseconds.
/// All zero means the profile is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DelayProfile {
    /// The leader (or write coordinator) waits this long after each
    /// replication message it sends to another replica.
    #[cfg_attr(feature = "openapi", schema(maximum = 10_000))]
    pub send_ms: u32,
    /// A replica waits this long after receiving an update before acknowledging it.
    #[cfg_attr(feature = "openapi", schema(maximum = 10_000))]
    pub ack_ms: u32,
    /// A replica waits this long before answering a read another node coordinates.
    #[cfg_attr(feature = "openapi", schema(maximum = 10_000))]
    pub remote_read_ms: u32,
}

impl DelayProfile {
    /// The assignment's profile: 200 ms per send, 100 ms before an ack,
    /// 50 ms before answering a coordinated read.
    pub const ASSIGNMENT: DelayProfile = DelayProfile {
        send_ms: 200,
        ack_ms: 100,
        remote_read_ms: 50,
    };

    /// No artificial delay.
    pub const OFF: DelayProfile = DelayProfile {
        send_ms: 0,
        ack_ms: 0,
        remote_read_ms: 0,
    };

    /// Whether any delay is set.
    pub fn is_on(&self) -> bool {
        *self != Self::OFF
    }
}

/// N, W and R of a cluster plus its delay profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterConfig {
    /// Number of replicas.
    pub n: u32,
    /// Replicas that must hold a write before it is acknowledged.
    pub w: u32,
    /// Replicas a read consults.
    pub r: u32,
    /// Artificial delays (off by default).
    #[serde(default)]
    pub delay_profile: DelayProfile,
}

/// Body of `POST /config`: the fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigUpdate {
    /// New write quorum, 1..=N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub w: Option<u32>,
    /// New read quorum, 1..=N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub r: Option<u32>,
    /// New delay profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_profile: Option<DelayProfile>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ClusterConfig {
    /// A validated configuration.
    ///
    /// # Errors
    /// When N is 0, W or R is outside 1..=N, or a delay is over
    /// [`MAX_DELAY_MS`].
    pub fn new(n: u32, w: u32, r: u32, delay_profile: DelayProfile) -> Result<Self, ConfigError> {
        if n == 0 {
            return Err(ConfigError("n must be at least 1".into()));
        }
        for (name, v) in [("w", w), ("r", r)] {
            if v == 0 || v > n {
                return Err(ConfigError(format!(
                    "{name} must be between 1 and n={n}, got {v}"
                )));
            }
        }
        let d = delay_profile;
        for (name, ms) in [
            ("send_ms", d.send_ms),
            ("ack_ms", d.ack_ms),
            ("remote_read_ms", d.remote_read_ms),
        ] {
            if ms > MAX_DELAY_MS {
                return Err(ConfigError(format!(
                    "delay_profile.{name} must be at most {MAX_DELAY_MS} ms, got {ms}"
                )));
            }
        }
        Ok(Self {
            n,
            w,
            r,
            delay_profile,
        })
    }

    /// Checks a configuration that arrived over the network (its fields were
    /// not built by [`ClusterConfig::new`]) against the cluster's N.
    ///
    /// # Errors
    /// Another N, or anything [`ClusterConfig::new`] refuses.
    pub fn check(&self, n: u32) -> Result<(), ConfigError> {
        if self.n != n {
            return Err(ConfigError(format!(
                "the configuration is for n={}, this cluster has n={n}",
                self.n
            )));
        }
        Self::new(self.n, self.w, self.r, self.delay_profile).map(|_| ())
    }

    /// This configuration with `update` applied.
    ///
    /// # Errors
    /// When the result would be invalid; `self` is unchanged then.
    pub fn with(&self, update: &ConfigUpdate) -> Result<Self, ConfigError> {
        Self::new(
            self.n,
            update.w.unwrap_or(self.w),
            update.r.unwrap_or(self.r),
            update.delay_profile.unwrap_or(self.delay_profile),
        )
    }

    /// Whether every read quorum overlaps every write quorum (R + W > N), so
    /// that a read started after a write's acknowledgement sees that write.
    pub fn is_strong(&self) -> bool {
        self.r + self.w > self.n
    }
}

/// One peer as a node sees it, in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerStatus {
    /// The peer's id.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub id: NodeId,
    /// The peer's base URL.
    pub url: String,
    /// The peer's role.
    pub role: Role,
    /// Whether the last contact with the peer succeeded.
    pub up: bool,
    /// Leader only: highest log position the follower acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub acked_seq: Option<Seq>,
    /// How far the peer is behind (flattened: its fields sit beside the others).
    #[serde(flatten)]
    pub progress: Progress,
}

/// How far a replica is behind: one struct for `/status` ([`PeerStatus`],
/// as the node that sends to the replica sees it) and the dashboard's feed
/// ([`crate::events::ReplicaView`]). A new per-peer figure is added here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    /// Leader-follower: entries the replica is behind the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_entries: Option<u64>,
    /// Leader-follower: age of the oldest entry the replica has not
    /// acknowledged, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Leaderless: hints waiting to be delivered to the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_hints: Option<u64>,
}

/// Path of [`StatusResponse`] (`GET`).
pub const STATUS_PATH: &str = "/status";
/// Path of the cluster configuration: `GET` answers [`ClusterConfig`],
/// `POST` takes a [`ConfigUpdate`].
pub const CONFIG_PATH: &str = "/config";

/// Answer of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusResponse {
    /// This node's id.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub node_id: NodeId,
    /// This node's base URL as its peers reach it.
    pub url: String,
    /// How the cluster replicates.
    pub mode: Mode,
    /// This node's role.
    pub role: Role,
    /// The leader's id (leader-follower mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub leader: Option<NodeId>,
    /// N, W, R and the delay profile in force.
    pub config: ClusterConfig,
    /// Highest log position applied locally (leader-follower mode).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub applied_seq: Seq,
    /// Number of keys in the local store.
    pub keys: u64,
    /// The other nodes, sorted by id.
    pub peers: Vec<PeerStatus>,
    /// Leaderless mode: clock, hints and anti-entropy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaderless: Option<crate::leaderless::LeaderlessStatus>,
    /// Leader-follower mode: term, commit point, rollbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_follower: Option<crate::leader_follower::LeaderFollowerStatus>,
    /// What this node refused since it started, and its admin policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityStatus>,
    /// Faults injected into this node and in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<crate::admin::FaultsStatus>,
}

/// Who may change the configuration of a node (`/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AdminPolicy {
    /// W/R and the delay profile need `Authorization: Bearer <admin token>`.
    Token,
    /// No admin token on a loopback-bound node: W/R may change, delays may not.
    LoopbackQuorumsOnly,
    /// No admin token on a node reachable from other hosts: every admin action is refused.
    Disabled,
}

/// Counters of what a node refused since it started, each also logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityStatus {
    /// Who may change W, R and the delays.
    pub admin: Option<AdminPolicy>,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections closed at once because `--max-connections` were open.
    pub refused_connections: u64,
    /// Node-to-node requests without the cluster secret (401).
    pub unauthenticated: u64,
    /// Node-to-node messages with the secret but refused by validation (400).
    pub invalid_messages: u64,
    /// Requests for a host the node does not answer to, or cross-origin
    /// writes from an origin it does not allow (403).
    pub foreign_requests: u64,
    /// Admin actions refused (401/403).
    pub refused_admin: u64,
    /// `/events` streams refused because `--max-event-streams` were open (503).
    pub refused_event_streams: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_fields_sit_beside_the_peers_other_fields_on_the_wire() {
        let peer = PeerStatus {
            id: 2,
            url: "http://n2".into(),
            role: Role::Follower,
            up: true,
            acked_seq: Some(7),
            progress: Progress {
                lag_entries: Some(3),
                lag_ms: Some(250),
                pending_hints: None,
            },
        };
        let json = serde_json::to_value(&peer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 2, "url": "http://n2", "role": "follower", "up": true,
                "acked_seq": 7, "lag_entries": 3, "lag_ms": 250})
        );
        assert_eq!(serde_json::from_value::<PeerStatus>(json).unwrap(), peer);
    }

    #[test]
    fn quorums_outside_one_to_n_are_refused() {
        assert!(ClusterConfig::new(5, 3, 3, DelayProfile::OFF)
            .unwrap()
            .is_strong());
        assert!(!ClusterConfig::new(5, 1, 1, DelayProfile::OFF)
            .unwrap()
            .is_strong());
        assert!(ClusterConfig::new(5, 0, 1, DelayProfile::OFF).is_err());
        assert!(ClusterConfig::new(5, 1, 6, DelayProfile::OFF).is_err());
        let c = ClusterConfig::new(5, 5, 1, DelayProfile::OFF).unwrap();
        let bad = ConfigUpdate {
            w: Some(9),
            ..Default::default()
        };
        assert!(c
            .with(&bad)
            .unwrap_err()
            .0
            .contains("w must be between 1 and n=5"));
        let good = ConfigUpdate {
            r: Some(5),
            w: Some(1),
            delay_profile: None,
        };
        assert_eq!((c.with(&good).unwrap().w, c.with(&good).unwrap().r), (1, 5));
        let slow = ConfigUpdate {
            delay_profile: Some(DelayProfile {
                send_ms: u32::MAX,
                ack_ms: 0,
                remote_read_ms: 0,
            }),
            ..Default::default()
        };
        assert!(c
            .with(&slow)
            .unwrap_err()
            .0
            .contains("send_ms must be at most 10000 ms"));
        let forged = ClusterConfig { w: 0, ..c };
        assert!(forged.check(5).is_err());
        assert!(c
            .check(3)
            .unwrap_err()
            .0
            .contains("n=5, this cluster has n=3"));
        assert!(c.check(5).is_ok());
    }
}
