//! Leader-follower replication: one leader decides every write, N-1
//! followers apply its log in order.
//!
//! # Guarantees
//! - **One order.** The leader gives every write the key's next version (1, 2,
//!   3… per key) and the next cluster-wide sequence number, and applies it
//!   before anything else happens. Followers apply entries strictly in
//!   sequence order; a replica never lets an older version of a key replace a
//!   newer one (the store keeps the higher version), so replaying, repairing
//!   or installing a snapshot can only move a key forward.
//! - **W acknowledgements.** `POST /set` answers 201 once W replicas hold the
//!   write, the leader counting as one. A follower acknowledges only what it
//!   has applied, so "acked" means "readable there". Followers beyond W still
//!   receive the write, asynchronously: every write reaches every live replica.
//! - **R + W > N gives read-your-writes.** `GET /get` asks R replicas (the
//!   coordinator itself plus R-1 others, the leader first) and returns the
//!   highest version. If R + W > N, every read quorum shares at least one
//!   replica with the W replicas that acknowledged a write, so a read that
//!   starts after a 201 returns that write or a newer one. With N = 5: W5R1,
//!   W1R5 and W3R3 all have R + W = 6 > 5; W1R1 does not, and a read may then
//!   return an older version until replication catches up.
//! - **Nothing acknowledged is rolled back.** Only the leader creates entries
//!   and there is no election, so no follower ever has to discard an applied
//!   entry; catch-up and snapshots merge by version and only move keys forward.
//!
//! # Message flow
//! ```text
//! client ──POST /set──▶ follower ──forward (keep-alive)──▶ leader
//!                                                          │ propose: version, seq, apply
//!          ┌───────────── /internal/replicate (batch) ─────┤ one in-flight batch per follower;
//!          ▼                                               │ entries written meanwhile go in the next
//!      follower: apply in seq order ── applied_seq ───────▶│ ack = applied_seq (cumulative)
//!                                                          │ W holders reached → 201
//! ```
//! The leader keeps, per follower, the acknowledged position and at most one
//! message in flight over a pooled keep-alive connection; entries that arrive
//! while a message is in flight travel together in the next one (up to
//! `--max-batch` entries), so replication costs one HTTP request per batch per
//! follower, not one per write. Idle followers get an empty batch every
//! `--heartbeat-ms`; its answer is how the leader notices a follower that
//! restarted or fell behind.
//!
//! # Timeouts, crash and restart
//! - A write that does not reach W replicas within `--write-timeout-ms` answers
//!   503 `{"error","acked","required"}`. Such a write is **not undone**: it is
//!   applied on the leader and on the `acked - 1` followers that answered, it
//!   keeps being replicated to the others, and later reads may return it. The
//!   client must treat it as "may or may not have happened" and retry if it
//!   needs certainty (a retry writes a new version).
//! - A follower that does not answer is marked down and retried with backoff
//!   (heartbeat × 2^failures, at most 2 s). When it answers again, its
//!   `applied_seq` tells the leader where to resume: from the log tail if the
//!   leader's bounded log (`--log-capacity` entries) still holds the next
//!   entry, otherwise with a snapshot of the whole store (taken under the
//!   leader's lock, so it reflects every entry up to its sequence number)
//!   followed by the tail. A follower that restarts empty answers
//!   `applied_seq = 0` and is rebuilt that way while it serves its (stale)
//!   local copy to `/local_read` and takes part in reads.
//! - Each leader process life has an epoch (its start time); a follower that
//!   sees a new one drops entries it buffered from the old life, whose
//!   positions the new life reuses.
//! - A follower that receives entries beyond a gap buffers them and answers
//!   with its applied position, which makes the leader resend from the gap.
//! - A follower forwards `POST /set` to the leader and passes on its answer
//!   (`forwarded_by` names the follower, `served_by` the leader); when the
//!   leader is unreachable it answers 503 with `"leader": <id>`.
//!
//! # Delay profile
//! With `--delay-profile assignment`, the leader holds a send slot for 200 ms
//! after every replication message that carries entries (so a write that needs
//! 4 followers waits for 4 slots, one that needs 2 for 2), a follower waits
//! 100 ms after receiving entries before applying and acknowledging them, and
//! a replica waits 50 ms before answering a read another node coordinates. All
//! are `tokio::time::sleep`s: other requests on the node proceed meanwhile.
//! Heartbeats are not delayed.
//!
//! # Implementation caveats
//! - The leader is fixed by `--role`: there is no election. While the leader
//!   is down, writes fail (503) and reads with R ≤ live replicas still work.
//!   Nothing detects two nodes started with `--role leader`: both would
//!   replicate to the followers. The flags must name exactly one.
//! - Everything is in memory. A restarted follower recovers from the leader. A
//!   restarted leader first asks every follower for its records
//!   (`GET /internal/state`, retried for up to twice `--peer-timeout-ms`),
//!   keeps the highest version of each key and continues the log after the
//!   highest applied position; writes get 503 until then. A write
//!   acknowledged by W replicas survives a leader restart when at least one
//!   follower holding it answers in that window, which is certain if
//!   N - W + 1 followers answer. With W = 1 a write only the leader held is lost.
//! - A snapshot is one message holding the whole store; there is no chunking.
//! - `/internal/*` endpoints are not authenticated: run the cluster on a
//!   private network.
//! - `up` in `/status` means "answered the last message", not a lease.

pub mod core;

use self::core::{FollowerCore, Input, LeaderCore, LeaderMessage, LeaderSettings, Output};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::AppError;
use crate::store::Store;
use axum::http::StatusCode;
use kv_shared::cluster::{Seq, StatusResponse};
use kv_shared::replication::{
    ConfigEnvelope, ReplicateRequest, ReplicateResponse, SnapshotRequest, StateResponse,
};
use kv_shared::{ErrorBody, NodeId, Role, SetRequest, SetResponse};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Header a follower sets when it forwards a write, so that a misdirected
/// forward is refused instead of bouncing between followers.
pub const FORWARDED_BY_HEADER: &str = "x-kv-forwarded-by";

/// How often the leader checks write deadlines, retries and heartbeats.
const TICK: Duration = Duration::from_millis(20);

/// Entries a follower buffers beyond a gap.
const FOLLOWER_BUFFER: usize = 100_000;

/// How a write waiting for its quorum ended.
#[derive(Debug, Clone, Copy)]
enum WriteOutcome {
    Committed,
    TimedOut { acked: u32, required: u32 },
}

enum State {
    Leader {
        core: LeaderCore,
        /// The client requests waiting for their write's outcome, by seq.
        waiters: HashMap<Seq, oneshot::Sender<WriteOutcome>>,
    },
    Follower {
        core: FollowerCore,
    },
}

struct Inner {
    cluster: Cluster,
    /// Locked for a few microseconds per step; never held across `.await`.
    state: Mutex<State>,
    stopped: AtomicBool,
    /// A leader refuses writes until it has recovered its followers' state.
    recovering: AtomicBool,
}

/// The leader-follower runtime of one node: a cheap, cloneable handle.
#[derive(Clone)]
pub struct LeaderFollower {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LeaderFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderFollower")
            .field("node_id", &self.inner.cluster.node_id())
            .field("role", &self.inner.cluster.role())
            .finish()
    }
}

impl LeaderFollower {
    /// The runtime of a node whose role is in `cluster`, over `store`.
    pub fn new(cluster: Cluster, store: Store, config: &Config) -> Self {
        let is_leader = cluster.role() == Role::Leader;
        let state = if cluster.role() == Role::Leader {
            let settings = LeaderSettings {
                log_capacity: config.log_capacity as usize,
                max_batch: config.max_batch as usize,
                heartbeat: cluster.heartbeat(),
                epoch: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            };
            let core = LeaderCore::new(
                cluster.node_id(),
                store.clone(),
                &cluster.peers().ids(),
                settings,
            );
            State::Leader {
                core,
                waiters: HashMap::new(),
            }
        } else {
            State::Follower {
                core: FollowerCore::new(cluster.node_id(), store, FOLLOWER_BUFFER),
            }
        };
        Self {
            inner: Arc::new(Inner {
                cluster,
                state: Mutex::new(state),
                stopped: AtomicBool::new(false),
                recovering: AtomicBool::new(is_leader),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.inner.cluster.role() == Role::Leader
    }

    /// Starts the leader's background task: recovery from the followers,
    /// then the tick loop (deadlines, retries, heartbeats). A follower needs
    /// no background task. Returns the task to abort on stop.
    pub fn spawn_background(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.is_leader() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            this.recover().await;
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !this.inner.stopped.load(Ordering::Relaxed) {
                ticker.tick().await;
                let sends = {
                    let mut st = this.lock();
                    match &mut *st {
                        State::Leader { core, waiters } => {
                            let out = core.tick(Instant::now());
                            resolve(waiters, out)
                        }
                        State::Follower { .. } => Vec::new(),
                    }
                };
                this.spawn_sends(sends);
            }
        }))
    }

    /// Asks every follower for its state and merges it (highest version per
    /// key, highest applied position, newest configuration), retrying the
    /// silent ones until all answered or the recovery window (twice the peer
    /// timeout) is over. On a fresh cluster this finds nothing and ends as
    /// soon as the followers answer; after a leader restart it brings back
    /// every write that a follower that answered holds.
    async fn recover(&self) {
        let cluster = self.inner.cluster.clone();
        let deadline = tokio::time::Instant::now() + cluster.peer_timeout() * 2;
        let mut silent: BTreeSet<NodeId> = cluster.peers().ids().into_iter().collect();
        let (mut best_seq, mut records) = (0, 0usize);
        while !silent.is_empty() && tokio::time::Instant::now() < deadline {
            let mut asked = tokio::task::JoinSet::new();
            for &id in &silent {
                let (t, timeout) = (cluster.transport().clone(), cluster.peer_timeout());
                asked.spawn(async move {
                    (
                        id,
                        t.get::<StateResponse>(id, "/internal/state", timeout).await,
                    )
                });
            }
            while let Some(joined) = asked.join_next().await {
                let Ok((id, Ok(state))) = joined else {
                    continue;
                };
                silent.remove(&id);
                best_seq = best_seq.max(state.applied_seq);
                records += state.records.len();
                cluster.merge_envelope(state.config);
                if let State::Leader { core, .. } = &mut *self.lock() {
                    core.recover(state.applied_seq, state.records);
                }
            }
            if !silent.is_empty() {
                tokio::time::sleep(cluster.heartbeat()).await;
            }
        }
        self.inner.recovering.store(false, Ordering::Relaxed);
        tracing::info!(
            seq = best_seq,
            records,
            ?silent,
            "leader ready: recovered the followers' state"
        );
    }

    /// Whether the leader still recovers its followers' state (writes wait).
    pub fn is_recovering(&self) -> bool {
        self.inner.recovering.load(Ordering::Relaxed)
    }

    /// `GET /internal/state` on a follower: everything it holds.
    ///
    /// # Errors
    /// 409 on the leader.
    pub fn state(&self) -> Result<StateResponse, AppError> {
        let (applied_seq, records) = match &*self.lock() {
            State::Follower { core } => core.state(),
            State::Leader { .. } => return Err(self.conflict(self.inner.cluster.node_id())),
        };
        Ok(StateResponse {
            node_id: self.inner.cluster.node_id(),
            applied_seq,
            records,
            config: self.inner.cluster.envelope(),
        })
    }

    /// Stops sending: messages in flight finish, no new one leaves.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
    }

    /// Every entry up to this sequence number is applied on this node.
    pub fn applied_seq(&self) -> Seq {
        match &*self.lock() {
            State::Leader { core, .. } => core.last_seq(),
            State::Follower { core } => core.applied_seq(),
        }
    }

    /// `POST /set`: decides the write on the leader, forwards it from a follower.
    ///
    /// # Errors
    /// 503 when W is not met in time or the leader is unreachable; the
    /// leader's own error when it refuses a forwarded write.
    pub async fn write(
        &self,
        req: SetRequest,
        forwarded_by: Option<NodeId>,
    ) -> Result<SetResponse, AppError> {
        if self.is_leader() {
            let mut resp = self.lead_write(req).await?;
            resp.forwarded_by = forwarded_by;
            Ok(resp)
        } else if forwarded_by.is_some() {
            Err(self.not_leader())
        } else {
            self.forward_write(req).await
        }
    }

    async fn lead_write(&self, req: SetRequest) -> Result<SetResponse, AppError> {
        let cluster = &self.inner.cluster;
        if self.is_recovering() {
            let mut e = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the leader is starting: it recovers its followers' state before taking writes; retry shortly",
            );
            e.body.leader = Some(cluster.node_id());
            return Err(e);
        }
        let required = cluster.config().w;
        let (tx, rx) = oneshot::channel();
        let (proposal, sends) = {
            let mut st = self.lock();
            let State::Leader { core, waiters } = &mut *st else {
                return Err(self.not_leader());
            };
            let (p, out) = core.propose(
                &req.key,
                req.value.clone(),
                required,
                cluster.write_timeout(),
                Instant::now(),
            );
            waiters.insert(p.seq, tx);
            (p, resolve(waiters, out))
        };
        let (events, seq) = (cluster.events(), proposal.seq);
        let followers = cluster.peers().ids();
        events.trace_write(
            cluster.node_id(),
            seq,
            Some(seq),
            &req.key,
            proposal.version,
            required,
            &followers,
        );
        self.spawn_sends(sends);
        let outcome = rx.await;
        if let Ok(WriteOutcome::Committed) = outcome {
            events.trace_committed(seq);
        }
        match outcome {
            Ok(WriteOutcome::Committed) => Ok(SetResponse {
                key: req.key,
                value: req.value,
                version: proposal.version,
                status: proposal.status,
                served_by: Some(cluster.node_id()),
                forwarded_by: None,
            }),
            Ok(WriteOutcome::TimedOut { acked, required }) => Err(AppError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: ErrorBody {
                    error: format!(
                        "write quorum not met: {acked} of {required} replicas hold version {} of `{}` \
                         after {} ms; the write is applied on those and may still reach the others",
                        proposal.version,
                        req.key,
                        cluster.write_timeout().as_millis()
                    ),
                    acked: Some(acked),
                    required: Some(required),
                    leader: Some(cluster.node_id()),
                },
            }),
            Err(_) => Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node stopped before the write was acknowledged",
            )),
        }
    }

    fn not_leader(&self) -> AppError {
        let leader = self.inner.cluster.peers().leader();
        let mut e = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "node {} is not the leader; send writes to node {}",
                self.inner.cluster.node_id(),
                leader.map_or("(unknown)".to_owned(), |l| l.to_string())
            ),
        );
        e.body.leader = leader;
        e
    }

    async fn forward_write(&self, req: SetRequest) -> Result<SetResponse, AppError> {
        let cluster = &self.inner.cluster;
        let Some(leader) = cluster.peers().leader() else {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the leader is not known yet (no contact since start); retry shortly",
            ));
        };
        let url = format!("{}/set", cluster.peers().url(leader).unwrap_or_default());
        let unreachable = |e: String| {
            cluster.peers().mark_down(leader, e.clone());
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("leader {leader} ({url}) is unreachable: {e}"),
            );
            err.body.leader = Some(leader);
            err
        };
        let sent = cluster
            .transport()
            .client()
            .post(&url)
            .header(FORWARDED_BY_HEADER, cluster.node_id().to_string())
            .json(&req)
            .timeout(cluster.write_timeout() + cluster.peer_timeout())
            .send()
            .await;
        let resp = sent.map_err(|e| unreachable(e.to_string()))?;
        cluster.peers().mark_up(leader);
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| {
                AppError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("leader {leader} answered: {e}"),
                )
            })
        } else {
            let body = serde_json::from_slice::<ErrorBody>(&bytes)
                .unwrap_or_else(|_| ErrorBody::new(String::from_utf8_lossy(&bytes)));
            Err(AppError {
                status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                body,
            })
        }
    }

    /// `POST /internal/replicate` on a follower: waits the ack delay (for
    /// batches with entries), applies in order, answers the applied position.
    ///
    /// # Errors
    /// 409 on the leader, which takes no replication.
    pub async fn on_replicate(&self, req: ReplicateRequest) -> Result<ReplicateResponse, AppError> {
        self.accept_from_leader(req.leader, req.config)?;
        if !req.entries.is_empty() {
            self.ack_delay().await;
        }
        let mut st = self.lock();
        match &mut *st {
            State::Follower { core } => Ok(core.on_replicate(req)),
            State::Leader { .. } => Err(self.conflict(req.leader)),
        }
    }

    /// `POST /internal/snapshot` on a follower: installs the snapshot.
    ///
    /// # Errors
    /// 409 on the leader.
    pub async fn on_snapshot(&self, req: SnapshotRequest) -> Result<ReplicateResponse, AppError> {
        self.accept_from_leader(req.leader, req.config)?;
        self.ack_delay().await;
        let mut st = self.lock();
        match &mut *st {
            State::Follower { core } => {
                tracing::info!(
                    seq = req.seq,
                    records = req.records.len(),
                    "installing snapshot"
                );
                Ok(core.on_snapshot(req))
            }
            State::Leader { .. } => Err(self.conflict(req.leader)),
        }
    }

    fn accept_from_leader(
        &self,
        leader: NodeId,
        config: Option<ConfigEnvelope>,
    ) -> Result<(), AppError> {
        if self.is_leader() {
            return Err(self.conflict(leader));
        }
        let peers = self.inner.cluster.peers();
        peers.set_leader(leader);
        peers.mark_up(leader);
        if let Some(env) = config {
            let mine = self.inner.cluster.merge_envelope(env);
            if mine.is_newer_than(&env) {
                // The leader missed a change made here while it was unreachable.
                let t = self.inner.cluster.transport().clone();
                let timeout = self.inner.cluster.peer_timeout();
                tokio::spawn(async move {
                    let _: Result<ConfigEnvelope, _> =
                        t.post(leader, "/internal/config", &mine, timeout).await;
                });
            }
        }
        Ok(())
    }

    fn conflict(&self, other: NodeId) -> AppError {
        AppError::new(
            StatusCode::CONFLICT,
            format!(
                "node {} is the leader and takes no replication; node {other} also claims to lead",
                self.inner.cluster.node_id()
            ),
        )
    }

    async fn ack_delay(&self) {
        let ms = self.inner.cluster.delays().ack_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        }
    }

    /// Fills the leader-follower fields of `/status`.
    pub fn fill_status(&self, status: &mut StatusResponse) {
        let st = self.lock();
        match &*st {
            State::Leader { core, .. } => {
                status.applied_seq = core.last_seq();
                for v in core.followers(Instant::now()) {
                    if let Some(p) = status.peers.iter_mut().find(|p| p.id == v.id) {
                        p.acked_seq = Some(v.acked_seq);
                        p.lag_entries = Some(v.lag_entries);
                        p.lag_ms = Some(v.lag_ms);
                        p.up = v.up;
                    }
                }
            }
            State::Follower { core } => status.applied_seq = core.applied_seq(),
        }
    }

    fn spawn_sends(&self, sends: Vec<(NodeId, LeaderMessage)>) {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        for (to, msg) in sends {
            let this = self.clone();
            tokio::spawn(async move { this.send(to, msg).await });
        }
    }

    /// Carries one message to a follower and feeds its fate back to the core.
    async fn send(self, to: NodeId, msg: LeaderMessage) {
        let cluster = self.inner.cluster.clone();
        let delays = cluster.delays();
        let timeout = cluster.peer_timeout() + Duration::from_millis(u64::from(delays.ack_ms));
        let env = Some(cluster.envelope());
        let (paced, fut) = {
            let t = cluster.transport().clone();
            match msg {
                LeaderMessage::Replicate(mut r) => {
                    r.config = env;
                    let paced = !r.entries.is_empty();
                    let events = cluster.events().clone();
                    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                        Box::pin(async move {
                            if let (Some(first), Some(last)) = (r.entries.first(), r.entries.last())
                            {
                                events.trace_sent(to, first.seq..=last.seq);
                            }
                            t.post(to, "/internal/replicate", &r, timeout).await
                        });
                    (paced, fut)
                }
                LeaderMessage::Snapshot(mut s) => {
                    s.config = env;
                    let timeout = timeout + Duration::from_secs(10);
                    let events = cluster.events().clone();
                    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                        Box::pin(async move {
                            events.trace_sent(to, 0..=s.seq);
                            t.post(to, "/internal/snapshot", &s, timeout).await
                        });
                    (true, fut)
                }
            }
        };
        let result: Result<ReplicateResponse, _> = if paced {
            let delay = Duration::from_millis(u64::from(delays.send_ms));
            cluster.pacer().paced(delay, fut).await
        } else {
            fut.await
        };
        let input = match result {
            Ok(resp) if resp.node_id == to => {
                cluster.events().trace_acked(to, 0..=resp.applied_seq);
                Input::Replied(resp)
            }
            Ok(resp) => Input::Failed {
                from: to,
                error: format!("node {to} answered as node {}", resp.node_id),
            },
            Err(e) => Input::Failed {
                from: to,
                error: e.to_string(),
            },
        };
        let sends = {
            let mut st = self.lock();
            match &mut *st {
                State::Leader { core, waiters } => {
                    let out = core.step(input, Instant::now());
                    resolve(waiters, out)
                }
                State::Follower { .. } => Vec::new(),
            }
        };
        self.spawn_sends(sends);
    }
}

/// Answers the waiting writes named in `out`; returns the messages to send.
fn resolve(
    waiters: &mut HashMap<Seq, oneshot::Sender<WriteOutcome>>,
    out: Vec<Output>,
) -> Vec<(NodeId, LeaderMessage)> {
    let mut sends = Vec::new();
    for o in out {
        match o {
            Output::Send { to, msg } => sends.push((to, msg)),
            Output::Committed { seq, .. } => {
                if let Some(tx) = waiters.remove(&seq) {
                    let _ = tx.send(WriteOutcome::Committed);
                }
            }
            Output::TimedOut {
                seq,
                acked,
                required,
            } => {
                if let Some(tx) = waiters.remove(&seq) {
                    let _ = tx.send(WriteOutcome::TimedOut { acked, required });
                }
            }
        }
    }
    sends
}
