//! `kv-loadtester failover`: how long a leader-follower cluster takes no
//! write after its leader crashes.
//!
//! One local cluster ([`crate::cluster`]) is started, and waited for until
//! it is converged. Then, `--runs` times:
//!
//! 1. the current leader (the one the nodes report in the highest term) is
//!    killed with SIGKILL; the clock starts just before the signal;
//! 2. from then on a write leaves every `--interval-ms` (10 ms), round-robin
//!    over the surviving nodes, each with a `--request-timeout-ms` timeout,
//!    without waiting for the earlier ones (a follower forwards a write to
//!    the leader it knows, so any survivor serves it once a new leader's
//!    term started); the first 201 stops the clock: that time, and the node
//!    that decided the write (`served_by`), are the run's result;
//! 3. the killed node is restarted empty, and the cluster waited for until
//!    it is converged again (every node ready, caught up with the leader,
//!    not catching up), which the run records as its recovery time.
//!
//! At the end: every time, and their median, p90 and maximum
//! ([`nearest_rank`]); `--out FILE` writes them as JSON ([`FailoverReport`]).
//! A run in which no write succeeds within 60 s, or whose cluster does not
//! converge, is reported as failed and ends the measurement. Every node is
//! killed at the end, on success or failure.

use crate::cli::FailoverArgs;
use crate::cluster::{default_node_bin, ClusterKind, ClusterSpec, LocalCluster};
use crate::error::{Error, Result};
use kv_shared::{NodeId, SetRequest, SetResponse, Term};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait for a write to succeed after a kill.
const WRITE_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for the cluster to converge (at the start and after a restart).
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);

/// One kill and what followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRun {
    /// 1-based.
    pub run: u32,
    /// The leader that was killed.
    pub killed: NodeId,
    /// Its term.
    pub term_before: Term,
    /// From the kill to the first 201, ms.
    pub elapsed_ms: f64,
    /// The node that decided that write (its `served_by`).
    pub served_by: Option<NodeId>,
    /// The node the write was sent to.
    pub sent_to: NodeId,
    /// Writes sent until then (the last one included).
    pub attempts: u64,
    /// The leader once the cluster converged again, and its term.
    pub new_leader: NodeId,
    /// Its term.
    pub term_after: Term,
    /// From the restart of the killed node to convergence, ms.
    pub recovered_ms: f64,
}

/// The measurement: `--out FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// The tool and its version.
    pub tool: String,
    /// The command line.
    pub command: String,
    /// Nodes in the cluster.
    pub nodes: u32,
    /// Write quorum.
    pub w: u32,
    /// Read quorum.
    pub r: u32,
    /// Extra node flags.
    pub node_args: Vec<String>,
    /// Time between two writes after a kill, ms.
    pub interval_ms: u64,
    /// Timeout of each of those writes, ms.
    pub request_timeout_ms: u64,
    /// The runs that completed.
    pub runs: Vec<FailoverRun>,
    /// Why the measurement stopped early, if it did.
    pub failure: Option<String>,
    /// Every `elapsed_ms`, in run order.
    pub elapsed_ms: Vec<f64>,
    /// Their median (nearest rank), ms.
    pub median_ms: Option<f64>,
    /// Their 90th percentile (nearest rank), ms.
    pub p90_ms: Option<f64>,
    /// Their maximum, ms.
    pub max_ms: Option<f64>,
}

/// The `q`-quantile of `values` by the nearest-rank method: the smallest
/// value with at least `q × n` values at or below it. `None` when empty.
pub fn nearest_rank(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
    sorted.get(rank - 1).copied()
}

/// Runs the measurement the flags describe; `command` is quoted in the report.
///
/// # Errors
/// A cluster that does not start or converge at the start, or an `--out`
/// file that cannot be written; a run that fails later ends the
/// measurement and is reported in [`FailoverReport::failure`].
pub async fn run_failover(args: &FailoverArgs, command: &str) -> Result<FailoverReport> {
    if args.nodes < 3 {
        return Err(Error::Config(
            "failover needs at least 3 nodes (a majority must survive a kill)".into(),
        ));
    }
    let spec = ClusterSpec {
        kind: ClusterKind::LeaderFollower {
            w: args.w,
            r: args.r,
        },
        n: args.nodes,
        delay_profile: false,
        node_bin: args.node_bin.clone().unwrap_or_else(default_node_bin),
        log_dir: args.log_dir.clone(),
        extra_args: args.node_arg.clone(),
        env: Vec::new(),
    };
    let mut cluster = LocalCluster::start(&spec).await?;
    let result = measure(&mut cluster, args).await;
    cluster.stop().await;
    let (runs, failure) = result?;
    let elapsed: Vec<f64> = runs.iter().map(|r| r.elapsed_ms).collect();
    let report = FailoverReport {
        tool: format!("kv-loadtester {}", env!("CARGO_PKG_VERSION")),
        command: command.to_owned(),
        nodes: args.nodes,
        w: args.w,
        r: args.r,
        node_args: args.node_arg.clone(),
        interval_ms: args.interval_ms,
        request_timeout_ms: args.request_timeout_ms,
        median_ms: nearest_rank(&elapsed, 0.5),
        p90_ms: nearest_rank(&elapsed, 0.9),
        max_ms: elapsed.iter().copied().reduce(f64::max),
        elapsed_ms: elapsed,
        runs,
        failure,
    };
    if let Some(path) = &args.out {
        crate::output::write_json(path, &report)?;
    }
    Ok(report)
}

/// The runs; a failing run ends them (its error is the second value).
/// Errors only when the cluster does not converge at the start.
async fn measure(
    cluster: &mut LocalCluster,
    args: &FailoverArgs,
) -> Result<(Vec<FailoverRun>, Option<String>)> {
    let client = crate::runner::http_client()?;
    let mut leader = cluster.wait_converged(CONVERGE_LIMIT).await?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        match one_run(cluster, &client, args, run, leader).await {
            Ok(r) => {
                if !args.quiet {
                    eprintln!("{}", run_line(&r));
                }
                leader = (r.new_leader, r.term_after);
                runs.push(r);
            }
            Err(e) => return Ok((runs, Some(format!("run {run}: {e}")))),
        }
    }
    Ok((runs, None))
}

/// Kill the leader, time the first acknowledged write, restart, converge.
async fn one_run(
    cluster: &mut LocalCluster,
    client: &reqwest::Client,
    args: &FailoverArgs,
    run: u32,
    (killed, term_before): (NodeId, Term),
) -> Result<FailoverRun> {
    let survivors: Vec<(NodeId, String)> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != killed)
        .map(|id| (id, cluster.url(id).to_owned()))
        .collect();
    let start = Instant::now();
    cluster.kill(killed).await?;
    let first = first_write(
        client,
        &survivors,
        run,
        start,
        Duration::from_millis(args.interval_ms.max(1)),
        Duration::from_millis(args.request_timeout_ms.max(1)),
    )
    .await
    .ok_or_else(|| {
        Error::Cluster(format!(
            "no write succeeded within {WRITE_LIMIT:?} after node {killed} was killed"
        ))
    })?;
    let restarted = Instant::now();
    cluster.restart(killed).await?;
    let (new_leader, term_after) = cluster.wait_converged(CONVERGE_LIMIT).await?;
    Ok(FailoverRun {
        run,
        killed,
        term_before,
        elapsed_ms: ms(first.at - start),
        served_by: first.served_by,
        sent_to: first.sent_to,
        attempts: first.attempts,
        new_leader,
        term_after,
        recovered_ms: ms(restarted.elapsed()),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The first acknowledged write after a kill.
struct FirstWrite {
    at: Instant,
    served_by: Option<NodeId>,
    sent_to: NodeId,
    attempts: u64,
}

/// Sends a write every `interval` from `start` on, round-robin over
/// `nodes`, until one answers 201 (or [`WRITE_LIMIT`] passes).
async fn first_write(
    client: &reqwest::Client,
    nodes: &[(NodeId, String)],
    run: u32,
    start: Instant,
    interval: Duration,
    timeout: Duration,
) -> Option<FirstWrite> {
    let deadline = start + WRITE_LIMIT;
    let mut tick = tokio::time::interval_at(start, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let most = WRITE_LIMIT.as_millis() / interval.as_millis().max(1) + 1;
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick(), if u128::from(sent) < most => {
                if Instant::now() >= deadline {
                    return None;
                }
                let (id, url) = nodes[sent as usize % nodes.len()].clone();
                let (client, attempt) = (client.clone(), sent + 1);
                let body = SetRequest {
                    key: format!("failover-{run}-{attempt}"),
                    value: "x".into(),
                };
                tasks.spawn(async move {
                    let r = client
                        .post(format!("{url}{}", kv_shared::SET_PATH))
                        .json(&body)
                        .timeout(timeout)
                        .send()
                        .await
                        .ok()?;
                    if r.status() != reqwest::StatusCode::CREATED {
                        return None;
                    }
                    let set: SetResponse = r.json().await.ok()?;
                    Some(FirstWrite {
                        at: Instant::now(),
                        served_by: set.served_by,
                        sent_to: id,
                        attempts: attempt,
                    })
                });
                sent += 1;
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Some(first)) = done {
                    return Some(first);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

fn node(id: Option<NodeId>) -> String {
    id.map_or("?".into(), |id| format!("node {id}"))
}

/// One line per run.
fn run_line(r: &FailoverRun) -> String {
    format!(
        "run {:>2}: killed node {} (term {}) → first write acknowledged after {:>7.1} ms by {} \
         (sent to node {}, attempt {}); node {} leads term {}; converged {:.0} ms after the restart",
        r.run,
        r.killed,
        r.term_before,
        r.elapsed_ms,
        node(r.served_by),
        r.sent_to,
        r.attempts,
        r.new_leader,
        r.term_after,
        r.recovered_ms
    )
}

/// The terminal summary.
pub fn render(report: &FailoverReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} failover: {} nodes, W{} R{}{}; after each kill -9 of the leader, a write every {} ms \
         round-robin over the survivors ({} ms timeout each)",
        report.tool,
        report.nodes,
        report.w,
        report.r,
        if report.node_args.is_empty() {
            String::new()
        } else {
            format!(", node flags {}", report.node_args.join(" "))
        },
        report.interval_ms,
        report.request_timeout_ms
    );
    for r in &report.runs {
        let _ = writeln!(out, "  {}", run_line(r));
    }
    let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1} ms"));
    let _ = writeln!(
        out,
        "time from the kill to the first acknowledged write over {} runs: median {}, p90 {}, max {}",
        report.runs.len(),
        f(report.median_ms),
        f(report.p90_ms),
        f(report.max_ms)
    );
    let all: Vec<String> = report
        .elapsed_ms
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect();
    let _ = writeln!(out, "all (ms): {}", all.join(", "));
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "stopped early: {failure}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_measured_value() {
        let v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(10.0));
        assert_eq!(nearest_rank(&v, 0.9), Some(18.0));
        assert_eq!(nearest_rank(&v, 1.0), Some(20.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[7.5], 0.9), Some(7.5));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
