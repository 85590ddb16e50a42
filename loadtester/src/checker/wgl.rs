//! The Wing–Gong linearizability search with Lowe's memoization, for one
//! register.
//!
//! Every operation is two entries, its call and its return, in a doubly
//! linked list sorted by time (calls before returns at equal times, so that
//! touching intervals are concurrent). The search walks the list from the
//! head:
//! - at a **call** whose operation is legal in the current state (a write
//!   always is; a read only when it returns the current value), it
//!   *linearizes* it — unless (linearized set ∪ {op}, new state) was
//!   explored before — pushes it, unlinks its call and return, and starts
//!   again from the head;
//! - at a **return**, the operation ending there should have been placed
//!   already: the last choice was wrong, so it pops it, links it back and
//!   tries the entry after its call. With nothing to pop, no order exists.
//!
//! The search succeeds once every operation that completed (`ret` is
//! `Some`) is placed: the indeterminate ones left may take effect after
//! everything, or never. Their returns are at +∞, so they never stop the
//! walk before that.
//!
//! The memo keys on a Zobrist hash (one random word per operation, XORed in
//! and out as the bitset changes) mixed with the state, so a lookup costs
//! one hash-map probe and, on a hit, one bitset comparison.
//!
//! Operations are numbered in invocation order, so the linearized set is
//! nearly always a prefix plus a few operations of the concurrency window.
//! The memo therefore stores a set as the number of leading all-ones words
//! and the words after them up to the last non-zero one: a few words per
//! configuration even for a key with 100 000 operations, where the whole
//! bitset would be 1 563 words (and the memo of a linear search 1.25 GB).

use super::register::RegOp;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// Most bytes the memo may hold (its bitset words, its nodes and its hash
/// index, estimated) before the search gives up as unknown: 128 MiB.
pub(super) const MAX_MEMO_BYTES: usize = 128 << 20;
/// Steps between two looks at the clock.
const CLOCK_EVERY: u64 = 1024;
/// No link.
const NIL: u32 = u32::MAX;
/// The list's head sentinel.
const HEAD: u32 = 0;

/// How much one search may cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// Most entries visited.
    pub max_steps: u64,
    /// Give up at this instant.
    pub deadline: Option<Instant>,
}

/// The answer of one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// An order exists.
    Linearizable,
    /// None exists.
    NotLinearizable,
    /// The budget ran out first.
    Unknown,
}

/// Searches for a linearization of `ops` (a register starting absent).
pub(super) fn search(ops: &[RegOp], budget: &Budget) -> Answer {
    Search::new(ops).run(budget)
}

/// The entry list and the search state.
struct Search<'a> {
    ops: &'a [RegOp],
    /// Per node (0 = head, then the entries in time order): next and previous.
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per node: the operation's index, and for a call its return's node.
    op_of: Vec<u32>,
    ret_of: Vec<u32>,
    /// Operations linearized, and its Zobrist hash.
    linearized: Bits,
    hash: u64,
    /// A random word per operation.
    zobrist: Vec<u64>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [RegOp]) -> Self {
        // (time, 0 = call / 1 = return, op): calls first at equal times.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, 0, i as u32));
            events.push((op.ret.unwrap_or(u64::MAX), 1, i as u32));
        }
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut op_of = vec![NIL; nodes];
        let mut ret_of = vec![NIL; nodes];
        let mut call_node = vec![NIL; ops.len()];
        for (n, &(_, kind, op)) in events.iter().enumerate() {
            let node = n as u32 + 1;
            op_of[node as usize] = op;
            if kind == 0 {
                call_node[op as usize] = node;
            } else {
                ret_of[call_node[op as usize] as usize] = node;
            }
        }
        let next = (0..nodes as u32)
            .map(|n| if n + 1 < nodes as u32 { n + 1 } else { NIL })
            .collect();
        let prev = (0..nodes as u32)
            .map(|n| if n == 0 { NIL } else { n - 1 })
            .collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let zobrist = (0..ops.len()).map(|_| splitmix64(&mut seed)).collect();
        Search {
            ops,
            next,
            prev,
            op_of,
            ret_of,
            linearized: Bits::new(ops.len()),
            hash: 0,
            zobrist,
        }
    }

    fn run(mut self, budget: &Budget) -> Answer {
        let mut remaining = self.ops.iter().filter(|op| op.ret.is_some()).count();
        let mut memo = Memo::default();
        // The calls linearized, with the state before each.
        let mut stack: Vec<(u32, u32)> = Vec::new();
        let mut state = super::register::ABSENT;
        let mut entry = self.next[HEAD as usize];
        let mut steps = 0u64;
        while remaining > 0 {
            steps += 1;
            if steps > budget.max_steps || memo.bytes() > MAX_MEMO_BYTES {
                return Answer::Unknown;
            }
            if steps % CLOCK_EVERY == 0 && budget.deadline.is_some_and(|d| Instant::now() >= d) {
                return Answer::Unknown;
            }
            if entry == NIL {
                // Only returns at +∞ stop short of the end, and they come
                // after every finite one: unreachable while `remaining > 0`.
                return Answer::NotLinearizable;
            }
            let op_index = self.op_of[entry as usize] as usize;
            if self.ret_of[entry as usize] != NIL {
                let op = self.ops[op_index];
                let legal = op.write || op.value == state;
                let after = if op.write { op.value } else { state };
                if legal {
                    self.toggle(op_index);
                    if memo.insert(self.hash ^ mix(after), after, &self.linearized) {
                        stack.push((entry, state));
                        state = after;
                        self.lift(entry);
                        if op.ret.is_some() {
                            remaining -= 1;
                        }
                        entry = self.next[HEAD as usize];
                        continue;
                    }
                    self.toggle(op_index);
                }
                entry = self.next[entry as usize];
            } else {
                let Some((call, before)) = stack.pop() else {
                    return Answer::NotLinearizable;
                };
                let op_index = self.op_of[call as usize] as usize;
                self.toggle(op_index);
                state = before;
                self.unlift(call);
                if self.ops[op_index].ret.is_some() {
                    remaining += 1;
                }
                entry = self.next[call as usize];
            }
        }
        Answer::Linearizable
    }

    /// Flips operation `i` in the linearized set.
    fn toggle(&mut self, i: usize) {
        self.linearized.toggle(i);
        self.hash ^= self.zobrist[i];
    }

    /// Unlinks a call and its return.
    fn lift(&mut self, call: u32) {
        let ret = self.ret_of[call as usize];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Links back what [`Search::lift`] unlinked (in the reverse order).
    fn unlift(&mut self, call: u32) {
        let ret = self.ret_of[call as usize];
        self.relink(ret);
        self.relink(call);
    }

    fn unlink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = x;
        if x != NIL {
            self.prev[x as usize] = p;
        }
    }

    fn relink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = n;
        if x != NIL {
            self.prev[x as usize] = n;
        }
    }
}

/// A set of operations as a bitset that knows its trimmed form: `low`
/// leading words that are all ones, then `words[low..high]`, then zeros.
struct Bits {
    words: Vec<u64>,
    /// Leading words that are all ones.
    low: usize,
    /// One past the last non-zero word (0: empty).
    high: usize,
}

impl Bits {
    fn new(len: usize) -> Self {
        Bits {
            words: vec![0; len.div_ceil(64)],
            low: 0,
            high: 0,
        }
    }

    /// Flips bit `i`, keeping `low` and `high` exact.
    fn toggle(&mut self, i: usize) {
        let k = i / 64;
        self.words[k] ^= 1 << (i % 64);
        let w = self.words[k];
        if w == u64::MAX && k == self.low {
            while self.low < self.words.len() && self.words[self.low] == u64::MAX {
                self.low += 1;
            }
        } else if w != u64::MAX && k < self.low {
            self.low = k;
        }
        if w != 0 && k >= self.high {
            self.high = k + 1;
        } else if w == 0 && k + 1 == self.high {
            while self.high > 0 && self.words[self.high - 1] == 0 {
                self.high -= 1;
            }
        }
    }

    /// The words between the leading ones and the trailing zeros.
    fn middle(&self) -> &[u64] {
        &self.words[self.low..self.high.max(self.low)]
    }
}

/// The configurations explored: (trimmed bitset, state), chained by hash.
#[derive(Default)]
struct Memo {
    /// Hash → index of the latest node with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// Per node: the configuration, where its middle words are in `words`,
    /// and the previous node with the same hash.
    nodes: Vec<MemoNode>,
    /// The middle words of every node, one after the other.
    words: Vec<u64>,
}

/// One explored configuration.
struct MemoNode {
    state: u32,
    older: u32,
    /// [`Bits::low`] of its set.
    low: u32,
    /// Its middle words: `words[start..start + len]`.
    start: u32,
    len: u32,
}

impl Memo {
    /// Bytes held, about: the words, the nodes and a hash-map slot per node.
    fn bytes(&self) -> usize {
        self.words.len() * 8 + self.nodes.len() * (std::mem::size_of::<MemoNode>() + 16)
    }

    /// Adds (bits, state); false when it was there already.
    fn insert(&mut self, hash: u64, state: u32, bits: &Bits) -> bool {
        let middle = bits.middle();
        let head = self.heads.get(&hash).copied().unwrap_or(NIL);
        let mut n = head;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let (at, len) = (node.start as usize, node.len as usize);
            if node.state == state
                && node.low as usize == bits.low
                && self.words[at..at + len] == *middle
            {
                return false;
            }
            n = node.older;
        }
        self.heads.insert(hash, self.nodes.len() as u32);
        self.nodes.push(MemoNode {
            state,
            older: head,
            low: bits.low as u32,
            start: self.words.len() as u32,
            len: middle.len() as u32,
        });
        self.words.extend_from_slice(middle);
        true
    }
}

/// A hasher for keys that are already random words.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The state's share of the memo hash.
fn mix(state: u32) -> u64 {
    let mut s = u64::from(state) ^ 0xD6E8_FEB8_6659_FD93;
    splitmix64(&mut s)
}

/// SplitMix64: a fixed sequence of well-mixed words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(value: u32, invoke: u64, ret: Option<u64>) -> RegOp {
        RegOp {
            write: true,
            value,
            invoke,
            ret,
        }
    }

    fn r(value: u32, invoke: u64, ret: u64) -> RegOp {
        RegOp {
            write: false,
            value,
            invoke,
            ret: Some(ret),
        }
    }

    const ENOUGH: Budget = Budget {
        max_steps: 1_000_000,
        deadline: None,
    };

    #[test]
    fn an_empty_history_and_a_lone_read_of_nothing_are_linearizable() {
        assert_eq!(search(&[], &ENOUGH), Answer::Linearizable);
        assert_eq!(search(&[r(0, 0, 1)], &ENOUGH), Answer::Linearizable);
        assert_eq!(search(&[r(1, 0, 1)], &ENOUGH), Answer::NotLinearizable);
    }

    #[test]
    fn a_read_may_see_a_concurrent_write_or_the_value_before_it() {
        // w1 then, overlapping w2, two reads: one sees 1, a later one 2.
        let ops = [
            w(1, 0, Some(10)),
            w(2, 20, Some(40)),
            r(1, 25, 30),
            r(2, 35, 50),
        ];
        assert_eq!(search(&ops, &ENOUGH), Answer::Linearizable);
        // Reading 2 and then 1 is not: 2 overwrote 1 and nothing wrote 1 again.
        let ops = [
            w(1, 0, Some(10)),
            w(2, 20, Some(40)),
            r(2, 25, 30),
            r(1, 35, 50),
        ];
        assert_eq!(search(&ops, &ENOUGH), Answer::NotLinearizable);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read starts the µs the write ends: it may precede it.
        let ops = [w(1, 0, Some(10)), r(0, 10, 12)];
        assert_eq!(search(&ops, &ENOUGH), Answer::Linearizable);
        let ops = [w(1, 0, Some(10)), r(0, 11, 12)];
        assert_eq!(search(&ops, &ENOUGH), Answer::NotLinearizable);
    }

    #[test]
    fn an_indeterminate_write_takes_effect_late_or_never() {
        // Seen long after it gave up.
        let ops = [w(1, 0, None), r(0, 5, 6), r(1, 100, 101)];
        assert_eq!(search(&ops, &ENOUGH), Answer::Linearizable);
        // Never seen at all.
        let ops = [w(1, 0, None), r(0, 100, 101)];
        assert_eq!(search(&ops, &ENOUGH), Answer::Linearizable);
    }

    #[test]
    fn many_concurrent_writes_before_a_read_exhaust_the_budget_not_the_machine() {
        // n writes at once, then a read of the first: only orders that end
        // with it explain the read, and the search meets them late
        // (2^(n-1) configurations first). 40 writes: unknown, in bounded time.
        let blind = |n: u32| {
            let mut ops: Vec<RegOp> = (1..=n).map(|v| w(v, 0, Some(100))).collect();
            ops.push(r(1, 200, 201));
            ops
        };
        let budget = Budget {
            max_steps: 200_000,
            deadline: None,
        };
        assert_eq!(search(&blind(40), &budget), Answer::Unknown);
        assert_eq!(search(&blind(10), &budget), Answer::Linearizable);
    }

    #[test]
    fn a_long_key_keeps_a_small_memo() {
        // 60 000 operations on one key, writes and reads in turn, each pair
        // overlapping the next: decided, with a memo of a few words per
        // configuration (the whole bitset would be 938 words each).
        let mut ops = Vec::new();
        for i in 0..30_000u64 {
            let v = i as u32 + 1;
            ops.push(w(v, 10 * i, Some(10 * i + 15)));
            ops.push(r(v, 10 * i + 16, 10 * i + 22));
        }
        let budget = Budget {
            max_steps: 10_000_000,
            deadline: None,
        };
        assert_eq!(search(&ops, &budget), Answer::Linearizable);
    }

    #[test]
    fn trimmed_bits_match_the_set() {
        // A prefix that grows, and random flips around its end (as the search
        // does): `low` and `high` always describe the bitset exactly.
        let mut bits = Bits::new(1000);
        let mut seed = 5u64;
        let mut frontier = 0usize;
        for _ in 0..50_000 {
            let roll = splitmix64(&mut seed);
            if roll % 2 == 0 && frontier < 1000 {
                if bits.words[frontier / 64] & (1 << (frontier % 64)) == 0 {
                    bits.toggle(frontier);
                }
                frontier += 1;
            } else {
                let i = (frontier + (roll >> 8) as usize % 140).saturating_sub(70);
                bits.toggle(i.min(999));
            }
            let low = bits.words.iter().take_while(|&&w| w == u64::MAX).count();
            let high = bits
                .words
                .iter()
                .rposition(|&w| w != 0)
                .map_or(0, |k| k + 1);
            assert_eq!((bits.low, bits.high), (low, high));
        }
    }
}
