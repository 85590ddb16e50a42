//! Coordinated reads over R replicas. Shared by both replication modes.
//!
//! The coordinator reads its own copy, asks R-1 peers for theirs (`GET
//! /internal/read`), and returns the highest version. Peers are tried in a
//! preferred order (the leader first in leader-follower mode, then peers that
//! answered lately, rotated per key so that the load spreads); a peer that
//! fails is replaced by the next candidate. Only *current* copies count: a
//! leader-follower replica that restarted and has not caught up yet answers
//! `"current": false` (it may lack writes it once acknowledged), and the
//! coordinator asks the next candidate instead — the coordinator's own copy
//! counts under the same rule. If fewer than R current replicas answer, the
//! read fails with 503 `{"error","acked","required"}`.
//!
//! In leaderless mode every replica that answered with an older version (or
//! none) is sent the newest record (`POST /internal/repair`) in the
//! background; a replica keeps a repaired record only if it is newer than its
//! own copy, so repairs race safely with replication. Leader-follower mode
//! does not repair: its log brings every replica the same entries, and a
//! repair could spread a write the next leader rolls back.
//!
//! Every coordinated read is reported to the dashboard's feed as a
//! [`ReadTrace`] once it ended ([`crate::events::EventHub::trace_read`]): who
//! was asked when, what each answered, the version returned and the repairs
//! sent. The trace is kept in a `ReadLog` while the read runs.

use crate::cluster::Cluster;
use crate::error::AppError;
use crate::events::wall_ms;
use crate::store::Store;
use axum::http::StatusCode;
use kv_shared::events::{ReadAnswer, ReadReplicaTrace, ReadTrace, TraceOutcome};
use kv_shared::replication::LeaderRead;
use kv_shared::replication::{
    InternalReadResponse, Record, RepairRequest, RepairResponse, VersionedValue,
};
use kv_shared::{NodeId, Term};
use tokio::task::JoinSet;

/// How a coordinated read treats the coordinator's copy and stale replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPolicy {
    /// Whether the coordinator's own copy counts towards R (false while it
    /// catches up after a restart).
    pub count_self: bool,
    /// Whether replicas that answered an older copy are repaired.
    pub repair: bool,
}

/// The outcome of a coordinated read that met its quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The newest copy among the replies, if any replica has the key.
    pub newest: Option<VersionedValue>,
    /// The replicas that answered, the coordinator included.
    pub replied: Vec<NodeId>,
    /// Leader-follower: the highest term any counted replica is in.
    pub max_term: Option<Term>,
    /// Leader-follower: the answer of a leader among the counted replicas.
    pub leader_read: Option<LeaderRead>,
    /// The read's trace for the dashboard, not published yet: the caller
    /// decides which copy the client gets ([`publish_read`]).
    pub trace: Option<ReadTrace>,
}

/// Publishes a read's trace with the copy the client got (`Ok`) or the
/// reason it got a 503 instead.
pub fn publish_read(
    cluster: &Cluster,
    trace: Option<ReadTrace>,
    answer: Result<Option<u64>, TraceOutcome>,
) {
    if let Some(mut t) = trace {
        match answer {
            Ok(version) => t.winner = version,
            Err(o) => {
                t.winner = None;
                t.outcome = Some(o);
            }
        }
        cluster.events().trace_read(t);
    }
}

/// What the coordinator adds to its own copy (leader-follower: its term
/// and, when it leads, its leader answer); nothing in leaderless mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAnswer {
    /// The coordinator's term.
    pub term: Option<Term>,
    /// Its leader answer, when it leads a started term.
    pub leader_read: Option<LeaderRead>,
}

/// The trace of one coordinated read while it runs.
struct ReadLog {
    started_at_ms: u64,
    replicas: Vec<ReadReplicaTrace>,
}

impl ReadLog {
    fn new() -> Self {
        Self {
            started_at_ms: wall_ms(),
            replicas: Vec::new(),
        }
    }

    /// Replica `id` was asked now (its answer not known yet).
    fn asked(&mut self, id: NodeId) {
        self.replicas.push(ReadReplicaTrace {
            id,
            asked_at_ms: wall_ms(),
            answered_at_ms: None,
            answer: ReadAnswer::NotNeeded,
        });
    }

    /// Replica `id` answered now (or failed to).
    fn answered(&mut self, id: NodeId, answer: ReadAnswer) {
        let now = wall_ms();
        if let Some(r) = self.replicas.iter_mut().rev().find(|r| r.id == id) {
            r.answered_at_ms = (answer != ReadAnswer::Failed).then_some(now);
            r.answer = answer;
        }
    }

    /// The finished trace (not published).
    fn finish(
        self,
        cluster: &Cluster,
        key: &str,
        r: u32,
        winner: Option<u64>,
        repaired: Vec<NodeId>,
        outcome: Option<TraceOutcome>,
    ) -> Option<ReadTrace> {
        let events = cluster.events();
        if !events.is_watched() {
            return None;
        }
        let now = wall_ms();
        Some(ReadTrace {
            id: events.next_read_id(),
            key: key.to_owned(),
            coordinator: cluster.node_id(),
            r,
            started_at_ms: self.started_at_ms,
            finished_at_ms: now,
            replicas: self.replicas,
            winner,
            repaired,
            outcome,
            at_ms: now,
        })
    }
}

/// A copy as a read answer.
fn answer_of(v: &Option<VersionedValue>) -> ReadAnswer {
    v.as_ref()
        .map_or(ReadAnswer::Missing, |v| ReadAnswer::Version {
            version: v.version,
        })
}

/// Percent-encodes `s` for a query string (everything but unreserved characters).
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The order in which peers are asked: `preferred` first, then peers that
/// are up (rotated by a hash of the key), then the others.
fn candidates(cluster: &Cluster, key: &str, preferred: Option<NodeId>) -> Vec<NodeId> {
    let peers = cluster.peers();
    let mut ids = peers.ids();
    if !ids.is_empty() {
        let h = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let n = ids.len();
        ids.rotate_left(h as usize % n);
    }
    let (mut up, down): (Vec<_>, Vec<_>) = ids.into_iter().partition(|&id| peers.is_up(id));
    up.extend(down);
    if let Some(p) = preferred.filter(|&p| p != cluster.node_id()) {
        if let Some(i) = up.iter().position(|&id| id == p) {
            up.remove(i);
            up.insert(0, p);
        }
    }
    up
}

/// Reads `key` over `r` current replicas (this node, if its copy counts,
/// plus peers) and, if the policy says so, repairs the stale ones.
///
/// # Errors
/// 503 when fewer than `r` current replicas answer.
pub async fn coordinate_read(
    cluster: &Cluster,
    store: &Store,
    key: &str,
    r: u32,
    preferred: Option<NodeId>,
    policy: ReadPolicy,
    local_answer: LocalAnswer,
) -> Result<ReadOutcome, AppError> {
    let me = cluster.node_id();
    let local = store.get(key).map(|e| VersionedValue {
        value: e.value,
        version: e.version,
    });
    let mut replies: Vec<(NodeId, Option<VersionedValue>)> = Vec::new();
    let mut not_current: Vec<NodeId> = Vec::new();
    let mut max_term = local_answer.term;
    let mut leader_read = None;
    let mut log = ReadLog::new();
    log.asked(me);
    if policy.count_self {
        log.answered(me, answer_of(&local));
        replies.push((me, local));
        leader_read = local_answer.leader_read;
    } else {
        log.answered(me, ReadAnswer::NotCurrent);
        not_current.push(me);
    }
    let mut todo = candidates(cluster, key, preferred).into_iter();
    let mut asked = JoinSet::new();
    let path = format!(
        "{}?key={}",
        kv_shared::replication::INTERNAL_READ_PATH,
        encode_query_value(key)
    );
    let ask = |asked: &mut JoinSet<_>, log: &mut ReadLog, id: NodeId| {
        log.asked(id);
        let (t, path, timeout) = (
            cluster.transport().clone(),
            path.clone(),
            cluster.peer_timeout(),
        );
        asked.spawn(async move { (id, t.get::<InternalReadResponse>(id, &path, timeout).await) });
    };
    let first = (r as usize).saturating_sub(replies.len());
    for id in todo.by_ref().take(first) {
        ask(&mut asked, &mut log, id);
    }
    while replies.len() < r as usize {
        match asked.join_next().await {
            Some(Ok((id, Ok(resp)))) if resp.current => {
                log.answered(id, answer_of(&resp.found));
                max_term = max_term.max(resp.term);
                if resp.leader_read.is_some() {
                    leader_read = resp.leader_read;
                }
                replies.push((id, resp.found));
            }
            Some(Ok((id, Ok(_)))) => {
                log.answered(id, ReadAnswer::NotCurrent);
                not_current.push(id);
                if let Some(next) = todo.next() {
                    ask(&mut asked, &mut log, next);
                }
            }
            Some(Ok((id, Err(_)))) => {
                log.answered(id, ReadAnswer::Failed);
                if let Some(next) = todo.next() {
                    ask(&mut asked, &mut log, next);
                }
            }
            Some(Err(_)) => {
                if let Some(next) = todo.next() {
                    ask(&mut asked, &mut log, next);
                }
            }
            None => break,
        }
    }
    drop(asked);
    if replies.len() < r as usize {
        not_current.sort_unstable();
        let catching_up = if not_current.is_empty() {
            String::new()
        } else {
            format!(
                "; catching up after a restart, not counted: {}",
                not_current
                    .iter()
                    .map(|id| format!("node {id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut e = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "read quorum not met: {} of {r} replicas answered{catching_up}",
                replies.len()
            ),
        );
        e.body.acked = Some(replies.len() as u32);
        e.body.required = Some(r);
        let outcome = TraceOutcome::Failed {
            acked: replies.len() as u32,
            required: r,
        };
        let trace = log.finish(cluster, key, r, None, Vec::new(), Some(outcome));
        publish_read(cluster, trace, Err(outcome));
        return Err(e);
    }
    let newest = replies
        .iter()
        .filter_map(|(_, v)| v.clone())
        .max_by_key(|v| v.version);
    let repaired = match (&newest, policy.repair) {
        (Some(best), true) => repair(cluster, store, key, best, &replies),
        _ => Vec::new(),
    };
    let trace = log.finish(
        cluster,
        key,
        r,
        newest.as_ref().map(|v| v.version),
        repaired,
        None,
    );
    Ok(ReadOutcome {
        newest,
        replied: replies.iter().map(|(id, _)| *id).collect(),
        max_term,
        leader_read,
        trace,
    })
}

/// Sends `best` to every replica that answered with an older copy; returns
/// those replicas.
fn repair(
    cluster: &Cluster,
    store: &Store,
    key: &str,
    best: &VersionedValue,
    replies: &[(NodeId, Option<VersionedValue>)],
) -> Vec<NodeId> {
    let me = cluster.node_id();
    let mut repaired = Vec::new();
    for (id, v) in replies {
        if v.as_ref().is_some_and(|v| v.version >= best.version) {
            continue;
        }
        repaired.push(*id);
        if *id == me {
            store.apply(key, best.value.clone(), best.version);
            continue;
        }
        let req = RepairRequest {
            from: me,
            records: vec![Record {
                key: key.to_owned(),
                value: best.value.clone(),
                version: best.version,
            }],
        };
        let (t, id, timeout) = (cluster.transport().clone(), *id, cluster.peer_timeout());
        tokio::spawn(async move {
            let r: Result<RepairResponse, _> = t
                .post(id, kv_shared::replication::REPAIR_PATH, &req, timeout)
                .await;
            if let Err(e) = r {
                tracing::debug!(peer = id, error = %e, "read repair failed");
            }
        });
    }
    repaired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(encode_query_value("Plain-_.~9"), "Plain-_.~9");
    }
}
