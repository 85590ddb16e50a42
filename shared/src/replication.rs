//! Node-to-node messages: the `/internal/...` endpoints.
//!
//! Clients never call these; replicas call them on each other.
//!
//! | endpoint | body | answer | used by |
//! | --- | --- | --- | --- |
//! | `POST /internal/replicate` | [`ReplicateRequest`] | [`ReplicateResponse`] | leader → follower: a batch of log entries (or an empty heartbeat) |
//! | `POST /internal/snapshot` | [`SnapshotRequest`] | [`ReplicateResponse`] | leader → follower: the whole store, when the log no longer holds what the follower misses |
//! | `GET /internal/read?key=K` | — | [`InternalReadResponse`] | read coordinator → replica: the replica's copy of one key |
//! | `POST /internal/repair` | [`RepairRequest`] | [`RepairResponse`] | read coordinator → stale replica: newer records seen by a read |
//! | `POST /internal/config` | [`ConfigEnvelope`] | [`ConfigEnvelope`] | any node → every peer: a changed W/R or delay profile |
//! | `GET /internal/state` | — | [`StateResponse`] | a restarted leader → every follower: their records, to recover from |
//!
//! A follower's answer to a replicate or snapshot message always carries its
//! applied sequence number; that number is its acknowledgement and, when it is
//! lower than what the leader sent, its request to be caught up.

use crate::cluster::{ClusterConfig, Seq};
use crate::ids::{NodeId, Version};
use serde::{Deserialize, Serialize};

/// A key with its value and version: the unit of snapshots and read repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// The version of that value; a replica keeps the highest it has seen.
    pub version: Version,
}

/// One write in the leader's replication log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Cluster-wide position of the write: 1, 2, 3… with no gap.
    pub seq: Seq,
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: String,
    /// The key's version assigned by the leader.
    pub version: Version,
}

/// A cluster configuration with the stamp that orders its changes.
///
/// Two envelopes compare by `(epoch, origin)`; every node keeps the greatest
/// it has seen, so concurrent changes converge on one winner everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEnvelope {
    /// The configuration.
    pub config: ClusterConfig,
    /// Incremented by every change; 0 for the configuration given at start.
    pub epoch: u64,
    /// The node that made the change (breaks ties between equal epochs).
    pub origin: NodeId,
}

impl ConfigEnvelope {
    /// Whether `self` supersedes `other`.
    pub fn is_newer_than(&self, other: &ConfigEnvelope) -> bool {
        (self.epoch, self.origin) > (other.epoch, other.origin)
    }
}

/// Body of `POST /internal/replicate`: log entries in sequence order, or none
/// (a heartbeat that tells the follower how far the log goes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    /// The sending leader.
    pub leader: NodeId,
    /// Identifies the leader's process life; a follower that sees a new one
    /// drops entries it buffered from the previous life.
    #[serde(default)]
    pub leader_epoch: u64,
    /// The leader's highest sequence number when it sent this message.
    pub leader_seq: Seq,
    /// Consecutive entries, lowest sequence number first.
    pub entries: Vec<LogEntry>,
    /// The leader's configuration, so that a follower that missed a change converges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigEnvelope>,
}

/// Body of `POST /internal/snapshot`: every record of the leader's store, which
/// holds at least all entries up to `seq` (and maybe some later ones; applying
/// those twice is harmless because versions only grow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The sending leader.
    pub leader: NodeId,
    /// The leader's process life (see [`ReplicateRequest::leader_epoch`]).
    #[serde(default)]
    pub leader_epoch: u64,
    /// Every entry up to this sequence number is reflected in `records`.
    pub seq: Seq,
    /// The records.
    pub records: Vec<Record>,
    /// The leader's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigEnvelope>,
}

/// A follower's answer to a replicate or snapshot message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateResponse {
    /// The answering follower.
    pub node_id: NodeId,
    /// Every entry up to this sequence number is applied on the follower.
    /// Lower than what the leader sent means "resend from `applied_seq + 1`".
    pub applied_seq: Seq,
}

/// Answer of `GET /internal/state`: everything a follower holds, for a
/// leader that restarted empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateResponse {
    /// The answering follower.
    pub node_id: NodeId,
    /// Every entry up to this sequence number is applied there.
    pub applied_seq: Seq,
    /// Its records.
    pub records: Vec<Record>,
    /// The configuration it runs.
    pub config: ConfigEnvelope,
}

/// A version and its value, as one replica holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedValue {
    /// The value.
    pub value: String,
    /// Its version.
    pub version: Version,
}

/// Answer of `GET /internal/read?key=K`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReadResponse {
    /// The answering replica.
    pub node_id: NodeId,
    /// Its copy of the key, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<VersionedValue>,
}

/// Body of `POST /internal/repair`: records newer than what the replica answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    /// The read coordinator that saw the newer records.
    pub from: NodeId,
    /// The records; each is kept only if newer than the replica's copy.
    pub records: Vec<Record>,
}

/// Answer of `POST /internal/repair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairResponse {
    /// The repaired replica.
    pub node_id: NodeId,
    /// How many records replaced an older copy.
    pub changed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::DelayProfile;

    #[test]
    fn newer_config_wins_by_epoch_then_origin() {
        let config = ClusterConfig::new(5, 3, 3, DelayProfile::OFF).unwrap();
        let a = ConfigEnvelope {
            config,
            epoch: 1,
            origin: 2,
        };
        let b = ConfigEnvelope {
            config,
            epoch: 1,
            origin: 3,
        };
        let c = ConfigEnvelope {
            config,
            epoch: 2,
            origin: 1,
        };
        assert!(b.is_newer_than(&a) && c.is_newer_than(&b) && !a.is_newer_than(&a));
    }

    #[test]
    fn heartbeat_has_an_empty_entry_list() {
        let hb = ReplicateRequest {
            leader: 1,
            leader_epoch: 9,
            leader_seq: 7,
            entries: vec![],
            config: None,
        };
        assert_eq!(
            serde_json::to_string(&hb).unwrap(),
            r#"{"leader":1,"leader_epoch":9,"leader_seq":7,"entries":[]}"#
        );
    }
}
