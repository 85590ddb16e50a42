//! `kv-loadtester bench`: the store side by side with etcd and Redis, on
//! 127.0.0.1 only, with one client (this tool) and one workload generator
//! for every system.
//!
//! Systems ([`System`]): one `kv-node` (standalone); leader-follower N = 5 at
//! W1R5, W3R3, W5R1 (writes to the leader, reads at the followers);
//! leaderless N = 5 at W3R3 and W5R1 (any node); a 5-member etcd
//! (`--unsafe-no-fsync`: no disk in the way, as the store keeps everything in
//! memory); Redis 7 as a primary with 4 replicas, a write being `SET` alone
//! and `SET` + `WAIT 2` (two replicas acknowledged: W = 3 of 5). Missing
//! `etcd` or `redis-server` binaries make those rows "not run" (`scripts/bench.sh`
//! installs them from Debian first).
//!
//! Workloads: **write-heavy** (100 % writes) and **read-heavy** (5 % writes,
//! YCSB-B's mix), each measured twice: closed loop with `--concurrency`
//! clients for the peak throughput, then open loop at half that peak for
//! the latency percentiles (p50, p99, p99.9, from the intended send time,
//! so queueing counts). Each system runs the write-heavy workload first, so
//! the read-heavy one reads keys that exist.
//!
//! The table gives every peak as a ratio to one `kv-node`, to etcd and to
//! Redis (`SET` alone) measured in the same run: on a shared 2-core machine
//! the absolute figures move from run to run, the ratios much less. The
//! client shares the cores with the system measured, so the fastest
//! systems are client-bound; the CPU time the tool itself used per
//! operation is printed to show how much. For the kv-node systems the table
//! also gives the CPU time of the node that takes the writes (the leader; the
//! one node) per write, and of all the nodes per operation, read from
//! `/proc` (Linux only).

use crate::cli::{KeyDist, ModeArg, ReadEndpoint, ReadFrom, RunArgs, WorkloadArgs};
use crate::cluster::{default_node_bin, ClusterKind, ClusterSpec, LocalCluster};
use crate::error::{Error, Result};
use crate::peers::{EtcdCluster, PeerWorkload, RedisCluster, Target};
use crate::runner::{http_client, run_plain, Pace, Plan};
use crate::stats::LatencySummary;
use crate::targets::Targets;
use crate::workload::KvWorkload;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A system the benchmark starts and measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// One kv-node, no replication.
    Single,
    /// Leader-follower N=5, W1R5.
    LfW1,
    /// Leader-follower N=5, W3R3.
    LfW3,
    /// Leader-follower N=5, W5R1.
    LfW5,
    /// Leaderless N=5, W3R3.
    LlW3,
    /// Leaderless N=5, W5R1.
    LlW5,
    /// etcd, 5 members, --unsafe-no-fsync.
    Etcd,
    /// Redis primary + 4 replicas, SET.
    Redis,
    /// Redis primary + 4 replicas, SET + WAIT 2.
    RedisWait2,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 9] = [
        System::Single,
        System::LfW1,
        System::LfW3,
        System::LfW5,
        System::LlW3,
        System::LlW5,
        System::Etcd,
        System::Redis,
        System::RedisWait2,
    ];

    /// Its name in the table.
    pub fn label(self) -> &'static str {
        match self {
            System::Single => "one kv-node",
            System::LfW1 => "kv LF W1R5",
            System::LfW3 => "kv LF W3R3",
            System::LfW5 => "kv LF W5R1",
            System::LlW3 => "kv leaderless W3R3",
            System::LlW5 => "kv leaderless W5R1",
            System::Etcd => "etcd 3.4 (5 members)",
            System::Redis => "Redis (1 + 4 replicas), SET",
            System::RedisWait2 => "Redis (1 + 4 replicas), SET + WAIT 2",
        }
    }

    /// The kv-node cluster it is, if it is one.
    fn kv(self) -> Option<(ClusterKind, u32)> {
        let lf = |w, r| ClusterKind::LeaderFollower { w, r };
        let ll = |w, r| ClusterKind::Leaderless {
            w: Some(w),
            r: Some(r),
        };
        Some(match self {
            System::Single => (ClusterKind::Standalone, 1),
            System::LfW1 => (lf(1, 5), 5),
            System::LfW3 => (lf(3, 3), 5),
            System::LfW5 => (lf(5, 1), 5),
            System::LlW3 => (ll(3, 3), 5),
            System::LlW5 => (ll(5, 1), 5),
            System::Etcd | System::Redis | System::RedisWait2 => return None,
        })
    }
}

/// A workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchWorkload {
    /// 100 % writes.
    WriteHeavy,
    /// 5 % writes, 95 % reads.
    ReadHeavy,
}

impl BenchWorkload {
    fn write_ratio(self) -> f64 {
        match self {
            BenchWorkload::WriteHeavy => 1.0,
            BenchWorkload::ReadHeavy => 0.05,
        }
    }

    fn label(self) -> &'static str {
        match self {
            BenchWorkload::WriteHeavy => "write-heavy (100 % writes)",
            BenchWorkload::ReadHeavy => "read-heavy (95 % reads)",
        }
    }
}

/// Flags of `kv-loadtester bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds of each measurement (peak, then half the peak).
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// Closed-loop clients for the peak (and most requests in flight at half of it).
    #[arg(long = "clients", default_value_t = 32)]
    pub clients: u32,
    /// Systems to measure, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub systems: Vec<System>,
    /// Workloads, comma-separated (default: both).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<BenchWorkload>,
    /// Distinct keys (uniform).
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Skip the open-loop latency measurement at half the peak.
    #[arg(long)]
    pub no_latency: bool,
    /// Rate of the open-loop latency measurement, operations per second,
    /// for every system (default: half of each system's peak). One rate
    /// compares two builds or settings of a system at the same load.
    #[arg(long, value_parser = positive_rate)]
    pub latency_rate: Option<f64>,
    /// The kv-node binary (default: kv-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// `--worker-threads` of every kv-node started (0: one per core, the
    /// node's default). 1 lowers a leader's CPU per replicated write (fewer
    /// wake-ups across threads) but slows the single node.
    #[arg(long, default_value_t = 0)]
    pub node_worker_threads: usize,
    /// `--worker-threads` of the nodes of the replicated systems only (the
    /// single node keeps `--node-worker-threads`; default: the same). Five
    /// replicas sharing two cores with 1 each wake each other less.
    #[arg(long)]
    pub replica_worker_threads: Option<usize>,
    /// `--read-batches-in-flight` of every kv-node started (1, the node's
    /// default: the coordinated reads' asks to a peer travel in batches over
    /// one reads stream; 0: each ask is a request of its own).
    #[arg(long, default_value_t = 1)]
    pub node_read_batches_in_flight: u32,
    /// Directory for bench.json, bench.md and the processes' logs.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

/// A rate above 0 and at most 10 million operations per second.
fn positive_rate(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 1e7 {
        Ok(v)
    } else {
        Err("a rate above 0 and at most 10000000 ops/s".into())
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Operations answered per second (errors included).
    pub ops_per_s: f64,
    /// Operations answered (errors included).
    pub ops: u64,
    /// Writes answered successfully.
    pub writes_answered: u64,
    /// Of those, errors (timeouts, 503s, failed WAITs…).
    pub errors: u64,
    /// Write latency, ms.
    pub writes: LatencySummary,
    /// Read latency, ms.
    pub reads: LatencySummary,
    /// CPU time this tool used per operation, µs (client cost).
    pub client_cpu_us_per_op: Option<f64>,
    /// CPU time of the node that takes the writes (the leader, or the one
    /// node) per write, µs; kv-node systems other than leaderless, on Linux,
    /// in a workload of writes only (with reads, that node's CPU time is
    /// not the writes' alone).
    pub leader_cpu_us_per_write: Option<f64>,
    /// CPU time of every node together per operation, µs (kv-node systems, Linux).
    pub nodes_cpu_us_per_op: Option<f64>,
}

/// The processes of a kv-node system whose CPU time a measurement reads.
#[derive(Debug, Clone, Default)]
pub struct NodeProcesses {
    /// Every node's pid.
    pub all: Vec<u32>,
    /// The pid of the node that takes the writes (leader-follower's leader,
    /// the standalone node); `None` for leaderless.
    pub writer: Option<u32>,
}

impl NodeProcesses {
    /// CPU time used so far by every process (`None` where unreadable).
    fn cpu(&self) -> Vec<Option<Duration>> {
        self.all.iter().map(|&pid| process_cpu_of(pid)).collect()
    }
}

/// One row: a system and a workload.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The system.
    pub system: System,
    /// The workload.
    pub workload: BenchWorkload,
    /// Closed loop.
    pub peak: Option<Measured>,
    /// Open loop at half the peak (or at `--latency-rate`).
    pub half_peak: Option<Measured>,
    /// Why the system was not measured, when it was not.
    pub not_run: Option<String>,
}

/// What `bench.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The command line.
    pub command: String,
    /// When it started (UTC).
    pub started_at: String,
    /// The rate of every latency measurement (`--latency-rate`); none: half
    /// of each peak.
    pub latency_rate: Option<f64>,
    /// Every row.
    pub rows: Vec<Row>,
}

/// Runs the benchmark, writes `bench.json` and `bench.md` into `--out`,
/// returns the result.
///
/// # Errors
/// The output directory cannot be written; a system that fails to start is
/// a row with `not_run`, not an error.
pub async fn run_bench(args: &BenchArgs, command: &str) -> Result<BenchResult> {
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let systems = if args.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        args.systems.clone()
    };
    let workloads = if args.workloads.is_empty() {
        vec![BenchWorkload::WriteHeavy, BenchWorkload::ReadHeavy]
    } else {
        args.workloads.clone()
    };
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut rows = Vec::new();
    for system in systems {
        eprintln!("bench: {}", system.label());
        let logs = args.out.join(format!("{system:?}").to_lowercase());
        match measure_system(args, system, &workloads, &logs).await {
            Ok(mut measured) => rows.append(&mut measured),
            Err(e) => {
                eprintln!("bench: {} not run: {e}", system.label());
                rows.extend(workloads.iter().map(|&workload| Row {
                    system,
                    workload,
                    peak: None,
                    half_peak: None,
                    not_run: Some(e.to_string()),
                }));
            }
        }
    }
    let result = BenchResult {
        command: command.into(),
        started_at,
        latency_rate: args.latency_rate,
        rows,
    };
    crate::output::write_json(&args.out.join("bench.json"), &result)?;
    let md = render(&result);
    std::fs::write(args.out.join("bench.md"), &md)
        .map_err(|e| Error::io(args.out.join("bench.md"), e))?;
    Ok(result)
}

/// The load flags of one measurement of `system`.
fn run_args(args: &BenchArgs, system: System, workload: BenchWorkload, urls: &[String]) -> RunArgs {
    let mut w = WorkloadArgs {
        keys: args.keys,
        key_dist: KeyDist::Uniform,
        hot_keys: 32,
        window_step: 8,
        hot_fraction: 0.9,
        zipf_theta: 0.99,
        value_size: args.value_size,
        key_prefix: "bench".into(),
        seed: 1,
        read_from: ReadFrom::All,
        read_endpoint: ReadEndpoint::Get,
        concurrency: Some(args.clients),
        timeout_ms: 5_000,
        no_verify: true,
        quiet: true,
        nemesis: None,
        admin_token: None,
        no_check: true,
        history_max_ops: 0,
        check_time_limit: 1.0,
    };
    if matches!(system, System::LfW1 | System::LfW3 | System::LfW5) {
        w.read_from = ReadFrom::Followers;
    }
    RunArgs {
        mode: if matches!(system, System::LlW3 | System::LlW5) {
            ModeArg::Leaderless
        } else {
            ModeArg::Leader
        },
        nodes: urls.to_vec(),
        discover: None,
        single_node: false,
        write_ratio: workload.write_ratio(),
        duration: args.seconds,
        qps: None,
        requests: None,
        out: None,
        target: match system {
            System::Etcd => Target::Etcd,
            System::Redis | System::RedisWait2 => Target::Redis,
            _ => Target::Kv,
        },
        redis_wait: if system == System::RedisWait2 { 2 } else { 0 },
        workload: w,
    }
}

/// `--worker-threads` of the nodes of a kv system of `n` nodes.
fn worker_threads(args: &BenchArgs, n: u32) -> usize {
    match args.replica_worker_threads {
        Some(threads) if n > 1 => threads,
        _ => args.node_worker_threads,
    }
}

/// Starts `system`, measures every workload on it, stops it.
async fn measure_system(
    args: &BenchArgs,
    system: System,
    workloads: &[BenchWorkload],
    logs: &Path,
) -> Result<Vec<Row>> {
    enum Running {
        Kv(LocalCluster),
        Etcd(EtcdCluster),
        Redis(RedisCluster),
    }
    let running = match system.kv() {
        Some((kind, n)) => {
            let spec = ClusterSpec {
                kind,
                n,
                delay_profile: false,
                node_bin: args.node_bin.clone().unwrap_or_else(default_node_bin),
                log_dir: Some(logs.to_owned()),
                extra_args: vec![
                    "--worker-threads".into(),
                    worker_threads(args, n).to_string(),
                    "--read-batches-in-flight".into(),
                    args.node_read_batches_in_flight.to_string(),
                ],
                env: Vec::new(),
            };
            std::fs::create_dir_all(logs).map_err(|e| Error::io(logs, e))?;
            let cluster = LocalCluster::start(&spec).await?;
            cluster.wait_ready(Duration::from_secs(30)).await?;
            Running::Kv(cluster)
        }
        None if system == System::Etcd => Running::Etcd(EtcdCluster::start(5, logs).await?),
        None => Running::Redis(RedisCluster::start(4, logs).await?),
    };
    let processes = match &running {
        Running::Kv(c) => Some(kv_processes(c, system).await),
        Running::Etcd(_) | Running::Redis(_) => None,
    };
    let urls = match &running {
        Running::Kv(c) => c.urls.clone(),
        Running::Etcd(c) => c.urls.clone(),
        Running::Redis(c) => vec![c.primary.clone()],
    };
    let mut rows = Vec::new();
    let mut failure = None;
    for &workload in workloads {
        let run = run_args(args, system, workload, &urls);
        match measure_workload(args, &run, processes.as_ref()).await {
            Ok((peak, half_peak)) => rows.push(Row {
                system,
                workload,
                peak: Some(peak),
                half_peak,
                not_run: None,
            }),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match running {
        Running::Kv(c) => c.stop().await,
        Running::Etcd(c) => c.stop().await,
        Running::Redis(c) => c.stop().await,
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// The pids of a running kv-node system's nodes, and which one takes the writes.
async fn kv_processes(c: &LocalCluster, system: System) -> NodeProcesses {
    let all = c.ids().into_iter().filter_map(|id| c.pid(id)).collect();
    let writer = match system {
        System::LlW3 | System::LlW5 => None,
        System::Single => c.ids().first().and_then(|&id| c.pid(id)),
        _ => match c.leader().await {
            Some((id, _)) => c.pid(id),
            None => None,
        },
    };
    NodeProcesses { all, writer }
}

/// The peak (closed loop) and, unless `--no-latency`, the latency at half of it (open loop).
async fn measure_workload(
    args: &BenchArgs,
    run: &RunArgs,
    processes: Option<&NodeProcesses>,
) -> Result<(Measured, Option<Measured>)> {
    let closed = Plan {
        pace: Pace::Closed {
            clients: args.clients.max(1),
        },
        duration: Duration::from_secs_f64(args.seconds),
        max_requests: None,
        drain: Duration::from_secs(6),
    };
    let peak = measure_nodes(run, closed, processes).await?;
    if args.no_latency || peak.ops_per_s < 2.0 {
        return Ok((peak, None));
    }
    let open = Plan {
        pace: Pace::Open {
            qps: args.latency_rate.unwrap_or(peak.ops_per_s / 2.0),
            max_in_flight: args.clients.max(1) * 4,
        },
        ..closed
    };
    let half = measure_nodes(run, open, processes).await?;
    Ok((peak, Some(half)))
}

/// [`measure`], with the CPU time `processes` used meanwhile.
async fn measure_nodes(
    run: &RunArgs,
    plan: Plan,
    processes: Option<&NodeProcesses>,
) -> Result<Measured> {
    let Some(p) = processes else {
        return measure(run, plan).await;
    };
    let before = p.cpu();
    let mut m = measure(run, plan).await?;
    let after = p.cpu();
    let used = |pid: u32| {
        let i = p.all.iter().position(|&q| q == pid)?;
        after
            .get(i)
            .copied()??
            .checked_sub(before.get(i).copied()??)
    };
    m.leader_cpu_us_per_write = p
        .writer
        .and_then(used)
        .and_then(|d| cpu_per_write(d, m.writes_answered, run.write_ratio));
    let total: Option<Duration> = p.all.iter().map(|&pid| used(pid)).sum();
    let ops = m.ops as f64;
    m.nodes_cpu_us_per_op = total
        .filter(|_| ops > 0.0)
        .map(|d| d.as_secs_f64() * 1e6 / ops);
    Ok(m)
}

/// The writer's CPU time per write, µs: only in a workload of writes only,
/// where that time is the writes' alone.
fn cpu_per_write(cpu: Duration, writes: u64, write_ratio: f64) -> Option<f64> {
    (writes > 0 && write_ratio >= 1.0).then(|| cpu.as_secs_f64() * 1e6 / writes as f64)
}

/// One measurement of `run` (its target) paced by `plan`.
pub async fn measure(run: &RunArgs, plan: Plan) -> Result<Measured> {
    let cpu_before = process_cpu();
    let (stats, driven) = match run.target {
        Target::Kv => {
            let client = http_client()?;
            let targets = Targets::resolve(
                &client,
                run.mode,
                &run.nodes,
                run.discover.as_deref(),
                run.workload.read_from,
                run.single_node,
            )
            .await?;
            let w = Arc::new(KvWorkload::new(client, targets, run)?);
            run_plain(w, plan, run.workload.quiet).await?
        }
        Target::Etcd => {
            let w = PeerWorkload::etcd(http_client()?, &run.nodes, run).await?;
            run_plain(Arc::new(w), plan, run.workload.quiet).await?
        }
        Target::Redis => {
            let url = run.nodes.first().ok_or_else(|| {
                Error::Config("--target redis needs --nodes redis://HOST:PORT".into())
            })?;
            let w = PeerWorkload::redis(url, run.redis_wait, run).await?;
            run_plain(Arc::new(w), plan, run.workload.quiet).await?
        }
    };
    let ops = stats.reads.len() + stats.writes.len() + stats.error_count();
    let cpu = match (cpu_before, process_cpu()) {
        (Some(a), Some(b)) if ops > 0 => Some((b - a).as_secs_f64() * 1e6 / ops as f64),
        _ => None,
    };
    Ok(Measured {
        ops_per_s: ops as f64 / driven.elapsed.as_secs_f64().max(1e-9),
        ops,
        writes_answered: stats.writes.len(),
        errors: stats.error_count(),
        writes: LatencySummary::of(&stats.writes),
        reads: LatencySummary::of(&stats.reads),
        client_cpu_us_per_op: cpu,
        leader_cpu_us_per_write: None,
        nodes_cpu_us_per_op: None,
    })
}

/// CPU time (user + system) this process used so far.
fn process_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills the struct we pass and touches nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Some(tv(usage.ru_utime) + tv(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU time (user + system) process `pid` used so far, from
/// `/proc/PID/stat` (Linux; `None` elsewhere or once it is gone).
fn process_cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Fields 3 (state) … 13 come first; 14 is utime, 15 stime, in clock ticks.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    #[cfg(unix)]
    // SAFETY: sysconf reads a constant of the system and touches no memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[cfg(not(unix))]
    let ticks = 100;
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// The Markdown table of `r`: one row per system and workload.
pub fn render(r: &BenchResult) -> String {
    let peak_of = |system: System, workload: BenchWorkload| {
        r.rows
            .iter()
            .find(|row| row.system == system && row.workload == workload)
            .and_then(|row| row.peak.as_ref())
            .map(|m| m.ops_per_s)
    };
    let at = r
        .latency_rate
        .map_or("half the peak".into(), |q| format!("{q:.0} ops/s"));
    let mut md = format!(
        "# kv-store benchmark\n\nGenerated {} by `{}`.\n\n\
         | system | workload | peak ops/s | × one node | × etcd | × Redis SET | p50 / p99 / p99.9 ms at {at} | errors | client CPU µs/op | leader CPU µs/write | nodes CPU µs/op |\n\
         |---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
        r.started_at, r.command
    );
    for row in &r.rows {
        let Some(peak) = &row.peak else {
            let _ = writeln!(
                md,
                "| {} | {} | not run: {} | | | | | | | | |",
                row.system.label(),
                row.workload.label(),
                row.not_run.as_deref().unwrap_or("")
            );
            continue;
        };
        let ratio = |other: System| {
            peak_of(other, row.workload)
                .filter(|o| *o > 0.0)
                .map_or("–".into(), |o| format!("{:.2}", peak.ops_per_s / o))
        };
        let latency = row.half_peak.as_ref().map_or("–".into(), |h| {
            let l = match row.workload {
                BenchWorkload::WriteHeavy => &h.writes,
                BenchWorkload::ReadHeavy => &h.reads,
            };
            format!("{:.2} / {:.2} / {:.2}", l.p50_ms, l.p99_ms, l.p999_ms)
        });
        let errors = peak.errors + row.half_peak.as_ref().map_or(0, |h| h.errors);
        let us = |v: Option<f64>| v.map_or("–".into(), |c| format!("{c:.1}"));
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.system.label(),
            row.workload.label(),
            peak.ops_per_s,
            ratio(System::Single),
            ratio(System::Etcd),
            ratio(System::Redis),
            latency,
            errors,
            us(peak.client_cpu_us_per_op),
            us(peak.leader_cpu_us_per_write),
            us(peak.nodes_cpu_us_per_op),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(ops_per_s: f64) -> Measured {
        Measured {
            ops_per_s,
            ops: 0,
            writes_answered: 0,
            errors: 0,
            writes: LatencySummary::default(),
            reads: LatencySummary::default(),
            client_cpu_us_per_op: Some(12.5),
            leader_cpu_us_per_write: Some(20.0),
            nodes_cpu_us_per_op: None,
        }
    }

    #[test]
    fn the_table_gives_ratios_to_one_node_etcd_and_redis() {
        let row = |system, ops: Option<f64>| Row {
            system,
            workload: BenchWorkload::WriteHeavy,
            peak: ops.map(measured),
            half_peak: None,
            not_run: ops.is_none().then(|| "etcd is missing".to_string()),
        };
        let r = BenchResult {
            command: "kv-loadtester bench".into(),
            started_at: "now".into(),
            latency_rate: None,
            rows: vec![
                row(System::Single, Some(100_000.0)),
                row(System::LfW3, Some(60_000.0)),
                row(System::Etcd, None),
                row(System::Redis, Some(150_000.0)),
            ],
        };
        let md = render(&r);
        assert!(
            md.contains("| kv LF W3R3 | write-heavy (100 % writes) | 60000 | 0.60 | – | 0.40 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| etcd 3.4 (5 members) | write-heavy (100 % writes) | not run: etcd is missing"
            ),
            "{md}"
        );
        assert!(
            md.contains("p50 / p99 / p99.9 ms at half the peak |"),
            "{md}"
        );
        let fixed = render(&BenchResult {
            latency_rate: Some(2500.0),
            ..r
        });
        assert!(
            fixed.contains("p50 / p99 / p99.9 ms at 2500 ops/s |"),
            "{fixed}"
        );
    }

    #[test]
    fn replica_worker_threads_leave_the_single_node_alone() {
        let bench = |extra: &[&str]| {
            let argv = ["kv-loadtester", "bench"].iter().chain(extra).copied();
            match crate::cli::parse_from(argv).unwrap().command {
                Some(crate::cli::Command::Bench(b)) => b,
                _ => panic!("bench parses"),
            }
        };
        let default = bench(&[]);
        assert_eq!(
            (worker_threads(&default, 1), worker_threads(&default, 5)),
            (0, 0)
        );
        let both = bench(&["--node-worker-threads", "2"]);
        assert_eq!((worker_threads(&both, 1), worker_threads(&both, 5)), (2, 2));
        let replicas = bench(&["--replica-worker-threads", "1"]);
        assert_eq!(
            (worker_threads(&replicas, 1), worker_threads(&replicas, 5)),
            (0, 1)
        );
    }

    #[test]
    fn each_system_gets_its_target_and_routing() {
        let args = crate::cli::parse_from(["kv-loadtester", "bench"]).unwrap();
        let Some(crate::cli::Command::Bench(b)) = args.command else {
            panic!("bench parses");
        };
        let urls = vec!["http://127.0.0.1:1".to_string()];
        let lf = run_args(&b, System::LfW3, BenchWorkload::ReadHeavy, &urls);
        assert_eq!(
            (lf.target, lf.mode, lf.workload.read_from),
            (Target::Kv, ModeArg::Leader, ReadFrom::Followers)
        );
        assert_eq!(lf.write_ratio, 0.05);
        let ll = run_args(&b, System::LlW5, BenchWorkload::WriteHeavy, &urls);
        assert_eq!((ll.mode, ll.write_ratio), (ModeArg::Leaderless, 1.0));
        let wait = run_args(&b, System::RedisWait2, BenchWorkload::WriteHeavy, &urls);
        assert_eq!((wait.target, wait.redis_wait), (Target::Redis, 2));
        assert!(lf.workload.no_check && lf.workload.no_verify);
        assert_eq!((b.clients, b.latency_rate), (32, None));
        for bad in ["0", "-5", "NaN", "inf", "1e9", "fast"] {
            assert!(
                crate::cli::parse_from(["kv-loadtester", "bench", "--latency-rate", bad]).is_err(),
                "--latency-rate {bad}"
            );
        }
        let args =
            crate::cli::parse_from(["kv-loadtester", "bench", "--latency-rate", "2500"]).unwrap();
        let Some(crate::cli::Command::Bench(b)) = args.command else {
            panic!("bench parses");
        };
        assert_eq!(b.latency_rate, Some(2500.0));
    }

    #[test]
    fn the_writers_cpu_per_write_is_given_for_writes_only() {
        let cpu = Duration::from_millis(30);
        assert_eq!(cpu_per_write(cpu, 1_000, 1.0), Some(30.0));
        // With reads, the writer's time is not the writes' alone.
        assert_eq!(cpu_per_write(cpu, 1_000, 0.05), None);
        assert_eq!(cpu_per_write(cpu, 0, 1.0), None);
    }
}
