//! Files and text: the terminal summary, `summary.json`, `samples.csv`.

use crate::checker::Verdict;
use crate::consistency::Consistency;
use crate::error::{Error, Result};
use crate::stats::{LatencySummary, Summary};
use crate::workload::{Sample, Verification};
use serde::Serialize;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Writes `value` as pretty JSON to `path`.
///
/// # Errors
/// The file cannot be created or written.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    serde_json::to_writer_pretty(BufWriter::new(file), value)?;
    Ok(())
}

/// `samples.csv`: one row per request, the columns of [`Sample`].
pub struct SampleCsv {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
}

impl SampleCsv {
    /// Creates (truncates) the file.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            writer: csv::Writer::from_writer(BufWriter::new(file)),
        })
    }

    /// Appends one row.
    ///
    /// # Errors
    /// The row cannot be written.
    pub fn write(&mut self, s: &Sample) -> Result<()> {
        Ok(self.writer.serialize(s)?)
    }

    /// Flushes the file.
    ///
    /// # Errors
    /// The flush fails.
    pub fn finish(mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::io(&self.path, e))
    }
}

fn latency_line(name: &str, l: &LatencySummary) -> String {
    format!(
        "  {name:<15} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    )
}

/// The terminal summary of a run.
pub fn render_summary(s: &Summary) -> String {
    let mut out = String::new();
    let t = &s.throughput;
    let _ = writeln!(out, "{} — {}", s.tool, crate::runner::run_title(s));
    let _ = writeln!(
        out,
        "nodes: {}{}",
        s.nodes
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        s.leader
            .as_ref()
            .map(|l| format!("  (leader {l})"))
            .unwrap_or_default()
    );
    if s.leader_switches > 0 {
        let _ = writeln!(
            out,
            "leader changed {} time(s) during the run; writes went to {} at the end",
            s.leader_switches,
            s.final_leader.as_deref().unwrap_or("no known leader")
        );
    }
    let rate = match t.target_rate {
        Some(q) => format!("open loop, target {q:.1} req/s"),
        None => format!("closed loop, {} clients", s.settings.concurrency),
    };
    let _ = writeln!(
        out,
        "{rate}: {} issued ({:.1}/s), {} completed in {:.1} s ({:.1}/s){}",
        t.issued,
        t.issue_rate,
        t.completed,
        t.elapsed_s,
        t.achieved_rate,
        if t.not_issued > 0 {
            format!(", {} NOT issued (client saturated)", t.not_issued)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "\nlatency (ms, from intended send time)\n  {:<15} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    out.push_str(&latency_line("reads", &s.reads));
    out.push_str(&latency_line("writes", &s.writes));
    out.push_str(&latency_line("reads (svc)", &s.reads_service));
    out.push_str(&latency_line("writes (svc)", &s.writes_service));
    out.push_str(&latency_line("write→read gap", &s.read_after_write));
    let st = &s.stale;
    let _ = writeln!(
        out,
        "\nstale reads: {} of {} checked reads ({:.2} %; {} reads in all, {} were 404 after a write, at most {} versions behind)",
        st.stale,
        st.checked,
        st.rate * 100.0,
        st.reads,
        st.stale_missing,
        st.max_versions_behind
    );
    for n in &st.by_node {
        let _ = writeln!(
            out,
            "  {:<28} {:>6} stale of {:>7} checked ({:.2} %)",
            n.node,
            n.stale,
            n.checked,
            n.rate * 100.0
        );
    }
    let e = &s.errors;
    let kinds: Vec<String> = e.by_kind.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(
        out,
        "errors: {}{}",
        e.total,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    );
    for (kind, message) in &e.examples {
        let _ = writeln!(out, "  {kind}: {message}");
    }
    if let Some(v) = &s.verification {
        render_verification(&mut out, v);
    }
    if let Some(c) = &s.consistency {
        render_consistency(&mut out, c);
    }
    out
}

/// A verdict for people: what was found, and whether it was promised.
fn verdict_line(v: Verdict, promised: bool) -> String {
    let v = match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Unknown => "unknown",
    };
    format!(
        "{v} ({})",
        if promised { "promised" } else { "not promised" }
    )
}

/// The history check and the staleness measures.
fn render_consistency(out: &mut String, c: &Consistency) {
    let p = &c.promise;
    let _ = writeln!(
        out,
        "
consistency — {}",
        p.basis
    );
    for f in &c.faults {
        let _ = writeln!(
            out,
            "  fault at {:.1} s{}: {} [{}]",
            f.at_us as f64 / 1e6,
            f.until_us
                .map(|u| format!(" – {:.1} s", u as f64 / 1e6))
                .unwrap_or_default(),
            f.detail,
            f.kind
        );
    }
    if let Some(why) = &c.not_checked {
        let _ = writeln!(out, "  history not checked: {why}");
        return;
    }
    let _ = writeln!(
        out,
        "  history: {} operations on {} keys checked in {:.0} ms{}",
        c.ops,
        c.keys,
        c.check_ms,
        if c.excluded_keys > 0 {
            format!(
                " ({} keys with data from before the run left out)",
                c.excluded_keys
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  linearizable: {}{}",
        verdict_line(c.linearizable, p.linearizable),
        if c.counts.linearizable > 0 || c.unknown_keys > 0 {
            format!(
                " — {} keys violate, {} undecided",
                c.counts.linearizable, c.unknown_keys
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  read-your-writes: {} ({} violations); monotonic reads: {} ({} violations)",
        verdict_line(c.read_your_writes, p.read_your_writes),
        c.counts.read_your_writes,
        verdict_line(c.monotonic_reads, p.monotonic_reads),
        c.counts.monotonic_reads
    );
    let checked = c.reads - c.unchecked_reads;
    let _ = writeln!(
        out,
        "  stale after ack: {} of {} checked reads ({}); inconsistency window: {} of {} reads overlapping a write returned the old value",
        c.stale_after_ack,
        checked,
        if p.no_stale_after_ack { "none promised" } else { "allowed" },
        c.overlapping_old,
        c.overlapping
    );
    let points: Vec<String> = c
        .t_visibility
        .iter()
        .map(|t| {
            let band = match t.until_ms {
                Some(u) => format!("{}–{u} ms", t.t_ms),
                None => format!(">{} ms", t.t_ms),
            };
            match t.p {
                Some(p) => format!("{band} {:.1} % ({})", p * 100.0, t.reads),
                None => format!("{band} no reads"),
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "  t-visibility P(fresh | read sent t after the latest 201): {}",
        points.join(", ")
    );
    for v in &c.violations {
        let _ = writeln!(
            out,
            "  violation ({}): {} — {}",
            v.check.name(),
            v.key,
            v.explanation
        );
    }
    if c.broken.is_empty() {
        let _ = writeln!(out, "  every promise kept");
    }
    for b in &c.broken {
        let _ = writeln!(out, "  PROMISE BROKEN: {b}");
    }
}

/// The verification lines: totals, the convergence wait, one line per node, examples.
fn render_verification(out: &mut String, v: &Verification) {
    let _ = writeln!(
        out,
        "verification (read back from {}): {} keys, {} ok, {} lost, {} other value, {} unreachable",
        v.source, v.keys, v.ok, v.lost, v.value_mismatch, v.unreachable
    );
    if let Some(c) = &v.convergence {
        let _ = writeln!(
            out,
            "  {} after {:.1} s (leader {}, term {}, position {}){}",
            if c.converged {
                "every node caught up"
            } else {
                "NOT every node caught up"
            },
            c.waited_ms as f64 / 1000.0,
            c.leader.as_deref().unwrap_or("unknown"),
            c.term,
            c.target_seq,
            if c.lagging.is_empty() {
                String::new()
            } else {
                format!("; lagging: {}", c.lagging.join(", "))
            }
        );
    }
    if !v.per_node.is_empty() {
        let _ = writeln!(
            out,
            "  per node (diverged: {} copies missing or older than acknowledged):",
            v.diverged
        );
    }
    for n in &v.per_node {
        let _ = writeln!(
            out,
            "  {:<28} {:>7} ok {:>7} behind {:>5} other value {:>7} unreachable",
            n.node, n.ok, n.behind, n.value_mismatch, n.unreachable
        );
    }
    for ex in &v.examples {
        let _ = writeln!(out, "  {ex}");
    }
}
