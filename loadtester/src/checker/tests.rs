//! The checker on hand-written histories, on simulated ones, and on the
//! pages it writes. Times are µs; each test opens with what must hold.

use super::*;
use crate::history::FaultRecord;
use crate::workload::OpKind;

/// Builds histories operation by operation, ids in the order added.
#[derive(Default)]
struct Story {
    ops: Vec<HistoryOp>,
    faults: Vec<FaultRecord>,
}

impl Story {
    /// Adds an operation and returns its id.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        session: u32,
        kind: OpKind,
        key: &str,
        span: (u64, u64),
        outcome: Outcome,
        value: Option<&str>,
        version: Option<u64>,
    ) -> u64 {
        let id = self.ops.len() as u64;
        self.ops.push(HistoryOp {
            id,
            session,
            kind,
            key: key.to_string(),
            node: Some(1 + session % 3),
            invoke_us: span.0,
            complete_us: span.1,
            outcome,
            value: value.map(str::to_string),
            version,
        });
        id
    }

    /// An acknowledged write of `value` that got `version`.
    fn write(
        &mut self,
        session: u32,
        key: &str,
        span: (u64, u64),
        value: &str,
        version: u64,
    ) -> u64 {
        self.push(
            session,
            OpKind::Write,
            key,
            span,
            Outcome::Ok,
            Some(value),
            Some(version),
        )
    }

    /// A write of `value` that ended with `outcome` (no version).
    fn write_ended(
        &mut self,
        session: u32,
        key: &str,
        span: (u64, u64),
        value: &str,
        outcome: Outcome,
    ) -> u64 {
        self.push(
            session,
            OpKind::Write,
            key,
            span,
            outcome,
            Some(value),
            None,
        )
    }

    /// An answered read of `value` at `version` (`None`: not found).
    fn read(
        &mut self,
        session: u32,
        key: &str,
        span: (u64, u64),
        seen: Option<(&str, u64)>,
    ) -> u64 {
        self.push(
            session,
            OpKind::Read,
            key,
            span,
            Outcome::Ok,
            seen.map(|s| s.0),
            seen.map(|s| s.1),
        )
    }

    fn history(&self) -> History {
        History {
            ops: self.ops.clone(),
            faults: self.faults.clone(),
        }
    }
}

fn run(story: &Story) -> CheckReport {
    check(&story.history(), &CheckOptions::default())
}

fn only(report: &CheckReport, check: Check) -> Vec<&Violation> {
    report
        .violations
        .iter()
        .filter(|v| v.check == check)
        .collect()
}

fn all_pass(report: &CheckReport) -> bool {
    report.linearizable == Verdict::Pass
        && report.read_your_writes == Verdict::Pass
        && report.monotonic_reads == Verdict::Pass
        && report.violations.is_empty()
        && report.unknown_keys.is_empty()
}

#[test]
fn a_linearizable_history_with_concurrency_passes_every_check() {
    // Two keys, overlapping writes and reads, a read of nothing first: some
    // order explains every read, and no session goes back.
    let mut s = Story::default();
    s.read(1, "a", (0, 5), None);
    s.write(2, "a", (10, 40), "a1", 1);
    s.read(1, "a", (15, 20), None); // before a1 takes effect
    s.read(3, "a", (25, 30), Some(("a1", 1))); // after
    s.write(1, "a", (45, 60), "a2", 2);
    s.read(2, "a", (50, 70), Some(("a2", 2)));
    s.read(3, "a", (80, 90), Some(("a2", 2)));
    s.write(4, "b", (0, 10), "b1", 1);
    s.read(5, "b", (5, 8), None);
    s.read(5, "b", (20, 30), Some(("b1", 1)));
    let report = run(&s);
    assert!(all_pass(&report), "{report:#?}");
    assert_eq!(report.ops_checked, 10);
    assert_eq!(report.keys_checked, 2);
    assert_eq!(report.counts, ViolationCounts::default());
}

#[test]
fn a_stale_read_after_an_acknowledged_write_fails_with_the_two_writes_and_the_read() {
    // w1 then w2 acknowledged, then a read of w1's value: no order explains
    // it, and nothing but those three operations is needed to show it.
    let mut s = Story::default();
    let w1 = s.write(1, "k", (0, 10), "one", 1);
    let w2 = s.write(2, "k", (20, 30), "two", 2);
    s.read(3, "k", (32, 38), Some(("two", 2)));
    let stale = s.read(4, "k", (40, 50), Some(("one", 1)));
    s.write(1, "k", (60, 70), "three", 3);
    s.read(2, "k", (80, 90), Some(("three", 3)));
    s.read(3, "k", (95, 99), Some(("three", 3)));
    s.write(5, "other", (0, 100), "x", 1);
    s.read(6, "other", (120, 130), Some(("x", 1)));
    let report = run(&s);
    assert_eq!(report.linearizable, Verdict::Fail);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, "k");
    assert_eq!(found[0].op_ids, vec![w1, w2, stale]);
    assert!(found[0].explanation.contains("#3 session 4 read \"one\""));
    assert_eq!(report.counts.linearizable, 1);
    // Each session saw nothing older than it had seen or written.
    assert_eq!(report.read_your_writes, Verdict::Pass);
    assert_eq!(report.monotonic_reads, Verdict::Pass);
}

#[test]
fn a_read_of_a_value_never_written_fails_by_itself() {
    // A value that no write wrote; then one that only a failed write wrote.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "real", 1);
    let ghost = s.read(2, "k", (20, 30), Some(("ghost", 7)));
    let report = run(&s);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].op_ids, vec![ghost]);
    assert!(found[0]
        .explanation
        .contains("no write of the key wrote it"));

    let mut s = Story::default();
    let failed = s.write_ended(1, "k", (0, 10), "refused", Outcome::Failed);
    let read = s.read(2, "k", (20, 30), Some(("refused", 1)));
    let report = run(&s);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found[0].op_ids, vec![failed, read]);
    assert!(found[0].explanation.contains("only the failed write #0"));
}

#[test]
fn an_indeterminate_write_may_take_effect_late_or_never() {
    // Read long after the client gave up: it took effect late. Never read:
    // it never took effect, and the reads of the older value stand.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "old", 1);
    s.write_ended(2, "k", (20, 30), "late", Outcome::Indeterminate);
    s.read(3, "k", (40, 50), Some(("old", 1)));
    s.read(3, "k", (500, 510), Some(("late", 2)));
    s.write_ended(2, "k", (600, 700), "lost", Outcome::Indeterminate);
    s.read(3, "k", (800, 810), Some(("late", 2)));
    s.read(1, "k", (900, 910), Some(("late", 2)));
    let report = run(&s);
    assert!(all_pass(&report), "{report:#?}");
    assert_eq!(report.ops_checked, 7);
}

#[test]
fn an_indeterminate_write_cannot_be_read_before_it_was_sent() {
    // It may take effect any time after its invocation, not before.
    let mut s = Story::default();
    let early = s.read(1, "k", (0, 10), Some(("late", 1)));
    let write = s.write_ended(2, "k", (20, 30), "late", Outcome::Indeterminate);
    let report = run(&s);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].op_ids, vec![early, write]);
}

#[test]
fn reads_concurrent_with_a_write_may_return_either_value_but_not_go_back() {
    // During w2 one read sees 1 and another 2; a read that starts after a
    // read of 2 ended may not see 1 again.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "1", 1);
    s.write(2, "k", (20, 100), "2", 2);
    s.read(3, "k", (30, 40), Some(("1", 1)));
    s.read(4, "k", (35, 45), Some(("2", 2)));
    s.read(5, "k", (38, 60), Some(("1", 1)));
    assert_eq!(run(&s).linearizable, Verdict::Pass);

    let back = s.read(3, "k", (70, 80), Some(("1", 1)));
    let report = run(&s);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1);
    // The two writes, the read of 2 that ended before, and the read of 1 after it.
    assert_eq!(found[0].op_ids, vec![0, 1, 3, back]);
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // A read that starts the µs a write completes may precede it; one that
    // starts a µs later may not.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "v", 1);
    s.read(2, "k", (10, 12), None);
    assert_eq!(run(&s).linearizable, Verdict::Pass);

    let mut s = Story::default();
    let w = s.write(1, "k", (0, 10), "v", 1);
    let r = s.read(2, "k", (11, 12), None);
    let report = run(&s);
    assert_eq!(only(&report, Check::Linearizable)[0].op_ids, vec![w, r]);
}

#[test]
fn failed_operations_are_left_out() {
    // A failed write nobody read and failed reads (no value) change nothing.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "v", 1);
    s.write_ended(2, "k", (20, 30), "never", Outcome::Failed);
    s.push(3, OpKind::Read, "k", (35, 40), Outcome::Failed, None, None);
    s.read(3, "k", (50, 60), Some(("v", 1)));
    let report = run(&s);
    assert!(all_pass(&report), "{report:#?}");
    assert_eq!(report.ops_checked, 2);
}

#[test]
fn read_your_writes_is_broken_by_a_read_older_than_the_sessions_own_write() {
    // Session 1 wrote version 2 and then read version 1; the evidence is
    // its write and its read. Session 3 read its own write: fine.
    let mut s = Story::default();
    s.write(2, "k", (0, 10), "v1", 1);
    let own = s.write(1, "k", (20, 30), "v2", 2);
    let read = s.read(1, "k", (40, 50), Some(("v1", 1)));
    s.write(3, "j", (0, 10), "j1", 1);
    s.read(3, "j", (20, 30), Some(("j1", 1)));
    let report = run(&s);
    assert_eq!(report.read_your_writes, Verdict::Fail);
    let found = only(&report, Check::ReadYourWrites);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, "k");
    assert_eq!(found[0].op_ids, vec![own, read]);
    assert!(found[0].explanation.contains("session 1 wrote version 2"));
    assert_eq!(report.counts.read_your_writes, 1);
    // One read per session: nothing to compare it with.
    assert_eq!(report.monotonic_reads, Verdict::Pass);
    // And the read is stale after an acknowledged write, too.
    assert_eq!(report.linearizable, Verdict::Fail);
}

#[test]
fn monotonic_reads_is_broken_by_a_session_reading_an_older_version_again() {
    // Session 1 reads version 2, then 3, then 2: the evidence is the read of
    // 3 (the highest so far) and the read of 2 after it. A 404 after a read
    // of a version counts as version 0.
    let mut s = Story::default();
    s.write(2, "k", (0, 10), "v2", 2);
    s.write(2, "k", (20, 30), "v3", 3);
    s.read(1, "k", (12, 18), Some(("v2", 2)));
    let high = s.read(1, "k", (40, 50), Some(("v3", 3)));
    let low = s.read(1, "k", (60, 70), Some(("v2", 2)));
    let gone = s.read(1, "k", (80, 90), None);
    let report = run(&s);
    assert_eq!(report.monotonic_reads, Verdict::Fail);
    let found = only(&report, Check::MonotonicReads);
    let evidence: Vec<&[u64]> = found.iter().map(|v| v.op_ids.as_slice()).collect();
    assert_eq!(evidence, vec![&[high, low][..], &[high, gone][..]]);
    assert_eq!(report.counts.monotonic_reads, 2);
    // Session 1 wrote nothing.
    assert_eq!(report.read_your_writes, Verdict::Pass);
}

#[test]
fn session_checks_follow_each_session_alone() {
    // Different sessions may see different versions in any order, and an
    // indeterminate write holds its session to nothing.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "v1", 1);
    s.write(1, "k", (20, 30), "v2", 2);
    s.read(2, "k", (12, 18), Some(("v1", 1)));
    s.read(3, "k", (40, 50), Some(("v2", 2)));
    s.read(2, "k", (60, 70), Some(("v2", 2)));
    s.write_ended(4, "k", (80, 90), "v3", Outcome::Indeterminate);
    s.read(4, "k", (95, 99), Some(("v2", 2)));
    let report = run(&s);
    assert!(all_pass(&report), "{report:#?}");
}

/// n writes of `key` at once (one value written twice, so that the key
/// goes to the search and not to zones), then a read of the first: the
/// search meets the orders that explain it only after about 2^(n-1)
/// configurations.
fn blind(s: &mut Story, key: &str, n: u32) {
    for v in 1..=n {
        s.write(v, key, (0, 100), &format!("w{v}"), u64::from(v));
    }
    s.write(n + 1, key, (0, 100), "w2", u64::from(n + 1));
    s.read(0, key, (200, 201), Some(("w1", 1)));
}

#[test]
fn a_key_that_exhausts_its_budget_is_unknown_and_listed() {
    // 40 concurrent writes (with a repeated value) before a read need far
    // more than 100 000 steps of the search; the small key next to it is
    // still decided.
    let mut s = Story::default();
    blind(&mut s, "hard", 40);
    s.write(1, "easy", (0, 10), "e", 1);
    s.read(2, "easy", (20, 30), Some(("e", 1)));
    let options = CheckOptions {
        max_steps_per_key: 100_000,
        ..CheckOptions::default()
    };
    let report = check(&s.history(), &options);
    assert_eq!(report.linearizable, Verdict::Unknown);
    assert_eq!(report.unknown_keys, vec!["hard".to_string()]);
    assert!(only(&report, Check::Linearizable).is_empty());

    // A failing key elsewhere makes the verdict Fail; "hard" is still listed.
    s.read(3, "easy", (40, 50), None);
    let report = check(&s.history(), &options);
    assert_eq!(report.linearizable, Verdict::Fail);
    assert_eq!(report.unknown_keys, vec!["hard".to_string()]);
    assert_eq!(only(&report, Check::Linearizable)[0].key, "easy");

    // Eight writes: the same shape is decided within the budget.
    let mut s = Story::default();
    blind(&mut s, "k", 8);
    assert_eq!(check(&s.history(), &options).linearizable, Verdict::Pass);
}

#[test]
fn keys_not_started_within_the_total_time_limit_are_unknown() {
    // A zero total limit: no key starts, every key is unknown.
    let mut s = Story::default();
    s.write(1, "a", (0, 10), "a", 1);
    s.write(1, "b", (0, 10), "b", 1);
    let options = CheckOptions {
        total_time_limit: Some(Duration::ZERO),
        ..CheckOptions::default()
    };
    let report = check(&s.history(), &options);
    assert_eq!(report.linearizable, Verdict::Unknown);
    assert_eq!(report.unknown_keys, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn checks_that_are_not_run_are_unknown() {
    // Switched off: not a pass.
    let mut s = Story::default();
    s.write(1, "a", (0, 10), "a", 1);
    let options = CheckOptions {
        linearizable: false,
        read_your_writes: false,
        monotonic_reads: false,
        ..CheckOptions::default()
    };
    let report = check(&s.history(), &options);
    assert_eq!(report.linearizable, Verdict::Unknown);
    assert_eq!(report.read_your_writes, Verdict::Unknown);
    assert_eq!(report.monotonic_reads, Verdict::Unknown);
}

/// A simulated run of about 20 000 operations.
fn simulated() -> History {
    sim::linearizable_history(&sim::SimConfig {
        seed: 7,
        ops: 20_000,
        keys: 200,
        clients: 16,
        ..sim::SimConfig::default()
    })
}

#[test]
fn a_simulated_linearizable_history_passes_and_one_stale_read_fails_its_key() {
    // 20 000 operations with failures and indeterminate writes pass every
    // check; the same with one read turned stale fails on that key only,
    // and the evidence fails on its own.
    let mut history = simulated();
    let indeterminate = history
        .ops
        .iter()
        .filter(|op| op.outcome == Outcome::Indeterminate)
        .count();
    assert!(
        indeterminate > 50,
        "the simulation exercises indeterminate writes"
    );
    let report = check(&history, &CheckOptions::default());
    assert!(all_pass(&report), "{:#?}", report.violations.first());
    assert_eq!(report.keys_checked, 200);

    let stale = sim::inject_stale_read(&mut history, 3).expect("a read to turn stale");
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.linearizable, Verdict::Fail);
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, stale.key);
    let evidence = &found[0].op_ids;
    assert!(evidence.contains(&stale.read) && evidence.contains(&stale.old_write));
    assert!(
        evidence.len() <= 6,
        "minimal evidence, not the key: {evidence:?}"
    );

    let alone = History {
        ops: history
            .ops
            .iter()
            .filter(|op| evidence.contains(&op.id))
            .cloned()
            .collect(),
        faults: vec![],
    };
    assert!(alone.ops.iter().all(|op| op.key == stale.key));
    assert_eq!(
        check(&alone, &CheckOptions::default()).linearizable,
        Verdict::Fail
    );
}

#[test]
fn a_hot_key_with_many_sessions_is_decided() {
    // 20 000 operations on one key from 16 sessions, always about 15 in
    // flight: linearizable, and decided at once; with one stale read, not,
    // with a handful of operations as evidence.
    let mut history = sim::linearizable_history(&sim::SimConfig {
        seed: 43,
        ops: 20_000,
        keys: 1,
        clients: 16,
        ..sim::SimConfig::default()
    });
    let report = check(&history, &CheckOptions::default());
    assert!(all_pass(&report), "{:#?}", report.violations.first());
    let stale = sim::inject_stale_read(&mut history, 5).expect("a read to turn stale");
    let report = check(&history, &CheckOptions::default());
    let found = only(&report, Check::Linearizable);
    assert_eq!(found.len(), 1);
    assert!(found[0].op_ids.contains(&stale.read));
    assert!(found[0].op_ids.len() <= 6, "{:?}", found[0].op_ids);
}

#[test]
fn repeated_write_values_go_through_the_search() {
    // Two writes of the same value: zones cannot tell which one a read
    // saw, the search decides. Both orders of the story are checked.
    let mut s = Story::default();
    s.write(1, "k", (0, 10), "same", 1);
    s.write(2, "k", (20, 30), "other", 2);
    s.write(1, "k", (40, 50), "same", 3);
    s.read(3, "k", (60, 70), Some(("same", 3)));
    assert_eq!(run(&s).linearizable, Verdict::Pass);
    s.read(3, "k", (80, 90), Some(("other", 2)));
    assert_eq!(run(&s).linearizable, Verdict::Fail);
}

#[test]
fn the_report_does_not_depend_on_the_number_of_threads() {
    // One worker or two: the same verdicts, violations and unknown keys.
    let mut history = simulated();
    sim::inject_stale_read(&mut history, 11).expect("a read to turn stale");
    let with = |threads| {
        let mut r = check(
            &history,
            &CheckOptions {
                threads,
                ..CheckOptions::default()
            },
        );
        r.elapsed_ms = 0.0;
        r
    };
    assert_eq!(with(1), with(2));
}

#[test]
fn the_simulation_is_seeded() {
    // The same configuration gives the same history; another seed another.
    let cfg = sim::SimConfig {
        ops: 2000,
        ..sim::SimConfig::default()
    };
    let a = sim::linearizable_history(&cfg);
    assert_eq!(a, sim::linearizable_history(&cfg));
    let b = sim::linearizable_history(&sim::SimConfig { seed: 2, ..cfg });
    assert_ne!(a, b);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kv-checker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn violation_pages_escape_the_key_and_the_values() {
    // A key and a value that are HTML: the page shows them, escaped, and
    // the file name keeps only safe characters.
    let key = "<k&\"1>";
    let mut s = Story::default();
    s.write(1, key, (0, 10), "<script>alert(1)</script>", 1);
    s.write(2, key, (20, 30), "b", 2);
    s.read(3, key, (40, 50), Some(("<script>alert(1)</script>", 1)));
    s.faults.push(FaultRecord {
        at_us: 15,
        until_us: Some(45),
        kind: "partition".into(),
        nodes: vec![1],
        detail: "node 1 cut off <from> 2 & 3".into(),
    });
    let history = s.history();
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.violations.len(), 1, "{report:#?}");
    let dir = temp_dir("pages");
    let written = write_violation_pages(&report, &history, &dir).unwrap();
    assert_eq!(written, vec![dir.join("violation-1-_k__1_.html")]);
    let html = std::fs::read_to_string(&written[0]).unwrap();
    assert!(html.contains("&lt;k&amp;&quot;1&gt;"));
    assert!(!html.contains(key));
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.contains("<script"));
    assert!(html.contains("node 1 cut off &lt;from&gt; 2 &amp; 3"));
    assert!(html.contains("linearizable violation"));
    // The three operations are marked and listed.
    assert_eq!(html.matches("class=\"op ok marked\"").count(), 3);
    assert!(html.contains("<h2>Marked operations (3)</h2>"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_timeline_draws_lanes_outcomes_faults_and_the_time_axis() {
    // One lane per session, every outcome, a fault inside the range drawn
    // and one far outside it left out; exact times of marked operations.
    let mut s = Story::default();
    s.write(1, "k", (1_000, 3_500), "a", 1);
    s.write_ended(2, "k", (2_000, 2_700), "b", Outcome::Indeterminate);
    s.write_ended(3, "k", (4_000, 4_100), "c", Outcome::Failed);
    let marked = s.read(3, "k", (5_000, 5_250), Some(("a", 1)));
    s.write(1, "elsewhere", (0, 1), "z", 1);
    for (at, kind) in [(2_500, "pause"), (900_000, "crash")] {
        s.faults.push(FaultRecord {
            at_us: at,
            until_us: Some(at + 1_000),
            kind: kind.into(),
            nodes: vec![2, 3],
            detail: format!("{kind} detail"),
        });
    }
    let html = timeline_html(&s.history(), "k", &[marked, 999]);
    assert_eq!(html.matches("class=\"session\"").count(), 3);
    for class in ["op ok", "op indeterminate", "op failed", "op ok marked"] {
        assert!(html.contains(&format!("class=\"{class}\"")), "{class}");
    }
    assert!(
        html.contains("class=\"tail\""),
        "the indeterminate write fades out"
    );
    assert!(html.contains("pause nodes 2,3"));
    assert!(!html.contains("crash"));
    // Times from the first operation drawn, 1 000 µs.
    assert!(html.contains("<td>4.000 ms</td><td>4.250 ms</td><td>5000</td><td>5250</td>"));
    assert!(html.contains("0 ms</text>"));
    assert!(html.contains("Marked but not operations of this key: #999."));
    assert!(html.contains("4 of the key's 4 operations drawn;"));
    assert!(!html.contains("elsewhere"));
}

#[test]
fn a_timeline_of_a_busy_key_is_bounded_and_keeps_the_marked_operations() {
    // 2 500 operations: 2 000 drawn, the marked last one among them, and
    // the page says how many were left out.
    let mut s = Story::default();
    for i in 0..2_500u64 {
        let at = i * 10;
        s.write(
            (i % 8) as u32,
            "busy",
            (at, at + 5),
            &format!("v{i}"),
            i + 1,
        );
    }
    let last = 2_499;
    let html = timeline_html(&s.history(), "busy", &[last]);
    assert_eq!(html.matches("<g id=\"op-").count(), MAX_DRAWN_OPS);
    assert!(html.contains(&format!("<g id=\"op-{last}\" class=\"op ok marked\"")));
    assert!(!html.contains("<g id=\"op-0\""), "the farthest ones go");
    assert!(html.contains("2000 of the key's 2500 operations drawn (500 left out"));

    // Without marks, the first 2 000.
    let html = timeline_html(&s.history(), "busy", &[]);
    assert!(html.contains("<g id=\"op-0\""));
    assert!(!html.contains(&format!("<g id=\"op-{last}\"")));
}

#[test]
fn a_timeline_of_an_unknown_key_says_so() {
    // No operation of the key: a page that says it, not an empty drawing.
    let html = timeline_html(&History::default(), "nothing", &[]);
    assert!(html.contains("no operation of this key"));
    assert!(!html.contains("<svg"));
}
