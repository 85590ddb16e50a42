//! Aggregation of samples: HDR histograms, counters, and the summary that
//! `summary.json` holds.
//!
//! Latencies are recorded in microseconds in HDR histograms covering 1 µs to
//! one hour with three significant digits (a relative error of at most
//! 0.1 %), reads and writes apart. Two pairs are kept: *latency* counts from
//! the intended send time (the number to quote; coordinated-omission
//! corrected in open loop) and *service time* from the actual send. Only
//! answered requests (`ok`, and a read's `not_found`) enter the histograms;
//! failures are counted by kind.

use crate::cli::{KeyDist, ModeArg, ReadEndpoint, ReadFrom};
use crate::targets::Node;
use crate::workload::{OpKind, Sample, Verification};
use hdrhistogram::Histogram;
use kv_shared::cluster::ClusterConfig;
use kv_shared::Mode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest value a histogram holds: one hour in µs.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram for latencies in µs (1 µs to 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

/// Per-node counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    /// Reads answered (200 or 404).
    pub reads: u64,
    /// Reads with a write acknowledged before them (the ones that can be stale).
    pub checked: u64,
    /// Stale reads.
    pub stale: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Failed requests.
    pub errors: u64,
}

/// Everything measured during a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Read latency from the intended send time, µs.
    pub reads: Histogram<u64>,
    /// Write latency from the intended send time, µs.
    pub writes: Histogram<u64>,
    /// Read service time (from the actual send), µs.
    pub read_service: Histogram<u64>,
    /// Write service time, µs.
    pub write_service: Histogram<u64>,
    /// Time from a write's acknowledgement to the next read of the key, µs.
    pub interval: Histogram<u64>,
    /// Reads that returned 404.
    pub reads_not_found: u64,
    /// Stale reads that returned 404.
    pub stale_missing: u64,
    /// Largest number of versions a stale read was behind.
    pub max_behind: u64,
    /// Failures by outcome (`http_503`, `timeout`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The first error message seen per outcome.
    pub error_examples: BTreeMap<String, String>,
    /// Counters per answering node.
    pub nodes: BTreeMap<String, NodeCounts>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            reads: new_histogram(),
            writes: new_histogram(),
            read_service: new_histogram(),
            write_service: new_histogram(),
            interval: new_histogram(),
            reads_not_found: 0,
            stale_missing: 0,
            max_behind: 0,
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// Adds one sample.
    pub fn record(&mut self, s: &Sample) {
        // Looked up first: a new entry (and a copy of the name) once per node.
        if !self.nodes.contains_key(&s.node) {
            self.nodes.insert(s.node.clone(), NodeCounts::default());
        }
        let Some(node) = self.nodes.get_mut(&s.node) else {
            return;
        };
        if s.is_error() {
            node.errors += 1;
            *self.errors.entry(s.outcome.clone()).or_default() += 1;
            if let Some(message) = &s.error {
                self.error_examples
                    .entry(s.outcome.clone())
                    .or_insert_with(|| message.clone());
            }
            return;
        }
        let (lat, service) = match s.kind {
            OpKind::Read => (&mut self.reads, &mut self.read_service),
            OpKind::Write => (&mut self.writes, &mut self.write_service),
        };
        lat.saturating_record(s.latency_us.max(1));
        service.saturating_record(s.service_us.max(1));
        match s.kind {
            OpKind::Write => node.writes += 1,
            OpKind::Read => {
                node.reads += 1;
                let known = s.known_version.unwrap_or(0);
                if known > 0 {
                    node.checked += 1;
                }
                if s.outcome == "not_found" {
                    self.reads_not_found += 1;
                }
                if s.stale {
                    node.stale += 1;
                    match s.version {
                        Some(v) => self.max_behind = self.max_behind.max(known.saturating_sub(v)),
                        None => self.stale_missing += 1,
                    }
                }
                if let Some(us) = s.since_write_us {
                    self.interval.saturating_record(us.max(1));
                }
            }
        }
    }

    /// Reads answered, across nodes.
    pub fn reads_answered(&self) -> u64 {
        self.nodes.values().map(|n| n.reads).sum()
    }

    /// Stale reads, across nodes.
    pub fn stale(&self) -> u64 {
        self.nodes.values().map(|n| n.stale).sum()
    }

    /// Failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The summary of a histogram in µs.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The settings a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Routing mode.
    pub mode: ModeArg,
    /// Fraction of writes.
    pub write_ratio: f64,
    /// Open-loop rate, if any.
    pub qps: Option<f64>,
    /// Clients (closed loop) or most requests in flight (open loop).
    pub concurrency: u32,
    /// Issuing time, s.
    pub duration_s: f64,
    /// Request cap, if any.
    pub requests: Option<u64>,
    /// Key space.
    pub keys: u64,
    /// Key distribution.
    pub key_dist: KeyDist,
    /// Value size, bytes.
    pub value_size: usize,
    /// RNG seed.
    pub seed: u64,
    /// Which nodes serve reads (leader mode).
    pub read_from: ReadFrom,
    /// Read endpoint.
    pub read_endpoint: ReadEndpoint,
}

/// Request counts and rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Open loop: the target rate, req/s.
    pub target_rate: Option<f64>,
    /// Open loop: requests the schedule holds (rate × duration, or --requests).
    pub scheduled: u64,
    /// Requests sent.
    pub issued: u64,
    /// Requests answered or failed.
    pub completed: u64,
    /// Open loop: scheduled requests never sent (the client could not keep up within the drain time).
    pub not_issued: u64,
    /// Requests sent per second of the issuing window.
    pub issue_rate: f64,
    /// Requests completed per second, from start to the last answer.
    pub achieved_rate: f64,
    /// From the start to the last answer, s.
    pub elapsed_s: f64,
}

/// Stale-read counts for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStale {
    /// `node ID` or URL.
    pub node: String,
    /// Reads this node answered.
    pub reads: u64,
    /// Of those, reads with an earlier acknowledged write.
    pub checked: u64,
    /// Stale reads.
    pub stale: u64,
    /// `stale / checked` (0 when nothing was checked).
    pub rate: f64,
}

/// Stale reads over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaleSummary {
    /// Reads answered (200 or 404).
    pub reads: u64,
    /// Reads that had a write of their key acknowledged before they started.
    pub checked: u64,
    /// Stale reads (older version, or 404 after a write).
    pub stale: u64,
    /// Stale reads that returned 404.
    pub stale_missing: u64,
    /// `stale / checked`: the stale rate.
    pub rate: f64,
    /// `stale / reads`.
    pub rate_of_all_reads: f64,
    /// Largest number of versions a stale read was behind.
    pub max_versions_behind: u64,
    /// Per answering node.
    pub by_node: Vec<NodeStale>,
}

/// Failures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// All failed requests.
    pub total: u64,
    /// By outcome: `http_STATUS`, `timeout`, `connect`, `decode`, `transport`.
    pub by_kind: BTreeMap<String, u64>,
    /// By node the request went to.
    pub by_node: BTreeMap<String, u64>,
    /// The first error message per kind.
    #[serde(default)]
    pub examples: BTreeMap<String, String>,
}

/// `summary.json`: everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The tool and its version.
    pub tool: String,
    /// Start of the run, RFC 3339 UTC.
    pub started_at: String,
    /// The nodes under load.
    pub nodes: Vec<Node>,
    /// The leader's URL when the run started (leader mode).
    pub leader: Option<String>,
    /// Leader mode: how often writes moved to another leader during the run.
    #[serde(default)]
    pub leader_switches: u64,
    /// Leader mode: the leader writes went to at the end.
    #[serde(default)]
    pub final_leader: Option<String>,
    /// N/W/R and delay profile from `/status`, when served.
    pub cluster: Option<ClusterConfig>,
    /// The replication mode `/status` reported, when served.
    #[serde(default)]
    pub cluster_mode: Option<Mode>,
    /// The settings of the run.
    pub settings: Settings,
    /// Counts and rates.
    pub throughput: Throughput,
    /// Read latency (from intended send time).
    pub reads: LatencySummary,
    /// Write latency (from intended send time).
    pub writes: LatencySummary,
    /// Read service time (from actual send).
    pub reads_service: LatencySummary,
    /// Write service time (from actual send).
    pub writes_service: LatencySummary,
    /// Stale reads.
    pub stale: StaleSummary,
    /// Time from a write's acknowledgement to the next read of the key.
    pub read_after_write: LatencySummary,
    /// Failures.
    pub errors: ErrorSummary,
    /// The final read-back, unless skipped.
    pub verification: Option<Verification>,
    /// The history check and the staleness measures, against what the
    /// configuration promises.
    #[serde(default)]
    pub consistency: Option<crate::consistency::Consistency>,
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Stats {
    /// The stale-read part of the summary.
    pub fn stale_summary(&self) -> StaleSummary {
        let by_node: Vec<NodeStale> = self
            .nodes
            .iter()
            .filter(|(_, c)| c.reads > 0)
            .map(|(node, c)| NodeStale {
                node: node.clone(),
                reads: c.reads,
                checked: c.checked,
                stale: c.stale,
                rate: ratio(c.stale, c.checked),
            })
            .collect();
        let checked = by_node.iter().map(|n| n.checked).sum();
        let (reads, stale) = (self.reads_answered(), self.stale());
        StaleSummary {
            reads,
            checked,
            stale,
            stale_missing: self.stale_missing,
            rate: ratio(stale, checked),
            rate_of_all_reads: ratio(stale, reads),
            max_versions_behind: self.max_behind,
            by_node,
        }
    }

    /// The failure part of the summary.
    pub fn error_summary(&self) -> ErrorSummary {
        ErrorSummary {
            total: self.error_count(),
            by_kind: self.errors.clone(),
            by_node: self
                .nodes
                .iter()
                .filter(|(_, c)| c.errors > 0)
                .map(|(n, c)| (n.clone(), c.errors))
                .collect(),
            examples: self.error_examples.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(node: &str, known: u64, version: Option<u64>, stale: bool) -> Sample {
        Sample {
            seq: 0,
            kind: OpKind::Read,
            key: "k".into(),
            node: node.into(),
            intended_us: 0,
            queue_us: 0,
            latency_us: 1500,
            service_us: 1000,
            outcome: if version.is_some() { "ok" } else { "not_found" }.into(),
            version,
            known_version: Some(known),
            stale,
            since_write_us: Some(700),
            error: None,
            session: 0,
            node_id: None,
            value: None,
        }
    }

    #[test]
    fn stale_reads_are_counted_per_answering_node() {
        let mut s = Stats::default();
        s.record(&read("node 1", 3, Some(3), false));
        s.record(&read("node 2", 3, Some(1), true));
        s.record(&read("node 2", 2, None, true));
        s.record(&read("node 2", 0, None, false));
        let mut err = read("node 2", 0, None, false);
        err.outcome = "http_503".into();
        err.error = Some("write quorum not reached".into());
        s.record(&err);
        let st = s.stale_summary();
        assert_eq!(
            (
                st.reads,
                st.checked,
                st.stale,
                st.stale_missing,
                st.max_versions_behind
            ),
            (4, 3, 2, 1, 2)
        );
        assert_eq!(st.by_node[1].node, "node 2");
        assert_eq!((st.by_node[1].checked, st.by_node[1].stale), (2, 2));
        assert_eq!(st.by_node[0].rate, 0.0);
        assert_eq!(s.error_summary().by_kind["http_503"], 1);
        assert_eq!(
            s.error_summary().examples["http_503"],
            "write quorum not reached"
        );
        assert_eq!(s.reads.len(), 4);
        assert_eq!(s.interval.len(), 4);
        let l = LatencySummary::of(&s.reads);
        assert!((l.p50_ms - 1.5).abs() < 0.01, "{l:?}");
    }
}
