//! Node-to-node messages of leader-follower mode: elections and the
//! replicated log (`/internal/lf/...`), and the mode's `/status` fields.
//!
//! The protocol is Raft's (terms, votes with pre-vote, log matching by
//! `(term, index)`), carrying the assignment's tunable W: the leader answers
//! a client once W replicas hold a write, while *commitment* — the point after
//! which no failover can undo an entry — needs a majority.
//!
//! | endpoint | body | answer | used by |
//! | --- | --- | --- | --- |
//! | `POST /internal/lf/vote` | [`VoteRequest`] | [`VoteResponse`] | a (pre-)candidate → every peer |
//! | `POST /internal/lf/append` | [`AppendRequest`] | [`AppendResponse`] | leader → follower: entries after `(prev_index, prev_term)`, or none (a heartbeat) |
//! | `POST /internal/lf/snapshot` | [`SnapshotRequest`] | [`AppendResponse`] | leader → follower: the committed state, when the leader's log no longer holds what the follower misses |
//! | `POST /internal/lf/stream` (upgrade to [`STREAM_PROTOCOL`]) | frames of [`AppendRequest`] | frames of [`AppendStreamAnswer`] | leader → follower: the same appends as `/internal/lf/append`, one after the other over one connection |
//!
//! **The append stream.** A leader keeps one connection per follower,
//! upgraded from a signed `POST /internal/lf/stream`, and sends its appends
//! over it one at a time, each answered before the next leaves; an append
//! that finds the stream busy (a heartbeat while a batch is out) goes as a
//! request of its own. Its frames are those of every peer stream (see
//! [`crate::replication`], "Peer streams").
//!
//! Every message carries the sender's term. A node that sees a higher term
//! adopts it and becomes a follower; a message from an older term is refused
//! (its answer carries the newer term, which deposes a stale sender).

use crate::cluster::{ClusterConfig, Seq};
use crate::ids::{NodeId, Term, Version};
use crate::replication::Record;
use serde::{Deserialize, Serialize};

/// Path of [`VoteRequest`].
pub const VOTE_PATH: &str = "/internal/lf/vote";
/// Path of [`AppendRequest`].
pub const APPEND_PATH: &str = "/internal/lf/append";
/// Path of [`SnapshotRequest`].
pub const SNAPSHOT_PATH: &str = "/internal/lf/snapshot";
/// Path a leader upgrades to its append stream to one follower.
pub const STREAM_PATH: &str = "/internal/lf/stream";
/// The `Upgrade` protocol of the append stream.
pub const STREAM_PROTOCOL: &str = "kv-lf-append-stream/1";

/// What one log entry does. Externally tagged on the wire
/// (`{"write":{...}}`), which decodes without buffering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A client write: `key` takes `value` at `version`.
    Write {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
        /// The key's version, assigned by the leader that created the entry.
        version: Version,
    },
    /// The first entry of every leader's term. Versions the new leader hands
    /// out start at `floor`, above every version an earlier leader could have
    /// given without a majority knowing; `window` is the most uncommitted
    /// entries this leader allows (a later leader's floor adds it).
    TermStart {
        /// Lowest version this term hands out.
        floor: Version,
        /// Most entries this leader keeps beyond its commit point.
        window: u64,
    },
    /// A configuration change (W, R, delay profile), one phase of it.
    Config {
        /// The configuration in force from this entry on.
        config: ClusterConfig,
    },
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log: 1, 2, 3… with no gap.
    pub index: Seq,
    /// Term of the leader that created it.
    pub term: Term,
    /// What it does.
    pub command: Command,
}

/// Body of `POST /internal/lf/vote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// The term the candidate asks votes for (for a pre-vote: the term it
    /// would campaign in; nobody changes term for a pre-vote).
    pub term: Term,
    /// The candidate.
    pub candidate: NodeId,
    /// Index of the candidate's last log entry.
    pub last_index: Seq,
    /// Term of the candidate's last log entry.
    pub last_term: Term,
    /// A pre-vote: "would you vote for me?", granted only by a node that has
    /// not heard from a leader lately, so that a node coming back from a
    /// partition does not depose a healthy leader.
    #[serde(default)]
    pub pre_vote: bool,
    /// A probe: a node that started (and may have forgotten what it held and
    /// whom it voted for) asks where its peers' logs end; never granted.
    #[serde(default)]
    pub probe: bool,
}

/// Answer of `POST /internal/lf/vote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    /// The voter.
    pub from: NodeId,
    /// The voter's term (after it considered the request).
    pub term: Term,
    /// The request's term, so that a late answer is matched to its election.
    pub request_term: Term,
    /// Whether the vote is granted.
    pub granted: bool,
    /// Whether this answers a pre-vote.
    #[serde(default)]
    pub pre_vote: bool,
    /// Whether this answers a probe.
    #[serde(default)]
    pub probe: bool,
    /// Term of the voter's last log entry.
    #[serde(default)]
    pub last_term: Term,
    /// Index of the voter's last log entry.
    #[serde(default)]
    pub last_index: Seq,
    /// Whether the voter itself is catching up after a start (its log may
    /// lack what it once held).
    #[serde(default)]
    pub catching_up: bool,
}

/// Body of `POST /internal/lf/append`: entries following `(prev_index,
/// prev_term)`, or none (a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader: NodeId,
    /// Index of the entry just before `entries`.
    pub prev_index: Seq,
    /// Its term; the follower accepts only if its own entry there matches.
    pub prev_term: Term,
    /// Consecutive entries, lowest index first.
    pub entries: Vec<LogEntry>,
    /// The leader's commit index: entries up to here will never be undone.
    pub leader_commit: Seq,
    /// The leader's last index when it sent this (a follower that restarted
    /// counts as current for reads once it holds this much).
    pub leader_last: Seq,
    /// The configuration in force at the leader, which a follower uses at once.
    pub config: ClusterConfig,
    /// The log index of the entry that made `config` (0: the start flags).
    pub config_index: Seq,
    /// The leader's wall clock when it built the message (ms since the Unix
    /// epoch); a follower trusts `config` until this plus the lease.
    pub sent_at_ms: u64,
}

/// A follower's answer to an append or snapshot message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResponse {
    /// The follower.
    pub from: NodeId,
    /// Its term (higher than the request's: the sender is deposed).
    pub term: Term,
    /// Whether its log now matches the leader's through `match_index`.
    pub success: bool,
    /// On success: the last index known to match the leader's log.
    pub match_index: Seq,
    /// On failure: where the leader should retry from (the follower's first
    /// index of the conflicting term, or its last index + 1).
    pub retry_from: Seq,
    /// The follower's commit index.
    pub commit: Seq,
    /// The configuration index the follower runs after this message.
    pub config_index: Seq,
    /// The request's `sent_at_ms`, echoed: a majority of answers to messages
    /// sent at T lets the leader trust its configuration until T plus the lease.
    pub sent_at_ms: u64,
    /// Identifies the follower's process life: a new value tells the leader
    /// the follower restarted and forgot its log.
    pub life: u64,
    /// Answer to a snapshot chunk that did not complete it: how many records
    /// of that snapshot the follower holds so far (send from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<u64>,
}

/// A follower's answer to one append of the stream: what
/// `POST /internal/lf/append` would have answered.
pub type AppendStreamAnswer = crate::replication::StreamAnswer<AppendResponse>;

/// Body of `POST /internal/lf/snapshot`: one chunk of the leader's committed
/// state. A snapshot travels in chunks of bounded size; the follower stages
/// them and installs the whole once the chunk with `done` arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// Position of this chunk's first record among the snapshot's records.
    #[serde(default)]
    pub offset: u64,
    /// Whether this chunk is the last one.
    #[serde(default = "last_by_default")]
    pub done: bool,
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader: NodeId,
    /// The state reflects every entry up to this index and nothing after.
    pub last_index: Seq,
    /// Term of that entry.
    pub last_term: Term,
    /// This chunk's records (of every key with its value and version at `last_index`).
    pub records: Vec<Record>,
    /// The version floor in force at `last_index` (0: no term started yet).
    pub floor: Version,
    /// The largest uncommitted window any term up to `last_index` used.
    pub window: u64,
    /// The highest version any entry the leader holds carried.
    pub max_version: Version,
    /// The configuration in force at `last_index`.
    pub base_config: ClusterConfig,
    /// The index of the entry that made `base_config` (0: the start flags).
    pub base_config_index: Seq,
    /// As in [`AppendRequest::config`]: what the leader runs now.
    pub config: ClusterConfig,
    /// As in [`AppendRequest::config_index`].
    pub config_index: Seq,
    /// The terms of every index up to `last_index`, as runs: `(first index,
    /// term)` of each term that has entries there, oldest first.
    #[serde(default)]
    pub terms: Vec<(Seq, Term)>,
    /// As in [`AppendRequest::leader_last`].
    pub leader_last: Seq,
    /// As in [`AppendRequest::sent_at_ms`].
    pub sent_at_ms: u64,
}

/// A snapshot message without `done` is a whole snapshot in one chunk.
fn last_by_default() -> bool {
    true
}

/// A write that a node undid because the elected leader's log does not
/// hold it (it never reached a majority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolledBackWrite {
    /// The key.
    pub key: String,
    /// The version the write had.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
    /// Its log position.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub index: Seq,
    /// Its term.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub term: Term,
    /// Whether this node had answered 201 for it (it led and W was met).
    pub acknowledged: bool,
    /// When it was undone, on this node's wall clock (ms since the Unix epoch).
    pub at_ms: u64,
}

/// Leader-follower fields of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaderFollowerStatus {
    /// This node's current term.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub term: Term,
    /// Whom it voted for in that term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub voted_for: Option<NodeId>,
    /// Entries up to here are committed (held by a majority; never undone).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub commit_seq: Seq,
    /// The first index the log still holds (earlier ones are compacted).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub log_start: Seq,
    /// The version floor of the current term.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub floor: Version,
    /// True while the node, after a (re)start, has not yet caught up with
    /// the leader's log as it was when they first spoke: it does not count
    /// towards R then.
    pub catching_up: bool,
    /// True when the node has not heard from a leader within the lease, so it
    /// cannot be sure which W is in force: its coordinated reads ask all N.
    pub in_doubt: bool,
    /// Elections this node started (as a candidate, after a won pre-vote).
    pub elections: u64,
    /// Log entries this node undid since it started.
    pub rolled_back: u64,
    /// Of those, writes this node had acknowledged to a client (W < majority).
    pub rolled_back_acknowledged: u64,
    /// The most recent undone writes, oldest first (bounded).
    #[serde(default)]
    pub recent_rollbacks: Vec<RolledBackWrite>,
    /// A configuration change the leader is carrying out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_change: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::DelayProfile;

    #[test]
    fn entries_name_their_operation() {
        let e = LogEntry {
            index: 3,
            term: 2,
            command: Command::Write {
                key: "k".into(),
                value: "v".into(),
                version: 7,
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"index":3,"term":2,"command":{"write":{"key":"k","value":"v","version":7}}}"#
        );
        let c = LogEntry {
            index: 4,
            term: 2,
            command: Command::Config {
                config: ClusterConfig::new(5, 3, 3, DelayProfile::OFF).unwrap(),
            },
        };
        let back: LogEntry = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
