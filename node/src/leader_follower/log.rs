//! The replicated log of one leader-follower node, and its application to
//! the store.
//!
//! Every entry is applied to the store as soon as it is appended, so that a
//! replica answers reads with everything it holds (that is what makes W < N
//! acknowledgements readable with R + W > N). An entry above the commit
//! point may still be undone when a new leader's log does not hold it, so
//! each such entry keeps what its key held before (`undo`); undoing the log
//! from some index restores the store exactly. Committed entries never roll
//! back: their undo is dropped, and the oldest of them are compacted away
//! once the log holds more than its capacity. What a compacted prefix leaves
//! behind — the last index and term, the version floor, the configuration —
//! is kept as the log's *base*, which is also what a snapshot carries.

use crate::store::{Entry, Store};
use kv_shared::cluster::{ClusterConfig, Seq};
use kv_shared::leader_follower::{Command, LogEntry};
use kv_shared::limits::MAX_TERM_RUNS;
use kv_shared::replication::Record;
use kv_shared::{Term, Version};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Soft limit on the payload of one append message; a single larger entry
/// still travels alone.
pub const MAX_BATCH_BYTES: usize = kv_shared::limits::MAX_BATCH_BYTES as usize;

/// What the compacted prefix of the log (or an installed snapshot) leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// Index of the last compacted entry (0: nothing compacted).
    pub index: Seq,
    /// Its term.
    pub term: Term,
    /// The version floor in force there (0: no term has started).
    pub floor: Version,
    /// The largest uncommitted window of any term up to there.
    pub window: u64,
    /// The configuration in force there.
    pub config: ClusterConfig,
    /// The index of the entry that made it (0: the start flags).
    pub config_index: Seq,
}

#[derive(Debug, Clone)]
struct Slot {
    entry: LogEntry,
    /// For a write above the commit point: what its key held before.
    undo: Option<Option<Entry>>,
    appended_at: Instant,
}

/// The log, applied to a store.
#[derive(Debug)]
pub struct Log {
    store: Store,
    base: Base,
    /// The term of every compacted index, as runs: (first index, term).
    runs: Vec<(Seq, Term)>,
    slots: VecDeque<Slot>,
    /// Entries up to here keep no undo information.
    settled: Seq,
    /// Highest version any entry applied here carried (never decreases).
    max_version: Version,
    /// What the latest entries set, kept up to date on every change (read on
    /// every step, so never computed by scanning the log there).
    latest: Latest,
    /// Bytes of the held entries, and of the settled ones among them.
    bytes: usize,
    settled_bytes: usize,
}

/// The effect of the newest `TermStart` and `Config` entries (or the base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    floor: Version,
    window: u64,
    config: (ClusterConfig, Seq),
}

impl Log {
    /// An empty log over `store` (which must be empty too), starting with `config`.
    pub fn new(store: Store, config: ClusterConfig) -> Self {
        Self {
            store,
            base: Base {
                index: 0,
                term: 0,
                floor: 0,
                window: 0,
                config,
                config_index: 0,
            },
            runs: Vec::new(),
            slots: VecDeque::new(),
            settled: 0,
            max_version: 0,
            latest: Latest {
                floor: 0,
                window: 0,
                config: (config, 0),
            },
            bytes: 0,
            settled_bytes: 0,
        }
    }

    /// Bytes of the entries above the commit point (what a leader's
    /// uncommitted window holds).
    pub fn unsettled_bytes(&self) -> usize {
        self.bytes - self.settled_bytes
    }

    /// Bytes of every held entry.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Recomputes [`Latest`] from the base and the held entries (after a
    /// truncation or an install; rare).
    fn recompute_latest(&mut self) {
        let mut l = Latest {
            floor: self.base.floor,
            window: self.base.window,
            config: (self.base.config, self.base.config_index),
        };
        for s in &self.slots {
            l.absorb(&s.entry);
        }
        self.latest = l;
    }

    /// The store this log is applied to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the compacted prefix left.
    pub fn base(&self) -> Base {
        self.base
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> Seq {
        self.slots.back().map_or(self.base.index, |s| s.entry.index)
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.slots.back().map_or(self.base.term, |s| s.entry.term)
    }

    /// The first index the log still holds.
    pub fn first_index(&self) -> Seq {
        self.base.index + 1
    }

    /// Highest version ever applied here.
    pub fn max_version(&self) -> Version {
        self.max_version
    }

    fn slot(&self, index: Seq) -> Option<&Slot> {
        let offset = index.checked_sub(self.base.index + 1)?;
        self.slots.get(usize::try_from(offset).ok()?)
    }

    /// The term of the entry at `index`: known for the base and held entries.
    pub fn term_at(&self, index: Seq) -> Option<Term> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.slot(index).map(|s| s.entry.term)
    }

    /// The term of the entry at `index`, compacted or held.
    pub fn term_of(&self, index: Seq) -> Option<Term> {
        if index > self.base.index {
            return self.term_at(index);
        }
        if index == 0 {
            return None;
        }
        super::core::term_in_runs(&self.runs, index)
    }

    /// The terms of every index up to `index` (settled or held), as runs:
    /// the newest [`MAX_TERM_RUNS`].
    pub fn terms_through(&self, index: Seq) -> Vec<(Seq, Term)> {
        let mut runs = self.runs.clone();
        for s in self.slots.iter().take_while(|s| s.entry.index <= index) {
            if runs.last().is_none_or(|(_, t)| *t != s.entry.term) {
                runs.push((s.entry.index, s.entry.term));
            }
        }
        if runs.len() > MAX_TERM_RUNS {
            runs.drain(..runs.len() - MAX_TERM_RUNS);
        }
        runs
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Seq) -> Option<&LogEntry> {
        self.slot(index).map(|s| &s.entry)
    }

    /// When the entry at `index` was appended here.
    pub fn appended_at(&self, index: Seq) -> Option<Instant> {
        self.slot(index).map(|s| s.appended_at)
    }

    /// The first index of the run of entries with the same term as `index`
    /// (where a leader should retry after a conflict there).
    pub fn first_of_term_at(&self, index: Seq) -> Seq {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        let mut i = index;
        while i > self.base.index + 1 && self.term_at(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Up to `max` consecutive entries from `from`, at most about
    /// [`MAX_BATCH_BYTES`] (at least one).
    pub fn entries_from(&self, from: Seq, max: usize) -> Vec<LogEntry> {
        let Some(start) = from
            .checked_sub(self.base.index + 1)
            .and_then(|o| usize::try_from(o).ok())
        else {
            return Vec::new();
        };
        let mut bytes = 0usize;
        self.slots
            .range(start.min(self.slots.len())..)
            .take(max)
            .take_while(|s| {
                let first = bytes == 0;
                bytes += entry_bytes(&s.entry);
                first || bytes <= MAX_BATCH_BYTES
            })
            .map(|s| s.entry.clone())
            .collect()
    }

    /// Appends `entry` (whose index must be `last_index() + 1`) and applies it.
    pub fn append(&mut self, entry: LogEntry, now: Instant) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        let undo = match &entry.command {
            Command::Write {
                key,
                value,
                version,
            } => {
                self.max_version = self.max_version.max(*version);
                let prev = self.store.put(
                    key,
                    Entry {
                        value: value.clone(),
                        version: *version,
                    },
                );
                Some(prev)
            }
            Command::TermStart { .. } | Command::Config { .. } => None,
        };
        self.latest.absorb(&entry);
        self.bytes += entry_bytes(&entry);
        self.slots.push_back(Slot {
            entry,
            undo,
            appended_at: now,
        });
    }

    /// Undoes and removes every entry from `index` on; returns them, lowest
    /// index first.
    ///
    /// # Panics
    /// When asked to undo a settled (committed) entry: that would be a bug in
    /// the protocol, never a consequence of the network.
    pub fn truncate_from(&mut self, index: Seq) -> Vec<LogEntry> {
        assert!(
            index > self.settled,
            "truncating committed entries ({index} <= {})",
            self.settled
        );
        let mut undone = Vec::new();
        while self.last_index() >= index && !self.slots.is_empty() {
            let Some(slot) = self.slots.pop_back() else {
                break;
            };
            self.bytes -= entry_bytes(&slot.entry);
            if let (Command::Write { key, .. }, Some(prev)) = (&slot.entry.command, slot.undo) {
                self.store.restore(key, prev);
            }
            undone.push(slot.entry);
        }
        undone.reverse();
        self.recompute_latest();
        undone
    }

    /// What `key` held once every entry up to `index` was applied, for an
    /// `index` at or above the settled point (entries above it keep their
    /// undo information): the undo of the first write of `key` after
    /// `index`, or the store's copy when there is none. `None` when `index`
    /// is below the settled point (not known any more).
    ///
    /// Scans the entries above `index` (the uncommitted window at most).
    pub fn value_as_of(&self, key: &str, index: Seq) -> Option<Option<Entry>> {
        if index < self.settled {
            return None;
        }
        let from = index
            .saturating_sub(self.base.index)
            .min(self.slots.len() as u64) as usize;
        for slot in self.slots.range(from..) {
            if let Command::Write { key: k, .. } = &slot.entry.command {
                if k == key {
                    return slot.undo.clone();
                }
            }
        }
        Some(self.store.get(key))
    }

    /// Entries up to `index` are committed: they drop their undo information.
    pub fn settle(&mut self, index: Seq) {
        let index = index.min(self.last_index());
        while self.settled < index {
            self.settled += 1;
            let i = self.settled;
            if let Some(offset) = i
                .checked_sub(self.base.index + 1)
                .and_then(|o| usize::try_from(o).ok())
            {
                if let Some(s) = self.slots.get_mut(offset) {
                    s.undo = None;
                    self.settled_bytes += entry_bytes(&s.entry);
                }
            }
        }
    }

    /// Compacts settled entries while the log holds more than `capacity`
    /// entries or `capacity_bytes` bytes.
    pub fn compact(&mut self, capacity: usize, capacity_bytes: usize) {
        while self.slots.len() > capacity || self.bytes > capacity_bytes {
            let Some(front) = self.slots.front() else {
                break;
            };
            if front.entry.index > self.settled {
                break;
            }
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            let size = entry_bytes(&slot.entry);
            self.bytes -= size;
            self.settled_bytes -= size;
            self.base.index = slot.entry.index;
            self.base.term = slot.entry.term;
            if self.runs.last().is_none_or(|(_, t)| *t != slot.entry.term) {
                self.runs.push((slot.entry.index, slot.entry.term));
                if self.runs.len() > MAX_TERM_RUNS {
                    self.runs.drain(..self.runs.len() - MAX_TERM_RUNS);
                }
            }
            match slot.entry.command {
                Command::TermStart { floor, window } => {
                    self.base.floor = floor;
                    self.base.window = self.base.window.max(window);
                }
                Command::Config { config } => {
                    self.base.config = config;
                    self.base.config_index = slot.entry.index;
                }
                Command::Write { .. } => {}
            }
        }
    }

    /// The version floor of the latest term started in this log (0: none).
    pub fn floor(&self) -> Version {
        self.latest.floor
    }

    /// The largest uncommitted window of any term in this log.
    pub fn window(&self) -> u64 {
        self.latest.window
    }

    /// The configuration the latest configuration entry set, and its index.
    pub fn config(&self) -> (ClusterConfig, Seq) {
        self.latest.config
    }

    /// The store as it was right after entry `index` (which must be settled
    /// or above): the current records with every later write undone, in key
    /// order — the same list for the same index whatever was written after
    /// it, so that a snapshot sent in chunks by offset can be built again
    /// while a chunk of an earlier build is still on its way, and the
    /// follower resume at the offset it holds.
    pub fn records_at(&self, index: Seq) -> Vec<Record> {
        // The first write of a key after `index` remembers what the key held at `index`.
        let mut before: BTreeMap<&str, &Option<Entry>> = BTreeMap::new();
        for s in self.slots.iter().filter(|s| s.entry.index > index) {
            if let (Command::Write { key, .. }, Some(prev)) = (&s.entry.command, &s.undo) {
                before.entry(key.as_str()).or_insert(prev);
            }
        }
        let mut records: Vec<Record> = self
            .store
            .records()
            .into_iter()
            .filter(|r| !before.contains_key(r.key.as_str()))
            .collect();
        records.extend(before.into_iter().filter_map(|(k, prev)| {
            prev.as_ref().map(|e| Record {
                key: k.to_owned(),
                value: e.value.clone(),
                version: e.version,
            })
        }));
        records.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        records
    }

    /// What a snapshot at `index` carries besides its records.
    pub fn base_at(&self, index: Seq) -> Base {
        let mut b = self.base;
        for s in self.slots.iter().take_while(|s| s.entry.index <= index) {
            b.index = s.entry.index;
            b.term = s.entry.term;
            match s.entry.command {
                Command::TermStart { floor, window } => {
                    b.floor = floor;
                    b.window = b.window.max(window);
                }
                Command::Config { config } => {
                    b.config = config;
                    b.config_index = s.entry.index;
                }
                Command::Write { .. } => {}
            }
        }
        b
    }

    /// Replaces everything with a snapshot: the store takes `records`, the
    /// log becomes empty after `base`.
    pub fn install(
        &mut self,
        base: Base,
        runs: Vec<(Seq, Term)>,
        records: Vec<Record>,
        max_version: Version,
    ) {
        self.store.replace_all(records);
        self.slots.clear();
        self.bytes = 0;
        self.settled_bytes = 0;
        self.base = base;
        self.runs = runs;
        self.settled = base.index;
        self.max_version = self.max_version.max(max_version);
        self.recompute_latest();
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the log holds no entry (everything is in the base).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl Latest {
    fn absorb(&mut self, e: &LogEntry) {
        match e.command {
            Command::TermStart { floor, window } => {
                self.floor = floor;
                self.window = self.window.max(window);
            }
            Command::Config { config } => self.config = (config, e.index),
            Command::Write { .. } => {}
        }
    }
}

/// Approximate bytes of an entry on the wire.
pub fn entry_bytes(e: &LogEntry) -> usize {
    match &e.command {
        Command::Write { key, value, .. } => kv_shared::limits::record_bytes(key, value),
        Command::TermStart { .. } | Command::Config { .. } => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::DelayProfile;

    fn config() -> ClusterConfig {
        ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap()
    }

    fn write(index: Seq, term: Term, key: &str, value: &str, version: Version) -> LogEntry {
        LogEntry {
            index,
            term,
            command: Command::Write {
                key: key.into(),
                value: value.into(),
                version,
            },
        }
    }

    fn sorted(mut r: Vec<Record>) -> Vec<(String, String, Version)> {
        r.sort_by(|a, b| a.key.cmp(&b.key));
        r.into_iter().map(|r| (r.key, r.value, r.version)).collect()
    }

    #[test]
    fn the_records_at_an_index_are_the_same_list_whatever_comes_after() {
        // A snapshot at index 4 is sent in chunks by offset; built again
        // after more writes, it must list the same records in the same order,
        // or a follower resuming at its offset skips some.
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        let keys = ["d", "a", "c", "b"];
        for (i, k) in (1..).zip(keys) {
            log.append(write(i, 1, k, "1", 1), now);
        }
        log.settle(4);
        let first = log.records_at(4);
        let listed: Vec<&str> = first.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(listed, ["a", "b", "c", "d"], "in key order");
        // Later writes overwrite some keys (their state at 4 now comes from
        // the undo records) and add others.
        log.append(write(5, 1, "c", "2", 2), now);
        log.append(write(6, 1, "e", "1", 1), now);
        log.append(write(7, 1, "a", "2", 2), now);
        assert_eq!(log.records_at(4), first);
    }

    #[test]
    fn a_key_as_of_an_index_ignores_the_writes_after_it() {
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        log.append(write(1, 1, "k", "a", 1), now);
        log.append(write(2, 1, "other", "x", 1), now);
        log.append(write(3, 1, "k", "b", 2), now);
        log.append(write(4, 1, "k", "c", 3), now);
        log.settle(1);
        let at = |i| log.value_as_of("k", i).map(|e| e.map(|e| e.value));
        // The store holds the newest write; as of index 1 or 2 the key held "a".
        assert_eq!(log.store().get("k").map(|e| e.value).as_deref(), Some("c"));
        assert_eq!(at(1), Some(Some("a".into())));
        assert_eq!(at(2), Some(Some("a".into())));
        assert_eq!(at(3), Some(Some("b".into())));
        assert_eq!(at(4), Some(Some("c".into())));
        // Before its first write the key was absent; below the settled point nothing is known.
        assert_eq!(log.value_as_of("new", 1), Some(None));
        assert_eq!(at(0), None);
        log.append(write(5, 1, "new", "n", 1), now);
        assert_eq!(log.value_as_of("new", 4), Some(None));
        assert_eq!(
            log.value_as_of("new", 5).map(|e| e.map(|e| e.value)),
            Some(Some("n".into()))
        );
    }

    #[test]
    fn compaction_remembers_a_bounded_number_of_term_runs() {
        // One entry per term: every compacted entry starts a run.
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        let total = (MAX_TERM_RUNS + 100) as Seq;
        for i in 1..=total {
            log.append(write(i, i, "k", "v", i), now);
            log.settle(i);
            log.compact(1, usize::MAX);
        }
        let runs = log.terms_through(total);
        assert_eq!(runs.len(), MAX_TERM_RUNS);
        assert_eq!(runs.last(), Some(&(total, total)));
        // The newest compacted terms are known; forgotten ones are not guessed.
        assert_eq!(log.term_of(total - 1), Some(total - 1));
        assert_eq!(log.term_of(50), None);
    }

    #[test]
    fn truncation_restores_the_store_exactly() {
        // Writes above the commit point are undone in reverse, key by key.
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        log.append(write(1, 1, "a", "1", 1), now);
        log.append(write(2, 1, "b", "1", 1), now);
        log.settle(2);
        log.append(write(3, 1, "a", "2", 2), now);
        log.append(write(4, 1, "c", "1", 1), now);
        log.append(write(5, 1, "a", "3", 3), now);
        assert_eq!(
            sorted(log.records_at(2)),
            vec![("a".into(), "1".into(), 1), ("b".into(), "1".into(), 1)]
        );
        let undone = log.truncate_from(3);
        assert_eq!(
            undone.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(
            sorted(log.store().records()),
            vec![("a".into(), "1".into(), 1), ("b".into(), "1".into(), 1)]
        );
        assert_eq!((log.last_index(), log.last_term()), (2, 1));
        assert_eq!(log.max_version(), 3, "the highest version seen stays");
    }

    #[test]
    fn the_latest_configuration_and_floor_follow_appends_and_truncations() {
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        let c = ClusterConfig::new(3, 3, 1, DelayProfile::OFF).unwrap();
        log.append(
            LogEntry {
                index: 1,
                term: 1,
                command: Command::TermStart {
                    floor: 1,
                    window: 5,
                },
            },
            now,
        );
        log.append(
            LogEntry {
                index: 2,
                term: 1,
                command: Command::Config { config: c },
            },
            now,
        );
        assert_eq!((log.floor(), log.window(), log.config()), (1, 5, (c, 2)));
        log.truncate_from(2);
        assert_eq!(log.config(), (config(), 0), "back to the start flags");
        assert_eq!(log.floor(), 1);
    }

    #[test]
    #[should_panic(expected = "truncating committed entries")]
    fn committed_entries_cannot_be_truncated() {
        let mut log = Log::new(Store::new(), config());
        log.append(write(1, 1, "a", "1", 1), Instant::now());
        log.settle(1);
        log.truncate_from(1);
    }

    #[test]
    fn compaction_keeps_floor_and_configuration_in_the_base() {
        let now = Instant::now();
        let mut log = Log::new(Store::new(), config());
        let start = |index, floor| LogEntry {
            index,
            term: 2,
            command: Command::TermStart { floor, window: 7 },
        };
        log.append(start(1, 1), now);
        let c = ClusterConfig::new(3, 3, 1, DelayProfile::OFF).unwrap();
        log.append(
            LogEntry {
                index: 2,
                term: 2,
                command: Command::Config { config: c },
            },
            now,
        );
        log.append(write(3, 2, "k", "v", 1), now);
        log.append(write(4, 2, "k", "w", 2), now);
        log.settle(3);
        // Only entry 4 (`k` = `w`) is above the commit point.
        assert_eq!(log.unsettled_bytes(), "k".len() + "w".len() + 64);
        log.compact(1, usize::MAX);
        assert_eq!(log.first_index(), 4, "only settled entries are compacted");
        assert_eq!((log.floor(), log.window(), log.config()), (1, 7, (c, 2)));
        assert_eq!(log.term_at(3), Some(2));
        assert_eq!(log.term_at(2), None);
        assert_eq!(log.term_of(2), Some(2), "compacted terms are remembered");
        assert_eq!(log.terms_through(4), vec![(1, 2)]);
        assert_eq!(log.first_of_term_at(4), 4);
        assert_eq!(log.entries_from(4, 10).len(), 1);
        assert!(
            log.entries_from(2, 10).is_empty(),
            "compacted entries are gone"
        );
        log.settle(4);
        log.compact(1000, 1);
        assert_eq!(
            (log.first_index(), log.bytes()),
            (5, 0),
            "compaction by bytes too"
        );
    }
}
