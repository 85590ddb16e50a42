//! The dashboard's live feed: `GET /events` (Server-Sent Events).
//!
//! Every `data:` line of the stream is one JSON [`ClusterEvent`]:
//!
//! - [`ClusterEvent::Status`] carries a [`ClusterView`]: the node that serves
//!   the stream fetches its peers' `/status` a few times a second (server
//!   side, so the browser talks to one node only), marks the peers that do not
//!   answer as down, and sends the aggregate.
//! - [`ClusterEvent::Trace`] carries a [`WriteTrace`]: one write and, per
//!   replica, when the coordinator sent it and when the acknowledgement came
//!   back. A trace is sent again each time one of its timestamps is filled in;
//!   the latest copy of a trace (same `coordinator` and `id`) replaces earlier
//!   ones.
//!   A trace that ends without reaching its quorum carries its
//!   [`TraceOutcome`] (a 503 names how many replicas acknowledged it).
//! - [`ClusterEvent::Read`] carries a [`ReadTrace`]: one coordinated read,
//!   sent once it ended — the replicas asked, what each answered (a version,
//!   nothing, or no answer), the version returned and the read repairs sent.
//! - [`ClusterEvent::Node`] carries a [`NodeEvent`]: something that happened
//!   to one node's replication — in leader-follower mode a pre-vote, a
//!   campaign, a vote, an election won, a leader stepping down, a node
//!   following a new leader, a write rolled back, a node caught up; in
//!   leaderless mode hints handed off and anti-entropy rounds that repaired
//!   keys — and, in every mode, a fault injected or healed.
//!
//! Every timestamp is the wall clock of the node that built the event, in
//! milliseconds since the Unix epoch; `at_ms` says when the event was built,
//! so a client can shift the cluster's clock onto its own.
//!
//! ```text
//! data: {"type":"trace","id":7,"seq":7,"key":"k","version":3,"coordinator":1,...}
//! ```

use crate::cluster::{ClusterConfig, Seq};
use crate::ids::{Mode, NodeId, Role, Term, Version};
use serde::{Deserialize, Serialize};

/// Wall-clock time in milliseconds since the Unix epoch.
pub type WallMs = u64;

/// One message of the `/events` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClusterEvent {
    /// A snapshot of every replica, as seen by the node serving the stream.
    Status(ClusterView),
    /// The progress of one write through the replicas.
    Trace(WriteTrace),
    /// One coordinated read, once it ended.
    Read(ReadTrace),
    /// Something that happened to one node's replication.
    Node(NodeEvent),
}

/// Something that happened to one node's replication, reported by that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// The node it happened to.
    pub node: NodeId,
    /// When (that node's clock).
    pub at_ms: WallMs,
    /// The node's term afterwards (leader-follower mode).
    pub term: Term,
    /// What happened.
    #[serde(flatten)]
    pub kind: NodeEventKind,
}

/// What a [`NodeEvent`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NodeEventKind {
    /// The node heard from no leader for an election timeout and asks
    /// whether its peers would vote for it (in `term + 1`).
    PreVote,
    /// The node campaigns in `term`: it voted for itself and asks for votes.
    Campaign,
    /// The node voted for `candidate` in `term`.
    Voted {
        /// The candidate.
        candidate: NodeId,
    },
    /// The node won the election of `term`.
    Elected {
        /// The nodes that voted for it, itself included.
        votes: Vec<NodeId>,
        /// The lowest version this term hands out.
        floor: Version,
    },
    /// The node stopped leading.
    SteppedDown {
        /// Why.
        reason: String,
    },
    /// The node follows `leader` in `term`.
    Following {
        /// The leader.
        leader: NodeId,
    },
    /// The leader's first entry of `term` is committed: it takes writes.
    TermStarted,
    /// A write was undone because the elected leader's log does not hold it.
    RolledBack {
        /// The key.
        key: String,
        /// The version it had.
        version: Version,
        /// Its log position.
        index: Seq,
        /// Whether this node had acknowledged it to a client.
        acknowledged: bool,
    },
    /// The node, after its start, holds what the leader held when they first spoke.
    CaughtUp {
        /// The index it reached.
        index: Seq,
    },
    /// The configuration in force at the node changed.
    ConfigInForce {
        /// The configuration.
        config: ClusterConfig,
    },
    /// A fault was injected into the node (`/admin/faults`), or healed.
    Fault {
        /// What: `cut from 2, 3 (both ways)`, `paused for 5000 ms`, `healed`…
        description: String,
    },
    /// Leaderless: the node handed `count` hinted writes to `to`, which had
    /// missed them while it was unreachable.
    HintsDelivered {
        /// The replica that received them.
        to: NodeId,
        /// How many records.
        count: u32,
    },
    /// Leaderless: an anti-entropy round with `peer` found differing
    /// buckets and repaired keys (rounds that find nothing are not reported).
    AntiEntropy {
        /// The peer compared with.
        peer: NodeId,
        /// Leaf buckets whose digests differed.
        buckets: u32,
        /// Keys changed on either side.
        repaired: u64,
        /// Whether the round ran to its end.
        completed: bool,
    },
}

/// The cluster as one node sees it: itself plus what its peers answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// When the snapshot was complete (the observer's clock).
    pub at_ms: WallMs,
    /// The node that built the snapshot (the one serving the stream).
    pub observer: NodeId,
    /// How the cluster replicates.
    pub mode: Mode,
    /// The leader's id, in leader-follower mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// N, W, R and the delay profile, as the observer has them.
    pub config: ClusterConfig,
    /// Every replica including the observer, sorted by id.
    pub replicas: Vec<ReplicaView>,
}

/// One replica in a [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The replica's id.
    pub id: NodeId,
    /// The replica's base URL, as its peers reach it.
    pub url: String,
    /// The replica's role.
    pub role: Role,
    /// Whether the replica answered its last `/status` request.
    pub up: bool,
    /// Highest log position the replica applied (from its own `/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_seq: Option<Seq>,
    /// Keys in the replica's local store (from its own `/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// The replica's term (leader-follower mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<Term>,
    /// The replica's commit index (leader-follower mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_seq: Option<Seq>,
    /// Whether the replica is still catching up after its start (it does
    /// not count towards R then; leader-follower mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catching_up: bool,
    /// Writes the replica undid since it started (leader-follower mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<u64>,
    /// How far the replica is behind: the leader's lag figures for it
    /// (leader-follower), the hints every node holds for it (leaderless).
    #[serde(flatten)]
    pub progress: crate::cluster::Progress,
    /// The replica's own W/R/delay configuration, when it differs from the
    /// observer's (for instance while a change propagates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ClusterConfig>,
    /// Why the replica is shown down, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The faults injected into the replica and in force (its `/status`
    /// `faults.active`; empty when none, or when it did not answer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::admin::ActiveFault>,
}

/// One write and its way through the replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteTrace {
    /// Identifies the write among the coordinator's writes (the log position
    /// in leader-follower mode).
    pub id: u64,
    /// The write's log position, in leader-follower mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    /// The key written.
    pub key: String,
    /// The version the write was given.
    pub version: Version,
    /// The node that decided the write and sent it to the others.
    pub coordinator: NodeId,
    /// The write quorum in force for this write.
    pub w: u32,
    /// When the coordinator accepted the write.
    pub started_at_ms: WallMs,
    /// When the coordinator answered the client (W acknowledgements reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at_ms: Option<WallMs>,
    /// One entry per other replica, sorted by id.
    pub replicas: Vec<ReplicaTrace>,
    /// How the write ended, when it ended without its quorum (absent while
    /// it is in flight and once it was answered 201).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TraceOutcome>,
    /// When this copy of the trace was built (the coordinator's clock).
    pub at_ms: WallMs,
}

/// How a traced write or read ended without meeting its quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TraceOutcome {
    /// Answered 503: `acked` of the `required` replicas in time.
    Failed {
        /// Replicas that acknowledged (or answered) in time.
        acked: u32,
        /// Replicas the quorum needed.
        required: u32,
    },
    /// Leader-follower: the leader stopped leading before the quorum was met
    /// (answered 503; the write may survive or be rolled back).
    Abandoned,
    /// Leader-follower read: R replicas answered, but none was the leader of
    /// the newest term among them (answered 503; a read needs the leader).
    NoLeader,
}

/// One coordinated read (`GET /get` with R > 1), as its coordinator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadTrace {
    /// Identifies the read among the coordinator's reads.
    pub id: u64,
    /// The key read.
    pub key: String,
    /// The node that coordinated the read.
    pub coordinator: NodeId,
    /// The read quorum in force for this read.
    pub r: u32,
    /// When the coordinator started the read.
    pub started_at_ms: WallMs,
    /// When it had its answer (or gave up).
    pub finished_at_ms: WallMs,
    /// Every replica asked, the coordinator's own copy first if it counts,
    /// in the order asked.
    pub replicas: Vec<ReadReplicaTrace>,
    /// The version returned to the client (`None`: no replica had the key,
    /// or the read failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<Version>,
    /// Replicas sent the winning copy because they answered an older one
    /// (leaderless read repair).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<NodeId>,
    /// Set when the read failed (503: fewer than R current replicas answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TraceOutcome>,
    /// When the trace was built (the coordinator's clock).
    pub at_ms: WallMs,
}

/// What one replica answered to a coordinated read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReplicaTrace {
    /// The replica.
    pub id: NodeId,
    /// When the coordinator asked it.
    pub asked_at_ms: WallMs,
    /// When its answer came back (absent: none before the read ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<WallMs>,
    /// What it answered.
    pub answer: ReadAnswer,
}

/// One replica's answer to a coordinated read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReadAnswer {
    /// Its copy has this version.
    Version {
        /// The version.
        version: Version,
    },
    /// It has no copy of the key.
    Missing,
    /// It is catching up after a restart: not counted towards R.
    NotCurrent,
    /// It did not answer (unreachable, timed out, refused).
    Failed,
    /// The read had its R answers before this one came back.
    NotNeeded,
}

impl ReadTrace {
    /// The replicas whose answer counted towards R (a version or missing).
    pub fn counted(&self) -> impl Iterator<Item = &ReadReplicaTrace> {
        self.replicas
            .iter()
            .filter(|r| matches!(r.answer, ReadAnswer::Version { .. } | ReadAnswer::Missing))
    }
}

/// What happened to one write at one replica, timed by the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaTrace {
    /// The replica.
    pub id: NodeId,
    /// When the coordinator sent the write to it (first attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<WallMs>,
    /// When its acknowledgement reached the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_ms: Option<WallMs>,
    /// When the coordinator gave up sending it (leaderless: the replica did
    /// not answer; a hint is kept for it instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at_ms: Option<WallMs>,
}

impl WriteTrace {
    /// Whether every replica acknowledged the write.
    pub fn fully_acked(&self) -> bool {
        self.replicas.iter().all(|r| r.acked_at_ms.is_some())
    }

    /// Whether every replica acknowledged the write or its send failed:
    /// nothing more will happen to it.
    pub fn settled(&self) -> bool {
        self.replicas
            .iter()
            .all(|r| r.acked_at_ms.is_some() || r.failed_at_ms.is_some())
    }
}

/// The path of the live feed.
pub const EVENTS_PATH: &str = "/events";

/// The query of a stream with only the serving node's own traces and node
/// events (what peers relay, and what the load tester follows).
pub const OWN_TRACES_QUERY: &str = "only=own-traces";

/// Most bytes an [`SseReader`] holds for one unfinished message; a longer one
/// is dropped (no event this store sends comes near it).
pub const MAX_SSE_MESSAGE_BYTES: usize = 1 << 20;

/// Reads [`ClusterEvent`]s out of an `/events` byte stream that arrives in
/// chunks cut anywhere: a message ends at a blank line, its `data:` lines
/// carry the JSON. Lines that are not `data:` (comments, `retry:`) and data
/// that is not a [`ClusterEvent`] are skipped; an unfinished message longer
/// than [`MAX_SSE_MESSAGE_BYTES`] is dropped, so memory stays bounded
/// whatever the peer sends.
#[derive(Debug, Default)]
pub struct SseReader {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already searched for a blank line.
    searched: usize,
}

impl SseReader {
    /// Adds `chunk` and returns the events of every message it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<ClusterEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let from = self.searched.saturating_sub(1);
            let Some(end) = self.buf[from..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| i + from)
            else {
                break;
            };
            let message: Vec<u8> = self.buf.drain(..end + 2).collect();
            self.searched = 0;
            for line in String::from_utf8_lossy(&message).lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(event) = serde_json::from_str(data.trim_start()) {
                        events.push(event);
                    }
                }
            }
        }
        self.searched = self.buf.len();
        if self.buf.len() > MAX_SSE_MESSAGE_BYTES {
            self.buf.clear();
            self.searched = 0;
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::DelayProfile;

    #[test]
    fn events_are_tagged_by_type() {
        let t = WriteTrace {
            id: 7,
            seq: Some(7),
            key: "k".into(),
            version: 3,
            coordinator: 1,
            w: 1,
            started_at_ms: 100,
            committed_at_ms: None,
            replicas: vec![ReplicaTrace {
                id: 2,
                sent_at_ms: Some(101),
                acked_at_ms: None,
                failed_at_ms: None,
            }],
            outcome: None,
            at_ms: 101,
        };
        let json = serde_json::to_string(&ClusterEvent::Trace(t.clone())).unwrap();
        assert!(
            json.starts_with(r#"{"type":"trace","id":7,"seq":7,"key":"k""#),
            "{json}"
        );
        assert!(!json.contains("acked_at_ms"));
        let back: ClusterEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ClusterEvent::Trace(t));

        let view = ClusterView {
            at_ms: 5,
            observer: 1,
            mode: Mode::LeaderFollower,
            leader: Some(1),
            config: ClusterConfig::new(5, 3, 3, DelayProfile::OFF).unwrap(),
            replicas: vec![],
        };
        let json = serde_json::to_string(&ClusterEvent::Status(view)).unwrap();
        assert!(json.starts_with(r#"{"type":"status","at_ms":5"#), "{json}");

        let e = ClusterEvent::Node(NodeEvent {
            node: 2,
            at_ms: 9,
            term: 4,
            kind: NodeEventKind::Voted { candidate: 3 },
        });
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"node","node":2,"at_ms":9,"term":4,"kind":"voted","candidate":3}"#
        );
        assert_eq!(serde_json::from_str::<ClusterEvent>(&json).unwrap(), e);
    }

    #[test]
    fn sse_messages_are_cut_at_blank_lines_whatever_the_chunks() {
        let trace = WriteTrace {
            id: 3,
            seq: Some(3),
            key: "k".into(),
            version: 1,
            coordinator: 2,
            w: 1,
            started_at_ms: 1,
            committed_at_ms: None,
            replicas: vec![],
            outcome: None,
            at_ms: 1,
        };
        let t = ClusterEvent::Trace(trace);
        let json = serde_json::to_string(&t).unwrap();
        let vote = ClusterEvent::Node(NodeEvent {
            node: 2,
            at_ms: 2,
            term: 3,
            kind: NodeEventKind::Voted { candidate: 1 },
        });
        let vote_json = serde_json::to_string(&vote).unwrap();
        let stream =
            format!("retry: 1000\n: hello\n\ndata: {json}\n\ndata: {vote_json}\n\ndata: {json}");
        let (head, tail) = stream.as_bytes().split_at(stream.len() - 10);
        let mut reader = SseReader::default();
        assert_eq!(reader.push(head), vec![t.clone(), vote.clone()]);
        assert!(
            reader.push(tail).is_empty(),
            "the last message is not complete yet"
        );
        assert_eq!(reader.push(b"\n\n"), vec![t.clone()]);
        assert!(reader.buf.is_empty());
        // One byte at a time, the blank line split across chunks.
        let mut reader = SseReader::default();
        let whole = format!("data: {json}\n\ndata: {vote_json}\n\n");
        let got: Vec<ClusterEvent> = whole.bytes().flat_map(|b| reader.push(&[b])).collect();
        assert_eq!(got, vec![t, vote]);
    }

    #[test]
    fn an_endless_sse_message_is_dropped_not_buffered() {
        let mut reader = SseReader::default();
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_SSE_MESSAGE_BYTES / junk.len() + 2) {
            assert!(reader.push(&junk).is_empty());
            assert!(reader.buf.len() <= MAX_SSE_MESSAGE_BYTES);
        }
        let vote = ClusterEvent::Node(NodeEvent {
            node: 1,
            at_ms: 1,
            term: 1,
            kind: NodeEventKind::PreVote,
        });
        let json = serde_json::to_string(&vote).unwrap();
        // After a drop the reader finds the next whole message again.
        let got = reader.push(format!("\n\ndata: {json}\n\n").as_bytes());
        assert_eq!(got, vec![vote]);
    }

    #[test]
    fn a_trace_without_an_outcome_still_parses_and_a_503_says_how_many_acked() {
        // JSON from a node that predates `outcome`.
        let old = r#"{"type":"trace","id":1,"key":"k","version":1,"coordinator":1,"w":3,
            "started_at_ms":5,"replicas":[],"at_ms":5}"#;
        let ClusterEvent::Trace(t) = serde_json::from_str(old).unwrap() else {
            panic!()
        };
        assert_eq!(t.outcome, None);
        let failed = WriteTrace {
            outcome: Some(TraceOutcome::Failed {
                acked: 1,
                required: 3,
            }),
            ..t
        };
        let json = serde_json::to_string(&failed).unwrap();
        assert!(
            json.contains(r#""outcome":{"kind":"failed","acked":1,"required":3}"#),
            "{json}"
        );
    }

    #[test]
    fn a_read_trace_names_each_answer() {
        let r = ClusterEvent::Read(ReadTrace {
            id: 1,
            key: "k".into(),
            coordinator: 2,
            r: 3,
            started_at_ms: 10,
            finished_at_ms: 14,
            replicas: vec![
                ReadReplicaTrace {
                    id: 2,
                    asked_at_ms: 10,
                    answered_at_ms: Some(10),
                    answer: ReadAnswer::Version { version: 7 },
                },
                ReadReplicaTrace {
                    id: 3,
                    asked_at_ms: 10,
                    answered_at_ms: Some(13),
                    answer: ReadAnswer::Missing,
                },
                ReadReplicaTrace {
                    id: 1,
                    asked_at_ms: 10,
                    answered_at_ms: None,
                    answer: ReadAnswer::Failed,
                },
            ],
            winner: Some(7),
            repaired: vec![3],
            outcome: None,
            at_ms: 14,
        });
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.starts_with(r#"{"type":"read","id":1,"key":"k""#),
            "{json}"
        );
        assert!(json.contains(r#""answer":{"kind":"missing"}"#), "{json}");
        let back: ClusterEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let ClusterEvent::Read(t) = back else {
            panic!()
        };
        assert_eq!(t.counted().map(|a| a.id).collect::<Vec<_>>(), vec![2, 3]);
    }
}
