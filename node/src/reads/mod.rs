//! Coordinated reads over R replicas. Shared by both replication modes.
//!
//! The coordinator reads its own copy, asks R-1 peers for theirs (the asks
//! of concurrent reads to one peer together in one batch over a reads
//! stream, or with `--read-batches-in-flight 0` each as a `GET
//! /internal/read`, see [`batch`]), and returns the highest version. Peers
//! are tried in a preferred order (the leader first in leader-follower mode, then peers that
//! answered lately, in ring order from the coordinator on, so that its reads
//! meet in the same peers' batches and the load spreads); a peer that
//! fails or times out is replaced by the next candidate. Only *current*
//! copies count: a leader-follower replica that restarted and has not caught
//! up yet answers `"current": false` (it may lack writes it once
//! acknowledged), and the coordinator asks the next candidate instead — the
//! coordinator's own copy counts under the same rule. At most R asks and
//! counted copies are outstanding together, so a read sends R-1 asks when
//! nothing fails, and each peer is asked at most once. If fewer than R current
//! replicas answer once every candidate answered or failed, the read fails
//! with [`ReadError::QuorumNotMet`] (503 `{"error","acked","required"}` at the
//! HTTP boundary).
//!
//! In leaderless mode reads are *digest reads*, as in Cassandra: the peers
//! are asked for their version only (`digest=true`), and a value travels
//! only when a peer's version is newer than every copy the coordinator holds
//! (its own, usually) — then one replica that answered that version is asked
//! for its full copy (a *fetch*). The fetch's answer replaces that replica's
//! first one: if it moved on meanwhile, its newer copy is the one returned;
//! if it fails, it no longer counts and the next candidate takes its place,
//! so the read still ends with R counted copies and the value of the newest,
//! or with the quorum not met. Leader-follower reads ask for full copies:
//! what they return is the leader's answer, which carries its value anyway.
//!
//! In leaderless mode every counted replica that answered with an older
//! version (or none) is sent the newest record (`POST /internal/repair`) in
//! the background; a replica keeps a repaired record only if it is newer than
//! its own copy, so repairs race safely with replication. Leader-follower mode
//! does not repair: its log brings every replica the same entries, and a
//! repair could spread a write the next leader rolls back.
//!
//! Every coordinated read is reported to the dashboard's feed as a
//! [`ReadTrace`] once it ended ([`crate::events::EventHub::trace_read`]): who
//! was asked when, what each answered, the version returned and the repairs
//! sent.
//!
//! # Structure
//! - [`core`]: the read as a state machine ([`ReadCore`]) — the candidate
//!   order, the asks in flight, the replies, replacements, the quorum, the
//!   newest copy and its fetch, the repairs and the trace. No I/O, no clock:
//!   tested alone, with a seeded random test of its promises.
//! - [`batch`]: how an ask travels: alone, or in one queue per peer whose
//!   waiting asks leave as one batch over a reads stream.
//! - this module: the runtime, which sends the asks the core returns, feeds
//!   the answers back, sends the repairs and publishes the trace.
//!
//! # Implementation caveats
//! - Each ask is bounded by the peer timeout of the transport (`--peer-timeout-ms`);
//!   the read has no deadline of its own, so a read that has to replace
//!   peers one after another can take several peer timeouts.
//! - Repairs are fire-and-forget: a lost repair is left to anti-entropy.
//! - A fetch appears in the trace only through the fetched replica's line,
//!   which shows the fetch's answer (the one that counted).
//! - A digest answer is still read from the store with its value (the
//!   store has no version-only lookup); only the wire is spared.

pub mod batch;
pub mod core;

pub use self::core::{LocalAnswer, Quorum, ReadError, ReadPolicy};

use self::core::{candidate_order, AskId, Output, ReadCore, ReadStart, Reply};
use crate::cluster::Cluster;
use crate::events::wall_ms;
use crate::store::Store;
use crate::transport::TransportError;
use futures_util::stream::{FuturesUnordered, StreamExt};
use kv_shared::events::{ReadTrace, TraceOutcome};
use kv_shared::replication::{
    InternalReadQuery, InternalReadResponse, Record, RepairRequest, RepairResponse, VersionedValue,
    REPAIR_PATH,
};
use kv_shared::{Mode, NodeId};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The outcome of a coordinated read that met its quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// What the read decided: the newest copy, the counted replicas, the
    /// highest term and a leader's answer among them (its repairs are sent).
    pub quorum: Quorum,
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

/// A transport answer as a reply to the core.
fn reply_of(
    answer: Result<InternalReadResponse, TransportError>,
    elapsed: Duration,
    timeout: Duration,
) -> Reply {
    match answer {
        Ok(resp) if resp.current => Reply::Copy {
            found: resp.found,
            term: resp.term,
            leader_read: resp.leader_read,
        },
        Ok(_) => Reply::NotCurrent,
        Err(TransportError::Unreachable(_)) if elapsed >= timeout => Reply::TimedOut,
        Err(_) => Reply::Failed,
    }
}

/// Reads `key` over `r` current replicas (this node, if its copy counts,
/// plus peers) and, if the policy says so, repairs the stale ones.
///
/// # Errors
/// [`ReadError::QuorumNotMet`] when fewer than `r` current replicas answer
/// (its trace is published here).
pub async fn coordinate_read(
    cluster: &Cluster,
    store: &Store,
    key: &str,
    r: u32,
    preferred: Option<NodeId>,
    policy: ReadPolicy,
    local_answer: LocalAnswer,
) -> Result<ReadOutcome, ReadError> {
    let me = cluster.node_id();
    let peers = cluster.peers();
    let view: Vec<(NodeId, bool)> = peers
        .ids()
        .into_iter()
        .map(|id| (id, peers.is_up(id)))
        .collect();
    let (mut core, out) = ReadCore::start(ReadStart {
        me,
        key: key.to_owned(),
        r,
        candidates: candidate_order(me, &view, preferred),
        policy,
        local: store.get(key).map(|e| VersionedValue {
            value: e.value,
            version: e.version,
        }),
        local_answer,
        digest: cluster.mode() == Mode::Leaderless,
        now_ms: wall_ms(),
    });
    let mut asks = Asks::new(cluster, key);
    asks.send(out);
    // Bounded: every peer is asked at most once, and each answer is joined once.
    while !core.is_done() {
        let Some((ask, reply)) = asks.next().await else {
            break;
        };
        let out = core.step(ask, reply, wall_ms());
        asks.send(out);
    }
    // Dropping the asks withdraws those the read no longer needs.
    drop(asks);
    let events = cluster.events();
    let trace_id = events.is_watched().then(|| events.next_read_id());
    let (decision, trace) = core.finish(wall_ms(), trace_id);
    match decision {
        Ok(q) => {
            repair(cluster, store, key, &q);
            Ok(ReadOutcome { quorum: q, trace })
        }
        Err(e) => {
            publish_read(cluster, trace, Err(e.trace_outcome()));
            Err(e)
        }
    }
}

/// One ask waiting for its answer.
type AskFuture<'a> = Pin<Box<dyn Future<Output = (AskId, Reply)> + Send + 'a>>;

/// The asks of one read in flight: futures polled by the read's own task,
/// each waiting for its own request or for its peer's batch ([`batch`]),
/// which other tasks send. Dropping them withdraws the asks not answered
/// yet.
struct Asks<'a> {
    cluster: &'a Cluster,
    key: String,
    pending: FuturesUnordered<AskFuture<'a>>,
}

impl<'a> Asks<'a> {
    fn new(cluster: &'a Cluster, key: &str) -> Self {
        Self {
            cluster,
            key: key.to_owned(),
            pending: FuturesUnordered::new(),
        }
    }

    /// Sends what the core asks.
    fn send(&mut self, out: Vec<Output>) {
        for Output::Ask { ask, to, digest } in out {
            let query = InternalReadQuery {
                key: self.key.clone(),
                digest,
            };
            let cluster = self.cluster;
            self.pending.push(Box::pin(async move {
                let sent = Instant::now();
                let answer = cluster.read_batcher().ask(to, query).await;
                (
                    ask,
                    reply_of(answer, sent.elapsed(), cluster.peer_timeout()),
                )
            }));
        }
    }

    /// The next answer; `None` when no ask is in flight.
    async fn next(&mut self) -> Option<(AskId, Reply)> {
        self.pending.next().await
    }
}

/// Sends the newest copy to every replica the core found stale (the
/// coordinator's own store directly, peers in the background).
fn repair(cluster: &Cluster, store: &Store, key: &str, q: &Quorum) {
    let Some(best) = &q.newest else { return };
    let me = cluster.node_id();
    for &id in &q.repair {
        if id == me {
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
        let (t, timeout) = (cluster.transport().clone(), cluster.peer_timeout());
        tokio::spawn(async move {
            let r: Result<RepairResponse, _> = t.post(id, REPAIR_PATH, &req, timeout).await;
            if let Err(e) = r {
                tracing::debug!(peer = id, error = %e, "read repair failed");
            }
        });
    }
}
