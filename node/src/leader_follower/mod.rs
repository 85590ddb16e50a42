//! Leader-follower replication: Raft's terms, elections and log matching,
//! with the assignment's tunable W and R.
//!
//! NARRATIVE-PLACEHOLDER

pub mod core;
pub mod log;
#[cfg(test)]
mod sim;

use self::core::{Clock, Core, Event, Message, Output, ProposeError, Settings};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::AppError;
use crate::events::wall_ms;
use crate::store::Store;
use crate::transport::TransportError;
use axum::http::StatusCode;
use kv_shared::cluster::{ClusterConfig, ConfigUpdate, Seq, StatusResponse};
use kv_shared::events::NodeEventKind;
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, LeaderFollowerStatus, SnapshotRequest, VoteRequest,
    VoteResponse, APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH,
};
use kv_shared::{ErrorBody, NodeId, Role, SetRequest, SetResponse, Term};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// Header a follower sets when it forwards a write or a configuration change,
/// so that a misdirected forward is refused instead of bouncing between followers.
pub const FORWARDED_BY_HEADER: &str = "x-kv-forwarded-by";

/// How often the core's clock advances (elections, heartbeats, deadlines).
const TICK: Duration = Duration::from_millis(10);

/// Added to the lease by a leader waiting for a silent node's to end.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// How a write waiting for its quorum ended.
#[derive(Debug, Clone, Copy)]
enum WriteOutcome {
    Acked,
    TimedOut { acked: u32, required: u32 },
    Abandoned { term: Term },
}

/// How a configuration change ended.
#[derive(Debug, Clone, Copy)]
enum ChangeOutcome {
    Done(ClusterConfig),
    Abandoned { term: Term },
}

struct State {
    core: Core,
    writes: HashMap<Seq, oneshot::Sender<WriteOutcome>>,
    changes: HashMap<u64, oneshot::Sender<ChangeOutcome>>,
}

struct Inner {
    cluster: Cluster,
    /// How long a configuration change may wait for a silent node's lease.
    lease_wait: Duration,
    /// Locked for a few microseconds per step; never held across `.await`.
    state: Mutex<State>,
    /// Woken after every step: writes waiting for the term to start or for
    /// room in the uncommitted window look again.
    stepped: Notify,
    stopped: AtomicBool,
    /// One configuration change at a time.
    changing: tokio::sync::Mutex<()>,
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
            .finish()
    }
}

/// The core's settings from the node's flags.
pub fn settings(config: &Config, cluster: &Cluster) -> Settings {
    let election_timeout = Duration::from_millis(config.election_timeout_ms.max(20));
    Settings {
        election_timeout,
        heartbeat: cluster.heartbeat(),
        max_batch: config.max_batch.max(1) as usize,
        log_capacity: config.log_capacity.max(1) as usize,
        window: config.max_uncommitted.max(1),
        lease: Duration::from_millis(config.lease_ms).max(election_timeout),
        lease_margin: LEASE_MARGIN,
        // The HTTP timeout reports a lost message first; this only guards the core.
        rpc_timeout: cluster.peer_timeout() * 3 + Duration::from_secs(2),
        campaign_first: cluster.role() == Role::Leader,
    }
}

impl LeaderFollower {
    /// The runtime of a node of `cluster`, over `store`.
    pub fn new(cluster: Cluster, store: Store, config: &Config) -> Self {
        let settings = settings(config, &cluster);
        let seed = wall_ms() ^ (u64::from(cluster.node_id()) << 32);
        let core = Core::new(
            cluster.node_id(),
            &cluster.peers().ids(),
            store,
            cluster.config(),
            settings,
            seed,
            Clock {
                now: Instant::now(),
                wall_ms: wall_ms(),
            },
        );
        let lease_wait = settings.lease + settings.election_timeout * 2 + settings.lease_margin;
        Self {
            inner: Arc::new(Inner {
                cluster,
                lease_wait,
                state: Mutex::new(State {
                    core,
                    writes: HashMap::new(),
                    changes: HashMap::new(),
                }),
                stepped: Notify::new(),
                stopped: AtomicBool::new(false),
                changing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the core, then answers the waiters and carries out the
    /// messages and events it queued (outside the lock).
    fn step<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let now = Instant::now();
        let (result, sends, events) = {
            let mut st = self.lock();
            let result = f(&mut st, now);
            let (sends, events) = resolve(&mut st);
            self.publish_view(&st.core);
            (result, sends, events)
        };
        for e in events {
            self.report(e);
        }
        self.spawn_sends(sends);
        self.inner.stepped.notify_waiters();
        result
    }

    /// Keeps what the rest of the node reads (leader, configuration) in step with the core.
    fn publish_view(&self, core: &Core) {
        let cluster = &self.inner.cluster;
        match core.leader() {
            Some(l) => cluster.peers().set_leader(l),
            None => cluster.peers().clear_leader(),
        }
        if cluster.config() != core.config() {
            cluster.set_config(core.config());
        }
    }

    /// Starts the tick loop (elections, heartbeats, deadlines). Returns the
    /// task to abort on stop.
    pub fn spawn_background(&self) -> Option<tokio::task::JoinHandle<()>> {
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !this.inner.stopped.load(Ordering::Relaxed) {
                ticker.tick().await;
                this.step(|st, now| st.core.tick(now));
            }
        }))
    }

    /// Stops sending: messages in flight finish, no new one leaves.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
    }

    /// The node's role now.
    pub fn role(&self) -> Role {
        self.lock().core.role()
    }

    /// The node's current term.
    pub fn term(&self) -> Term {
        self.lock().core.term()
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.lock().core.leader()
    }

    /// Whether this node takes writes now: it leads and its term started, or
    /// it follows a known leader it trusts (and forwards to it).
    pub fn is_ready(&self) -> bool {
        let st = self.lock();
        st.core.is_started_leader()
            || (!st.core.is_leader()
                && st.core.leader().is_some()
                && !st.core.is_in_doubt(Instant::now()))
    }

    /// Whether this node's copy counts towards R (it is not catching up).
    pub fn is_current(&self) -> bool {
        !self.lock().core.is_catching_up()
    }

    /// R as a read coordinated here must use it now (N when in doubt).
    pub fn read_quorum(&self) -> u32 {
        self.lock().core.read_quorum(Instant::now())
    }

    /// The last log index applied here.
    pub fn applied_seq(&self) -> Seq {
        self.lock().core.log().last_index()
    }

    /// `POST /set`: decides the write if this node leads, forwards it to the
    /// leader otherwise.
    ///
    /// # Errors
    /// 503 when W is not met in time, there is no leader, or the leader is
    /// unreachable; the leader's own error for a forwarded write.
    pub async fn write(
        &self,
        req: SetRequest,
        forwarded_by: Option<NodeId>,
    ) -> Result<SetResponse, AppError> {
        let timeout = self.inner.cluster.write_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.stepped.notified();
            let attempt = self.step(|st, now| {
                let p = st.core.propose(&req.key, req.value.clone(), timeout, now)?;
                let (tx, rx) = oneshot::channel();
                st.writes.insert(p.index, tx);
                Ok((p, rx))
            });
            match attempt {
                Ok((p, rx)) => {
                    let cluster = &self.inner.cluster;
                    cluster.events().trace_write(
                        cluster.node_id(),
                        p.index,
                        Some(p.index),
                        &req.key,
                        p.version,
                        p.required,
                        &cluster.peers().ids(),
                    );
                    let outcome = rx.await;
                    return self.answer_write(req, forwarded_by, p, outcome);
                }
                Err(ProposeError::NotLeader {
                    leader,
                    last_leader,
                    term,
                }) => {
                    return match (forwarded_by, leader) {
                        (None, Some(l)) => self.forward_write(req, l).await,
                        _ => Err(self.no_leader(leader, last_leader, term, forwarded_by.is_some())),
                    };
                }
                Err(e @ (ProposeError::NotStarted { .. } | ProposeError::WindowFull { .. })) => {
                    // Wait for the term to start or for room, within the write timeout.
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(self.not_now(e));
                    }
                }
                Err(ProposeError::ChangeInProgress) => {
                    return Err(self.not_now(ProposeError::ChangeInProgress));
                }
            }
        }
    }

    fn answer_write(
        &self,
        req: SetRequest,
        forwarded_by: Option<NodeId>,
        p: self::core::Proposal,
        outcome: Result<WriteOutcome, oneshot::error::RecvError>,
    ) -> Result<SetResponse, AppError> {
        let cluster = &self.inner.cluster;
        let me = cluster.node_id();
        match outcome {
            Ok(WriteOutcome::Acked) => {
                cluster.events().trace_committed(p.index);
                Ok(SetResponse {
                    key: req.key,
                    value: req.value,
                    version: p.version,
                    status: p.status,
                    served_by: Some(me),
                    forwarded_by,
                })
            }
            Ok(WriteOutcome::TimedOut { acked, required }) => Err(AppError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: ErrorBody {
                    error: format!(
                        "write quorum not met: {acked} of {required} replicas hold version {} of `{}` \
                         after {} ms; the write is applied on those and may still reach the others \
                         (or be rolled back if a new leader lacks it)",
                        p.version,
                        req.key,
                        cluster.write_timeout().as_millis()
                    ),
                    acked: Some(acked),
                    required: Some(required),
                    leader: Some(me),
                    term: Some(p.term),
                },
            }),
            Ok(WriteOutcome::Abandoned { term }) => {
                let mut e = AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "node {me} stopped leading (term {term}) before version {} of `{}` reached W \
                         replicas; it may survive or be rolled back",
                        p.version, req.key
                    ),
                );
                e.body.term = Some(term);
                e.body.leader = self.leader();
                Err(e)
            }
            Err(_) => Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node stopped before the write was acknowledged",
            )),
        }
    }

    fn no_leader(
        &self,
        leader: Option<NodeId>,
        last_leader: Option<NodeId>,
        term: Term,
        forwarded: bool,
    ) -> AppError {
        let me = self.inner.cluster.node_id();
        let last = last_leader.map_or("none yet".to_owned(), |l| format!("node {l}"));
        let message = match (forwarded, leader) {
            (true, Some(l)) => format!(
                "node {me} is not the leader of term {term}; node {l} is (a forwarded write is not forwarded again)"
            ),
            (true, None) | (false, None) => format!(
                "no leader in term {term} (last known leader: {last}); an election is under way, retry shortly"
            ),
            (false, Some(l)) => format!("node {me} is not the leader; node {l} is"),
        };
        let mut e = AppError::new(StatusCode::SERVICE_UNAVAILABLE, message);
        e.body.leader = leader.or(last_leader);
        e.body.term = Some(term);
        e
    }

    fn not_now(&self, e: ProposeError) -> AppError {
        let me = self.inner.cluster.node_id();
        let term = self.term();
        let message = match e {
            ProposeError::NotStarted { term } => format!(
                "node {me} was elected leader of term {term} and has not committed its first entry yet \
                 (no majority answered within the write timeout)"
            ),
            ProposeError::WindowFull { window } => format!(
                "node {me} holds {window} entries no majority has acknowledged yet: the followers \
                 lag behind; retry shortly"
            ),
            ProposeError::ChangeInProgress => "a configuration change is in progress".into(),
            ProposeError::NotLeader { .. } => format!("node {me} is not the leader"),
        };
        let mut err = AppError::new(StatusCode::SERVICE_UNAVAILABLE, message);
        err.body.leader = self.leader();
        err.body.term = Some(term);
        err
    }

    async fn forward_write(
        &self,
        req: SetRequest,
        leader: NodeId,
    ) -> Result<SetResponse, AppError> {
        let cluster = &self.inner.cluster;
        let url = format!("{}/set", cluster.peers().url(leader).unwrap_or_default());
        let term = self.term();
        let unreachable = |e: String| {
            cluster.peers().mark_down(leader, e.clone());
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("leader {leader} ({url}) is unreachable: {e}"),
            );
            err.body.leader = Some(leader);
            err.body.term = Some(term);
            err
        };
        if cluster.faults().cuts_to(leader) {
            return Err(unreachable("cut off by an injected fault".into()));
        }
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

    /// `POST /config`: carries out a W/R/delay change through the leader's
    /// log; answers once it is in force on every node (or on every node that
    /// still trusts its configuration).
    ///
    /// # Errors
    /// 400 for an invalid change; 503 without a leader or when leadership
    /// changes during the change.
    pub async fn change_config(
        &self,
        update: ConfigUpdate,
        forwarded: bool,
        authorization: Option<String>,
    ) -> Result<ClusterConfig, AppError> {
        let _one_at_a_time = self.inner.changing.lock().await;
        let current = self.lock().core.config();
        let target = current
            .with(&update)
            .map_err(|e| AppError::bad_request(e.0))?;
        let attempt = self.step(|st, now| {
            let id = st.core.change_config(target, now)?;
            let (tx, rx) = oneshot::channel();
            st.changes.insert(id, tx);
            Ok::<_, ProposeError>(rx)
        });
        let rx = match attempt {
            Ok(rx) => rx,
            Err(ProposeError::NotLeader {
                leader,
                last_leader,
                term,
            }) => {
                return match (forwarded, leader) {
                    (false, Some(l)) => self.forward_config(update, l, authorization).await,
                    _ => Err(self.no_leader(leader, last_leader, term, forwarded)),
                };
            }
            Err(e) => return Err(self.not_now(e)),
        };
        let cluster = &self.inner.cluster;
        let limit = cluster.write_timeout() * 2 + self.inner.lease_wait;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(ChangeOutcome::Done(config))) => Ok(config),
            Ok(Ok(ChangeOutcome::Abandoned { term })) => {
                let mut e = AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "leadership changed (term {term}) during the configuration change; \
                         read /config and retry"
                    ),
                );
                e.body.term = Some(term);
                Err(e)
            }
            Ok(Err(_)) | Err(_) => Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the configuration change did not reach every node within {} ms; it goes on \
                     in the background (see /status)",
                    limit.as_millis()
                ),
            )),
        }
    }

    async fn forward_config(
        &self,
        update: ConfigUpdate,
        leader: NodeId,
        authorization: Option<String>,
    ) -> Result<ClusterConfig, AppError> {
        let cluster = &self.inner.cluster;
        let url = format!("{}/config", cluster.peers().url(leader).unwrap_or_default());
        let mut req = cluster
            .transport()
            .client()
            .post(&url)
            .header(FORWARDED_BY_HEADER, cluster.node_id().to_string())
            .json(&update)
            .timeout(cluster.write_timeout() * 3 + Duration::from_secs(10));
        if let Some(a) = authorization {
            req = req.header(axum::http::header::AUTHORIZATION, a);
        }
        let resp = req.send().await.map_err(|e| {
            let mut err = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("leader {leader} ({url}) is unreachable: {e}"),
            );
            err.body.leader = Some(leader);
            err
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
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

    /// `POST /internal/lf/vote`.
    pub fn on_vote(&self, req: VoteRequest) -> Result<VoteResponse, AppError> {
        self.refuse_cut(req.candidate)?;
        Ok(self.step(|st, now| st.core.on_vote_request(req, now)))
    }

    /// `POST /internal/lf/append`: waits the ack delay (for entries), then
    /// steps the core.
    pub async fn on_append(&self, req: AppendRequest) -> Result<AppendResponse, AppError> {
        self.refuse_cut(req.leader)?;
        if !req.entries.is_empty() {
            self.ack_delay().await;
        }
        self.inner.cluster.peers().mark_up(req.leader);
        Ok(self.step(|st, now| st.core.on_append(req, now)))
    }

    /// `POST /internal/lf/snapshot`.
    pub async fn on_snapshot(&self, req: SnapshotRequest) -> Result<AppendResponse, AppError> {
        self.refuse_cut(req.leader)?;
        self.ack_delay().await;
        tracing::info!(
            index = req.last_index,
            records = req.records.len(),
            leader = req.leader,
            "installing a snapshot"
        );
        Ok(self.step(|st, now| st.core.on_snapshot(req, now)))
    }

    /// Messages from a peer cut off by an injected fault are refused as if
    /// they never arrived.
    fn refuse_cut(&self, from: NodeId) -> Result<(), AppError> {
        if self.inner.cluster.faults().cuts_from(from) {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("messages from node {from} are cut off by an injected fault"),
            ));
        }
        Ok(())
    }

    async fn ack_delay(&self) {
        let ms = self.inner.cluster.delays().ack_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        }
    }

    /// Fills the leader-follower fields of `/status`.
    pub fn fill_status(&self, status: &mut StatusResponse) {
        let now = Instant::now();
        let st = self.lock();
        let core = &st.core;
        status.role = core.role();
        status.leader = core.leader();
        status.applied_seq = core.log().last_index();
        status.config = core.config();
        for v in core.followers(now) {
            if let Some(p) = status.peers.iter_mut().find(|p| p.id == v.id) {
                p.acked_seq = Some(v.match_index);
                p.lag_entries = Some(v.lag_entries);
                p.lag_ms = Some(v.lag_ms);
                p.up = v.up;
            }
        }
        for p in &mut status.peers {
            p.role = if Some(p.id) == core.leader() {
                Role::Leader
            } else {
                Role::Follower
            };
        }
        let (rolled_back, rolled_back_acknowledged) = core.rolled_back();
        status.leader_follower = Some(LeaderFollowerStatus {
            term: core.term(),
            voted_for: core.voted_for(),
            commit_seq: core.commit(),
            log_start: core.log().first_index(),
            floor: core.floor(),
            catching_up: core.is_catching_up(),
            in_doubt: core.is_in_doubt(now),
            elections: core.elections(),
            rolled_back,
            rolled_back_acknowledged,
            recent_rollbacks: core.recent_rollbacks(),
            config_change: core.config_change(),
        });
    }

    fn spawn_sends(&self, sends: Vec<(NodeId, Message)>) {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        for (to, msg) in sends {
            let this = self.clone();
            tokio::spawn(async move { this.send(to, msg).await });
        }
    }

    /// Carries one message to a peer and feeds the answer (or the failure)
    /// back to the core.
    async fn send(self, to: NodeId, msg: Message) {
        let cluster = self.inner.cluster.clone();
        if cluster.faults().cuts_to(to) {
            let stamp = match &msg {
                Message::Append(a) => Some(a.sent_at_ms),
                Message::Snapshot(s) => Some(s.sent_at_ms),
                Message::Vote(_) => None,
            };
            if let Some(stamp) = stamp {
                self.step(|st, now| st.core.on_send_failed(to, stamp, true, now));
            }
            return;
        }
        let delays = cluster.delays();
        let t = cluster.transport().clone();
        let timeout = cluster.peer_timeout() + Duration::from_millis(u64::from(delays.ack_ms));
        match msg {
            Message::Vote(req) => {
                let r: Result<VoteResponse, TransportError> =
                    t.post(to, VOTE_PATH, &req, cluster.peer_timeout()).await;
                if let Ok(resp) = r {
                    self.step(|st, now| st.core.on_vote_response(resp, now));
                }
            }
            Message::Append(req) => {
                let range = req
                    .entries
                    .first()
                    .map(|f| f.index)
                    .zip(req.entries.last().map(|l| l.index));
                let stamp = req.sent_at_ms;
                let events = cluster.events().clone();
                let send = async move {
                    if let Some((a, b)) = range {
                        events.trace_sent(to, a..=b);
                    }
                    t.post::<_, AppendResponse>(to, APPEND_PATH, &req, timeout)
                        .await
                };
                let r = if range.is_some() {
                    cluster
                        .pacer()
                        .paced(Duration::from_millis(u64::from(delays.send_ms)), send)
                        .await
                } else {
                    send.await
                };
                self.answered(to, stamp, r);
            }
            Message::Snapshot(req) => {
                let events = cluster.events().clone();
                let upto = req.last_index;
                let stamp = req.sent_at_ms;
                let send = async move {
                    events.trace_sent(to, 0..=upto);
                    t.post::<_, AppendResponse>(
                        to,
                        SNAPSHOT_PATH,
                        &req,
                        timeout + Duration::from_secs(10),
                    )
                    .await
                };
                let r = cluster
                    .pacer()
                    .paced(Duration::from_millis(u64::from(delays.send_ms)), send)
                    .await;
                self.answered(to, stamp, r);
            }
        }
    }

    fn answered(&self, to: NodeId, stamp: u64, r: Result<AppendResponse, TransportError>) {
        match r {
            Ok(resp) if resp.from == to => {
                if resp.success {
                    self.inner
                        .cluster
                        .events()
                        .trace_acked(to, 0..=resp.match_index);
                }
                self.step(|st, now| st.core.on_append_response(resp, now));
            }
            Err(
                TransportError::Refused(_)
                | TransportError::Cut(_)
                | TransportError::UnknownPeer(_),
            ) => self.step(|st, now| st.core.on_send_failed(to, stamp, true, now)),
            Ok(_) | Err(_) => self.step(|st, now| st.core.on_send_failed(to, stamp, false, now)),
        }
    }

    /// Logs an event of the core and shows it on the dashboard.
    fn report(&self, e: Event) {
        let cluster = &self.inner.cluster;
        let term = self.term();
        let kind = match e {
            Event::PreVote { term } => {
                tracing::info!(term, "no leader heard: asking for pre-votes");
                NodeEventKind::PreVote
            }
            Event::Campaign { term } => {
                tracing::info!(term, "campaigning");
                NodeEventKind::Campaign
            }
            Event::Voted { term, candidate } => {
                tracing::info!(term, candidate, "voted");
                NodeEventKind::Voted { candidate }
            }
            Event::Elected { term, votes, floor } => {
                tracing::info!(term, ?votes, floor, "elected leader");
                NodeEventKind::Elected { votes, floor }
            }
            Event::SteppedDown { term, reason } => {
                tracing::warn!(term, %reason, "stepped down");
                NodeEventKind::SteppedDown { reason }
            }
            Event::Following { term, leader } => {
                tracing::info!(term, leader, "following");
                NodeEventKind::Following { leader }
            }
            Event::TermStarted { term } => {
                tracing::info!(term, "term started: taking writes");
                NodeEventKind::TermStarted
            }
            Event::RolledBack(w) => {
                tracing::warn!(
                    key = %w.key,
                    version = w.version,
                    index = w.index,
                    term = w.term,
                    acknowledged = w.acknowledged,
                    "rolled back a write the elected leader does not hold"
                );
                NodeEventKind::RolledBack {
                    key: w.key,
                    version: w.version,
                    index: w.index,
                    acknowledged: w.acknowledged,
                }
            }
            Event::CaughtUp { index } => {
                tracing::info!(index, "caught up with the leader: counts towards R again");
                NodeEventKind::CaughtUp { index }
            }
            Event::ConfigInForce { config } => {
                tracing::info!(w = config.w, r = config.r, "configuration in force");
                NodeEventKind::ConfigInForce { config }
            }
        };
        cluster.events().node_event(cluster.node_id(), term, kind);
    }
}

/// Answers the waiters named in the core's outputs; returns the messages to
/// send and the events to report.
fn resolve(st: &mut State) -> (Vec<(NodeId, Message)>, Vec<Event>) {
    let mut sends = Vec::new();
    let mut events = Vec::new();
    for o in st.core.take_outputs() {
        match o {
            Output::Send { to, msg } => sends.push((to, msg)),
            Output::Acked { index, .. } => answer(&mut st.writes, index, WriteOutcome::Acked),
            Output::TimedOut {
                index,
                acked,
                required,
            } => answer(
                &mut st.writes,
                index,
                WriteOutcome::TimedOut { acked, required },
            ),
            Output::Abandoned { index, term } => {
                answer(&mut st.writes, index, WriteOutcome::Abandoned { term })
            }
            Output::ConfigDone { id, config } => {
                if let Some(tx) = st.changes.remove(&id) {
                    let _ = tx.send(ChangeOutcome::Done(config));
                }
            }
            Output::ConfigAbandoned { id, term } => {
                if let Some(tx) = st.changes.remove(&id) {
                    let _ = tx.send(ChangeOutcome::Abandoned { term });
                }
            }
            Output::Event(e) => events.push(e),
        }
    }
    (sends, events)
}

fn answer(writes: &mut HashMap<Seq, oneshot::Sender<WriteOutcome>>, index: Seq, o: WriteOutcome) {
    if let Some(tx) = writes.remove(&index) {
        let _ = tx.send(o);
    }
}
