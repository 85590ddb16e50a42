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
//! Cost when nobody watches: every `trace_*` call returns after one atomic
//! load. When someone watches, at most [`MAX_TRACED`] writes are traced at a
//! time (later writes are skipped until some finish), so a load test does not
//! flood the browser.
//!
//! The hub also lets the server end every stream on shutdown ([`EventHub::close`]),
//! because a graceful shutdown waits for open responses and a stream never ends
//! by itself.

use crate::server::AppState;
use axum::extract::State;
use axum::http::{header, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use kv_shared::cluster::{Seq, StatusResponse};
use kv_shared::events::{ClusterEvent, ClusterView, ReplicaTrace, ReplicaView, WallMs, WriteTrace};
use kv_shared::{NodeId, Role, Version};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};
use tower_http::cors::{Any, CorsLayer};

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
/// Reconnection delay the browser is asked to use, in ms.
const CLIENT_RETRY: Duration = Duration::from_millis(1_000);

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
            let done = t.committed_at_ms.is_some() && t.fully_acked();
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

#[derive(Debug)]
struct Inner {
    /// Pre-serialised events: serialised once, sent to every subscriber.
    tx: broadcast::Sender<Arc<str>>,
    /// The last snapshot, sent first to a new subscriber.
    latest_status: Mutex<Option<Arc<str>>>,
    aggregator_running: AtomicBool,
    /// Locked for microseconds; never held across `.await`.
    book: Mutex<TraceBook>,
    /// Becomes true when the server shuts down; ends every stream.
    closed: watch::Sender<bool>,
}

/// The feed's hub: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// A hub with no subscriber.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                tx: broadcast::channel(CHANNEL_CAPACITY).0,
                latest_status: Mutex::new(None),
                aggregator_running: AtomicBool::new(false),
                book: Mutex::new(TraceBook::default()),
                closed: watch::channel(false).0,
            }),
        }
    }

    /// Whether anyone watches (the `trace_*` calls do nothing otherwise).
    pub fn is_watched(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// Ends every open stream and refuses new ones (server shutdown).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    fn publish(&self, event: &ClusterEvent) {
        match serde_json::to_string(event) {
            Ok(json) => {
                let json: Arc<str> = json.into();
                if matches!(event, ClusterEvent::Status(_)) {
                    *self.lock_status() = Some(json.clone());
                }
                let _ = self.inner.tx.send(json);
            }
            Err(e) => tracing::warn!("cannot serialise an event: {e}"),
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Option<Arc<str>>> {
        self.inner
            .latest_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_book(&self) -> std::sync::MutexGuard<'_, TraceBook> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a cluster snapshot.
    pub fn publish_status(&self, view: ClusterView) {
        self.publish(&ClusterEvent::Status(view));
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
                })
                .collect(),
            at_ms: now,
        };
        {
            let mut book = self.lock_book();
            book.prune(now);
            if book.traces.len() >= MAX_TRACED {
                return;
            }
            book.traces.insert(id, trace.clone());
        }
        self.publish(&ClusterEvent::Trace(trace));
    }

    /// The coordinator sent writes `ids` to replica `to` (the first send counts).
    pub fn trace_sent(&self, to: NodeId, ids: RangeInclusive<u64>) {
        if !self.is_watched() {
            return;
        }
        let changed = self.lock_book().update(to, ids, wall_ms(), |r, now| {
            let first = r.sent_at_ms.is_none();
            if first {
                r.sent_at_ms = Some(now);
            }
            first
        });
        for t in changed {
            self.publish(&ClusterEvent::Trace(t));
        }
    }

    /// Replica `from` acknowledged writes `ids` (for a cumulative ack, every
    /// id up to it).
    pub fn trace_acked(&self, from: NodeId, ids: RangeInclusive<u64>) {
        if !self.is_watched() {
            return;
        }
        let changed = self.lock_book().update(from, ids, wall_ms(), |r, now| {
            let first = r.acked_at_ms.is_none() && r.sent_at_ms.is_some();
            if first {
                r.acked_at_ms = Some(now);
            }
            first
        });
        for t in changed {
            self.publish(&ClusterEvent::Trace(t));
        }
    }

    /// The coordinator answered the client of write `id` (its quorum was met).
    pub fn trace_committed(&self, id: u64) {
        if !self.is_watched() {
            return;
        }
        let now = wall_ms();
        let trace = {
            let mut book = self.lock_book();
            let Some(t) = book.traces.get_mut(&id) else {
                return;
            };
            t.committed_at_ms = Some(now);
            t.at_ms = now;
            let t = t.clone();
            book.prune(now);
            t
        };
        self.publish(&ClusterEvent::Trace(trace));
    }

    /// Starts the aggregator unless it runs.
    fn ensure_aggregator(&self, state: &AppState) {
        if self.inner.aggregator_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (hub, state) = (self.clone(), state.clone());
        tokio::spawn(async move { hub.aggregate(state).await });
    }

    /// Publishes snapshots while anyone watches; ends with the last watcher.
    async fn aggregate(self, state: AppState) {
        let mut closed = self.inner.closed.subscribe();
        loop {
            if !self.is_watched() || *closed.borrow() {
                self.inner
                    .aggregator_running
                    .store(false, Ordering::Release);
                // A subscriber that came in between keeps the task alive.
                if self.is_watched()
                    && !*closed.borrow()
                    && !self.inner.aggregator_running.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
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

/// This node's `/status` plus every peer's, as one [`ClusterView`].
pub async fn build_view(state: &AppState) -> ClusterView {
    let own = state.replication.status(&state.cluster, &state.store);
    let client = state.cluster.transport().client().clone();
    let fetches = own.peers.iter().map(|p| {
        let client = client.clone();
        let url = format!("{}/status", p.url.trim_end_matches('/'));
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
    let mut replicas = vec![ReplicaView {
        id: own.node_id,
        url: own.url.clone(),
        role: own.role,
        up: true,
        applied_seq: Some(own.applied_seq),
        keys: Some(own.keys),
        lag_entries: lag_of(own.node_id).and_then(|p| p.lag_entries),
        lag_ms: lag_of(own.node_id).and_then(|p| p.lag_ms),
        pending_hints: None,
        config: None,
        error: None,
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
            lag_entries: lag.and_then(|l| l.lag_entries),
            lag_ms: lag.and_then(|l| l.lag_ms),
            pending_hints: p.pending_hints,
            config: theirs.map(|s| s.config).filter(|c| *c != own.config),
            error: match answer {
                Some(Err(e)) => Some(e.clone()),
                None => Some("not asked".into()),
                Some(Ok(_)) => None,
            },
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

/// CORS for the data operations (`/set`, `/get`, `/local_read`, `/health`):
/// the dashboard served by one node sends them to any replica. Only simple
/// methods and the JSON content type are allowed; no credentials.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
}

/// `GET /events`: the live feed as Server-Sent Events (see the module docs).
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hub = state.cluster.events().clone();
    let rx = hub.inner.tx.subscribe();
    hub.ensure_aggregator(&state);
    let first = hub.lock_status().clone();
    let closed = hub.inner.closed.subscribe();
    let hello = Event::default()
        .retry(CLIENT_RETRY)
        .comment("kv-node events");
    let start =
        stream::iter(std::iter::once(hello).chain(first.map(|json| Event::default().data(&*json))))
            .map(Ok);
    let live = stream::unfold((rx, closed), |(mut rx, mut closed)| async move {
        loop {
            if *closed.borrow() {
                return None;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(json) => return Some((Ok(Event::default().data(&*json)), (rx, closed))),
                    // A slow client skips what it missed; the next snapshot resets it.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = closed.changed() => return None,
            }
        }
    });
    Sse::new(start.chain(live)).keep_alive(KeepAlive::default())
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
        let hub = EventHub::new();
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
        while let Ok(json) = rx.try_recv() {
            let ClusterEvent::Trace(t) = serde_json::from_str(&json).unwrap() else {
                panic!("{json}")
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
    async fn at_most_max_traced_writes_are_followed_at_once() {
        let hub = EventHub::new();
        let _rx = hub.inner.tx.subscribe();
        for id in 0..(MAX_TRACED as u64 + 10) {
            hub.trace_write(1, id, Some(id), "k", id, 1, &[2]);
        }
        assert_eq!(hub.lock_book().traces.len(), MAX_TRACED);
    }
}
