//! Linearizability of one register whose write values are unique, in
//! O(n log n): the zone characterisation of Gibbons & Korach ("Testing
//! shared memories", SIAM J. Comput. 1997) in the form of Golab, Li & Shah
//! ("Analyzing consistency properties for fun and profit", PODC 2011).
//!
//! When every read's value names the one write it read from, the writes
//! and reads group into *clusters*: a write and the reads of its value (the
//! initial absent state is a write at −∞, read by the reads of nothing).
//! For a cluster, let `f` be the earliest completion and `s` the latest
//! invocation among its operations. If `f < s` the cluster has a *forward
//! zone* `[f, s]`: its write takes effect at or before `f` and its last
//! read at or after `s`, so the register holds the cluster's value
//! throughout. Otherwise it has a *backward zone* `[s, f]`: every one of its
//! operations can take effect at one instant in there. The history is
//! linearizable exactly when
//! 1. no read completes before its write is invoked,
//! 2. no two forward zones overlap, and
//! 3. no backward zone lies inside a forward zone.
//!
//! The comparisons are the search's: operations take effect at an instant
//! of their closed interval and touching intervals are concurrent, so two
//! zones that only share an end point do not conflict (the instants can be
//! equal and the order between them is free). An indeterminate write
//! completes at +∞.
//!
//! This is the checker's decision procedure for the keys it applies to (the
//! load tester writes a unique value per write); [`super::wgl`] is the
//! general search, for keys with repeated write values, and the tests hold
//! the two to the same answers on random histories.

use super::register::{RegOp, ABSENT};
use std::collections::HashMap;

/// A time on the extended line: −∞ for the initial state, +∞ for the
/// completion of an indeterminate write.
type T = i128;

/// Whether `ops` is linearizable (a register starting absent): `Ok`, or
/// the indices (ascending) of a few operations that already fail on their
/// own — the operations that fix the two conflicting zones and the writes
/// of their clusters. `None` when two writes wrote the same value, where
/// zones do not apply.
pub(super) fn decide(ops: &[RegOp]) -> Option<Result<(), Vec<usize>>> {
    let clusters = match clusters(ops)? {
        Ok(clusters) => clusters,
        Err(evidence) => return Some(Err(evidence)),
    };
    let mut forward: Vec<&Cluster> = Vec::new();
    let mut backward: Vec<&Cluster> = Vec::new();
    for c in &clusters {
        if c.f < c.s {
            forward.push(c);
        } else {
            backward.push(c);
        }
    }
    forward.sort_unstable_by_key(|c| (c.f, c.s));
    // 2: sorted by start, a zone overlaps an earlier one exactly when it
    // starts before the furthest end so far.
    let mut furthest: Option<&Cluster> = None;
    for &c in &forward {
        if let Some(earlier) = furthest {
            if c.f < earlier.s {
                return Some(Err(evidence(&[earlier, c])));
            }
        }
        if furthest.is_none_or(|e| c.s > e.s) {
            furthest = Some(c);
        }
    }
    // 3: forward zones are now disjoint, so only the last one starting
    // before a backward zone can contain it.
    for c in backward {
        let before = forward.partition_point(|z| z.f < c.s);
        if before > 0 && forward[before - 1].s > c.f {
            return Some(Err(evidence(&[forward[before - 1], c])));
        }
    }
    Some(Ok(()))
}

/// A cluster: a write and the reads of its value.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    /// The earliest completion, and the operation that has it.
    f: T,
    f_op: Option<usize>,
    /// The latest invocation, and the operation that has it.
    s: T,
    s_op: Option<usize>,
    /// The write (`None`: the initial state).
    write: Option<usize>,
}

/// The operations that fix the zones of `clusters`, and their writes.
fn evidence(clusters: &[&Cluster]) -> Vec<usize> {
    let mut ops: Vec<usize> = clusters
        .iter()
        .flat_map(|c| [c.f_op, c.s_op, c.write])
        .flatten()
        .collect();
    ops.sort_unstable();
    ops.dedup();
    ops
}

/// The clusters of `ops` (the initial state's first): `None` when two
/// writes share a value; `Err` with the evidence when a read cannot be
/// explained whatever the order (it read a value no write wrote, or it
/// completed before its write was invoked).
fn clusters(ops: &[RegOp]) -> Option<Result<Vec<Cluster>, Vec<usize>>> {
    let complete = |op: &RegOp| op.ret.map_or(T::MAX, T::from);
    let mut by_value: HashMap<u32, usize> = HashMap::new();
    // The initial state, "written" at −∞.
    let mut clusters = vec![Cluster {
        f: T::MIN,
        f_op: None,
        s: T::MIN,
        s_op: None,
        write: None,
    }];
    for (i, op) in ops.iter().enumerate().filter(|(_, op)| op.write) {
        if op.value == ABSENT || by_value.insert(op.value, clusters.len()).is_some() {
            return None;
        }
        clusters.push(Cluster {
            f: complete(op),
            f_op: Some(i),
            s: T::from(op.invoke),
            s_op: Some(i),
            write: Some(i),
        });
    }
    for (i, op) in ops.iter().enumerate().filter(|(_, op)| !op.write) {
        let c = if op.value == ABSENT {
            0
        } else {
            match by_value.get(&op.value) {
                Some(&c) => c,
                None => return Some(Err(vec![i])),
            }
        };
        let cluster = &mut clusters[c];
        // 1: a read that ended before its write began.
        if let Some(w) = cluster.write {
            if complete(op) < T::from(ops[w].invoke) {
                let mut pair = vec![w, i];
                pair.sort_unstable();
                return Some(Err(pair));
            }
        }
        if complete(op) < cluster.f {
            cluster.f = complete(op);
            cluster.f_op = Some(i);
        }
        if T::from(op.invoke) > cluster.s {
            cluster.s = T::from(op.invoke);
            cluster.s_op = Some(i);
        }
    }
    Some(Ok(clusters))
}

#[cfg(test)]
mod tests {
    use super::super::wgl::{self, Answer, Budget};
    use super::*;

    fn op(write: bool, value: u32, invoke: u64, ret: Option<u64>) -> RegOp {
        RegOp {
            write,
            value,
            invoke,
            ret,
        }
    }

    #[test]
    fn the_textbook_cases_are_decided() {
        // A stale read after two sequential writes fails; a read concurrent
        // with the second write may see the first; a read of nothing after
        // an acknowledged write fails; touching intervals are concurrent.
        let stale = [
            op(true, 1, 0, Some(10)),
            op(true, 2, 20, Some(30)),
            op(false, 1, 40, Some(50)),
        ];
        assert_eq!(decide(&stale), Some(Err(vec![0, 1, 2])));
        let racing = [
            op(true, 1, 0, Some(10)),
            op(true, 2, 20, Some(60)),
            op(false, 1, 40, Some(50)),
        ];
        assert_eq!(decide(&racing), Some(Ok(())));
        assert_eq!(
            decide(&[op(true, 1, 0, Some(10)), op(false, ABSENT, 11, Some(12))]),
            Some(Err(vec![0, 1]))
        );
        assert_eq!(
            decide(&[op(true, 1, 0, Some(10)), op(false, ABSENT, 10, Some(12))]),
            Some(Ok(()))
        );
        // A read that ends before its write is sent; an indeterminate write
        // read much later.
        assert_eq!(
            decide(&[op(false, 1, 0, Some(5)), op(true, 1, 6, None)]),
            Some(Err(vec![0, 1]))
        );
        assert_eq!(
            decide(&[op(true, 1, 6, None), op(false, 1, 900, Some(901))]),
            Some(Ok(()))
        );
        // Repeated write values: not for zones.
        assert_eq!(
            decide(&[op(true, 1, 0, Some(1)), op(true, 1, 2, Some(3))]),
            None
        );
    }

    /// SplitMix64.
    fn next(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random history of up to 9 operations on few distinct times (many
    /// ties and touching intervals), some indeterminate writes, reads of
    /// any written value or of nothing.
    fn random_history(seed: &mut u64) -> Vec<RegOp> {
        let n = 1 + next(seed) % 9;
        let writes = 1 + next(seed) % n;
        let mut ops = Vec::new();
        for i in 0..n {
            let invoke = next(seed) % 12;
            let ret = invoke + next(seed) % 6;
            if i < writes {
                let ret = (next(seed) % 6 != 0).then_some(ret);
                ops.push(op(true, i as u32 + 1, invoke, ret));
            } else {
                let value = (next(seed) % (writes + 1)) as u32;
                ops.push(op(false, value, invoke, Some(ret)));
            }
        }
        ops
    }

    #[test]
    fn zones_and_the_search_agree_on_random_histories() {
        // 30 000 random small histories: the O(n log n) characterisation
        // and the exhaustive search give the same answer every time, and
        // both answers occur often.
        let budget = Budget {
            max_steps: u64::MAX,
            deadline: None,
        };
        let mut seed = 17;
        let (mut yes, mut no) = (0, 0);
        for _ in 0..30_000 {
            let ops = random_history(&mut seed);
            let search = wgl::search(&ops, &budget);
            let zones = decide(&ops).expect("unique values");
            if let Err(evidence) = &zones {
                // The evidence fails on its own.
                let sub: Vec<RegOp> = evidence.iter().map(|&i| ops[i]).collect();
                assert!(matches!(decide(&sub), Some(Err(_))), "{ops:?} {evidence:?}");
                assert_eq!(wgl::search(&sub, &budget), Answer::NotLinearizable);
            }
            let zones = zones.is_ok();
            assert_eq!(
                zones,
                search == Answer::Linearizable,
                "zones {zones}, search {search:?}: {ops:?}"
            );
            if zones {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 5_000 && no > 5_000, "{yes} linearizable, {no} not");
    }
}
