//! Node-to-node messages both replication modes use: the `/internal/...`
//! endpoints of coordinated reads and of configuration changes.
//!
//! Clients never call these; replicas call them on each other. The messages
//! of one mode only are in [`crate::leader_follower`] and [`crate::leaderless`].
//!
//! | endpoint | body | answer | used by |
//! | --- | --- | --- | --- |
//! | `GET /internal/read?key=K[&digest=true]` ([`InternalReadQuery`]) | — | [`InternalReadResponse`] | read coordinator → replica: the replica's copy of one key (with `digest=true`, its version only), one ask per request (with `--read-batches-in-flight 0`: batching off) |
//! | `POST /internal/reads` | [`InternalReadsRequest`] | [`InternalReadsResponse`] | read coordinator → replica, with `--read-batches-in-flight` ≥ 1 (1 by default), when no reads stream can carry the batch: the copies of one or more keys at once, one per read that asks it meanwhile (at most [`MAX_READ_BATCH_KEYS`](crate::limits::MAX_READ_BATCH_KEYS)) |
//! | `POST /internal/reads/stream` (upgrade to [`READS_STREAM_PROTOCOL`]) | frames of [`InternalReadsRequest`] | frames of [`StreamAnswer`]`<`[`InternalReadsResponse`]`>` | read coordinator → replica, with `--read-batches-in-flight` ≥ 1 (1 by default): the same batches as `/internal/reads`, over at most that many connections per peer kept open |
//! | `POST /internal/repair` | [`RepairRequest`] | [`RepairResponse`] | leaderless read coordinator → stale replica: newer records seen by a read |
//! | `POST /internal/config` | [`ConfigEnvelope`] | [`ConfigEnvelope`] | leaderless: any node → every peer, a changed W/R or delay profile; leader-follower: a follower → the leader, a change to carry out |

//!
//! # Peer streams
//! Messages that a node sends to the same peer again and again (a leader's
//! appends, a coordinator's batches of reads, a leaderless coordinator's
//! batches of writes) may travel over a connection kept open for them
//! instead of a request each: the sender upgrades a signed `POST` of the
//! stream's path, and then each message is one frame, answered by one frame
//! before the next leaves. A frame is `length (u32,
//! big-endian) ‖ MAC (`[`STREAM_MAC_BYTES`]` bytes) ‖ JSON`, the length at
//! most [`crate::limits::MAX_INTERNAL_BODY_BYTES`], the MAC an HMAC-SHA256
//! under the cluster secret over the upgrade request's signature, the
//! direction, the frame's number on the stream and the JSON: a frame cannot
//! be forged, replayed onto another stream, reordered or dropped unnoticed.
//! A frame that fails any check ends the stream. The answer frame is a
//! [`StreamAnswer`]: the status and body the message would have got as a
//! request.
//!
//! # Authentication
//! Every node-to-node request carries the headers below, and every answer
//! [`SIGNATURE_HEADER`]: HMAC-SHA256 under the cluster secret, which itself
//! never travels. A request is signed over its method, path and query,
//! [`FROM_HEADER`], [`TIME_HEADER`] and the SHA-256 of its body
//! ([`BODY_DIGEST_HEADER`]); an answer over the request's signature, its
//! status and the SHA-256 of its body. See `kv_node::security`.

use crate::cluster::ClusterConfig;
use crate::ids::{NodeId, Term, Version};
use serde::{Deserialize, Serialize};

/// The sending node's id.
pub const FROM_HEADER: &str = "x-kv-from";
/// Every node-to-node path starts with this prefix.
pub const INTERNAL_PREFIX: &str = "/internal/";
/// Path of a replica's copy of one key for a coordinated read, `GET
/// /internal/read?key=K[&digest=true]` ([`InternalReadQuery`]), answered
/// with [`InternalReadResponse`].
pub const INTERNAL_READ_PATH: &str = "/internal/read";
/// Path of a batch of reads, `POST /internal/reads` ([`InternalReadsRequest`]),
/// answered with [`InternalReadsResponse`].
pub const INTERNAL_READS_PATH: &str = "/internal/reads";
/// Path a read coordinator upgrades to a stream of [`InternalReadsRequest`]
/// batches to one replica (see "Peer streams" above).
pub const INTERNAL_READS_STREAM_PATH: &str = "/internal/reads/stream";
/// The `Upgrade` protocol of a reads stream.
pub const READS_STREAM_PROTOCOL: &str = "kv-reads-stream/1";
/// Length of the MAC that follows a stream frame's length.
pub const STREAM_MAC_BYTES: usize = 32;
/// Path of [`RepairRequest`] (`POST`).
pub const REPAIR_PATH: &str = "/internal/repair";
/// Path of a [`ConfigEnvelope`] pushed to a peer (`POST`).
pub const INTERNAL_CONFIG_PATH: &str = "/internal/config";
/// The sender's wall clock when it signed, in ms since the Unix epoch.
pub const TIME_HEADER: &str = "x-kv-time";
/// Lower-case hex SHA-256 of the body (of the empty body for a GET).
pub const BODY_DIGEST_HEADER: &str = "x-kv-body-sha256";
/// Lower-case hex HMAC-SHA256 of the request (or, on an answer, of the answer).
pub const SIGNATURE_HEADER: &str = "x-kv-signature";
/// Most a request's [`TIME_HEADER`] may differ from the receiver's clock, in ms.
pub const SIGNATURE_WINDOW_MS: u64 = 60_000;

/// The answer frame of a peer stream: what the message would have got as a
/// request (`T` is that request's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct StreamAnswer<T> {
    /// The HTTP status the request would have got (200, or an error's).
    pub status: u16,
    /// With 200: the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<T>,
    /// Otherwise: the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorBody>,
}

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

/// A version and its value, as one replica holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedValue {
    /// The value.
    pub value: String,
    /// Its version.
    pub version: Version,
}

/// Query of `GET /internal/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReadQuery {
    /// The key to read.
    pub key: String,
    /// Answer the version only, without the value (a *digest* read: the
    /// coordinator fetches the value only from a replica whose version is
    /// newer than every copy it holds).
    #[serde(default)]
    pub digest: bool,
}

/// Body of `POST /internal/reads`: the keys of several coordinated reads
/// that ask the same replica, answered together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReadsRequest {
    /// One ask per read, in any order; a key may appear more than once.
    /// At most [`MAX_READ_BATCH_KEYS`](crate::limits::MAX_READ_BATCH_KEYS).
    pub asks: Vec<InternalReadQuery>,
}

/// Answer of `POST /internal/reads`: what `GET /internal/read` answers for
/// each ask, in the order of the asks. A coordinator refuses an answer
/// whose count differs from its asks'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReadsResponse {
    /// One answer per ask.
    pub answers: Vec<InternalReadResponse>,
}

/// A replica's copy of a key in a read answer. With its value, it is
/// [`VersionedValue`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCopy {
    /// The version of the replica's copy.
    pub version: Version,
    /// Its value; absent in the answer to a digest read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Answer of `GET /internal/read?key=K`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReadResponse {
    /// The answering replica.
    pub node_id: NodeId,
    /// Its copy of the key, if it has one (without the value when the read
    /// asked for a digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<ReadCopy>,
    /// Whether the copy counts towards R: false on a leader-follower replica
    /// that restarted and has not caught up yet (it may lack writes it once
    /// acknowledged). Always true in leaderless mode.
    #[serde(default = "counts_by_default")]
    pub current: bool,
    /// Leader-follower: the replica's current term. A read coordinator that
    /// sees a term above the leader's knows that leader was deposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<Term>,
    /// Leader-follower: set by a leader whose term started — what a
    /// linearizable read returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_read: Option<LeaderRead>,
}

/// A leader's answer to a read: the key as of its read index (committed
/// writes; with W below a majority, writes held by W replicas), never a
/// write still in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRead {
    /// The leader's term.
    pub term: Term,
    /// The key's copy as of the read index, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<VersionedValue>,
}

/// Replicas that do not say otherwise count towards R.
fn counts_by_default() -> bool {
    true
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
    fn a_full_read_copy_is_a_versioned_value_on_the_wire_and_a_digest_has_no_value() {
        let full = ReadCopy {
            version: 7,
            value: Some("x".into()),
        };
        let json = serde_json::to_string(&full).unwrap();
        let as_versioned: VersionedValue = serde_json::from_str(&json).unwrap();
        assert_eq!(as_versioned.version, 7);
        let digest = ReadCopy {
            version: 7,
            value: None,
        };
        assert_eq!(serde_json::to_string(&digest).unwrap(), r#"{"version":7}"#);
    }
}
