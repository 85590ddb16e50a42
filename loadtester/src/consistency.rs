//! What a run's history says about consistency, against what the cluster's
//! configuration promises.
//!
//! After the load, the recorded [`History`] goes through the checker
//! ([`crate::checker`]: linearizability per key, read-your-writes and
//! monotonic reads per session) and the staleness measures ([`crate::pbs`]:
//! stale-after-ack reads, the inconsistency window, t-visibility,
//! k-staleness). [`promise`] says which of these the configuration promises
//! given the faults the run injected — the same table as the README's
//! "Guarantees" document — and [`Consistency::broken`] lists every promise
//! the run broke; `kv-loadtester` exits with status 3 when one was.
//!
//! | configuration | promised (without faults) | with faults |
//! | --- | --- | --- |
//! | standalone node | linearizable, sessions, no stale read | — (a crash empties the store) |
//! | leader-follower, `/get`, R + W > N, W ≥ majority, R ≥ 2 | linearizable, sessions, no stale-after-ack read | the same, under every fault the nemesis injects |
//! | leader-follower, `/get`, R = 1, W = N | no stale-after-ack read, read-your-writes | the same |
//! | leader-follower, `/get`, R + W > N, W < majority | no stale-after-ack read, read-your-writes | nothing: a failover may lose acknowledged writes (reported) |
//! | leader-follower, `/local_read` or R + W ≤ N | nothing (stale reads measured, not judged) | nothing |
//! | leaderless, `/get`, R + W > N | no stale-after-ack read, read-your-writes | the same under partitions, pauses, delays and drops; nothing with clock skew (last-writer-wins follows the clocks) or restarts (a node comes back empty) |
//! | leaderless, R + W ≤ N or `/local_read` | nothing | nothing |
//!
//! Open-loop runs give every request a session of its own (requests
//! overlap), so their session checks pass trivially; closed-loop clients
//! are sessions.
//!
//! Keys that already held data from before the run (a read returned a
//! value no write of this run wrote, and the value does not carry this
//! run's tag) are left out of the check and counted in
//! [`Consistency::excluded_keys`].

use crate::checker::{self, CheckOptions, CheckReport, Verdict, Violation, ViolationCounts};
use crate::cli::ReadEndpoint;
use crate::error::Result;
use crate::history::{FaultRecord, History, Outcome};
use crate::pbs::{self, Staleness};
use crate::workload::OpKind;
use kv_shared::cluster::ClusterConfig;
use kv_shared::Mode;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Where the reported t-visibility bands start, ms: reads sent 0–100,
/// 100–500, 500–1000 and over 1000 ms after the latest 201 of their key.
pub const T_VISIBILITY_MS: [u64; 4] = [0, 100, 500, 1000];
/// Violations kept in the summary (all are in `check.json`).
const VIOLATIONS_IN_SUMMARY: usize = 10;

/// What a configuration promises, given the faults of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// Every key's history is linearizable.
    pub linearizable: bool,
    /// A read sent after a write's 201 returns it or a newer version.
    pub no_stale_after_ack: bool,
    /// A session reads its own acknowledged writes.
    pub read_your_writes: bool,
    /// A session never reads an older version than it read before.
    pub monotonic_reads: bool,
    /// Why, for people.
    pub basis: String,
}

/// The promise of `mode` with `config`, reads through `endpoint`, under
/// the faults of `faults` (see the module docs).
pub fn promise(
    mode: Option<Mode>,
    config: Option<ClusterConfig>,
    endpoint: ReadEndpoint,
    faults: &[FaultRecord],
) -> Promise {
    let none = |basis: String| Promise {
        linearizable: false,
        no_stale_after_ack: false,
        read_your_writes: false,
        monotonic_reads: false,
        basis,
    };
    let faulty = faults.iter().any(|f| f.kind != "heal");
    let killed = faults.iter().any(|f| f.kind == "kill");
    let skewed = faults.iter().any(|f| f.kind == "skew");
    let Some(c) = config else {
        return none("the cluster's N/W/R are unknown (no /status)".into());
    };
    let quorum = endpoint == ReadEndpoint::Get && c.r + c.w > c.n;
    let quorums = format!("W={} R={} N={}", c.w, c.r, c.n);
    match mode {
        Some(Mode::Standalone) if killed => none("a standalone node that crashed lost its data".into()),
        Some(Mode::Standalone) => Promise {
            linearizable: true,
            no_stale_after_ack: true,
            read_your_writes: true,
            monotonic_reads: true,
            basis: "one node".into(),
        },
        _ if !quorum => none(format!(
            "{quorums} with {}: reads may be stale (measured, not judged)",
            endpoint.path()
        )),
        Some(Mode::LeaderFollower) if c.w > c.n / 2 && c.r >= 2 => Promise {
            linearizable: true,
            no_stale_after_ack: true,
            read_your_writes: true,
            monotonic_reads: true,
            basis: format!(
                "leader-follower {quorums}: W is a majority, R + W > N, reads answered by the leader"
            ),
        },
        Some(Mode::LeaderFollower) if c.w > c.n / 2 => Promise {
            linearizable: false,
            no_stale_after_ack: true,
            read_your_writes: true,
            monotonic_reads: false,
            basis: format!(
                "leader-follower {quorums}: W is a majority and R + W > N; R = 1 reads one \
                 replica's copy, which may hold a write before its 201"
            ),
        },
        Some(Mode::LeaderFollower) if faulty => none(format!(
            "leader-follower {quorums} under faults: W < majority, so a failover may lose acknowledged writes"
        )),
        Some(Mode::LeaderFollower) => Promise {
            linearizable: false,
            no_stale_after_ack: true,
            read_your_writes: true,
            monotonic_reads: false,
            basis: format!("leader-follower {quorums}: R + W > N, no faults"),
        },
        Some(Mode::Leaderless) if killed || skewed => none(format!(
            "leaderless {quorums} with {}: last-writer-wins and empty restarts make reads stale",
            if skewed { "clock skew" } else { "restarts" }
        )),
        Some(Mode::Leaderless) => Promise {
            linearizable: false,
            no_stale_after_ack: true,
            read_your_writes: true,
            monotonic_reads: false,
            basis: format!("leaderless {quorums}: R + W > N"),
        },
        None => none("the cluster's mode is unknown".into()),
    }
}

/// t-visibility in one band: P(fresh | t ≤ Δ < next t), Δ the time from
/// the latest 201 of the key to the read's send.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VisibilityAt {
    /// Start of the band, ms.
    pub t_ms: u64,
    /// End of the band, ms (`None`: open).
    pub until_ms: Option<u64>,
    /// Checked reads sent in the band after their latest acknowledged write.
    pub reads: u64,
    /// Of those, the fresh ones.
    pub fresh: u64,
    /// `fresh / reads`; `None` when no read qualifies.
    pub p: Option<f64>,
}

/// The consistency part of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// What the configuration promises.
    pub promise: Promise,
    /// Why nothing was checked, when nothing was.
    pub not_checked: Option<String>,
    /// Operations in the history.
    pub ops: u64,
    /// Keys checked.
    pub keys: u64,
    /// Keys left out because they held data from before the run.
    pub excluded_keys: u64,
    /// Linearizability of every key.
    pub linearizable: Verdict,
    /// Read-your-writes in every session.
    pub read_your_writes: Verdict,
    /// Monotonic reads in every session.
    pub monotonic_reads: Verdict,
    /// Violations per check.
    pub counts: ViolationCounts,
    /// Keys whose linearizability was not decided within the budget.
    pub unknown_keys: u64,
    /// Time the checker took, ms.
    pub check_ms: f64,
    /// Answered reads (200 or 404).
    pub reads: u64,
    /// Reads with no acknowledged write of their key before them.
    pub unchecked_reads: u64,
    /// Reads that returned an older version after a newer write's 201.
    pub stale_after_ack: u64,
    /// Reads (not stale after ack) that overlapped a write of their key.
    pub overlapping: u64,
    /// Of those, the ones that returned the older value: the inconsistency window.
    pub overlapping_old: u64,
    /// t-visibility in the bands starting at [`T_VISIBILITY_MS`].
    pub t_visibility: Vec<VisibilityAt>,
    /// The t-visibility curve: P(fresh) per log-spaced bin of time since the
    /// latest 201, as (bin middle in ms, P) for the bins with reads.
    #[serde(default)]
    pub visibility_curve: Vec<(f64, f64)>,
    /// Stale-after-ack reads 1, 2, 3 and ≥ 4 acknowledged versions behind.
    pub versions_behind: [u64; 4],
    /// The faults the nemesis injected.
    pub faults: Vec<FaultRecord>,
    /// The first violations (all of them are in `check.json`).
    pub violations: Vec<Violation>,
    /// Every promise the run broke, for people; empty when it kept them all.
    pub broken: Vec<String>,
}

/// Everything the evaluation produced (the summary part and the full reports).
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// For `summary.json`.
    pub summary: Consistency,
    /// The checker's full answer (`check.json`), when it ran.
    pub check: Option<CheckReport>,
    /// The staleness measures (`staleness.json`), when they ran.
    pub staleness: Option<Staleness>,
    /// The history that was checked (keys with data from before the run removed).
    pub history: History,
}

/// A summary for a run whose history was not checked.
pub fn not_checked(promise: Promise, why: &str, faults: Vec<FaultRecord>, ops: u64) -> Consistency {
    Consistency {
        promise,
        not_checked: Some(why.into()),
        ops,
        keys: 0,
        excluded_keys: 0,
        linearizable: Verdict::Unknown,
        read_your_writes: Verdict::Unknown,
        monotonic_reads: Verdict::Unknown,
        counts: ViolationCounts::default(),
        unknown_keys: 0,
        check_ms: 0.0,
        reads: 0,
        unchecked_reads: 0,
        stale_after_ack: 0,
        overlapping: 0,
        overlapping_old: 0,
        t_visibility: Vec::new(),
        visibility_curve: Vec::new(),
        versions_behind: [0; 4],
        faults,
        violations: Vec::new(),
        broken: Vec::new(),
    }
}

/// Removes the keys that held data from before the run: a read returned
/// a value that no write of `history` wrote and that does not start with
/// `run_tag`. Returns how many keys were removed.
pub fn drop_foreign_keys(history: &mut History, run_tag: &str) -> u64 {
    let written: HashSet<&str> = history
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Write)
        .filter_map(|o| o.value.as_deref())
        .collect();
    let foreign: HashSet<String> = history
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok)
        .filter(|o| {
            o.value
                .as_deref()
                .is_some_and(|v| !written.contains(v) && !v.starts_with(run_tag))
        })
        .map(|o| o.key.clone())
        .collect();
    history.ops.retain(|o| !foreign.contains(&o.key));
    foreign.len() as u64
}

/// Checks `history` and measures its staleness; `promise` decides what is broken.
pub fn evaluate(
    mut history: History,
    promise: Promise,
    run_tag: &str,
    time_limit: Duration,
) -> Evaluation {
    let excluded_keys = drop_foreign_keys(&mut history, run_tag);
    let options = CheckOptions {
        total_time_limit: Some(time_limit),
        ..CheckOptions::default()
    };
    let check = checker::check(&history, &options);
    let staleness = pbs::measure(&history, &T_VISIBILITY_MS[1..]);
    let t = &staleness.totals;
    let b = &staleness.k_staleness.behind;
    let t_visibility = bands(&staleness);
    let mut broken = Vec::new();
    if promise.linearizable && check.linearizable == Verdict::Fail {
        broken.push(format!(
            "linearizability: {} key(s) have no legal order",
            check.counts.linearizable
        ));
    }
    if promise.no_stale_after_ack && t.stale_after_ack > 0 {
        broken.push(format!(
            "{} read(s) returned an older version after a newer write's 201",
            t.stale_after_ack
        ));
    }
    if promise.read_your_writes && check.read_your_writes == Verdict::Fail {
        broken.push(format!(
            "read-your-writes: {} read(s) missed the session's own write",
            check.counts.read_your_writes
        ));
    }
    if promise.monotonic_reads && check.monotonic_reads == Verdict::Fail {
        broken.push(format!(
            "monotonic reads: {} read(s) went back in time",
            check.counts.monotonic_reads
        ));
    }
    let faults = history.faults.clone();
    let summary = Consistency {
        promise,
        not_checked: None,
        ops: history.ops.len() as u64,
        keys: check.keys_checked,
        excluded_keys,
        linearizable: check.linearizable,
        read_your_writes: check.read_your_writes,
        monotonic_reads: check.monotonic_reads,
        counts: check.counts,
        unknown_keys: check.unknown_keys.len() as u64,
        check_ms: check.elapsed_ms,
        reads: t.reads,
        unchecked_reads: t.unchecked,
        stale_after_ack: t.stale_after_ack,
        overlapping: t.overlapping,
        overlapping_old: t.overlapping_old,
        t_visibility,
        visibility_curve: curve(&staleness.t_visibility),
        versions_behind: [b.one, b.two, b.three, b.four_or_more],
        faults,
        violations: check
            .violations
            .iter()
            .take(VIOLATIONS_IN_SUMMARY)
            .cloned()
            .collect(),
        broken,
    };
    Evaluation {
        summary,
        check: Some(check),
        staleness: Some(staleness),
        history,
    }
}

/// Fewest reads behind a point of a t-visibility curve (fewer make noise).
pub const MIN_READS_PER_POINT: u64 = 5;

/// (bin middle in ms, P(fresh)) for every bin of `v` with at least
/// [`MIN_READS_PER_POINT`] reads; the middle is geometric (the bins are
/// log-spaced), half the upper edge for the first.
pub fn curve(v: &pbs::Visibility) -> Vec<(f64, f64)> {
    v.bins
        .iter()
        .filter(|b| b.fresh.of >= MIN_READS_PER_POINT)
        .filter_map(|b| {
            let p = b.fresh.p?;
            let mid = match b.to_ms {
                Some(to) if b.from_ms > 0.0 => (b.from_ms * to).sqrt(),
                Some(to) => to / 2.0,
                None => b.from_ms * 2.0,
            };
            Some((mid, p))
        })
        .collect()
}

/// The bands of [`T_VISIBILITY_MS`] from the cumulative P(fresh | Δ ≤ t)
/// at their ends (and all checked reads for the open last one).
fn bands(staleness: &Staleness) -> Vec<VisibilityAt> {
    let all = staleness.t_visibility.fresh;
    let cumulative: Vec<(u64, u64)> = staleness
        .t_visibility
        .within
        .iter()
        .map(|p| (p.fresh.of, p.fresh.count))
        .chain(std::iter::once((all.of, all.count)))
        .collect();
    let mut before = (0, 0);
    T_VISIBILITY_MS
        .iter()
        .zip(cumulative)
        .enumerate()
        .map(|(i, (&t_ms, upto))| {
            let reads = upto.0.saturating_sub(before.0);
            let fresh = upto.1.saturating_sub(before.1);
            before = upto;
            VisibilityAt {
                t_ms,
                until_ms: T_VISIBILITY_MS.get(i + 1).copied(),
                reads,
                fresh,
                p: (reads > 0).then(|| fresh as f64 / reads as f64),
            }
        })
        .collect()
}

/// Writes `history.jsonl`, `check.json`, `staleness.json` and the
/// violation pages (`violations/`) of an evaluation into `dir`.
///
/// # Errors
/// Files that cannot be written.
pub fn write_files(dir: &Path, e: &Evaluation) -> Result<()> {
    e.history.write_jsonl(&dir.join("history.jsonl"))?;
    if let Some(check) = &e.check {
        crate::output::write_json(&dir.join("check.json"), check)?;
        if !check.violations.is_empty() {
            checker::write_violation_pages(check, &e.history, &dir.join("violations"))?;
        }
    }
    if let Some(s) = &e.staleness {
        crate::output::write_json(&dir.join("staleness.json"), s)?;
        let mut curves = vec![("all reads".to_string(), curve(&s.t_visibility))];
        curves.extend(s.per_node.iter().map(|n| {
            let label = n
                .node
                .map_or("node unknown".into(), |id| format!("node {id}"));
            (label, curve(&n.visibility))
        }));
        crate::plot_consistency::visibility_plot(
            &dir.join("t-visibility"),
            "t-visibility: reads that returned the latest acknowledged write or newer",
            &curves,
        )?;
    }
    crate::plot_consistency::timeline_plot(
        &dir.join("timeline"),
        "operations over the run, and the faults injected",
        &e.history,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryOp;

    fn config(n: u32, w: u32, r: u32) -> Option<ClusterConfig> {
        Some(ClusterConfig {
            n,
            w,
            r,
            delay_profile: Default::default(),
        })
    }

    fn fault(kind: &str) -> FaultRecord {
        FaultRecord {
            at_us: 0,
            until_us: Some(1),
            kind: kind.into(),
            nodes: vec![1],
            detail: String::new(),
        }
    }

    #[test]
    fn promises_follow_the_quorums_the_endpoint_and_the_faults() {
        let lf = Some(Mode::LeaderFollower);
        let ll = Some(Mode::Leaderless);
        let get = ReadEndpoint::Get;
        let w3 = promise(
            lf,
            config(5, 3, 3),
            get,
            &[fault("partition"), fault("kill")],
        );
        assert!(w3.linearizable && w3.no_stale_after_ack && w3.monotonic_reads);
        let w5r1 = promise(lf, config(5, 5, 1), get, &[fault("kill")]);
        assert!(w5r1.no_stale_after_ack && !w5r1.linearizable && !w5r1.monotonic_reads);
        let w1 = promise(lf, config(5, 1, 5), get, &[]);
        assert!(w1.no_stale_after_ack && !w1.linearizable);
        assert!(!promise(lf, config(5, 1, 5), get, &[fault("kill")]).no_stale_after_ack);
        assert!(!promise(lf, config(5, 3, 3), ReadEndpoint::LocalRead, &[]).no_stale_after_ack);
        assert!(!promise(lf, config(5, 1, 1), get, &[]).read_your_writes);
        assert!(promise(ll, config(5, 3, 3), get, &[fault("pause")]).no_stale_after_ack);
        assert!(!promise(ll, config(5, 3, 3), get, &[fault("skew")]).no_stale_after_ack);
        assert!(!promise(ll, config(5, 3, 3), get, &[fault("kill")]).no_stale_after_ack);
        assert!(!promise(lf, None, get, &[]).no_stale_after_ack);
    }

    fn op(id: u64, kind: OpKind, key: &str, span: (u64, u64), value: Option<&str>) -> HistoryOp {
        HistoryOp {
            id,
            session: id as u32,
            kind,
            key: key.into(),
            node: Some(1),
            invoke_us: span.0,
            complete_us: span.1,
            outcome: Outcome::Ok,
            value: value.map(str::to_string),
            version: value.map(|_| id + 1),
        }
    }

    #[test]
    fn keys_with_data_from_before_the_run_are_left_out() {
        let mut h = History {
            ops: vec![
                op(0, OpKind::Read, "old", (0, 10), Some("s1-7-0-earlier")),
                op(1, OpKind::Write, "new", (0, 10), Some("s1-9-1-")),
                op(2, OpKind::Read, "new", (20, 30), Some("s1-9-1-")),
                // A value of this run whose write is missing from the history stays: the checker flags it.
                op(3, OpKind::Read, "odd", (20, 30), Some("s1-9-77-")),
            ],
            faults: Vec::new(),
        };
        assert_eq!(drop_foreign_keys(&mut h, "s1-9-"), 1);
        assert_eq!(h.ops.len(), 3);
        assert!(h.ops.iter().all(|o| o.key != "old"));
    }

    #[test]
    fn a_stale_read_after_an_ack_breaks_the_quorum_promise() {
        let mut stale = op(2, OpKind::Read, "k", (40, 50), Some("s1-9-0-"));
        stale.version = Some(1);
        let h = History {
            ops: vec![
                op(0, OpKind::Write, "k", (0, 10), Some("s1-9-0-")),
                op(1, OpKind::Write, "k", (20, 30), Some("s1-9-1-")),
                stale,
            ],
            faults: Vec::new(),
        };
        let p = promise(
            Some(Mode::LeaderFollower),
            config(5, 3, 3),
            ReadEndpoint::Get,
            &[],
        );
        let e = evaluate(h.clone(), p, "s1-9-", Duration::from_secs(10));
        assert_eq!(e.summary.stale_after_ack, 1);
        assert_eq!(e.summary.linearizable, Verdict::Fail);
        assert_eq!(e.summary.broken.len(), 2, "{:?}", e.summary.broken);
        let lax = promise(
            Some(Mode::LeaderFollower),
            config(5, 1, 1),
            ReadEndpoint::Get,
            &[],
        );
        let e = evaluate(h, lax, "s1-9-", Duration::from_secs(10));
        assert!(e.summary.broken.is_empty());
        assert_eq!(e.summary.t_visibility.len(), T_VISIBILITY_MS.len());
    }
}
