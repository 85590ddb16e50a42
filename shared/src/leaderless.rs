//! Node-to-node messages of leaderless mode: the `/internal/ll/...` endpoints,
//! and the leaderless part of `/status`.
//!
//! Coordinated reads and read repair reuse the shared endpoints of
//! [`crate::replication`] (batches over `/internal/reads/stream` or
//! `POST /internal/reads`, or `GET /internal/read` each; `POST
//! /internal/repair`); what is specific to leaderless replication is here.
//!
//! | endpoint | body | answer | used by |
//! | --- | --- | --- | --- |
//! | `POST /internal/ll/write` | [`LlWrite`] | [`LlWriteAck`] | write coordinator → replica (a client write, a hint, or records pushed by anti-entropy); a coordinator's batches of client writes travel over the stream below when it can carry them |
//! | `POST /internal/ll/write/stream` (upgrade to [`LL_WRITE_STREAM_PROTOCOL`]) | frames of [`LlWrite`] | frames of [`StreamAnswer`](crate::replication::StreamAnswer)`<`[`LlWriteAck`]`>` | write coordinator → replica: its batches of client writes, one at a time, over one connection per peer kept open |
//! | `POST /internal/ll/digest` | [`DigestRequest`] | [`DigestResponse`] | anti-entropy: hashes of some Merkle-tree nodes |
//! | `POST /internal/ll/keys` | [`BucketKeysRequest`] | [`BucketKeysResponse`] | anti-entropy: keys and versions of the differing leaf buckets |
//! | `POST /internal/ll/fetch` | [`FetchRequest`] | [`FetchResponse`] | anti-entropy: the records of keys the peer holds newer |
//!
//! Every message carries the sender's hybrid-logical-clock reading
//! (`clock`), so that clocks move forward together and a write coordinated
//! after a message was received is stamped higher than anything in it.

use crate::ids::{NodeId, Version};
use crate::replication::{ConfigEnvelope, Record};
use serde::{Deserialize, Serialize};

/// The bit layout of leaderless versions (hybrid-logical-clock readings),
/// shared by the nodes that issue them and the dashboard that shows them;
/// the node's `leaderless::hlc` module explains it.
pub mod hlc {
    use crate::ids::Version;

    /// Unix time of the physical part's zero: 2024-01-01T00:00:00Z, in ms.
    pub const EPOCH_UNIX_MS: u64 = 1_704_067_200_000;
    /// Bits of the node id (lowest bits).
    pub const NODE_BITS: u32 = 8;
    /// Bits of the logical counter (middle bits).
    pub const LOGICAL_BITS: u32 = 14;
    /// Bits of the physical milliseconds (highest bits).
    pub const PHYSICAL_BITS: u32 = 64 - LOGICAL_BITS - NODE_BITS;
    /// Largest node id a leaderless node may have.
    pub const MAX_NODE_ID: crate::ids::NodeId = (1 << NODE_BITS) - 1;
    /// Largest logical counter.
    pub const MAX_LOGICAL: u64 = (1 << LOGICAL_BITS) - 1;
    /// Largest physical reading.
    pub const MAX_PHYSICAL: u64 = (1 << PHYSICAL_BITS) - 1;

    /// A version's fields: (ms since the Unix epoch, counter within the
    /// millisecond, issuing node).
    pub fn parts(v: Version) -> (u64, u64, u64) {
        (
            (v >> (LOGICAL_BITS + NODE_BITS)) + EPOCH_UNIX_MS,
            (v >> NODE_BITS) & MAX_LOGICAL,
            v & u64::from(MAX_NODE_ID),
        )
    }

    /// Whether `v` looks like a clock reading rather than a counter (its
    /// physical part is past 2024).
    pub fn is_clock_reading(v: Version) -> bool {
        v >> (LOGICAL_BITS + NODE_BITS) > 0
    }
}

/// Why records are sent to a replica: decides the replica's delay and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WriteKind {
    /// A client write the sender coordinates: the delay profile's ack delay applies.
    #[default]
    Client,
    /// Hinted handoff: writes the replica missed while it was unreachable.
    Hint,
    /// Records an anti-entropy round found newer on the sender.
    AntiEntropy,
}

/// Path of [`LlWrite`] (`POST`).
pub const LL_WRITE_PATH: &str = "/internal/ll/write";
/// Path a write coordinator upgrades to a stream of its [`LlWrite`] batches
/// to one replica (see "Peer streams" in [`crate::replication`]).
pub const LL_WRITE_STREAM_PATH: &str = "/internal/ll/write/stream";
/// The `Upgrade` protocol of a leaderless writes stream.
pub const LL_WRITE_STREAM_PROTOCOL: &str = "kv-ll-write-stream/1";
/// Path of [`DigestRequest`] (`POST`).
pub const LL_DIGEST_PATH: &str = "/internal/ll/digest";
/// Path of [`BucketKeysRequest`] (`POST`).
pub const LL_KEYS_PATH: &str = "/internal/ll/keys";
/// Path of [`FetchRequest`] (`POST`).
pub const LL_FETCH_PATH: &str = "/internal/ll/fetch";

/// Body of `POST /internal/ll/write`: records to keep where newer than the
/// replica's copy (last-write-wins by version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlWrite {
    /// The sending node.
    pub from: NodeId,
    /// The sender's clock reading when it sent the message.
    pub clock: Version,
    /// Why the records are sent.
    #[serde(default)]
    pub kind: WriteKind,
    /// The records.
    pub records: Vec<Record>,
    /// The sender's cluster configuration, so that a node that missed a
    /// W/R change (it was down) converges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigEnvelope>,
}

/// Answer of `POST /internal/ll/write`: the replica holds every record of the
/// message (or a newer version of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlWriteAck {
    /// The answering replica.
    pub node_id: NodeId,
    /// The replica's clock reading after it took the message.
    pub clock: Version,
    /// How many records replaced an older copy (or filled a missing key).
    pub changed: u32,
}

/// Shape of the anti-entropy Merkle tree; both sides of a comparison must
/// agree on it (a node answers 400 to a request with another shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    /// Children per inner node.
    pub fanout: u32,
    /// Levels below the root; the tree has `fanout^depth` leaf buckets.
    pub depth: u32,
}

impl TreeShape {
    /// The shape every node uses: 16-way, 3 levels below the root, 4096 leaf buckets.
    pub const DEFAULT: TreeShape = TreeShape {
        fanout: 16,
        depth: 3,
    };

    /// Number of nodes at `level` (0 = the root).
    pub fn width(&self, level: u32) -> u32 {
        self.fanout.saturating_pow(level)
    }

    /// Number of leaf buckets.
    pub fn leaves(&self) -> u32 {
        self.width(self.depth)
    }
}

/// Body of `POST /internal/ll/digest`: "send me your hashes of these tree nodes".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRequest {
    /// The asking node.
    pub from: NodeId,
    /// Identifies one anti-entropy round, so that the peer builds its tree
    /// once per round and answers every level from that one tree.
    pub session: u64,
    /// The tree shape the asking node uses.
    pub shape: TreeShape,
    /// The level asked about (0 = root, `shape.depth` = leaf buckets).
    pub level: u32,
    /// Indices of the nodes asked about at that level, ascending.
    pub nodes: Vec<u32>,
    /// The sender's cluster configuration (see [`LlWrite::config`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigEnvelope>,
}

/// Answer of `POST /internal/ll/digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestResponse {
    /// The answering node.
    pub node_id: NodeId,
    /// Its clock reading.
    pub clock: Version,
    /// One hash per node asked about, in the order asked.
    pub hashes: Vec<u64>,
}

/// A key and the version a replica holds of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The key.
    pub key: String,
    /// The version of its value.
    pub version: Version,
}

/// Body of `POST /internal/ll/keys`: "list the keys you hold in these buckets".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketKeysRequest {
    /// The asking node.
    pub from: NodeId,
    /// The tree shape the asking node uses.
    pub shape: TreeShape,
    /// Leaf bucket indices, ascending.
    pub buckets: Vec<u32>,
}

/// Answer of `POST /internal/ll/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketKeysResponse {
    /// The answering node.
    pub node_id: NodeId,
    /// Its clock reading.
    pub clock: Version,
    /// Every key it holds in the buckets asked about, with its version.
    pub entries: Vec<KeyVersion>,
}

/// Body of `POST /internal/ll/fetch`: "send me these records".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The asking node.
    pub from: NodeId,
    /// The keys wanted.
    pub keys: Vec<String>,
}

/// Answer of `POST /internal/ll/fetch`: the records of the keys the node holds
/// (keys it does not hold are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The answering node.
    pub node_id: NodeId,
    /// Its clock reading.
    pub clock: Version,
    /// The records (at most about 4 MiB of them).
    pub records: Vec<Record>,
    /// Requested keys left out to keep the answer small: ask again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsent: Vec<String>,
}

/// The last completed anti-entropy round of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AntiEntropyRound {
    /// The peer compared with.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub peer: NodeId,
    /// When the round ended, in ms since the Unix epoch.
    pub ended_at_ms: u64,
    /// How long the round took, in ms.
    pub duration_ms: u64,
    /// Leaf buckets whose digests differed.
    pub buckets_differing: u32,
    /// Keys changed on either side by the round (pulled plus pushed).
    pub keys_repaired: u64,
    /// Whether the round ran to its end (false: the peer failed mid-way).
    pub completed: bool,
}

/// The leaderless fields of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaderlessStatus {
    /// The node's hybrid logical clock: the highest version it has issued or seen.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub clock: Version,
    /// The physical part of `clock`, in ms since the Unix epoch.
    pub clock_ms: u64,
    /// Hints waiting for delivery, all peers together (per peer: `peers[].pending_hints`).
    pub pending_hints: u64,
    /// Hints dropped because a peer's hint store was full (anti-entropy repairs those keys).
    pub dropped_hints: u64,
    /// Hints delivered since start.
    pub delivered_hints: u64,
    /// Writes that answered 503 because W replicas did not acknowledge in time.
    pub writes_failed: u64,
    /// Anti-entropy period, in ms (each round is jittered by up to ±25 %).
    pub anti_entropy_ms: u64,
    /// Anti-entropy rounds run since start.
    pub anti_entropy_rounds: u64,
    /// Keys repaired by anti-entropy since start.
    pub anti_entropy_keys_repaired: u64,
    /// The last anti-entropy round, once one has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_anti_entropy: Option<AntiEntropyRound>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tree_has_4096_leaves() {
        let s = TreeShape::DEFAULT;
        assert_eq!((s.width(0), s.width(1), s.leaves()), (1, 16, 4096));
    }

    #[test]
    fn write_kind_defaults_to_client_and_is_kebab_case() {
        let w: LlWrite = serde_json::from_str(r#"{"from":1,"clock":2,"records":[]}"#).unwrap();
        assert_eq!(w.kind, WriteKind::Client);
        assert_eq!(
            serde_json::to_string(&WriteKind::AntiEntropy).unwrap(),
            "\"anti-entropy\""
        );
    }
}
