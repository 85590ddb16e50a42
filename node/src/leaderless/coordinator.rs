//! The write coordinator of one leaderless node, as a state machine.
//!
//! [`Coordinator`] owns the node's hybrid logical clock, its hints and the
//! writes it is coordinating. It never touches a socket or the store: the
//! caller feeds it [`Input`]s with [`Coordinator::step`], calls
//! [`Coordinator::tick`] periodically, and carries out the [`Output`]s it
//! returns (apply a record locally, send a record to a replica, answer a
//! client, deliver hints). Time is an argument, so tests drive it exactly.
//!
//! A write's life:
//! 1. `Input::Write`: stamp a version above the local copy and the clock,
//!    emit `ApplyLocal` (the coordinator is the first replica to hold it,
//!    and counts as the first acknowledgement), then queue it for every peer
//!    believed up; a peer believed down gets a hint straight away.
//! 2. Per peer, one `Replicate` message is in flight at a time; writes queued
//!    meanwhile leave together in the next one (up to `max_batch`), so a busy
//!    coordinator sends one request per peer per round trip, not per write.
//! 3. `Input::Replicated` from a replica: one more acknowledgement for every
//!    write of the batch; at W, `Reply` with success.
//! 4. `Input::ReplicateFailed`: the replica is believed down; every write of
//!    the batch and every write queued for it becomes a hint. A write that
//!    has heard from every replica it sent to without reaching W gets its
//!    failure `Reply` at once, before the deadline.
//! 5. `tick` past the deadline with fewer than W acknowledgements: `Reply`
//!    with the failure (`acked`, `required`). Messages still in flight go on:
//!    each write ends acknowledged or hinted on every peer.
//!
//! Hints are delivered by `tick`: a peer with hints that is believed up gets
//! `DeliverHints` at once; a peer believed down gets one every `hint_retry`
//! (possibly empty: a probe), and the first success marks it up again.

use super::hints::Hints;
use super::hlc::Hlc;
use kv_shared::limits::{record_bytes, MAX_BATCH_BYTES};
use kv_shared::replication::Record;
use kv_shared::{NodeId, Version};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Identifies one client write on its coordinator (chosen by the caller).
pub type WriteId = u64;

/// Timeouts and sizes of the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a write waits for W acknowledgements.
    pub write_timeout: Duration,
    /// How often hints are retried to a peer believed down.
    pub hint_retry: Duration,
    /// Most writes in one replication message, and most hints in one delivery.
    pub max_batch: usize,
    /// Most hints kept per peer.
    pub hint_capacity: usize,
    /// Most bytes of hints kept per peer.
    pub hint_capacity_bytes: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            write_timeout: Duration::from_secs(3),
            hint_retry: Duration::from_millis(500),
            max_batch: 512,
            hint_capacity: 100_000,
            hint_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What the coordinator is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A client asked this node to write `key`.
    Write {
        /// The caller's id for this write (unique among writes in flight).
        id: WriteId,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The version of the key in the local store, if any.
        local: Option<Version>,
        /// The write quorum in force.
        w: u32,
        /// The wall clock, ms since the Unix epoch.
        wall_ms: u64,
    },
    /// A replica holds every write of a `Replicate` batch.
    Replicated {
        /// The replica.
        from: NodeId,
        /// The writes of the batch.
        ids: Vec<WriteId>,
        /// The replica's clock reading.
        clock: Version,
    },
    /// A `Replicate` batch failed (refused, timed out, error answer).
    ReplicateFailed {
        /// The replica.
        to: NodeId,
        /// The writes of the batch.
        ids: Vec<WriteId>,
    },
    /// A peer took the batch of hints last sent to it.
    HintsDelivered {
        /// The peer.
        to: NodeId,
        /// The peer's clock reading.
        clock: Version,
    },
    /// Delivering the batch of hints last sent to a peer failed; the hints
    /// stay for the next try.
    HintsFailed {
        /// The peer.
        to: NodeId,
    },
    /// A message from a peer arrived (it is up), carrying its clock reading.
    Heard {
        /// The peer.
        from: NodeId,
        /// Its clock reading.
        clock: Version,
    },
}

/// Why a write answered 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumFailure {
    /// Replicas (this node included) that held the write when it answered.
    pub acked: u32,
    /// The W it needed.
    pub required: u32,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Apply this record to the local store (keep it if newer).
    ApplyLocal(Record),
    /// Send these writes to a replica (`POST /internal/ll/write`) and report
    /// the result as `Replicated` or `ReplicateFailed` with the same ids.
    Replicate {
        /// The replica.
        to: NodeId,
        /// The writes, in the order of `records`.
        ids: Vec<WriteId>,
        /// Their records.
        records: Vec<Record>,
    },
    /// Answer the client.
    Reply {
        /// The write.
        id: WriteId,
        /// The version the write got.
        version: Version,
        /// Replicas holding it (W or more), or why it failed.
        result: Result<u32, QuorumFailure>,
    },
    /// Send these hints to a peer and report `HintsDelivered` or
    /// `HintsFailed`. An empty batch is a probe of a peer believed down.
    DeliverHints {
        /// The peer.
        to: NodeId,
        /// The hints.
        records: Vec<Record>,
    },
}

/// A write being coordinated.
#[derive(Debug, Clone)]
struct Pending {
    record: Record,
    required: u32,
    acked: BTreeSet<NodeId>,
    outstanding: BTreeSet<NodeId>,
    deadline: Instant,
    replied: bool,
}

/// What the coordinator believes of one peer, and its outbox.
#[derive(Debug, Clone, Default)]
struct PeerState {
    up: bool,
    /// A `Replicate` batch is in flight.
    sending: bool,
    /// Writes waiting for the next batch.
    queue: Vec<WriteId>,
    /// The (key, version) pairs of the hint batch in flight, if any.
    delivering: Option<Vec<(String, Version)>>,
    next_try: Option<Instant>,
}

/// The write-coordination state of one leaderless node.
#[derive(Debug)]
pub struct Coordinator {
    self_id: NodeId,
    timing: Timing,
    hlc: Hlc,
    hints: Hints,
    peers: BTreeMap<NodeId, PeerState>,
    pending: BTreeMap<WriteId, Pending>,
    failed_writes: u64,
}

impl Coordinator {
    /// The coordinator of node `self_id` with peers `peers` (all believed up).
    ///
    /// # Errors
    /// When `self_id` does not fit a version's node field (see [`Hlc::new`]).
    pub fn new(
        self_id: NodeId,
        peers: &[NodeId],
        timing: Timing,
    ) -> Result<Self, super::hlc::NodeIdTooLarge> {
        let state = PeerState {
            up: true,
            ..PeerState::default()
        };
        Ok(Self {
            self_id,
            timing,
            hlc: Hlc::new(self_id)?,
            hints: Hints::new(timing.hint_capacity, timing.hint_capacity_bytes),
            peers: peers.iter().map(|p| (*p, state.clone())).collect(),
            pending: BTreeMap::new(),
            failed_writes: 0,
        })
    }

    /// Feeds one input; returns what to do, in order.
    pub fn step(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Write {
                id,
                key,
                value,
                local,
                w,
                wall_ms,
            } => self.begin(now, id, key, value, local, w, wall_ms, &mut out),
            Input::Replicated { from, ids, clock } => {
                self.hear(now, from, clock, &mut out);
                for id in ids {
                    if let Some(p) = self.pending.get_mut(&id) {
                        if p.outstanding.remove(&from) {
                            p.acked.insert(from);
                        }
                    }
                    self.settle(id, &mut out);
                }
                if let Some(s) = self.peers.get_mut(&from) {
                    s.sending = false;
                }
                self.flush(from, &mut out);
            }
            Input::ReplicateFailed { to, mut ids } => {
                self.mark_down(now, to);
                if let Some(s) = self.peers.get_mut(&to) {
                    s.sending = false;
                    ids.append(&mut s.queue);
                }
                for id in ids {
                    if let Some(p) = self.pending.get_mut(&id) {
                        if p.outstanding.remove(&to) {
                            self.hints.add(to, p.record.clone());
                        }
                    }
                    self.settle(id, &mut out);
                }
            }
            Input::HintsDelivered { to, clock } => {
                let batch = self.peers.get_mut(&to).and_then(|s| s.delivering.take());
                self.hints.remove_delivered(to, &batch.unwrap_or_default());
                self.hear(now, to, clock, &mut out);
            }
            Input::HintsFailed { to } => {
                if let Some(s) = self.peers.get_mut(&to) {
                    s.delivering = None;
                }
                self.mark_down(now, to);
            }
            Input::Heard { from, clock } => self.hear(now, from, clock, &mut out),
        }
        out
    }

    /// Answers writes past their deadline and starts hint deliveries that are due.
    pub fn tick(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let overdue: Vec<WriteId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.replied && p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(p) = self.pending.get_mut(&id) {
                p.replied = true;
                self.failed_writes += 1;
                out.push(Output::Reply {
                    id,
                    version: p.record.version,
                    result: Err(QuorumFailure {
                        acked: p.acked.len() as u32,
                        required: p.required,
                    }),
                });
            }
        }
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        for to in ids {
            self.maybe_deliver(now, to, &mut out);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        now: Instant,
        id: WriteId,
        key: String,
        value: String,
        local: Option<Version>,
        w: u32,
        wall_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let version = self.hlc.stamp_after(local.unwrap_or(0), wall_ms);
        let record = Record {
            key,
            value,
            version,
        };
        out.push(Output::ApplyLocal(record.clone()));
        let mut outstanding = BTreeSet::new();
        for (to, s) in &mut self.peers {
            if s.up {
                outstanding.insert(*to);
                s.queue.push(id);
            } else {
                self.hints.add(*to, record.clone());
            }
        }
        let targets: Vec<NodeId> = outstanding.iter().copied().collect();
        self.pending.insert(
            id,
            Pending {
                record,
                required: w,
                acked: BTreeSet::from([self.self_id]),
                outstanding,
                deadline: now + self.timing.write_timeout,
                replied: false,
            },
        );
        self.settle(id, out);
        for to in targets {
            self.flush(to, out);
        }
    }

    /// Sends the writes queued for `to` if no batch is in flight.
    fn flush(&mut self, to: NodeId, out: &mut Vec<Output>) {
        let Some(s) = self.peers.get_mut(&to) else {
            return;
        };
        if s.sending || s.queue.is_empty() {
            return;
        }
        // At most max_batch writes and about MAX_BATCH_BYTES (at least one).
        let pending = &self.pending;
        let mut bytes = 0usize;
        let n = s
            .queue
            .iter()
            .take(self.timing.max_batch)
            .take_while(|id| {
                let first = bytes == 0;
                bytes += pending
                    .get(id)
                    .map_or(0, |p| record_bytes(&p.record.key, &p.record.value));
                first || bytes <= MAX_BATCH_BYTES as usize
            })
            .count();
        let (ids, records): (Vec<WriteId>, Vec<Record>) = s
            .queue
            .drain(..n)
            .filter_map(|id| pending.get(&id).map(|p| (id, p.record.clone())))
            .unzip();
        s.sending = true;
        out.push(Output::Replicate { to, ids, records });
    }

    /// Replies when the quorum is met, or when every replica sent to has
    /// answered without meeting it (so `acked` is final); forgets the write
    /// once it has replied and no send is in flight.
    fn settle(&mut self, id: WriteId, out: &mut Vec<Output>) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let acked = p.acked.len() as u32;
        if !p.replied && (acked >= p.required || p.outstanding.is_empty()) {
            p.replied = true;
            let result = if acked >= p.required {
                Ok(acked)
            } else {
                self.failed_writes += 1;
                Err(QuorumFailure {
                    acked,
                    required: p.required,
                })
            };
            out.push(Output::Reply {
                id,
                version: p.record.version,
                result,
            });
        }
        if p.replied && p.outstanding.is_empty() {
            self.pending.remove(&id);
        }
    }

    fn hear(&mut self, now: Instant, from: NodeId, clock: Version, out: &mut Vec<Output>) {
        self.hlc.observe(clock);
        if let Some(s) = self.peers.get_mut(&from) {
            s.up = true;
            s.next_try = None;
        }
        self.maybe_deliver(now, from, out);
    }

    fn mark_down(&mut self, now: Instant, to: NodeId) {
        if let Some(s) = self.peers.get_mut(&to) {
            s.up = false;
            s.next_try = Some(now + self.timing.hint_retry);
        }
    }

    /// Starts a hint delivery to `to` if one is due and none is in flight.
    fn maybe_deliver(&mut self, now: Instant, to: NodeId, out: &mut Vec<Output>) {
        let Some((up, delivering, next_try)) = self
            .peers
            .get(&to)
            .map(|s| (s.up, s.delivering.is_some(), s.next_try))
        else {
            return;
        };
        if delivering {
            return;
        }
        let due = if up {
            self.hints.pending(to) > 0
        } else {
            next_try.is_none_or(|t| t <= now)
        };
        if !due {
            return;
        }
        let records = self.hints.batch(to, self.timing.max_batch);
        if let Some(s) = self.peers.get_mut(&to) {
            s.delivering = Some(records.iter().map(|r| (r.key.clone(), r.version)).collect());
            // A failure sets the next try `hint_retry` after it (`mark_down`).
            s.next_try = None;
        }
        out.push(Output::DeliverHints { to, records });
    }

    /// Takes note of a clock reading seen in any message.
    pub fn observe(&mut self, clock: Version) {
        self.hlc.observe(clock);
    }

    /// The clock's reading (highest version issued or seen).
    pub fn clock(&self) -> Version {
        self.hlc.reading()
    }

    /// Hints waiting for `peer`.
    pub fn pending_hints(&self, peer: NodeId) -> u64 {
        self.hints.pending(peer)
    }

    /// The hint store (counters for `/status`).
    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// Whether the coordinator believes `peer` is up.
    pub fn believes_up(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|s| s.up)
    }

    /// Writes answered with a quorum failure since start.
    pub fn failed_writes(&self) -> u64 {
        self.failed_writes
    }

    /// Writes still tracked (replied or not, with sends in flight).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const WALL: u64 = 1_800_000_000_000;

    /// A deterministic xorshift generator for message orders.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A message in flight between simulated nodes.
    #[derive(Debug)]
    enum Msg {
        Write {
            from: NodeId,
            ids: Vec<WriteId>,
            to: NodeId,
            records: Vec<Record>,
        },
        Ack {
            to: NodeId,
            ids: Vec<WriteId>,
            from: NodeId,
        },
        Fail {
            to: NodeId,
            ids: Vec<WriteId>,
            peer: NodeId,
        },
        Hints {
            from: NodeId,
            to: NodeId,
            records: Vec<Record>,
        },
    }

    /// N coordinators and N stores, wired by a message queue delivered in a
    /// seeded random order. Nodes in `down` refuse every message.
    struct Sim {
        nodes: BTreeMap<NodeId, Coordinator>,
        stores: BTreeMap<NodeId, BTreeMap<String, Record>>,
        queue: VecDeque<Msg>,
        replies: BTreeMap<WriteId, Result<u32, QuorumFailure>>,
        down: BTreeSet<NodeId>,
        now: Instant,
        rng: Rng,
    }

    impl Sim {
        fn new(n: u32, seed: u64) -> Self {
            let ids: Vec<NodeId> = (1..=n).collect();
            let nodes = ids
                .iter()
                .map(|id| {
                    let peers: Vec<NodeId> = ids.iter().copied().filter(|p| p != id).collect();
                    (
                        *id,
                        Coordinator::new(*id, &peers, Timing::default()).unwrap(),
                    )
                })
                .collect();
            Self {
                nodes,
                stores: ids.iter().map(|id| (*id, BTreeMap::new())).collect(),
                queue: VecDeque::new(),
                replies: BTreeMap::new(),
                down: BTreeSet::new(),
                now: Instant::now(),
                rng: Rng(seed | 1),
            }
        }

        fn apply(&mut self, on: NodeId, r: Record) -> bool {
            let store = self.stores.get_mut(&on).unwrap();
            match store.get(&r.key) {
                Some(old) if old.version >= r.version => false,
                _ => {
                    store.insert(r.key.clone(), r);
                    true
                }
            }
        }

        fn run_outputs(&mut self, on: NodeId, outs: Vec<Output>) {
            for o in outs {
                match o {
                    Output::ApplyLocal(r) => {
                        self.apply(on, r);
                    }
                    Output::Replicate { to, ids, records } => self.queue.push_back(Msg::Write {
                        from: on,
                        ids,
                        to,
                        records,
                    }),
                    Output::Reply { id, result, .. } => {
                        assert!(
                            self.replies.insert(id, result).is_none(),
                            "one reply per write"
                        );
                    }
                    Output::DeliverHints { to, records } => self.queue.push_back(Msg::Hints {
                        from: on,
                        to,
                        records,
                    }),
                }
            }
        }

        fn write(&mut self, on: NodeId, id: WriteId, key: &str, value: &str, w: u32) {
            let local = self.stores[&on].get(key).map(|r| r.version);
            let input = Input::Write {
                id,
                key: key.into(),
                value: value.into(),
                local,
                w,
                wall_ms: WALL,
            };
            let outs = self.nodes.get_mut(&on).unwrap().step(self.now, input);
            self.run_outputs(on, outs);
        }

        fn step(&mut self, on: NodeId, input: Input) {
            let now = self.now;
            let outs = self.nodes.get_mut(&on).unwrap().step(now, input);
            self.run_outputs(on, outs);
        }

        /// Delivers one queued message, picked at random.
        fn deliver_one(&mut self) {
            let i = self.rng.below(self.queue.len());
            let msg = self.queue.remove(i).unwrap();
            self.deliver(msg);
        }

        fn deliver(&mut self, msg: Msg) {
            match msg {
                Msg::Write {
                    from,
                    ids,
                    to,
                    records,
                } => {
                    if self.down.contains(&to) {
                        self.queue.push_back(Msg::Fail {
                            to: from,
                            ids,
                            peer: to,
                        });
                    } else {
                        let clock = self.nodes[&from].clock();
                        self.step(to, Input::Heard { from, clock });
                        for r in records {
                            self.apply(to, r);
                        }
                        self.queue.push_back(Msg::Ack {
                            to: from,
                            ids,
                            from: to,
                        });
                    }
                }
                Msg::Ack { to, ids, from } => {
                    let clock = self.nodes[&from].clock();
                    self.step(to, Input::Replicated { from, ids, clock });
                }
                Msg::Fail { to, ids, peer } => {
                    self.step(to, Input::ReplicateFailed { to: peer, ids })
                }
                Msg::Hints { from, to, records } => {
                    if self.down.contains(&to) {
                        self.step(from, Input::HintsFailed { to });
                    } else {
                        for r in records {
                            self.apply(to, r);
                        }
                        let clock = self.nodes[&to].clock();
                        self.step(from, Input::HintsDelivered { to, clock });
                    }
                }
            }
        }

        fn drain(&mut self) {
            while !self.queue.is_empty() {
                self.deliver_one();
            }
        }

        fn tick_all(&mut self, by: Duration) {
            self.now += by;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let outs = self.nodes.get_mut(&id).unwrap().tick(self.now);
                self.run_outputs(id, outs);
            }
        }

        fn value(&self, on: NodeId, key: &str) -> Option<&Record> {
            self.stores[&on].get(key)
        }
    }

    #[test]
    fn a_write_with_w_equal_n_replies_after_every_replica_holds_it() {
        let mut sim = Sim::new(3, 7);
        sim.write(1, 1, "k", "v", 3);
        assert!(sim.replies.is_empty(), "no reply before the acks");
        assert_eq!(
            sim.value(1, "k").unwrap().value,
            "v",
            "the coordinator applied first"
        );
        sim.drain();
        assert_eq!(sim.replies[&1], Ok(3));
        for n in 1..=3 {
            assert_eq!(sim.value(n, "k").unwrap().value, "v");
        }
        assert_eq!(sim.nodes[&1].in_flight(), 0);
    }

    #[test]
    fn writes_queued_behind_a_batch_in_flight_leave_together() {
        let mut sim = Sim::new(2, 1);
        for id in 0..5 {
            sim.write(1, id, &format!("k{id}"), "v", 2);
        }
        // One message to node 2 with the first write, the other four wait.
        assert_eq!(sim.queue.len(), 1);
        sim.deliver_one(); // the write arrives, its ack is queued
        sim.deliver_one(); // the ack arrives: the next batch leaves
        match &sim.queue[0] {
            Msg::Write { ids, .. } => assert_eq!(ids, &vec![1, 2, 3, 4]),
            m => panic!("{m:?}"),
        }
        sim.drain();
        assert_eq!(sim.replies.len(), 5);
        assert!(sim.replies.values().all(|r| *r == Ok(2)));
        assert_eq!(sim.stores[&2], sim.stores[&1]);
    }

    #[test]
    fn w_one_replies_at_once_and_still_replicates() {
        let mut sim = Sim::new(3, 9);
        sim.write(2, 1, "k", "v", 1);
        assert_eq!(sim.replies[&1], Ok(1));
        sim.drain();
        assert_eq!(sim.value(3, "k").unwrap().value, "v");
    }

    #[test]
    fn concurrent_writes_via_two_coordinators_converge_to_the_highest_version() {
        for seed in 1..50 {
            let mut sim = Sim::new(5, seed);
            sim.write(1, 1, "k", "from-1", 5);
            sim.write(2, 2, "k", "from-2", 5);
            sim.drain();
            let winner = sim.value(1, "k").unwrap().clone();
            assert_eq!((sim.replies[&1], sim.replies[&2]), (Ok(5), Ok(5)));
            for n in 1..=5 {
                assert_eq!(sim.value(n, "k"), Some(&winner), "seed {seed} node {n}");
            }
            // Same millisecond, same counter: the node id breaks the tie.
            assert_eq!(winner.value, "from-2", "seed {seed}");
        }
    }

    #[test]
    fn a_later_write_through_a_lagging_clock_still_wins() {
        let mut sim = Sim::new(3, 3);
        sim.write(1, 1, "k", "first", 3);
        sim.drain();
        // Node 2's wall clock is 10 s behind, but it holds the first write.
        let local = sim.value(2, "k").map(|r| r.version);
        let input = Input::Write {
            id: 2,
            key: "k".into(),
            value: "second".into(),
            local,
            w: 3,
            wall_ms: WALL - 10_000,
        };
        sim.step(2, input);
        sim.drain();
        for n in 1..=3 {
            assert_eq!(sim.value(n, "k").unwrap().value, "second");
        }
    }

    #[test]
    fn w_not_met_answers_acked_and_required_and_keeps_a_hint() {
        let mut sim = Sim::new(3, 5);
        sim.down.insert(3);
        sim.write(1, 1, "k", "v", 3);
        sim.drain();
        assert_eq!(
            sim.replies[&1],
            Err(QuorumFailure {
                acked: 2,
                required: 3
            })
        );
        assert_eq!(sim.nodes[&1].pending_hints(3), 1);
        assert!(!sim.nodes[&1].believes_up(3));
        assert_eq!(sim.nodes[&1].failed_writes(), 1);
        // The next write does not try node 3 (believed down, hinted directly)
        // and fails as soon as node 2 has answered, long before the deadline.
        sim.write(1, 2, "k2", "v", 3);
        sim.drain();
        assert_eq!(
            sim.replies[&2],
            Err(QuorumFailure {
                acked: 2,
                required: 3
            })
        );
        assert_eq!(sim.nodes[&1].pending_hints(3), 2);
    }

    #[test]
    fn a_replica_that_never_answers_times_out_the_write() {
        let mut sim = Sim::new(3, 5);
        sim.write(1, 1, "k", "v", 3);
        // The message to node 3 is lost in flight; node 2 answers.
        sim.queue.retain(|m| !matches!(m, Msg::Write { to: 3, .. }));
        sim.drain();
        sim.tick_all(Duration::from_millis(2_999));
        assert!(sim.replies.is_empty());
        sim.tick_all(Duration::from_millis(1));
        assert_eq!(
            sim.replies[&1],
            Err(QuorumFailure {
                acked: 2,
                required: 3
            })
        );
        // The lost send ends in a failure later: a hint, and no second reply.
        sim.step(
            1,
            Input::ReplicateFailed {
                to: 3,
                ids: vec![1],
            },
        );
        assert_eq!(sim.nodes[&1].pending_hints(3), 1);
        assert_eq!(sim.nodes[&1].in_flight(), 0);
    }

    #[test]
    fn hints_reach_a_replica_when_it_returns() {
        let mut sim = Sim::new(3, 11);
        sim.down.insert(3);
        for i in 0..20u64 {
            sim.write(1, i, &format!("k{i}"), "v", 2);
            sim.drain();
            assert_eq!(sim.replies[&i], Ok(2));
        }
        assert_eq!(sim.nodes[&1].pending_hints(3), 20);
        // Still down: the retry fails and the hints stay.
        sim.tick_all(Duration::from_millis(600));
        sim.drain();
        assert_eq!(sim.nodes[&1].pending_hints(3), 20);
        // Back: the next retry delivers everything.
        sim.down.clear();
        sim.tick_all(Duration::from_millis(600));
        sim.drain();
        assert_eq!(sim.nodes[&1].pending_hints(3), 0);
        assert_eq!(sim.nodes[&1].hints().delivered(), 20);
        assert_eq!(sim.stores[&3], sim.stores[&1]);
        assert!(sim.nodes[&1].believes_up(3));
    }
}
