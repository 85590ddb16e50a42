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

use kv_shared::replication::Record;
use kv_shared::NodeId;
use std::collections::{BTreeMap, HashMap};

/// The hints a node holds, per peer. Owned by the leaderless core.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    per_peer: BTreeMap<NodeId, HashMap<String, Record>>,
    capacity: usize,
    dropped: u64,
    delivered: u64,
}

impl Hints {
    /// An empty store keeping at most `capacity` hints (distinct keys) per peer.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Keeps `record` for `peer`. Returns false when it was dropped because
    /// the peer's hints are at capacity.
    pub fn add(&mut self, peer: NodeId, record: Record) -> bool {
        let map = self.per_peer.entry(peer).or_default();
        if let Some(old) = map.get_mut(&record.key) {
            if record.version > old.version {
                *old = record;
            }
            return true;
        }
        if map.len() < self.capacity {
            map.insert(record.key.clone(), record);
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Removes and returns up to `max` hints for `peer`, for delivery.
    pub fn take(&mut self, peer: NodeId, max: usize) -> Vec<Record> {
        let Some(map) = self.per_peer.get_mut(&peer) else {
            return Vec::new();
        };
        let keys: Vec<String> = map.keys().take(max).cloned().collect();
        keys.into_iter().filter_map(|k| map.remove(&k)).collect()
    }

    /// Gives back hints whose delivery failed (a newer hint for the same key,
    /// added meanwhile, is kept instead).
    pub fn put_back(&mut self, peer: NodeId, records: Vec<Record>) {
        for r in records {
            let map = self.per_peer.entry(peer).or_default();
            match map.get(&r.key) {
                Some(newer) if newer.version >= r.version => {}
                _ => {
                    map.insert(r.key.clone(), r);
                }
            }
        }
    }

    /// Counts hints the peer acknowledged.
    pub fn mark_delivered(&mut self, count: usize) {
        self.delivered += count as u64;
    }

    /// Hints waiting for `peer`.
    pub fn pending(&self, peer: NodeId) -> u64 {
        self.per_peer.get(&peer).map_or(0, |m| m.len() as u64)
    }

    /// Hints waiting, all peers together.
    pub fn total_pending(&self) -> u64 {
        self.per_peer.values().map(|m| m.len() as u64).sum()
    }

    /// Peers with at least one hint waiting, ascending.
    pub fn peers_with_hints(&self) -> Vec<NodeId> {
        self.per_peer
            .iter()
            .filter(|(_, m)| !m.is_empty())
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

    #[test]
    fn only_the_newest_hint_of_a_key_is_kept() {
        let mut h = Hints::new(10);
        assert!(h.add(2, rec("k", 5)));
        assert!(h.add(2, rec("k", 3)));
        assert!(h.add(2, rec("k", 9)));
        assert_eq!(h.pending(2), 1);
        assert_eq!(h.take(2, 10), vec![rec("k", 9)]);
        assert_eq!(h.pending(2), 0);
    }

    #[test]
    fn a_full_peer_drops_new_keys_and_counts_them() {
        let mut h = Hints::new(2);
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
    fn failed_delivery_puts_hints_back_without_undoing_newer_ones() {
        let mut h = Hints::new(10);
        h.add(2, rec("a", 1));
        h.add(2, rec("b", 1));
        let batch = h.take(2, 10);
        h.add(2, rec("a", 7));
        h.put_back(2, batch);
        let mut back = h.take(2, 10);
        back.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(back, vec![rec("a", 7), rec("b", 1)]);
    }
}
