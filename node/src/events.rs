//! The dashboard's live feed: `GET /events`, Server-Sent Events.
//!
//! Every node serves the feed; the browser talks to that node only.
//!
//! - **Cluster snapshots.** While at least one client is subscribed, an
//!   aggregator task builds a [`ClusterView`] every [`AGGREGATE_EVERY`]: this
//!   node's own `/status` plus each peer's, fetched server-side with a short
//!   timeout (a peer that does not answer is shown down, with the reason).
//!   The task starts with the first subscriber and ends with the last, so an
//!   unwatched node does no extra work.
//! - **Write traces.** The replication runtime reports, through the
//!   [`EventHub`], when a write was accepted, when it was sent to each replica,
//!   when each acknowledgement came back and when the client was answered.
//!   The hub keeps a small book of the writes in flight and publishes a
//!   [`WriteTrace`] each time one of its timestamps is filled in. All stamps
//!   are this node's wall clock (ms since the epoch), so the dashboard can
//!   replay them at the pace they happened.
//!
//! - **Read traces.** The read coordinator ([`crate::reads`]) reports each
//!   coordinated read once it ended, as a [`ReadTrace`]: the replicas asked,
//!   each one's answer, the version returned and the repairs sent. At most
//!   [`MAX_READS_PER_SECOND`] are published per second.
//! - **What a page sees first.** A new page gets the last snapshot only if it
//!   is fresh (built within [`FRESH_STATUS_MS`]): an older one would be drawn
//!   as history that this page never saw. Traces of writes that started before
//!   the stream opened (minus [`TRACE_GRACE_MS`]) are not sent to it either,
//!   so writes left in flight while nobody watched do not reappear half done.
//!   A write that ends without its quorum (503) is published once more with
//!   its [`TraceOutcome`] and forgotten. A new page does get the final copies
//!   of the last [`MAX_RECENT`] writes that ended (answered and acknowledged
//!   everywhere, or failed) within [`RECENT_MS`] while the node was watched,
//!   so that a 503 just before it opened shows as failed, not as waiting.
//!
//! - **Relay.** A write's trace is built by the node that coordinated it (the
//!   leader, or in leaderless mode any node). So that every node's page shows
//!   every write, the aggregator also follows each peer's
//!   `GET /events?only=own-traces` (that peer's own traces, no snapshots, no
//!   aggregator started there) and republishes them. Relayed traces are never
//!   relayed again, so there are no loops.
//!
//! Cost when nobody watches: every `trace_*` call returns after one atomic
//! load. When someone watches, at most [`MAX_TRACED`] writes are traced at a
//! time (later writes are skipped until some finish), so a load test does not
//! flood the browser.
//!
//! The hub also lets the server end every stream on shutdown ([`EventHub::close`]),
//! because a graceful shutdown waits for open responses and a stream never ends
//! by itself.

use crate::error::{ApiQuery, AppError};
use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use kv_shared::cluster::{Seq, StatusResponse};
use kv_shared::events::{
    ClusterEvent, ClusterView, NodeEvent, NodeEventKind, ReadTrace, ReplicaTrace, ReplicaView,
    SseReader, TraceOutcome, WallMs, WriteTrace, EVENTS_PATH, OWN_TRACES_QUERY,
};
use kv_shared::{NodeId, Role, Term, Version};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch, Semaphore};

/// Interval between two cluster snapshots while someone watches.
pub const AGGREGATE_EVERY: Duration = Duration::from_millis(300);
/// How long the aggregator waits for one peer's `/status`.
pub const PEER_STATUS_TIMEOUT: Duration = Duration::from_millis(450);
/// Most writes traced at once.
pub const MAX_TRACED: usize = 24;
/// Most updated traces published by one `trace_sent`/`trace_acked` call.
const MAX_PUBLISH_PER_CALL: usize = 8;
/// A write still incomplete after this long is forgotten (a replica is down).
const TRACE_TTL_MS: WallMs = 30_000;
/// Events buffered per subscriber before the slowest one skips some.
const CHANNEL_CAPACITY: usize = 256;
/// Streams served at once unless configured (`--max-event-streams`).
pub const DEFAULT_MAX_STREAMS: usize = 64;
/// Most read traces published per second (a load test reads a lot).
pub const MAX_READS_PER_SECOND: u32 = 20;
/// A cached snapshot older than this is not sent to a new page, in ms.
pub const FRESH_STATUS_MS: WallMs = 1_000;
/// Traces of writes started this long before a stream opened are still sent
/// to it (the coordinator's clock may be a little behind the server's), in ms.
pub const TRACE_GRACE_MS: WallMs = 1_000;
/// Ended write traces kept for new pages.
pub const MAX_RECENT: usize = 16;
/// How long an ended write trace is replayed to new pages, in ms.
pub const RECENT_MS: WallMs = 60_000;
/// Reconnection delay the browser is asked to use, in ms.
const CLIENT_RETRY: Duration = Duration::from_millis(1_000);
/// Wait before a relay reconnects to a peer's stream.
const RELAY_RETRY: Duration = Duration::from_millis(1_000);
/// How often a relay waiting for a peer's event checks whether it is still needed.
const RELAY_CHECK: Duration = Duration::from_millis(500);

/// This node's wall clock in ms since the Unix epoch.
pub fn wall_ms() -> WallMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The writes being traced, by id.
#[derive(Debug, Default)]
struct TraceBook {
    traces: BTreeMap<u64, WriteTrace>,
}

impl TraceBook {
    /// Forgets traces that are complete or too old.
    fn prune(&mut self, now: WallMs) {
        self.traces.retain(|_, t| {
            let done = t.committed_at_ms.is_some() && t.settled();
            !done && t.started_at_ms + TRACE_TTL_MS > now
        });
    }

    /// Applies `set` to replica `to` of every trace in `ids` and returns the
    /// traces it changed (the newest [`MAX_PUBLISH_PER_CALL`]).
    fn update(
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
struct Published {
    json: Arc<str>,
    /// A trace of a write or read this node coordinated, or an event of this
    /// node's replication (not a snapshot, not relayed).
    own_trace: bool,
    /// For a write trace: when the write started (streams opened later skip it).
    write_started_at_ms: Option<WallMs>,
}

#[derive(Debug)]
struct Inner {
    /// Every event, to every subscriber.
    tx: broadcast::Sender<Arc<Published>>,
    /// Open full streams (snapshots + traces): the aggregator runs while > 0.
    watchers: AtomicUsize,
    /// The last snapshot and when it was built, sent first to a new
    /// subscriber while fresh.
    latest_status: Mutex<Option<(WallMs, Arc<str>)>>,
    /// Read traces published in the current second: (second, count).
    reads_this_second: Mutex<(u64, u32)>,
    /// The id of the next coordinated read.
    next_read: AtomicU64,
    /// The final copies of the last writes that ended: (when, JSON).
    recent: Mutex<std::collections::VecDeque<(WallMs, Arc<str>)>>,
    aggregator_running: AtomicBool,
    /// Locked for microseconds, also while a trace is published (so that
    /// copies of one trace leave in order); never held across `.await`.
    book: Mutex<TraceBook>,
    /// Becomes true when the server shuts down; ends every stream.
    closed: watch::Sender<bool>,
    /// One permit per stream that may be open (`--max-event-streams`).
    streams: Arc<Semaphore>,
    /// Streams refused because every permit was taken.
    refused_streams: AtomicU64,
}

/// The feed's hub: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
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
    fn watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::Acquire)
    }

    /// Ends every open stream and refuses new ones (server shutdown).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Broadcasts `event`; `own_trace` marks a trace this node coordinated.
    fn publish(&self, event: &ClusterEvent, own_trace: bool) {
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

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Option<(WallMs, Arc<str>)>> {
        self.inner
            .latest_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_recent(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(WallMs, Arc<str>)>> {
        self.inner.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ended traces a new page gets, oldest first.
    fn recent_for_new_page(&self) -> Vec<Arc<str>> {
        let horizon = wall_ms().saturating_sub(RECENT_MS);
        self.lock_recent()
            .iter()
            .filter(|(at, _)| *at >= horizon)
            .map(|(_, json)| json.clone())
            .collect()
    }

    fn lock_book(&self) -> std::sync::MutexGuard<'_, TraceBook> {
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

    /// Starts the aggregator unless it runs.
    fn ensure_aggregator(&self, state: &AppState) {
        if self.inner.aggregator_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (hub, state) = (self.clone(), state.clone());
        tokio::spawn(async move { hub.aggregate(state).await });
    }

    /// Publishes snapshots and relays the peers' traces while a page
    /// watches; ends with the last one (or at shutdown).
    async fn aggregate(self, state: AppState) {
        let mut closed = self.inner.closed.subscribe();
        let client = state.cluster.transport().client().clone();
        let relays: Vec<_> = state
            .cluster
            .peers()
            .list()
            .iter()
            .map(|p| tokio::spawn(self.clone().relay(client.clone(), p.url.clone())))
            .collect();
        loop {
            if self.watchers() == 0 || *closed.borrow() {
                self.inner
                    .aggregator_running
                    .store(false, Ordering::Release);
                // A page that came in between keeps the task alive.
                if self.watchers() > 0
                    && !*closed.borrow()
                    && !self.inner.aggregator_running.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
                relays.iter().for_each(|r| r.abort());
                return;
            }
            let view = build_view(&state).await;
            self.publish_status(view);
            tokio::select! {
                _ = tokio::time::sleep(AGGREGATE_EVERY) => {}
                _ = closed.changed() => {}
            }
        }
    }
}

impl EventHub {
    /// Follows a peer's own traces and events and republishes them here, reconnecting
    /// after [`RELAY_RETRY`]; runs until the aggregator aborts it.
    async fn relay(self, client: reqwest::Client, peer_url: String) {
        let url = format!(
            "{}{EVENTS_PATH}?{OWN_TRACES_QUERY}",
            peer_url.trim_end_matches('/')
        );
        loop {
            if let Err(e) = self.relay_once(&client, &url).await {
                tracing::debug!("trace relay from {url}: {e}");
            }
            tokio::time::sleep(RELAY_RETRY).await;
        }
    }

    /// One connection to a peer's stream, until it ends or fails.
    async fn relay_once(&self, client: &reqwest::Client, url: &str) -> Result<(), String> {
        let mut resp = client.get(url).send().await.map_err(|e| short_error(&e))?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let mut reader = SseReader::default();
        loop {
            let chunk = match tokio::time::timeout(RELAY_CHECK, resp.chunk()).await {
                Err(_) => continue,
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(e.to_string()),
            };
            // Snapshots are not relayed: each node builds its own.
            for event in reader.push(&chunk) {
                if !matches!(event, ClusterEvent::Status(_)) {
                    self.publish(&event, false);
                }
            }
        }
    }
}

/// This node's `/status` plus every peer's, as one [`ClusterView`].
pub async fn build_view(state: &AppState) -> ClusterView {
    let own = state.replication.status(&state.cluster, &state.store);
    let client = state.cluster.transport().client().clone();
    let fetches = own.peers.iter().map(|p| {
        let client = client.clone();
        let url = format!("{}{}", p.url.trim_end_matches('/'), kv_shared::STATUS_PATH);
        async move {
            let answer = async {
                let resp = client
                    .get(&url)
                    .timeout(PEER_STATUS_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| short_error(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("/status answered {}", resp.status()));
                }
                resp.json::<StatusResponse>()
                    .await
                    .map_err(|e| format!("unreadable /status: {e}"))
            };
            answer.await
        }
    });
    let answers = futures_util::future::join_all(fetches).await;
    assemble(
        &own,
        own.peers.iter().map(|p| p.id).zip(answers).collect(),
        wall_ms(),
    )
}

/// Words a request error briefly (reqwest's text nests every cause).
fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the status timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

/// The faults in force that `status` lists.
fn active_faults(status: &StatusResponse) -> Vec<kv_shared::admin::ActiveFault> {
    status
        .faults
        .as_ref()
        .map(|f| f.active.clone())
        .unwrap_or_default()
}

/// Merges this node's status with its peers' answers (pure, for tests).
pub fn assemble(
    own: &StatusResponse,
    answers: BTreeMap<NodeId, Result<StatusResponse, String>>,
    at_ms: WallMs,
) -> ClusterView {
    // The leader's /status carries every follower's lag.
    let leader_status = match own.leader {
        Some(l) if l == own.node_id => Some(own),
        Some(l) => answers.get(&l).and_then(|a| a.as_ref().ok()),
        None => None,
    };
    let lag_of = |id: NodeId| leader_status.and_then(|s| s.peers.iter().find(|p| p.id == id));
    let lf = |s: &StatusResponse| s.leader_follower.clone();
    // Hints every node that answered holds for `id` (leaderless).
    let hints_for = |id: NodeId| {
        std::iter::once(own)
            .chain(answers.values().filter_map(|a| a.as_ref().ok()))
            .flat_map(|s| s.peers.iter().filter(|p| p.id == id))
            .filter_map(|p| p.pending_hints)
            .reduce(|a, b| a + b)
    };
    let mut replicas = vec![ReplicaView {
        id: own.node_id,
        url: own.url.clone(),
        role: own.role,
        up: true,
        applied_seq: Some(own.applied_seq),
        keys: Some(own.keys),
        term: lf(own).map(|l| l.term),
        commit_seq: lf(own).map(|l| l.commit_seq),
        catching_up: lf(own).is_some_and(|l| l.catching_up),
        rolled_back: lf(own).map(|l| l.rolled_back),
        lag_entries: lag_of(own.node_id).and_then(|p| p.lag_entries),
        lag_ms: lag_of(own.node_id).and_then(|p| p.lag_ms),
        pending_hints: hints_for(own.node_id),
        config: None,
        error: None,
        faults: active_faults(own),
    }];
    for p in &own.peers {
        let answer = answers.get(&p.id);
        let theirs = answer.and_then(|a| a.as_ref().ok());
        let lag = lag_of(p.id);
        replicas.push(ReplicaView {
            id: p.id,
            url: p.url.clone(),
            role: theirs.map_or(p.role, |s| s.role),
            up: theirs.is_some(),
            applied_seq: theirs.map(|s| s.applied_seq),
            keys: theirs.map(|s| s.keys),
            term: theirs.and_then(lf).map(|l| l.term),
            commit_seq: theirs.and_then(lf).map(|l| l.commit_seq),
            catching_up: theirs.and_then(lf).is_some_and(|l| l.catching_up),
            rolled_back: theirs.and_then(lf).map(|l| l.rolled_back),
            lag_entries: lag.and_then(|l| l.lag_entries),
            lag_ms: lag.and_then(|l| l.lag_ms),
            pending_hints: hints_for(p.id),
            config: theirs.map(|s| s.config).filter(|c| *c != own.config),
            error: match answer {
                Some(Err(e)) => Some(e.clone()),
                None => Some("not asked".into()),
                Some(Ok(_)) => None,
            },
            faults: theirs.map(active_faults).unwrap_or_default(),
        });
    }
    replicas.sort_by_key(|r| r.id);
    ClusterView {
        at_ms,
        observer: own.node_id,
        mode: own.mode,
        leader: own.leader.or_else(|| {
            replicas
                .iter()
                .find(|r| r.role == Role::Leader)
                .map(|r| r.id)
        }),
        config: own.config,
        replicas,
    }
}

/// What a `/events` stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Only {
    /// Only the traces of writes this node coordinated and the events of its
    /// own replication (what peers relay).
    OwnTraces,
}

/// Query string of `GET /events`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct EventsQuery {
    /// Absent: snapshots and every trace (a page). `own-traces`: see [`Only`].
    #[serde(default)]
    pub only: Option<Only>,
}

/// Counts an open page stream while it lives.
struct Watcher(EventHub);

impl Watcher {
    fn new(hub: &EventHub) -> Self {
        hub.inner.watchers.fetch_add(1, Ordering::AcqRel);
        Self(hub.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.inner.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /events`: the live feed as Server-Sent Events (see the module docs).
///
/// # Errors
/// 400 for an unknown `only` value.
pub async fn events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let hub = state.cluster.events().clone();
    // Held by the stream: the permit returns when the client goes away.
    let Ok(permit) = hub.inner.streams.clone().try_acquire_owned() else {
        let refused = hub.inner.refused_streams.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            refused,
            "event stream refused: --max-event-streams are open"
        );
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams on this node (--max-event-streams); close a dashboard tab or retry later",
        ));
    };
    let rx = hub.inner.tx.subscribe();
    let own_traces_only = query.only == Some(Only::OwnTraces);
    let (watcher, first, recent) = if own_traces_only {
        (None, None, Vec::new())
    } else {
        let watcher = Watcher::new(&hub);
        hub.ensure_aggregator(&state);
        // Only a fresh snapshot: an old one is not this page's history.
        let fresh = hub
            .lock_status()
            .clone()
            .filter(|(at, _)| at + FRESH_STATUS_MS >= wall_ms())
            .map(|(_, json)| json);
        (Some(watcher), fresh, hub.recent_for_new_page())
    };
    let opened_at = wall_ms().saturating_sub(TRACE_GRACE_MS);
    let closed = hub.inner.closed.subscribe();
    let hello = Event::default()
        .retry(CLIENT_RETRY)
        .comment("kv-node events");
    let start = stream::iter(
        std::iter::once(hello)
            .chain(first.map(|json| Event::default().data(&*json)))
            .chain(recent.iter().map(|json| Event::default().data(&**json)))
            .collect::<Vec<_>>(),
    )
    .map(Ok);
    let live = stream::unfold(
        (rx, closed, (watcher, permit)),
        move |(mut rx, mut closed, watcher)| async move {
            loop {
                if *closed.borrow() {
                    return None;
                }
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Ok(p) if own_traces_only && !p.own_trace => continue,
                        // A write that started before this stream: not its history.
                        Ok(p) if p.write_started_at_ms.is_some_and(|s| s < opened_at) => continue,
                        Ok(p) => return Some((Ok(Event::default().data(&*p.json)), (rx, closed, watcher))),
                        // A slow client skips what it missed; the next snapshot resets it.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = closed.changed() => return None,
                }
            }
        },
    );
    Ok(Sse::new(start.chain(live)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::{ClusterConfig, DelayProfile};
    use kv_shared::Mode;
    use serde_json::json;

    /// A `/status` answer, built from JSON as a client would read it.
    fn status(id: NodeId, role: Role, seq: Seq, peers: &[(NodeId, Option<u64>)]) -> StatusResponse {
        let peers: Vec<_> = peers
            .iter()
            .map(|&(p, lag)| {
                json!({
                    "id": p, "url": format!("http://n{p}"),
                    "role": if p == 1 { Role::Leader } else { Role::Follower },
                    "up": true, "lag_entries": lag, "lag_ms": lag.map(|l| l * 100),
                })
            })
            .collect();
        serde_json::from_value(json!({
            "node_id": id, "url": format!("http://n{id}"), "mode": Mode::LeaderFollower,
            "role": role, "leader": 1,
            "config": ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            "applied_seq": seq, "keys": seq, "peers": peers,
        }))
        .unwrap()
    }

    #[test]
    fn a_followers_view_takes_the_lag_from_the_leaders_status() {
        let own = status(2, Role::Follower, 7, &[(1, None), (3, None)]);
        let leader = status(1, Role::Leader, 9, &[(2, Some(2)), (3, Some(0))]);
        let answers = BTreeMap::from([(1, Ok(leader)), (3, Err("connection refused".into()))]);
        let v = assemble(&own, answers, 42);
        assert_eq!(v.observer, 2);
        assert_eq!(v.at_ms, 42);
        assert_eq!(
            v.replicas.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let [l, me, down] = &v.replicas[..] else {
            panic!()
        };
        assert_eq!((l.role, l.up, l.applied_seq), (Role::Leader, true, Some(9)));
        assert_eq!((me.lag_entries, me.lag_ms), (Some(2), Some(200)));
        assert!(!down.up);
        assert_eq!(down.error.as_deref(), Some("connection refused"));
        assert_eq!(down.lag_entries, Some(0), "the leader's last word on it");
    }

    #[tokio::test]
    async fn traces_follow_a_write_to_its_replicas_and_end_when_complete() {
        let hub = EventHub::new(DEFAULT_MAX_STREAMS);
        hub.trace_write(1, 1, Some(1), "k", 1, 1, &[2, 3]);
        assert!(
            hub.lock_book().traces.is_empty(),
            "nobody watches: nothing kept"
        );

        let mut rx = hub.inner.tx.subscribe();
        hub.trace_write(1, 5, Some(5), "k", 2, 1, &[2, 3]);
        hub.trace_sent(2, 5..=5);
        hub.trace_sent(2, 5..=5); // a resend does not move the first send
        hub.trace_committed(5);
        hub.trace_acked(3, 0..=5); // never sent to 3: not an ack of this write
        hub.trace_sent(3, 5..=5);
        hub.trace_acked(2, 0..=5);
        hub.trace_acked(3, 0..=9);
        let mut seen = Vec::new();
        while let Ok(p) = rx.try_recv() {
            assert!(p.own_trace);
            let ClusterEvent::Trace(t) = serde_json::from_str(&p.json).unwrap() else {
                panic!("{}", p.json)
            };
            seen.push(t);
        }
        assert_eq!(seen.len(), 6, "{seen:#?}");
        let last = seen.last().unwrap();
        assert!(last.fully_acked() && last.committed_at_ms.is_some());
        assert!(last.replicas.iter().all(|r| r.sent_at_ms <= r.acked_at_ms));
        assert!(
            hub.lock_book().traces.is_empty(),
            "complete traces are dropped"
        );
    }

    #[tokio::test]
    async fn a_write_that_misses_its_quorum_ends_with_its_outcome_and_is_forgotten() {
        let hub = EventHub::new(DEFAULT_MAX_STREAMS);
        let mut rx = hub.inner.tx.subscribe();
        hub.trace_write(1, 9, Some(9), "k", 3, 3, &[2, 3]);
        hub.trace_sent(2, 9..=9);
        hub.trace_acked(2, 9..=9);
        let outcome = TraceOutcome::Failed {
            acked: 2,
            required: 3,
        };
        hub.trace_failed(9, outcome);
        assert!(hub.lock_book().traces.is_empty());
        let last = std::iter::from_fn(|| rx.try_recv().ok()).last().unwrap();
        assert_eq!(last.write_started_at_ms.map(|s| s > 0), Some(true));
        let ClusterEvent::Trace(t) = serde_json::from_str(&last.json).unwrap() else {
            panic!("{}", last.json)
        };
        assert_eq!(t.outcome, Some(outcome));
        assert_eq!(t.committed_at_ms, None);
        assert_eq!(
            hub.recent_for_new_page().len(),
            1,
            "a page opened next sees it failed"
        );
    }

    #[tokio::test]
    async fn read_traces_are_published_at_most_max_reads_per_second() {
        let hub = EventHub::new(DEFAULT_MAX_STREAMS);
        let mut rx = hub.inner.tx.subscribe();
        let read = |at_ms| ReadTrace {
            id: hub.next_read_id(),
            key: "k".into(),
            coordinator: 1,
            r: 2,
            started_at_ms: at_ms,
            finished_at_ms: at_ms,
            replicas: vec![],
            winner: None,
            repaired: vec![],
            outcome: None,
            at_ms,
        };
        for _ in 0..(MAX_READS_PER_SECOND + 5) {
            hub.trace_read(read(5_000));
        }
        hub.trace_read(read(6_000));
        let n = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(n, MAX_READS_PER_SECOND as usize + 1);
    }

    #[tokio::test]
    async fn at_most_max_traced_writes_are_followed_at_once() {
        let hub = EventHub::new(DEFAULT_MAX_STREAMS);
        let _rx = hub.inner.tx.subscribe();
        for id in 0..(MAX_TRACED as u64 + 10) {
            hub.trace_write(1, id, Some(id), "k", id, 1, &[2]);
        }
        assert_eq!(hub.lock_book().traces.len(), MAX_TRACED);
    }
}
