//! A seeded simulation of a leader-follower cluster: N [`Core`]s, a network
//! that loses, duplicates, delays and reorders messages, partitions (one-way
//! included), crashes with restarts from empty, pauses, client writes and
//! reads, configuration changes — and the invariants checked after every step.
//!
//! Every random choice comes from one seed, so a failing schedule replays
//! exactly: the failure message names the seed and ends with the schedule's
//! trace. `SIM_SEED=1234 cargo test -p kv-node --lib sim -- --nocapture`
//! replays one seed and prints its whole trace; `SIM_SCHEDULES=N` changes how
//! many schedules the random test runs, `SIM_FROM=S` starts them at seed S
//! (0 by default), `SIM_HUNT=1` goes on past a failure and lists every
//! failing seed.
//!
//! Checked after every step:
//! - at most one leader per term;
//! - no (key, version) ever names two values, in any store or any proposal;
//! - every write acknowledged with W ≥ majority is in the log of the current
//!   leader and of every later one;
//! - committed entries are the same on every node that holds them;
//! - a node not in doubt reads with an R that, with the W of the newest
//!   unpaused leader, keeps R + W > N (all configurations used here keep
//!   it; a paused leader acknowledges nothing, and on resuming checks its
//!   quorum before it acknowledges anything);
//! - reads of R current replicas return the newest acknowledged version, or
//!   the write was acknowledged with W < majority and is lost in a way that
//!   was reported (rolled back on the node that acknowledged it) or could not
//!   be (that node crashed).
//!
//! After the schedule, faults heal, crashed nodes restart, and the cluster
//! must elect a leader and end with every replica equal.

use super::core::{Clock, Core, Event, Message, Output, Settings};
use crate::store::Store;
use kv_shared::cluster::{ClusterConfig, DelayProfile, Seq};
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, LogEntry, SnapshotRequest, VoteRequest, VoteResponse,
};
use kv_shared::replication::Record;
use kv_shared::{NodeId, Term, Version};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What travels between two simulated nodes.
#[derive(Debug, Clone)]
enum Packet {
    Vote(VoteRequest),
    VoteAnswer(VoteResponse),
    Append(AppendRequest),
    Snapshot(SnapshotRequest),
    AppendAnswer(AppendResponse),
    /// The sender's HTTP client gave up on a message to `peer` stamped
    /// `sent_at_ms`; `refused` when it never arrived.
    Failed {
        peer: NodeId,
        sent_at_ms: u64,
        refused: bool,
    },
}

#[derive(Debug, Clone)]
struct InFlight {
    at: Duration,
    from: NodeId,
    to: NodeId,
    packet: Packet,
}

/// A node's store, in key order (two stores compare equal as lists).
fn sorted_records(c: &Core) -> Vec<Record> {
    let mut r = c.log().store().records();
    r.sort_by(|a, b| a.key.cmp(&b.key));
    r
}

/// The send stamp of a leader's message (what a failure report names).
fn stamp(p: &Packet) -> Option<u64> {
    match p {
        Packet::Append(a) => Some(a.sent_at_ms),
        Packet::Snapshot(s) => Some(s.sent_at_ms),
        Packet::AppendAnswer(a) => Some(a.sent_at_ms),
        _ => None,
    }
}

/// How rough the network and the faults are in one schedule.
#[derive(Debug, Clone, Copy)]
pub struct Weather {
    loss: f64,
    duplicate: f64,
    max_delay_ms: u64,
    crash: f64,
    partition: f64,
    pause: f64,
    config_change: f64,
}

/// A write a client saw acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    version: Version,
    index: Seq,
    term: Term,
    w: u32,
    by: NodeId,
    /// The acknowledging node's incarnation (a restart makes a new one).
    life: u32,
}

/// A read that returned less than an acknowledged write (allowed only for a
/// write lost in a reported way; checked at the end).
#[derive(Debug, Clone)]
struct StaleRead {
    write: usize,
    got: Option<Version>,
    coordinator: NodeId,
}

/// The simulated cluster.
pub struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    origin: Instant,
    elapsed: Duration,
    n: u32,
    settings: Settings,
    config: ClusterConfig,
    nodes: BTreeMap<NodeId, Option<Core>>,
    lives: BTreeMap<NodeId, u32>,
    paused: BTreeMap<NodeId, Duration>,
    cut: BTreeSet<(NodeId, NodeId)>,
    net: Vec<InFlight>,
    weather: Weather,
    /// Each node's wall-clock offset, in ms.
    skews: BTreeMap<NodeId, i64>,
    trace: Vec<String>,
    verbose: bool,
    // What was observed.
    leaders: BTreeMap<Term, NodeId>,
    versions: BTreeMap<(String, Version), String>,
    /// Writes proposed and not answered yet, by (node, life, index).
    proposed: BTreeMap<(NodeId, u32, Seq), (String, Version, Term)>,
    /// The W each proposal needed, by (node, life, index).
    required: BTreeMap<(NodeId, u32, Seq), u32>,
    acked: Vec<Acked>,
    committed: BTreeMap<Seq, LogEntry>,
    /// Acknowledged writes their acknowledging node reported rolled back, by (node, life, index).
    reported: BTreeSet<(NodeId, u32, Seq)>,
    stale_reads: Vec<StaleRead>,
    counter: u64,
    /// Configuration changes started and finished.
    pub changes: (u32, u32),
    /// Elections won, rollbacks seen, reads checked, snapshots installed.
    pub stats: BTreeMap<&'static str, u64>,
}

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// The quorum configurations a schedule moves between (all keep R + W > N).
fn strong_configs(n: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for w in 1..=n {
        for r in 1..=n {
            if r + w > n && r + w <= n + 1 {
                out.push((w, r));
            }
        }
    }
    out
}

impl Sim {
    /// A cluster of `n` nodes with settings, weather and quorums drawn from `seed`.
    pub fn new(seed: u64, n: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let heartbeat = Duration::from_millis(20);
        let election_timeout = Duration::from_millis(rng.random_range(100..=200));
        let settings = Settings {
            election_timeout,
            heartbeat,
            max_batch: rng.random_range(1..=8),
            log_capacity: if rng.random_bool(0.5) { 4 } else { 1000 },
            log_capacity_bytes: if rng.random_bool(0.2) {
                300
            } else {
                usize::MAX
            },
            window: if rng.random_bool(0.3) { 6 } else { 1000 },
            window_bytes: if rng.random_bool(0.2) {
                400
            } else {
                usize::MAX
            },
            snapshot_chunk_bytes: if rng.random_bool(0.5) { 150 } else { 1 << 20 },
            lease: election_timeout * 3,
            lease_margin: Duration::from_millis(50),
            rpc_timeout: Duration::from_millis(400),
            campaign_first: false,
        };
        let configs = strong_configs(n);
        let (w, r) = configs[rng.random_range(0..configs.len())];
        let config = ClusterConfig::new(n, w, r, DelayProfile::OFF).expect("valid quorums");
        // One schedule in five is harsh: faults ten times as often.
        let harsh = rng.random_bool(0.2);
        let weather = Weather {
            loss: [0.0, 0.02, 0.1][rng.random_range(0..3)],
            duplicate: [0.0, 0.05][rng.random_range(0..2)],
            max_delay_ms: [5, 20, 40][rng.random_range(0..3)],
            crash: if harsh {
                [0.02, 0.04][rng.random_range(0..2)]
            } else {
                [0.0, 0.003, 0.01][rng.random_range(0..3)]
            },
            partition: if harsh {
                [0.03, 0.06][rng.random_range(0..2)]
            } else {
                [0.0, 0.005, 0.02][rng.random_range(0..3)]
            },
            pause: if harsh {
                0.02
            } else {
                [0.0, 0.003][rng.random_range(0..2)]
            },
            config_change: [0.0, 0.01, 0.03][rng.random_range(0..3)],
        };
        // Every node's wall clock is off by up to 20 ms (the lease margin is 50 ms).
        let skews: BTreeMap<NodeId, i64> =
            (1..=n).map(|id| (id, rng.random_range(-20..=20))).collect();
        let origin = Instant::now();
        let mut sim = Self {
            seed,
            rng,
            origin,
            elapsed: Duration::ZERO,
            n,
            settings,
            config,
            nodes: BTreeMap::new(),
            lives: BTreeMap::new(),
            paused: BTreeMap::new(),
            cut: BTreeSet::new(),
            net: Vec::new(),
            weather,
            skews,
            trace: Vec::new(),
            verbose: false,
            leaders: BTreeMap::new(),
            versions: BTreeMap::new(),
            proposed: BTreeMap::new(),
            required: BTreeMap::new(),
            acked: Vec::new(),
            committed: BTreeMap::new(),
            reported: BTreeSet::new(),
            stale_reads: Vec::new(),
            counter: 0,
            changes: (0, 0),
            stats: BTreeMap::new(),
        };
        sim.note(format!(
            "seed {seed}: n={n} w={w} r={r} {:?} {:?}",
            sim.settings, sim.weather
        ));
        for id in 1..=n {
            sim.start(id);
        }
        sim
    }

    /// A calm cluster (no random faults) for scripted scenarios.
    pub fn calm(seed: u64, n: u32, w: u32, r: u32) -> Self {
        let mut sim = Self::new(seed, n);
        sim.trace.clear();
        sim.nodes.clear();
        sim.lives.clear();
        sim.weather = Weather {
            loss: 0.0,
            duplicate: 0.0,
            max_delay_ms: 3,
            crash: 0.0,
            partition: 0.0,
            pause: 0.0,
            config_change: 0.0,
        };
        sim.settings.log_capacity = 1000;
        sim.settings.window = 1000;
        sim.settings.max_batch = 64;
        sim.settings.election_timeout = Duration::from_millis(150);
        sim.settings.lease = Duration::from_millis(450);
        sim.config = ClusterConfig::new(n, w, r, DelayProfile::OFF).expect("valid quorums");
        sim.note(format!("calm: n={n} w={w} r={r}"));
        for id in 1..=n {
            sim.start(id);
        }
        sim
    }

    fn now(&self) -> Instant {
        self.origin + self.elapsed
    }

    fn note(&mut self, line: String) {
        let line = format!("{:>7.3}s {line}", self.elapsed.as_secs_f64());
        if self.verbose {
            println!("{line}");
        }
        self.trace.push(line);
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    /// Panics with the seed and the end of the trace.
    fn fail(&self, what: String) -> ! {
        let tail = self.trace.len().saturating_sub(300);
        let mut out = String::new();
        for l in &self.trace[tail..] {
            let _ = writeln!(out, "{l}");
        }
        panic!(
            "seed {}: {what}\n--- last {} trace lines (replay: SIM_SEED={} cargo test -p kv-node --lib sim -- --nocapture) ---\n{out}",
            self.seed,
            self.trace.len() - tail,
            self.seed
        );
    }

    /// Starts (or restarts, empty) node `id`.
    fn start(&mut self, id: NodeId) {
        let peers: Vec<NodeId> = (1..=self.n).filter(|&p| p != id).collect();
        let life = self.lives.entry(id).or_insert(0);
        *life += 1;
        let seed = self.seed ^ (u64::from(*life) << 40);
        let core = Core::new(
            id,
            &peers,
            Store::new(),
            self.config,
            self.settings,
            seed,
            Clock {
                now: self.now(),
                wall_ms: self
                    .wall()
                    .saturating_add_signed(self.skews.get(&id).copied().unwrap_or(0)),
            },
        );
        self.nodes.insert(id, Some(core));
        self.paused.remove(&id);
    }

    fn wall(&self) -> u64 {
        1_000_000 + self.elapsed.as_millis() as u64
    }

    fn life(&self, id: NodeId) -> u32 {
        self.lives.get(&id).copied().unwrap_or(0)
    }

    fn alive(&self, id: NodeId) -> bool {
        matches!(self.nodes.get(&id), Some(Some(_))) && !self.paused.contains_key(&id)
    }

    fn core(&self, id: NodeId) -> Option<&Core> {
        self.nodes.get(&id).and_then(|c| c.as_ref())
    }

    fn ids(&self) -> Vec<NodeId> {
        (1..=self.n).collect()
    }

    // ----- the network -----------------------------------------------------

    fn send(&mut self, from: NodeId, to: NodeId, packet: Packet) {
        let lost = self.cut.contains(&(from, to)) || self.rng.random_bool(self.weather.loss);
        if lost {
            // An HTTP client notices, sooner or later, that it got no answer
            // (it cannot tell whether the request arrived).
            // (a lost request, or a lost answer: the leader hears of it either way).
            let (leader, follower) = match packet {
                Packet::AppendAnswer(_) => (to, from),
                _ => (from, to),
            };
            if let Some(sent_at_ms) = stamp(&packet) {
                if self.rng.random_bool(0.7) {
                    let at = self.elapsed + Duration::from_millis(self.rng.random_range(1..300));
                    self.net.push(InFlight {
                        at,
                        from: follower,
                        to: leader,
                        packet: Packet::Failed {
                            peer: follower,
                            sent_at_ms,
                            refused: false,
                        },
                    });
                }
            }
            return;
        }
        let copies = if self.rng.random_bool(self.weather.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = Duration::from_millis(self.rng.random_range(0..=self.weather.max_delay_ms));
            self.net.push(InFlight {
                at: self.elapsed + delay,
                from,
                to,
                packet: packet.clone(),
            });
        }
    }

    /// Carries out what node `id` queued.
    fn drain(&mut self, id: NodeId) {
        let Some(Some(core)) = self.nodes.get_mut(&id) else {
            return;
        };
        let outputs = core.take_outputs();
        let term = core.term();
        for o in outputs {
            match o {
                Output::Send { to, msg } => {
                    let packet = match msg {
                        Message::Vote(v) => Packet::Vote(v),
                        Message::Append(a) => Packet::Append(a),
                        Message::Snapshot(s) => Packet::Snapshot(s),
                    };
                    self.send(id, to, packet);
                }
                Output::Acked { index, acked } => {
                    let life = self.life(id);
                    if let Some((key, version, t)) = self.proposed.remove(&(id, life, index)) {
                        let required = self.acked_required(id, index).unwrap_or(acked);
                        self.note(format!("n{id} acked {key}@{version} (index {index}, term {t}, {acked} holders, W={required})"));
                        self.acked.push(Acked {
                            key,
                            version,
                            index,
                            term: t,
                            w: required,
                            by: id,
                            life,
                        });
                    }
                }
                Output::TimedOut {
                    index,
                    acked,
                    required,
                } => {
                    self.note(format!(
                        "n{id} write at {index} timed out ({acked}/{required})"
                    ));
                    let life = self.life(id);
                    self.proposed.remove(&(id, life, index));
                }
                Output::Abandoned { index, .. } => {
                    self.note(format!("n{id} write at {index} abandoned (term {term})"));
                    let life = self.life(id);
                    self.proposed.remove(&(id, life, index));
                }
                Output::ConfigDone { id: c, config } => {
                    self.changes.1 += 1;
                    self.note(format!(
                        "n{id} config change {c} done: W={} R={}",
                        config.w, config.r
                    ));
                }
                Output::ConfigAbandoned { id: c, .. } => {
                    self.note(format!("n{id} config change {c} abandoned"));
                }
                Output::Event(e) => self.event(id, e),
            }
        }
    }

    /// The W the write at `index` was proposed with (kept beside the proposal).
    fn acked_required(&self, id: NodeId, index: Seq) -> Option<u32> {
        self.required.get(&(id, self.life(id), index)).copied()
    }

    fn event(&mut self, id: NodeId, e: Event) {
        match &e {
            Event::Elected { term, .. } => {
                self.count("elections won");
                if let Some(&other) = self.leaders.get(term) {
                    if other != id {
                        self.fail(format!("two leaders in term {term}: n{other} and n{id}"));
                    }
                }
                self.leaders.insert(*term, id);
            }
            Event::RolledBack(w) => {
                self.count("writes rolled back");
                if w.acknowledged {
                    self.count("acknowledged writes rolled back");
                    let life = self.life(id);
                    self.reported.insert((id, life, w.index));
                }
            }
            Event::CaughtUp { .. } => self.count("caught up"),
            _ => {}
        }
        self.note(format!("n{id} {e:?}"));
    }

    fn deliver(&mut self, m: InFlight) {
        let now = self.now();
        let to = m.to;
        let Some(Some(core)) = self.nodes.get_mut(&to) else {
            // Nobody listens: the connection is refused.
            if let Some(sent_at_ms) = stamp(&m.packet) {
                let at = self.elapsed + Duration::from_millis(5);
                self.net.push(InFlight {
                    at,
                    from: to,
                    to: m.from,
                    packet: Packet::Failed {
                        peer: to,
                        sent_at_ms,
                        refused: true,
                    },
                });
            }
            return;
        };
        let answer = match m.packet {
            Packet::Vote(v) => Some(Packet::VoteAnswer(core.on_vote_request(v, now))),
            Packet::Append(a) => Some(Packet::AppendAnswer(core.on_append(a, now))),
            Packet::Snapshot(s) => {
                let later_chunk = s.offset > 0;
                let r = core.on_snapshot(s, now);
                *self.stats.entry("snapshot chunks").or_default() += 1;
                if later_chunk {
                    *self
                        .stats
                        .entry("snapshot chunks after the first")
                        .or_default() += 1;
                }
                Some(Packet::AppendAnswer(r))
            }
            Packet::VoteAnswer(v) => {
                core.on_vote_response(v, now);
                None
            }
            Packet::AppendAnswer(a) => {
                core.on_append_response(a, now);
                None
            }
            Packet::Failed {
                peer,
                sent_at_ms,
                refused,
            } => {
                core.on_send_failed(peer, sent_at_ms, refused, now);
                None
            }
        };
        self.drain(to);
        if let Some(a) = answer {
            self.send(to, m.from, a);
        }
    }

    // ----- one step --------------------------------------------------------

    /// Advances time a little, delivers what is due (in random order), ticks
    /// every running node, and maybe injects a fault or a client request.
    fn step(&mut self, faults: bool) {
        let dt = Duration::from_millis(self.rng.random_range(1..=12));
        self.elapsed += dt;
        // Resume paused nodes whose pause is over.
        let resumed: Vec<NodeId> = self
            .paused
            .iter()
            .filter(|(_, &until)| until <= self.elapsed)
            .map(|(&id, _)| id)
            .collect();
        for id in resumed {
            self.paused.remove(&id);
            self.note(format!("n{id} resumes"));
        }
        let mut due: Vec<InFlight> = Vec::new();
        let mut later = Vec::new();
        for m in self.net.drain(..) {
            // A paused node's messages wait in its socket buffers.
            if m.at <= self.elapsed && !self.paused.contains_key(&m.to) {
                due.push(m);
            } else {
                later.push(m);
            }
        }
        self.net = later;
        // Reorder what is due.
        for i in (1..due.len()).rev() {
            let j = self.rng.random_range(0..=i);
            due.swap(i, j);
        }
        for m in due {
            self.deliver(m);
        }
        let now = self.now();
        for id in self.ids() {
            if self.alive(id) {
                if let Some(Some(core)) = self.nodes.get_mut(&id) {
                    core.tick(now);
                }
                self.drain(id);
            }
        }
        if faults {
            self.maybe_fault();
            if self.rng.random_bool(0.3) {
                let id = self.rng.random_range(1..=self.n);
                let key = KEYS[self.rng.random_range(0..KEYS.len())];
                self.write(id, key);
            }
            if self.rng.random_bool(self.weather.config_change) {
                self.random_config_change();
            }
        }
        if self.rng.random_bool(0.2) {
            self.random_read();
        }
        self.check();
    }

    fn maybe_fault(&mut self) {
        let w = self.weather;
        let id = self.rng.random_range(1..=self.n);
        if self.rng.random_bool(w.crash) {
            if self.core(id).is_some() {
                // The guarantees hold while at most a minority of nodes has lost
                // its memory: crashed, or restarted and not caught up yet.
                let lost = self
                    .ids()
                    .iter()
                    .filter(|&&i| self.core(i).is_none_or(|c| c.is_catching_up()))
                    .count() as u32;
                if lost + 1 > self.n - self.majority() {
                    return;
                }
                self.note(format!("n{id} crashes"));
                self.nodes.insert(id, None);
                self.paused.remove(&id);
            } else {
                self.note(format!("n{id} restarts empty"));
                self.start(id);
            }
        }
        if self.rng.random_bool(w.partition) {
            if self.cut.is_empty() || self.rng.random_bool(0.5) {
                self.partition();
            } else {
                self.note("the network heals".into());
                self.cut.clear();
            }
        }
        if self.rng.random_bool(w.pause) && self.alive(id) {
            let d = Duration::from_millis(self.rng.random_range(50..1500));
            self.note(format!("n{id} pauses for {} ms", d.as_millis()));
            self.paused.insert(id, self.elapsed + d);
        }
    }

    fn partition(&mut self) {
        let ids = self.ids();
        match self.rng.random_range(0..3) {
            0 => {
                // Two sides.
                let side: BTreeSet<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.random_bool(0.5))
                    .collect();
                for &a in &ids {
                    for &b in &ids {
                        if side.contains(&a) != side.contains(&b) {
                            self.cut.insert((a, b));
                        }
                    }
                }
                self.note(format!("partition: {side:?} | the rest"));
            }
            1 => {
                // One node cut off one way.
                let a = self.rng.random_range(1..=self.n);
                let outgoing = self.rng.random_bool(0.5);
                for &b in ids.iter().filter(|&&b| b != a) {
                    if outgoing {
                        self.cut.insert((a, b));
                    } else {
                        self.cut.insert((b, a));
                    }
                }
                self.note(format!(
                    "n{a} cut off one way ({})",
                    if outgoing {
                        "its messages are lost"
                    } else {
                        "messages to it are lost"
                    }
                ));
            }
            _ => {
                // The current leader isolated.
                if let Some(l) = self.newest_leader() {
                    for &b in ids.iter().filter(|&&b| b != l) {
                        self.cut.insert((l, b));
                        self.cut.insert((b, l));
                    }
                    self.note(format!("leader n{l} isolated"));
                }
            }
        }
    }

    /// The leader of the highest term among running nodes.
    fn newest_leader(&self) -> Option<NodeId> {
        self.newest_leader_among(|_| true)
    }

    /// The leader of the highest term among the nodes running and not paused.
    fn newest_unpaused_leader(&self) -> Option<NodeId> {
        self.newest_leader_among(|id| self.alive(id))
    }

    fn newest_leader_among(&self, keep: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        self.ids()
            .into_iter()
            .filter(|&id| keep(id))
            .filter_map(|id| {
                self.core(id)
                    .filter(|c| c.is_leader())
                    .map(|c| (c.term(), id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// A client write of `key` at node `id` (taken only if it leads).
    pub fn write(&mut self, id: NodeId, key: &str) -> Option<Version> {
        if !self.alive(id) {
            return None;
        }
        self.counter += 1;
        let value = format!("n{id}-{}", self.counter);
        let now = self.now();
        let life = self.life(id);
        let Some(Some(core)) = self.nodes.get_mut(&id) else {
            return None;
        };
        let p = core
            .propose(key, value.clone(), Duration::from_millis(300), now)
            .ok()?;
        if let Some(old) = self.versions.get(&(key.to_owned(), p.version)) {
            if *old != value {
                let old = old.clone();
                self.fail(format!(
                    "n{id} gave {key}@{} to {value:?}, which already named {old:?}",
                    p.version
                ));
            }
        }
        self.versions
            .insert((key.to_owned(), p.version), value.clone());
        self.proposed
            .insert((id, life, p.index), (key.to_owned(), p.version, p.term));
        self.required.insert((id, life, p.index), p.required);
        self.note(format!(
            "n{id} proposes {key}@{} = {value} (index {}, term {}, W={})",
            p.version, p.index, p.term, p.required
        ));
        self.drain(id);
        Some(p.version)
    }

    fn random_config_change(&mut self) {
        let Some(l) = self.newest_leader() else {
            return;
        };
        if !self.alive(l) {
            return;
        }
        let configs = strong_configs(self.n);
        let (w, r) = configs[self.rng.random_range(0..configs.len())];
        let now = self.now();
        let Some(Some(core)) = self.nodes.get_mut(&l) else {
            return;
        };
        let target = ClusterConfig {
            w,
            r,
            ..core.config()
        };
        if let Ok(c) = core.change_config(target, now) {
            self.changes.0 += 1;
            self.note(format!("n{l} starts config change {c} to W={w} R={r}"));
        }
        self.drain(l);
    }

    /// A read of a key some acknowledged write wrote, at a random node, over
    /// R current replicas it can reach.
    fn random_read(&mut self) {
        if self.acked.is_empty() {
            return;
        }
        let x = self.rng.random_range(1..=self.n);
        if !self.alive(x) {
            return;
        }
        let key = KEYS[self.rng.random_range(0..KEYS.len())];
        let now = self.now();
        let Some(coordinator) = self.core(x) else {
            return;
        };
        let r = coordinator.read_quorum(now) as usize;
        let mut replicas: Vec<NodeId> = Vec::new();
        if !coordinator.is_catching_up() {
            replicas.push(x);
        }
        let mut others: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|&p| {
                p != x
                    && self.alive(p)
                    && !self.cut.contains(&(x, p))
                    && !self.cut.contains(&(p, x))
                    && self.core(p).is_some_and(|c| !c.is_catching_up())
            })
            .collect();
        for i in (1..others.len()).rev() {
            let j = self.rng.random_range(0..=i);
            others.swap(i, j);
        }
        replicas.extend(others);
        if replicas.len() < r {
            return;
        }
        replicas.truncate(r);
        let got = replicas
            .iter()
            .filter_map(|&p| self.core(p).and_then(|c| c.log().store().get(key)))
            .map(|e| e.version)
            .max();
        self.count("reads checked");
        let newest = self
            .acked
            .iter()
            .enumerate()
            .filter(|(_, a)| a.key == key)
            .max_by_key(|(_, a)| a.version)
            .map(|(i, a)| (i, a.version, a.w));
        // Every configuration used keeps R + W > N, and lowering R waits for
        // older writes to spread: a read must see every acknowledged write
        // (unless that write is lost later, in a reported way: checked at the end).
        if let Some((i, version, _)) = newest {
            if got.is_none_or(|g| g < version) {
                self.note(format!(
                    "read of {key} at n{x} over {replicas:?} got {got:?} < acked {version}"
                ));
                self.stale_reads.push(StaleRead {
                    write: i,
                    got,
                    coordinator: x,
                });
            }
        }
    }

    // ----- invariants ------------------------------------------------------

    fn majority(&self) -> u32 {
        self.n / 2 + 1
    }

    fn check(&mut self) {
        let now = self.now();
        let mut problems: Vec<String> = Vec::new();
        let ids = self.ids();
        // No (key, version) names two values in any store.
        let mut newly_committed: Vec<(Seq, LogEntry)> = Vec::new();
        for &id in &ids {
            let Some(core) = self.core(id) else { continue };
            for r in core.log().store().records() {
                match self.versions.get(&(r.key.clone(), r.version)) {
                    Some(v) if *v == r.value => {}
                    Some(v) => problems.push(format!(
                        "n{id} holds {}@{} = {:?}, which names {v:?}",
                        r.key, r.version, r.value
                    )),
                    None => problems.push(format!(
                        "n{id} holds {}@{} = {:?}, never proposed",
                        r.key, r.version, r.value
                    )),
                }
            }
            // Committed entries agree everywhere.
            let log = core.log();
            let from = log.first_index();
            for i in from..=core.commit().min(log.last_index()) {
                let Some(e) = log.entry(i) else { continue };
                match self.committed.get(&i).or_else(|| {
                    newly_committed
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, e)| e)
                }) {
                    Some(c) if c != e => problems.push(format!(
                        "n{id} committed {e:?} at {i}, another node committed {c:?}"
                    )),
                    Some(_) => {}
                    None => newly_committed.push((i, e.clone())),
                }
            }
        }
        self.committed.extend(newly_committed);
        // Acknowledged W ≥ majority writes are in every leader of their term or later.
        for &id in &ids {
            let Some(core) = self.core(id).filter(|c| c.is_leader()) else {
                continue;
            };
            for a in self
                .acked
                .iter()
                .filter(|a| a.w >= self.majority() && a.term <= core.term())
            {
                let held = core.log().term_of(a.index) == Some(a.term);
                if !held {
                    problems.push(format!(
                        "leader n{id} (term {}) lacks {}@{} acknowledged with W={} at index {} term {}",
                        core.term(),
                        a.key,
                        a.version,
                        a.w,
                        a.index,
                        a.term
                    ));
                }
            }
        }
        // Reads use an R that overlaps the newest unpaused leader's W. A paused
        // leader acknowledges nothing, and checks its quorum when it resumes
        // before it acknowledges anything (a deposed one steps down then).
        if let Some(l) = self.newest_unpaused_leader() {
            let w = self.core(l).map_or(0, |c| c.config().w);
            for &id in &ids {
                if !self.alive(id) {
                    continue;
                }
                let Some(core) = self.core(id) else { continue };
                let r = core.read_quorum(now);
                // A node catching up asks r others: holders other than itself
                // must overlap them, so r + w > n - 1 suffices there.
                let others = self.n - u32::from(core.is_catching_up());
                if r + w <= others {
                    problems.push(format!(
                        "n{id} reads with R={r} (in doubt: {}) while leader n{l} acknowledges with W={w}",
                        core.is_in_doubt(now)
                    ));
                }
            }
        }
        for &id in &ids {
            if self.core(id).is_some_and(|c| c.resets() > 0) {
                problems.push(format!(
                    "n{id} discarded committed entries although no majority lost its memory"
                ));
            }
        }
        if let Some(p) = problems.into_iter().next() {
            self.fail(p);
        }
    }

    /// Heals everything, restarts crashed nodes, runs until the cluster is
    /// quiet, and checks that every replica is equal and every lost
    /// acknowledged write is accounted for.
    pub fn heal_and_converge(&mut self) {
        self.cut.clear();
        self.paused.clear();
        // A healed network: messages still reorder, nothing is lost.
        self.weather.loss = 0.0;
        self.weather.duplicate = 0.0;
        self.weather.max_delay_ms = self.weather.max_delay_ms.min(10);
        for id in self.ids() {
            if self.core(id).is_none() {
                self.note(format!("n{id} restarts empty (healing)"));
                self.start(id);
            }
        }
        self.note("healed".into());
        // A final write makes the leader commit everything of its term.
        let mut wrote = false;
        for round in 0..4000 {
            self.step(false);
            if !wrote {
                if let Some(l) = self.newest_leader() {
                    if self.core(l).is_some_and(|c| c.is_started_leader()) {
                        wrote = self.write(l, "z").is_some();
                    }
                }
            }
            if round % 25 == 0 && wrote && self.converged() {
                self.final_checks();
                return;
            }
        }
        let reference = self.core(1).map(sorted_records).unwrap_or_default();
        let states: Vec<String> = self
            .ids()
            .iter()
            .filter_map(|&id| {
                self.core(id).map(|c| {
                    // Records that differ from node 1's, (key, version): its own
                    // that node 1 lacks, and node 1's that it lacks.
                    let mine = sorted_records(c);
                    let only = |a: &[Record], b: &[Record]| -> Vec<(String, u64)> {
                        a.iter()
                            .filter(|r| !b.contains(r))
                            .map(|r| (r.key.clone(), r.version))
                            .collect()
                    };
                    let (extra, lacking) = (only(&mine, &reference), only(&reference, &mine));
                    format!(
                        "n{id}: term {} {:?} last {} commit {} leader {:?} catching up {} \
                         records {} (not in n1: {extra:?}; lacks n1's: {lacking:?})",
                        c.term(),
                        c.role(),
                        c.log().last_index(),
                        c.commit(),
                        c.leader(),
                        c.is_catching_up(),
                        mine.len()
                    )
                })
            })
            .collect();
        self.fail(format!("no convergence after healing: {states:?}"));
    }

    fn converged(&self) -> bool {
        let cores: Vec<&Core> = self.ids().iter().filter_map(|&id| self.core(id)).collect();
        let Some(first) = cores.first() else {
            return false;
        };
        let last = first.log().last_index();
        let reference = sorted_records(first);
        cores.iter().all(|c| {
            c.log().last_index() == last
                && c.commit() == last
                && !c.is_catching_up()
                && sorted_records(c) == reference
        })
    }

    fn final_checks(&mut self) {
        let Some(l) = self.newest_leader() else {
            self.fail("no leader at the end".into());
        };
        let Some(core) = self.core(l) else {
            self.fail("the leader vanished".into());
        };
        let log = core.log();
        let survived = |a: &Acked| log.term_of(a.index) == Some(a.term);
        let mut problems = Vec::new();
        let mut lost = 0;
        for a in &self.acked {
            if survived(a) {
                continue;
            }
            lost += 1;
            if a.w >= self.majority() {
                problems.push(format!(
                    "lost {}@{} acknowledged with W={}",
                    a.key, a.version, a.w
                ));
                continue;
            }
            // A write acknowledged with W < majority may be lost, but not silently.
            let crashed = self.life(a.by) != a.life;
            let reported = self.reported.contains(&(a.by, a.life, a.index));
            if !crashed && !reported {
                problems.push(format!(
                    "lost {}@{} (W={}, acknowledged by n{}) without a report",
                    a.key, a.version, a.w, a.by
                ));
            }
        }
        for s in &self.stale_reads {
            let a = &self.acked[s.write];
            if survived(a) || a.w >= self.majority() {
                problems.push(format!(
                    "a read at n{} returned {:?} after {}@{} was acknowledged (W={}) and it survived",
                    s.coordinator, s.got, a.key, a.version, a.w
                ));
            }
        }
        *self.stats.entry("acknowledged writes").or_default() += self.acked.len() as u64;
        *self
            .stats
            .entry("acknowledged writes lost (W < majority)")
            .or_default() += lost;
        if let Some(p) = problems.into_iter().next() {
            self.fail(p);
        }
    }

    // ----- scripted scenarios ----------------------------------------------

    /// Runs calm steps (no random faults or writes) for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.elapsed + Duration::from_millis(ms);
        while self.elapsed < end {
            self.step(false);
        }
    }

    /// Runs calm steps until `cond` holds; panics after `ms` of simulated time.
    pub fn run_until(&mut self, what: &str, ms: u64, cond: impl Fn(&Sim) -> bool) {
        let end = self.elapsed + Duration::from_millis(ms);
        while !cond(self) {
            if self.elapsed >= end {
                self.fail(format!("timed out waiting for: {what}"));
            }
            self.step(false);
        }
    }

    /// The leader of the newest term, once its term has started.
    pub fn leader(&self) -> Option<NodeId> {
        self.newest_leader()
            .filter(|&l| self.core(l).is_some_and(|c| c.is_started_leader()))
    }

    /// Waits for a leader whose term started.
    pub fn elect(&mut self) -> NodeId {
        self.run_until("a leader", 5_000, |s| s.leader().is_some());
        self.leader().unwrap_or_default()
    }

    /// Cuts every message between `a` and every node in `others`, both ways.
    pub fn cut_off(&mut self, a: NodeId, others: &[NodeId]) {
        for &b in others {
            self.cut.insert((a, b));
            self.cut.insert((b, a));
        }
        self.note(format!("n{a} cut off from {others:?}"));
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.note("the network heals".into());
    }

    /// Node `id` stops (its memory is gone).
    pub fn crash(&mut self, id: NodeId) {
        self.nodes.insert(id, None);
        self.paused.remove(&id);
        self.note(format!("n{id} crashes"));
    }

    /// Node `id` starts again, empty.
    pub fn restart(&mut self, id: NodeId) {
        self.start(id);
        self.note(format!("n{id} restarts empty"));
    }

    /// Node `id` stops running (and receiving) for `ms`, then resumes.
    pub fn pause(&mut self, id: NodeId, ms: u64) {
        self.paused
            .insert(id, self.elapsed + Duration::from_millis(ms));
        self.note(format!("n{id} pauses for {ms} ms"));
    }

    /// Proposes `key` = `value` at `id` and waits for its answer: the version
    /// on 201, or why not.
    pub fn set(&mut self, id: NodeId, key: &str, value: &str) -> Result<Version, String> {
        let now = self.now();
        let life = self.life(id);
        let Some(Some(core)) = self.nodes.get_mut(&id) else {
            return Err("node down".into());
        };
        let p = core
            .propose(key, value.to_owned(), Duration::from_millis(300), now)
            .map_err(|e| format!("{e:?}"))?;
        self.versions
            .insert((key.to_owned(), p.version), value.to_owned());
        self.proposed
            .insert((id, life, p.index), (key.to_owned(), p.version, p.term));
        self.required.insert((id, life, p.index), p.required);
        self.note(format!(
            "n{id} proposes {key}@{} = {value} (index {})",
            p.version, p.index
        ));
        self.drain(id);
        let acked = |s: &Sim| {
            s.acked
                .iter()
                .any(|a| a.by == id && a.life == life && a.index == p.index)
        };
        let end = self.elapsed + Duration::from_millis(400);
        while !acked(self) {
            if self.elapsed >= end || !self.proposed.contains_key(&(id, life, p.index)) {
                return Err(format!("{key}@{} not acknowledged (503)", p.version));
            }
            self.step(false);
        }
        Ok(p.version)
    }

    /// What node `id` holds for `key`.
    pub fn local(&self, id: NodeId, key: &str) -> Option<(String, Version)> {
        self.core(id)
            .and_then(|c| c.log().store().get(key))
            .map(|e| (e.value, e.version))
    }

    /// Node `id`'s core.
    pub fn node(&self, id: NodeId) -> &Core {
        self.core(id).unwrap_or_else(|| panic!("n{id} is down"))
    }

    /// Node `id`'s core, to drive it directly.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Core {
        match self.nodes.get_mut(&id) {
            Some(Some(c)) => c,
            _ => panic!("n{id} is down"),
        }
    }

    /// Carries out what node `id` queued after a direct call.
    pub fn flush(&mut self, id: NodeId) {
        self.drain(id);
    }

    /// The simulated clock.
    pub fn clock(&self) -> Instant {
        self.now()
    }

    /// Runs one schedule of `steps` random steps, then heals.
    pub fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step(true);
        }
        self.heal_and_converge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps per random schedule before healing.
    const STEPS: usize = 400;

    /// Seeds that long hunts found failing, run every time after the range:
    /// 5019397 (the checker took a paused, deposed leader's W), 5064588 (a
    /// snapshot built again listed its records in another order, and a
    /// follower resuming at its offset skipped some).
    const FOUND: [u64; 2] = [5_019_397, 5_064_588];

    fn schedules() -> Vec<u64> {
        if let Ok(seed) = std::env::var("SIM_SEED") {
            return vec![seed.parse().expect("SIM_SEED is a number")];
        }
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        // SIM_FROM moves the range, so that a long hunt covers seeds CI never ran.
        let from = var("SIM_FROM").unwrap_or(0);
        let n = var("SIM_SCHEDULES").unwrap_or(1000);
        (from..from.saturating_add(n)).chain(FOUND).collect()
    }

    #[test]
    fn random_schedules_keep_every_invariant() {
        // Thousands of seeded schedules of crashes, restarts, partitions, pauses,
        // loss, duplication, reordering and configuration changes: every
        // invariant of the module docs holds after every step, and every
        // schedule heals into equal replicas.
        let verbose = std::env::var("SIM_SEED").is_ok();
        let mut stats: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut changes = (0, 0);
        let seeds = schedules();
        // SIM_HUNT=1 goes on after a failure and lists every failing seed.
        let hunt = std::env::var("SIM_HUNT").is_ok();
        let mut failed = Vec::new();
        for &seed in &seeds {
            let n = if seed % 4 == 0 { 3 } else { 5 };
            let run = || {
                let mut sim = Sim::new(seed, n);
                sim.verbose = verbose;
                sim.run(STEPS);
                sim
            };
            let sim = if hunt {
                match std::panic::catch_unwind(run) {
                    Ok(sim) => sim,
                    Err(_) => {
                        failed.push(seed);
                        continue;
                    }
                }
            } else {
                run()
            };
            for (k, v) in sim.stats {
                *stats.entry(k).or_default() += v;
            }
            changes.0 += sim.changes.0;
            changes.1 += sim.changes.1;
        }
        assert!(failed.is_empty(), "failing seeds: {failed:?}");
        println!(
            "{} schedules: {stats:?}; config changes started/done {changes:?}",
            seeds.len()
        );
        // The schedules exercise what they claim to.
        assert!(stats.get("elections won").copied().unwrap_or(0) >= seeds.len() as u64);
        if seeds.len() >= 100 {
            for what in [
                "writes rolled back",
                "acknowledged writes rolled back",
                "reads checked",
                "caught up",
                "snapshot chunks",
                "snapshot chunks after the first",
            ] {
                assert!(
                    stats.get(what).copied().unwrap_or(0) > 0,
                    "no schedule had {what}"
                );
            }
            assert!(changes.1 > 0, "no configuration change finished");
        }
    }
}

#[cfg(test)]
mod scenarios {
    //! The stories behind the invariants, one per test, on a calm network.
    use super::*;

    #[test]
    fn an_uncommitted_write_never_shares_its_version_with_a_later_one() {
        // The W5R1 story: k1 written while three followers are cut off (503, held
        // by the leader and one follower); the leader crashes and restarts empty,
        // that follower pauses; a new leader takes k1 again. The new write gets a
        // version above the new term's floor, never the old one's, and once the
        // paused follower is back every replica holds the new value.
        let mut sim = Sim::calm(7, 5, 5, 1);
        let l = sim.elect();
        let others: Vec<NodeId> = (1..=5).filter(|&i| i != l).collect();
        let (keep, cut) = (others[3], &others[..3]);
        for &c in cut {
            sim.cut_off(c, &[l, keep]);
        }
        let old = sim.set(l, "k1", "old");
        assert!(old.is_err(), "W=5 cannot be met: {old:?}");
        sim.run_for(50);
        assert_eq!(sim.local(keep, "k1"), Some(("old".into(), 1)));
        sim.crash(l);
        sim.pause(keep, 2_000);
        sim.heal();
        sim.restart(l);
        let new_leader = sim.elect();
        assert!(cut.contains(&new_leader));
        sim.run_until("node back from its pause", 3_000, |s| {
            !s.paused.contains_key(&keep)
        });
        // W=5: the write waits for the paused follower's return.
        let v = sim
            .set(new_leader, "k1", "new")
            .expect("201 once all five answer");
        assert!(
            v > 1,
            "the new term's floor puts the version above 1, got {v}"
        );
        sim.run_until("every replica holds the new value", 2_000, |s| {
            (1..=5).all(|i| s.local(i, "k1") == Some(("new".into(), v)))
        });
        let (rolled, acked) = sim.node(keep).rolled_back();
        assert_eq!(
            (rolled, acked),
            (1, 0),
            "the follower undid the 503 write, which it never acknowledged to a client"
        );
    }

    #[test]
    fn a_leader_cut_off_steps_down_and_reports_the_writes_it_acknowledged_alone() {
        // W=1: an isolated leader keeps acknowledging for a while; the majority
        // elects another, and when the old leader returns it undoes those
        // writes and reports each one as acknowledged and rolled back.
        let mut sim = Sim::calm(11, 5, 1, 5);
        let l = sim.elect();
        sim.set(l, "k", "before").expect("201");
        sim.run_for(100);
        let others: Vec<NodeId> = (1..=5).filter(|&i| i != l).collect();
        sim.cut_off(l, &others);
        let lost: Vec<Version> = (0..3)
            .map(|i| {
                sim.set(l, "k", &format!("alone-{i}"))
                    .expect("W=1: 201 alone")
            })
            .collect();
        sim.run_until("the old leader steps down", 2_000, |s| {
            !s.node(l).is_leader()
        });
        let new_leader = sim.elect();
        assert_ne!(new_leader, l);
        let v = sim.set(new_leader, "k", "after").expect("201");
        assert!(
            lost.iter().all(|&x| x != v),
            "versions {lost:?} are never reused ({v})"
        );
        sim.heal();
        sim.run_until("the old leader follows", 2_000, |s| {
            s.local(l, "k").is_some_and(|(val, _)| val == "after")
        });
        let reported: Vec<Version> = sim
            .node(l)
            .recent_rollbacks()
            .iter()
            .filter(|w| w.acknowledged)
            .map(|w| w.version)
            .collect();
        assert_eq!(reported, lost, "exactly the writes it acknowledged alone");
        assert_eq!(sim.node(l).rolled_back(), (3, 3));
    }

    #[test]
    fn a_restarted_follower_does_not_count_towards_r_until_it_caught_up() {
        // A follower that restarts empty is marked catching up (reads skip it)
        // until it holds what the leader held when they first spoke.
        let mut sim = Sim::calm(3, 3, 2, 2);
        let l = sim.elect();
        for i in 0..20 {
            sim.set(l, &format!("k{i}"), "v").expect("201");
        }
        let f = (1..=3).find(|&i| i != l).unwrap_or(2);
        sim.crash(f);
        sim.restart(f);
        sim.cut_off(f, &[l]);
        sim.run_for(300);
        assert!(sim.node(f).is_catching_up());
        assert_eq!(sim.node(f).log().last_index(), 0);
        sim.heal();
        sim.run_until("the follower caught up", 2_000, |s| {
            !s.node(f).is_catching_up()
        });
        assert_eq!(sim.local(f, "k19"), Some(("v".into(), 1)));
    }

    #[test]
    fn a_new_cluster_elects_its_first_leader_once_every_node_answers() {
        // Every node of a new cluster starts without memory: the first election
        // waits until each one answered the others (then every answer is empty).
        let mut sim = Sim::calm(41, 3, 2, 2);
        sim.cut_off(3, &[1, 2]);
        sim.run_for(2_000);
        assert!(
            (1..=3).all(|i| !sim.node(i).is_leader()),
            "no leader without node 3"
        );
        sim.heal();
        let l = sim.elect();
        assert!(sim.set(l, "k", "v").is_ok());
    }

    #[test]
    fn a_restarted_node_votes_only_for_logs_as_complete_as_its_peers() {
        // A node that restarted empty must not help elect a leader that lacks
        // what a majority committed: it learns its peers' logs first.
        let mut sim = Sim::calm(5, 3, 2, 2);
        let l = sim.elect();
        sim.set(l, "k", "v").expect("201");
        sim.run_for(100);
        let f = (1..=3).find(|&i| i != l).unwrap_or(1);
        sim.crash(f);
        sim.restart(f);
        // A candidate with an empty log asks the restarted node for its vote.
        let now = sim.clock();
        let empty = VoteRequest {
            term: 99,
            candidate: {
                // Term 99 belongs to node ((99 - 1) mod 3) + 1.
                (98 % 3) + 1
            },
            last_index: 0,
            last_term: 0,
            pre_vote: false,
            probe: false,
        };
        let answer = sim.node_mut(f).on_vote_request(empty, now);
        assert!(!answer.granted, "it does not yet know what its peers hold");
        sim.run_until("it learned its peers' logs", 1_000, |s| {
            s.node(f).log().last_index() > 0
        });
        assert_eq!(sim.local(f, "k"), Some(("v".into(), 1)));
    }

    #[test]
    fn lowering_w_waits_until_every_node_reads_with_the_higher_r() {
        // W5R1 -> W1R5 goes through W5R5: no node reads with R = 1 while the
        // leader acknowledges with W = 1.
        let mut sim = Sim::calm(13, 5, 5, 1);
        let l = sim.elect();
        sim.set(l, "k", "v").expect("201");
        let now = sim.clock();
        let target = ClusterConfig::new(5, 1, 5, DelayProfile::OFF).unwrap();
        let id = sim
            .node_mut(l)
            .change_config(target, now)
            .expect("a leader changes");
        sim.flush(l);
        assert_eq!(
            (sim.node(l).config().w, sim.node(l).config().r),
            (5, 5),
            "first both go up"
        );
        sim.run_until("the change is done", 2_000, |s| s.changes.1 >= 1);
        let _ = id;
        for i in 1..=5 {
            assert_eq!(sim.node(i).config(), target, "n{i}");
        }
        // The invariant checked after every step saw R + W > N throughout.
    }

    #[test]
    fn a_node_back_from_a_partition_does_not_depose_the_leader() {
        // Pre-vote: a follower cut off for many election timeouts does not raise
        // its term, and when it returns the leader keeps its term.
        let mut sim = Sim::calm(17, 5, 3, 3);
        let l = sim.elect();
        let term = sim.node(l).term();
        let f = (1..=5).find(|&i| i != l).unwrap_or(1);
        let others: Vec<NodeId> = (1..=5).filter(|&i| i != f).collect();
        sim.cut_off(f, &others);
        sim.run_for(2_000);
        assert_eq!(
            sim.node(f).term(),
            term,
            "pre-votes failed, so the term stayed"
        );
        sim.heal();
        sim.run_for(1_000);
        assert_eq!(sim.leader(), Some(l));
        assert_eq!(sim.node(l).term(), term);
    }
}

#[cfg(test)]
mod regressions {
    //! Interleavings a review found that broke a guarantee of an earlier
    //! design (nodes restarted empty, deposed leaders); each must now keep
    //! every invariant and heal into equal replicas.
    use super::*;

    /// Waits for a leader other than `l0` and has it start the change to
    /// `target`; returns that leader.
    fn a_new_leader_changes_to(sim: &mut Sim, l0: NodeId, target: ClusterConfig) -> NodeId {
        sim.run_until("a new leader", 3_000, |s| {
            s.leader().is_some_and(|x| x != l0)
        });
        let l = sim.leader().unwrap_or(l0);
        let now = sim.clock();
        sim.node_mut(l).change_config(target, now).expect("change");
        sim.flush(l);
        l
    }

    fn restart_all_with(sim: &mut Sim, f: impl Fn(&mut Settings)) {
        f(&mut sim.settings);
        sim.nodes.clear();
        sim.lives.clear();
        sim.net.clear();
        for id in 1..=sim.n {
            sim.start(id);
        }
    }

    #[test]
    fn a_node_restarted_empty_does_not_campaign_with_a_log_behind_its_peers() {
        // The restarted node caught up only to a lagging follower's level; with
        // the leader cut off it must not win an election (it would lack a
        // write acknowledged with W = 2 of 3).
        let mut sim = Sim::calm(21, 3, 2, 2);
        restart_all_with(&mut sim, |s| s.max_batch = 1);
        let l = sim.elect();
        for i in 0..6 {
            sim.set(l, &format!("k{i}"), "v").expect("201");
        }
        sim.run_for(100);
        let f: Vec<NodeId> = (1..=3).filter(|&i| i != l).collect();
        let (x, b) = (f[0], f[1]);
        sim.cut_off(b, &[l]);
        sim.set(l, "e", "committed")
            .expect("201 with W=2 (leader + x)");
        sim.run_for(40);
        let b_last = sim.node(b).log().last_index();
        sim.crash(x);
        sim.restart(x);
        sim.run_until("x caught up to b's level", 3_000, |s| {
            s.node(x).log().last_index() >= b_last
        });
        sim.cut_off(l, &[x, b]);
        sim.run_for(3_000);
        sim.heal_and_converge();
    }

    #[test]
    fn an_acknowledgement_from_a_followers_earlier_life_never_elects_a_leader_without_the_write() {
        // The leader counted an ack of a follower that restarted since; the
        // restarted follower must not then help elect a node lacking the write.
        let mut sim = Sim::calm(23, 5, 3, 3);
        restart_all_with(&mut sim, |s| {
            s.election_timeout = Duration::from_millis(400);
            s.lease = Duration::from_millis(1200);
        });
        let l = sim.elect();
        for i in 0..4 {
            sim.set(l, &format!("k{i}"), "v").expect("201");
        }
        sim.run_for(100);
        let o: Vec<NodeId> = (1..=5).filter(|&i| i != l).collect();
        let (f, g, h, i) = (o[0], o[1], o[2], o[3]);
        for p in [g, h, i] {
            sim.cut.insert((l, p));
        }
        sim.write(l, "e").expect("proposed");
        let idx = sim.node(l).log().last_index();
        sim.run_until("the leader saw f's ack", 500, |s| {
            let now = s.now();
            s.node(l)
                .followers(now)
                .iter()
                .any(|v| v.id == f && v.match_index >= idx)
        });
        sim.crash(f);
        sim.restart(f);
        sim.cut_off(f, &[l]);
        sim.run_for(80);
        sim.cut.remove(&(l, h));
        sim.run_for(300);
        sim.cut_off(h, &[l, f, g, i]);
        sim.crash(l);
        sim.run_for(4_000);
        sim.heal_and_converge();
    }

    /// One run of: a deposed leader cut off with one follower, a node that
    /// restarts on its side. Returns whether the scenario happened as planned.
    fn deposed_leader_and_a_restart(seed: u64) -> bool {
        let mut sim = Sim::calm(seed, 5, 3, 3);
        let l0 = sim.elect();
        for i in 0..3 {
            if sim.set(l0, &format!("k{i}"), "v").is_err() {
                return false;
            }
        }
        sim.run_for(100);
        let o: Vec<NodeId> = (1..=5).filter(|&i| i != l0).collect();
        let b = o[0];
        let side: Vec<NodeId> = o[1..].to_vec();
        for &a in &[l0, b] {
            sim.cut_off(a, &side);
        }
        sim.run_until("a leader on the majority side", 2_000, |s| {
            s.leader().is_some_and(|x| x != l0)
        });
        let Some(l) = sim.leader() else { return false };
        if !sim.node(l0).is_leader() || sim.set(l, "e", "committed").is_err() {
            return false;
        }
        let f = *side.iter().find(|&&x| x != l).unwrap_or(&l);
        let a = *side.iter().find(|&&x| x != l && x != f).unwrap_or(&l);
        sim.crash(f);
        sim.restart(f);
        sim.heal();
        sim.cut_off(l, &[l0, b, f]);
        sim.cut_off(a, &[l0, b, f]);
        sim.run_for(200);
        if sim.node(l0).is_leader() {
            let _ = sim.set(l0, "x", "on-the-old-side");
        }
        sim.run_for(1_000);
        sim.heal_and_converge();
        true
    }

    #[test]
    fn a_node_restarted_empty_does_not_keep_a_deposed_leader_in_power() {
        // It may not follow anyone before it knows the current term: the
        // deposed leader steps down, nothing it does afterwards commits.
        let happened = (0..40)
            .filter(|&seed| deposed_leader_and_a_restart(seed))
            .count();
        assert!(happened >= 10, "the scenario ran in {happened} of 40 seeds");
    }

    #[test]
    fn a_restarted_node_and_nodes_that_missed_writes_elect_no_leader_without_them() {
        // Nodes 4 and 5 missed the writes (cut off), a third node restarted:
        // together a majority, but none of them holds the writes and the
        // restarted one cannot hear every peer, so no leader is elected among
        // them. (A brand-new cluster elects its first leader only once every
        // node answered: two nodes that never heard of the cluster and a
        // restarted one cannot pass for one.)
        let mut sim = Sim::calm(31, 5, 3, 3);
        let first = sim.elect();
        sim.run_until("every node caught up", 2_000, |s| {
            (1..=5).all(|i| !s.node(i).is_catching_up())
        });
        let _ = first;
        for late in [4, 5] {
            sim.cut_off(late, &[1, 2, 3]);
        }
        let l = sim.elect();
        for i in 0..3 {
            sim.set(l, &format!("k{i}"), "v").expect("201");
        }
        sim.run_for(100);
        let c = (1..=3).find(|&i| i != l).unwrap_or(1);
        let others: Vec<NodeId> = (1..=3).filter(|&i| i != c).collect();
        sim.crash(c);
        sim.restart(c);
        sim.heal();
        for &o in &others {
            sim.cut_off(o, &[c, 4, 5]);
        }
        sim.run_for(3_000);
        assert!(
            [c, 4, 5].iter().all(|&i| !sim.node(i).is_leader()),
            "no leader among the nodes without the writes"
        );
        sim.heal_and_converge();
    }

    #[test]
    fn a_paused_deposed_leader_does_not_renew_trust_in_its_configuration() {
        // While it was paused the others moved W5R1 -> W1R5; when it resumes it
        // must step down before anything it sends renews a follower's lease
        // on W5R1 (the invariant checks R + W > N after every step).
        let mut sim = Sim::calm(29, 5, 5, 1);
        let l0 = sim.elect();
        sim.run_for(100);
        let o: Vec<NodeId> = (1..=5).filter(|&i| i != l0).collect();
        let f = o[0];
        let rest: Vec<NodeId> = o[1..].to_vec();
        sim.run_until("a heartbeat in flight", 500, |s| {
            s.net
                .iter()
                .any(|m| m.from == l0 && m.to == f && matches!(m.packet, Packet::Append(_)))
        });
        sim.cut_off(l0, &rest);
        sim.cut_off(f, &rest);
        sim.pause(l0, 3_000);
        let target = ClusterConfig::new(5, 1, 5, DelayProfile::OFF).unwrap();
        let l = a_new_leader_changes_to(&mut sim, l0, target);
        sim.run_until("the new leader acknowledges with W=1", 4_000, |s| {
            s.node(l).config().w == 1
        });
        sim.run_for(2_000);
        sim.heal_and_converge();
    }

    #[test]
    fn a_paused_deposed_leader_acknowledges_nothing_with_its_old_w() {
        // Found by a long hunt (seed 5019397): the leader of W2R4 pauses; the
        // next one raises W to 3, then lowers R to 3, and loses its majority.
        // The paused one is the only leader left and still holds W=2 while
        // the others read with R=3 — harmless while it is paused (the
        // invariant checks the newest unpaused leader's W), and when it
        // resumes it steps down before it acknowledges anything.
        let mut sim = Sim::calm(37, 5, 2, 4);
        let l0 = sim.elect();
        sim.run_for(100);
        sim.pause(l0, 6_000);
        let target = ClusterConfig::new(5, 3, 3, DelayProfile::OFF).unwrap();
        let l = a_new_leader_changes_to(&mut sim, l0, target);
        sim.run_until("the change is done", 5_000, |s| s.changes.1 >= 1);
        // Every node alone: nobody can be elected, and the others read with
        // R=3 until their lease on it ends.
        for i in 1..=5 {
            let others: Vec<NodeId> = (1..=5).filter(|&o| o != i).collect();
            sim.cut_off(i, &others);
        }
        sim.run_until("the new leader steps down", 3_000, |s| {
            !s.node(l).is_leader()
        });
        let f = (1..=5).find(|&i| i != l && i != l0).unwrap_or(l);
        let now = sim.clock();
        assert_eq!(
            sim.node(f).read_quorum(now),
            3,
            "a follower still reads with R=3"
        );
        assert!(sim.paused.contains_key(&l0), "the pause outlasts the story");
        assert!(sim.node(l0).is_leader() && sim.node(l0).config().w == 2);
        sim.run_until("the deposed leader resumes", 6_000, |s| {
            !s.paused.contains_key(&l0)
        });
        assert!(!sim.node(l0).is_leader(), "it stepped down on resuming");
        assert_eq!(sim.write(l0, "k"), None, "and takes no write");
        sim.heal_and_converge();
    }

    /// W3R3 -> W1R5 started by a new leader while the deposed one still
    /// leads its follower; false when the deposed leader had already stepped
    /// down when the new one was elected (the scenario did not happen).
    fn lowering_w_while_a_deposed_leader_still_leads(seed: u64) -> bool {
        let mut sim = Sim::calm(seed, 5, 3, 3);
        let l0 = sim.elect();
        // Cut at a different point of the deposed leader's quorum check each time.
        sim.run_for(100 + seed * 7 % 150);
        let o: Vec<NodeId> = (1..=5).filter(|&i| i != l0).collect();
        let f = o[0];
        let rest: Vec<NodeId> = o[1..].to_vec();
        sim.cut_off(l0, &rest);
        sim.cut_off(f, &rest);
        sim.run_until("a new leader", 3_000, |s| {
            s.leader().is_some_and(|x| x != l0)
        });
        let l = sim.leader().unwrap_or(l0);
        if !sim.node(l0).is_leader() {
            return false;
        }
        let now = sim.clock();
        let target = ClusterConfig::new(5, 1, 5, DelayProfile::OFF).unwrap();
        sim.node_mut(l).change_config(target, now).expect("change");
        sim.flush(l);
        sim.run_until("the change is done", 8_000, |s| s.changes.1 >= 1);
        sim.run_for(500);
        sim.heal_and_converge();
        true
    }

    #[test]
    fn a_new_leader_waits_for_a_deposed_leaders_follower_before_lowering_w() {
        // A deposed leader keeps renewing its follower's trust in W3R3 until it
        // steps down (up to two election timeouts after the cut); the
        // majority's new leader must not lower W to 1 before that trust ran
        // out (checked after every step: R + W > N on every node).
        let happened = (0..40)
            .filter(|&seed| lowering_w_while_a_deposed_leader_still_leads(seed))
            .count();
        assert!(happened >= 10, "the scenario ran in {happened} of 40 seeds");
    }
}
