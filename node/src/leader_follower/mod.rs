//! Leader-follower replication: Raft's terms, elections and log matching,
//! with the assignment's tunable W and R.
//!
//! One node leads each *term*; it orders every write into a replicated log
//! that the others follow. Any node can lead: a follower that hears nothing
//! from a leader for a random election timeout asks for votes, and a
//! majority of N elects. The pure state machine of one node is
//! [`core::Core`] (its log is [`log::Log`]); this module is its runtime:
//! HTTP in and out, timers, waiters for client writes. `sim.rs` drives five
//! cores through thousands of seeded schedules of faults (see below).
//!
//! # Guarantees
//! | what | holds when | shown by |
//! | --- | --- | --- |
//! | At most one leader per term. | always (each term belongs to one node: term t to the ((t−1) mod N)-th id) | `sim` (checked after every step) |
//! | No version of a key ever names two values, acknowledged or not. | always | `sim`; `an_uncommitted_write_never_shares_its_version_with_a_later_one` |
//! | A write answered 201 with W ≥ majority survives any failover, a crash of any minority, a restart of any minority. | at most a minority of nodes lost their memory at a time (crashed, or restarted and not caught up yet) | `sim`; `a_killed_leader_is_replaced_…` |
//! | A write answered 201 with W < majority may be lost by a failover, but never silently: the node that acknowledged it reports it rolled back (`/status`, log, dashboard), unless that node itself crashed. | as above | `sim`; `a_leader_cut_off_steps_down_and_reports_…` |
//! | A read that starts after a 201 returns that write or a newer one, when R + W > N. | the write survived (see the two rows above) | `sim` (reads checked every few steps) |
//! | A node that restarted empty never counts towards R before it caught up. | always | `a_restarted_follower_does_not_count_…` |
//! | No node reads with an R that, with the leader's W, gives R + W ≤ N while the old and the new configuration both keep R + W > N. | clocks of the nodes agree within the lease margin (500 ms) | `sim`; `lowering_w_waits_until_…` |
//! | After faults heal, every replica holds the same log and the same values. | a majority can talk | `sim` (every schedule ends so) |
//!
//! # Terms, votes, elections
//! Every message carries its sender's term; a node that sees a higher term
//! adopts it and becomes a follower, and refuses messages of older terms. A
//! follower whose election timer (random in `[T, 2T)`, T =
//! `--election-timeout-ms`) runs out first sends a **pre-vote**: "would you
//! vote for me in term t?". Peers say yes only if they heard from no leader
//! within T and the candidate's log is at least as up to date as theirs
//! (higher last term, or same last term and at least as long). Only with a
//! majority of pre-votes does it become a candidate, take term t and ask for
//! real votes; so a node coming back from a partition cannot depose a
//! healthy leader. A node grants one vote per term. A leader that heard from
//! no majority for T steps down (so a leader cut off from the majority stops
//! acknowledging W ≥ majority writes within about 2T, and stops taking writes
//! at all). `--role leader` only makes that node campaign at once in the
//! first term.
//!
//! Terms belong to the nodes in turn: node i (the i-th smallest id) only
//! campaigns in terms t with (t − 1) mod N = i − 1. So even a node that
//! restarted and forgot whom it voted for cannot help two candidates win one
//! term: there is one candidate per term.
//!
//! # The log, W and commitment
//! ```text
//! client ──POST /set──▶ follower ──forward──▶ leader: version = max(current + 1, floor),
//!                                              append (term, index), apply
//!      ┌──── append (entries after (prev_index, prev_term)), on the stream ──┤ one batch in flight per follower
//!      ▼                                                                     │
//!  follower: log matches at prev? append (undo a conflicting suffix), apply  │
//!      └──── match_index ──────────────────────────────────────────────────▶│ W holders → 201
//!                                                                            │ majority holds an entry of this term → committed
//! ```
//! Each entry is (term, index, command). A follower accepts entries only if
//! its log holds the leader's entry at `prev_index` with `prev_term`;
//! otherwise it answers where to retry from, and the leader backs up. An
//! entry that conflicts (same index, other term) is undone with everything
//! after it — the store is restored exactly, because each uncommitted entry
//! keeps what its key held before — and the leader's entry takes its place.
//! Entries are applied to the store as soon as they are appended, so a
//! replica's reads see everything it holds.
//!
//! The leader answers 201 once W replicas hold the write (itself
//! included). Separately, an entry is **committed** once a majority holds it
//! and it is of the leader's current term (earlier ones commit with it).
//! Committed entries are never undone: any node that can win an election
//! holds them (a majority has them, and voters refuse less complete logs).
//! W ≥ majority therefore means "committed when answered"; W < majority
//! means "answered before a failover is sure to keep it".
//!
//! **Rollback.** When a new leader's log lacks an entry that a node holds
//! (it never reached a majority), that node undoes it when the new leader's
//! entries arrive. Each undone write is counted in `/status`
//! (`leader_follower.rolled_back`, and `rolled_back_acknowledged` for writes
//! this node had answered 201), listed in `recent_rollbacks`, logged at WARN
//! and sent to the dashboard as an event.
//!
//! # Versions never repeat
//! The client API keeps the assignment's versions (1 for a new key, +1 per
//! write) within a term. Across terms that alone would let a new leader give
//! version 3 of a key to a new value while a write the old leader
//! acknowledged alone (and lost) also had version 3. So the first entry of
//! every term (`TermStart`) records a **version floor**: the highest version
//! in the new leader's log, plus the largest *uncommitted window* any leader
//! allowed (`--max-uncommitted`, 10 000 by default: a leader refuses writes —
//! they wait — while that many entries are not committed), plus one. Every
//! version this term hands out is at least the floor, so it is above every
//! version an earlier leader could have handed out without a majority
//! knowing (those are at most `window` writes past what the new leader
//! holds). In the first term of a new cluster the floor is 1: after a
//! failover, versions jump by about `window`. A leader takes writes only
//! once its `TermStart` is committed.
//!
//! # Nodes that restart empty
//! Everything is in memory, so a node that restarts has forgotten its log
//! and its votes. Two rules keep that from breaking the guarantees:
//! - **Catching up.** Until its log matches what the leader held when they
//!   first spoke, the node answers coordinated reads with `"current":
//!   false` (and does not count itself): it may lack writes it once
//!   acknowledged, and counting it would break R + W > N. `/status` shows
//!   `catching_up`.
//! - **Following.** It probes its peers every heartbeat (where does your
//!   log end, in which term?) and follows a leader only once it knows the
//!   current term: from a majority of nodes that kept their memory, or from
//!   fresh answers of every peer. Else it could keep a deposed leader of an
//!   older term in power.
//! - **Voting.** It votes (and campaigns) only with fresh answers (within an
//!   election timeout) of every peer, and only for a log at least as up to
//!   date as the most up-to-date of them. Else its vote could elect a leader
//!   missing a committed entry it used to hold. The price is availability:
//!   until a leader has caught it up, such a node counts for an election
//!   only while every node answers, so an election after a restart needs a
//!   majority of nodes that did not restart — and the first election of a
//!   brand-new cluster (every node starts empty) needs every node up.
//!
//! If a majority of nodes lose their memory at once, committed writes can be
//! lost (in-memory storage); a node that then meets a leader lacking an entry
//! it committed logs an error, discards its state and follows that leader.
//!
//! # Reads and R
//! `GET /get` asks the coordinator's own copy (if current) plus peers (the
//! leader first) until R current replicas answered ([`crate::reads`]), and
//! returns the **leader's** answer among them: the key as of its read index
//! (committed writes; with W below a majority, writes W replicas hold),
//! never a write still in flight — provided none of the R replicas is in a
//! newer term than that leader. Without the leader among them, or with a
//! newer term seen, the read answers 503 (a newer leader may exist; retry).
//! Leader-follower does no read repair (the log brings every replica the
//! same entries, and a repair could spread a write the next leader rolls
//! back). R = 1 on a current node: a leader answers from its read index, a
//! follower its own copy.
//!
//! # Configuration changes
//! `POST /config` on any node goes to the leader, which writes the change
//! into the log and answers once it is in force on every node. Followers use
//! the configuration the leader's messages carry. Changing W and R is done
//! so that no node reads with an R that, with the W the leader acknowledges
//! with, gives R + W ≤ N (when both configurations keep R + W > N): first both
//! rise to their larger values; a phase that lowers W waits until every node
//! reports running the phase before it (or has been silent for longer than
//! its **lease**), and a phase that lowers R waits until the writes
//! acknowledged under an older, lower W are on N − R + 1 replicas. A node
//! trusts the configuration it last heard from a leader for `--lease-ms`
//! (5 s) after the leader sent it; past that (no leader for 5 s, or cut off)
//! it is *in doubt* and its coordinated reads ask all N replicas. A leader
//! lowering W waits, for a node that does not confirm, until its lease is
//! surely over: the lease after the last message that may have reached it,
//! and the lease plus two election timeouts after this leader's election (a
//! deposed leader may still be talking to it until it steps down).
//!
//! # Timeouts
//! - A write not held by W replicas within `--write-timeout-ms` answers 503
//!   `{"error","acked","required","leader","term"}`; it is not undone and may
//!   still be committed — or rolled back if a new leader lacks it.
//! - A leader that stops leading answers its waiting writes 503 (their fate
//!   is unknown). While there is no leader, a write answers 503 at once,
//!   naming the term and the last known leader; it never hangs.
//! - A follower forwards writes to the leader of its term, over one
//!   keep-alive pool; one message is in flight per follower, entries
//!   written meanwhile travel together (up to `--max-batch`); idle followers
//!   get a heartbeat every `--heartbeat-ms`. The answer to a batch is
//!   handled after one yield to the scheduler, so that the client writes
//!   already read are proposed first and leave in the next batch (group
//!   commit: ~14 entries per append at the W3R3 peak instead of ~11,
//!   `docs/results.md`, "Answers after a yield"). A follower further behind
//!   than the leader's log (`--log-capacity` committed entries) gets a
//!   snapshot of the committed state, then the tail.
//! - Appends travel on the leader's **append stream** to each follower
//!   ([`crate::peer_stream`]): one connection, upgraded from a signed request, carrying
//!   one append and its answer at a time, each frame authenticated with the
//!   cluster secret and bounded in size. An append that finds the stream
//!   busy (a heartbeat while a batch is out) goes as a request of its own
//!   (`POST /internal/lf/append`), so nothing waits behind another message;
//!   so do appends to a follower that refuses the upgrade. A stream that
//!   breaks or does not answer within the peer timeout fails its message
//!   like a failed request (the core backs off and sends again, on a new
//!   stream); the faults injected into either node apply to each frame as
//!   they do to a request. Votes and snapshots are requests.
//!
//! # Delay profile
//! With `--delay-profile assignment`, the leader holds a send slot for 200 ms
//! after every message that carries entries, a follower waits 100 ms before
//! applying and acknowledging entries, and a replica waits 50 ms before
//! answering a read another node coordinates. Heartbeats and votes are not
//! delayed.
//!
//! # Simulation
//! `sim.rs` runs N cores on a virtual clock over a network that loses,
//! duplicates, delays and reorders messages, with partitions (one-way
//! included), pauses, crashes and restarts from empty (at most a minority
//! without memory at a time), client writes, reads and configuration
//! changes, and checks the table's invariants after every step; a failing
//! seed prints its trace and replays with `SIM_SEED=…`. Its reads are
//! idealised (R current replicas' stores read at one instant); the real read
//! path, with its messages and timeouts, is tested over HTTP.
//!
//! # Implementation caveats
//! - Everything is in memory; durability comes from replication only.
//! - A snapshot travels in chunks of `--snapshot-chunk-bytes` (1 MiB),
//!   staged by the follower and installed when the last one arrives; while
//!   any follower is sent one, the leader holds one copy of the committed
//!   store (shared by every follower that needs a snapshot). Its records are
//!   in key order, so a copy built again for the same index lists them
//!   alike and a follower resumes at the offset it staged.
//! - Node-to-node messages are signed with the cluster secret (see
//!   [`crate::security`]) but not encrypted: on an untrusted network, values
//!   can be read in transit.
//! - Membership is static (`--peers`); N cannot change.
//! - A configuration change interrupted by a failover may leave the
//!   intermediate phase (the larger W and R) in force; `POST /config` again.
//! - Reads are not linearizable in every configuration: with R = 1 a
//!   follower answers its own copy (possibly behind the leader), and with W
//!   below a majority the leader's read index holds writes a failover may
//!   roll back.

pub mod core;
pub mod endpoints;
pub mod log;
#[cfg(test)]
mod sim;

use self::core::{Clock, Core, Event, Message, Output, ProposeError, Settings};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{Aftermath, Invalid, ReplicationError};
use crate::events::wall_ms;
use crate::store::Store;
use crate::transport::TransportError;
use crate::validate;
use kv_shared::cluster::{ClusterConfig, ConfigUpdate, Seq, StatusResponse};
use kv_shared::events::{NodeEventKind, TraceOutcome};
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, LeaderFollowerStatus, SnapshotRequest, VoteRequest,
    VoteResponse, SNAPSHOT_PATH, VOTE_PATH,
};
use kv_shared::replication::{LeaderRead, VersionedValue};
use kv_shared::{ErrorBody, NodeId, Role, SetRequest, SetResponse, Term};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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

/// What the read path needs of the core, published after every step so that
/// a read takes no lock.
#[derive(Debug)]
struct ReadView {
    catching_up: AtomicBool,
    /// R of the configuration in force.
    r: AtomicU32,
    /// Until when (wall ms, as the core counts it) the configuration is trusted.
    lease_until_ms: AtomicU64,
    /// Maps instants onto the core's wall clock.
    wall_origin: (Instant, u64),
}

impl ReadView {
    fn wall_now(&self) -> u64 {
        let (origin, wall) = self.wall_origin;
        wall + u64::try_from(origin.elapsed().as_millis()).unwrap_or(0)
    }
}

struct Inner {
    cluster: Cluster,
    /// The read path's view of the core.
    read_view: ReadView,
    /// How long a configuration change may wait for a silent node's lease.
    lease_wait: Duration,
    /// Locked for a few microseconds per step; never held across `.await`.
    state: Mutex<State>,
    /// Woken after every step: writes waiting for the term to start or for
    /// room in the uncommitted window look again.
    stepped: Notify,
    stopped: AtomicBool,
    /// The append streams to the followers (see [`crate::peer_stream`]).
    links: crate::peer_stream::Links<crate::peer_stream::Appends>,
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
        log_capacity_bytes: usize::try_from(config.log_capacity_bytes).unwrap_or(usize::MAX),
        window: config.max_uncommitted.max(1),
        window_bytes: usize::try_from(config.max_uncommitted_bytes).unwrap_or(usize::MAX),
        snapshot_chunk_bytes: usize::try_from(
            config
                .snapshot_chunk_bytes
                .clamp(1, u64::from(kv_shared::limits::MAX_BATCH_BYTES)),
        )
        .unwrap_or(1024 * 1024),
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
        let start = Clock {
            now: Instant::now(),
            wall_ms: wall_ms(),
        };
        let core = Core::new(
            cluster.node_id(),
            &cluster.peers().ids(),
            store,
            cluster.config(),
            settings,
            seed,
            start,
        );
        let read_view = ReadView {
            catching_up: AtomicBool::new(true),
            r: AtomicU32::new(cluster.config().r),
            lease_until_ms: AtomicU64::new(0),
            wall_origin: (start.now, start.wall_ms),
        };
        let lease_wait = settings.lease + settings.election_timeout * 2 + settings.lease_margin;
        let cluster_peers = cluster.peers().ids();
        Self {
            inner: Arc::new(Inner {
                cluster,
                read_view,
                lease_wait,
                state: Mutex::new(State {
                    core,
                    writes: HashMap::new(),
                    changes: HashMap::new(),
                }),
                stepped: Notify::new(),
                stopped: AtomicBool::new(false),
                links: crate::peer_stream::Links::new(&cluster_peers, 1),
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

    /// Keeps what the rest of the node reads (leader, configuration, the
    /// read path's view) in step with the core.
    fn publish_view(&self, core: &Core) {
        let cluster = &self.inner.cluster;
        let v = &self.inner.read_view;
        v.catching_up
            .store(core.is_catching_up(), Ordering::Release);
        v.r.store(core.config().r, Ordering::Release);
        v.lease_until_ms
            .store(core.lease_until_ms(), Ordering::Release);
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
                // A paused node's state machine does not run (an injected fault).
                this.inner.cluster.faults().wait_unpaused().await;
                this.step(|st, now| st.core.tick(now));
            }
        }))
    }

    /// Stops sending: messages in flight finish, no new one leaves, the
    /// append streams to the followers close. (The streams this node serves
    /// end with [`crate::cluster::Cluster::stop`].)
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.links.close();
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

    /// This node's term, and — when it leads a started term — the key as
    /// of its read index (see [`Core::read_index`]).
    pub fn read_answer(&self, key: &str) -> (Term, Option<LeaderRead>) {
        let st = self.lock();
        let term = st.core.term();
        let leader_read = st.core.read_index().and_then(|index| {
            st.core
                .log()
                .value_as_of(key, index)
                .map(|copy| LeaderRead {
                    term,
                    found: copy.map(|e| VersionedValue {
                        value: e.value,
                        version: e.version,
                    }),
                })
        });
        (term, leader_read)
    }

    /// Whether this node's copy counts towards R (it is not catching up).
    /// Takes no lock.
    pub fn is_current(&self) -> bool {
        !self.inner.read_view.catching_up.load(Ordering::Acquire)
    }

    /// R as a read coordinated here must use it now: when in doubt, every
    /// replica that can count (as [`Core::read_quorum`]). Takes no lock.
    pub fn read_quorum(&self) -> u32 {
        let v = &self.inner.read_view;
        if v.wall_now() > v.lease_until_ms.load(Ordering::Acquire) {
            let n = u32::try_from(self.inner.cluster.peers().list().len() + 1).unwrap_or(u32::MAX);
            n - u32::from(!self.is_current())
        } else {
            v.r.load(Ordering::Acquire)
        }
    }

    /// The last log index applied here.
    pub fn applied_seq(&self) -> Seq {
        self.lock().core.log().last_index()
    }

    /// `POST /set`: decides the write if this node leads, forwards it to the
    /// leader otherwise.
    ///
    /// # Errors
    /// W not met in time, no leader, the leader unreachable, the term not
    /// started or the window full within the write timeout; the leader's own
    /// error for a forwarded write.
    pub async fn write(
        &self,
        req: SetRequest,
        forwarded_by: Option<NodeId>,
    ) -> Result<SetResponse, ReplicationError> {
        let timeout = self.inner.cluster.write_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.stepped.notified();
            // Time spent waiting for the term to start counts against the timeout.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let cluster = &self.inner.cluster;
            let attempt = self.step(|st, now| {
                let p = st.core.propose(&req.key, req.value.clone(), left, now)?;
                let (tx, rx) = oneshot::channel();
                st.writes.insert(p.index, tx);
                // Traced before its messages leave (they leave when the step ends).
                cluster.events().trace_write(
                    cluster.node_id(),
                    p.index,
                    Some(p.index),
                    &req.key,
                    p.version,
                    p.required,
                    &cluster.peers().ids(),
                );
                Ok((p, rx))
            });
            match attempt {
                Ok((p, rx)) => {
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
                        return Err(self.refused(e, &req.key));
                    }
                }
                Err(
                    e @ (ProposeError::ChangeInProgress | ProposeError::VersionExhausted { .. }),
                ) => {
                    return Err(self.refused(e, &req.key));
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
    ) -> Result<SetResponse, ReplicationError> {
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
            Ok(WriteOutcome::TimedOut { acked, required }) => {
                cluster
                    .events()
                    .trace_failed(p.index, TraceOutcome::Failed { acked, required });
                Err(ReplicationError::WriteQuorumNotMet {
                    key: req.key,
                    version: p.version,
                    acked,
                    required,
                    after_ms: millis(cluster.write_timeout()),
                    leader: Some(me),
                    term: Some(p.term),
                    aftermath: Aftermath::MayRollBack,
                })
            }
            Ok(WriteOutcome::Abandoned { term }) => {
                cluster
                    .events()
                    .trace_failed(p.index, TraceOutcome::Abandoned);
                Err(ReplicationError::Abandoned {
                    node: me,
                    term,
                    key: req.key,
                    version: p.version,
                    leader: self.leader(),
                })
            }
            Err(_) => Err(ReplicationError::Stopped),
        }
    }

    fn no_leader(
        &self,
        leader: Option<NodeId>,
        last_leader: Option<NodeId>,
        term: Term,
        forwarded: bool,
    ) -> ReplicationError {
        match leader {
            Some(leader) => ReplicationError::NotLeader {
                node: self.inner.cluster.node_id(),
                leader,
                term,
                forwarded,
            },
            None => ReplicationError::NoLeader { term, last_leader },
        }
    }

    /// Why the core refused a write of `key` (or a configuration change)
    /// for good, or for longer than the caller waits.
    fn refused(&self, e: ProposeError, key: &str) -> ReplicationError {
        let node = self.inner.cluster.node_id();
        let term = self.term();
        match e {
            ProposeError::NotStarted { term } => ReplicationError::TermNotStarted { node, term },
            ProposeError::WindowFull { window } => {
                ReplicationError::WindowFull { node, term, window }
            }
            ProposeError::ChangeInProgress => ReplicationError::ChangeInProgress {
                leader: self.leader(),
                term,
            },
            ProposeError::NotLeader {
                leader,
                last_leader,
                term,
            } => self.no_leader(leader, last_leader, term, false),
            ProposeError::VersionExhausted { version } => ReplicationError::VersionExhausted {
                key: key.to_owned(),
                version,
            },
        }
    }

    async fn forward_write(
        &self,
        req: SetRequest,
        leader: NodeId,
    ) -> Result<SetResponse, ReplicationError> {
        let cluster = &self.inner.cluster;
        let url = format!(
            "{}{}",
            cluster.peers().url(leader).unwrap_or_default(),
            kv_shared::SET_PATH
        );
        let term = self.term();
        let unreachable = |reason: String| {
            cluster.peers().mark_down(leader, reason.clone());
            ReplicationError::LeaderUnreachable {
                leader,
                url: url.clone(),
                reason,
                term: Some(term),
            }
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
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        leader_answer(leader, status, &bytes)
    }

    /// `POST /config`: carries out a W/R/delay change through the leader's
    /// log; answers once it is in force on every node (or on every node that
    /// still trusts its configuration).
    ///
    /// # Errors
    /// An invalid change; no leader, or leadership changing during the
    /// change; the change not in force everywhere in time.
    pub async fn change_config(
        &self,
        update: ConfigUpdate,
        forwarded: bool,
        authorization: Option<String>,
    ) -> Result<ClusterConfig, ReplicationError> {
        let _one_at_a_time = self.inner.changing.lock().await;
        let current = self.lock().core.config();
        let target = current
            .with(&update)
            .map_err(|e| ReplicationError::InvalidConfig(e.0))?;
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
            Err(e) => return Err(self.refused(e, "")),
        };
        let cluster = &self.inner.cluster;
        let limit = cluster.write_timeout() * 2 + self.inner.lease_wait;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(ChangeOutcome::Done(config))) => Ok(config),
            Ok(Ok(ChangeOutcome::Abandoned { term })) => {
                Err(ReplicationError::ConfigAbandoned { term })
            }
            Ok(Err(_)) | Err(_) => Err(ReplicationError::ConfigTimedOut {
                after_ms: millis(limit),
            }),
        }
    }

    async fn forward_config(
        &self,
        update: ConfigUpdate,
        leader: NodeId,
        authorization: Option<String>,
    ) -> Result<ClusterConfig, ReplicationError> {
        let cluster = &self.inner.cluster;
        let url = format!(
            "{}{}",
            cluster.peers().url(leader).unwrap_or_default(),
            kv_shared::CONFIG_PATH
        );
        let mut req = cluster
            .transport()
            .client()
            .post(&url)
            .header(FORWARDED_BY_HEADER, cluster.node_id().to_string())
            .json(&update)
            .timeout(cluster.write_timeout() * 3 + Duration::from_secs(10));
        if let Some(a) = authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ReplicationError::LeaderUnreachable {
                leader,
                url: url.clone(),
                reason: e.to_string(),
                term: None,
            })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        leader_answer(leader, status, &bytes)
    }

    /// Runs a check of [`crate::validate`] with what it needs of this node.
    fn check(
        &self,
        f: impl FnOnce(&validate::Context<'_>) -> Result<(), Invalid>,
    ) -> Result<(), Invalid> {
        validate::with_context(&self.inner.cluster, f)
    }

    /// `POST /internal/lf/vote`.
    ///
    /// # Errors
    /// 400 for a malformed request (see [`crate::validate`]).
    pub fn on_vote(&self, req: VoteRequest) -> Result<VoteResponse, ReplicationError> {
        self.check(|c| validate::vote(c, &req))?;
        self.refuse_cut(req.candidate)?;
        Ok(self.step(|st, now| st.core.on_vote_request(req, now)))
    }

    /// `POST /internal/lf/append`: waits the ack delay (for entries), then
    /// steps the core.
    ///
    /// # Errors
    /// 400 for a malformed request.
    pub async fn on_append(&self, req: AppendRequest) -> Result<AppendResponse, ReplicationError> {
        self.check(|c| validate::append(c, &req))?;
        self.refuse_cut(req.leader)?;
        if !req.entries.is_empty() {
            self.ack_delay().await;
        }
        self.inner.cluster.peers().mark_up(req.leader);
        Ok(self.step(|st, now| st.core.on_append(req, now)))
    }

    /// `POST /internal/lf/snapshot`.
    ///
    /// # Errors
    /// 400 for a malformed request.
    pub async fn on_snapshot(
        &self,
        req: SnapshotRequest,
    ) -> Result<AppendResponse, ReplicationError> {
        self.check(|c| validate::snapshot(c, &req))?;
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
    fn refuse_cut(&self, from: NodeId) -> Result<(), ReplicationError> {
        if self.inner.cluster.faults().cuts_from(from) {
            return Err(ReplicationError::CutOff { from });
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
                p.progress.lag_entries = Some(v.lag_entries);
                p.progress.lag_ms = Some(v.lag_ms);
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
                match r {
                    Ok(resp) if resp.from == to && validate::vote_response(&resp).is_ok() => {
                        self.step(|st, now| st.core.on_vote_response(resp, now));
                    }
                    Ok(resp) => tracing::warn!(peer = to, ?resp, "ignored a malformed vote answer"),
                    Err(_) => {}
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
                let this = self.clone();
                let send = async move {
                    if let Some((a, b)) = range {
                        events.trace_sent(to, a..=b);
                    }
                    this.inner.links.carry(&t, to, &req, timeout).await
                };
                let r = if range.is_some() {
                    let r = cluster
                        .pacer()
                        .paced(Duration::from_millis(u64::from(delays.send_ms)), send)
                        .await;
                    // Group commit: the tasks ready now (client writes already
                    // read, mostly) are proposed before this answer lets the
                    // next batch leave, so that batch carries them too.
                    tokio::task::yield_now().await;
                    r
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
            Ok(resp) if resp.from == to && validate::append_response(&resp).is_ok() => {
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

/// A duration in whole milliseconds, for messages.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The leader's answer to a forwarded request: its body on success, its own
/// error (status and body, passed on) otherwise.
fn leader_answer<T: serde::de::DeserializeOwned>(
    leader: NodeId,
    status: u16,
    bytes: &[u8],
) -> Result<T, ReplicationError> {
    if (200..300).contains(&status) {
        serde_json::from_slice(bytes).map_err(|e| ReplicationError::BadLeaderAnswer {
            leader,
            reason: e.to_string(),
        })
    } else {
        let body = serde_json::from_slice::<ErrorBody>(bytes)
            .unwrap_or_else(|_| ErrorBody::new(String::from_utf8_lossy(bytes)));
        Err(ReplicationError::Forwarded { status, body })
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
