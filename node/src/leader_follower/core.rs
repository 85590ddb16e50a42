//! The replication state machines of leader-follower mode, without sockets.
//!
//! [`LeaderCore`] owns the log and each follower's progress; [`FollowerCore`]
//! applies the log in order. Both are plain structs: the runtime feeds them
//! inputs (a client write, a follower's answer, a failed send, the passing of
//! time) and carries out the [`Output`]s they return. Time is an argument, so
//! the tests below drive every case deterministically.

use crate::store::Store;
use kv_shared::cluster::Seq;
use kv_shared::replication::{
    LogEntry, Record, ReplicateRequest, ReplicateResponse, SnapshotRequest,
};
use kv_shared::{NodeId, Version, WriteStatus};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Soft limit on the payload of one replication message; a single larger
/// entry still travels alone.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A message from the leader to one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderMessage {
    /// Consecutive log entries, or none (a heartbeat).
    Replicate(ReplicateRequest),
    /// The whole store, for a follower behind the start of the log.
    Snapshot(SnapshotRequest),
}

/// What the runtime must do after a step of the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to follower `to`; report its fate with [`Input`].
    Send {
        /// The follower.
        to: NodeId,
        /// The message.
        msg: LeaderMessage,
    },
    /// The write at `seq` is held by `acked` replicas, at least its W: answer 201.
    Committed {
        /// The write's log position.
        seq: Seq,
        /// Replicas holding it, the leader included.
        acked: u32,
    },
    /// The write at `seq` did not reach W replicas in time: answer 503.
    TimedOut {
        /// The write's log position.
        seq: Seq,
        /// Replicas holding it, the leader included.
        acked: u32,
        /// Its W.
        required: u32,
    },
}

/// The fate of a message sent to a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The follower answered.
    Replied(ReplicateResponse),
    /// No answer (unreachable, timeout, error status).
    Failed {
        /// The follower.
        from: NodeId,
        /// Why.
        error: String,
    },
}

/// A write the leader accepted: its log position and the key's new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Log position.
    pub seq: Seq,
    /// The key's new version.
    pub version: Version,
    /// Whether the key was created.
    pub status: WriteStatus,
}

/// The leader's view of one follower, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    /// The follower.
    pub id: NodeId,
    /// Its last reported applied sequence number.
    pub acked_seq: Seq,
    /// Entries it is behind the leader.
    pub lag_entries: u64,
    /// Age of the oldest entry it has not acknowledged, in ms (0 when caught up).
    pub lag_ms: u64,
    /// Whether the last message to it got an answer.
    pub up: bool,
}

/// Tuning of the leader core.
#[derive(Debug, Clone, Copy)]
pub struct LeaderSettings {
    /// Entries kept for catch-up.
    pub log_capacity: usize,
    /// Most entries per message.
    pub max_batch: usize,
    /// Idle followers get an empty message this often.
    pub heartbeat: Duration,
    /// This leader's process life, sent with every message (followers drop
    /// entries buffered from an earlier life when it changes).
    pub epoch: u64,
}

#[derive(Debug, Clone)]
struct Progress {
    /// Last applied sequence number the follower reported.
    acked: Seq,
    /// First entry to send next (acked + 1 once the follower answered).
    next: Seq,
    /// The end of the message in flight, if one is.
    in_flight: Option<Seq>,
    up: bool,
    last_sent: Option<Instant>,
    /// After a failure, no message before this instant.
    retry_at: Option<Instant>,
    failures: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    required: u32,
    deadline: Instant,
}

/// The leader's replication state: log, follower progress, writes waiting for W.
#[derive(Debug)]
pub struct LeaderCore {
    id: NodeId,
    store: Store,
    settings: LeaderSettings,
    last_seq: Seq,
    /// Consecutive entries ending at `last_seq`, with the instant each was appended.
    log: VecDeque<(LogEntry, Instant)>,
    followers: BTreeMap<NodeId, Progress>,
    pending: BTreeMap<Seq, Pending>,
}

impl LeaderCore {
    /// A leader `id` over `store` replicating to `followers`.
    pub fn new(id: NodeId, store: Store, followers: &[NodeId], settings: LeaderSettings) -> Self {
        let followers = followers
            .iter()
            .map(|&f| {
                let p = Progress {
                    acked: 0,
                    next: 1,
                    in_flight: None,
                    up: false,
                    last_sent: None,
                    retry_at: None,
                    failures: 0,
                };
                (f, p)
            })
            .collect();
        Self {
            id,
            store,
            settings,
            last_seq: 0,
            log: VecDeque::new(),
            followers,
            pending: BTreeMap::new(),
        }
    }

    /// The highest sequence number assigned (and applied on the leader).
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Restores what the followers of an earlier life of this leader hold:
    /// every record is kept unless the local copy is newer, and the log
    /// continues after `applied_seq` (the highest position any follower
    /// reported). Followers behind that position get a snapshot.
    pub fn recover(&mut self, applied_seq: Seq, records: Vec<Record>) {
        for r in records {
            self.store.apply(&r.key, r.value, r.version);
        }
        if applied_seq > self.last_seq {
            self.last_seq = applied_seq;
            self.log.clear();
        }
    }

    /// Number of writes waiting for their quorum.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Accepts a client write: assigns the key's next version and the next
    /// sequence number, applies it locally, and starts replicating it. The
    /// write is answered by a later [`Output::Committed`] or
    /// [`Output::TimedOut`] for its `seq` (immediately when `required <= 1`).
    pub fn propose(
        &mut self,
        key: &str,
        value: String,
        required: u32,
        timeout: Duration,
        now: Instant,
    ) -> (Proposal, Vec<Output>) {
        let (version, status) = self.store.write_next(key, value.clone());
        self.last_seq += 1;
        let seq = self.last_seq;
        let entry = LogEntry {
            seq,
            key: key.to_owned(),
            value,
            version,
        };
        self.log.push_back((entry, now));
        while self.log.len() > self.settings.log_capacity {
            self.log.pop_front();
        }
        let mut out = Vec::new();
        if required <= 1 {
            out.push(Output::Committed { seq, acked: 1 });
        } else {
            let deadline = now + timeout;
            self.pending.insert(seq, Pending { required, deadline });
        }
        out.extend(self.pump_all(now));
        (
            Proposal {
                seq,
                version,
                status,
            },
            out,
        )
    }

    /// Feeds the fate of a message sent to a follower.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Replied(resp) => {
                let Some(p) = self.followers.get_mut(&resp.node_id) else {
                    return out;
                };
                p.in_flight = None;
                p.up = true;
                p.failures = 0;
                p.retry_at = None;
                if resp.applied_seq > self.last_seq {
                    // The follower followed an earlier life of this leader:
                    // its cursor means nothing here, resynchronise by snapshot.
                    p.acked = 0;
                    p.next = 0;
                } else {
                    p.acked = resp.applied_seq;
                    p.next = resp.applied_seq + 1;
                }
                let acked = p.acked;
                out.extend(self.settle(acked));
                out.extend(self.pump(resp.node_id, now));
            }
            Input::Failed { from, error } => {
                let heartbeat = self.settings.heartbeat;
                if let Some(p) = self.followers.get_mut(&from) {
                    p.in_flight = None;
                    p.up = false;
                    p.failures = p.failures.saturating_add(1);
                    let backoff = heartbeat * 2u32.saturating_pow(p.failures.min(4));
                    p.retry_at = Some(now + backoff.min(Duration::from_secs(2)));
                    tracing::debug!(follower = from, %error, "replication send failed");
                }
            }
        }
        out
    }

    /// Expires writes past their deadline, retries failed followers, sends
    /// heartbeats to idle ones.
    pub fn tick(&mut self, now: Instant) -> Vec<Output> {
        let expired: Vec<Seq> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&s, _)| s)
            .collect();
        let mut out = Vec::new();
        for seq in expired {
            if let Some(p) = self.pending.remove(&seq) {
                out.push(Output::TimedOut {
                    seq,
                    acked: self.holders(seq),
                    required: p.required,
                });
            }
        }
        out.extend(self.pump_all(now));
        out
    }

    /// Per-follower progress, sorted by id.
    pub fn followers(&self, now: Instant) -> Vec<FollowerView> {
        self.followers
            .iter()
            .map(|(&id, p)| FollowerView {
                id,
                acked_seq: p.acked,
                lag_entries: self.last_seq.saturating_sub(p.acked),
                lag_ms: self.lag_ms(p.acked, now),
                up: p.up,
            })
            .collect()
    }

    fn lag_ms(&self, acked: Seq, now: Instant) -> u64 {
        if acked >= self.last_seq {
            return 0;
        }
        // The oldest unacknowledged entry, or the oldest one still in the log.
        let since = self
            .entry_index(acked + 1)
            .and_then(|i| self.log.get(i))
            .or_else(|| self.log.front())
            .map(|(_, at)| *at);
        since.map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64)
    }

    /// Replicas holding `seq`: the leader plus every follower that acknowledged it.
    fn holders(&self, seq: Seq) -> u32 {
        1 + self.followers.values().filter(|p| p.acked >= seq).count() as u32
    }

    /// Commits every pending write at or below `acked` that now has its quorum.
    fn settle(&mut self, acked: Seq) -> Vec<Output> {
        let candidates: Vec<(Seq, u32)> = self
            .pending
            .range(..=acked)
            .map(|(&s, p)| (s, p.required))
            .collect();
        let mut out = Vec::new();
        for (seq, required) in candidates {
            let holders = self.holders(seq);
            if holders >= required {
                self.pending.remove(&seq);
                out.push(Output::Committed {
                    seq,
                    acked: holders,
                });
            }
        }
        out
    }

    fn pump_all(&mut self, now: Instant) -> Vec<Output> {
        let ids: Vec<NodeId> = self.followers.keys().copied().collect();
        ids.into_iter().flat_map(|f| self.pump(f, now)).collect()
    }

    /// Position of `seq` in the log, if the log still holds it.
    fn entry_index(&self, seq: Seq) -> Option<usize> {
        let first = self.log.front()?.0.seq;
        (seq >= first && seq <= self.last_seq).then(|| (seq - first) as usize)
    }

    /// The next message for follower `f`, if it has none in flight and is
    /// behind, or idle for a heartbeat, and not backing off after a failure.
    fn pump(&mut self, f: NodeId, now: Instant) -> Option<Output> {
        let (last_seq, heartbeat, max_batch) = (
            self.last_seq,
            self.settings.heartbeat,
            self.settings.max_batch,
        );
        let p = self.followers.get(&f)?;
        if p.in_flight.is_some() || p.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let behind = p.next <= last_seq;
        let idle_too_long = p.last_sent.is_none_or(|t| now >= t + heartbeat);
        if !behind && !idle_too_long {
            return None;
        }
        let next = p.next;
        let msg = if !behind {
            LeaderMessage::Replicate(self.batch(Vec::new()))
        } else if let Some(start) = self.entry_index(next) {
            let mut bytes = 0usize;
            let entries = self
                .log
                .range(start..)
                .take(max_batch)
                .take_while(|(e, _)| {
                    let first = bytes == 0;
                    bytes += e.key.len() + e.value.len() + 64;
                    first || bytes <= MAX_BATCH_BYTES
                })
                .map(|(e, _)| e.clone())
                .collect();
            LeaderMessage::Replicate(self.batch(entries))
        } else {
            // The log no longer holds `next`: a snapshot of the store, which
            // reflects every entry up to `last_seq` because the leader applies
            // entries as it assigns them, and nothing runs between.
            LeaderMessage::Snapshot(SnapshotRequest {
                leader: self.id,
                leader_epoch: self.settings.epoch,
                seq: last_seq,
                records: self.store.records(),
                config: None,
            })
        };
        let upto = match &msg {
            LeaderMessage::Replicate(r) => {
                r.entries.last().map_or(next.saturating_sub(1), |e| e.seq)
            }
            LeaderMessage::Snapshot(s) => s.seq,
        };
        let p = self.followers.get_mut(&f)?;
        p.in_flight = Some(upto);
        p.last_sent = Some(now);
        Some(Output::Send { to: f, msg })
    }

    fn batch(&self, entries: Vec<LogEntry>) -> ReplicateRequest {
        ReplicateRequest {
            leader: self.id,
            leader_epoch: self.settings.epoch,
            leader_seq: self.last_seq,
            entries,
            config: None,
        }
    }
}

/// A follower's replication state: what it applied, and entries that arrived
/// ahead of a gap.
#[derive(Debug)]
pub struct FollowerCore {
    id: NodeId,
    store: Store,
    applied: Seq,
    /// Entries above a gap, waiting for the gap to fill.
    buffer: BTreeMap<Seq, LogEntry>,
    buffer_capacity: usize,
    /// The highest sequence number the leader has announced.
    leader_seq: Seq,
    /// The leader life the buffered entries come from.
    leader_epoch: u64,
}

impl FollowerCore {
    /// A follower `id` applying to `store`, buffering at most `buffer_capacity`
    /// out-of-order entries.
    pub fn new(id: NodeId, store: Store, buffer_capacity: usize) -> Self {
        Self {
            id,
            store,
            applied: 0,
            buffer: BTreeMap::new(),
            buffer_capacity,
            leader_seq: 0,
            leader_epoch: 0,
        }
    }

    /// Every entry up to this sequence number is applied.
    pub fn applied_seq(&self) -> Seq {
        self.applied
    }

    /// The highest sequence number the leader has announced.
    pub fn leader_seq(&self) -> Seq {
        self.leader_seq
    }

    /// Applies a batch in sequence order: duplicates are skipped, entries
    /// beyond a gap are buffered until it fills. The answer's `applied_seq`
    /// acknowledges what is applied and, if lower than the batch's end, asks
    /// the leader to resend from there.
    pub fn on_replicate(&mut self, req: ReplicateRequest) -> ReplicateResponse {
        self.observe_epoch(req.leader_epoch);
        self.leader_seq = self.leader_seq.max(req.leader_seq);
        for e in req.entries {
            if e.seq <= self.applied {
                continue;
            }
            if e.seq == self.applied + 1 {
                self.apply(e);
                self.drain_buffer();
            } else if self.buffer.len() < self.buffer_capacity || self.buffer.contains_key(&e.seq) {
                self.buffer.insert(e.seq, e);
            }
        }
        self.answer()
    }

    /// Installs a snapshot: every record is kept unless the local copy is
    /// newer, and the applied position becomes the snapshot's. Nothing
    /// already held is lost, because versions only grow.
    pub fn on_snapshot(&mut self, req: SnapshotRequest) -> ReplicateResponse {
        self.observe_epoch(req.leader_epoch);
        for r in req.records {
            self.store.apply(&r.key, r.value, r.version);
        }
        self.applied = req.seq;
        self.leader_seq = self.leader_seq.max(req.seq);
        self.buffer = self.buffer.split_off(&(req.seq + 1));
        self.drain_buffer();
        self.answer()
    }

    /// What this follower holds, for a leader that restarted empty.
    pub fn state(&self) -> (Seq, Vec<Record>) {
        (self.applied, self.store.records())
    }

    /// A new leader life invalidates the entries buffered beyond a gap: their
    /// positions will be reused.
    fn observe_epoch(&mut self, epoch: u64) {
        if epoch != self.leader_epoch {
            self.buffer.clear();
            self.leader_epoch = epoch;
        }
    }

    fn apply(&mut self, e: LogEntry) {
        self.store.apply(&e.key, e.value, e.version);
        self.applied = e.seq;
    }

    fn drain_buffer(&mut self) {
        while let Some(e) = self.buffer.remove(&(self.applied + 1)) {
            self.apply(e);
        }
    }

    fn answer(&self) -> ReplicateResponse {
        ReplicateResponse {
            node_id: self.id,
            applied_seq: self.applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: LeaderSettings = LeaderSettings {
        log_capacity: 100,
        max_batch: 10,
        heartbeat: Duration::from_millis(100),
        epoch: 1,
    };
    const TIMEOUT: Duration = Duration::from_secs(1);

    /// A leader (1) and followers 2..=n, each with its own store, wired by hand.
    struct Net {
        now: Instant,
        leader: LeaderCore,
        followers: BTreeMap<NodeId, FollowerCore>,
        /// Messages sent and not yet delivered.
        wire: Vec<(NodeId, LeaderMessage)>,
        committed: Vec<Seq>,
        timed_out: Vec<(Seq, u32, u32)>,
    }

    impl Net {
        fn new(n: u32, settings: LeaderSettings) -> Self {
            let ids: Vec<NodeId> = (2..=n).collect();
            Self {
                now: Instant::now(),
                leader: LeaderCore::new(1, Store::new(), &ids, settings),
                followers: ids
                    .iter()
                    .map(|&i| (i, FollowerCore::new(i, Store::new(), 1000)))
                    .collect(),
                wire: Vec::new(),
                committed: Vec::new(),
                timed_out: Vec::new(),
            }
        }

        fn absorb(&mut self, out: Vec<Output>) {
            for o in out {
                match o {
                    Output::Send { to, msg } => self.wire.push((to, msg)),
                    Output::Committed { seq, .. } => self.committed.push(seq),
                    Output::TimedOut {
                        seq,
                        acked,
                        required,
                    } => self.timed_out.push((seq, acked, required)),
                }
            }
        }

        fn write(&mut self, key: &str, value: &str, w: u32) -> Proposal {
            let (p, out) = self.leader.propose(key, value.into(), w, TIMEOUT, self.now);
            self.absorb(out);
            p
        }

        /// Delivers every message in flight to `to` and feeds back the answer.
        fn deliver_to(&mut self, to: NodeId) {
            let (mine, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(t, _)| *t == to);
            self.wire = rest;
            for (_, msg) in mine {
                let f = self.followers.get_mut(&to).unwrap();
                let resp = match msg {
                    LeaderMessage::Replicate(r) => f.on_replicate(r),
                    LeaderMessage::Snapshot(s) => f.on_snapshot(s),
                };
                let out = self.leader.step(Input::Replied(resp), self.now);
                self.absorb(out);
            }
        }

        /// Delivers until nothing is in flight to the given followers.
        fn settle(&mut self, to: &[NodeId]) {
            for _ in 0..1000 {
                if !self.wire.iter().any(|(t, _)| to.contains(t)) {
                    return;
                }
                for &f in to {
                    self.deliver_to(f);
                }
            }
            panic!("replication did not settle");
        }

        fn fail_to(&mut self, to: NodeId) {
            let (mine, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(t, _)| *t == to);
            self.wire = rest;
            for _ in mine {
                let out = self.leader.step(
                    Input::Failed {
                        from: to,
                        error: "down".into(),
                    },
                    self.now,
                );
                self.absorb(out);
            }
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            let out = self.leader.tick(self.now);
            self.absorb(out);
        }

        fn value_at(&self, f: NodeId, key: &str) -> Option<(String, Version)> {
            self.followers[&f]
                .store
                .get(key)
                .map(|e| (e.value, e.version))
        }
    }

    #[test]
    fn write_commits_once_w_replicas_hold_it() {
        // W=3 of 5: committed after two followers answer, not after one.
        let mut net = Net::new(5, SETTINGS);
        let p = net.write("k", "v", 3);
        assert_eq!((p.seq, p.version, p.status), (1, 1, WriteStatus::Created));
        assert_eq!(net.wire.len(), 4, "every follower receives the write");
        net.deliver_to(2);
        assert!(net.committed.is_empty());
        net.deliver_to(3);
        assert_eq!(net.committed, vec![1]);
        net.settle(&[4, 5]);
        assert_eq!(
            net.leader
                .followers(net.now)
                .iter()
                .map(|f| f.acked_seq)
                .collect::<Vec<_>>(),
            vec![1; 4]
        );
    }

    #[test]
    fn w1_commits_at_once_and_still_reaches_everyone() {
        // W=1: the leader alone is the quorum; followers still get the entry.
        let mut net = Net::new(5, SETTINGS);
        net.write("k", "v", 1);
        assert_eq!(net.committed, vec![1]);
        net.settle(&[2, 3, 4, 5]);
        for f in 2..=5 {
            assert_eq!(net.value_at(f, "k"), Some(("v".into(), 1)));
        }
    }

    #[test]
    fn write_times_out_when_w_cannot_be_met() {
        // W=5 with one follower down: 503 after the timeout, with acked=4 required=5,
        // and the write stays applied where it arrived.
        let mut net = Net::new(5, SETTINGS);
        net.write("k", "v", 5);
        net.fail_to(5);
        net.settle(&[2, 3, 4]);
        assert!(net.committed.is_empty());
        net.advance(TIMEOUT);
        assert_eq!(net.timed_out, vec![(1, 4, 5)]);
        assert_eq!(net.leader.pending_writes(), 0);
        assert_eq!(net.value_at(2, "k"), Some(("v".into(), 1)));
    }

    #[test]
    fn one_message_in_flight_per_follower_and_later_writes_batch() {
        // While a batch is in flight, new entries wait and then travel together.
        let mut net = Net::new(2, SETTINGS);
        net.write("a", "1", 1);
        for i in 0..5 {
            net.write("b", &i.to_string(), 1);
        }
        assert_eq!(net.wire.len(), 1, "still the first message only");
        net.deliver_to(2);
        assert_eq!(net.wire.len(), 1);
        match &net.wire[0].1 {
            LeaderMessage::Replicate(r) => {
                assert_eq!(
                    r.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
                    vec![2, 3, 4, 5, 6]
                );
            }
            other => panic!("expected a batch, got {other:?}"),
        }
        net.settle(&[2]);
        assert_eq!(net.value_at(2, "b"), Some(("4".into(), 5)));
    }

    #[test]
    fn failed_follower_is_retried_after_backoff_and_catches_up() {
        // A follower that missed messages gets the log tail once it answers again.
        let mut net = Net::new(3, SETTINGS);
        net.write("k", "1", 2);
        net.fail_to(3);
        net.settle(&[2]);
        for i in 2..=4 {
            net.write("k", &i.to_string(), 2);
            net.settle(&[2]);
        }
        assert!(net.wire.iter().all(|(t, _)| *t != 3), "backing off");
        assert!(!net.leader.followers(net.now)[1].up);
        net.advance(Duration::from_secs(3));
        net.settle(&[2, 3]);
        assert_eq!(net.value_at(3, "k"), Some(("4".into(), 4)));
        assert_eq!(net.leader.followers(net.now)[1].lag_entries, 0);
    }

    #[test]
    fn follower_buffers_out_of_order_entries_and_asks_for_the_gap() {
        // Entries 3..4 before 2: buffered, applied once 2 arrives, never out of order.
        let store = Store::new();
        let mut f = FollowerCore::new(2, store.clone(), 10);
        let e = |seq: Seq, v: &str, version: Version| LogEntry {
            seq,
            key: "k".into(),
            value: v.into(),
            version,
        };
        let req = |entries: Vec<LogEntry>| ReplicateRequest {
            leader: 1,
            leader_epoch: 1,
            leader_seq: 4,
            entries,
            config: None,
        };
        assert_eq!(f.on_replicate(req(vec![e(1, "a", 1)])).applied_seq, 1);
        let ans = f.on_replicate(req(vec![e(3, "c", 3), e(4, "d", 4)]));
        assert_eq!(ans.applied_seq, 1, "the answer asks for seq 2");
        assert_eq!(store.get("k").unwrap().value, "a");
        let ans = f.on_replicate(req(vec![e(2, "b", 2), e(3, "c", 3)]));
        assert_eq!(ans.applied_seq, 4);
        assert_eq!(store.get("k").unwrap().value, "d");
        // A duplicate of old entries changes nothing.
        assert_eq!(f.on_replicate(req(vec![e(2, "b", 2)])).applied_seq, 4);
        assert_eq!(store.get("k").unwrap().version, 4);
    }

    #[test]
    fn older_version_never_overwrites_a_newer_one() {
        // A read repair put version 5 on the follower; the log's version 3 arrives later.
        let store = Store::new();
        store.apply("k", "new".into(), 5);
        let mut f = FollowerCore::new(2, store.clone(), 10);
        let entry = LogEntry {
            seq: 1,
            key: "k".into(),
            value: "old".into(),
            version: 3,
        };
        f.on_replicate(ReplicateRequest {
            leader: 1,
            leader_epoch: 1,
            leader_seq: 1,
            entries: vec![entry],
            config: None,
        });
        assert_eq!(
            store.get("k").unwrap(),
            crate::store::Entry {
                value: "new".into(),
                version: 5
            }
        );
        assert_eq!(f.applied_seq(), 1);
    }

    #[test]
    fn follower_restarted_empty_catches_up_from_the_log_tail() {
        // The log still holds everything: the follower gets entries from seq 1.
        let mut net = Net::new(2, SETTINGS);
        for i in 0..5 {
            net.write(&format!("k{i}"), "v", 2);
            net.settle(&[2]);
        }
        net.followers
            .insert(2, FollowerCore::new(2, Store::new(), 1000));
        net.advance(SETTINGS.heartbeat);
        net.settle(&[2]);
        assert_eq!(net.followers[&2].applied_seq(), 5);
        assert_eq!(net.followers[&2].store.len(), 5);
    }

    #[test]
    fn follower_restarted_empty_catches_up_via_snapshot_then_tail() {
        // The log holds only the last 3 entries: a snapshot first, then the tail.
        let settings = LeaderSettings {
            log_capacity: 3,
            ..SETTINGS
        };
        let mut net = Net::new(2, settings);
        for i in 0..10 {
            net.write(&format!("k{}", i % 4), &i.to_string(), 1);
            net.settle(&[2]);
        }
        net.followers
            .insert(2, FollowerCore::new(2, Store::new(), 1000));
        net.advance(settings.heartbeat);
        // The heartbeat reveals the empty follower; the answer triggers a snapshot.
        net.deliver_to(2);
        assert!(matches!(net.wire[0].1, LeaderMessage::Snapshot(ref s) if s.seq == 10));
        net.write("k0", "after", 1);
        net.settle(&[2]);
        let f = &net.followers[&2];
        assert_eq!(f.applied_seq(), 11);
        let mut a = f.store.records();
        let mut b = net.leader.store.records();
        a.sort_by(|x, y| x.key.cmp(&y.key));
        b.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(a, b, "the follower holds exactly the leader's state");
    }

    #[test]
    fn leader_restarted_empty_recovers_from_followers_and_versions_continue() {
        // A new leader life restores the followers' records and log position; the next
        // write of a key gets the next version, and a follower's stale buffer is dropped.
        let mut net = Net::new(3, SETTINGS);
        for i in 1..=4 {
            net.write("k", &format!("v{i}"), 3);
            net.settle(&[2, 3]);
        }
        let (seq, records) = net.followers[&2].state();
        let settings = LeaderSettings {
            epoch: 2,
            ..SETTINGS
        };
        net.leader = LeaderCore::new(1, Store::new(), &[2, 3], settings);
        net.leader.recover(seq, records);
        // Follower 3 had buffered an entry of the old life beyond a gap.
        let stale = LogEntry {
            seq: 6,
            key: "k".into(),
            value: "old-life".into(),
            version: 9,
        };
        let old = ReplicateRequest {
            leader: 1,
            leader_epoch: 1,
            leader_seq: 6,
            entries: vec![stale],
            config: None,
        };
        net.followers.get_mut(&3).unwrap().on_replicate(old);
        let p = net.write("k", "v5", 3);
        assert_eq!((p.seq, p.version), (5, 5));
        let p = net.write("j", "x", 3);
        net.settle(&[2, 3]);
        assert_eq!(net.committed.last(), Some(&p.seq));
        for f in [2, 3] {
            assert_eq!(net.value_at(f, "k"), Some(("v5".into(), 5)), "follower {f}");
            assert_eq!(net.followers[&f].applied_seq(), 6);
        }
    }

    #[test]
    fn lag_is_reported_in_entries_and_milliseconds() {
        // A follower that has not answered lags by the unacknowledged entries and their age.
        let mut net = Net::new(3, SETTINGS);
        net.write("a", "1", 1);
        net.settle(&[2]);
        net.now += Duration::from_millis(250);
        let v = net.leader.followers(net.now);
        assert_eq!((v[0].lag_entries, v[0].lag_ms, v[0].up), (0, 0, true));
        assert_eq!((v[1].lag_entries, v[1].lag_ms, v[1].up), (1, 250, false));
    }
}
