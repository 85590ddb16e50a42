//! Hinted handoff: writes a coordinator holds for a replica it could not reach.
//!
//! One bounded map per peer, key → the newest record of that key the peer
//! has missed. Because replicas keep the highest version of a key, only the
//! newest missed write of a key matters: a second hint for the same key
//! replaces the first (or is ignored when older), so a peer that is down
//! while one key is written a million times costs one hint.
//!
//! When a peer's map is full, hints for new keys are dropped and counted;
//! anti-entropy repairs those keys once the peer is back. Hints live in
//! memory: a coordinator that restarts loses the hints it held (anti-entropy
//! covers that too).

use kv_shared::limits::{record_bytes, MAX_BATCH_BYTES};
use kv_shared::replication::Record;
use kv_shared::{NodeId, Version};
use std::collections::{BTreeMap, HashMap};

/// The hints of one peer and their size.
#[derive(Debug, Clone, Default)]
struct PeerHints {
    map: HashMap<String, Record>,
    bytes: usize,
}

/// The hints a node holds, per peer. Owned by the leaderless core.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    per_peer: BTreeMap<NodeId, PeerHints>,
    capacity: usize,
    capacity_bytes: usize,
    dropped: u64,
    delivered: u64,
}

fn size(r: &Record) -> usize {
    record_bytes(&r.key, &r.value)
}

impl Hints {
    /// An empty store keeping at most `capacity` hints (distinct keys) and
    /// `capacity_bytes` bytes of them per peer.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Self {
        Self {
            capacity,
            capacity_bytes,
            ..Self::default()
        }
    }

    /// Keeps `record` for `peer`. Returns false when it was dropped because
    /// the peer's hints are at capacity (in count or in bytes).
    pub fn add(&mut self, peer: NodeId, record: Record) -> bool {
        let (capacity, capacity_bytes) = (self.capacity, self.capacity_bytes);
        let p = self.per_peer.entry(peer).or_default();
        let new = size(&record);
        if let Some(old) = p.map.get_mut(&record.key) {
            if record.version <= old.version {
                return true;
            }
            let bytes = p.bytes - size(old) + new;
            if bytes > capacity_bytes {
                self.dropped += 1;
                return false;
            }
            p.bytes = bytes;
            *old = record;
            return true;
        }
        if p.map.len() < capacity && p.bytes + new <= capacity_bytes {
            p.bytes += new;
            p.map.insert(record.key.clone(), record);
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Copies of up to `max` hints for `peer` (and at most about
    /// [`MAX_BATCH_BYTES`], at least one), to deliver. They stay in the store
    /// (and in the pending count) until [`Hints::remove_delivered`].
    pub fn batch(&self, peer: NodeId, max: usize) -> Vec<Record> {
        let mut bytes = 0usize;
        self.per_peer
            .get(&peer)
            .map(|p| {
                p.map
                    .values()
                    .take(max)
                    .take_while(|r| {
                        let first = bytes == 0;
                        bytes += size(r);
                        first || bytes <= MAX_BATCH_BYTES as usize
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bytes of hints held for `peer`.
    pub fn bytes(&self, peer: NodeId) -> usize {
        self.per_peer.get(&peer).map_or(0, |p| p.bytes)
    }

    /// Forgets the hints the peer acknowledged: each `(key, version)` whose
    /// hint is still that version or older. A newer hint for the same key,
    /// added during the delivery, stays. Returns how many were removed.
    pub fn remove_delivered(&mut self, peer: NodeId, delivered: &[(String, Version)]) -> usize {
        let Some(p) = self.per_peer.get_mut(&peer) else {
            return 0;
        };
        let mut removed = 0;
        for (key, version) in delivered {
            if p.map.get(key).is_some_and(|r| r.version <= *version) {
                if let Some(r) = p.map.remove(key) {
                    p.bytes -= size(&r);
                }
                removed += 1;
            }
        }
        self.delivered += removed as u64;
        removed
    }

    /// Hints waiting for `peer`.
    pub fn pending(&self, peer: NodeId) -> u64 {
        self.per_peer.get(&peer).map_or(0, |p| p.map.len() as u64)
    }

    /// Hints waiting, all peers together.
    pub fn total_pending(&self) -> u64 {
        self.per_peer.values().map(|p| p.map.len() as u64).sum()
    }

    /// Peers with at least one hint waiting, ascending.
    pub fn peers_with_hints(&self) -> Vec<NodeId> {
        self.per_peer
            .iter()
            .filter(|(_, p)| !p.map.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Hints dropped at capacity since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hints delivered since start.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, version: u64) -> Record {
        Record {
            key: key.into(),
            value: format!("{key}@{version}"),
            version,
        }
    }

    fn delivered(records: &[Record]) -> Vec<(String, Version)> {
        records.iter().map(|r| (r.key.clone(), r.version)).collect()
    }

    #[test]
    fn only_the_newest_hint_of_a_key_is_kept() {
        let mut h = Hints::new(10, usize::MAX);
        assert!(h.add(2, rec("k", 5)));
        assert!(h.add(2, rec("k", 3)));
        assert!(h.add(2, rec("k", 9)));
        assert_eq!(h.pending(2), 1);
        let batch = h.batch(2, 10);
        assert_eq!(batch, vec![rec("k", 9)]);
        assert_eq!(h.pending(2), 1, "in flight still counts as pending");
        assert_eq!(h.remove_delivered(2, &delivered(&batch)), 1);
        assert_eq!((h.pending(2), h.delivered()), (0, 1));
    }

    #[test]
    fn a_full_peer_drops_new_keys_and_counts_them() {
        let mut h = Hints::new(2, usize::MAX);
        assert!(h.add(3, rec("a", 1)) && h.add(3, rec("b", 1)));
        assert!(!h.add(3, rec("c", 1)));
        assert!(
            h.add(3, rec("a", 2)),
            "a newer hint of a kept key still fits"
        );
        assert!(h.add(4, rec("c", 1)), "capacity is per peer");
        assert_eq!((h.dropped(), h.total_pending()), (1, 3));
        assert_eq!(h.peers_with_hints(), vec![3, 4]);
    }

    #[test]
    fn hints_are_bounded_in_bytes_and_delivered_in_bounded_batches() {
        let big = |key: &str| Record {
            key: key.into(),
            value: "x".repeat(3 * 1024 * 1024),
            version: 1,
        };
        let mut h = Hints::new(100, 8 * 1024 * 1024);
        assert!(h.add(2, big("a")) && h.add(2, big("b")));
        assert!(!h.add(2, big("c")), "a third 3 MiB hint would pass 8 MiB");
        assert_eq!(h.dropped(), 1);
        assert!(h.bytes(2) <= 8 * 1024 * 1024);
        assert_eq!(h.batch(2, 100).len(), 1, "one 3 MiB hint per 4 MiB batch");
        let delivered: Vec<(String, Version)> =
            h.batch(2, 100).iter().map(|r| (r.key.clone(), 1)).collect();
        h.remove_delivered(2, &delivered);
        assert_eq!((h.pending(2), h.bytes(2)), (1, size(&big("a"))));
    }

    #[test]
    fn a_hint_superseded_during_delivery_stays() {
        let mut h = Hints::new(10, usize::MAX);
        h.add(2, rec("a", 1));
        h.add(2, rec("b", 1));
        let batch = h.batch(2, 10);
        h.add(2, rec("a", 7));
        assert_eq!(h.remove_delivered(2, &delivered(&batch)), 1);
        assert_eq!(h.batch(2, 10), vec![rec("a", 7)]);
    }
}
