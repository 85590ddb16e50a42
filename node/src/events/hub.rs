//! The feed's hub: what the runtimes report into and every stream reads from.

use super::*;
use kv_shared::cluster::Seq;
use kv_shared::events::{
    ClusterEvent, ClusterView, NodeEvent, NodeEventKind, ReadTrace, ReplicaTrace, TraceOutcome,
    WallMs, WriteTrace,
};
use kv_shared::{NodeId, Term, Version};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch, Semaphore};

/// The writes being traced, by id.
#[derive(Debug, Default)]
pub(super) struct TraceBook {
    pub(super) traces: BTreeMap<u64, WriteTrace>,
}

impl TraceBook {
    /// Forgets traces that are complete or too old.
    pub(super) fn prune(&mut self, now: WallMs) {
        self.traces.retain(|_, t| {
            let done = t.committed_at_ms.is_some() && t.settled();
            !done && t.started_at_ms + TRACE_TTL_MS > now
        });
    }

    /// Applies `set` to replica `to` of every trace in `ids` and returns the
    /// traces it changed (the newest [`MAX_PUBLISH_PER_CALL`]).
    pub(super) fn update(
        &mut self,
        to: NodeId,
        ids: RangeInclusive<u64>,
        now: WallMs,
        set: impl Fn(&mut ReplicaTrace, WallMs) -> bool,
    ) -> Vec<WriteTrace> {
        let mut changed = Vec::new();
        for t in self.traces.range_mut(ids).map(|(_, t)| t) {
            if let Some(r) = t.replicas.iter_mut().find(|r| r.id == to) {
                if set(r, now) {
                    t.at_ms = now;
                    changed.push(t.clone());
                }
            }
        }
        let skip = changed.len().saturating_sub(MAX_PUBLISH_PER_CALL);
        changed.drain(..skip);
        self.prune(now);
        changed
    }
}

/// An event as the hub broadcasts it: serialised once for every subscriber.
#[derive(Debug)]
pub(super) struct Published {
    pub(super) json: Arc<str>,
    /// A trace of a write or read this node coordinated, or an event of this
    /// node's replication (not a snapshot, not relayed).
    pub(super) own_trace: bool,
    /// For a write trace: when the write started (streams opened later skip it).
    pub(super) write_started_at_ms: Option<WallMs>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// Every event, to every subscriber.
    pub(super) tx: broadcast::Sender<Arc<Published>>,
    /// Open full streams (snapshots + traces): the aggregator runs while > 0.
    pub(super) watchers: AtomicUsize,
    /// The last snapshot and when it was built, sent first to a new
    /// subscriber while fresh.
    pub(super) latest_status: Mutex<Option<(WallMs, Arc<str>)>>,
    /// Read traces published in the current second: (second, count).
    pub(super) reads_this_second: Mutex<(u64, u32)>,
    /// The id of the next coordinated read.
    pub(super) next_read: AtomicU64,
    /// The final copies of the last writes that ended: (when, JSON).
    pub(super) recent: Mutex<std::collections::VecDeque<(WallMs, Arc<str>)>>,
    pub(super) aggregator_running: AtomicBool,
    /// Locked for microseconds, also while a trace is published (so that
    /// copies of one trace leave in order); never held across `.await`.
    pub(super) book: Mutex<TraceBook>,
    /// Becomes true when the server shuts down; ends every stream.
    pub(super) closed: watch::Sender<bool>,
    /// One permit per stream that may be open (`--max-event-streams`).
    pub(super) streams: Arc<Semaphore>,
    /// Streams refused because every permit was taken.
    pub(super) refused_streams: AtomicU64,
}

/// The feed's hub: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct EventHub {
    pub(super) inner: Arc<Inner>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_STREAMS)
    }
}

impl EventHub {
    /// A hub with no subscriber that serves at most `max_streams` streams
    /// at once (pages and peers' relays alike).
    pub fn new(max_streams: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                tx: broadcast::channel(CHANNEL_CAPACITY).0,
                watchers: AtomicUsize::new(0),
                latest_status: Mutex::new(None),
                reads_this_second: Mutex::new((0, 0)),
                next_read: AtomicU64::new(1),
                recent: Mutex::new(std::collections::VecDeque::new()),
                aggregator_running: AtomicBool::new(false),
                book: Mutex::new(TraceBook::default()),
                closed: watch::channel(false).0,
                streams: Arc::new(Semaphore::new(max_streams)),
                refused_streams: AtomicU64::new(0),
            }),
        }
    }

    /// Whether anyone watches, a page or a peer's relay (the `trace_*` calls
    /// do nothing otherwise).
    pub fn is_watched(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// Streams refused so far because `--max-event-streams` were open.
    pub fn refused_streams(&self) -> u64 {
        self.inner.refused_streams.load(Ordering::Relaxed)
    }

    /// Open full streams (pages).
    pub(super) fn watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::Acquire)
    }

    /// Ends every open stream and refuses new ones (server shutdown).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Broadcasts `event`; `own_trace` marks a trace this node coordinated.
    pub(super) fn publish(&self, event: &ClusterEvent, own_trace: bool) {
        match serde_json::to_string(event) {
            Ok(json) => {
                let json: Arc<str> = json.into();
                if let ClusterEvent::Status(v) = event {
                    *self.lock_status() = Some((v.at_ms, json.clone()));
                }
                let write_started_at_ms = match event {
                    ClusterEvent::Trace(t) => Some(t.started_at_ms),
                    _ => None,
                };
                if let ClusterEvent::Trace(t) = event {
                    let ended = t.outcome.is_some() || (t.committed_at_ms.is_some() && t.settled());
                    if ended {
                        let mut recent = self.lock_recent();
                        recent.push_back((t.at_ms, json.clone()));
                        while recent.len() > MAX_RECENT {
                            recent.pop_front();
                        }
                    }
                }
                let _ = self.inner.tx.send(Arc::new(Published {
                    json,
                    own_trace,
                    write_started_at_ms,
                }));
            }
            Err(e) => tracing::warn!("cannot serialise an event: {e}"),
        }
    }

    pub(super) fn lock_status(&self) -> std::sync::MutexGuard<'_, Option<(WallMs, Arc<str>)>> {
        self.inner
            .latest_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_recent(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(WallMs, Arc<str>)>> {
        self.inner.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ended traces a new page gets, oldest first.
    pub(super) fn recent_for_new_page(&self) -> Vec<Arc<str>> {
        let horizon = wall_ms().saturating_sub(RECENT_MS);
        self.lock_recent()
            .iter()
            .filter(|(at, _)| *at >= horizon)
            .map(|(_, json)| json.clone())
            .collect()
    }

    pub(super) fn lock_book(&self) -> std::sync::MutexGuard<'_, TraceBook> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a cluster snapshot.
    pub fn publish_status(&self, view: ClusterView) {
        self.publish(&ClusterEvent::Status(view), false);
    }

    /// A coordinator accepted write `id` (its log position in leader-follower
    /// mode) and will send it to `replicas`.
    #[allow(clippy::too_many_arguments)]
    pub fn trace_write(
        &self,
        coordinator: NodeId,
        id: u64,
        seq: Option<Seq>,
        key: &str,
        version: Version,
        w: u32,
        replicas: &[NodeId],
    ) {
        if !self.is_watched() {
            return;
        }
        let now = wall_ms();
        let trace = WriteTrace {
            id,
            seq,
            key: key.to_owned(),
            version,
            coordinator,
            w,
            started_at_ms: now,
            committed_at_ms: None,
            replicas: replicas
                .iter()
                .map(|&id| ReplicaTrace {
                    id,
                    sent_at_ms: None,
                    acked_at_ms: None,
                    failed_at_ms: None,
                })
                .collect(),
            outcome: None,
            at_ms: now,
        };
        {
            let mut book = self.lock_book();
            book.prune(now);
            if book.traces.len() >= MAX_TRACED {
                return;
            }
            book.traces.insert(id, trace.clone());
            self.publish(&ClusterEvent::Trace(trace), true);
        }
    }

    /// The coordinator sent writes `ids` to replica `to` (the first send counts).
    pub fn trace_sent(&self, to: NodeId, ids: RangeInclusive<u64>) {
        if !self.is_watched() {
            return;
        }
        // Published under the book's lock, so copies of a trace leave in order.
        let mut book = self.lock_book();
        let changed = book.update(to, ids, wall_ms(), |r, now| {
            let first = r.sent_at_ms.is_none();
            if first {
                r.sent_at_ms = Some(now);
            }
            first
        });
        for t in changed {
            self.publish(&ClusterEvent::Trace(t), true);
        }
    }

    /// Replica `from` acknowledged writes `ids` (for a cumulative ack, every
    /// id up to it).
    pub fn trace_acked(&self, from: NodeId, ids: RangeInclusive<u64>) {
        if !self.is_watched() {
            return;
        }
        let mut book = self.lock_book();
        let changed = book.update(from, ids, wall_ms(), |r, now| {
            let first = r.acked_at_ms.is_none() && r.sent_at_ms.is_some();
            if first {
                r.acked_at_ms = Some(now);
            }
            first
        });
        for t in changed {
            self.publish(&ClusterEvent::Trace(t), true);
        }
    }

    /// The coordinator gave up sending writes `ids` to replica `to`
    /// (leaderless: it keeps hints instead).
    pub fn trace_send_failed(&self, to: NodeId, ids: RangeInclusive<u64>) {
        if !self.is_watched() {
            return;
        }
        let mut book = self.lock_book();
        let changed = book.update(to, ids, wall_ms(), |r, now| {
            let first = r.acked_at_ms.is_none() && r.failed_at_ms.is_none();
            if first {
                r.failed_at_ms = Some(now);
            }
            first
        });
        for t in changed {
            self.publish(&ClusterEvent::Trace(t), true);
        }
    }

    /// The coordinator answered the client of write `id` (its quorum was met).
    pub fn trace_committed(&self, id: u64) {
        if !self.is_watched() {
            return;
        }
        let now = wall_ms();
        let mut book = self.lock_book();
        let Some(t) = book.traces.get_mut(&id) else {
            return;
        };
        t.committed_at_ms = Some(now);
        t.at_ms = now;
        let t = t.clone();
        self.publish(&ClusterEvent::Trace(t), true);
        book.prune(now);
    }

    /// Write `id` ended without its quorum (answered 503): published with its
    /// outcome, then forgotten.
    pub fn trace_failed(&self, id: u64, outcome: TraceOutcome) {
        if !self.is_watched() {
            return;
        }
        let now = wall_ms();
        let mut book = self.lock_book();
        let Some(mut t) = book.traces.remove(&id) else {
            return;
        };
        t.outcome = Some(outcome);
        t.at_ms = now;
        self.publish(&ClusterEvent::Trace(t), true);
        book.prune(now);
    }

    /// An id for the next coordinated read's trace.
    pub fn next_read_id(&self) -> u64 {
        self.inner.next_read.fetch_add(1, Ordering::Relaxed)
    }

    /// A coordinated read ended: published unless [`MAX_READS_PER_SECOND`]
    /// were already this second.
    pub fn trace_read(&self, trace: ReadTrace) {
        if !self.is_watched() {
            return;
        }
        {
            let mut budget = self
                .inner
                .reads_this_second
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let second = trace.at_ms / 1_000;
            if budget.0 != second {
                *budget = (second, 0);
            }
            if budget.1 >= MAX_READS_PER_SECOND {
                return;
            }
            budget.1 += 1;
        }
        self.publish(&ClusterEvent::Read(trace), true);
    }

    /// Something happened to this node's replication (an election, a vote,
    /// a rollback…): published to every page and relayed by the peers'.
    pub fn node_event(&self, node: NodeId, term: Term, kind: NodeEventKind) {
        if !self.is_watched() {
            return;
        }
        let e = NodeEvent {
            node,
            at_ms: wall_ms(),
            term,
            kind,
        };
        self.publish(&ClusterEvent::Node(e), true);
    }
}
