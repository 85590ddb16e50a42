//! The node's in-memory store: key → (value, version).
//!
//! A [`DashMap`] shards the keys over independently locked maps, so that a
//! read of one key never waits behind a write of another key in another
//! shard, and a write holds only its shard's lock for the few instructions it
//! takes. Version assignment happens under that lock, which is what makes
//! concurrent writers of one key get versions 1, 2, 3… with no gap and no
//! duplicate.

use dashmap::{mapref::entry::Entry as MapEntry, DashMap};
use kv_shared::limits::MAX_VERSION;
use kv_shared::replication::Record;
use kv_shared::{Version, WriteStatus};

/// A write refused because the key's version is at the limit; carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionExhausted(pub Version);

impl std::fmt::Display for VersionExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the key is at version {}, the highest this store hands out",
            self.0
        )
    }
}
use std::sync::Arc;

/// One stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored value.
    pub value: String,
    /// Its version; higher versions are newer.
    pub version: Version,
}

/// A cheap, cloneable handle to the node's map.
#[derive(Debug, Clone, Default)]
pub struct Store {
    map: Arc<DashMap<String, Entry>>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` under the key's next version (1 for a new key) and
    /// returns that version and whether the key was created.
    ///
    /// # Errors
    /// [`VersionExhausted`] when the key is at [`MAX_VERSION`] (only reachable
    /// through an extreme replicated version): nothing changes.
    pub fn write_next(
        &self,
        key: &str,
        value: String,
    ) -> Result<(Version, WriteStatus), VersionExhausted> {
        // The shard's write lock is held for the whole read-modify-write.
        match self.map.entry(key.to_owned()) {
            MapEntry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                let next = entry
                    .version
                    .checked_add(1)
                    .filter(|&v| v <= MAX_VERSION)
                    .ok_or(VersionExhausted(entry.version))?;
                entry.version = next;
                entry.value = value;
                Ok((next, WriteStatus::Updated))
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Entry { value, version: 1 });
                Ok((1, WriteStatus::Created))
            }
        }
    }

    /// Stores `value` at `version` unless the key already holds that version
    /// or a newer one. Returns whether the store changed.
    pub fn apply(&self, key: &str, value: String, version: Version) -> bool {
        match self.map.entry(key.to_owned()) {
            MapEntry::Occupied(mut slot) if slot.get().version < version => {
                slot.insert(Entry { value, version });
                true
            }
            MapEntry::Occupied(_) => false,
            MapEntry::Vacant(slot) => {
                slot.insert(Entry { value, version });
                true
            }
        }
    }

    /// Stores `entry` under `key` whatever the key held, and returns what it
    /// held before. The replicated log of leader-follower mode applies its
    /// entries this way and keeps the previous entry to undo them.
    pub fn put(&self, key: &str, entry: Entry) -> Option<Entry> {
        self.map.insert(key.to_owned(), entry)
    }

    /// Puts back what [`Store::put`] returned: `previous`, or no key at all.
    pub fn restore(&self, key: &str, previous: Option<Entry>) {
        match previous {
            Some(e) => {
                self.map.insert(key.to_owned(), e);
            }
            None => {
                self.map.remove(key);
            }
        }
    }

    /// Replaces the whole content with `records` (installing a snapshot).
    pub fn replace_all(&self, records: Vec<Record>) {
        self.map.clear();
        for r in records {
            self.map.insert(
                r.key,
                Entry {
                    value: r.value,
                    version: r.version,
                },
            );
        }
    }

    /// The key's current value and version, if any.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.map.get(key).map(|e| e.value().clone())
    }

    /// Every key with its value and version, in no particular order.
    ///
    /// Not a point-in-time copy: writes that run concurrently may or may not
    /// be included. Callers that need a consistent cut (the leader's snapshot)
    /// stop writes while they iterate.
    pub fn records(&self) -> Vec<Record> {
        self.map
            .iter()
            .map(|e| Record {
                key: e.key().clone(),
                value: e.value().value.clone(),
                version: e.value().version,
            })
            .collect()
    }

    /// Calls `f` with every key and its entry, in no particular order,
    /// without copying values (anti-entropy digests iterate this way).
    ///
    /// Each shard's read lock is held while its keys are visited: `f` must be
    /// quick and must not call back into the store. Not a point-in-time copy.
    pub fn for_each(&self, mut f: impl FnMut(&str, &Entry)) {
        for e in self.map.iter() {
            f(e.key(), e.value());
        }
    }

    /// Number of keys stored.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_grow_by_one() {
        let s = Store::new();
        assert_eq!(s.write_next("k", "a".into()), Ok((1, WriteStatus::Created)));
        assert_eq!(s.write_next("k", "b".into()), Ok((2, WriteStatus::Updated)));
        assert_eq!(
            s.get("k"),
            Some(Entry {
                value: "b".into(),
                version: 2
            })
        );
    }

    #[test]
    fn a_version_at_the_limit_is_refused_not_wrapped() {
        let s = Store::new();
        s.apply("k", "top".into(), MAX_VERSION);
        assert_eq!(
            s.write_next("k", "x".into()),
            Err(VersionExhausted(MAX_VERSION))
        );
        assert_eq!(s.get("k").unwrap().value, "top", "nothing changed");
    }

    #[test]
    fn apply_never_lets_an_older_version_win() {
        let s = Store::new();
        assert!(s.apply("k", "new".into(), 5));
        assert!(!s.apply("k", "old".into(), 3));
        assert!(!s.apply("k", "same".into(), 5));
        assert_eq!(s.get("k").unwrap().value, "new");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn put_returns_what_restore_puts_back() {
        let s = Store::new();
        let e = |v: &str, version| Entry {
            value: v.into(),
            version,
        };
        assert_eq!(s.put("k", e("a", 1)), None);
        let prev = s.put("k", e("b", 9));
        assert_eq!(prev, Some(e("a", 1)));
        s.restore("k", prev);
        assert_eq!(s.get("k"), Some(e("a", 1)));
        s.restore("k", None);
        assert!(s.is_empty());
        s.replace_all(vec![Record {
            key: "x".into(),
            value: "y".into(),
            version: 3,
        }]);
        assert_eq!((s.len(), s.get("x")), (1, Some(e("y", 3))));
    }

    #[test]
    fn records_list_every_key_with_its_version() {
        let s = Store::new();
        s.write_next("a", "1".into()).unwrap();
        s.write_next("a", "2".into()).unwrap();
        s.write_next("b", "x".into()).unwrap();
        let mut r = s.records();
        r.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            r.iter()
                .map(|r| (r.key.as_str(), r.value.as_str(), r.version))
                .collect::<Vec<_>>(),
            vec![("a", "2", 2), ("b", "x", 1)]
        );
    }
}

/// The merge rule of replicated records ([`Store::apply`]), for any order
/// of delivery with duplicates.
#[cfg(test)]
mod merge_rule {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Records of three keys; a (key, version) pair always names one value,
    /// as in every replication mode.
    fn records() -> impl Strategy<Value = Vec<(u8, Version)>> {
        proptest::collection::vec(
            (
                0u8..3,
                prop_oneof![0..6u64, Just(MAX_VERSION), Just(u64::MAX)],
            ),
            0..40,
        )
    }

    fn value(key: u8, version: Version) -> String {
        format!("{key}@{version}")
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_order_and_any_duplicates_converge_on_the_highest_version(
            recs in records(),
            order in any::<u64>(),
            dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let a = Store::new();
            for &(k, v) in &recs {
                a.apply(&k.to_string(), value(k, v), v);
            }
            // Another replica: the same records shuffled, some twice.
            let mut shuffled: Vec<(u8, Version)> = recs.clone();
            if !recs.is_empty() {
                shuffled.extend(dups.iter().map(|i| recs[i.index(recs.len())]));
            }
            let mut seed = order;
            for i in (1..shuffled.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let b = Store::new();
            let mut changes = 0;
            for &(k, v) in &shuffled {
                changes += usize::from(b.apply(&k.to_string(), value(k, v), v));
            }
            let mut want: BTreeMap<String, Version> = BTreeMap::new();
            for &(k, v) in &recs {
                let e = want.entry(k.to_string()).or_insert(v);
                *e = (*e).max(v);
            }
            for (k, v) in &want {
                let (ea, eb) = (a.get(k), b.get(k));
                prop_assert_eq!(ea.as_ref().map(|e| e.version), Some(*v));
                prop_assert_eq!(eb.as_ref().map(|e| (e.version, e.value.clone())), ea.map(|e| (e.version, e.value)));
            }
            prop_assert_eq!(b.len(), want.len() as u64);
            // A record changes the store only when it is newer: at most one
            // change per distinct (key, version).
            let distinct: std::collections::BTreeSet<_> = recs.iter().collect();
            prop_assert!(changes <= distinct.len());
        }

        #[test]
        fn the_next_version_never_wraps(start in prop_oneof![Just(MAX_VERSION - 1), Just(MAX_VERSION), Just(u64::MAX), 0..5u64]) {
            let s = Store::new();
            s.apply("k", "old".into(), start);
            match s.write_next("k", "new".into()) {
                Ok((v, _)) => {
                    prop_assert!(v > start && v <= MAX_VERSION);
                    prop_assert_eq!(s.get("k").map(|e| e.version), Some(v));
                }
                Err(VersionExhausted(at)) => {
                    prop_assert!(start >= MAX_VERSION);
                    prop_assert_eq!(at, start);
                    prop_assert_eq!(s.get("k").map(|e| e.value), Some("old".to_owned()));
                }
            }
        }
    }
}
