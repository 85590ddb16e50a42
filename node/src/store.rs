//! The node's in-memory store: key → (value, version).
//!
//! A [`DashMap`] shards the keys over independently locked maps, so that a
//! read of one key never waits behind a write of another key in another
//! shard, and a write holds only its shard's lock for the few instructions it
//! takes. Version assignment happens under that lock, which is what makes
//! concurrent writers of one key get versions 1, 2, 3… with no gap and no
//! duplicate.

use dashmap::{mapref::entry::Entry as MapEntry, DashMap};
use kv_shared::replication::Record;
use kv_shared::{Version, WriteStatus};
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
    pub fn write_next(&self, key: &str, value: String) -> (Version, WriteStatus) {
        // The shard's write lock is held for the whole read-modify-write.
        match self.map.entry(key.to_owned()) {
            MapEntry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                entry.version += 1;
                entry.value = value;
                (entry.version, WriteStatus::Updated)
            }
            MapEntry::Vacant(slot) => {
                slot.insert(Entry { value, version: 1 });
                (1, WriteStatus::Created)
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
        assert_eq!(s.write_next("k", "a".into()), (1, WriteStatus::Created));
        assert_eq!(s.write_next("k", "b".into()), (2, WriteStatus::Updated));
        assert_eq!(
            s.get("k"),
            Some(Entry {
                value: "b".into(),
                version: 2
            })
        );
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
        s.write_next("a", "1".into());
        s.write_next("a", "2".into());
        s.write_next("b", "x".into());
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
