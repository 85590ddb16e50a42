//! What a run's history says about consistency, against what the cluster's
//! configuration promises.
//!
//! After the load, the recorded [`History`] goes through the checker
//! ([`crate::checker`]: linearizability per key, read-your-writes and
//! monotonic reads per session) and the staleness measures ([`crate::pbs`]:
//! stale-after-ack reads, the inconsistency window, t-visibility,
//! k-staleness). [`promise`] says which of these the configuration promises
//! given the faults the run injected — the same table as the guarantees
//! page (`docs/GUARANTEES.md`) — and [`Consistency::broken`] lists every promise
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
//! Next to the measured t-visibility, [`predict`] gives the curve the PBS
//! paper's WARS model predicts by Monte Carlo from the delays of the same
//! run: the W and A legs per replica from the write traces the nodes
//! published ([`crate::traces`], [`pbs::write_legs_from_traces`]), the R and
//! S legs each half of the client's read latency (the nodes time no read
//! legs), and the read targets of the configuration ([`read_model`]).
//!
//! Keys that already held data from before the run (a read returned a
//! value no write of this run wrote, and the value does not carry this
//! run's tag) are left out of the check and counted in
//! [`Consistency::excluded_keys`].

use crate::checker::{self, CheckOptions, CheckReport, Verdict, Violation, ViolationCounts};
use crate::cli::{ReadEndpoint, ReadFrom};
use crate::error::Result;
use crate::history::{FaultRecord, History, Outcome};
use crate::pbs::{self, Staleness};
use crate::workload::OpKind;
use kv_shared::cluster::ClusterConfig;
use kv_shared::events::WriteTrace;
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
    /// The t-visibility the WARS model predicts from this run's delays.
    #[serde(default)]
    pub wars: Option<WarsCurve>,
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
        wars: None,
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
        wars: None,
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

/// Where the WARS curve is predicted: ms after the write committed.
pub const PREDICT_AT_MS: [u64; 24] = [
    0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000,
    3000, 5000,
];
/// Monte Carlo trials of a run's WARS prediction.
pub const WARS_TRIALS: u32 = 20_000;
/// Most read latencies the R and S legs are drawn from (evenly picked).
const MAX_READ_SAMPLES: usize = 20_000;

/// The WARS-predicted t-visibility of a run (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarsCurve {
    /// Which replicas answer a read in the model, for people.
    pub reads: String,
    /// Write traces the W and A legs come from.
    pub traces: u64,
    /// Reads the R and S legs come from.
    pub reads_sampled: u64,
    /// Mean W, A, R and S legs over all replicas, ms.
    pub mean_legs_ms: [f64; 4],
    /// (t ms after the commit, predicted P(fresh)), t from [`PREDICT_AT_MS`].
    pub points: Vec<(f64, f64)>,
    /// The predicted share of fresh reads among this run's checked reads in
    /// each band of [`T_VISIBILITY_MS`] (each read weighted by the
    /// prediction at its own time since the 201): what the measured bands
    /// compare with. `None` for a band without reads.
    #[serde(default)]
    pub bands: Vec<Option<f64>>,
    /// Why there is no curve, when there is none.
    pub not_predicted: Option<String>,
}

impl WarsCurve {
    fn not(why: impl Into<String>) -> Self {
        WarsCurve {
            reads: String::new(),
            traces: 0,
            reads_sampled: 0,
            mean_legs_ms: [0.0; 4],
            points: Vec::new(),
            bands: Vec::new(),
            not_predicted: Some(why.into()),
        }
    }

    /// The predicted P(fresh) at `t_ms`, if predicted there.
    pub fn at(&self, t_ms: u64) -> Option<f64> {
        self.points
            .iter()
            .find(|(t, _)| *t == t_ms as f64)
            .map(|(_, p)| *p)
    }

    /// The predicted P(fresh) at any `t_ms` ≥ 0: linear between the
    /// predicted points, the last one beyond them.
    pub fn interpolate(&self, t_ms: f64) -> Option<f64> {
        let after = self.points.iter().position(|(t, _)| *t >= t_ms);
        match after {
            None => self.points.last().map(|(_, p)| *p),
            Some(0) => self.points.first().map(|(_, p)| *p),
            Some(i) => {
                let ((t0, p0), (t1, p1)) = (self.points[i - 1], self.points[i]);
                Some(p0 + (p1 - p0) * (t_ms - t0) / (t1 - t0))
            }
        }
    }

    /// [`WarsCurve::bands`] for the reads of `measured`: each bin's reads
    /// weighted by the prediction at the bin's middle.
    fn weigh_bands(&self, measured: &pbs::Visibility) -> Vec<Option<f64>> {
        let mut sums = [(0.0, 0u64); T_VISIBILITY_MS.len()];
        for bin in &measured.bins {
            let mid = bin_middle(bin);
            let Some(p) = self.interpolate(mid) else {
                continue;
            };
            let band = T_VISIBILITY_MS
                .iter()
                .rposition(|&t| mid >= t as f64)
                .unwrap_or(0);
            sums[band].0 += p * bin.fresh.of as f64;
            sums[band].1 += bin.fresh.of;
        }
        sums.iter()
            .map(|&(sum, of)| (of > 0).then(|| sum / of as f64))
            .collect()
    }
}

/// How the WARS model picks the replicas of a read in a configuration, and
/// how many: leader-follower `/get` with R ≥ 2 (or any read at the leader)
/// is answered by the leader's copy; other leader-follower reads by one
/// node's own copy (a random node, or a random follower with `--read-from
/// followers`); a leaderless `/get` by R random replicas (the node asked and
/// R − 1 peers), a `/local_read` by one random node. Index 0 of the legs is
/// the coordinator of the writes (the leader).
pub fn read_model(
    mode: Mode,
    config: ClusterConfig,
    endpoint: ReadEndpoint,
    read_from: ReadFrom,
) -> (pbs::ReadTargets, u32, &'static str) {
    use pbs::ReadTargets::{Coordinator, RandomR, RandomRNotCoordinator};
    let get = endpoint == ReadEndpoint::Get;
    match mode {
        Mode::LeaderFollower if read_from == ReadFrom::Leader || (get && config.r >= 2) => {
            (Coordinator, 1, "the leader's copy")
        }
        Mode::LeaderFollower if read_from == ReadFrom::Followers => {
            (RandomRNotCoordinator, 1, "one random follower's copy")
        }
        Mode::LeaderFollower | Mode::Standalone => (RandomR, 1, "one random node's copy"),
        Mode::Leaderless if get => (
            RandomR,
            config.r,
            "R random replicas (the node asked and R − 1 peers)",
        ),
        Mode::Leaderless => (RandomR, 1, "one random node's copy"),
    }
}

/// What a run loaded: the cluster's mode and quorums (from `/status`) and
/// where its reads went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunShape {
    /// The replication mode, when `/status` told it.
    pub mode: Option<Mode>,
    /// N/W/R and the delay profile, when `/status` told them.
    pub config: Option<ClusterConfig>,
    /// `/get` or `/local_read`.
    pub endpoint: ReadEndpoint,
    /// Which nodes served reads.
    pub read_from: ReadFrom,
}

/// What the WARS model predicts for a run of `shape`, from the write
/// `traces` the nodes published and the read latencies of `history`, with
/// the bands weighted by the `measured` reads; seeded, so one run always
/// gives one curve.
pub fn predict(
    shape: RunShape,
    traces: &[WriteTrace],
    history: &History,
    measured: Option<&pbs::Visibility>,
    seed: u64,
) -> WarsCurve {
    let RunShape {
        mode,
        config,
        endpoint,
        read_from,
    } = shape;
    let (Some(mode), Some(config)) = (mode, config) else {
        return WarsCurve::not("the cluster's mode and N/W/R are unknown (no /status)");
    };
    if mode == Mode::Standalone {
        return WarsCurve::not("one node: nothing is replicated");
    }
    let apply_delay = f64::from(config.delay_profile.ack_ms);
    let Some((w, a)) = pbs::write_legs_from_traces(traces, apply_delay) else {
        return WarsCurve::not("no write trace was acknowledged by every replica");
    };
    let reads: Vec<f64> = history
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok)
        .map(|o| o.complete_us.saturating_sub(o.invoke_us) as f64 / 2000.0)
        .collect();
    if reads.is_empty() {
        return WarsCurve::not("no read was answered");
    }
    let stride = reads.len().div_ceil(MAX_READ_SAMPLES);
    let half_reads: Vec<f64> = reads.iter().step_by(stride).copied().collect();
    let legs = pbs::Legs {
        w,
        a,
        r: pbs::Leg::Shared(half_reads.clone()),
        s: pbs::Leg::Shared(half_reads),
    };
    if let Err(e) = legs.validate(config.n) {
        return WarsCurve::not(format!("the traces do not cover N = {}: {e}", config.n));
    }
    let (targets, r, described) = read_model(mode, config, endpoint, read_from);
    let model = pbs::Wars {
        reads: targets,
        ..pbs::Wars::new(config.n, config.w, r)
    };
    let prediction = model.predict(&legs, &PREDICT_AT_MS, WARS_TRIALS, seed);
    let n = config.n as usize;
    let mean = |leg: &pbs::Leg| leg.mean(n);
    let mut curve = WarsCurve {
        reads: described.into(),
        traces: traces.iter().filter(|t| t.fully_acked()).count() as u64,
        reads_sampled: reads.len() as u64,
        mean_legs_ms: [mean(&legs.w), mean(&legs.a), mean(&legs.r), mean(&legs.s)],
        points: prediction
            .points
            .iter()
            .filter_map(|p| Some((p.t_ms as f64, p.p_fresh?)))
            .collect(),
        bands: Vec::new(),
        not_predicted: (prediction.completed == 0)
            .then(|| "no trial committed its writes".to_string()),
    };
    if let Some(m) = measured {
        curve.bands = curve.weigh_bands(m);
    }
    curve
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
        .filter_map(|b| Some((bin_middle(b), b.fresh.p?)))
        .collect()
}

/// The middle of a log-spaced bin: geometric, half the upper edge for the
/// first, twice the lower edge for the open last one.
fn bin_middle(b: &pbs::VisibilityBin) -> f64 {
    match b.to_ms {
        Some(to) if b.from_ms > 0.0 => (b.from_ms * to).sqrt(),
        Some(to) => to / 2.0,
        None => b.from_ms * 2.0,
    }
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
        let predicted: Vec<(usize, crate::plot_consistency::Curve)> = e
            .summary
            .wars
            .iter()
            .filter(|w| !w.points.is_empty())
            .map(|w| {
                (
                    0,
                    ("all reads, WARS-predicted".to_string(), w.points.clone()),
                )
            })
            .collect();
        crate::plot_consistency::visibility_plot(
            &dir.join("t-visibility"),
            "t-visibility: reads that returned the latest acknowledged write or newer",
            &curves,
            &predicted,
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

    fn shape(
        mode: Option<Mode>,
        config: Option<ClusterConfig>,
        endpoint: ReadEndpoint,
        read_from: ReadFrom,
    ) -> RunShape {
        RunShape {
            mode,
            config,
            endpoint,
            read_from,
        }
    }

    /// A write of `id` coordinated by node 1 at 0 ms, replica i (2..=n)
    /// sent at 0 and acknowledged after `rtt_ms * (i - 1)`.
    fn trace(id: u64, n: u32, rtt_ms: u64) -> WriteTrace {
        WriteTrace {
            id,
            seq: Some(id),
            key: "k".into(),
            version: id,
            coordinator: 1,
            w: 1,
            started_at_ms: 1_000,
            committed_at_ms: Some(1_000),
            replicas: (2..=n)
                .map(|i| kv_shared::events::ReplicaTrace {
                    id: i,
                    sent_at_ms: Some(1_000),
                    acked_at_ms: Some(1_000 + rtt_ms * u64::from(i - 1)),
                    failed_at_ms: None,
                })
                .collect(),
            outcome: None,
            at_ms: 1_000,
        }
    }

    /// A history of `reads` answered reads of 2 ms each.
    fn reads(reads: u64) -> History {
        History {
            ops: (0..reads)
                .map(|i| HistoryOp {
                    id: i,
                    session: 0,
                    kind: OpKind::Read,
                    key: "k".into(),
                    node: Some(1),
                    invoke_us: i * 10_000,
                    complete_us: i * 10_000 + 2_000,
                    outcome: Outcome::Ok,
                    value: None,
                    version: None,
                })
                .collect(),
            faults: Vec::new(),
        }
    }

    #[test]
    fn the_wars_curve_follows_the_traced_legs_and_the_read_targets() {
        // N = 3, W = 1: follower 2 applies 50 ms after the commit, follower
        // 3 100 ms after (half of 100 and 200 ms round trips); a read takes
        // 1 ms to reach its replica.
        let traces: Vec<WriteTrace> = (1..=20).map(|id| trace(id, 3, 100)).collect();
        let h = reads(50);
        let lf = Some(Mode::LeaderFollower);
        let local = ReadEndpoint::LocalRead;
        let any = predict(
            shape(lf, config(3, 1, 1), local, ReadFrom::All),
            &traces,
            &h,
            None,
            1,
        );
        assert_eq!(any.not_predicted, None);
        assert_eq!((any.traces, any.reads_sampled), (20, 50));
        assert_eq!(any.mean_legs_ms, [50.0, 50.0, 1.0, 1.0]);
        // Right after the commit only the leader is fresh; after 49 ms
        // follower 2 too; after 100 ms everyone.
        let at = |c: &WarsCurve, t| c.at(t).expect("predicted");
        assert!((at(&any, 0) - 1.0 / 3.0).abs() < 0.02, "{any:?}");
        assert!((at(&any, 50) - 2.0 / 3.0).abs() < 0.02, "{any:?}");
        assert_eq!(at(&any, 100), 1.0);
        let followers = predict(
            shape(lf, config(3, 1, 1), local, ReadFrom::Followers),
            &traces,
            &h,
            None,
            1,
        );
        assert_eq!(at(&followers, 0), 0.0);
        assert!((at(&followers, 50) - 0.5).abs() < 0.02, "{followers:?}");
        // Leader-follower /get with R = 2 is answered by the leader.
        let get = predict(
            shape(lf, config(3, 1, 2), ReadEndpoint::Get, ReadFrom::All),
            &traces,
            &h,
            None,
            1,
        );
        assert_eq!(
            (at(&get, 0), get.reads.as_str()),
            (1.0, "the leader's copy")
        );
        // Leaderless R = 3 of N = 3 always meets the coordinator's copy.
        let ll = predict(
            shape(
                Some(Mode::Leaderless),
                config(3, 1, 3),
                ReadEndpoint::Get,
                ReadFrom::All,
            ),
            &traces,
            &h,
            None,
            1,
        );
        assert_eq!(at(&ll, 0), 1.0);
    }

    #[test]
    fn predicted_bands_weigh_each_read_by_the_prediction_at_its_time() {
        let curve = WarsCurve {
            points: vec![(0.0, 0.2), (100.0, 0.6), (1000.0, 1.0)],
            ..WarsCurve::not("")
        };
        assert_eq!(curve.interpolate(50.0), Some(0.4));
        assert_eq!(curve.interpolate(5000.0), Some(1.0));
        let bin = |from_ms: f64, to_ms: Option<f64>, of: u64| pbs::VisibilityBin {
            from_ms,
            to_ms,
            fresh: pbs::Fraction::new(0, of),
        };
        // 10 reads around 50 ms, 30 around 10 ms (geometric middles),
        // nothing in 100–1000 ms, 5 beyond.
        let measured = pbs::Visibility {
            fresh: pbs::Fraction::new(0, 45),
            within: Vec::new(),
            bins: vec![
                bin(25.0, Some(100.0), 10),
                bin(5.0, Some(20.0), 30),
                bin(2000.0, None, 5),
            ],
        };
        let bands = curve.weigh_bands(&measured);
        let first = (10.0 * 0.4 + 30.0 * (0.2 + 0.4 * 10.0 / 100.0)) / 40.0;
        assert!((bands[0].unwrap() - first).abs() < 1e-9, "{bands:?}");
        assert_eq!(&bands[1..], [None, None, Some(1.0)]);
    }

    #[test]
    fn no_wars_curve_is_made_up() {
        let lf = Some(Mode::LeaderFollower);
        let (local, all) = (ReadEndpoint::LocalRead, ReadFrom::All);
        let traces = vec![trace(1, 3, 10)];
        let why = |c: WarsCurve| {
            assert!(c.points.is_empty());
            c.not_predicted.expect("a reason")
        };
        assert!(why(predict(
            shape(lf, config(3, 1, 1), local, all),
            &[],
            &reads(5),
            None,
            1
        ))
        .contains("trace"));
        assert!(why(predict(
            shape(lf, config(3, 1, 1), local, all),
            &traces,
            &reads(0),
            None,
            1
        ))
        .contains("read"));
        // Traces of a 3-node cluster do not cover 5 replicas.
        assert!(why(predict(
            shape(lf, config(5, 1, 1), local, all),
            &traces,
            &reads(5),
            None,
            1
        ))
        .contains("N = 5"));
        assert!(why(predict(
            shape(None, None, local, all),
            &traces,
            &reads(5),
            None,
            1
        ))
        .contains("unknown"));
        assert!(why(predict(
            shape(Some(Mode::Standalone), config(1, 1, 1), local, all),
            &traces,
            &reads(5),
            None,
            1
        ))
        .contains("one node"));
        // An unfinished trace does not count.
        let mut open = trace(1, 3, 10);
        open.replicas[1].acked_at_ms = None;
        assert!(why(predict(
            shape(lf, config(3, 1, 1), local, all),
            &[open],
            &reads(5),
            None,
            1
        ))
        .contains("trace"));
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
