//! Staleness the way the PBS paper measures it, the assignment's
//! inconsistency window, and the WARS predictor.
//!
//! Reference: Bailis, Venkataraman, Franklin, Hellerstein, Stoica,
//! "Probabilistically Bounded Staleness for Practical Partial Quorums",
//! VLDB 2012 (PBS). The paper asks two questions of a quorum system with N
//! replicas, write quorum W and read quorum R: *how long* after a write
//! commits does a read see it (**t-visibility**), and *how many versions*
//! old can a read be (**k-staleness**)? With R + W > N both answers are
//! "immediately" and "never"; with R + W ≤ N (partial quorums) they are
//! probabilities, and this module measures them on a run and predicts them.
//!
//! # Measured ([`measure`], from a [`History`])
//! Only operations that ended [`Outcome::Ok`] count: acknowledged writes
//! (a 201 with a version) and answered reads (a 200 or a 404; a 404 reads
//! as "version 0", older than every write). Times are the load tester's.
//!
//! - **The write a read must see.** For a read sent at `invoke_us`, the
//!   writes of its key whose 201 arrived at or before `invoke_us` are
//!   *acknowledged before the read*; the one among them with the highest
//!   version is the read's *latest acked write* (the version a
//!   last-writer-wins store must return from then on — with hybrid-logical
//!   clock versions this need not be the write acked last). A read with no
//!   such write is *unchecked*: nothing can be stale yet.
//! - **t-visibility.** Δ = read.invoke − latest-acked-write.complete: the
//!   paper's "t seconds after the write commits", where commit is the 201 as
//!   the client saw it. The read is *fresh* if it returned that version or
//!   a newer one, else *stale after ack*. Reported as P(fresh | Δ ≤ t) for
//!   the caller's `ts_ms` and as P(fresh | Δ in bin) over 1-2-5 log bins
//!   ([`BIN_EDGES_US`]), overall and per serving node, each with the
//!   number of reads behind it: a point with no reads says so (`p: null`),
//!   it is never a made-up 100 %. The bins are what the paper plots and
//!   what [`predict`] predicts (reads sent about t after the commit);
//!   P(fresh | Δ ≤ t) is a running share, dominated by the reads sent soon
//!   after a write, and is not comparable with a predicted point.
//! - **k-staleness.** A stale-after-ack read is `b` versions behind, where
//!   `b` counts the writes of the key acknowledged before the read was sent
//!   with versions in (returned, latest] — acknowledged writes, not version
//!   arithmetic, so it works for HLC versions and skips versions of failed
//!   writes and of writes still in flight (a lower-versioned write acked
//!   after the read was sent was not a committed version yet). The
//!   paper's "within k versions" means "one of the k newest", i.e.
//!   `b < k`: k = 1 is fresh. Reported as a histogram of `b` (1, 2, 3, ≥ 4)
//!   and P(b < k) for k = 1..=3 over the checked reads.
//! - **Inconsistency window** (the assignment's notion, not the paper's).
//!   A read *overlaps* a write of its key if their intervals intersect
//!   (`read.invoke < write.complete` and `read.complete > write.invoke`);
//!   it is *overlapping-old* if it returned a version older than the
//!   highest version among the writes it overlaps. Such a read is
//!   legitimate under every consistency level, linearizability included:
//!   the write was not acknowledged yet and may take effect after the read.
//!   The two notions are kept apart: a write in flight never makes a read
//!   stale after ack (it was not acked when the read was sent), and a read
//!   that is stale after ack is counted neither as overlapping nor as
//!   overlapping-old, so that
//!   `overlapping_old / overlapping` is the share of old answers among reads
//!   that raced a write and were otherwise fine.
//!
//! `measure` groups by key and sorts each key's acknowledged writes by
//! completion (prefix maxima of the version give the latest acked write by
//! binary search). It sweeps the reads in invocation order past a Fenwick
//! tree of counts over the version ranks of the writes acked so far
//! (versions behind), then in completion order past a max-Fenwick tree of
//! the writes already invoked (the overlap query): O(n log n).
//!
//! # Predicted ([`predict`], [`Wars`]): the WARS model
//! PBS section 5 models one write followed by one read, both sent by a
//! coordinator to all N replicas, with four one-way delays per replica i:
//! **W**ᵢ (coordinator → replica, the write), **A**ᵢ (its ack back),
//! **R**ᵢ (the read request), **S**ᵢ (the read response). Each Monte Carlo
//! trial draws them from empirical samples ([`Legs`], independently, with
//! replacement). The write commits at the W-th smallest Wᵢ + Aᵢ; the read
//! is sent t ms later, and the coordinator answers from the first R
//! responses (the R smallest Rⱼ + Sⱼ). It is fresh if one of those R
//! replicas had the write when the read reached it: Wⱼ ≤ commit + t + Rⱼ.
//! Ties between equal delays are broken at random, so that with identical
//! per-replica distributions every replica is equally likely to be fast.
//!
//! For k-staleness a trial runs [`K_MAX`] consecutive writes of the key
//! (each with fresh draws; spaced by [`WriteSpacing`]), then the read t ms
//! after the newest one commits; a replica holds the newest of the writes
//! that reached it (versions are ordered), the read returns the newest held
//! by its R repliers, and `b` is how many writes it is behind. P(b < 1) is
//! the t-visibility; P(b < k) the k-staleness at that t.
//!
//! With [`Propagation::QuorumOnly`] a write reaches only the W replicas
//! that acknowledged first (the other W legs are infinite: no anti-entropy,
//! no read repair): then the paper's closed form holds at every t,
//! P(b ≥ k) = (C(N−W, R) / C(N, R))ᵏ ([`closed_form_beyond_k`]), which
//! the tests reproduce.
//!
//! # Assumptions, and what the predictor cannot say
//! - The nodes report round trips, not one-way delays (the write traces of
//!   `/events` say when the coordinator sent a write to each replica and
//!   when the ack came back; reads are not traced): [`write_legs_from_traces`]
//!   (after taking off the wait the delay profile makes a replica do before
//!   it applies) and [`legs_from_round_trips`] split each round trip into
//!   two equal halves, which assumes symmetric links. On one machine (every node on
//!   127.0.0.1) that is the honest choice; across machines it is an
//!   approximation, and it also keeps the
//!   paper's caveat that W and R include processing time at the replica.
//! - Legs are independent: a replica that is slow for the write is not
//!   more likely to be slow for the ack or the read, and W and A are drawn
//!   separately even when they come from halves of the same round trip (so
//!   W + A has the right mean but thinner tails than the measured round
//!   trip). Bursts, GC pauses and queueing that hit several legs at once
//!   are therefore underestimated.
//! - No failures, no retries, no hinted handoff, no read repair, no
//!   anti-entropy beyond the coordinator's own sends; clocks need not be
//!   synchronized (all times are the coordinator's).
//! - The delay profile paces a coordinator's sends one after another: give
//!   the write legs per replica ([`Leg::PerReplica`]), index 0 the
//!   coordinator itself (W ≈ 0) and index i the i-th replica sent to, as
//!   [`write_legs_from_traces`] does. The read legs use the same indices:
//!   a read answered by the write's coordinator has R ≈ 0 at index 0; a read
//!   coordinated by another node (leaderless reads go to any node) is not
//!   that, and the model has no "random coordinator" choice. A client
//!   that reads one node picked at random, rather than the fastest R of N,
//!   is [`ReadTargets::RandomR`].
//! - A prediction is about one key under the modelled pattern (a write, or
//!   [`K_MAX`] writes, then one read); it says nothing about concurrent
//!   writes to the same key, load-dependent delays (the samples are what
//!   they were under the measured load) or faults. Compare it with the
//!   measured t-visibility of the same run; where they differ the
//!   difference is the model's assumptions, not noise (the Monte Carlo error
//!   is about √(p(1−p)/trials)).

use crate::history::{History, HistoryOp, Micros, Outcome};
use crate::workload::OpKind;
use kv_shared::events::WriteTrace;
use kv_shared::{NodeId, Version};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// How many versions k-staleness looks at: k = 1..=K_MAX.
pub const K_MAX: usize = 3;

/// Edges of the Δ bins of the measured t-visibility curve, in µs: bin i is
/// `[BIN_EDGES_US[i], BIN_EDGES_US[i + 1])`, the last bin is open-ended.
/// A 1-2-5 series from 0.1 ms to 10 s (log-spaced, readable edges).
pub const BIN_EDGES_US: &[Micros] = &[
    0, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

// ---------------------------------------------------------------------------
// Measured staleness: the result types
// ---------------------------------------------------------------------------

/// `count` out of `of`, and the ratio when there is something to divide.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fraction {
    /// How many reads had the property.
    pub count: u64,
    /// How many reads were looked at.
    pub of: u64,
    /// `count / of`; `None` ("no reads") when `of` is 0.
    pub p: Option<f64>,
}

impl Fraction {
    /// `count` out of `of`.
    pub fn new(count: u64, of: u64) -> Self {
        let p = (of > 0).then(|| count as f64 / of as f64);
        Fraction { count, of, p }
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.p {
            Some(p) => write!(f, "{:.1} % ({}/{})", p * 100.0, self.count, self.of),
            None => write!(f, "no reads"),
        }
    }
}

/// Everything [`measure`] found in a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Staleness {
    /// How the answered reads split up.
    pub totals: Totals,
    /// t-visibility over all checked reads.
    pub t_visibility: Visibility,
    /// t-visibility per serving node, in node order (`None`: node unknown, first).
    pub per_node: Vec<NodeVisibility>,
    /// Versions behind, for the checked reads.
    pub k_staleness: KStaleness,
    /// Overlapping-old reads among the overlapping reads (the assignment's
    /// inconsistency window; same counts as in [`Totals`]).
    pub inconsistency_window: Fraction,
}

/// How the answered reads split up. `reads = unchecked + fresh +
/// stale_after_ack`; `overlapping` and `overlapping_old` cut across the
/// first two (never the third).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Reads that ended [`Outcome::Ok`] (200 or 404): the reads considered.
    pub reads: u64,
    /// Reads with no write of their key acknowledged before they were sent.
    pub unchecked: u64,
    /// Reads that returned their latest acked write's version or a newer one.
    pub fresh: u64,
    /// Reads that returned an older version (or 404) after a newer write was acked.
    pub stale_after_ack: u64,
    /// Reads, not stale after ack, that overlap an acknowledged write of their key.
    pub overlapping: u64,
    /// Overlapping reads that returned a version older than a write they overlap.
    pub overlapping_old: u64,
}

/// P(fresh) as a function of the time since the latest acked write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visibility {
    /// Fresh reads among all checked reads (any Δ).
    pub fresh: Fraction,
    /// P(fresh | Δ ≤ t), one point per requested t.
    pub within: Vec<VisibilityPoint>,
    /// P(fresh | Δ in bin), one point per bin of [`BIN_EDGES_US`].
    pub bins: Vec<VisibilityBin>,
}

/// P(fresh | Δ ≤ t).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VisibilityPoint {
    /// t, in ms.
    pub t_ms: u64,
    /// Fresh reads among the checked reads sent at most t after their latest acked write.
    pub fresh: Fraction,
}

/// P(fresh | from ≤ Δ < to).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VisibilityBin {
    /// Lower edge, in ms (inclusive).
    pub from_ms: f64,
    /// Upper edge, in ms (exclusive); `None` for the last, open bin.
    pub to_ms: Option<f64>,
    /// Fresh reads among the checked reads in the bin.
    pub fresh: Fraction,
}

/// t-visibility of the reads one node served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeVisibility {
    /// The node that answered (`None`: not recorded).
    pub node: Option<NodeId>,
    /// Its reads' t-visibility.
    pub visibility: Visibility,
}

/// How many acknowledged versions behind the checked reads were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KStaleness {
    /// Stale-after-ack reads by how many versions they were behind.
    pub behind: Behind,
    /// P(within k versions) = P(behind < k) for k = 1..=[`K_MAX`] over the
    /// checked reads (k = 1 is P(fresh), the paper's convention).
    pub within: Vec<WithinK>,
}

/// Histogram of versions behind (stale-after-ack reads only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Behind {
    /// One acknowledged version behind.
    pub one: u64,
    /// Two.
    pub two: u64,
    /// Three.
    pub three: u64,
    /// Four or more.
    pub four_or_more: u64,
}

/// P(a read is within k versions of the latest acked write).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WithinK {
    /// k.
    pub k: u32,
    /// Checked reads fewer than k acknowledged versions behind.
    pub reads: Fraction,
}

// ---------------------------------------------------------------------------
// Measured staleness: the computation
// ---------------------------------------------------------------------------

/// Measures t-visibility, k-staleness and the inconsistency window of a
/// history (see the module documentation for the definitions). `ts_ms` are
/// the t of P(fresh | Δ ≤ t), in ms, reported in the order given.
///
/// Runs in O(n log n): a 100 000-operation history takes milliseconds.
pub fn measure(history: &History, ts_ms: &[u64]) -> Staleness {
    let mut acc = Accumulator::new(ts_ms);
    for (writes, reads) in group_by_key(history).into_values() {
        judge_key(&KeyWrites::new(writes), reads, &mut acc);
    }
    acc.finish()
}

/// The Ok writes (with a version) and Ok reads of each key.
fn group_by_key(history: &History) -> HashMap<&str, (Vec<&HistoryOp>, Vec<&HistoryOp>)> {
    let mut keys: HashMap<&str, (Vec<&HistoryOp>, Vec<&HistoryOp>)> = HashMap::new();
    for op in history.ops.iter().filter(|op| op.outcome == Outcome::Ok) {
        let entry = keys.entry(op.key.as_str()).or_default();
        match op.kind {
            OpKind::Write if op.version.is_some() => entry.0.push(op),
            OpKind::Write => {}
            OpKind::Read => entry.1.push(op),
        }
    }
    keys
}

/// The latest acked write of a read: its version and when its 201 arrived.
#[derive(Debug, Clone, Copy)]
struct Acked {
    version: Version,
    complete_us: Micros,
}

/// One key's acknowledged writes, indexed for the three questions.
struct KeyWrites<'h> {
    /// Sorted by `complete_us`.
    by_complete: Vec<&'h HistoryOp>,
    /// `latest[i]`: the highest-version write among `by_complete[..=i]`.
    latest: Vec<Acked>,
    /// Indexes into `by_complete`, sorted by `invoke_us` (the overlap sweep).
    by_invoke: Vec<usize>,
    /// Every acknowledged version, sorted (versions behind).
    versions: Vec<Version>,
    /// Per write of `by_complete`: its slot in `versions` (distinct slots
    /// for equal versions).
    slot: Vec<usize>,
}

impl<'h> KeyWrites<'h> {
    fn new(mut writes: Vec<&'h HistoryOp>) -> Self {
        writes.sort_by_key(|w| (w.complete_us, w.id));
        let mut latest: Vec<Acked> = Vec::with_capacity(writes.len());
        for w in &writes {
            let this = Acked {
                version: w.version.unwrap_or(0),
                complete_us: w.complete_us,
            };
            let best = match latest.last() {
                Some(prev) if prev.version >= this.version => *prev,
                _ => this,
            };
            latest.push(best);
        }
        let mut by_invoke: Vec<usize> = (0..writes.len()).collect();
        by_invoke.sort_by_key(|&i| writes[i].invoke_us);
        let mut by_version: Vec<usize> = (0..writes.len()).collect();
        by_version.sort_by_key(|&i| (writes[i].version.unwrap_or(0), i));
        let mut slot = vec![0; writes.len()];
        for (s, &i) in by_version.iter().enumerate() {
            slot[i] = s;
        }
        let versions = by_version
            .iter()
            .map(|&i| writes[i].version.unwrap_or(0))
            .collect();
        KeyWrites {
            by_complete: writes,
            latest,
            by_invoke,
            versions,
            slot,
        }
    }

    /// How many of `by_complete` completed at or before `invoke_us`.
    fn acked_by(&self, invoke_us: Micros) -> usize {
        self.by_complete
            .partition_point(|w| w.complete_us <= invoke_us)
    }

    /// Slots of `versions` in `(returned, latest]`.
    fn slots_between(&self, returned: Version, latest: Version) -> (usize, usize) {
        let lo = self.versions.partition_point(|&v| v <= returned);
        let hi = self.versions.partition_point(|&v| v <= latest);
        (lo, hi)
    }
}

/// Δ and versions behind of each read (`None`: unchecked), in the order of
/// `reads`. Versions behind count only the writes acknowledged before the
/// read was sent: the reads are swept in invocation order past a Fenwick
/// tree of counts over the version slots of the writes acked so far.
fn checked_reads(writes: &KeyWrites<'_>, reads: &[&HistoryOp]) -> Vec<Option<(Micros, u64)>> {
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&i| (reads[i].invoke_us, reads[i].id));
    let mut acked = CountFenwick::new(writes.by_complete.len());
    let mut added = 0;
    let mut out = vec![None; reads.len()];
    for i in order {
        let read = reads[i];
        let n = writes.acked_by(read.invoke_us);
        while added < n {
            acked.add(writes.slot[added]);
            added += 1;
        }
        let Some(latest) = n.checked_sub(1).map(|j| writes.latest[j]) else {
            continue;
        };
        let returned = read.version.unwrap_or(0);
        let behind = if returned >= latest.version {
            0
        } else {
            let (lo, hi) = writes.slots_between(returned, latest.version);
            (acked.prefix(hi) - acked.prefix(lo)).max(1)
        };
        out[i] = Some((read.invoke_us - latest.complete_us, behind));
    }
    out
}

/// What one read was, before it is counted.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    node: Option<NodeId>,
    /// Δ in µs and versions behind (0: fresh), when a write was acked before it.
    checked: Option<(Micros, u64)>,
    /// Whether it overlaps a write, and whether it returned older than one.
    overlap: Option<bool>,
}

/// Judges every read of one key; `reads` are visited in completion order so
/// that the writes invoked before each read's completion enter the overlap
/// tree in one sweep.
fn judge_key(writes: &KeyWrites<'_>, mut reads: Vec<&HistoryOp>, acc: &mut Accumulator) {
    reads.sort_by_key(|r| (r.complete_us, r.id));
    let checked = checked_reads(writes, &reads);
    let n = writes.by_complete.len();
    // Indexed by reversed completion rank, so that "completed after the
    // read was sent" is a prefix.
    let mut tree = MaxFenwick::new(n);
    let mut invoked = 0;
    for (read, checked) in reads.into_iter().zip(checked) {
        while invoked < n
            && writes.by_complete[writes.by_invoke[invoked]].invoke_us < read.complete_us
        {
            let i = writes.by_invoke[invoked];
            tree.raise(n - 1 - i, writes.by_complete[i].version.unwrap_or(0));
            invoked += 1;
        }
        let returned = read.version.unwrap_or(0);
        let stale = matches!(checked, Some((_, b)) if b > 0);
        let overlap = if stale {
            None
        } else {
            tree.prefix_max(n - writes.acked_by(read.invoke_us))
                .map(|newest| returned < newest)
        };
        acc.add(Verdict {
            node: read.node,
            checked,
            overlap,
        });
    }
}

/// A Fenwick tree of counts: add one to a slot, count a prefix.
struct CountFenwick {
    tree: Vec<u64>,
}

impl CountFenwick {
    fn new(n: usize) -> Self {
        CountFenwick { tree: vec![0; n] }
    }

    /// One more in slot `i`.
    fn add(&mut self, i: usize) {
        let mut i = i + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] += 1;
            i += i & i.wrapping_neg();
        }
    }

    /// The count over slots `0..len`.
    fn prefix(&self, len: usize) -> u64 {
        let (mut i, mut sum) = (len, 0);
        while i > 0 {
            sum += self.tree[i - 1];
            i &= i - 1;
        }
        sum
    }
}

/// A Fenwick tree of maxima: raise one slot, ask the maximum of a prefix.
struct MaxFenwick {
    tree: Vec<Option<Version>>,
}

impl MaxFenwick {
    fn new(n: usize) -> Self {
        MaxFenwick {
            tree: vec![None; n],
        }
    }

    /// Slot `i` becomes at least `v`.
    fn raise(&mut self, i: usize, v: Version) {
        let mut i = i + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = self.tree[i - 1].max(Some(v));
            i += i & i.wrapping_neg();
        }
    }

    /// The maximum over slots `0..len` (`None`: all empty).
    fn prefix_max(&self, len: usize) -> Option<Version> {
        let (mut i, mut best) = (len, None);
        while i > 0 {
            best = best.max(self.tree[i - 1]);
            i &= i - 1;
        }
        best
    }
}

/// Fresh / checked counts for the points of one t-visibility curve.
#[derive(Debug, Clone)]
struct CurveCounts {
    fresh: u64,
    checked: u64,
    within: Vec<(u64, u64)>,
    bins: Vec<(u64, u64)>,
}

impl CurveCounts {
    fn new(points: usize) -> Self {
        CurveCounts {
            fresh: 0,
            checked: 0,
            within: vec![(0, 0); points],
            bins: vec![(0, 0); BIN_EDGES_US.len()],
        }
    }

    fn add(&mut self, ts_us: &[Micros], delta_us: Micros, fresh: bool) {
        let f = u64::from(fresh);
        self.checked += 1;
        self.fresh += f;
        for (point, &t) in self.within.iter_mut().zip(ts_us) {
            if delta_us <= t {
                point.0 += f;
                point.1 += 1;
            }
        }
        let bin = BIN_EDGES_US.partition_point(|&e| e <= delta_us) - 1;
        self.bins[bin].0 += f;
        self.bins[bin].1 += 1;
    }

    fn finish(&self, ts_ms: &[u64]) -> Visibility {
        let within = ts_ms
            .iter()
            .zip(&self.within)
            .map(|(&t_ms, &(f, n))| VisibilityPoint {
                t_ms,
                fresh: Fraction::new(f, n),
            })
            .collect();
        let bins = self
            .bins
            .iter()
            .enumerate()
            .map(|(i, &(f, n))| VisibilityBin {
                from_ms: BIN_EDGES_US[i] as f64 / 1000.0,
                to_ms: BIN_EDGES_US.get(i + 1).map(|&e| e as f64 / 1000.0),
                fresh: Fraction::new(f, n),
            })
            .collect();
        Visibility {
            fresh: Fraction::new(self.fresh, self.checked),
            within,
            bins,
        }
    }
}

/// Running counts of [`measure`].
struct Accumulator {
    ts_ms: Vec<u64>,
    ts_us: Vec<Micros>,
    totals: Totals,
    overall: CurveCounts,
    per_node: BTreeMap<Option<NodeId>, CurveCounts>,
    behind: Behind,
    /// Checked reads by versions behind, capped at K_MAX (index K_MAX: ≥ K_MAX).
    by_behind: [u64; K_MAX + 1],
}

impl Accumulator {
    fn new(ts_ms: &[u64]) -> Self {
        Accumulator {
            ts_ms: ts_ms.to_vec(),
            ts_us: ts_ms.iter().map(|t| t.saturating_mul(1000)).collect(),
            totals: Totals::default(),
            overall: CurveCounts::new(ts_ms.len()),
            per_node: BTreeMap::new(),
            behind: Behind::default(),
            by_behind: [0; K_MAX + 1],
        }
    }

    fn add(&mut self, v: Verdict) {
        self.totals.reads += 1;
        if let Some(old) = v.overlap {
            self.totals.overlapping += 1;
            self.totals.overlapping_old += u64::from(old);
        }
        let Some((delta_us, behind)) = v.checked else {
            self.totals.unchecked += 1;
            return;
        };
        let fresh = behind == 0;
        self.overall.add(&self.ts_us, delta_us, fresh);
        let points = self.ts_us.len();
        self.per_node
            .entry(v.node)
            .or_insert_with(|| CurveCounts::new(points))
            .add(&self.ts_us, delta_us, fresh);
        self.by_behind[(behind as usize).min(K_MAX)] += 1;
        match behind {
            0 => self.totals.fresh += 1,
            1 => self.behind.one += 1,
            2 => self.behind.two += 1,
            3 => self.behind.three += 1,
            _ => self.behind.four_or_more += 1,
        }
        self.totals.stale_after_ack += u64::from(!fresh);
    }

    fn finish(self) -> Staleness {
        let checked = self.totals.fresh + self.totals.stale_after_ack;
        let within = (1..=K_MAX)
            .map(|k| WithinK {
                k: k as u32,
                reads: Fraction::new(self.by_behind[..k].iter().sum(), checked),
            })
            .collect();
        Staleness {
            totals: self.totals,
            t_visibility: self.overall.finish(&self.ts_ms),
            per_node: self
                .per_node
                .iter()
                .map(|(&node, counts)| NodeVisibility {
                    node,
                    visibility: counts.finish(&self.ts_ms),
                })
                .collect(),
            k_staleness: KStaleness {
                behind: self.behind,
                within,
            },
            inconsistency_window: Fraction::new(
                self.totals.overlapping_old,
                self.totals.overlapping,
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// The WARS model: inputs
// ---------------------------------------------------------------------------

/// Empirical samples of one leg, in ms (`f64::INFINITY`: never arrives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// One distribution for every replica.
    Shared(Vec<f64>),
    /// One distribution per replica index (at least N of them; extra ones
    /// are ignored), e.g. because the leader sends to followers in turn.
    PerReplica(Vec<Vec<f64>>),
}

impl Leg {
    /// A leg from one sample set per replica; a single set is [`Leg::Shared`].
    pub fn from_sets(mut sets: Vec<Vec<f64>>) -> Self {
        if sets.len() == 1 {
            Leg::Shared(sets.remove(0))
        } else {
            Leg::PerReplica(sets)
        }
    }

    /// A leg whose every draw is `ms` (tests, and "instant" legs).
    pub fn constant(ms: f64) -> Self {
        Leg::Shared(vec![ms])
    }

    /// The mean over the first `n` replicas' samples (each replica weighs
    /// the same), in ms.
    pub fn mean(&self, n: usize) -> f64 {
        let avg = |set: &Vec<f64>| set.iter().sum::<f64>() / set.len().max(1) as f64;
        match self {
            Leg::Shared(set) => avg(set),
            Leg::PerReplica(sets) => {
                let sets = &sets[..n.min(sets.len())];
                sets.iter().map(avg).sum::<f64>() / sets.len().max(1) as f64
            }
        }
    }

    /// One draw for replica `i`.
    fn sample(&self, i: usize, rng: &mut ChaCha8Rng) -> f64 {
        let set = match self {
            Leg::Shared(set) => set,
            Leg::PerReplica(sets) => &sets[i],
        };
        set[rng.random_range(0..set.len())]
    }

    /// Whether the leg can be drawn for `n` replicas; the problem if not.
    fn check(&self, n: usize) -> std::result::Result<(), String> {
        let sets: Vec<&Vec<f64>> = match self {
            Leg::Shared(set) => vec![set],
            Leg::PerReplica(sets) if sets.len() < n => {
                return Err(format!(
                    "{} per-replica sample sets for N = {n}",
                    sets.len()
                ))
            }
            Leg::PerReplica(sets) => sets[..n].iter().collect(),
        };
        for set in sets {
            if set.is_empty() {
                return Err("a sample set is empty".into());
            }
            if let Some(bad) = set.iter().find(|x| x.is_nan() || **x < 0.0) {
                return Err(format!("sample {bad} is not a delay"));
            }
        }
        Ok(())
    }
}

/// The four one-way delays of the WARS model, each as empirical samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Legs {
    /// W: coordinator → replica, until the replica applied the write.
    pub w: Leg,
    /// A: the replica's acknowledgement back to the coordinator.
    pub a: Leg,
    /// R: coordinator → replica, until the replica read its copy.
    pub r: Leg,
    /// S: the read response back to the coordinator.
    pub s: Leg,
}

impl Legs {
    /// All four legs with the same constant delay (0.0: "instant").
    pub fn constant(ms: f64) -> Self {
        Legs {
            w: Leg::constant(ms),
            a: Leg::constant(ms),
            r: Leg::constant(ms),
            s: Leg::constant(ms),
        }
    }

    /// Whether every leg can be drawn for `n` replicas.
    ///
    /// # Errors
    /// [`crate::Error::Config`]: an empty sample set, fewer per-replica sets
    /// than replicas, or a sample that is NaN or negative.
    pub fn validate(&self, n: u32) -> crate::Result<()> {
        for (name, leg) in [
            ("W", &self.w),
            ("A", &self.a),
            ("R", &self.r),
            ("S", &self.s),
        ] {
            leg.check(n as usize)
                .map_err(|e| crate::Error::Config(format!("WARS leg {name}: {e}")))?;
        }
        Ok(())
    }
}

/// Turns per-replica round trips (ms) into [`Legs`] by splitting every round
/// trip into two equal halves: W = A = write round trip / 2 and R = S = read
/// round trip / 2. This assumes symmetric links, which is the honest choice
/// when all nodes share one machine (the nodes report round trips, never
/// one-way delays).
///
/// `write_rtts_ms[i]`: the round trips the leader or coordinator saw for
/// writes to replica i; `read_rtts_ms[i]`: the remote-read round trips to
/// replica i. Index i is the same replica in both. A single inner vector is
/// one distribution for all replicas ([`Leg::Shared`]). Check the result
/// with [`Legs::validate`].
pub fn legs_from_round_trips(write_rtts_ms: &[Vec<f64>], read_rtts_ms: &[Vec<f64>]) -> Legs {
    let halves = |rtts: &[Vec<f64>]| {
        Leg::from_sets(
            rtts.iter()
                .map(|set| set.iter().map(|rtt| rtt / 2.0).collect())
                .collect(),
        )
    };
    Legs {
        w: halves(write_rtts_ms),
        a: halves(write_rtts_ms),
        r: halves(read_rtts_ms),
        s: halves(read_rtts_ms),
    }
}

/// The W and A legs of the writes the nodes traced
/// ([`WriteTrace`], from the `/events` stream), per replica in the order the
/// coordinator sent to them: index 0 is the coordinator itself (it applies
/// the write before sending, so W = A = 0), index i the i-th replica it sent
/// to. A replica waits `apply_delay_ms` after receiving a write before it
/// applies and acknowledges it (the delay profile's ack delay); the rest of
/// the round trip is split in halves. So replica i's W is the time from the
/// coordinator accepting the write to sending it to that replica (the delay
/// profile's send pacing) plus the wait plus half the rest; its A is the
/// other half. Only traces in which every
/// replica acknowledged count (and those whose replica count is the most
/// common one, so that the indices line up); `None` when there are none.
///
/// The timestamps are whole ms of the coordinator's clock, so legs under a
/// few ms are coarse; the read legs have no trace and come from elsewhere
/// (e.g. [`legs_from_round_trips`] over the delay profile's remote-read
/// delay plus a measured base).
pub fn write_legs_from_traces(traces: &[WriteTrace], apply_delay_ms: f64) -> Option<(Leg, Leg)> {
    let done: Vec<&WriteTrace> = traces.iter().filter(|t| t.fully_acked()).collect();
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for t in &done {
        *sizes.entry(t.replicas.len()).or_default() += 1;
    }
    let (&peers, _) = sizes.iter().max_by_key(|&(size, count)| (*count, *size))?;
    let mut w: Vec<Vec<f64>> = (0..=peers)
        .map(|i| if i == 0 { vec![0.0] } else { Vec::new() })
        .collect();
    let mut a = w.clone();
    for t in done.iter().filter(|t| t.replicas.len() == peers) {
        let mut sent: Vec<(u64, u64)> = t
            .replicas
            .iter()
            .filter_map(|r| Some((r.sent_at_ms?, r.acked_at_ms?)))
            .collect();
        sent.sort_unstable();
        for (i, (at, acked)) in sent.into_iter().enumerate() {
            let rtt = acked.saturating_sub(at) as f64;
            let wait = apply_delay_ms.clamp(0.0, rtt);
            let half = (rtt - wait) / 2.0;
            w[i + 1].push(at.saturating_sub(t.started_at_ms) as f64 + wait + half);
            a[i + 1].push(half);
        }
    }
    if w.iter().any(Vec::is_empty) {
        return None;
    }
    Some((Leg::PerReplica(w), Leg::PerReplica(a)))
}

/// Which replicas ever apply a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// The coordinator sends the write to all N; replica i applies it after Wᵢ
    /// (the WARS model; the store's replication does this).
    AllReplicas,
    /// Only the W replicas that acknowledged first ever apply it (the others'
    /// W legs are infinite): the setting of the paper's closed form.
    QuorumOnly,
}

/// Which replicas a read's answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadTargets {
    /// Sent to all N, answered from the first R responses (the WARS model).
    FastestR,
    /// Sent to R replicas picked at random and answered when all R replied
    /// (a client that reads one node of its choice: R = 1).
    RandomR,
    /// As [`ReadTargets::RandomR`] among every replica but the coordinator
    /// (index 0): reads spread over the followers only. Needs R < N.
    RandomRNotCoordinator,
    /// Answered by the coordinator's copy alone (index 0): the leader
    /// answering a read, as leader-follower `/get` does.
    Coordinator,
}

/// When the consecutive writes of the k-staleness trial are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteSpacing {
    /// Each write is sent when the previous one commits (one writer, closed loop).
    BackToBack,
    /// A write every so many ms, whether or not the previous one committed.
    EveryMs(f64),
}

/// A WARS model: the quorum sizes and the modelling choices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wars {
    /// Replicas.
    pub n: u32,
    /// Write quorum: acknowledgements the coordinator waits for.
    pub w: u32,
    /// Read quorum: responses the coordinator waits for.
    pub r: u32,
    /// Which replicas apply a write.
    pub propagation: Propagation,
    /// Which replicas answer a read.
    pub reads: ReadTargets,
    /// Spacing of the writes in the k-staleness trial.
    pub spacing: WriteSpacing,
}

// ---------------------------------------------------------------------------
// The WARS model: outputs
// ---------------------------------------------------------------------------

/// What [`Wars::predict`] expects of reads t ms after a write commits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The model.
    pub model: Wars,
    /// Trials run.
    pub trials: u32,
    /// Trials in which every write committed and the read was answered (the
    /// others had too many infinite legs); the probabilities are over these.
    pub completed: u32,
    /// One point per requested t.
    pub points: Vec<PredictedPoint>,
    /// Commit latency of the newest write (W-th smallest W + A).
    pub write_latency_ms: Option<LatencySummary>,
    /// Read latency (R-th smallest R + S, or the slowest of the R picked).
    pub read_latency_ms: Option<LatencySummary>,
}

/// Predicted staleness of a read sent t ms after the newest write committed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PredictedPoint {
    /// t, in ms.
    pub t_ms: u64,
    /// P(the read returns the newest write): the t-visibility.
    pub p_fresh: Option<f64>,
    /// P(within k versions) = P(fewer than k writes behind), k = 1..=[`K_MAX`];
    /// `p_within_k[0] == p_fresh`.
    pub p_within_k: [Option<f64>; K_MAX],
}

/// Mean and percentiles of simulated latencies, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl LatencySummary {
    fn of(mut xs: Vec<f64>) -> Option<Self> {
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
        Some(LatencySummary {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
        })
    }
}

/// The paper's closed form for partial quorums without propagation: the
/// probability that a read misses all of the k newest writes (is k or more
/// versions behind, `b ≥ k`), (C(N−W, R) / C(N, R))ᵏ, when every write
/// reaches a random W-set and every read asks a random R-set. With
/// R + W > N it is 0.
pub fn closed_form_beyond_k(n: u32, w: u32, r: u32, k: u32) -> f64 {
    let miss = binomial(n.saturating_sub(w), r) / binomial(n, r);
    miss.powi(k as i32)
}

/// The paper's k-staleness p_sk = 1 − (C(N−W, R) / C(N, R))ᵏ: the
/// probability that a read returns one of the k newest writes (`b < k`),
/// without propagation beyond the write quorum (PBS, equation 2).
pub fn closed_form_within_k(n: u32, w: u32, r: u32, k: u32) -> f64 {
    1.0 - closed_form_beyond_k(n, w, r, k)
}

/// C(n, k) as a float (0 when k > n).
fn binomial(n: u32, k: u32) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |c, i| c * f64::from(n - i) / f64::from(i + 1))
}

// ---------------------------------------------------------------------------
// The WARS model: the Monte Carlo
// ---------------------------------------------------------------------------

/// Predicts t-visibility and k-staleness with the WARS model: writes sent to
/// all N replicas, reads answered by the fastest R, the k-staleness writes
/// back to back. See [`Wars`] for the other choices.
///
/// # Panics
/// If `w` or `r` is not in `1..=n`, or `legs` fails [`Legs::validate`].
pub fn predict(
    n: u32,
    w: u32,
    r: u32,
    legs: &Legs,
    ts_ms: &[u64],
    trials: u32,
    seed: u64,
) -> Prediction {
    Wars::new(n, w, r).predict(legs, ts_ms, trials, seed)
}

/// Per-trial buffers, reused.
struct Scratch {
    /// `arrive[j * n + i]`: when replica i applied write j (ms, coordinator clock).
    arrive: Vec<f64>,
    w: Vec<f64>,
    ack: Vec<f64>,
    r: Vec<f64>,
    resp: Vec<f64>,
    order: Vec<usize>,
}

/// What one trial produced.
struct Trial {
    write_latency: f64,
    read_latency: f64,
}

impl Wars {
    /// The paper's WARS model: full propagation, fastest-R reads, writes
    /// back to back.
    pub fn new(n: u32, w: u32, r: u32) -> Self {
        Wars {
            n,
            w,
            r,
            propagation: Propagation::AllReplicas,
            reads: ReadTargets::FastestR,
            spacing: WriteSpacing::BackToBack,
        }
    }

    /// Runs `trials` seeded Monte Carlo trials; every t of `ts_ms` (ms after
    /// the newest write committed) is judged on the same draws, so the
    /// predicted curve never falls as t grows.
    ///
    /// # Panics
    /// If `w` or `r` is not in `1..=n`, or `legs` fails [`Legs::validate`].
    pub fn predict(&self, legs: &Legs, ts_ms: &[u64], trials: u32, seed: u64) -> Prediction {
        assert!(
            (1..=self.n).contains(&self.w) && (1..=self.n).contains(&self.r),
            "WARS needs 1 ≤ W, R ≤ N (N = {}, W = {}, R = {})",
            self.n,
            self.w,
            self.r
        );
        assert!(
            match self.reads {
                ReadTargets::RandomRNotCoordinator => self.r < self.n,
                ReadTargets::Coordinator => self.r == 1,
                ReadTargets::FastestR | ReadTargets::RandomR => true,
            },
            "{:?} cannot read R = {} of N = {}",
            self.reads,
            self.r,
            self.n
        );
        if let Err(e) = legs.validate(self.n) {
            panic!("{e}");
        }
        let n = self.n as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Scratch {
            arrive: vec![0.0; K_MAX * n],
            w: vec![0.0; n],
            ack: vec![0.0; n],
            r: vec![0.0; n],
            resp: vec![0.0; n],
            order: (0..n).collect(),
        };
        // behind[t][b]: completed trials whose read was b writes behind (b = K_MAX: none seen).
        let mut behind = vec![[0u32; K_MAX + 1]; ts_ms.len()];
        let (mut write_lat, mut read_lat) = (Vec::new(), Vec::new());
        for _ in 0..trials {
            let Some(trial) = self.trial(legs, ts_ms, &mut rng, &mut s, &mut behind) else {
                continue;
            };
            write_lat.push(trial.write_latency);
            read_lat.push(trial.read_latency);
        }
        let completed = write_lat.len() as u32;
        Prediction {
            model: *self,
            trials,
            completed,
            points: ts_ms
                .iter()
                .zip(&behind)
                .map(|(&t_ms, counts)| point(t_ms, counts, completed))
                .collect(),
            write_latency_ms: LatencySummary::of(write_lat),
            read_latency_ms: LatencySummary::of(read_lat),
        }
    }

    /// One trial: K_MAX writes, then one read judged at every t. `None` when
    /// a write never commits or the read is never answered.
    fn trial(
        &self,
        legs: &Legs,
        ts_ms: &[u64],
        rng: &mut ChaCha8Rng,
        s: &mut Scratch,
        behind: &mut [[u32; K_MAX + 1]],
    ) -> Option<Trial> {
        let (mut send, mut commit) = (0.0, 0.0);
        for j in 0..K_MAX {
            if j > 0 {
                send = match self.spacing {
                    WriteSpacing::BackToBack => commit,
                    WriteSpacing::EveryMs(ms) => send + ms,
                };
            }
            commit = send + self.write(legs, j, send, rng, s)?;
        }
        let write_latency = commit - send;
        let read_latency = self.read(legs, rng, s)?;
        let n = self.n as usize;
        for (&t, counts) in ts_ms.iter().zip(behind.iter_mut()) {
            let read_at = commit + t as f64;
            let newest = s.order[..self.r as usize]
                .iter()
                .filter_map(|&i| {
                    (0..K_MAX)
                        .rev()
                        .find(|&j| s.arrive[j * n + i] <= read_at + s.r[i])
                })
                .max();
            counts[newest.map_or(K_MAX, |j| K_MAX - 1 - j)] += 1;
        }
        Some(Trial {
            write_latency,
            read_latency,
        })
    }

    /// Draws write `j` sent at `send`: fills its arrival times and returns
    /// its commit latency, `None` if fewer than W acknowledgements ever come.
    fn write(
        &self,
        legs: &Legs,
        j: usize,
        send: f64,
        rng: &mut ChaCha8Rng,
        s: &mut Scratch,
    ) -> Option<f64> {
        let n = self.n as usize;
        for i in 0..n {
            s.w[i] = legs.w.sample(i, rng);
            s.ack[i] = s.w[i] + legs.a.sample(i, rng);
        }
        rank(&mut s.order, &s.ack, rng);
        let latency = s.ack[s.order[self.w as usize - 1]];
        if !latency.is_finite() {
            return None;
        }
        for i in 0..n {
            s.arrive[j * n + i] = send + s.w[i];
        }
        if self.propagation == Propagation::QuorumOnly {
            for &i in &s.order[self.w as usize..] {
                s.arrive[j * n + i] = f64::INFINITY;
            }
        }
        Some(latency)
    }

    /// Draws the read: fills `s.r`, leaves the answering replicas first in
    /// `s.order`, and returns the read latency (`None`: never answered).
    fn read(&self, legs: &Legs, rng: &mut ChaCha8Rng, s: &mut Scratch) -> Option<f64> {
        for i in 0..self.n as usize {
            s.r[i] = legs.r.sample(i, rng);
            s.resp[i] = s.r[i] + legs.s.sample(i, rng);
        }
        let r = self.r as usize;
        match self.reads {
            ReadTargets::FastestR => rank(&mut s.order, &s.resp, rng),
            ReadTargets::RandomR => s.order.shuffle(rng),
            ReadTargets::RandomRNotCoordinator | ReadTargets::Coordinator => {
                // [1..n shuffled, 0]: the coordinator last, or first.
                s.order.sort_unstable();
                s.order.rotate_left(1);
                let n = s.order.len();
                s.order[..n - 1].shuffle(rng);
                if self.reads == ReadTargets::Coordinator {
                    s.order.rotate_right(1);
                }
            }
        }
        let latency = s.order[..r].iter().map(|&i| s.resp[i]).fold(0.0, f64::max);
        latency.is_finite().then_some(latency)
    }
}

/// Orders replica indexes by `delay`, ties broken at random (shuffle, then
/// a stable sort), so that no replica is favoured by its index.
fn rank(order: &mut [usize], delay: &[f64], rng: &mut ChaCha8Rng) {
    order.shuffle(rng);
    order.sort_by(|&a, &b| delay[a].total_cmp(&delay[b]));
}

/// A predicted point from the behind-counts of one t.
fn point(t_ms: u64, counts: &[u32; K_MAX + 1], completed: u32) -> PredictedPoint {
    let p = |k: usize| {
        (completed > 0).then(|| f64::from(counts[..k].iter().sum::<u32>()) / f64::from(completed))
    };
    let p_within_k = std::array::from_fn(|i| p(i + 1));
    PredictedPoint {
        t_ms,
        p_fresh: p_within_k[0],
        p_within_k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &[u64] = &[0, 10, 50, 100];

    fn op(
        id: u64,
        kind: OpKind,
        key: &str,
        node: u32,
        span_ms: (f64, f64),
        version: Option<Version>,
    ) -> HistoryOp {
        HistoryOp {
            id,
            session: id as u32,
            kind,
            key: key.into(),
            node: Some(node),
            invoke_us: (span_ms.0 * 1000.0) as Micros,
            complete_us: (span_ms.1 * 1000.0) as Micros,
            outcome: Outcome::Ok,
            value: version.map(|v| format!("v{v}")),
            version,
        }
    }

    fn write(id: u64, key: &str, span_ms: (f64, f64), version: Version) -> HistoryOp {
        op(id, OpKind::Write, key, 1, span_ms, Some(version))
    }

    fn read(
        id: u64,
        key: &str,
        node: u32,
        span_ms: (f64, f64),
        version: Option<Version>,
    ) -> HistoryOp {
        op(id, OpKind::Read, key, node, span_ms, version)
    }

    fn history(ops: Vec<HistoryOp>) -> History {
        History {
            ops,
            faults: vec![],
        }
    }

    /// A fresh read, a stale read 50 ms after an ack, an overlapping old
    /// read, a read with no preceding write, and noise that must not count.
    fn story() -> History {
        let mut failed = read(9, "a", 2, (30.0, 31.0), Some(0));
        failed.outcome = Outcome::Failed;
        let mut unknown = write(10, "a", (300.0, 400.0), 99);
        unknown.outcome = Outcome::Indeterminate;
        history(vec![
            write(0, "a", (0.0, 10.0), 1),
            read(1, "a", 2, (20.0, 21.0), Some(1)), // fresh, Δ = 10 ms
            write(2, "a", (100.0, 110.0), 2),
            read(3, "a", 3, (160.0, 162.0), Some(1)), // stale after ack, Δ = 50 ms, 1 behind
            write(4, "a", (200.0, 220.0), 3),
            read(5, "a", 2, (205.0, 207.0), Some(2)), // fresh (Δ = 95 ms), overlaps v3: old
            read(6, "b", 3, (5.0, 6.0), None),        // no write of "b" before: unchecked
            failed,
            unknown,
        ])
    }

    #[test]
    fn the_story_gives_the_numbers_computed_by_hand() {
        // Four answered reads: two fresh, one stale after ack, one unchecked;
        // the overlapping read is fresh and old at once.
        let m = measure(&story(), TS);
        assert_eq!(
            m.totals,
            Totals {
                reads: 4,
                unchecked: 1,
                fresh: 2,
                stale_after_ack: 1,
                overlapping: 1,
                overlapping_old: 1,
            }
        );
        let within: Vec<(u64, u64)> = m
            .t_visibility
            .within
            .iter()
            .map(|p| (p.fresh.count, p.fresh.of))
            .collect();
        assert_eq!(within, vec![(0, 0), (1, 1), (1, 2), (2, 3)]);
        assert_eq!(
            m.t_visibility.within[0].fresh.p, None,
            "no reads, not 100 %"
        );
        assert_eq!(m.t_visibility.fresh, Fraction::new(2, 3));
        assert_eq!(m.inconsistency_window, Fraction::new(1, 1));
        assert_eq!(
            m.k_staleness.behind,
            Behind {
                one: 1,
                ..Behind::default()
            }
        );
        let within_k: Vec<Fraction> = m.k_staleness.within.iter().map(|w| w.reads).collect();
        assert_eq!(
            within_k,
            vec![
                Fraction::new(2, 3),
                Fraction::new(3, 3),
                Fraction::new(3, 3)
            ]
        );
    }

    #[test]
    fn bins_and_nodes_split_the_same_reads() {
        // Δ = 10 ms falls in [10, 20); Δ = 50 and 95 ms in [50, 100); node 2
        // served both fresh reads, node 3 the stale one.
        let m = measure(&story(), TS);
        let bin = |from: f64| {
            m.t_visibility
                .bins
                .iter()
                .find(|b| b.from_ms == from)
                .unwrap()
                .fresh
        };
        assert_eq!(bin(10.0), Fraction::new(1, 1));
        assert_eq!(bin(50.0), Fraction::new(1, 2));
        assert_eq!(bin(0.0), Fraction::new(0, 0));
        let occupied: u64 = m.t_visibility.bins.iter().map(|b| b.fresh.of).sum();
        assert_eq!(occupied, 3);
        assert_eq!(m.t_visibility.bins.last().unwrap().to_ms, None);
        let nodes: Vec<(Option<u32>, Fraction)> = m
            .per_node
            .iter()
            .map(|n| (n.node, n.visibility.fresh))
            .collect();
        assert_eq!(
            nodes,
            vec![
                (Some(2), Fraction::new(2, 2)),
                (Some(3), Fraction::new(0, 1))
            ]
        );
    }

    #[test]
    fn versions_behind_count_acked_writes_not_version_numbers() {
        // HLC-like versions 100, 250, 400: a 404 after all three were acked is
        // three versions behind, a read of 100 two behind.
        let h = history(vec![
            write(0, "k", (0.0, 1.0), 100),
            write(1, "k", (2.0, 3.0), 250),
            write(2, "k", (4.0, 5.0), 400),
            read(3, "k", 1, (10.0, 11.0), None),
            read(4, "k", 1, (12.0, 13.0), Some(100)),
        ]);
        let m = measure(&h, TS);
        assert_eq!(
            m.k_staleness.behind,
            Behind {
                two: 1,
                three: 1,
                ..Behind::default()
            }
        );
        assert_eq!(m.k_staleness.within[2].reads, Fraction::new(1, 2));
    }

    #[test]
    fn the_highest_acked_version_is_the_one_to_see() {
        // Concurrent writes acked out of version order: v5 at 10 ms, v4 at
        // 12 ms. A read of v4 at 20 ms is stale; Δ counts from v5's ack.
        let h = history(vec![
            write(0, "k", (0.0, 10.0), 5),
            write(1, "k", (1.0, 12.0), 4),
            read(2, "k", 1, (20.0, 21.0), Some(4)),
        ]);
        let m = measure(&h, &[9, 10]);
        assert_eq!(m.totals.stale_after_ack, 1);
        assert_eq!(m.t_visibility.within[0].fresh, Fraction::new(0, 0));
        assert_eq!(m.t_visibility.within[1].fresh, Fraction::new(0, 1));
    }

    #[test]
    fn a_read_racing_a_write_is_never_stale_after_ack() {
        // The first read overlaps the only write and misses it; the second
        // overlaps it and sees it. Neither is checked; one is old.
        let h = history(vec![
            write(0, "k", (10.0, 20.0), 1),
            read(1, "k", 1, (5.0, 15.0), None),
            read(2, "k", 1, (12.0, 25.0), Some(1)),
            read(3, "k", 1, (20.0, 21.0), Some(1)),
        ]);
        let m = measure(&h, TS);
        assert_eq!(m.totals.stale_after_ack, 0);
        assert_eq!(m.totals.unchecked, 2);
        assert_eq!(m.inconsistency_window, Fraction::new(1, 2));
    }

    #[test]
    fn a_large_history_is_measured_in_one_sweep() {
        // 100 000 operations over 100 keys; the counts add up.
        let mut ops = Vec::new();
        for i in 0..100_000u64 {
            let key = format!("k{}", i % 100);
            let at = i as f64 * 0.1;
            if i % 4 == 0 {
                ops.push(write(i, &key, (at, at + 3.0), i / 4 + 1));
            } else {
                let seen = (i / 4).saturating_sub(i % 3);
                ops.push(read(i, &key, (i % 3) as u32, (at, at + 1.0), Some(seen)));
            }
        }
        let m = measure(&history(ops), TS);
        let t = m.totals;
        assert_eq!(t.reads, 75_000);
        assert_eq!(t.reads, t.unchecked + t.fresh + t.stale_after_ack);
        let behind = m.k_staleness.behind;
        assert_eq!(
            behind.one + behind.two + behind.three + behind.four_or_more,
            t.stale_after_ack
        );
    }

    fn beyond(p: &PredictedPoint, k: usize) -> f64 {
        1.0 - p.p_within_k[k - 1].unwrap()
    }

    fn spread() -> Legs {
        let samples: Vec<f64> = (1..=20).map(|i| f64::from(i) * 0.5).collect();
        Legs {
            w: Leg::Shared(samples.clone()),
            a: Leg::Shared(samples.clone()),
            r: Leg::Shared(samples.clone()),
            s: Leg::Shared(samples),
        }
    }

    #[test]
    fn versions_behind_count_only_writes_acked_before_the_read() {
        // v3 acked at 2 ms, v5 at 10 ms, v4 (sent at 1 ms) only at 30 ms. A
        // read of v3 sent at 20 ms is one committed version behind (v5), not
        // two: v4 was still in flight. The same read sent at 40 ms is two.
        let h = history(vec![
            write(0, "k", (0.0, 2.0), 3),
            write(1, "k", (1.0, 30.0), 4),
            write(2, "k", (3.0, 10.0), 5),
            read(3, "k", 1, (20.0, 21.0), Some(3)),
            read(4, "k", 1, (40.0, 41.0), Some(3)),
        ]);
        let m = measure(&h, TS);
        assert_eq!(
            m.k_staleness.behind,
            Behind {
                one: 1,
                two: 1,
                ..Behind::default()
            }
        );
        // Stale, so not counted as overlapping v4 although it did.
        assert_eq!(m.totals.overlapping, 0);
    }

    #[test]
    fn a_404_is_unchecked_before_any_ack_and_stale_after_one() {
        // Before the first ack nothing can be stale; after it a 404 is one
        // version behind, Δ from the ack.
        let h = history(vec![
            read(0, "k", 2, (0.0, 1.0), None),
            write(1, "k", (2.0, 5.0), 1),
            read(2, "k", 2, (8.0, 9.0), None),
        ]);
        let m = measure(&h, &[2, 3]);
        assert_eq!(m.totals.unchecked, 1);
        assert_eq!(m.totals.stale_after_ack, 1);
        assert_eq!(m.k_staleness.behind.one, 1);
        assert_eq!(m.t_visibility.within[0].fresh, Fraction::new(0, 0));
        assert_eq!(m.t_visibility.within[1].fresh, Fraction::new(0, 1));
    }

    #[test]
    fn the_closed_form_is_the_papers() {
        // N = 3, R = W = 1: 2/3 of reads miss one write, 4/9 miss two;
        // N = 5, W = R = 2: C(3,2)/C(5,2) = 3/10; R + W > N never misses.
        assert!((closed_form_beyond_k(3, 1, 1, 1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((closed_form_within_k(3, 1, 1, 2) - 5.0 / 9.0).abs() < 1e-12);
        assert!((closed_form_beyond_k(5, 2, 2, 1) - 0.3).abs() < 1e-12);
        assert_eq!(closed_form_beyond_k(3, 2, 2, 1), 0.0);
        assert_eq!(closed_form_within_k(5, 3, 3, 1), 1.0);
    }

    #[test]
    fn without_propagation_the_closed_form_holds() {
        // N = 3, R = W = 1, writes reach only their W replica:
        // P(k or more versions behind) = (C(2,1) / C(3,1))^k = (2/3)^k.
        // Tolerance 0.005 on 200 000 trials: the Monte Carlo standard error
        // is √(p(1−p)/n) ≤ 0.0011, so this is about 4.5 σ.
        let model = Wars {
            propagation: Propagation::QuorumOnly,
            ..Wars::new(3, 1, 1)
        };
        let p = model.predict(&spread(), &[0, 100], 200_000, 7);
        assert_eq!(p.completed, 200_000);
        for point in &p.points {
            for k in 1..=3 {
                let expected = (2.0f64 / 3.0).powi(k as i32);
                assert!((closed_form_beyond_k(3, 1, 1, k as u32) - expected).abs() < 1e-12);
                let got = beyond(point, k);
                assert!(
                    (got - expected).abs() < 0.005,
                    "k = {k}, t = {}: {got} vs {expected}",
                    point.t_ms
                );
            }
        }
    }

    #[test]
    fn strict_quorums_are_always_fresh() {
        // W + R > N: the read quorum meets the write quorum, at every t ≥ 0.
        for (n, w, r) in [(3, 2, 2), (3, 1, 3), (3, 3, 1), (5, 3, 3)] {
            let p = predict(n, w, r, &spread(), &[0, 1, 10], 20_000, 1);
            for point in &p.points {
                assert_eq!(
                    point.p_fresh,
                    Some(1.0),
                    "N={n} W={w} R={r} t={}",
                    point.t_ms
                );
            }
        }
    }

    #[test]
    fn instant_legs_are_always_fresh() {
        // Every replica applies the write at once, so even R = W = 1 is fresh.
        let p = predict(3, 1, 1, &Legs::constant(0.0), &[0, 5], 1_000, 1);
        assert!(p.points.iter().all(|pt| pt.p_within_k == [Some(1.0); 3]));
    }

    #[test]
    fn a_slow_write_leg_is_seen_later() {
        // W = R = 1 and half of the write legs take 100 ms: reads right after
        // commit often miss the write, reads 100 ms later never do.
        let legs = Legs {
            w: Leg::Shared(vec![1.0, 100.0]),
            ..Legs::constant(1.0)
        };
        let ts = [0, 10, 50, 90, 100, 200];
        let p = predict(3, 1, 1, &legs, &ts, 50_000, 3);
        let fresh: Vec<f64> = p.points.iter().map(|pt| pt.p_fresh.unwrap()).collect();
        assert!(fresh[0] < 0.9, "{fresh:?}");
        assert!(fresh.windows(2).all(|w| w[0] <= w[1]), "{fresh:?}");
        assert!(fresh[0] < fresh[4], "{fresh:?}");
        assert_eq!(fresh[4], 1.0, "100 ms covers the slow leg: {fresh:?}");
    }

    #[test]
    fn per_replica_legs_follow_their_replica() {
        // Replica 0 is instant, 1 and 2 never get the write; reading one
        // random node is fresh a third of the time, at every t.
        let legs = Legs {
            w: Leg::PerReplica(vec![vec![0.0], vec![f64::INFINITY], vec![f64::INFINITY]]),
            ..Legs::constant(0.5)
        };
        let model = Wars {
            reads: ReadTargets::RandomR,
            ..Wars::new(3, 1, 1)
        };
        let p = model.predict(&legs, &[0, 1000], 60_000, 5);
        for point in &p.points {
            assert!((point.p_fresh.unwrap() - 1.0 / 3.0).abs() < 0.01);
            assert_eq!(
                point.p_within_k[0], point.p_within_k[2],
                "all writes go to replica 0"
            );
        }
    }

    #[test]
    fn reads_can_skip_the_coordinator_or_ask_it_alone() {
        // Replica 0 (the leader) is instant, followers 1 and 2 never get the
        // write: followers-only reads are never fresh, leader reads always.
        let legs = Legs {
            w: Leg::PerReplica(vec![vec![0.0], vec![f64::INFINITY], vec![f64::INFINITY]]),
            ..Legs::constant(0.5)
        };
        let p_fresh = |reads, r| {
            let model = Wars {
                reads,
                ..Wars::new(3, 1, r)
            };
            let p = model.predict(&legs, &[0, 1000], 20_000, 9);
            p.points
                .iter()
                .map(|pt| pt.p_fresh.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(p_fresh(ReadTargets::RandomRNotCoordinator, 1), [0.0, 0.0]);
        assert_eq!(p_fresh(ReadTargets::RandomRNotCoordinator, 2), [0.0, 0.0]);
        assert_eq!(p_fresh(ReadTargets::Coordinator, 1), [1.0, 1.0]);
    }

    #[test]
    #[should_panic(expected = "cannot read")]
    fn followers_only_reads_need_a_follower_per_read() {
        let model = Wars {
            reads: ReadTargets::RandomRNotCoordinator,
            ..Wars::new(3, 1, 3)
        };
        model.predict(&Legs::constant(1.0), &[0], 10, 1);
    }

    #[test]
    fn round_trips_split_into_halves() {
        // One set is shared; several are per replica; each leg is half a round trip.
        let legs = legs_from_round_trips(&[vec![2.0, 4.0]], &[vec![1.0], vec![3.0], vec![5.0]]);
        assert_eq!(legs.w, Leg::Shared(vec![1.0, 2.0]));
        assert_eq!(legs.a, legs.w);
        assert_eq!(
            legs.r,
            Leg::PerReplica(vec![vec![0.5], vec![1.5], vec![2.5]])
        );
        assert_eq!(legs.s, legs.r);
        assert!(legs.validate(3).is_ok());
        assert!(
            legs.validate(4).is_err(),
            "three read sets for four replicas"
        );
    }

    #[test]
    fn a_model_that_never_commits_predicts_nothing() {
        // Every W leg infinite: no trial completes, and no probability is made up.
        let legs = Legs {
            w: Leg::constant(f64::INFINITY),
            ..Legs::constant(1.0)
        };
        let p = predict(3, 1, 1, &legs, &[0], 100, 1);
        assert_eq!(p.completed, 0);
        assert_eq!(p.points[0].p_fresh, None);
        assert_eq!(p.write_latency_ms, None);
    }

    #[test]
    fn without_propagation_five_replicas_follow_the_closed_form_too() {
        // N = 5, W = R = 2: P(b ≥ k) = 0.3^k, within 0.006 (≈ 4.5 σ of 60 000 trials).
        let model = Wars {
            propagation: Propagation::QuorumOnly,
            ..Wars::new(5, 2, 2)
        };
        let p = model.predict(&spread(), &[0, 50], 60_000, 11);
        for point in &p.points {
            for k in 1..=3 {
                let expected = closed_form_beyond_k(5, 2, 2, k as u32);
                let got = beyond(point, k);
                assert!(
                    (got - expected).abs() < 0.006,
                    "k = {k}: {got} vs {expected}"
                );
            }
        }
    }

    fn trace(started: u64, replicas: &[(u32, Option<u64>, Option<u64>)]) -> WriteTrace {
        WriteTrace {
            id: started,
            seq: None,
            key: "k".into(),
            version: 1,
            coordinator: 1,
            w: 2,
            started_at_ms: started,
            committed_at_ms: Some(started + 100),
            replicas: replicas
                .iter()
                .map(
                    |&(id, sent_at_ms, acked_at_ms)| kv_shared::events::ReplicaTrace {
                        id,
                        sent_at_ms,
                        acked_at_ms,
                        failed_at_ms: None,
                    },
                )
                .collect(),
            outcome: None,
            at_ms: started + 500,
        }
    }

    #[test]
    fn write_legs_follow_the_send_order_of_the_traces() {
        // Replica 3 is sent to first (at +0 ms, round trip 100 ms), replica 2
        // 200 ms later (round trip 120 ms); the coordinator is index 0. A
        // trace with a missing ack does not count.
        let traces = [
            trace(
                1_000,
                &[(2, Some(1_200), Some(1_320)), (3, Some(1_000), Some(1_100))],
            ),
            trace(
                5_000,
                &[(2, Some(5_000), None), (3, Some(5_200), Some(5_300))],
            ),
        ];
        let (w, a) = write_legs_from_traces(&traces, 0.0).unwrap();
        assert_eq!(w, Leg::PerReplica(vec![vec![0.0], vec![50.0], vec![260.0]]));
        assert_eq!(a, Leg::PerReplica(vec![vec![0.0], vec![50.0], vec![60.0]]));
        assert_eq!(write_legs_from_traces(&traces[1..], 0.0), None);
        // Replicas that wait 80 ms before applying: the write reaches their
        // store after the wait, and only the rest of the round trip is split.
        let (w, a) = write_legs_from_traces(&traces, 80.0).unwrap();
        assert_eq!(w, Leg::PerReplica(vec![vec![0.0], vec![90.0], vec![300.0]]));
        assert_eq!(a, Leg::PerReplica(vec![vec![0.0], vec![10.0], vec![20.0]]));
    }

    #[test]
    fn a_linearizable_simulation_has_no_stale_read_after_ack_and_one_injected_has_one() {
        // The checker's simulator: every read of a linearizable store is
        // fresh or unchecked; one read turned stale is found, with its k.
        use crate::checker::sim;
        let mut h = sim::linearizable_history(&sim::SimConfig {
            ops: 20_000,
            keys: 100,
            clients: 16,
            ..sim::SimConfig::default()
        });
        let m = measure(&h, TS);
        assert_eq!(m.totals.stale_after_ack, 0);
        assert!(m.totals.fresh > 5_000 && m.totals.overlapping > 0);
        let stale = sim::inject_stale_read(&mut h, 9).expect("a read to turn stale");
        let m = measure(&h, TS);
        assert_eq!(m.totals.stale_after_ack, 1, "{stale:?}");
        let b = m.k_staleness.behind;
        assert_eq!(b.one + b.two + b.three + b.four_or_more, 1);
    }
}
