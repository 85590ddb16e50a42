//! The history checker: is what the clients saw explainable by one
//! register per key (linearizability), and did each session see its own
//! writes and never go back in time (read-your-writes, monotonic reads)?
//!
//! It reads a [`History`] (every operation with its invocation and
//! completion time and how it ended) and answers with a [`CheckReport`]:
//! a [`Verdict`] per check, the [`Violation`]s with the fewest operations
//! that show each one, and the keys it could not decide in its budget.
//! [`timeline_html`] draws one key's operations the way Porcupine's
//! visualisation does, and [`write_violation_pages`] writes one such page
//! per violation.
//!
//! # Linearizability, per key
//! Each key is a read/write register that starts *absent* (a read returns
//! `None`). The history of a key is linearizable when every operation can be
//! given one instant between its invocation and its completion such that,
//! in the order of those instants, every read returns the value of the
//! latest write before it (or `None` if there is none). Keys are
//! independent — a history is linearizable exactly when each key's
//! sub-history is (P-compositionality, Herlihy & Wing) — so each key is
//! searched on its own, in parallel over the available cores.
//!
//! What the search takes from the history:
//! - [`Outcome::Ok`] writes and reads: must take effect inside their
//!   interval. Values are compared, not versions (write values are unique).
//! - [`Outcome::Indeterminate`] writes: may take effect at any single instant
//!   after their invocation, or never; their completion counts as +∞, and
//!   the search is done once every `Ok` operation is placed. One that no read
//!   returned can change nothing and is dropped before the search.
//! - [`Outcome::Failed`] operations (and every read that is not `Ok`): left
//!   out. A read of a value that only a failed write wrote, or that no write
//!   wrote at all, is a violation by itself.
//! - Intervals that touch (`complete_us` of one = `invoke_us` of the other)
//!   count as concurrent: with µs timestamps from the client the order of
//!   the two is not known.
//!
//! How a key is decided:
//! - **Zones** (`zones.rs`), when every write of the key wrote a value of
//!   its own (the load tester's writes do): each read then names the write
//!   it read from, and the key is linearizable exactly when no read ends
//!   before its write begins, no two *forward zones* overlap and no
//!   *backward zone* lies inside a forward zone (Gibbons & Korach 1997, in
//!   the form of Golab, Li & Shah 2011). O(n log n) per key, always
//!   decided: a hot key with 16 sessions in flight at once is as quick as a
//!   cold one, where the search below can need exponentially many steps
//!   (2 000 such operations on one key exhaust 50 million).
//! - **The search**, for a key where two writes wrote the same value.
//!
//! The tests hold the two to the same answer on random histories.
//!
//! The search (`wgl.rs`) is the Wing–Gong backtracking search with Lowe's
//! memoization, as Porcupine and Knossos implement it: operations are call
//! and return entries in a doubly linked list sorted by time; the search
//! linearizes a call whose operation is legal in the current register state
//! and removes its two entries, and backtracks when it meets a return (an
//! operation that should already have been placed). A set of
//! (linearized operations as a bitset, register state) pairs already
//! explored cuts every path that reaches a known configuration again. The
//! bitset carries an incremental Zobrist hash, so the memo costs one
//! comparison per hit instead of a hash over the whole bitset.
//!
//! A key whose search (so: a key with repeated write values) exceeds
//! [`CheckOptions::max_steps_per_key`] or
//! [`CheckOptions::max_time_per_key`] (or starts after
//! [`CheckOptions::total_time_limit`]) is *unknown*: listed in
//! [`CheckReport::unknown_keys`], and the verdict is [`Verdict::Unknown`]
//! unless another key failed.
//!
//! # Session guarantees, per session and key
//! A session's operations never overlap ([`crate::history::HistoryOp::session`]),
//! so they are walked in invocation order (`session.rs`):
//! - **read-your-writes**: a read invoked after the session's own `Ok`
//!   write of the key completed returns that write's version or a higher
//!   one. The evidence is the write and the read.
//! - **monotonic reads**: an `Ok` read never returns a lower version than an
//!   earlier `Ok` read of the key by the session. The evidence is the
//!   earlier read (the highest one) and the later read.
//!
//! A read that returned `None` counts as version 0. Only `Ok` operations
//! count: an indeterminate write has no version to hold the session to.
//!
//! # Evidence
//! A failing key comes with the smallest set of its operations found that
//! still fails (`minimize.rs`): for a key decided by zones, the at most six
//! operations that fix the two conflicting zones (and their writes); for a
//! key decided by the search, the shortest prefix (in invocation order)
//! that fails. Then delta debugging (drop halves, quarters, … single
//! operations while the rest still fails) until no single operation can
//! go. Only *closed* sets are tried: a read stays only with the write of
//! the value it returned. A closed subset of a linearizable history is
//! linearizable (the same order, restricted, still works), so a failing
//! closed subset proves the whole key fails: the evidence is sound. The
//! reduction has its own time budget ([`CheckOptions::minimize_time_per_key`]);
//! when it runs out, the smaller set found so far is reported.
//!
//! # Implementation caveats
//! - The register model only: no compare-and-set, no deletes, no
//!   multi-key transactions (P-compositionality needs single-key operations).
//! - Versions are not checked by the linearizability search (values are
//!   unique, so they add nothing); the session checks use only versions.
//! - Reads that failed or timed out carry no value and are ignored, even
//!   though their request may have reached a node.
//! - The step budget is deterministic, the time budgets are not: on a slow
//!   machine a key near a time budget can flip between decided and unknown.
//! - The memo grows with the explored configurations (a few words each:
//!   see `wgl.rs`); a search whose memo would pass 128 MiB stops as unknown.
//! - [`sim`] simulates a linearizable store for the tests and the
//!   benchmark; it is not a model of the real nodes.
//!
//! # Layout
//! - `register.rs`: one key's operations as the deciders see them (values
//!   interned, failed and unread indeterminate operations left out).
//! - `zones.rs`: the O(n log n) decision for keys with unique write values.
//! - `wgl.rs`: the Wing–Gong–Lowe search, for the other keys.
//! - `minimize.rs`: reduction of a failing key to its evidence.
//! - `session.rs`: read-your-writes and monotonic reads.
//! - `describe.rs`: operations and times as text.
//! - `timeline.rs`: the HTML timeline of one key.
//! - [`sim`]: seeded linearizable histories, and one stale read to inject.

mod describe;
mod minimize;
mod register;
mod session;
pub mod sim;
mod timeline;
mod wgl;
mod zones;

#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::history::{History, HistoryOp, Outcome};
use register::KeyOps;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use timeline::{timeline_html, MAX_DRAWN_OPS};

/// Most violation pages [`write_violation_pages`] writes.
pub const MAX_VIOLATION_PAGES: usize = 20;
/// Most session violations listed per check in [`CheckReport::violations`]
/// (all of them are counted in [`CheckReport::counts`]).
pub const MAX_SESSION_VIOLATIONS_LISTED: usize = 1000;

/// What to check, and how much effort a key may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Run the linearizability search.
    pub linearizable: bool,
    /// Run the read-your-writes check.
    pub read_your_writes: bool,
    /// Run the monotonic-reads check.
    pub monotonic_reads: bool,
    /// Most search steps (entries visited) for one key before it is unknown
    /// (only keys with repeated write values are searched; see the module
    /// documentation).
    pub max_steps_per_key: u64,
    /// Longest search of one key before it is unknown (searched keys only).
    pub max_time_per_key: Duration,
    /// Longest reduction of one failing key to its minimal evidence.
    pub minimize_time_per_key: Duration,
    /// Keys whose search has not started after this long are unknown.
    pub total_time_limit: Option<Duration>,
    /// Worker threads for the per-key search; `0` means one per core.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            linearizable: true,
            read_your_writes: true,
            monotonic_reads: true,
            max_steps_per_key: 2_000_000,
            max_time_per_key: Duration::from_secs(2),
            minimize_time_per_key: Duration::from_millis(500),
            total_time_limit: Some(Duration::from_secs(300)),
            threads: 0,
        }
    }
}

/// The answer of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Checked, and no violation.
    Pass,
    /// At least one violation (see [`CheckReport::violations`]).
    Fail,
    /// Not decided: some key exceeded its budget (and none failed), or the
    /// check was not run ([`CheckOptions`]).
    Unknown,
}

/// Which check a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Linearizability of the key's register.
    Linearizable,
    /// A session read an older version than its own acknowledged write.
    ReadYourWrites,
    /// A session read an older version than it had read before.
    MonotonicReads,
}

impl Check {
    /// The name used in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Check::Linearizable => "linearizable",
            Check::ReadYourWrites => "read-your-writes",
            Check::MonotonicReads => "monotonic-reads",
        }
    }
}

/// One violation and the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The check it breaks.
    pub check: Check,
    /// The operations ([`HistoryOp::id`]) that show it, in invocation order:
    /// for linearizability the minimal failing set found, for a session
    /// check the earlier operation and the read.
    pub op_ids: Vec<u64>,
    /// What happened, for people.
    pub explanation: String,
}

/// How many violations each check found (the list may be capped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationCounts {
    /// Keys that are not linearizable.
    pub linearizable: u64,
    /// Reads that broke read-your-writes.
    pub read_your_writes: u64,
    /// Reads that broke monotonic reads.
    pub monotonic_reads: u64,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Operations that took part (all but the failed ones).
    pub ops_checked: u64,
    /// Distinct keys in the history.
    pub keys_checked: u64,
    /// Wall time of the whole check, ms.
    pub elapsed_ms: f64,
    /// Linearizability of every key.
    pub linearizable: Verdict,
    /// Read-your-writes in every session.
    pub read_your_writes: Verdict,
    /// Monotonic reads in every session.
    pub monotonic_reads: Verdict,
    /// Violations: linearizability first (one per key, by key), then
    /// read-your-writes, then monotonic reads (by key, session, time).
    pub violations: Vec<Violation>,
    /// How many violations each check found.
    pub counts: ViolationCounts,
    /// Keys whose linearizability was not decided within the budget, sorted.
    pub unknown_keys: Vec<String>,
}

/// Checks `history` as `options` say. Never fails: a key it cannot decide
/// in its budget is reported as unknown.
pub fn check(history: &History, options: &CheckOptions) -> CheckReport {
    let start = Instant::now();
    // Hashed first (one lookup per operation), ordered once per key.
    let mut hashed: HashMap<&str, Vec<&HistoryOp>> = HashMap::new();
    for op in &history.ops {
        hashed.entry(op.key.as_str()).or_default().push(op);
    }
    let by_key: BTreeMap<&str, Vec<&HistoryOp>> = hashed.into_iter().collect();
    let ops_checked = history
        .ops
        .iter()
        .filter(|op| op.outcome != Outcome::Failed)
        .count() as u64;

    let mut violations = Vec::new();
    let mut counts = ViolationCounts::default();
    let mut unknown_keys = Vec::new();

    let linearizable = if options.linearizable {
        let results = check_keys(&by_key, options, start);
        for (key, result) in results {
            match result {
                KeyResult::Linearizable => {}
                KeyResult::Unknown => unknown_keys.push(key.to_string()),
                KeyResult::Violation(v) => {
                    counts.linearizable += 1;
                    violations.push(v);
                }
            }
        }
        verdict(counts.linearizable, !unknown_keys.is_empty())
    } else {
        Verdict::Unknown
    };

    let lanes = if options.read_your_writes || options.monotonic_reads {
        session::lanes(&by_key)
    } else {
        Vec::new()
    };
    let read_your_writes = if options.read_your_writes {
        let found = session::read_your_writes(&lanes);
        counts.read_your_writes = found.len() as u64;
        violations.extend(found.into_iter().take(MAX_SESSION_VIOLATIONS_LISTED));
        verdict(counts.read_your_writes, false)
    } else {
        Verdict::Unknown
    };

    let monotonic_reads = if options.monotonic_reads {
        let found = session::monotonic_reads(&lanes);
        counts.monotonic_reads = found.len() as u64;
        violations.extend(found.into_iter().take(MAX_SESSION_VIOLATIONS_LISTED));
        verdict(counts.monotonic_reads, false)
    } else {
        Verdict::Unknown
    };

    CheckReport {
        ops_checked,
        keys_checked: by_key.len() as u64,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
        linearizable,
        read_your_writes,
        monotonic_reads,
        violations,
        counts,
        unknown_keys,
    }
}

/// Fail if anything failed, else Unknown if anything was undecided, else Pass.
fn verdict(failures: u64, undecided: bool) -> Verdict {
    match (failures, undecided) {
        (0, false) => Verdict::Pass,
        (0, true) => Verdict::Unknown,
        _ => Verdict::Fail,
    }
}

/// The linearizability answer for one key.
enum KeyResult {
    /// Some order explains every read.
    Linearizable,
    /// The budget ran out first.
    Unknown,
    /// No order does; the evidence.
    Violation(Violation),
}

/// Searches every key, on `options.threads` workers, and returns the
/// results in key order. The biggest keys go first so that one large key
/// does not start last and keep a single core busy at the end.
fn check_keys<'a>(
    by_key: &BTreeMap<&'a str, Vec<&HistoryOp>>,
    options: &CheckOptions,
    start: Instant,
) -> Vec<(&'a str, KeyResult)> {
    let mut order: Vec<(&'a str, &[&HistoryOp])> =
        by_key.iter().map(|(k, ops)| (*k, ops.as_slice())).collect();
    order.sort_by_key(|(k, ops)| (std::cmp::Reverse(ops.len()), *k));
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, order.len().max(1));
    let stop_at = options.total_time_limit.map(|d| start + d);
    let next = AtomicUsize::new(0);

    let mut results: Vec<(&'a str, KeyResult)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(key, ops)) = order.get(i) else {
                            break;
                        };
                        let late = stop_at.is_some_and(|t| Instant::now() >= t);
                        let result = if late {
                            KeyResult::Unknown
                        } else {
                            check_key(key, ops, options, stop_at)
                        };
                        done.push((key, result));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a checker worker panicked"))
            .collect()
    });
    results.sort_by(|a, b| a.0.cmp(b.0));
    results
}

/// Decides one key and, when it fails, reduces it to its evidence.
fn check_key(
    key: &str,
    ops: &[&HistoryOp],
    options: &CheckOptions,
    stop_at: Option<Instant>,
) -> KeyResult {
    let prepared = KeyOps::prepare(ops);
    if let Some(v) = prepared.unwritten_read(key) {
        return KeyResult::Violation(v);
    }
    let until = |start: Instant| start + options.minimize_time_per_key;
    let minimize_budget = |until: Instant| wgl::Budget {
        max_steps: options.max_steps_per_key,
        deadline: Some(until),
    };
    match zones::decide(&prepared.ops) {
        Some(Ok(())) => return KeyResult::Linearizable,
        Some(Err(conflict)) => {
            let until = until(Instant::now());
            let evidence =
                minimize::reduce(&prepared.ops, conflict, &minimize_budget(until), until);
            return KeyResult::Violation(prepared.violation(key, &evidence));
        }
        None => {}
    }
    let deadline = earliest(Instant::now() + options.max_time_per_key, stop_at);
    let budget = wgl::Budget {
        max_steps: options.max_steps_per_key,
        deadline: Some(deadline),
    };
    match wgl::search(&prepared.ops, &budget) {
        wgl::Answer::Linearizable => KeyResult::Linearizable,
        wgl::Answer::Unknown => KeyResult::Unknown,
        wgl::Answer::NotLinearizable => {
            let until = until(Instant::now());
            let evidence = minimize::minimize(&prepared.ops, &minimize_budget(until), until);
            KeyResult::Violation(prepared.violation(key, &evidence))
        }
    }
}

/// Whether a key's operations are linearizable: by their zones when every
/// write value is unique (always decided, O(n log n)), else by the search
/// within `budget`.
fn decide(ops: &[register::RegOp], budget: &wgl::Budget) -> wgl::Answer {
    match zones::decide(ops) {
        Some(Ok(())) => wgl::Answer::Linearizable,
        Some(Err(_)) => wgl::Answer::NotLinearizable,
        None => wgl::search(ops, budget),
    }
}

/// The earlier of `a` and `b` (when there is a `b`).
fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

/// Writes one timeline page per violation (at most [`MAX_VIOLATION_PAGES`]),
/// `violation-<n>-<key>.html` in `dir` (created if missing), `n` from 1 in
/// the order of [`CheckReport::violations`]; the key is reduced to
/// `[A-Za-z0-9._-]` in the name. Returns the paths written.
///
/// # Errors
/// The directory cannot be created or a file cannot be written.
pub fn write_violation_pages(
    report: &CheckReport,
    history: &History,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for (n, v) in report
        .violations
        .iter()
        .take(MAX_VIOLATION_PAGES)
        .enumerate()
    {
        let path = dir.join(format!("violation-{}-{}.html", n + 1, file_safe(&v.key)));
        let heading = format!("{} violation: {}", v.check.name(), v.explanation);
        let html = timeline::page(history, &v.key, &v.op_ids, Some(&heading));
        std::fs::write(&path, html).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// `key` with every character outside `[A-Za-z0-9._-]` replaced by `_`.
fn file_safe(key: &str) -> String {
    let safe: String = key
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "_".to_string()
    } else {
        safe
    }
}
