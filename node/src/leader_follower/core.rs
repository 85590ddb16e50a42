//! The replication state machine of one leader-follower node, without sockets.
//!
//! [`Core`] is one node: follower, pre-candidate, candidate or leader, with
//! its term, its vote and its [`Log`]. The runtime feeds it inputs — a
//! message from a peer, the answer to a message it sent, a client write, the
//! passing of time — and carries out the [`Output`]s it queues: messages to
//! send, writes to answer, events to show. Time and randomness come from the
//! caller (`now` in every call, a seed at construction), so the seeded
//! simulation in `sim.rs` drives five of these through any schedule.
//!
//! The module narrative in `leader_follower/mod.rs` explains the protocol and
//! its guarantees; comments here say why each rule is there.

use super::log::{Base, Log};
use crate::store::Store;
use kv_shared::cluster::{ClusterConfig, Seq};
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, Command, LogEntry, RolledBackWrite, SnapshotRequest,
    VoteRequest, VoteResponse,
};
use kv_shared::replication::Record;
use kv_shared::{NodeId, Term, Version, WriteStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most rolled-back writes kept for `/status`.
pub const RECENT_ROLLBACKS: usize = 64;

/// Tuning of a node's core.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Followers that hear nothing from a leader for a random time in
    /// `[election_timeout, 2 × election_timeout)` start an election; a leader
    /// that hears from no majority for this long steps down.
    pub election_timeout: Duration,
    /// A leader sends something to every follower at least this often.
    pub heartbeat: Duration,
    /// Most entries in one append message.
    pub max_batch: usize,
    /// Committed entries kept for catch-up; a follower further behind gets a snapshot.
    pub log_capacity: usize,
    /// The same in bytes (whichever limit is reached first).
    pub log_capacity_bytes: usize,
    /// Most entries the leader holds beyond its commit point; further writes wait.
    pub window: u64,
    /// The same in bytes.
    pub window_bytes: usize,
    /// Most bytes of records in one snapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// How long a node trusts the configuration it last heard from a leader.
    pub lease: Duration,
    /// Added to the lease by a leader that waits for a silent node's to end
    /// (clock drift and message delay).
    pub lease_margin: Duration,
    /// A message without an answer after this long is taken as lost.
    pub rpc_timeout: Duration,
    /// `--role leader`: campaign at once in the first term instead of waiting
    /// a random election timeout.
    pub campaign_first: bool,
}

/// A message to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A (pre-)vote request.
    Vote(VoteRequest),
    /// Entries or a heartbeat.
    Append(AppendRequest),
    /// The committed state.
    Snapshot(SnapshotRequest),
}

/// Something the core reports, for logs and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node asks its peers whether they would vote for it in `term`.
    PreVote {
        /// The term it would campaign in.
        term: Term,
    },
    /// The node became a candidate in `term`.
    Campaign {
        /// Its new term.
        term: Term,
    },
    /// The node granted its vote to `candidate`.
    Voted {
        /// The term.
        term: Term,
        /// The candidate.
        candidate: NodeId,
    },
    /// The node won the election of `term`.
    Elected {
        /// The term.
        term: Term,
        /// Who voted for it (itself included).
        votes: Vec<NodeId>,
        /// The version floor of the term.
        floor: Version,
    },
    /// The node stopped leading.
    SteppedDown {
        /// Its term afterwards.
        term: Term,
        /// Why.
        reason: String,
    },
    /// The node follows `leader` in `term`.
    Following {
        /// The term.
        term: Term,
        /// The leader.
        leader: NodeId,
    },
    /// The leader's first entry of its term is committed: it takes writes.
    TermStarted {
        /// The term.
        term: Term,
    },
    /// A write was undone: the elected leader's log does not hold it.
    RolledBack(RolledBackWrite),
    /// The node caught up with the leader after its start.
    CaughtUp {
        /// The index it reached.
        index: Seq,
    },
    /// The configuration in force changed (on the leader: a phase entry
    /// appended; on a follower: adopted from the leader).
    ConfigInForce {
        /// The configuration.
        config: ClusterConfig,
    },
}

/// What the runtime must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to `to`; report the answer or the failure.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// The write at `index` is held by W replicas: answer 201.
    Acked {
        /// Its log index.
        index: Seq,
        /// Replicas holding it, this leader included.
        acked: u32,
    },
    /// The write at `index` did not reach W replicas in time: answer 503.
    TimedOut {
        /// Its log index.
        index: Seq,
        /// Replicas holding it.
        acked: u32,
        /// Its W.
        required: u32,
    },
    /// The leader stopped leading before the write at `index` reached W.
    Abandoned {
        /// Its log index.
        index: Seq,
        /// The node's term now.
        term: Term,
    },
    /// A configuration change finished: in force on every node (or on every
    /// node that is not in doubt).
    ConfigDone {
        /// Which change.
        id: u64,
        /// The configuration in force.
        config: ClusterConfig,
    },
    /// A configuration change could not finish (leadership lost).
    ConfigAbandoned {
        /// Which change.
        id: u64,
        /// The node's term now.
        term: Term,
    },
    /// Something to show.
    Event(Event),
}

/// Why a client write was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// This node does not lead; `leader` is the one it knows in `term`.
    NotLeader {
        /// The leader of the current term, if known.
        leader: Option<NodeId>,
        /// The last leader this node knew of, in any term.
        last_leader: Option<NodeId>,
        /// The node's term.
        term: Term,
    },
    /// The leader was elected but its first entry is not committed yet.
    NotStarted {
        /// Its term.
        term: Term,
    },
    /// The leader holds `window` uncommitted entries: a majority lags behind.
    WindowFull {
        /// The limit.
        window: u64,
    },
    /// A configuration change is in progress (leader only).
    ChangeInProgress,
    /// The key is at the highest version the cluster hands out.
    VersionExhausted {
        /// Its version.
        version: Version,
    },
}

/// A write the leader accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Its log index.
    pub index: Seq,
    /// Its term.
    pub term: Term,
    /// The key's new version.
    pub version: Version,
    /// Whether the key was created.
    pub status: WriteStatus,
    /// Its W.
    pub required: u32,
}

/// The leader's view of one follower, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    /// The follower.
    pub id: NodeId,
    /// The last index known to match the leader's log.
    pub match_index: Seq,
    /// Entries it is behind the leader.
    pub lag_entries: u64,
    /// Age of the oldest entry it does not hold, in ms.
    pub lag_ms: u64,
    /// Whether its last answer was recent.
    pub up: bool,
}

/// The instant a core starts at, and what the wall clock reads then.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The instant.
    pub now: Instant,
    /// Its wall-clock reading, ms since the Unix epoch.
    pub wall_ms: u64,
}

/// The role a node plays, with what it needs in that role.
#[derive(Debug)]
enum RoleState {
    Follower { leader: Option<NodeId> },
    PreCandidate { votes: BTreeSet<NodeId>, term: Term },
    Candidate { votes: BTreeSet<NodeId> },
    Leader(Box<LeaderState>),
}

/// What a peer answered to a vote request or a probe: where its log ends.
#[derive(Debug, Clone, Copy)]
struct Position {
    term: Term,
    last: (Term, Seq),
    catching_up: bool,
}

/// A node that started knows nothing of what it held before (everything is
/// in memory): it may have acknowledged writes and granted votes it forgot,
/// and it does not know the current term. Until a leader has caught it up it
/// keeps asking its peers (probes, every heartbeat) where their logs end, and:
/// - it follows a leader only once it knows the current term: from a
///   majority of nodes that did not lose their memory (one of them voted in
///   the newest election), or from fresh answers of every peer — so it cannot
///   keep a deposed leader of an older term in power;
/// - it votes (and campaigns) only with fresh answers of every peer (within
///   an election timeout), and only for a log at least as up to date as the
///   most up-to-date of them — so its vote cannot elect a leader missing a
///   committed entry it once held and forgot. In a brand-new cluster every
///   answer is empty, and the first election needs every node up.
#[derive(Debug)]
struct Amnesia {
    answers: BTreeMap<NodeId, (Position, Instant)>,
    /// Whether it knows the current term (and may follow a leader).
    term_known: bool,
    last_probe: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Progress {
    /// Next index to send.
    next: Seq,
    /// Highest index known to match.
    matched: Seq,
    /// The last index of the entries message in flight, and when it left.
    in_flight: Option<(Seq, Instant)>,
    /// When anything was last sent.
    last_sent: Option<Instant>,
    /// When it last answered (any answer in this term).
    last_reply: Option<Instant>,
    /// After a failed send, nothing before this instant.
    retry_at: Option<Instant>,
    failures: u32,
    /// The configuration index it reported running.
    config_index: Seq,
    /// The leader's wall clock when it sent the newest message this follower answered.
    acked_sent_ms: u64,
    /// The follower's process life, as its last answer gave it.
    life: Option<u64>,
    /// The snapshot being sent to this follower, and how many of its
    /// records the follower confirmed staging.
    snapshot: Option<(Arc<SnapshotPlan>, u64)>,
    /// Send stamps of messages whose fate is unknown (no answer, no refusal).
    unsure: BTreeSet<u64>,
    /// The newest send stamp of a message the follower may have received
    /// (answered, or failed in a way that does not rule delivery out).
    delivered_ms: u64,
}

/// A snapshot the leader sends in chunks: the message without records, and
/// every record of the committed state it describes, in key order (a chunk
/// is named by its offset, which must mean the same in every plan of the
/// same index: [`Log::records_at`]).
#[derive(Debug)]
struct SnapshotPlan {
    head: SnapshotRequest,
    records: Vec<Record>,
}

/// The chunks a follower staged of one snapshot.
#[derive(Debug)]
struct Staging {
    term: Term,
    last_index: Seq,
    last_term: Term,
    records: Vec<Record>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    required: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct ConfigChange {
    id: u64,
    /// Phases still to append.
    rest: VecDeque<ClusterConfig>,
    /// The index of the configuration entry that must be in force everywhere
    /// before the next phase (the one in force when the change started, then
    /// each phase's).
    index: Seq,
    /// The leader's wall clock from which a silent node's lease on an older
    /// configuration runs out (its election for a configuration of an earlier
    /// term, else the entry's append).
    since_ms: u64,
}

#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    /// Index of this term's first entry.
    start_index: Seq,
    /// Whether that entry is committed (writes are taken only then).
    started: bool,
    /// This term's version floor.
    floor: Version,
    /// Writes waiting for their W.
    pending: BTreeMap<Seq, Pending>,
    /// When the last quorum check passed.
    quorum_ok_at: Instant,
    /// Its wall clock when it was elected.
    elected_ms: u64,
    change: Option<ConfigChange>,
}

/// One leader-follower node's replication state.
#[derive(Debug)]
pub struct Core {
    id: NodeId,
    peers: Vec<NodeId>,
    settings: Settings,
    term: Term,
    voted_for: Option<NodeId>,
    role: RoleState,
    log: Log,
    commit: Seq,
    /// The last leader this node knew of, in any term.
    last_leader: Option<NodeId>,
    election_deadline: Instant,
    /// When a leader last spoke to this node (for granting votes).
    leader_contact: Option<Instant>,
    /// The configuration a follower uses (from the leader's messages), with
    /// the term and index it came from.
    adopted: (ClusterConfig, Term, Seq),
    /// Wall-clock ms until which the configuration is trusted.
    lease_until_ms: u64,
    /// After a start: `Some(None)` until a leader speaks, then `Some((term,
    /// target))` until the log matches that term's leader through `target`.
    catching_up: Option<Option<(Term, Seq)>>,
    /// Until caught up: what the node learned of its peers' logs.
    amnesia: Option<Amnesia>,
    /// Every node's id, sorted (a term belongs to one of them).
    all: Vec<NodeId>,
    /// Times this node discarded committed entries to follow a leader that
    /// lacks them (possible only after a majority restarted empty).
    resets: u64,
    /// This process life, sent in every answer to a leader.
    life: u64,
    /// The snapshot chunks received so far (follower).
    staging: Option<Staging>,
    /// Writes this node acknowledged as leader that are not committed yet.
    acked_uncommitted: BTreeSet<Seq>,
    rng: ChaCha8Rng,
    /// Maps instants onto this node's wall clock.
    wall_origin: (Instant, u64),
    elections: u64,
    rolled_back: u64,
    rolled_back_acknowledged: u64,
    recent_rollbacks: VecDeque<RolledBackWrite>,
    next_change_id: u64,
    outputs: Vec<Output>,
}

/// The most votes needed among `n` nodes.
fn majority(n: usize) -> usize {
    n / 2 + 1
}

impl Core {
    /// A node `id` with `peers` (not including itself), starting empty at
    /// `start` with the flags' `config`; `seed` drives its election timeouts.
    pub fn new(
        id: NodeId,
        peers: &[NodeId],
        store: Store,
        config: ClusterConfig,
        settings: Settings,
        seed: u64,
        start: Clock,
    ) -> Self {
        let Clock { now, wall_ms } = start;
        let mut peers: Vec<NodeId> = peers.iter().copied().filter(|&p| p != id).collect();
        peers.sort_unstable();
        peers.dedup();
        let mut all = peers.clone();
        all.push(id);
        all.sort_unstable();
        let mut core = Self {
            id,
            peers,
            settings,
            term: 0,
            voted_for: None,
            role: RoleState::Follower { leader: None },
            log: Log::new(store, config),
            commit: 0,
            last_leader: None,
            election_deadline: now,
            leader_contact: None,
            adopted: (config, 0, 0),
            lease_until_ms: 0,
            catching_up: Some(None),
            amnesia: Some(Amnesia {
                answers: BTreeMap::new(),
                term_known: false,
                last_probe: None,
            }),
            all,
            resets: 0,
            // Ordered by start time (a later life is larger), random below.
            life: (wall_ms << 16) | (seed & 0xFFFF),
            staging: None,
            acked_uncommitted: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ u64::from(id).wrapping_mul(0x9E37_79B9)),
            wall_origin: (now, wall_ms),
            elections: 0,
            rolled_back: 0,
            rolled_back_acknowledged: 0,
            recent_rollbacks: VecDeque::new(),
            next_change_id: 1,
            outputs: Vec::new(),
        };
        core.reset_election_timer(now);
        core
    }

    // ----- read-only views -------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Whom this node voted for in the current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }

    /// The role, as the wire names it.
    pub fn role(&self) -> kv_shared::Role {
        match self.role {
            RoleState::Leader(_) => kv_shared::Role::Leader,
            RoleState::Candidate { .. } => kv_shared::Role::Candidate,
            RoleState::Follower { .. } | RoleState::PreCandidate { .. } => {
                kv_shared::Role::Follower
            }
        }
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }

    /// The leader of the current term, as far as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            RoleState::Leader(_) => Some(self.id),
            RoleState::Follower { leader } => *leader,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. } => None,
        }
    }

    /// The last leader this node knew of, in any term.
    pub fn last_leader(&self) -> Option<NodeId> {
        self.last_leader
    }

    /// Whether this node leads and its term has started (it takes writes).
    pub fn is_started_leader(&self) -> bool {
        matches!(&self.role, RoleState::Leader(l) if l.started)
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The commit index.
    pub fn commit(&self) -> Seq {
        self.commit
    }

    /// The version floor of the current term (leader) or of the log.
    pub fn floor(&self) -> Version {
        match &self.role {
            RoleState::Leader(l) => l.floor,
            _ => self.log.floor(),
        }
    }

    /// Whether the node is still catching up after its start: its copy may
    /// lack writes it acknowledged before, so it does not count towards R.
    pub fn is_catching_up(&self) -> bool {
        self.catching_up.is_some()
    }

    /// The configuration this node uses: the leader's own log's, or the one a
    /// follower last heard from its leader.
    pub fn config(&self) -> ClusterConfig {
        match self.role {
            RoleState::Leader(_) => self.log.config().0,
            _ => self.adopted.0,
        }
    }

    /// The wall clock at `now`.
    pub fn wall(&self, now: Instant) -> u64 {
        let (origin, wall) = self.wall_origin;
        wall + u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(0)
    }

    /// Whether the node cannot be sure which W is in force: it has not heard
    /// from a leader within the lease (a leader: from a majority).
    pub fn is_in_doubt(&self, now: Instant) -> bool {
        self.wall(now) > self.lease_until_ms()
    }

    /// Until when (this node's wall ms) it trusts its configuration.
    pub fn lease_until_ms(&self) -> u64 {
        match &self.role {
            RoleState::Leader(l) => {
                // The newest send stamp a majority (this node counting as now) answered.
                let mut stamps: Vec<u64> = l.progress.values().map(|p| p.acked_sent_ms).collect();
                stamps.push(u64::MAX);
                stamps.sort_unstable_by(|a, b| b.cmp(a));
                let m = majority(self.peers.len() + 1);
                let quorum_ms = stamps.get(m - 1).copied().unwrap_or(0);
                let lease = millis(self.settings.lease);
                quorum_ms.saturating_add(lease).max(self.lease_until_ms)
            }
            _ => self.lease_until_ms,
        }
    }

    /// R as this node must use it now: when in doubt, every replica that
    /// can count (all N, or the N − 1 others while this one catches up).
    pub fn read_quorum(&self, now: Instant) -> u32 {
        if self.is_in_doubt(now) {
            self.n() - u32::from(self.is_catching_up())
        } else {
            self.config().r
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> u32 {
        u32::try_from(self.peers.len() + 1).unwrap_or(u32::MAX)
    }

    /// Elections this node started.
    pub fn elections(&self) -> u64 {
        self.elections
    }

    /// Entries undone, and of those the writes this node had acknowledged.
    pub fn rolled_back(&self) -> (u64, u64) {
        (self.rolled_back, self.rolled_back_acknowledged)
    }

    /// The most recent undone writes, oldest first.
    pub fn recent_rollbacks(&self) -> Vec<RolledBackWrite> {
        self.recent_rollbacks.iter().cloned().collect()
    }

    /// A description of the configuration change in progress, if any.
    pub fn config_change(&self) -> Option<String> {
        match &self.role {
            RoleState::Leader(l) => l.change.as_ref().map(|c| {
                let (cfg, _) = self.log.config();
                format!(
                    "phase at index {} (W={}, R={}), {} phase(s) to go",
                    c.index,
                    cfg.w,
                    cfg.r,
                    c.rest.len()
                )
            }),
            _ => None,
        }
    }

    /// The leader's view of its followers, sorted by id (empty unless leading).
    pub fn followers(&self, now: Instant) -> Vec<FollowerView> {
        let RoleState::Leader(l) = &self.role else {
            return Vec::new();
        };
        let last = self.log.last_index();
        l.progress
            .iter()
            .map(|(&id, p)| {
                let lag_ms = if p.matched >= last {
                    0
                } else {
                    self.log
                        .appended_at(p.matched + 1)
                        .or_else(|| self.log.appended_at(self.log.first_index()))
                        .map_or(0, |t| millis(now.saturating_duration_since(t)))
                };
                FollowerView {
                    id,
                    match_index: p.matched,
                    lag_entries: last.saturating_sub(p.matched),
                    lag_ms,
                    up: p.last_reply.is_some_and(|t| {
                        now.saturating_duration_since(t) < self.settings.election_timeout
                    }),
                }
            })
            .collect()
    }

    /// Number of writes waiting for their W.
    pub fn pending_writes(&self) -> usize {
        match &self.role {
            RoleState::Leader(l) => l.pending.len(),
            _ => 0,
        }
    }

    /// Takes the outputs queued so far.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    // ----- time ------------------------------------------------------------

    /// Lets time pass: elections, heartbeats, retries, write deadlines,
    /// quorum checks, configuration phases.
    pub fn tick(&mut self, now: Instant) {
        if self.is_leader() {
            self.expire_writes(now);
            self.check_quorum(now);
        }
        if self.is_leader() {
            self.expire_in_flight(now);
            self.advance_config_change(now);
            self.broadcast(now);
            return;
        }
        self.probe(now);
        if now >= self.election_deadline {
            self.start_pre_vote(now);
        }
    }

    /// Asks every peer where its log ends, every heartbeat, until a leader
    /// has caught this node up (see [`Amnesia`]).
    fn probe(&mut self, now: Instant) {
        let heartbeat = self.settings.heartbeat;
        let Some(a) = &mut self.amnesia else {
            return;
        };
        if a.last_probe.is_some_and(|t| now < t + heartbeat) {
            return;
        }
        a.last_probe = Some(now);
        let req = VoteRequest {
            term: self.term,
            candidate: self.id,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            pre_vote: false,
            probe: true,
        };
        for to in self.peers.clone() {
            self.outputs.push(Output::Send {
                to,
                msg: Message::Vote(req),
            });
        }
    }

    /// Records a peer's position, learned from its answer to a vote or probe.
    fn note_position(&mut self, resp: &VoteResponse, now: Instant) {
        if let Some(a) = &mut self.amnesia {
            a.answers.insert(
                resp.from,
                (
                    Position {
                        term: resp.term,
                        last: (resp.last_term, resp.last_index),
                        catching_up: resp.catching_up,
                    },
                    now,
                ),
            );
        }
        self.learn_term(now);
    }

    /// The answers of peers received within the last election timeout.
    fn fresh_answers(&self, now: Instant) -> Vec<Position> {
        let timeout = self.settings.election_timeout;
        self.amnesia
            .as_ref()
            .map(|a| {
                a.answers
                    .values()
                    .filter(|(_, at)| now.saturating_duration_since(*at) < timeout)
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// For a node that lost its memory: the least up-to-date log it may vote
    /// (or campaign) for — the most up-to-date among fresh answers of every
    /// peer and its own — or `None` while some peer has not answered lately.
    fn vote_floor(&self, now: Instant) -> Option<(Term, Seq)> {
        let fresh = self.fresh_answers(now);
        if fresh.len() < self.peers.len() {
            return None;
        }
        let own = (self.log.last_term(), self.log.last_index());
        Some(fresh.iter().map(|p| p.last).fold(own, std::cmp::max))
    }

    /// Learns the current term once enough peers answered (see [`Amnesia`]).
    fn learn_term(&mut self, now: Instant) {
        let m = majority(self.peers.len() + 1);
        let everyone = self.fresh_answers(now).len() >= self.peers.len();
        let Some(a) = &mut self.amnesia else {
            return;
        };
        if a.term_known {
            return;
        }
        let remembering = a.answers.values().filter(|(p, _)| !p.catching_up).count();
        if !(remembering >= m || everyone) {
            return;
        }
        a.term_known = true;
        let max_term = a.answers.values().map(|(p, _)| p.term).max().unwrap_or(0);
        if max_term > self.term {
            self.term = max_term;
            self.voted_for = None;
            self.role = RoleState::Follower { leader: None };
        }
    }

    /// Whether this node may follow a leader now (it knows the current term).
    fn may_follow(&self) -> bool {
        self.amnesia.as_ref().is_none_or(|a| a.term_known)
    }

    /// The next term this node may campaign in: terms belong to the nodes in
    /// turn (term t to the ((t - 1) mod N)-th id), so no two nodes ever
    /// campaign in one term, even if a node that restarted forgot its votes.
    fn next_owned_term(&self, above: Term) -> Term {
        let n = self.all.len() as u64;
        let pos = self.all.iter().position(|&i| i == self.id).unwrap_or(0) as u64;
        let want = (pos + 1) % n;
        let t0 = above.saturating_add(1);
        t0.saturating_add((want + n - t0 % n) % n)
    }

    /// The node a term belongs to.
    fn owner(&self, term: Term) -> Option<NodeId> {
        let n = self.all.len() as u64;
        let i = usize::try_from(term.checked_sub(1)? % n).ok()?;
        self.all.get(i).copied()
    }

    fn reset_election_timer(&mut self, now: Instant) {
        let base = self.settings.election_timeout;
        let timeout = if self.settings.campaign_first && self.term == 0 {
            // The hinted first leader campaigns quickly until some term exists.
            self.settings.heartbeat * 2
        } else {
            let extra = self.rng.random_range(0..millis(base).max(1));
            base + Duration::from_millis(extra)
        };
        self.election_deadline = now + timeout;
    }

    // ----- elections ---------------------------------------------------------

    fn start_pre_vote(&mut self, now: Instant) {
        self.reset_election_timer(now);
        if self.amnesia.is_some() {
            // A node that lost its memory campaigns only with a log at least
            // as up to date as every peer's (it would vote for no less).
            let own = (self.log.last_term(), self.log.last_index());
            if self.vote_floor(now).is_none_or(|f| own < f) {
                return;
            }
        }
        let term = self.next_owned_term(self.term);
        if self.peers.is_empty() {
            self.become_candidate(term, now);
            return;
        }
        let mut votes = BTreeSet::new();
        votes.insert(self.id);
        self.role = RoleState::PreCandidate { votes, term };
        self.emit(Event::PreVote { term });
        self.send_vote_requests(term, true);
    }

    fn become_candidate(&mut self, term: Term, now: Instant) {
        self.term = term;
        self.voted_for = Some(self.id);
        self.elections += 1;
        let mut votes = BTreeSet::new();
        votes.insert(self.id);
        self.role = RoleState::Candidate { votes };
        self.reset_election_timer(now);
        let term = self.term;
        self.emit(Event::Campaign { term });
        if self.peers.is_empty() {
            self.become_leader(now);
        } else {
            self.send_vote_requests(term, false);
        }
    }

    fn send_vote_requests(&mut self, term: Term, pre_vote: bool) {
        let req = VoteRequest {
            term,
            candidate: self.id,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            pre_vote,
            probe: false,
        };
        for to in self.peers.clone() {
            self.outputs.push(Output::Send {
                to,
                msg: Message::Vote(req),
            });
        }
    }

    /// Whether a leader spoke to this node lately (it then refuses to help
    /// depose it: a node back from a partition cannot disrupt a healthy leader).
    fn in_leader_lease(&self, now: Instant) -> bool {
        self.is_leader()
            || self
                .leader_contact
                .is_some_and(|t| now.saturating_duration_since(t) < self.settings.election_timeout)
    }

    fn log_is_behind(&self, last_term: Term, last_index: Seq) -> bool {
        (last_term, last_index) < (self.log.last_term(), self.log.last_index())
    }

    /// A (pre-)vote request from a candidate.
    pub fn on_vote_request(&mut self, req: VoteRequest, now: Instant) -> VoteResponse {
        let granted = !req.probe && self.consider_vote(&req, now);
        VoteResponse {
            from: self.id,
            term: self.term,
            request_term: req.term,
            granted,
            pre_vote: req.pre_vote,
            probe: req.probe,
            last_term: self.log.last_term(),
            last_index: self.log.last_index(),
            catching_up: self.amnesia.is_some(),
        }
    }

    fn consider_vote(&mut self, req: &VoteRequest, now: Instant) -> bool {
        if req.term < self.term || self.in_leader_lease(now) {
            return false;
        }
        if self.owner(req.term) != Some(req.candidate) {
            return false;
        }
        let mut up_to_date = !self.log_is_behind(req.last_term, req.last_index);
        if self.amnesia.is_some() {
            // It may have forgotten entries it held: only a candidate at least
            // as up to date as every peer can have them.
            up_to_date &= self
                .vote_floor(now)
                .is_some_and(|f| (req.last_term, req.last_index) >= f);
        }
        if req.pre_vote {
            // Nobody changes term for a pre-vote.
            return req.term > self.term && up_to_date;
        }
        if req.term > self.term {
            self.become_follower(req.term, None, now, "a candidate has a newer term");
        }
        let granted = up_to_date && self.voted_for.is_none_or(|v| v == req.candidate);
        if granted {
            self.voted_for = Some(req.candidate);
            self.reset_election_timer(now);
            self.emit(Event::Voted {
                term: self.term,
                candidate: req.candidate,
            });
        }
        granted
    }

    /// The answer to a vote request (or probe) this node sent.
    pub fn on_vote_response(&mut self, resp: VoteResponse, now: Instant) {
        self.note_position(&resp, now);
        if resp.probe {
            return;
        }
        if resp.term > self.term && !resp.pre_vote {
            self.become_follower(resp.term, None, now, "a voter has a newer term");
            return;
        }
        if resp.term > self.term && resp.pre_vote && !resp.granted {
            // A pre-voter in a newer term: adopt it, a leader may exist there.
            self.become_follower(resp.term, None, now, "a pre-voter has a newer term");
            return;
        }
        let m = majority(self.peers.len() + 1);
        match &mut self.role {
            RoleState::PreCandidate { votes, term }
                if resp.pre_vote && resp.granted && resp.request_term == *term =>
            {
                votes.insert(resp.from);
                if votes.len() >= m {
                    let term = *term;
                    self.become_candidate(term, now);
                }
            }
            RoleState::Candidate { votes }
                if !resp.pre_vote && resp.granted && resp.request_term == self.term =>
            {
                votes.insert(resp.from);
                if votes.len() >= m {
                    self.become_leader(now);
                }
            }
            _ => {}
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, now: Instant, why: &str) {
        let old_term = self.term;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        let was_leader = matches!(self.role, RoleState::Leader(_));
        let old = std::mem::replace(&mut self.role, RoleState::Follower { leader });
        if let RoleState::Leader(l) = old {
            // Writes not yet answered: their fate is unknown now.
            for &index in l.pending.keys() {
                self.outputs.push(Output::Abandoned {
                    index,
                    term: self.term,
                });
            }
            if let Some(c) = l.change {
                self.outputs.push(Output::ConfigAbandoned {
                    id: c.id,
                    term: self.term,
                });
            }
            // A deposed leader keeps trusting its configuration only as long
            // as its last majority contact allows.
            self.lease_until_ms = self.lease_until_ms.max({
                let mut stamps: Vec<u64> = l.progress.values().map(|p| p.acked_sent_ms).collect();
                stamps.push(self.wall(now));
                stamps.sort_unstable_by(|a, b| b.cmp(a));
                stamps
                    .get(majority(self.peers.len() + 1) - 1)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(millis(self.settings.lease))
            });
            // Follow the configuration of our own log until a leader (of a
            // newer term, whose configuration replaces it) speaks.
            let (c, i) = self.log.config();
            self.adopted = (c, old_term, i);
        }
        if was_leader {
            self.emit(Event::SteppedDown {
                term: self.term,
                reason: why.to_owned(),
            });
        }
        if let Some(l) = leader {
            self.last_leader = Some(l);
        }
        self.reset_election_timer(now);
    }

    fn become_leader(&mut self, now: Instant) {
        let votes = match &self.role {
            RoleState::Candidate { votes } => votes.iter().copied().collect(),
            _ => vec![self.id],
        };
        // Versions of this term start above everything an earlier leader may
        // have handed out without a majority knowing: the highest version in
        // this log, plus the largest window of uncommitted entries any leader
        // allowed. With no earlier term, nothing was handed out: start at 1.
        let prior_floor = self.log.floor();
        let window = self.settings.window.max(self.log.window());
        let floor = if prior_floor == 0 && self.log.max_version() == 0 {
            1
        } else {
            self.log
                .max_version()
                .max(prior_floor)
                .saturating_add(window)
                .saturating_add(1)
        };
        let last = self.log.last_index();
        let progress = self
            .peers
            .iter()
            .map(|&p| {
                (
                    p,
                    Progress {
                        next: last + 1,
                        matched: 0,
                        in_flight: None,
                        last_sent: None,
                        last_reply: None,
                        retry_at: None,
                        failures: 0,
                        config_index: 0,
                        acked_sent_ms: 0,
                        life: None,
                        snapshot: None,
                        unsure: BTreeSet::new(),
                        delivered_ms: 0,
                    },
                )
            })
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            start_index: last + 1,
            started: false,
            floor,
            pending: BTreeMap::new(),
            quorum_ok_at: now,
            elected_ms: self.wall(now),
            change: None,
        }));
        self.last_leader = Some(self.id);
        self.catching_up = None;
        self.amnesia = None;
        self.emit(Event::Elected {
            term: self.term,
            votes,
            floor,
        });
        let entry = LogEntry {
            index: last + 1,
            term: self.term,
            command: Command::TermStart {
                floor,
                window: self.settings.window,
            },
        };
        self.log.append(entry, now);
        self.advance_commit(now);
        self.broadcast(now);
    }

    // ----- the leader ------------------------------------------------------

    /// Accepts a client write: assigns the key's next version (at least the
    /// term's floor), appends and applies it, starts replicating it. It is
    /// answered by a later [`Output::Acked`], [`Output::TimedOut`] or
    /// [`Output::Abandoned`] for its index.
    ///
    /// # Errors
    /// When this node does not lead, its term has not started, or its window
    /// of uncommitted entries is full.
    pub fn propose(
        &mut self,
        key: &str,
        value: String,
        timeout: Duration,
        now: Instant,
    ) -> Result<Proposal, ProposeError> {
        // A leader that was paused or cut off may not lead any more: it checks
        // before it acknowledges anything (as its ticks would).
        self.check_quorum(now);
        let term = self.term;
        let (required, floor) = match &self.role {
            RoleState::Leader(l) if !l.started => return Err(ProposeError::NotStarted { term }),
            RoleState::Leader(l) => (self.log.config().0.w, l.floor),
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader(),
                    last_leader: self.last_leader,
                    term,
                })
            }
        };
        let window = self.settings.window;
        let entry_size = kv_shared::limits::record_bytes(key, &value);
        let unsettled = self.log.unsettled_bytes();
        if self.log.last_index().saturating_sub(self.commit) >= window
            || (unsettled > 0 && unsettled + entry_size > self.settings.window_bytes)
        {
            return Err(ProposeError::WindowFull { window });
        }
        let current = self.log.store().get(key);
        let status = if current.is_some() {
            WriteStatus::Updated
        } else {
            WriteStatus::Created
        };
        let current_version = current.map_or(0, |e| e.version);
        let version = current_version
            .checked_add(1)
            .map(|v| v.max(floor))
            .filter(|&v| v <= kv_shared::limits::MAX_VERSION)
            .ok_or(ProposeError::VersionExhausted {
                version: current_version,
            })?;
        let index = self.log.last_index() + 1;
        let entry = LogEntry {
            index,
            term,
            command: Command::Write {
                key: key.to_owned(),
                value,
                version,
            },
        };
        self.log.append(entry, now);
        if let RoleState::Leader(l) = &mut self.role {
            l.pending.insert(
                index,
                Pending {
                    required,
                    deadline: now + timeout,
                },
            );
        }
        self.settle_writes();
        self.advance_commit(now);
        self.broadcast(now);
        Ok(Proposal {
            index,
            term,
            version,
            status,
            required,
        })
    }

    /// Starts a configuration change towards `target` (same N). It is
    /// answered by [`Output::ConfigDone`] or [`Output::ConfigAbandoned`] with
    /// the returned id.
    ///
    /// The change never lets a node read with an R that, with the W the
    /// leader acknowledges with, breaks R + W > N (when both the old and the
    /// new configuration keep it): first W and R both rise to their larger
    /// values; once every node runs that (or has been out of contact longer
    /// than its lease) and the writes acknowledged under the old W are on
    /// enough replicas for the new R, the target follows.
    ///
    /// # Errors
    /// When this node does not lead or another change is in progress.
    pub fn change_config(
        &mut self,
        target: ClusterConfig,
        now: Instant,
    ) -> Result<u64, ProposeError> {
        let term = self.term;
        let (started, elected_ms) = match &self.role {
            RoleState::Leader(l) if l.change.is_some() => {
                return Err(ProposeError::ChangeInProgress)
            }
            RoleState::Leader(l) => (l.started, l.elected_ms),
            _ => {
                return Err(ProposeError::NotLeader {
                    leader: self.leader(),
                    last_leader: self.last_leader,
                    term,
                })
            }
        };
        if !started {
            return Err(ProposeError::NotStarted { term });
        }
        let (cur, cur_index) = self.log.config();
        let mid = ClusterConfig {
            w: cur.w.max(target.w),
            r: cur.r.max(target.r),
            ..target
        };
        let mut rest: VecDeque<ClusterConfig> = VecDeque::new();
        if mid != cur {
            rest.push_back(mid);
        }
        if target != mid {
            rest.push_back(target);
        }
        let id = self.next_change_id;
        self.next_change_id += 1;
        // The configuration in force must be everywhere before anything lowers
        // W: a node still reading with an older, lower R would break R + W > N.
        let since_ms = if self.log.term_of(cur_index) == Some(term) {
            self.wall(now)
        } else {
            elected_ms
        };
        if let RoleState::Leader(l) = &mut self.role {
            l.change = Some(ConfigChange {
                id,
                rest,
                index: cur_index,
                since_ms,
            });
        }
        self.advance_config_change(now);
        Ok(id)
    }

    fn append_config(&mut self, config: ClusterConfig, now: Instant) -> Seq {
        let index = self.log.last_index() + 1;
        self.log.append(
            LogEntry {
                index,
                term: self.term,
                command: Command::Config { config },
            },
            now,
        );
        self.emit(Event::ConfigInForce { config });
        index
    }

    /// Moves the configuration change on when its phase is everywhere.
    fn advance_config_change(&mut self, now: Instant) {
        let wall = self.wall(now);
        // A silent node may still hear from a deposed leader until that one
        // steps down (at most two election timeouts after it lost its
        // majority), and trusts what it heard for a lease after that.
        let waited = millis(
            self.settings.lease + self.settings.election_timeout * 2 + self.settings.lease_margin,
        );
        let lease = millis(self.settings.lease + self.settings.lease_margin);
        let commit = self.commit;
        let n = self.n() as usize;
        let last = self.log.last_index();
        let (config, _) = self.log.config();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(change) = &l.change else {
            return;
        };
        if change.index > commit {
            return;
        }
        // Every follower runs it, or no longer trusts an older configuration:
        // its lease on what this leader sent before the phase has run out
        // (messages after it carry the phase), and so has its lease on what a
        // deposed leader may have sent it.
        let deposed_over = wall >= l.elected_ms.saturating_add(waited);
        let everywhere = l.progress.values().all(|p| {
            let newest = p.unsure.last().copied().unwrap_or(0).max(p.delivered_ms);
            let ours_over = wall >= newest.min(change.since_ms).saturating_add(lease);
            p.config_index >= change.index || (ours_over && deposed_over)
        });
        if !everywhere {
            return;
        }
        if let Some(next) = change.rest.front().copied() {
            if next.r < config.r {
                // A lower R needs every write acknowledged under an older, lower
                // W (before the phase now in force) on N - R + 1 replicas first.
                let mut held: Vec<Seq> = l.progress.values().map(|p| p.matched).collect();
                held.push(last);
                held.sort_unstable_by(|a, b| b.cmp(a));
                let need = n.saturating_sub(next.r as usize);
                if held.get(need).copied().unwrap_or(0) < change.index {
                    return;
                }
            }
        }
        let Some(change) = l.change.take() else {
            return;
        };
        let mut rest = change.rest;
        match rest.pop_front() {
            Some(next) => {
                let index = self.append_config(next, now);
                if let RoleState::Leader(l) = &mut self.role {
                    l.change = Some(ConfigChange {
                        id: change.id,
                        rest,
                        index,
                        since_ms: wall,
                    });
                }
                self.advance_commit(now);
                self.broadcast(now);
            }
            None => self.outputs.push(Output::ConfigDone {
                id: change.id,
                config,
            }),
        }
    }

    fn expire_writes(&mut self, now: Instant) {
        let counts = self.holder_counts();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let expired: Vec<Seq> = l
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&i, _)| i)
            .collect();
        for index in expired {
            if let Some(p) = l.pending.remove(&index) {
                self.outputs.push(Output::TimedOut {
                    index,
                    acked: counts(index),
                    required: p.required,
                });
            }
        }
    }

    /// A leader whose term started: the index up to which a read may see
    /// writes without ever seeing one that a failover undoes or that a later
    /// read misses — the commit index when W is a majority or more, else
    /// the highest index held by W replicas (such writes were acknowledged;
    /// with W below a majority a failover may still undo them, as it may
    /// undo their acknowledgement). `None` on any other node.
    pub fn read_index(&self) -> Option<Seq> {
        if !self.is_started_leader() {
            return None;
        }
        let RoleState::Leader(l) = &self.role else {
            return None;
        };
        let w = self.config().w as usize;
        if w >= majority(self.peers.len() + 1) {
            return Some(self.commit);
        }
        let mut held: Vec<Seq> = l.progress.values().map(|p| p.matched).collect();
        held.push(self.log.last_index());
        held.sort_unstable_by(|a, b| b.cmp(a));
        Some(
            held.get(w.saturating_sub(1))
                .copied()
                .unwrap_or(0)
                .max(self.commit),
        )
    }

    /// A function giving the replicas that hold an index (leader included).
    fn holder_counts(&self) -> impl Fn(Seq) -> u32 {
        let matched: Vec<Seq> = match &self.role {
            RoleState::Leader(l) => l.progress.values().map(|p| p.matched).collect(),
            _ => Vec::new(),
        };
        move |index| 1 + matched.iter().filter(|&&m| m >= index).count() as u32
    }

    /// A leader that heard from no majority for an election timeout steps down.
    fn check_quorum(&mut self, now: Instant) {
        let timeout = self.settings.election_timeout;
        let m = majority(self.peers.len() + 1);
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if now.saturating_duration_since(l.quorum_ok_at) < timeout {
            return;
        }
        let heard = 1 + l
            .progress
            .values()
            .filter(|p| {
                p.last_reply
                    .is_some_and(|t| now.saturating_duration_since(t) < timeout)
            })
            .count();
        if heard >= m {
            l.quorum_ok_at = now;
        } else {
            let term = self.term;
            self.become_follower(
                term,
                None,
                now,
                "no majority answered within the election timeout",
            );
        }
    }

    fn expire_in_flight(&mut self, now: Instant) {
        let timeout = self.settings.rpc_timeout;
        if let RoleState::Leader(l) = &mut self.role {
            for p in l.progress.values_mut() {
                if p.in_flight
                    .is_some_and(|(_, at)| now.saturating_duration_since(at) >= timeout)
                {
                    p.in_flight = None;
                }
            }
        }
    }

    /// Sends every follower what it needs: entries if it is behind and none
    /// are in flight, else a heartbeat when it is due.
    fn broadcast(&mut self, now: Instant) {
        for to in self.peers.clone() {
            self.send_to(to, now);
        }
    }

    fn send_to(&mut self, to: NodeId, now: Instant) {
        let heartbeat = self.settings.heartbeat;
        let last = self.log.last_index();
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        let Some(p) = l.progress.get(&to) else {
            return;
        };
        if p.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let behind = p.next <= last;
        let idle = p.last_sent.is_none_or(|t| now >= t + heartbeat);
        let msg = if behind && p.in_flight.is_none() {
            if p.next <= self.log.base().index {
                let base = self.log.base().index;
                let (plan, offset) = match &p.snapshot {
                    Some((plan, staged)) => (plan.clone(), *staged),
                    // One copy of the committed state serves every follower
                    // that needs a snapshot, while the log still follows it.
                    None => match l
                        .progress
                        .values()
                        .filter_map(|q| q.snapshot.as_ref())
                        .map(|(plan, _)| plan)
                        .find(|plan| plan.head.last_index >= base)
                    {
                        Some(shared) => (shared.clone(), 0),
                        None => (Arc::new(self.snapshot_plan()), 0),
                    },
                };
                let chunk = self.snapshot_chunk(&plan, offset, now);
                if let RoleState::Leader(l) = &mut self.role {
                    if let Some(p) = l.progress.get_mut(&to) {
                        p.snapshot = Some((plan, offset));
                    }
                }
                Message::Snapshot(chunk)
            } else {
                let entries = self.log.entries_from(p.next, self.settings.max_batch);
                Message::Append(self.append_request(p.next - 1, entries, now))
            }
        } else if idle {
            // A heartbeat: nothing after the last index known to match.
            let prev = p.matched.max(self.log.base().index);
            Message::Append(self.append_request(prev, Vec::new(), now))
        } else {
            return;
        };
        let upto = match &msg {
            Message::Append(a) => a.entries.last().map(|e| e.index),
            Message::Snapshot(s) => Some(s.last_index),
            Message::Vote(_) => None,
        };
        let stamp = self.wall(now);
        let forget_before =
            stamp.saturating_sub(millis(self.settings.lease * 2 + self.settings.rpc_timeout));
        if let RoleState::Leader(l) = &mut self.role {
            if let Some(p) = l.progress.get_mut(&to) {
                if let Some(upto) = upto {
                    p.in_flight = Some((upto, now));
                }
                p.last_sent = Some(now);
                p.unsure.insert(stamp);
                // Stamps this old no longer delay anything.
                p.unsure = p.unsure.split_off(&forget_before);
            }
        }
        self.outputs.push(Output::Send { to, msg });
    }

    fn append_request(
        &self,
        prev_index: Seq,
        entries: Vec<LogEntry>,
        now: Instant,
    ) -> AppendRequest {
        let (config, config_index) = self.log.config();
        AppendRequest {
            term: self.term,
            leader: self.id,
            prev_index,
            prev_term: self.log.term_at(prev_index).unwrap_or(0),
            entries,
            leader_commit: self.commit,
            leader_last: self.log.last_index(),
            config,
            config_index,
            sent_at_ms: self.wall(now),
        }
    }

    /// The committed state at the commit index, to send in chunks.
    fn snapshot_plan(&self) -> SnapshotPlan {
        let at = self.commit;
        let base: Base = self.log.base_at(at);
        let (config, config_index) = self.log.config();
        SnapshotPlan {
            head: SnapshotRequest {
                offset: 0,
                done: false,
                term: self.term,
                leader: self.id,
                last_index: at,
                last_term: base.term,
                records: Vec::new(),
                floor: base.floor,
                window: base.window,
                max_version: self.log.max_version(),
                base_config: base.config,
                base_config_index: base.config_index,
                config,
                config_index,
                terms: self.log.terms_through(at),
                leader_last: self.log.last_index(),
                sent_at_ms: 0,
            },
            records: self.log.records_at(at),
        }
    }

    /// The chunk of `plan` that starts at record `offset`: at most about
    /// `snapshot_chunk_bytes` (at least one record).
    fn snapshot_chunk(&self, plan: &SnapshotPlan, offset: u64, now: Instant) -> SnapshotRequest {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(plan.records.len());
        let mut bytes = 0usize;
        let records: Vec<Record> = plan.records[start..]
            .iter()
            .take_while(|r| {
                let first = bytes == 0;
                bytes += kv_shared::limits::record_bytes(&r.key, &r.value);
                first || bytes <= self.settings.snapshot_chunk_bytes
            })
            .cloned()
            .collect();
        let (config, config_index) = self.log.config();
        SnapshotRequest {
            offset,
            done: start + records.len() >= plan.records.len(),
            records,
            term: self.term,
            config,
            config_index,
            leader_last: self.log.last_index(),
            sent_at_ms: self.wall(now),
            ..plan.head.clone()
        }
    }

    /// A follower's answer to an append or snapshot message.
    pub fn on_append_response(&mut self, resp: AppendResponse, now: Instant) {
        // A leader that was paused or cut off may not lead any more: it
        // checks before it answers with anything new (a fresh message would
        // renew a follower's trust in its configuration).
        self.check_quorum(now);
        let last_index = self.log.last_index();
        if resp.term > self.term {
            self.become_follower(resp.term, None, now, "a follower has a newer term");
            return;
        }
        if resp.term < self.term {
            // The follower answered from an older term (it may not know the
            // current one yet): it is alive, so whatever was in flight to it is
            // over; nothing else in the answer counts.
            if let RoleState::Leader(l) = &mut self.role {
                if let Some(p) = l.progress.get_mut(&resp.from) {
                    p.in_flight = None;
                }
            }
            return;
        }
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(p) = l.progress.get_mut(&resp.from) else {
            return;
        };
        match p.life {
            // An answer of an earlier life of the follower, arriving late: it
            // speaks of what the follower has forgotten.
            Some(l) if resp.life < l => return,
            Some(l) if resp.life > l => {
                // The follower restarted: it holds nothing it acknowledged before.
                p.matched = 0;
                p.config_index = 0;
                p.in_flight = None;
            }
            _ => {}
        }
        if p.life.is_some_and(|l| l != resp.life) {
            p.snapshot = None;
        }
        p.life = Some(resp.life);
        p.unsure.remove(&resp.sent_at_ms);
        p.delivered_ms = p.delivered_ms.max(resp.sent_at_ms);
        p.last_reply = Some(now);
        p.failures = 0;
        p.retry_at = None;
        p.config_index = p.config_index.max(resp.config_index);
        p.acked_sent_ms = p.acked_sent_ms.max(resp.sent_at_ms);
        if let Some(staged) = resp.staged {
            // A snapshot chunk staged: the next chunk starts where it stopped.
            if let Some((_, at)) = &mut p.snapshot {
                *at = staged;
            }
            p.in_flight = None;
        } else if resp.success {
            // Never more than this leader holds, whatever a follower says.
            let matched = resp.match_index.min(last_index);
            p.matched = p.matched.max(matched);
            p.next = p.next.max(p.matched + 1);
            if p.in_flight.is_some_and(|(upto, _)| matched >= upto) {
                p.in_flight = None;
            }
            if p.snapshot
                .as_ref()
                .is_some_and(|(plan, _)| matched >= plan.head.last_index)
            {
                p.snapshot = None;
            }
        } else {
            // The follower's log differs before `next`: retry from where it says,
            // never below what is known to match.
            p.next = resp.retry_from.max(p.matched + 1).max(1);
            p.in_flight = None;
        }
        self.settle_writes();
        self.advance_commit(now);
        self.advance_config_change(now);
        self.send_to(resp.from, now);
    }

    /// The message to `to` stamped `sent_at_ms` got no answer; `refused`
    /// when it certainly never arrived (the connection was refused).
    pub fn on_send_failed(&mut self, to: NodeId, sent_at_ms: u64, refused: bool, now: Instant) {
        let heartbeat = self.settings.heartbeat;
        let election_timeout = self.settings.election_timeout;
        if let RoleState::Leader(l) = &mut self.role {
            if let Some(p) = l.progress.get_mut(&to) {
                p.unsure.remove(&sent_at_ms);
                if !refused {
                    p.delivered_ms = p.delivered_ms.max(sent_at_ms);
                }
                p.in_flight = None;
                p.failures = p.failures.saturating_add(1);
                // Back off, but never so long that a follower on a lossy link
                // misses an election timeout's worth of heartbeats.
                let backoff = heartbeat * 2u32.saturating_pow(p.failures.min(3));
                p.retry_at = Some(now + backoff.min(election_timeout / 3));
            }
        }
    }

    /// Answers every pending write that W replicas now hold.
    fn settle_writes(&mut self) {
        let counts = self.holder_counts();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let ready: Vec<(Seq, u32)> = l
            .pending
            .iter()
            .filter_map(|(&i, p)| {
                let c = counts(i);
                (c >= p.required).then_some((i, c))
            })
            .collect();
        for (index, acked) in ready {
            l.pending.remove(&index);
            self.acked_uncommitted.insert(index);
            self.outputs.push(Output::Acked { index, acked });
        }
        let commit = self.commit;
        self.acked_uncommitted.retain(|&i| i > commit);
    }

    /// Commits the highest index of this term that a majority holds.
    fn advance_commit(&mut self, now: Instant) {
        let m = majority(self.peers.len() + 1);
        let last = self.log.last_index();
        let term = self.term;
        let RoleState::Leader(l) = &self.role else {
            return;
        };
        let mut held: Vec<Seq> = l.progress.values().map(|p| p.matched).collect();
        held.push(last);
        held.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = held.get(m - 1).copied().unwrap_or(0);
        // Only an entry of the current term commits by counting (Raft §5.4.2);
        // earlier ones commit with it.
        if candidate > self.commit && self.log.term_at(candidate) == Some(term) {
            self.set_commit(candidate, now);
        }
    }

    fn set_commit(&mut self, index: Seq, _now: Instant) {
        if index <= self.commit {
            return;
        }
        self.commit = index;
        self.log.settle(index);
        self.log
            .compact(self.settings.log_capacity, self.settings.log_capacity_bytes);
        self.acked_uncommitted.retain(|&i| i > index);
        let term = self.term;
        let mut started_now = false;
        if let RoleState::Leader(l) = &mut self.role {
            if !l.started && index >= l.start_index {
                l.started = true;
                started_now = true;
            }
        }
        if started_now {
            self.emit(Event::TermStarted { term });
        }
    }

    // ----- the follower ----------------------------------------------------

    /// Accepts (or refuses) a message from the leader of `term`: adopts the
    /// term, follows the sender, trusts its configuration for a lease.
    fn hear_from_leader(
        &mut self,
        term: Term,
        leader: NodeId,
        config: (ClusterConfig, Seq),
        sent_at_ms: u64,
        now: Instant,
    ) {
        let following = matches!(self.role, RoleState::Follower { leader: Some(l) } if l == leader);
        if term > self.term || !following {
            self.become_follower(term, Some(leader), now, "a leader of a newer term spoke");
            self.emit(Event::Following { term, leader });
        }
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        let lease = millis(self.settings.lease);
        self.lease_until_ms = self.lease_until_ms.max(
            sent_at_ms
                .saturating_add(lease)
                .min(self.wall(now).saturating_add(lease)),
        );
        let (cfg, idx) = config;
        let (_, adopted_term, adopted_idx) = self.adopted;
        if term > adopted_term || idx >= adopted_idx {
            if self.adopted.0 != cfg {
                self.emit(Event::ConfigInForce { config: cfg });
            }
            self.adopted = (cfg, term, idx);
        }
    }

    fn reply(
        &self,
        success: bool,
        match_index: Seq,
        retry_from: Seq,
        sent_at_ms: u64,
    ) -> AppendResponse {
        AppendResponse {
            from: self.id,
            term: self.term,
            success,
            match_index,
            retry_from,
            commit: self.commit,
            config_index: self.adopted.2,
            sent_at_ms,
            life: self.life,
            staged: None,
        }
    }

    /// Entries (or a heartbeat) from the leader.
    pub fn on_append(&mut self, req: AppendRequest, now: Instant) -> AppendResponse {
        let stamp = req.sent_at_ms;
        if !self.may_follow() {
            // It does not know the current term yet: this may be a deposed
            // leader. The answer (in this node's older term) is ignored.
            return AppendResponse {
                term: 0,
                ..self.reply(false, 0, 0, stamp)
            };
        }
        if req.term < self.term {
            return self.reply(false, 0, 0, stamp);
        }
        if self.is_leader() && req.term == self.term {
            // Two leaders in one term cannot happen; refuse rather than corrupt.
            return self.reply(false, 0, 0, stamp);
        }
        self.hear_from_leader(
            req.term,
            req.leader,
            (req.config, req.config_index),
            req.sent_at_ms,
            now,
        );
        let base = self.log.base().index;
        if req.prev_index > self.log.last_index() {
            return self.reply(false, 0, self.log.last_index() + 1, stamp);
        }
        if req.prev_index >= base && self.log.term_at(req.prev_index) != Some(req.prev_term) {
            let retry = self
                .log
                .first_of_term_at(req.prev_index)
                .max(self.commit + 1);
            return self.reply(false, 0, retry, stamp);
        }
        // Below the base everything is committed, hence the same everywhere.
        let mut matched = req.prev_index;
        for e in req.entries {
            let index = e.index;
            if index <= base {
                matched = matched.max(index);
                continue;
            }
            match self.log.term_at(index) {
                Some(t) if t == e.term => {}
                Some(_) => {
                    if index <= self.commit {
                        // The leader lacks an entry this node committed: only
                        // possible when a majority of nodes restarted empty
                        // (beyond what the protocol survives). Start over as a
                        // node that lost its memory, and follow the leader.
                        self.reset_after_majority_loss(index);
                        return self.reply(false, 0, 1, stamp);
                    }
                    let undone = self.log.truncate_from(index);
                    self.record_rollbacks(undone, now);
                    self.log.append(e, now);
                }
                None => self.log.append(e, now),
            }
            matched = index;
        }
        let commit = req.leader_commit.min(matched);
        self.set_commit(commit, now);
        self.note_catch_up(req.leader_last, matched);
        self.reply(true, matched, 0, stamp)
    }

    /// The leader's committed state, for a follower its log cannot catch up.
    pub fn on_snapshot(&mut self, req: SnapshotRequest, now: Instant) -> AppendResponse {
        let stamp = req.sent_at_ms;
        if !self.may_follow() {
            return AppendResponse {
                term: 0,
                ..self.reply(false, 0, 0, stamp)
            };
        }
        if req.term < self.term || (self.is_leader() && req.term == self.term) {
            return self.reply(false, 0, 0, stamp);
        }
        self.hear_from_leader(
            req.term,
            req.leader,
            (req.config, req.config_index),
            req.sent_at_ms,
            now,
        );
        if req.last_index <= self.commit {
            self.staging = None;
            let m = self.commit;
            self.note_catch_up(req.leader_last, m);
            return self.reply(true, m, 0, stamp);
        }
        if self.log.term_at(req.last_index) == Some(req.last_term) {
            // The log already holds it: the prefix matches.
            self.set_commit(req.last_index, now);
            self.note_catch_up(req.leader_last, req.last_index);
            return self.reply(true, req.last_index, 0, stamp);
        }
        // Stage the chunk; install once the last one is here.
        let fits = self.staging.as_ref().is_some_and(|st| {
            (st.term, st.last_index, st.last_term) == (req.term, req.last_index, req.last_term)
                && st.records.len() as u64 == req.offset
        });
        if req.offset == 0 && !fits {
            self.staging = Some(Staging {
                term: req.term,
                last_index: req.last_index,
                last_term: req.last_term,
                records: Vec::new(),
            });
        } else if !fits {
            // A chunk out of order (or of another snapshot): say where we are.
            let staged = self
                .staging
                .as_ref()
                .filter(|st| (st.term, st.last_index) == (req.term, req.last_index))
                .map_or(0, |st| st.records.len() as u64);
            return AppendResponse {
                staged: Some(staged),
                ..self.reply(false, 0, 0, stamp)
            };
        }
        let mut req = req;
        if let Some(st) = &mut self.staging {
            st.records.append(&mut req.records);
            if !req.done {
                let staged = st.records.len() as u64;
                return AppendResponse {
                    staged: Some(staged),
                    ..self.reply(false, 0, 0, stamp)
                };
            }
        }
        let records = self.staging.take().map(|st| st.records).unwrap_or_default();
        // Undo everything uncommitted, then take the leader's state. An
        // undone entry survives if the leader's log has its term at its index.
        let undone = self.log.truncate_from(self.commit + 1);
        let lost: Vec<LogEntry> = undone
            .into_iter()
            .filter(|e| {
                e.index > req.last_index || term_in_runs(&req.terms, e.index) != Some(e.term)
            })
            .collect();
        self.record_rollbacks(lost, now);
        let base = Base {
            index: req.last_index,
            term: req.last_term,
            floor: req.floor,
            window: req.window,
            config: req.base_config,
            config_index: req.base_config_index,
        };
        self.log.install(base, req.terms, records, req.max_version);
        self.commit = req.last_index;
        self.note_catch_up(req.leader_last, req.last_index);
        self.reply(true, req.last_index, 0, stamp)
    }

    /// Ends the catching-up of a started node once its log matches what the
    /// leader held when they first spoke (a new leader sets a new target: its
    /// log may be shorter than the last one's).
    fn reset_after_majority_loss(&mut self, index: Seq) {
        self.resets += 1;
        tracing::error!(
            index,
            commit = self.commit,
            "the leader lacks an entry this node committed: a majority of nodes must have \
             restarted empty; discarding this node's state to follow the leader"
        );
        let writes = self.log.len() as u64;
        self.rolled_back += writes;
        let config = self.log.config().0;
        self.log = Log::new(self.log.store().clone(), config);
        self.log.store().replace_all(Vec::new());
        self.commit = 0;
        self.catching_up = Some(None);
        self.amnesia = Some(Amnesia {
            answers: BTreeMap::new(),
            term_known: true,
            last_probe: None,
        });
    }

    /// Times this node discarded committed state to follow a leader that
    /// lacks it (only after a majority of nodes restarted empty).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn note_catch_up(&mut self, leader_last: Seq, matched: Seq) {
        if let Some(target) = self.catching_up {
            let target = match target {
                Some((term, t)) if term == self.term => t,
                _ => leader_last,
            };
            if matched >= target {
                self.catching_up = None;
                self.amnesia = None;
                self.emit(Event::CaughtUp { index: matched });
            } else {
                self.catching_up = Some(Some((self.term, target)));
            }
        }
    }

    fn record_rollbacks(&mut self, undone: Vec<LogEntry>, now: Instant) {
        let at_ms = self.wall(now);
        for e in undone {
            let acknowledged = self.acked_uncommitted.remove(&e.index);
            if let Command::Write { key, version, .. } = e.command {
                self.rolled_back += 1;
                if acknowledged {
                    self.rolled_back_acknowledged += 1;
                }
                let w = RolledBackWrite {
                    key,
                    version,
                    index: e.index,
                    term: e.term,
                    acknowledged,
                    at_ms,
                };
                if self.recent_rollbacks.len() >= RECENT_ROLLBACKS {
                    self.recent_rollbacks.pop_front();
                }
                self.recent_rollbacks.push_back(w.clone());
                self.emit(Event::RolledBack(w));
            }
        }
    }

    fn emit(&mut self, e: Event) {
        self.outputs.push(Output::Event(e));
    }
}

/// The term of `index` in term runs `(first index, term)`.
pub(crate) fn term_in_runs(runs: &[(Seq, Term)], index: Seq) -> Option<Term> {
    runs.iter()
        .take_while(|(start, _)| *start <= index)
        .last()
        .map(|(_, t)| *t)
}

/// Whole milliseconds of `d`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
