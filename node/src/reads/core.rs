//! The read quorum of one coordinated read, as a state machine.
//!
//! [`ReadCore`] decides everything a coordinated read decides and does
//! nothing else: it never touches a socket, the store or a clock. The
//! runtime ([`super::coordinate_read`]) starts it with the coordinator's own
//! copy and the candidate peers ([`candidate_order`]), carries out the
//! [`Output::Ask`]s it returns, and feeds every answer back with
//! [`ReadCore::step`] (the time of each event is an argument, for the
//! trace). Once [`ReadCore::is_done`], [`ReadCore::finish`] gives the
//! decision — the newest counted copy and the replicas to repair, or a
//! [`ReadError`] — and the read's [`ReadTrace`].
//!
//! The arithmetic: `counted` replicas (current copies, the coordinator's
//! own included when the policy counts it) plus asks in flight never exceed
//! R; each answer that does not count (not current, failed, timed out)
//! frees its place for the next candidate. The read is met at R counted
//! copies, and fails once nothing is in flight and no candidate is left.
//!
//! Digest reads ([`ReadStart::digest`]): peers are asked for their version
//! only. Once R copies counted, the newest version's value is taken from a
//! copy in hand (the coordinator's own, usually); when none has it, one
//! replica that answered that version is asked again for its full copy (a
//! *fetch*, at most one in flight, each replica fetched at most once). The
//! fetch's answer replaces the replica's counted answer, whatever it is: a
//! newer copy (the replica moved on) becomes the newest, and the stale
//! replicas are repaired against it; an older copy or none is counted as
//! such and the newest is decided again; a failure, a timeout or "not
//! current" takes the replica out of the count, and its place goes to the
//! next candidate as for any failed ask. So a read with a fetch still ends
//! met with the value of its newest counted version, or not met.

use kv_shared::events::{ReadAnswer, ReadReplicaTrace, ReadTrace, TraceOutcome};
use kv_shared::replication::{LeaderRead, ReadCopy, VersionedValue};
use kv_shared::{NodeId, Term, Version};
use std::collections::BTreeMap;

/// Identifies one ask of a read (chosen by the core, unique within the read).
pub type AskId = u32;

/// How a coordinated read treats the coordinator's copy and stale replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPolicy {
    /// Whether the coordinator's own copy counts towards R (false while it
    /// catches up after a restart).
    pub count_self: bool,
    /// Whether replicas that answered an older copy are repaired.
    pub repair: bool,
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

/// Everything a read starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStart {
    /// The coordinator.
    pub me: NodeId,
    /// The key read.
    pub key: String,
    /// The read quorum in force.
    pub r: u32,
    /// The peers in the order they are asked ([`candidate_order`]); the
    /// coordinator and repeated ids are skipped.
    pub candidates: Vec<NodeId>,
    /// Whether the coordinator's copy counts, whether stale replicas are repaired.
    pub policy: ReadPolicy,
    /// The coordinator's own copy.
    pub local: Option<VersionedValue>,
    /// What the coordinator adds to its copy (term, leader answer).
    pub local_answer: LocalAnswer,
    /// Ask peers for their version only, and fetch the newest value only
    /// when no copy in hand has it.
    pub digest: bool,
    /// When the read started (wall clock, ms).
    pub now_ms: u64,
}

/// A replica's answer to an ask, as the runtime saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A current replica's copy (`None`: it has no copy of the key).
    Copy {
        /// Its copy; without its value in the answer to a digest ask.
        found: Option<ReadCopy>,
        /// Leader-follower: its term.
        term: Option<Term>,
        /// Leader-follower: its leader answer, when it leads a started term.
        leader_read: Option<LeaderRead>,
    },
    /// It is catching up after a restart: its copy does not count.
    NotCurrent,
    /// The ask failed (refused, error answer, unreadable answer).
    Failed,
    /// No answer within the peer timeout.
    TimedOut,
}

/// What the runtime must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Ask replica `to` for its copy of the key, and feed the answer back
    /// under `ask`.
    Ask {
        /// Names the answer in [`ReadCore::step`].
        ask: AskId,
        /// The replica.
        to: NodeId,
        /// Its version only (a digest), not its value.
        digest: bool,
    },
}

/// Why a coordinated read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Fewer than R current replicas answered.
    QuorumNotMet {
        /// Current replicas that answered (the coordinator included).
        acked: u32,
        /// The R the read needed.
        required: u32,
        /// Replicas that answered but are catching up after a restart (not
        /// counted), sorted.
        not_current: Vec<NodeId>,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::QuorumNotMet {
                acked,
                required,
                not_current,
            } => {
                write!(
                    f,
                    "read quorum not met: {acked} of {required} replicas answered"
                )?;
                for (i, id) in not_current.iter().enumerate() {
                    let sep = if i == 0 {
                        "; catching up after a restart, not counted: "
                    } else {
                        ", "
                    };
                    write!(f, "{sep}node {id}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// How the read ended, for its trace.
    pub fn trace_outcome(&self) -> TraceOutcome {
        match self {
            ReadError::QuorumNotMet {
                acked, required, ..
            } => TraceOutcome::Failed {
                acked: *acked,
                required: *required,
            },
        }
    }
}

/// The decision of a read that met its quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The newest copy among the counted replies, if any replica has the key.
    pub newest: Option<VersionedValue>,
    /// The counted replicas, in the order they answered (the coordinator first
    /// when its copy counts; a fetched replica where its fetch answered).
    pub replied: Vec<NodeId>,
    /// Leader-follower: the highest term any counted replica is in.
    pub max_term: Option<Term>,
    /// Leader-follower: the answer of a leader among the counted replicas.
    pub leader_read: Option<LeaderRead>,
    /// The counted replicas that answered an older copy or none, to be sent
    /// [`Quorum::newest`] (empty unless the policy repairs).
    pub repair: Vec<NodeId>,
}

/// One ask in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    /// The replica asked.
    to: NodeId,
    /// Its line in the trace.
    line: usize,
    /// A fetch of the newest value from a replica already counted.
    fetch: bool,
}

/// A counted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    /// The replica.
    id: NodeId,
    /// Its copy's version, if it has one.
    version: Option<Version>,
    /// Its line in the trace.
    line: usize,
}

/// The state of one coordinated read.
#[derive(Debug, Clone)]
pub struct ReadCore {
    /// The coordinator.
    me: NodeId,
    /// The key read.
    key: String,
    /// The read quorum.
    r: u32,
    /// Whether the coordinator's copy counts, whether stale replicas are repaired.
    policy: ReadPolicy,
    /// Peers not asked yet, in order.
    todo: std::vec::IntoIter<NodeId>,
    /// Asks in flight, by id.
    asks: BTreeMap<AskId, InFlight>,
    /// The id of the next ask.
    next_ask: AskId,
    /// Counted replies, in the order they came, with their trace lines.
    counted: Vec<Counted>,
    /// Every copy whose value is known (the coordinator's own, full
    /// answers, leader answers): where the newest value comes from.
    in_hand: Vec<VersionedValue>,
    /// Replicas fetched from (each at most once).
    fetched: Vec<NodeId>,
    /// Whether peers are asked for their version only.
    digest: bool,
    /// Replicas that answered "not current" (the coordinator included).
    not_current: Vec<NodeId>,
    /// Leader-follower: the highest term heard from a counted replica.
    max_term: Option<Term>,
    /// Leader-follower: the last leader answer heard from a counted replica.
    leader_read: Option<LeaderRead>,
    /// When the read started (wall clock, ms).
    started_at_ms: u64,
    /// One line per replica asked, in the order asked.
    trace: Vec<ReadReplicaTrace>,
    /// Set once the read ended.
    decision: Option<Result<Quorum, ReadError>>,
}

/// A version as a trace answer.
fn answer_of(v: Option<Version>) -> ReadAnswer {
    v.map_or(ReadAnswer::Missing, |version| ReadAnswer::Version {
        version,
    })
}

/// The order in which peers are asked: `preferred` first (the leader, in
/// leader-follower mode), then peers whose last contact succeeded, then the
/// others — each group in ring order from the coordinator on (the ids above
/// it, then those below), as a Dynamo preference list. `peers` are `(id,
/// up)`, sorted by id.
///
/// With every peer up, a coordinator asks the same R-1 peers for every key,
/// so its concurrent reads meet in the same peers' batches ([`super::batch`]:
/// fewer, larger batches), and each node is the first successor of as many
/// coordinators as any other, so the asks spread over the cluster as a
/// rotation per key spread them. Measured against a rotation per key: a
/// third fewer frames per read, leaderless R = 3 reads +5 % on average over
/// 8 back-to-back pairs (`docs/results.md`, "Reads along the ring").
pub fn candidate_order(
    me: NodeId,
    peers: &[(NodeId, bool)],
    preferred: Option<NodeId>,
) -> Vec<NodeId> {
    let mut ids = peers.to_vec();
    let above = ids.partition_point(|&(id, _)| id <= me);
    ids.rotate_left(above);
    let (up, down): (Vec<_>, Vec<_>) = ids.into_iter().partition(|&(_, up)| up);
    let mut order: Vec<NodeId> = up.into_iter().chain(down).map(|(id, _)| id).collect();
    if let Some(p) = preferred.filter(|&p| p != me) {
        if let Some(i) = order.iter().position(|&id| id == p) {
            order.remove(i);
            order.insert(0, p);
        }
    }
    order
}

impl ReadCore {
    /// Starts a read: the coordinator's copy is answered at once (counted or
    /// not, by the policy), and as many peers are asked as R still needs.
    pub fn start(s: ReadStart) -> (Self, Vec<Output>) {
        let mut seen = std::collections::BTreeSet::from([s.me]);
        let todo: Vec<NodeId> = s
            .candidates
            .into_iter()
            .filter(|&id| seen.insert(id))
            .collect();
        let mut core = Self {
            me: s.me,
            key: s.key,
            r: s.r,
            policy: s.policy,
            todo: todo.into_iter(),
            asks: BTreeMap::new(),
            next_ask: 0,
            counted: Vec::new(),
            in_hand: Vec::new(),
            fetched: Vec::new(),
            digest: s.digest,
            not_current: Vec::new(),
            max_term: s.local_answer.term,
            leader_read: None,
            started_at_ms: s.now_ms,
            trace: Vec::new(),
            decision: None,
        };
        let version = s.local.as_ref().map(|v| v.version);
        let answer = if s.policy.count_self {
            core.note_leader_read(s.local_answer.leader_read);
            core.counted.push(Counted {
                id: s.me,
                version,
                line: 0,
            });
            answer_of(version)
        } else {
            core.not_current.push(s.me);
            ReadAnswer::NotCurrent
        };
        // Not counted while it catches up, the coordinator's copy is still a
        // true value of its version.
        core.in_hand.extend(s.local);
        core.trace.push(ReadReplicaTrace {
            id: s.me,
            asked_at_ms: s.now_ms,
            answered_at_ms: Some(s.now_ms),
            answer,
        });
        let out = core.advance(s.now_ms);
        (core, out)
    }

    /// Feeds the answer to ask `ask`. Answers to asks not in flight (a
    /// duplicate, a late answer after the read ended, an unknown id) change
    /// nothing.
    pub fn step(&mut self, ask: AskId, reply: Reply, now_ms: u64) -> Vec<Output> {
        if self.decision.is_some() {
            return Vec::new();
        }
        let Some(InFlight { to, line, fetch }) = self.asks.remove(&ask) else {
            return Vec::new();
        };
        if fetch {
            // The fetch's answer replaces the replica's counted one.
            self.counted.retain(|c| c.id != to);
        }
        let (answer, answered_at_ms) = match reply {
            Reply::Copy {
                found: Some(ReadCopy { value: None, .. }),
                ..
            } if fetch => (ReadAnswer::Failed, None),
            Reply::Copy {
                found,
                term,
                leader_read,
            } => {
                self.max_term = self.max_term.max(term);
                self.note_leader_read(leader_read);
                let version = found.as_ref().map(|c| c.version);
                if let Some(ReadCopy {
                    version,
                    value: Some(value),
                }) = found
                {
                    self.in_hand.push(VersionedValue { value, version });
                }
                self.counted.push(Counted {
                    id: to,
                    version,
                    line,
                });
                (answer_of(version), Some(now_ms))
            }
            Reply::NotCurrent => {
                self.not_current.push(to);
                (ReadAnswer::NotCurrent, Some(now_ms))
            }
            Reply::Failed | Reply::TimedOut => (ReadAnswer::Failed, None),
        };
        let t = &mut self.trace[line];
        t.answer = answer;
        t.answered_at_ms = answered_at_ms;
        self.advance(now_ms)
    }

    /// Keeps a leader answer (the last one heard) and its copy.
    fn note_leader_read(&mut self, leader_read: Option<LeaderRead>) {
        if let Some(lr) = leader_read {
            self.in_hand.extend(lr.found.clone());
            self.leader_read = Some(lr);
        }
    }

    /// The newest version among the counted replies.
    fn newest_version(&self) -> Option<Version> {
        self.counted.iter().filter_map(|c| c.version).max()
    }

    /// The value of `version`, if a copy in hand has it.
    fn value_of(&self, version: Version) -> Option<&VersionedValue> {
        self.in_hand.iter().find(|v| v.version == version)
    }

    /// Asks candidates until counted copies plus asks in flight make R, then
    /// decides if the read is met or can no longer be.
    fn advance(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while self.counted.len() + self.asks.len() < self.r as usize {
            let Some(to) = self.todo.next() else { break };
            let line = self.trace.len();
            self.trace.push(ReadReplicaTrace {
                id: to,
                asked_at_ms: now_ms,
                answered_at_ms: None,
                answer: ReadAnswer::NotNeeded,
            });
            out.push(self.ask(to, line, false));
        }
        if self.counted.len() >= self.r as usize {
            if !self.asks.is_empty() {
                return out; // a fetch in flight
            }
            match self.newest_version() {
                Some(v) if self.value_of(v).is_none() => match self.fetch_target(v) {
                    Some((to, line)) => out.push(self.ask(to, line, true)),
                    // Unreachable: a replica counted with `v` was never
                    // fetched, or its fetch put the value in hand.
                    None => self.decision = Some(Err(self.not_met())),
                },
                _ => self.decision = Some(Ok(self.quorum())),
            }
        } else if self.asks.is_empty() {
            self.decision = Some(Err(self.not_met()));
        }
        out
    }

    /// Registers an ask to `to`, traced on `line` (a fetch on the line of
    /// the replica's first answer, which the fetch's answer replaces).
    fn ask(&mut self, to: NodeId, line: usize, fetch: bool) -> Output {
        let ask = self.next_ask;
        self.next_ask += 1;
        self.asks.insert(ask, InFlight { to, line, fetch });
        if fetch {
            self.fetched.push(to);
        }
        Output::Ask {
            ask,
            to,
            digest: self.digest && !fetch,
        }
    }

    /// The first counted replica that answered `version` and was not
    /// fetched from yet, with its trace line.
    fn fetch_target(&self, version: Version) -> Option<(NodeId, usize)> {
        self.counted
            .iter()
            .find(|c| c.version == Some(version) && !self.fetched.contains(&c.id))
            .map(|c| (c.id, c.line))
    }

    /// The decision of a met read.
    fn quorum(&self) -> Quorum {
        let newest = self
            .newest_version()
            .and_then(|v| self.value_of(v))
            .cloned();
        let repair = match (&newest, self.policy.repair) {
            (Some(best), true) => self
                .counted
                .iter()
                .filter(|c| c.version.is_none_or(|v| v < best.version))
                .map(|c| c.id)
                .collect(),
            _ => Vec::new(),
        };
        Quorum {
            newest,
            replied: self.counted.iter().map(|c| c.id).collect(),
            max_term: self.max_term,
            leader_read: self.leader_read.clone(),
            repair,
        }
    }

    /// The error of a read that can no longer meet R.
    fn not_met(&self) -> ReadError {
        let mut not_current = self.not_current.clone();
        not_current.sort_unstable();
        ReadError::QuorumNotMet {
            acked: self.counted.len() as u32,
            required: self.r,
            not_current,
        }
    }

    /// Whether the read ended (met, or failed).
    pub fn is_done(&self) -> bool {
        self.decision.is_some()
    }

    /// The decision, once the read ended.
    pub fn decision(&self) -> Option<&Result<Quorum, ReadError>> {
        self.decision.as_ref()
    }

    /// Asks in flight.
    pub fn in_flight(&self) -> usize {
        self.asks.len()
    }

    /// Replicas counted towards R so far.
    pub fn counted(&self) -> usize {
        self.counted.len()
    }

    /// Ends the read at `now_ms`: its decision (a read not done yet — the
    /// runtime lost track of an ask — fails with what it has) and, when
    /// `trace_id` is given, its trace.
    pub fn finish(
        self,
        now_ms: u64,
        trace_id: Option<u64>,
    ) -> (Result<Quorum, ReadError>, Option<ReadTrace>) {
        let decision = match &self.decision {
            Some(d) => d.clone(),
            None => Err(self.not_met()),
        };
        let trace = trace_id.map(|id| {
            let (winner, repaired, outcome) = match &decision {
                Ok(q) => (q.newest.as_ref().map(|v| v.version), q.repair.clone(), None),
                Err(e) => (None, Vec::new(), Some(e.trace_outcome())),
            };
            ReadTrace {
                id,
                key: self.key,
                coordinator: self.me,
                r: self.r,
                started_at_ms: self.started_at_ms,
                finished_at_ms: now_ms,
                replicas: self.trace,
                winner,
                repaired,
                outcome,
                at_ms: now_ms,
            }
        });
        (decision, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADERLESS: ReadPolicy = ReadPolicy {
        count_self: true,
        repair: true,
    };
    const LEADER_FOLLOWER: ReadPolicy = ReadPolicy {
        count_self: true,
        repair: false,
    };
    const CATCHING_UP: ReadPolicy = ReadPolicy {
        count_self: false,
        repair: false,
    };

    fn v(version: u64) -> Option<VersionedValue> {
        Some(VersionedValue {
            value: format!("v{version}"),
            version,
        })
    }

    fn copy(found: Option<VersionedValue>) -> Reply {
        Reply::Copy {
            found: found.map(|v| ReadCopy {
                version: v.version,
                value: Some(v.value),
            }),
            term: None,
            leader_read: None,
        }
    }

    /// A full copy in an answer.
    fn full(version: u64) -> Option<ReadCopy> {
        Some(ReadCopy {
            version,
            value: Some(format!("v{version}")),
        })
    }

    /// A digest answer: the version only.
    fn digest(version: Option<u64>) -> Reply {
        Reply::Copy {
            found: version.map(|version| ReadCopy {
                version,
                value: None,
            }),
            term: None,
            leader_read: None,
        }
    }

    /// Node 1 reads `k` over `r` with peers 2.. in order, its own copy `local`.
    fn read(
        r: u32,
        peers: &[NodeId],
        policy: ReadPolicy,
        local: Option<VersionedValue>,
    ) -> (ReadCore, Vec<Output>) {
        ReadCore::start(ReadStart {
            me: 1,
            key: "k".into(),
            r,
            candidates: peers.to_vec(),
            policy,
            local,
            local_answer: LocalAnswer::default(),
            digest: false,
            now_ms: 0,
        })
    }

    /// As [`read`], with digest asks.
    fn digest_read(
        r: u32,
        peers: &[NodeId],
        local: Option<VersionedValue>,
    ) -> (ReadCore, Vec<Output>) {
        ReadCore::start(ReadStart {
            me: 1,
            key: "k".into(),
            r,
            candidates: peers.to_vec(),
            policy: LEADERLESS,
            local,
            local_answer: LocalAnswer::default(),
            digest: true,
            now_ms: 0,
        })
    }

    /// The replicas `out` asks, in order.
    fn asked(out: &[Output]) -> Vec<NodeId> {
        out.iter().map(|Output::Ask { to, .. }| *to).collect()
    }

    /// The replicas `out` asks, with whether each ask is a digest.
    fn asked_digest(out: &[Output]) -> Vec<(NodeId, bool)> {
        out.iter()
            .map(|Output::Ask { to, digest, .. }| (*to, *digest))
            .collect()
    }

    /// The ask id `out` sends to `to`.
    fn ask_to(out: &[Output], to: NodeId) -> AskId {
        out.iter()
            .find_map(|&Output::Ask { ask, to: t, .. }| (t == to).then_some(ask))
            .expect("asked")
    }

    fn met(core: &ReadCore) -> &Quorum {
        match core.decision() {
            Some(Ok(q)) => q,
            other => panic!("not met: {other:?}"),
        }
    }

    #[test]
    fn the_leader_is_asked_first() {
        // The preferred peer leads the order even when it is believed down.
        let peers = [(2, true), (3, true), (4, false), (5, true)];
        let order = candidate_order(1, &peers, Some(4));
        assert_eq!(order[0], 4, "{order:?}");
        let (_, out) = read(2, &order, LEADER_FOLLOWER, None);
        assert_eq!(asked(&out), [4]);
    }

    #[test]
    fn peers_that_answered_lately_come_first_in_ring_order() {
        // Up peers before down ones, each group from the coordinator on
        // around the ring of ids: 3 asks 4, 5, then 1, 2.
        let peers = [(1, true), (2, true), (4, false), (5, true)];
        assert_eq!(candidate_order(3, &peers, None), [5, 1, 2, 4]);
        let all_up = [(1, true), (2, true), (4, true), (5, true)];
        assert_eq!(candidate_order(3, &all_up, None), [4, 5, 1, 2]);
        // The highest id wraps to the lowest; the lowest starts above itself.
        let below = [(1, true), (2, true), (3, true)];
        assert_eq!(candidate_order(4, &below, None), [1, 2, 3]);
        let above = [(2, true), (3, true), (4, true)];
        assert_eq!(candidate_order(1, &above, None), [2, 3, 4]);
        assert!(candidate_order(1, &[], None).is_empty());
    }

    #[test]
    fn every_node_is_the_first_successor_of_one_coordinator() {
        // Five nodes, every peer up: each coordinator's first R-1 peers are
        // its successors on the ring, so each node is asked by as many
        // coordinators as any other (leaderless, R = 3: by two).
        let view = |me: NodeId| -> Vec<(NodeId, bool)> {
            (1..=5)
                .filter(|&id| id != me)
                .map(|id| (id, true))
                .collect()
        };
        let mut asked_by = BTreeMap::<NodeId, usize>::new();
        for me in 1..=5 {
            let order = candidate_order(me, &view(me), None);
            assert_eq!(
                order[..2],
                [me % 5 + 1, (me + 1) % 5 + 1],
                "node {me}: {order:?}"
            );
            for &to in &order[..2] {
                *asked_by.entry(to).or_default() += 1;
            }
        }
        assert!(asked_by.values().all(|&c| c == 2), "{asked_by:?}");
        // Leader-follower: the leader first, then each follower's successor,
        // which is again a different follower for each.
        let mut second = BTreeMap::<NodeId, NodeId>::new();
        for me in 2..=5 {
            let order = candidate_order(me, &view(me), Some(1));
            assert_eq!(order[0], 1, "node {me}: {order:?}");
            second.insert(me, order[1]);
        }
        let mut seconds: Vec<_> = second.values().copied().collect();
        seconds.sort_unstable();
        assert_eq!(seconds, [2, 3, 4, 5], "{second:?}");
    }

    #[test]
    fn the_coordinator_is_never_asked() {
        // Preferring itself changes nothing; itself or a repeated id among the
        // candidates is skipped.
        let peers = [(2, true), (3, true)];
        assert_eq!(
            candidate_order(1, &peers, Some(1)),
            candidate_order(1, &peers, None)
        );
        let (_, out) = read(3, &[1, 2, 2, 3], LEADERLESS, None);
        assert_eq!(asked(&out), [2, 3]);
    }

    #[test]
    fn r_minus_one_peers_are_asked_when_the_coordinators_copy_counts() {
        // The coordinator's copy is the first of the R; a catching-up
        // coordinator needs R peers.
        let (core, out) = read(3, &[2, 3, 4, 5], LEADERLESS, v(1));
        assert_eq!((asked(&out), core.counted()), (vec![2, 3], 1));
        let (core, out) = read(3, &[2, 3, 4, 5], CATCHING_UP, v(1));
        assert_eq!((asked(&out), core.counted()), (vec![2, 3, 4], 0));
    }

    #[test]
    fn a_failed_peer_is_replaced_by_the_next_candidate() {
        let (mut core, out) = read(3, &[2, 3, 4], LEADERLESS, v(1));
        let next = core.step(ask_to(&out, 2), Reply::Failed, 5);
        assert_eq!(asked(&next), [4]);
        assert_eq!(core.in_flight(), 2);
        assert!(!core.is_done());
    }

    #[test]
    fn a_timed_out_peer_is_replaced_by_the_next_candidate() {
        let (mut core, out) = read(2, &[2, 3], LEADERLESS, v(1));
        let next = core.step(ask_to(&out, 2), Reply::TimedOut, 2_000);
        assert_eq!(asked(&next), [3]);
        core.step(ask_to(&next, 3), copy(v(1)), 2_001);
        assert_eq!(met(&core).replied, [1, 3]);
    }

    #[test]
    fn a_replica_catching_up_does_not_count_towards_r() {
        // Node 2 answers not current: node 4 is asked instead, and only the
        // current copies make the quorum.
        let (mut core, out) = read(3, &[2, 3, 4], LEADER_FOLLOWER, v(1));
        let next = core.step(ask_to(&out, 2), Reply::NotCurrent, 1);
        assert_eq!(asked(&next), [4]);
        core.step(ask_to(&out, 3), copy(v(1)), 2);
        assert!(!core.is_done(), "two of three counted");
        core.step(ask_to(&next, 4), copy(v(1)), 3);
        assert_eq!(met(&core).replied, [1, 3, 4]);
    }

    #[test]
    fn the_coordinators_copy_does_not_count_while_it_catches_up() {
        // Its newer copy is not what the read returns: only the peers counted.
        let (mut core, out) = read(2, &[2, 3], CATCHING_UP, v(9));
        core.step(ask_to(&out, 2), copy(v(3)), 1);
        core.step(ask_to(&out, 3), copy(v(4)), 2);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.replied.clone()), (v(4), vec![2, 3]));
    }

    #[test]
    fn fewer_than_r_current_replies_fail_with_acked_and_required() {
        // One peer fails, one catches up, none is left: 1 of 3, and the error
        // names the replica that did not count.
        let (mut core, out) = read(3, &[2, 3], LEADER_FOLLOWER, v(1));
        core.step(ask_to(&out, 3), Reply::NotCurrent, 1);
        assert!(!core.is_done());
        core.step(ask_to(&out, 2), Reply::Failed, 2);
        let expected = ReadError::QuorumNotMet {
            acked: 1,
            required: 3,
            not_current: vec![3],
        };
        assert_eq!(core.decision(), Some(&Err(expected.clone())));
        assert_eq!(
            expected.to_string(),
            "read quorum not met: 1 of 3 replicas answered; catching up after a restart, \
             not counted: node 3"
        );
        let (decision, trace) = core.finish(3, Some(7));
        assert_eq!(decision, Err(expected));
        let trace = trace.expect("traced");
        assert_eq!(
            trace.outcome,
            Some(TraceOutcome::Failed {
                acked: 1,
                required: 3
            })
        );
        assert_eq!(trace.winner, None);
    }

    #[test]
    fn the_message_lists_the_replicas_catching_up_sorted() {
        let e = ReadError::QuorumNotMet {
            acked: 0,
            required: 2,
            not_current: vec![1, 4],
        };
        assert_eq!(
            e.to_string(),
            "read quorum not met: 0 of 2 replicas answered; catching up after a restart, \
             not counted: node 1, node 4"
        );
        let e = ReadError::QuorumNotMet {
            acked: 1,
            required: 2,
            not_current: vec![],
        };
        assert_eq!(
            e.to_string(),
            "read quorum not met: 1 of 2 replicas answered"
        );
    }

    #[test]
    fn a_read_with_no_peer_to_ask_fails_at_once() {
        // R above the cluster size can never be met: the read ends at start.
        let (core, out) = read(2, &[], LEADERLESS, v(1));
        assert!(out.is_empty());
        assert!(matches!(
            core.decision(),
            Some(Err(ReadError::QuorumNotMet {
                acked: 1,
                required: 2,
                ..
            }))
        ));
    }

    #[test]
    fn the_newest_counted_copy_wins() {
        let (mut core, out) = read(3, &[2, 3, 4], LEADERLESS, v(2));
        core.step(ask_to(&out, 2), copy(v(5)), 1);
        core.step(ask_to(&out, 3), copy(None), 2);
        assert_eq!(met(&core).newest, v(5));
    }

    #[test]
    fn leaderless_repairs_exactly_the_replicas_that_answered_older() {
        // The coordinator (older) and node 3 (missing) are repaired; node 2,
        // which holds the winner, and node 4, which was not needed, are not.
        let (mut core, out) = read(3, &[2, 3, 4], LEADERLESS, v(2));
        core.step(ask_to(&out, 2), copy(v(5)), 1);
        core.step(ask_to(&out, 3), copy(None), 2);
        assert_eq!(met(&core).repair, [1, 3]);
        let (_, trace) = core.finish(3, Some(1));
        assert_eq!(trace.expect("traced").repaired, [1, 3]);
    }

    #[test]
    fn equal_copies_need_no_repair() {
        let (mut core, out) = read(2, &[2], LEADERLESS, v(4));
        core.step(ask_to(&out, 2), copy(v(4)), 1);
        assert!(met(&core).repair.is_empty());
        let (mut core, out) = read(2, &[2], LEADERLESS, None);
        core.step(ask_to(&out, 2), copy(None), 1);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.repair.clone()), (None, vec![]));
    }

    #[test]
    fn leader_follower_never_repairs() {
        let (mut core, out) = read(3, &[2, 3], LEADER_FOLLOWER, v(2));
        core.step(ask_to(&out, 2), copy(v(5)), 1);
        core.step(ask_to(&out, 3), copy(None), 2);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.repair.clone()), (v(5), vec![]));
    }

    #[test]
    fn leader_follower_reads_keep_the_highest_term_and_the_leaders_answer() {
        // The leader (node 2) answers in term 3, a follower is in term 4: the
        // caller sees both and decides (a newer leader may exist).
        let (mut core, out) = ReadCore::start(ReadStart {
            me: 1,
            key: "k".into(),
            r: 3,
            candidates: vec![2, 3],
            policy: LEADER_FOLLOWER,
            local: v(1),
            local_answer: LocalAnswer {
                term: Some(3),
                leader_read: None,
            },
            digest: false,
            now_ms: 0,
        });
        let lr = LeaderRead {
            term: 3,
            found: v(1),
        };
        let leader = Reply::Copy {
            found: full(1),
            term: Some(3),
            leader_read: Some(lr.clone()),
        };
        core.step(ask_to(&out, 2), leader, 1);
        let follower = Reply::Copy {
            found: full(1),
            term: Some(4),
            leader_read: None,
        };
        core.step(ask_to(&out, 3), follower, 2);
        let q = met(&core);
        assert_eq!((q.max_term, q.leader_read.clone()), (Some(4), Some(lr)));
    }

    #[test]
    fn answers_after_the_read_ended_change_nothing() {
        // A late answer, a duplicate and an unknown ask are all ignored.
        let (mut core, out) = read(2, &[2, 3], LEADERLESS, v(1));
        let next = core.step(ask_to(&out, 2), Reply::Failed, 1);
        core.step(ask_to(&next, 3), copy(v(1)), 2);
        let before = met(&core).clone();
        assert!(core.step(ask_to(&next, 3), copy(v(9)), 3).is_empty());
        assert!(core.step(ask_to(&out, 2), copy(v(9)), 3).is_empty());
        assert!(core.step(99, copy(v(9)), 3).is_empty());
        assert_eq!(met(&core), &before);
    }

    #[test]
    fn a_duplicate_answer_counts_once() {
        // Node 2's answer delivered twice is one of the R, not two.
        let (mut core, out) = read(3, &[2, 3], LEADERLESS, v(1));
        let a = ask_to(&out, 2);
        core.step(a, copy(v(1)), 1);
        core.step(a, copy(v(1)), 2);
        assert_eq!((core.counted(), core.is_done()), (2, false));
    }

    #[test]
    fn the_trace_lists_every_ask_in_order_with_its_answer() {
        // The coordinator first, then the peers as asked; a failed ask has no
        // answer time, an ask the read did not wait for is "not needed".
        let (mut core, out) = read(3, &[2, 3, 4], LEADERLESS, v(1));
        let next = core.step(ask_to(&out, 2), Reply::Failed, 10);
        core.step(ask_to(&next, 4), copy(None), 12);
        assert!(!core.is_done());
        core.step(ask_to(&out, 3), copy(v(2)), 15);
        let (_, trace) = core.finish(16, Some(5));
        let t = trace.expect("traced");
        let lines: Vec<_> = t
            .replicas
            .iter()
            .map(|r| (r.id, r.asked_at_ms, r.answered_at_ms, r.answer))
            .collect();
        assert_eq!(
            lines,
            [
                (1, 0, Some(0), ReadAnswer::Version { version: 1 }),
                (2, 0, None, ReadAnswer::Failed),
                (3, 0, Some(15), ReadAnswer::Version { version: 2 }),
                (4, 10, Some(12), ReadAnswer::Missing),
            ]
        );
        assert_eq!(
            (t.id, t.coordinator, t.r, t.started_at_ms, t.finished_at_ms),
            (5, 1, 3, 0, 16)
        );
        assert_eq!((t.winner, t.repaired.clone()), (Some(2), vec![1, 4]));
    }

    #[test]
    fn an_unwatched_read_builds_no_trace() {
        let (core, _) = read(1, &[], LEADERLESS, v(1));
        assert_eq!(core.finish(1, None).1, None);
    }
    #[test]
    fn digest_reads_ask_peers_for_versions_only() {
        let (_, out) = digest_read(3, &[2, 3, 4], v(1));
        assert_eq!(asked_digest(&out), [(2, true), (3, true)]);
        let (_, out) = read(3, &[2, 3, 4], LEADERLESS, v(1));
        assert_eq!(asked_digest(&out), [(2, false), (3, false)]);
    }

    #[test]
    fn a_newest_copy_in_hand_needs_no_fetch() {
        // The coordinator holds version 4, the peers answer 4 and older: its
        // own value is the answer, and nothing more is asked.
        let (mut core, out) = digest_read(3, &[2, 3], v(4));
        assert!(core.step(ask_to(&out, 2), digest(Some(4)), 1).is_empty());
        assert!(core.step(ask_to(&out, 3), digest(Some(2)), 2).is_empty());
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.repair.clone()), (v(4), vec![3]));
    }

    #[test]
    fn a_newer_version_elsewhere_is_fetched_from_a_replica_that_holds_it() {
        // Node 3 answers version 6 as a digest: once R counted, node 3 alone
        // is asked for its full copy, and the read ends with its value.
        let (mut core, out) = digest_read(3, &[2, 3, 4], v(4));
        assert!(core.step(ask_to(&out, 3), digest(Some(6)), 1).is_empty());
        let fetch = core.step(ask_to(&out, 2), digest(Some(4)), 2);
        assert_eq!(asked_digest(&fetch), [(3, false)]);
        assert!(!core.is_done(), "waits for the value");
        core.step(ask_to(&fetch, 3), copy(v(6)), 3);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.repair.clone()), (v(6), vec![1, 2]));
    }

    #[test]
    fn a_fetch_that_finds_the_replica_moved_on_returns_the_newer_copy() {
        // Between its digest (6) and the fetch, node 3 took version 8: the
        // read returns 8, and every other counted replica is repaired to it.
        let (mut core, out) = digest_read(3, &[2, 3], v(4));
        core.step(ask_to(&out, 3), digest(Some(6)), 1);
        let fetch = core.step(ask_to(&out, 2), digest(Some(6)), 2);
        core.step(ask_to(&fetch, asked(&fetch)[0]), copy(v(8)), 3);
        let q = met(&core);
        assert_eq!(q.newest, v(8));
        assert_eq!(q.repair, [1, 2]);
        let (_, trace) = core.finish(4, Some(1));
        assert_eq!(trace.expect("traced").winner, Some(8));
    }

    #[test]
    fn a_failed_fetch_gives_the_replicas_place_to_the_next_candidate() {
        // Node 3 had version 6 but fails when fetched: it no longer counts,
        // node 4 is asked in its place, and the read ends on what it answers.
        let (mut core, out) = digest_read(3, &[2, 3, 4], v(4));
        core.step(ask_to(&out, 2), digest(Some(4)), 1);
        let fetch = core.step(ask_to(&out, 3), digest(Some(6)), 2);
        let next = core.step(ask_to(&fetch, 3), Reply::Failed, 3);
        assert_eq!(asked_digest(&next), [(4, true)]);
        assert_eq!(core.counted(), 2);
        core.step(ask_to(&next, 4), digest(Some(4)), 4);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.replied.clone()), (v(4), vec![1, 2, 4]));
    }

    #[test]
    fn a_fetch_that_answers_older_counts_that_copy() {
        // Node 3 restarted between its digest and the fetch and now has
        // version 2: its new answer counts, and the newest is decided again.
        let (mut core, out) = digest_read(2, &[2, 3], v(4));
        let fetch = core.step(ask_to(&out, 2), digest(Some(6)), 1);
        core.step(ask_to(&fetch, 2), copy(v(2)), 2);
        let q = met(&core);
        assert_eq!((q.newest.clone(), q.repair.clone()), (v(4), vec![2]));
    }

    #[test]
    fn a_fetch_failing_with_no_candidate_left_fails_the_quorum() {
        let (mut core, out) = digest_read(2, &[2], v(4));
        let fetch = core.step(ask_to(&out, 2), digest(Some(6)), 1);
        assert!(core.step(ask_to(&fetch, 2), Reply::TimedOut, 2).is_empty());
        assert!(matches!(
            core.decision(),
            Some(Err(ReadError::QuorumNotMet {
                acked: 1,
                required: 2,
                ..
            }))
        ));
    }

    #[test]
    fn a_digest_answer_to_a_fetch_does_not_count() {
        // A fetch must bring the value: a version alone takes the replica out.
        let (mut core, out) = digest_read(2, &[2, 3], v(4));
        let fetch = core.step(ask_to(&out, 2), digest(Some(6)), 1);
        let next = core.step(ask_to(&fetch, 2), digest(Some(6)), 2);
        assert_eq!(asked_digest(&next), [(3, true)]);
    }
}

#[cfg(test)]
mod random {
    //! Seeded random reads: answers in random order, lost (timed out),
    //! duplicated, failed, not current, answers to asks that are not in
    //! flight, and — in digest reads — replicas that move on or lose the key
    //! between their digest and a fetch, with the core's promises checked
    //! after every step.
    //!
    //! `READ_SEED=1234 cargo test -p kv-node --lib reads::core::random --
    //! --nocapture` replays one case and prints its trace; `READ_CASES=N`
    //! changes how many cases run.
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;
    use std::fmt::Write as _;

    /// How a peer answers each ask.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Profile {
        /// Always its copy.
        Steady,
        /// Always "not current".
        CatchingUp,
        /// Its copy or a failure, at random.
        Flaky,
        /// Never answers (every ask times out or fails).
        Down,
    }

    /// An ask sent and not answered yet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Pending {
        ask: AskId,
        to: NodeId,
        digest: bool,
        /// A second ask to a replica already counted.
        fetch: bool,
    }

    /// One random read and what the test knows about it.
    struct Case {
        seed: u64,
        rng: ChaCha8Rng,
        me: NodeId,
        r: u32,
        policy: ReadPolicy,
        digest: bool,
        /// Each peer's copy (its version) and profile.
        peers: BTreeMap<NodeId, (Option<u64>, Profile)>,
        candidates: Vec<NodeId>,
        core: ReadCore,
        pending: Vec<Pending>,
        /// Every answer delivered, for duplicates.
        delivered: Vec<(AskId, Reply)>,
        /// Every replica asked, and every replica fetched from.
        asked: BTreeSet<NodeId>,
        fetched: BTreeSet<NodeId>,
        /// The counted replies, as the test saw them (a fetch's answer
        /// replaces the replica's).
        counted: Vec<(NodeId, Option<u64>)>,
        decision: Option<Result<Quorum, ReadError>>,
        fetches: u64,
        now: u64,
        log: String,
        verbose: bool,
    }

    /// The one value of each version.
    fn value(version: u64) -> VersionedValue {
        VersionedValue {
            value: format!("v{version}"),
            version,
        }
    }

    impl Case {
        fn new(seed: u64, verbose: bool) -> Self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let n: u32 = rng.random_range(1..=7);
            // Sometimes more than the cluster has: never met.
            let r = if rng.random_bool(0.05) {
                n + 1
            } else {
                rng.random_range(1..=n)
            };
            let policy = match rng.random_range(0..3) {
                0 => ReadPolicy {
                    count_self: true,
                    repair: true,
                },
                1 => ReadPolicy {
                    count_self: true,
                    repair: false,
                },
                _ => ReadPolicy {
                    count_self: false,
                    repair: false,
                },
            };
            let digest = rng.random_bool(0.6);
            let me = 1;
            let mut peers = BTreeMap::new();
            for id in 2..=n {
                let copy = rng.random_bool(0.8).then(|| rng.random_range(1..6));
                let profile = match rng.random_range(0..10) {
                    0..=5 => Profile::Steady,
                    6 => Profile::CatchingUp,
                    7 | 8 => Profile::Flaky,
                    _ => Profile::Down,
                };
                peers.insert(id, (copy, profile));
            }
            let view: Vec<_> = peers.keys().map(|&id| (id, rng.random_bool(0.7))).collect();
            let preferred = rng.random_bool(0.5).then(|| rng.random_range(1..=n));
            let candidates = candidate_order(me, &view, preferred);
            let local = rng.random_bool(0.8).then(|| value(rng.random_range(1..6)));
            let mut log = String::new();
            let _ = writeln!(
                log,
                "n={n} r={r} {policy:?} digest={digest} local={:?} peers={peers:?} \
                 candidates={candidates:?}",
                local.as_ref().map(|v| v.version)
            );
            let (core, out) = ReadCore::start(ReadStart {
                me,
                key: "k".into(),
                r,
                candidates: candidates.clone(),
                policy,
                local: local.clone(),
                local_answer: LocalAnswer::default(),
                digest,
                now_ms: 0,
            });
            let mut case = Self {
                seed,
                rng,
                me,
                r,
                policy,
                digest,
                peers,
                candidates,
                core,
                pending: Vec::new(),
                delivered: Vec::new(),
                asked: BTreeSet::new(),
                fetched: BTreeSet::new(),
                counted: Vec::new(),
                decision: None,
                fetches: 0,
                now: 0,
                log,
                verbose,
            };
            if policy.count_self {
                case.counted.push((me, local.map(|v| v.version)));
            }
            case.take(out);
            case.check();
            case
        }

        fn fail(&self, what: &str) -> ! {
            panic!(
                "seed {}: {what}\n--- trace (replay: READ_SEED={} cargo test -p kv-node --lib \
                 reads::core::random -- --nocapture) ---\n{}",
                self.seed, self.seed, self.log
            );
        }

        fn note(&mut self, line: String) {
            if self.verbose {
                println!("{line}");
            }
            self.log.push_str(&line);
            self.log.push('\n');
        }

        /// Records the asks the core sent: each replica asked at most once,
        /// fetched at most once, and only once R counted with the newest
        /// version's value missing.
        fn take(&mut self, out: Vec<Output>) {
            for Output::Ask { ask, to, digest } in out {
                self.note(format!("  ask #{ask} -> node {to} digest={digest}"));
                if to == self.me || !self.candidates.contains(&to) {
                    self.fail(&format!("asked node {to}, not a candidate"));
                }
                if digest && !self.digest {
                    self.fail("a digest ask in a read without digests");
                }
                let fetch = self.asked.contains(&to);
                if fetch {
                    self.check_fetch(to, digest);
                } else {
                    self.asked.insert(to);
                }
                self.pending.push(Pending {
                    ask,
                    to,
                    digest,
                    fetch,
                });
            }
        }

        fn check_fetch(&mut self, to: NodeId, digest: bool) {
            self.fetches += 1;
            if !self.fetched.insert(to) {
                self.fail(&format!("fetched from node {to} twice"));
            }
            // Even without digest asks, a replica that answered without
            // its value is fetched from.
            if digest {
                self.fail(&format!("asked node {to} twice, the second time a digest"));
            }
            let newest = self.counted.iter().filter_map(|(_, v)| *v).max();
            let holds = self
                .counted
                .iter()
                .any(|&(id, v)| id == to && v.is_some() && v == newest);
            if !holds || self.counted.len() < self.r as usize || !self.pending.is_empty() {
                self.fail(&format!(
                    "fetched from node {to}, which does not hold the newest of R counted \
                     copies, or with asks in flight"
                ));
            }
        }

        /// What peer `to` answers now; `digest` leaves the value out.
        fn answer(&mut self, to: NodeId, digest: bool) -> Reply {
            let (copy, profile) = self.peers[&to];
            let copy_reply = Reply::Copy {
                found: copy.map(|version| ReadCopy {
                    version,
                    value: (!digest).then(|| value(version).value),
                }),
                term: None,
                leader_read: None,
            };
            match profile {
                Profile::Steady => copy_reply,
                Profile::CatchingUp => Reply::NotCurrent,
                Profile::Flaky if self.rng.random_bool(0.5) => copy_reply,
                Profile::Flaky => Reply::Failed,
                Profile::Down if self.rng.random_bool(0.5) => Reply::TimedOut,
                Profile::Down => Reply::Failed,
            }
        }

        /// Feeds one answer to the core and checks it.
        fn feed(&mut self, ask: AskId, reply: Reply) {
            self.now += self.rng.random_range(0..50);
            let live = self.pending.iter().position(|p| p.ask == ask);
            self.note(format!("t={} #{ask} {reply:?}", self.now));
            if let Some(i) = live {
                let p = self.pending.remove(i);
                if !self.core.is_done() {
                    self.expect(p, &reply);
                }
            }
            let out = self.core.step(ask, reply.clone(), self.now);
            if live.is_none() && !out.is_empty() {
                self.fail("an answer to no ask in flight made the core ask");
            }
            self.delivered.push((ask, reply));
            self.take(out);
            self.check();
        }

        /// What a live answer does to the counted replies, as the module
        /// docs say.
        fn expect(&mut self, p: Pending, reply: &Reply) {
            if p.fetch {
                self.counted.retain(|&(id, _)| id != p.to);
            }
            if let Reply::Copy { found, .. } = reply {
                let no_value = found.as_ref().is_some_and(|c| c.value.is_none());
                if !(p.fetch && no_value) {
                    self.counted.push((p.to, found.as_ref().map(|c| c.version)));
                }
            }
        }

        /// Between asks, a peer may take a newer write or lose the key
        /// (restarted empty).
        fn churn(&mut self) {
            let Some(&id) = self
                .peers
                .keys()
                .nth(self.rng.random_range(0..self.peers.len()))
            else {
                return;
            };
            let lose = self.rng.random_bool(0.3);
            let Some((copy, _)) = self.peers.get_mut(&id) else {
                return;
            };
            *copy = if lose {
                None
            } else {
                Some(copy.unwrap_or(0) + 2)
            };
            let line = format!("  node {id} now holds {copy:?}");
            self.note(line);
        }

        /// One random event.
        fn step(&mut self) {
            let roll = self.rng.random_range(0..100);
            if roll < 55 && !self.pending.is_empty() {
                let p = self.pending[self.rng.random_range(0..self.pending.len())];
                let reply = self.answer(p.to, p.digest);
                self.feed(p.ask, reply);
            } else if roll < 65 && !self.pending.is_empty() {
                // Lost: the runtime's timeout reports it.
                let p = self.pending[self.rng.random_range(0..self.pending.len())];
                self.feed(p.ask, Reply::TimedOut);
            } else if roll < 72 && !self.pending.is_empty() {
                // A replica that answers a version alone to any ask.
                let p = self.pending[self.rng.random_range(0..self.pending.len())];
                let reply = self.answer(p.to, true);
                self.feed(p.ask, reply);
            } else if roll < 80 && !self.peers.is_empty() {
                self.churn();
            } else if roll < 88 && !self.delivered.is_empty() {
                let (ask, reply) =
                    self.delivered[self.rng.random_range(0..self.delivered.len())].clone();
                self.feed(ask, reply);
            } else if roll < 94 && !self.delivered.is_empty() {
                // An answered ask answers again, differently.
                let (ask, _) = self.delivered[self.rng.random_range(0..self.delivered.len())];
                self.feed(
                    ask,
                    Reply::Copy {
                        found: Some(ReadCopy {
                            version: 99,
                            value: Some(value(99).value),
                        }),
                        term: None,
                        leader_read: None,
                    },
                );
            } else {
                let ask = self.rng.random_range(1_000..2_000);
                self.feed(ask, Reply::Failed);
            }
        }

        /// The core's promises, checked after every step.
        fn check(&mut self) {
            let r = self.r as usize;
            if self.core.counted() != self.counted.len() {
                self.fail(&format!(
                    "the core counts {} replies, the test {:?}",
                    self.core.counted(),
                    self.counted
                ));
            }
            let fetching = self.pending.iter().filter(|p| p.fetch).count();
            let gathering = self.pending.len() - fetching;
            let undecided = self.decision.is_none();
            if undecided && (gathering + self.counted.len() > r.max(self.counted.len())) {
                self.fail(&format!(
                    "{gathering} asks in flight with {} counted, R = {r}",
                    self.counted.len()
                ));
            }
            if undecided && (fetching > 1 || (fetching == 1 && gathering > 0)) {
                self.fail("more than one fetch, or a fetch beside other asks");
            }
            if let Some(before) = &self.decision {
                if self.core.decision() != Some(before) {
                    self.fail("the decision changed after the read ended");
                }
                return;
            }
            let Some(decision) = self.core.decision().cloned() else {
                if self.core.in_flight() != self.pending.len() {
                    self.fail(&format!(
                        "the core has {} asks in flight, the test {:?}",
                        self.core.in_flight(),
                        self.pending
                    ));
                }
                if self.pending.is_empty() {
                    self.fail("not done, yet nothing is in flight");
                }
                return;
            };
            self.note(format!("  decided {decision:?}"));
            match &decision {
                Ok(q) => self.check_met(q),
                Err(e) => self.check_not_met(e),
            }
            self.decision = Some(decision);
        }

        fn check_met(&self, q: &Quorum) {
            if self.counted.len() < self.r as usize {
                self.fail("met with fewer than R counted replies");
            }
            let ids: BTreeSet<NodeId> = self.counted.iter().map(|(id, _)| *id).collect();
            if q.replied.iter().copied().collect::<BTreeSet<_>>() != ids
                || q.replied.len() != ids.len()
            {
                self.fail(&format!("replied {:?}, counted {ids:?}", q.replied));
            }
            let newest = self.counted.iter().filter_map(|(_, v)| *v).max();
            if q.newest.as_ref().map(|v| v.version) != newest {
                self.fail(&format!(
                    "returned {:?}, newest counted {newest:?}",
                    q.newest
                ));
            }
            if q.newest.as_ref().is_some_and(|v| *v != value(v.version)) {
                self.fail("returned a value that is not its version's");
            }
            let mut expected: Vec<NodeId> = match newest {
                Some(best) if self.policy.repair => self
                    .counted
                    .iter()
                    .filter(|(_, v)| v.is_none_or(|v| v < best))
                    .map(|(id, _)| *id)
                    .collect(),
                _ => Vec::new(),
            };
            let mut repair = q.repair.clone();
            expected.sort_unstable();
            repair.sort_unstable();
            if repair != expected {
                self.fail(&format!("repairs {:?}, expected {expected:?}", q.repair));
            }
        }

        fn check_not_met(&self, e: &ReadError) {
            let ReadError::QuorumNotMet {
                acked, required, ..
            } = e;
            if *acked as usize != self.counted.len() || *required != self.r {
                self.fail("acked/required do not match the replies");
            }
            if self.counted.len() >= self.r as usize {
                self.fail("failed with R counted replies");
            }
            let all: BTreeSet<NodeId> = self.candidates.iter().copied().collect();
            if self.asked != all || !self.pending.is_empty() {
                self.fail("failed while a candidate was left or an ask in flight");
            }
        }

        /// Runs the case: random events, then every ask still pending answered.
        fn run(mut self) -> Self {
            let bound = 10 * self.peers.len() + 16;
            for _ in 0..bound {
                if self.decision.is_some() && self.rng.random_bool(0.3) {
                    break;
                }
                self.step();
            }
            // Bounded: each peer is asked at most twice (an ask and a fetch),
            // and every pending ask is answered here once.
            for _ in 0..=2 * self.peers.len() {
                let Some(&p) = self.pending.first() else {
                    break;
                };
                let reply = self.answer(p.to, p.digest);
                self.feed(p.ask, reply);
            }
            if self.decision.is_none() {
                self.fail("every ask answered, yet the read did not end");
            }
            self
        }
    }

    fn cases() -> Vec<u64> {
        if let Ok(seed) = std::env::var("READ_SEED") {
            return vec![seed.parse().expect("READ_SEED is a number")];
        }
        let n: u64 = std::env::var("READ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000);
        (0..n).collect()
    }

    #[test]
    fn random_reads_keep_every_promise() {
        // Thousands of seeded reads with answers reordered, lost, duplicated,
        // failed and not current, and replicas that change between a digest
        // and a fetch: never more than R asks and counted copies, at most one
        // fetch and only at R, never met with fewer than R, the newest counted
        // copy returned with its own value, repairs exactly to the stale
        // counted replicas, and every read ends.
        let verbose = std::env::var("READ_SEED").is_ok();
        let seeds = cases();
        let mut stats: BTreeMap<&str, u64> = BTreeMap::new();
        for &seed in &seeds {
            let case = Case::new(seed, verbose).run();
            let what = match &case.decision {
                Some(Ok(q)) => {
                    *stats.entry("repairs").or_default() += q.repair.len() as u64;
                    "met"
                }
                _ => "not met",
            };
            *stats.entry(what).or_default() += 1;
            *stats.entry("answers").or_default() += case.delivered.len() as u64;
            *stats.entry("fetches").or_default() += case.fetches;
        }
        println!("{} reads: {stats:?}", seeds.len());
        if seeds.len() >= 100 {
            for what in ["met", "not met", "repairs", "fetches"] {
                assert!(
                    stats.get(what).copied().unwrap_or(0) > 0,
                    "no read had {what}"
                );
            }
        }
    }
}
