//! The history checker and the staleness measures on simulated
//! linearizable histories ([`kv_loadtester::checker::sim`]).
//!
//! ```text
//! cargo bench -p kv-loadtester --bench checker
//! ```
//!
//! - `check/100k-ops-1000-keys`: every check on 100 000 operations over
//!   1000 keys from 16 sessions, half writes (2 % of them indeterminate,
//!   1 % of everything failed): the search of every key, on every core.
//! - `check/100k-ops-one-stale-read`: the same with one read made stale, so
//!   one key also goes through the reduction to its minimal evidence.
//! - `check/20k-ops-one-key`: one hot key, 20 000 operations from 16
//!   sessions: a single long search (one core).
//! - `pbs/measure-100k-ops`: t-visibility, k-staleness and the
//!   inconsistency window of the first history.
//!
//! Ten samples each, so that the whole run takes about a minute.

use criterion::{criterion_group, criterion_main, Criterion};
use kv_loadtester::checker::{self, sim, CheckOptions, Verdict};
use kv_loadtester::history::History;
use kv_loadtester::pbs;
use std::hint::black_box;
use std::time::Duration;

/// 100 000 operations, 1000 keys, 16 sessions, half writes.
fn wide() -> History {
    sim::linearizable_history(&sim::SimConfig {
        seed: 42,
        ops: 100_000,
        keys: 1000,
        clients: 16,
        write_ratio: 0.5,
        ..sim::SimConfig::default()
    })
}

/// 20 000 operations on one key, 16 sessions, half writes.
fn hot() -> History {
    sim::linearizable_history(&sim::SimConfig {
        seed: 43,
        ops: 20_000,
        keys: 1,
        clients: 16,
        write_ratio: 0.5,
        ..sim::SimConfig::default()
    })
}

/// Checks `history` once, asserts the verdict, and says what it found.
fn checked_once(name: &str, history: &History, expected: Verdict) {
    let report = checker::check(history, &CheckOptions::default());
    assert_eq!(
        report.linearizable,
        expected,
        "{name}: {:?}",
        report.violations.first()
    );
    assert!(
        report.unknown_keys.is_empty(),
        "{name}: {:?}",
        report.unknown_keys
    );
    eprintln!(
        "{name}: {} operations checked over {} keys in {:.1} ms: linearizable {:?}, \
         read-your-writes {:?}, monotonic reads {:?}, {} violation(s)",
        report.ops_checked,
        report.keys_checked,
        report.elapsed_ms,
        report.linearizable,
        report.read_your_writes,
        report.monotonic_reads,
        report.violations.len()
    );
}

fn benches(c: &mut Criterion) {
    let options = CheckOptions::default();
    let wide = wide();
    let mut stale = wide.clone();
    sim::inject_stale_read(&mut stale, 1).expect("a read to turn stale");
    let hot = hot();
    checked_once("100k-ops-1000-keys", &wide, Verdict::Pass);
    checked_once("100k-ops-one-stale-read", &stale, Verdict::Fail);
    checked_once("20k-ops-one-key", &hot, Verdict::Pass);

    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("100k-ops-1000-keys", |b| {
        b.iter(|| checker::check(black_box(&wide), &options))
    });
    group.bench_function("100k-ops-one-stale-read", |b| {
        b.iter(|| checker::check(black_box(&stale), &options))
    });
    group.bench_function("20k-ops-one-key", |b| {
        b.iter(|| checker::check(black_box(&hot), &options))
    });
    group.finish();

    let ts = [0, 1, 2, 5, 10, 100];
    let m = pbs::measure(&wide, &ts);
    eprintln!(
        "pbs: {} reads, {} fresh, {} stale after ack, inconsistency window {}",
        m.totals.reads, m.totals.fresh, m.totals.stale_after_ack, m.inconsistency_window
    );
    let mut group = c.benchmark_group("pbs");
    group.sample_size(10);
    group.bench_function("measure-100k-ops", |b| {
        b.iter(|| pbs::measure(black_box(&wide), &ts))
    });
    group.finish();
}

criterion_group!(checker_benches, benches);
criterion_main!(checker_benches);
