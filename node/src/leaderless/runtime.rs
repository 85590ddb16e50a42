//! The leaderless runtime of one node: carries the [`Coordinator`]'s
//! outputs over the shared transport and feeds the results back.
//!
//! The coordinator sits behind one `std` mutex, locked for a few
//! microseconds per step and never across `.await`: a step returns outputs,
//! the local ones (apply to the store, answer a waiting client) are carried
//! out under the lock, the network ones are spawned as tasks after it is
//! released. A batch of client writes travels over the writes stream kept
//! open to its peer ([`crate::peer_stream`], one per peer: the coordinator
//! has one batch in flight per peer), or as `POST /internal/ll/write` when
//! the stream cannot carry it; hints always go as requests. A tick task
//! answers overdue writes and starts hint deliveries; the anti-entropy task
//! ([`super::anti_entropy`]) compares the store with a random peer's every
//! period.

use super::anti_entropy::AntiEntropy;
use super::coordinator::{Coordinator, Input, Output, QuorumFailure, Timing, WriteId};
use super::hlc::Stamp;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{Aftermath, ReplicationError};
use crate::peer_stream::{Links, LlWrites};
use crate::store::Store;
use kv_shared::cluster::StatusResponse;
use kv_shared::events::{NodeEventKind, TraceOutcome};
use kv_shared::leaderless::{LeaderlessStatus, LlWrite, LlWriteAck, WriteKind, LL_WRITE_PATH};
use kv_shared::replication::Record;
use kv_shared::{NodeId, SetRequest, SetResponse, Version, WriteStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the coordinator checks deadlines and hint deliveries.
const TICK: Duration = Duration::from_millis(20);

/// A client's answer: the version its write got, and how it ended.
type Reply = (Version, Result<u32, QuorumFailure>);

/// A message to carry to a peer.
enum Net {
    Replicate {
        to: NodeId,
        ids: Vec<WriteId>,
        records: Vec<Record>,
    },
    Hints {
        to: NodeId,
        records: Vec<Record>,
    },
}

struct State {
    core: Coordinator,
    /// Clients waiting for their write's outcome.
    waiters: HashMap<WriteId, oneshot::Sender<Reply>>,
}

struct Inner {
    cluster: Cluster,
    store: Store,
    /// Locked for a few microseconds per step; never held across `.await`.
    state: Mutex<State>,
    next_id: AtomicU64,
    stopped: AtomicBool,
    /// The writes stream to each peer.
    links: Links<LlWrites>,
    anti_entropy: AntiEntropy,
    /// `--max-clock-offset-ms`: a peer's clock reading further ahead of this
    /// node's wall clock is not taken.
    max_clock_offset_ms: u64,
}

/// The leaderless runtime of one node: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Leaderless {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Leaderless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaderless")
            .field("node_id", &self.inner.cluster.node_id())
            .finish()
    }
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

impl Leaderless {
    /// The runtime of a leaderless node over `store`.
    ///
    /// # Errors
    /// When the node id does not fit a version (ids above 255).
    pub fn new(
        cluster: Cluster,
        store: Store,
        config: &Config,
    ) -> Result<Self, super::hlc::NodeIdTooLarge> {
        let timing = Timing {
            write_timeout: cluster.write_timeout(),
            hint_retry: (cluster.heartbeat() * 2).max(Duration::from_millis(50)),
            max_batch: config.max_batch.max(1) as usize,
            hint_capacity: config.max_hints_per_peer as usize,
            hint_capacity_bytes: usize::try_from(config.max_hint_bytes_per_peer)
                .unwrap_or(usize::MAX),
        };
        let peers = cluster.peers().ids();
        let core = Coordinator::new(cluster.node_id(), &peers, timing)?;
        Ok(Self {
            inner: Arc::new(Inner {
                links: Links::new(&peers, 1),
                anti_entropy: AntiEntropy::new(Duration::from_millis(config.anti_entropy_ms)),
                cluster,
                store,
                state: Mutex::new(State {
                    core,
                    waiters: HashMap::new(),
                }),
                next_id: AtomicU64::new(1),
                stopped: AtomicBool::new(false),
                max_clock_offset_ms: config.max_clock_offset_ms,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's cluster context.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The anti-entropy state (digest cache, counters).
    pub fn anti_entropy(&self) -> &AntiEntropy {
        &self.inner.anti_entropy
    }

    /// Whether [`Leaderless::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Relaxed)
    }

    /// Runs `f` on the coordinator, carries out the local outputs under the
    /// lock and spawns the network ones after it.
    fn run(&self, f: impl FnOnce(&mut Coordinator) -> Vec<Output>) {
        let net = {
            let mut st = self.lock();
            let out = f(&mut st.core);
            self.resolve(&mut st, out)
        };
        self.dispatch(net);
    }

    fn resolve(&self, st: &mut State, out: Vec<Output>) -> Vec<Net> {
        let mut net = Vec::new();
        for o in out {
            match o {
                Output::ApplyLocal(r) => {
                    self.inner.store.apply(&r.key, r.value, r.version);
                }
                Output::Reply {
                    id,
                    version,
                    result,
                } => {
                    let events = self.inner.cluster.events();
                    match result {
                        Ok(_) => events.trace_committed(id),
                        Err(QuorumFailure { acked, required }) => {
                            events.trace_failed(id, TraceOutcome::Failed { acked, required })
                        }
                    }
                    if let Some(tx) = st.waiters.remove(&id) {
                        let _ = tx.send((version, result));
                    }
                }
                Output::Replicate { to, ids, records } => {
                    net.push(Net::Replicate { to, ids, records })
                }
                Output::DeliverHints { to, records } => net.push(Net::Hints { to, records }),
            }
        }
        net
    }

    fn dispatch(&self, net: Vec<Net>) {
        if self.is_stopped() {
            return;
        }
        for n in net {
            let this = self.clone();
            match n {
                Net::Replicate { to, ids, records } => {
                    tokio::spawn(async move { this.replicate(to, ids, records).await });
                }
                Net::Hints { to, records } => {
                    tokio::spawn(async move { this.deliver_hints(to, records).await });
                }
            }
        }
    }

    /// The clock's reading (highest version issued or seen).
    pub fn clock(&self) -> Version {
        self.lock().core.clock()
    }

    /// Takes note of a clock reading from a peer's message or answer,
    /// unless it runs further ahead of this node's wall clock than
    /// `--max-clock-offset-ms` (then it is logged and ignored: one peer's
    /// runaway clock must not drag every node's along).
    pub fn observe(&self, clock: Version) {
        if self.clock_ok(clock) {
            self.lock().core.observe(clock);
        }
    }

    /// Whether a peer's clock reading is within the offset limit (logs it if not).
    fn clock_ok(&self, clock: Version) -> bool {
        let offset = self.inner.max_clock_offset_ms;
        let wall = self.inner.cluster.faults().wall_ms();
        match crate::validate::clock("clock", clock, wall, offset) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("ignored a peer's clock reading: {}", e);
                false
            }
        }
    }

    /// `--max-clock-offset-ms`.
    pub fn max_clock_offset_ms(&self) -> u64 {
        self.inner.max_clock_offset_ms
    }

    /// This node's clock as its versions read it (ms since the Unix epoch;
    /// shifted by an injected skew).
    pub fn wall_ms(&self) -> u64 {
        self.inner.cluster.faults().wall_ms()
    }

    fn message(&self, kind: WriteKind, records: Vec<Record>) -> LlWrite {
        LlWrite {
            from: self.inner.cluster.node_id(),
            clock: self.clock(),
            kind,
            records,
            config: Some(self.inner.cluster.envelope()),
        }
    }

    /// Carries one batch of client writes to a replica (over the writes
    /// stream to it), through the shared send pacer of the delay profile,
    /// and reports its fate.
    async fn replicate(self, to: NodeId, ids: Vec<WriteId>, records: Vec<Record>) {
        let cluster = self.inner.cluster.clone();
        let delays = cluster.delays();
        let msg = self.message(WriteKind::Client, records);
        let timeout = cluster.peer_timeout() + ms(delays.ack_ms);
        let t = cluster.transport().clone();
        let events = cluster.events().clone();
        let traced = ids.clone();
        let this = self.clone();
        let send = async move {
            for id in traced {
                events.trace_sent(to, id..=id);
            }
            this.inner.links.carry(&t, to, &msg, timeout).await
        };
        let result = cluster.pacer().paced(ms(delays.send_ms), send).await;
        for id in &ids {
            match &result {
                Ok(_) => cluster.events().trace_acked(to, *id..=*id),
                Err(_) => cluster.events().trace_send_failed(to, *id..=*id),
            }
        }
        let input = match result {
            Ok(ack) if ack.node_id == to => Input::Replicated {
                from: to,
                ids,
                clock: if self.clock_ok(ack.clock) {
                    ack.clock
                } else {
                    0
                },
            },
            Ok(ack) => {
                tracing::warn!(
                    peer = to,
                    answered_as = ack.node_id,
                    "peer answered as another node"
                );
                Input::ReplicateFailed { to, ids }
            }
            Err(e) => {
                tracing::debug!(peer = to, error = %e, "replication failed; keeping hints");
                Input::ReplicateFailed { to, ids }
            }
        };
        self.run(|core| core.step(Instant::now(), input));
    }

    /// Hands a batch of hints (or an empty probe) to a peer.
    async fn deliver_hints(self, to: NodeId, records: Vec<Record>) {
        let cluster = self.inner.cluster.clone();
        let count = records.len();
        let msg = self.message(WriteKind::Hint, records);
        let timeout = cluster.peer_timeout();
        let result: Result<LlWriteAck, _> = cluster
            .transport()
            .post(to, LL_WRITE_PATH, &msg, timeout)
            .await;
        let input = match result {
            Ok(ack) if ack.node_id == to => {
                if count > 0 {
                    tracing::info!(peer = to, hints = count, "hints delivered");
                    cluster.events().node_event(
                        cluster.node_id(),
                        0,
                        NodeEventKind::HintsDelivered {
                            to,
                            count: u32::try_from(count).unwrap_or(u32::MAX),
                        },
                    );
                }
                Input::HintsDelivered {
                    to,
                    clock: if self.clock_ok(ack.clock) {
                        ack.clock
                    } else {
                        0
                    },
                }
            }
            _ => Input::HintsFailed { to },
        };
        self.run(|core| core.step(Instant::now(), input));
    }

    /// `POST /set`: coordinates the write; answers once W replicas hold it.
    ///
    /// # Errors
    /// [`ReplicationError::WriteQuorumNotMet`] when W is not met in time (or
    /// can no longer be met); the write is not undone.
    pub async fn write(&self, req: SetRequest) -> Result<SetResponse, ReplicationError> {
        let cluster = &self.inner.cluster;
        let local = self.inner.store.get(&req.key).map(|e| e.version);
        let status = if local.is_some() {
            WriteStatus::Updated
        } else {
            WriteStatus::Created
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let w = cluster.config().w;
        let (tx, rx) = oneshot::channel();
        let input = Input::Write {
            id,
            key: req.key.clone(),
            value: req.value.clone(),
            local,
            w,
            wall_ms: cluster.faults().wall_ms(),
        };
        let net = {
            let mut st = self.lock();
            st.waiters.insert(id, tx);
            let out = st.core.step(Instant::now(), input);
            // Traced before the outputs run, so that the dashboard sees the
            // write start before its sends and acknowledgements.
            if let Some(Output::ApplyLocal(r)) = out.first() {
                let peers = cluster.peers().ids();
                cluster.events().trace_write(
                    cluster.node_id(),
                    id,
                    None,
                    &r.key,
                    r.version,
                    w,
                    &peers,
                );
            }
            self.resolve(&mut st, out)
        };
        self.dispatch(net);
        match rx.await {
            Ok((version, Ok(_))) => Ok(SetResponse {
                key: req.key,
                value: req.value,
                version,
                status,
                served_by: Some(cluster.node_id()),
                forwarded_by: None,
            }),
            Ok((version, Err(QuorumFailure { acked, required }))) => {
                Err(ReplicationError::WriteQuorumNotMet {
                    key: req.key,
                    version,
                    acked,
                    required,
                    after_ms: u64::try_from(cluster.write_timeout().as_millis())
                        .unwrap_or(u64::MAX),
                    leader: None,
                    term: None,
                    aftermath: Aftermath::Hinted,
                })
            }
            Err(_) => Err(ReplicationError::Stopped),
        }
    }

    /// `POST /internal/ll/write` on a replica: waits the ack delay (client
    /// writes only), keeps the newer records, answers with its clock.
    pub async fn on_write(&self, msg: LlWrite) -> LlWriteAck {
        let cluster = &self.inner.cluster;
        cluster.peers().mark_up(msg.from);
        if let Some(env) = msg.config {
            cluster.merge_envelope(env);
        }
        let ack_ms = cluster.delays().ack_ms;
        if msg.kind == WriteKind::Client && ack_ms > 0 {
            tokio::time::sleep(ms(ack_ms)).await;
        }
        let mut changed = 0u32;
        let mut highest = msg.clock;
        for r in msg.records {
            highest = highest.max(r.version);
            if self.inner.store.apply(&r.key, r.value, r.version) {
                changed += 1;
            }
        }
        let from = msg.from;
        self.run(|core| {
            core.observe(highest);
            core.step(
                Instant::now(),
                Input::Heard {
                    from,
                    clock: highest,
                },
            )
        });
        LlWriteAck {
            node_id: cluster.node_id(),
            clock: self.clock(),
            changed,
        }
    }

    /// Starts the tick task and the anti-entropy task; returns them for the
    /// caller to abort on stop.
    pub fn spawn_background(&self) -> Vec<JoinHandle<()>> {
        let this = self.clone();
        let tick = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !this.is_stopped() {
                ticker.tick().await;
                this.inner.cluster.faults().wait_unpaused().await;
                this.tick();
            }
        });
        let ae = tokio::spawn(super::anti_entropy::run(self.clone()));
        vec![tick, ae]
    }

    /// One tick: deadlines, hint deliveries, and peers the health prober saw
    /// come back (so that hints flow without waiting for the next retry).
    fn tick(&self) {
        let peers = self.inner.cluster.peers().clone();
        self.run(|core| {
            let now = Instant::now();
            let mut out = Vec::new();
            for id in peers.ids() {
                if !core.believes_up(id) && peers.is_up(id) {
                    out.extend(core.step(now, Input::Heard { from: id, clock: 0 }));
                }
            }
            out.extend(core.tick(now));
            out
        });
    }

    /// Stops sending: messages in flight finish, no new one leaves, the
    /// writes streams to the peers close. (The streams this node serves end
    /// with [`crate::cluster::Cluster::stop`].)
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.links.close();
    }

    /// Fills the leaderless fields of `/status`.
    pub fn fill_status(&self, status: &mut StatusResponse) {
        let (clock, total, dropped, delivered, failed) = {
            let st = self.lock();
            for p in &mut status.peers {
                p.progress.pending_hints = Some(st.core.pending_hints(p.id));
            }
            let h = st.core.hints();
            (
                st.core.clock(),
                h.total_pending(),
                h.dropped(),
                h.delivered(),
                st.core.failed_writes(),
            )
        };
        let ae = self.inner.anti_entropy.stats();
        status.leaderless = Some(LeaderlessStatus {
            clock,
            clock_ms: Stamp::unpack(clock).unix_ms(),
            pending_hints: total,
            dropped_hints: dropped,
            delivered_hints: delivered,
            writes_failed: failed,
            anti_entropy_ms: self.inner.anti_entropy.period().as_millis() as u64,
            anti_entropy_rounds: ae.rounds,
            anti_entropy_keys_repaired: ae.keys_repaired,
            last_anti_entropy: ae.last,
        });
    }
}
