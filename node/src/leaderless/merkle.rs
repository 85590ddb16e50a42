//! Merkle tree of a replica's contents, for anti-entropy.
//!
//! Keys are spread over `fanout^depth` leaf buckets by a hash of the key
//! (4096 buckets with the default 16-way, 3-level [`TreeShape`]). A leaf's
//! digest is the wrapping sum of `entry_hash(key, version)` over its keys, so
//! it depends on the set of (key, version) pairs only, not on iteration order,
//! and two replicas holding the same versions of the same keys compute the
//! same leaf. An inner node hashes its children in order; the root hashes
//! everything.
//!
//! Two replicas compare roots (one `u64`); when the roots differ they descend
//! only into differing children ([`Descent`]), and finally exchange the keys
//! and versions of the differing leaf buckets ([`reconcile`]): only the keys
//! whose versions differ travel with their values.
//!
//! The hash is FNV-1a over the key bytes followed by the SplitMix64 finaliser,
//! fixed here so that every node (any build, any platform) buckets a key the
//! same way; `std`'s `RandomState` would not.

use kv_shared::leaderless::{KeyVersion, TreeShape};
use kv_shared::Version;
use std::cmp::Ordering;

/// SplitMix64 finaliser: spreads the bits of `x` over the whole word.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The stable 64-bit hash of a key.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The digest contribution of one key at one version.
pub fn entry_hash(key_hash: u64, version: Version) -> u64 {
    mix(key_hash ^ mix(version ^ 0x9e37_79b9_7f4a_7c15))
}

/// The leaf bucket of a key hash: its position in `0..shape.leaves()`,
/// taken from the hash's high bits.
pub fn bucket_of(key_hash: u64, shape: TreeShape) -> u32 {
    ((u128::from(key_hash) * u128::from(shape.leaves())) >> 64) as u32
}

/// The leaf bucket of a key.
pub fn bucket_of_key(key: &str, shape: TreeShape) -> u32 {
    bucket_of(key_hash(key), shape)
}

/// Leaf digests being accumulated, one key at a time (for sources that can
/// only be visited, like the store).
#[derive(Debug, Clone)]
pub struct Leaves {
    shape: TreeShape,
    leaves: Vec<u64>,
    keys: u64,
}

impl Leaves {
    /// No key yet.
    pub fn new(shape: TreeShape) -> Self {
        Self {
            shape,
            leaves: vec![0; shape.leaves() as usize],
            keys: 0,
        }
    }

    /// Adds one key at one version.
    pub fn add(&mut self, key: &str, version: Version) {
        let h = key_hash(key);
        let leaf = &mut self.leaves[bucket_of(h, self.shape) as usize];
        *leaf = leaf.wrapping_add(entry_hash(h, version));
        self.keys += 1;
    }

    /// The complete tree.
    pub fn finish(self) -> MerkleTree {
        MerkleTree::from_leaves(self.shape, self.leaves, self.keys)
    }
}

/// A complete tree: every level from the root (level 0) to the leaves
/// (level `shape.depth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    shape: TreeShape,
    /// `levels[l][i]`: hash of node `i` at level `l`.
    levels: Vec<Vec<u64>>,
    keys: u64,
}

impl MerkleTree {
    /// Builds the tree of a set of (key, version) pairs, in any order.
    pub fn build<'a>(
        shape: TreeShape,
        entries: impl IntoIterator<Item = (&'a str, Version)>,
    ) -> Self {
        let mut leaves = Leaves::new(shape);
        for (key, version) in entries {
            leaves.add(key, version);
        }
        leaves.finish()
    }

    /// A tree over precomputed leaf digests (`shape.leaves()` of them).
    fn from_leaves(shape: TreeShape, leaves: Vec<u64>, keys: u64) -> Self {
        let mut levels = vec![leaves];
        for _ in 0..shape.depth {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(shape.fanout as usize)
                .map(|children| {
                    children
                        .iter()
                        .fold(0x6a09_e667_f3bc_c908u64, |h, c| mix(h ^ *c))
                })
                .collect();
            levels.push(above);
        }
        levels.reverse();
        Self {
            shape,
            levels,
            keys,
        }
    }

    /// The tree's shape.
    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// The root digest.
    pub fn root(&self) -> u64 {
        self.levels[0][0]
    }

    /// Number of keys the tree was built from.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The hashes of `nodes` at `level`, or `None` when a level or index is
    /// out of range (a malformed request).
    pub fn hashes(&self, level: u32, nodes: &[u32]) -> Option<Vec<u64>> {
        let row = self.levels.get(level as usize)?;
        nodes
            .iter()
            .map(|i| row.get(*i as usize).copied())
            .collect()
    }
}

/// What to do next in a descent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescentStep {
    /// Ask the peer for its hashes of `nodes` at `level`.
    Ask {
        /// The level.
        level: u32,
        /// Node indices at that level, ascending.
        nodes: Vec<u32>,
    },
    /// These leaf buckets differ: exchange their keys.
    Buckets(Vec<u32>),
    /// The trees are equal.
    InSync,
}

/// One side's walk down two trees, asking the peer only about children of
/// nodes that differ. A pure state machine: the caller carries each
/// [`DescentStep::Ask`] to the peer and feeds the answer to [`Descent::on_hashes`].
#[derive(Debug, Clone)]
pub struct Descent {
    level: u32,
    asked: Vec<u32>,
}

impl Descent {
    /// Starts by asking for the peer's root.
    pub fn start() -> (Self, DescentStep) {
        let d = Self {
            level: 0,
            asked: vec![0],
        };
        let step = DescentStep::Ask {
            level: 0,
            nodes: vec![0],
        };
        (d, step)
    }

    /// Takes the peer's hashes of the nodes last asked about.
    ///
    /// # Errors
    /// When the answer does not have one hash per node asked about.
    pub fn on_hashes(&mut self, local: &MerkleTree, remote: &[u64]) -> Result<DescentStep, String> {
        let mine = local
            .hashes(self.level, &self.asked)
            .ok_or("descent out of the local tree")?;
        if mine.len() != remote.len() {
            return Err(format!(
                "asked for {} hashes, got {}",
                mine.len(),
                remote.len()
            ));
        }
        let differing: Vec<u32> = self
            .asked
            .iter()
            .zip(mine.iter().zip(remote))
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| *i)
            .collect();
        if differing.is_empty() {
            return Ok(DescentStep::InSync);
        }
        let shape = local.shape();
        if self.level == shape.depth {
            return Ok(DescentStep::Buckets(differing));
        }
        let fanout = shape.fanout;
        self.level += 1;
        self.asked = differing
            .iter()
            .flat_map(|i| i * fanout..(i + 1) * fanout)
            .collect();
        Ok(DescentStep::Ask {
            level: self.level,
            nodes: self.asked.clone(),
        })
    }
}

/// The outcome of comparing the keys of some buckets on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconcile {
    /// Keys the peer holds newer (or only the peer holds): fetch them.
    pub pull: Vec<String>,
    /// Keys this side holds newer (or only this side holds): push them.
    pub push: Vec<String>,
}

/// Compares the (key, version) lists of the same buckets on both sides.
/// Inputs need not be sorted; outputs are sorted by key.
pub fn reconcile(mut local: Vec<KeyVersion>, mut remote: Vec<KeyVersion>) -> Reconcile {
    local.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    remote.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let mut out = Reconcile::default();
    let (mut l, mut r) = (local.into_iter().peekable(), remote.into_iter().peekable());
    loop {
        let order = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.key.cmp(&b.key),
        };
        match order {
            Ordering::Less => out.push.extend(l.next().map(|e| e.key)),
            Ordering::Greater => out.pull.extend(r.next().map(|e| e.key)),
            Ordering::Equal => {
                let (a, b) = (l.next(), r.next());
                if let (Some(a), Some(b)) = (a, b) {
                    match a.version.cmp(&b.version) {
                        Ordering::Greater => out.push.push(a.key),
                        Ordering::Less => out.pull.push(b.key),
                        Ordering::Equal => {}
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Replica = BTreeMap<String, Version>;

    fn tree(r: &Replica) -> MerkleTree {
        MerkleTree::build(TreeShape::DEFAULT, r.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    fn keys_in(r: &Replica, buckets: &[u32]) -> Vec<KeyVersion> {
        r.iter()
            .filter(|(k, _)| buckets.contains(&bucket_of_key(k, TreeShape::DEFAULT)))
            .map(|(k, v)| KeyVersion {
                key: k.clone(),
                version: *v,
            })
            .collect()
    }

    /// Runs a whole descent between two in-memory replicas; returns the
    /// reconcile plan and how many hashes crossed the wire.
    fn compare(a: &Replica, b: &Replica) -> (Reconcile, usize) {
        let (ta, tb) = (tree(a), tree(b));
        let (mut d, mut step) = Descent::start();
        let mut hashes = 0;
        loop {
            match step {
                DescentStep::Ask { level, nodes } => {
                    let remote = tb.hashes(level, &nodes).unwrap();
                    hashes += remote.len();
                    step = d.on_hashes(&ta, &remote).unwrap();
                }
                DescentStep::Buckets(b_ids) => {
                    return (reconcile(keys_in(a, &b_ids), keys_in(b, &b_ids)), hashes)
                }
                DescentStep::InSync => return (Reconcile::default(), hashes),
            }
        }
    }

    fn replica(n: u32) -> Replica {
        (0..n)
            .map(|i| (format!("key-{i}"), u64::from(i) + 1))
            .collect()
    }

    #[test]
    fn equal_replicas_compare_with_one_hash() {
        let a = replica(1000);
        let (plan, hashes) = compare(&a, &a.clone());
        assert_eq!((plan, hashes), (Reconcile::default(), 1));
    }

    #[test]
    fn the_diff_finds_exactly_the_differing_keys() {
        let a = replica(5000);
        let mut b = a.clone();
        b.insert("key-10".into(), 999_999); // b newer
        b.insert("only-on-b".into(), 1);
        b.remove("key-20"); // only on a
        b.insert("key-30".into(), 0); // a newer
        let (plan, hashes) = compare(&a, &b);
        assert_eq!(plan.pull, vec!["key-10".to_owned(), "only-on-b".to_owned()]);
        assert_eq!(plan.push, vec!["key-20".to_owned(), "key-30".to_owned()]);
        // 4 differing paths: root + 16 + at most 4*16 + 4*16 hashes, far from 4096.
        assert!(hashes <= 1 + 16 + 64 + 64, "{hashes}");
    }

    #[test]
    fn an_empty_replica_pulls_everything() {
        let a = replica(300);
        let (plan, _) = compare(&Replica::new(), &a);
        assert_eq!(plan.pull.len(), 300);
        assert!(plan.push.is_empty());
    }

    #[test]
    fn digests_do_not_depend_on_insertion_order() {
        let a = replica(500);
        let rev = MerkleTree::build(
            TreeShape::DEFAULT,
            a.iter().rev().map(|(k, v)| (k.as_str(), *v)),
        );
        assert_eq!(rev, tree(&a));
        assert_eq!(rev.keys(), 500);
    }

    #[test]
    fn buckets_cover_the_range_and_spread_keys() {
        let shape = TreeShape::DEFAULT;
        let mut counts = vec![0u32; shape.leaves() as usize];
        for i in 0..40_960 {
            counts[bucket_of_key(&format!("k{i}"), shape) as usize] += 1;
        }
        // 10 keys per bucket on average; no bucket empty or swamped.
        assert!(counts.iter().all(|c| (1..40).contains(c)), "{counts:?}");
        assert_eq!(bucket_of(u64::MAX, shape), shape.leaves() - 1);
    }

    #[test]
    fn malformed_descent_answers_are_errors() {
        let t = tree(&replica(10));
        let (mut d, _) = Descent::start();
        assert!(d.on_hashes(&t, &[1, 2]).is_err());
        assert!(t.hashes(9, &[0]).is_none());
        assert!(t.hashes(1, &[16]).is_none());
    }
}
