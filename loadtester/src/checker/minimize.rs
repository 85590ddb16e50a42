//! The smallest failing set of a key's operations: the evidence of a
//! linearizability violation.
//!
//! Only *closed* sets are tried: a read stays only while every write of the
//! value it returned stays. Restricting a linearization of the whole key to
//! a closed subset still gives a linearization (each kept read's latest
//! write before it is kept), so a closed subset that fails proves that the
//! key fails. Two passes:
//! 1. **Prefix.** Closed prefixes (in invocation order) fail monotonically —
//!    each contains the one before — so a binary search finds the shortest
//!    failing one: everything after the violation goes.
//! 2. **Delta debugging.** Remove chunks of half, a quarter, … one
//!    operation while what is left still fails; at single operations,
//!    repeat until no operation can go (the set is 1-minimal).
//!
//! A key decided by its zones skips the first pass: the two conflicting
//! zones name at most six operations that fail on their own (`zones.rs`),
//! and delta debugging starts from those.
//!
//! Each candidate is decided as the whole key was (by its zones, or by the
//! search for keys with repeated write values). A search that runs out of
//! budget counts as "does not fail", so the set returned always failed a
//! complete decision. Past the deadline the set found
//! so far is returned.

use super::register::{RegOp, ABSENT};
use super::wgl::{Answer, Budget};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The indices (into `ops`, ascending) of a small closed failing subset of
/// `ops`, which must fail as a whole.
pub(super) fn minimize(ops: &[RegOp], budget: &Budget, until: Instant) -> Vec<usize> {
    let m = Minimizer::new(ops, budget, until);
    let set = m.shortest_prefix();
    m.ddmin(set)
}

/// [`minimize`] from a closed failing subset already known (`set`,
/// ascending indices into `ops`): delta debugging only.
pub(super) fn reduce(
    ops: &[RegOp],
    set: Vec<usize>,
    budget: &Budget,
    until: Instant,
) -> Vec<usize> {
    Minimizer::new(ops, budget, until).ddmin(set)
}

struct Minimizer<'a> {
    ops: &'a [RegOp],
    budget: &'a Budget,
    until: Instant,
    /// The writes of each value.
    writers: HashMap<u32, Vec<usize>>,
}

impl<'a> Minimizer<'a> {
    fn new(ops: &'a [RegOp], budget: &'a Budget, until: Instant) -> Self {
        let mut writers: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, op) in ops.iter().enumerate().filter(|(_, op)| op.write) {
            writers.entry(op.value).or_default().push(i);
        }
        Minimizer {
            ops,
            budget,
            until,
            writers,
        }
    }

    fn late(&self) -> bool {
        Instant::now() >= self.until
    }

    /// Whether the operations at `set` (ascending) certainly fail.
    fn fails(&self, set: &[usize]) -> bool {
        let sub: Vec<RegOp> = set.iter().map(|&i| self.ops[i]).collect();
        super::decide(&sub, self.budget) == Answer::NotLinearizable
    }

    /// The first `k` operations and the writes their reads need.
    fn prefix(&self, k: usize) -> Vec<usize> {
        let mut set: HashSet<usize> = (0..k).collect();
        for op in &self.ops[..k] {
            if !op.write && op.value != ABSENT {
                set.extend(self.writers.get(&op.value).into_iter().flatten());
            }
        }
        let mut set: Vec<usize> = set.into_iter().collect();
        set.sort_unstable();
        set
    }

    /// The shortest closed prefix that fails (the whole key if time runs out).
    fn shortest_prefix(&self) -> Vec<usize> {
        let (mut lo, mut hi) = (1, self.ops.len());
        while lo < hi && !self.late() {
            let mid = (lo + hi) / 2;
            if self.fails(&self.prefix(mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.prefix(hi)
    }

    /// `set` without `set[from..to]` and without the reads of the values
    /// whose writes that removes.
    fn without(&self, set: &[usize], from: usize, to: usize) -> Vec<usize> {
        let gone: HashSet<u32> = set[from..to]
            .iter()
            .filter(|&&i| self.ops[i].write)
            .map(|&i| self.ops[i].value)
            .collect();
        set[..from]
            .iter()
            .chain(&set[to..])
            .copied()
            .filter(|&i| self.ops[i].write || !gone.contains(&self.ops[i].value))
            .collect()
    }

    /// Delta debugging down to a 1-minimal set (or the deadline).
    fn ddmin(&self, mut set: Vec<usize>) -> Vec<usize> {
        let mut chunk = (set.len() / 2).max(1);
        loop {
            let mut changed = false;
            let mut i = 0;
            while i < set.len() {
                if self.late() {
                    return set;
                }
                let to = (i + chunk).min(set.len());
                let candidate = self.without(&set, i, to);
                if self.fails(&candidate) {
                    set = candidate;
                    changed = true;
                } else {
                    i += chunk;
                }
            }
            if chunk > 1 {
                chunk = (chunk / 2).max(1);
            } else if !changed {
                return set;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn op(write: bool, value: u32, invoke: u64, ret: u64) -> RegOp {
        RegOp {
            write,
            value,
            invoke,
            ret: Some(ret),
        }
    }

    #[test]
    fn a_stale_read_among_many_reduces_to_two_writes_and_the_read() {
        // w1, w2 in sequence, then reads of 2, one stale read of 1 (index 5),
        // then more traffic.
        let mut ops = vec![
            op(true, 1, 0, 10),
            op(false, 1, 12, 14),
            op(true, 2, 20, 30),
            op(false, 2, 32, 34),
            op(false, 2, 36, 38),
            op(false, 1, 40, 42),
        ];
        for k in 0..20 {
            let t = 50 + 10 * k;
            ops.push(op(true, 3 + k as u32, t, t + 2));
            ops.push(op(false, 3 + k as u32, t + 4, t + 6));
        }
        let budget = Budget {
            max_steps: 100_000,
            deadline: None,
        };
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(minimize(&ops, &budget, until), vec![0, 2, 5]);
    }
}
