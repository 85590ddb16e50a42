//! Pacing (open and closed loop), sample collection, progress bar, and
//! [`run_load`], which runs one whole load.
//!
//! **Open loop** (`--qps Q`): request `i` is due at `start + i / Q`, for
//! every `i` with `i / Q < duration` (so `ceil(Q × T)` requests, or
//! `--requests`). A single dispatcher sleeps until each due time, takes one
//! of `--concurrency` in-flight permits and spawns the request; its latency
//! is measured from the *due* time, not from when it was actually sent. When
//! the server slows down, permits run out, requests leave late, and that
//! lateness is part of their latency — the server cannot hide its tail by
//! slowing the client down (coordinated omission, as corrected by wrk2). A
//! dispatcher that falls behind catches up by sending the overdue requests
//! at once. Requests still unsent when the drain time after the end
//! (`--timeout-ms` + 1 s) runs out are reported as `not_issued`.
//!
//! **Closed loop** (no `--qps`): `--concurrency` clients each send one
//! request, wait for the answer, and send the next, until the duration (or
//! `--requests`) is reached. Latency is then the service time.
//!
//! Samples flow through a channel to one collector task, which updates the
//! histograms and counters, feeds the progress bar and writes `samples.csv`.

use crate::cli::{ModeArg, RunArgs};
use crate::consistency;
use crate::error::{Error, Result};
use crate::history::{History, HistoryOp};
use crate::nemesis::{schedule_of, Nemesis, RandomScope, SharedCluster};
use crate::output;
use crate::stale::Acked;
use crate::stats::{LatencySummary, Settings, Stats, Summary, Throughput};
use crate::targets::Targets;
use crate::traces::TraceCollector;
use crate::workload::{KvWorkload, Sample, Verification, Workload};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// A fixed schedule of `qps` requests per second, at most `max_in_flight` at once.
    Open {
        /// Requests per second.
        qps: f64,
        /// Most requests in flight.
        max_in_flight: u32,
    },
    /// `clients` clients, each waiting for its answer before the next request.
    Closed {
        /// Number of clients.
        clients: u32,
    },
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Pacing.
    pub pace: Pace,
    /// Issuing window.
    pub duration: Duration,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
    /// After the window, how long to wait for answers (and late sends).
    pub drain: Duration,
}

/// Default in-flight cap of the open loop.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1000;
/// Default number of closed-loop clients.
pub const DEFAULT_CLIENTS: u32 = 8;

impl Plan {
    /// The plan the flags describe.
    pub fn from_args(args: &RunArgs) -> Self {
        let pace = match args.qps {
            Some(qps) => Pace::Open {
                qps,
                max_in_flight: args
                    .workload
                    .concurrency
                    .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
                    .max(1),
            },
            None => Pace::Closed {
                clients: args.workload.concurrency.unwrap_or(DEFAULT_CLIENTS).max(1),
            },
        };
        Self {
            pace,
            duration: Duration::from_secs_f64(args.duration),
            max_requests: args.requests,
            drain: Duration::from_millis(args.workload.timeout_ms) + Duration::from_secs(1),
        }
    }

    /// Open loop: how many requests the schedule holds.
    pub fn scheduled(&self) -> Option<u64> {
        match self.pace {
            Pace::Open { qps, .. } => Some(scheduled_count(qps, self.duration, self.max_requests)),
            Pace::Closed { .. } => None,
        }
    }
}

/// The number of `i ≥ 0` with `i / qps < duration`, capped by `max`.
pub fn scheduled_count(qps: f64, duration: Duration, max: Option<u64>) -> u64 {
    let n = (qps * duration.as_secs_f64()).ceil() as u64;
    max.map_or(n, |m| n.min(m))
}

/// Offset of request `i`'s due time from the start.
pub fn due_offset(i: u64, qps: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / qps)
}

/// Live counters, read by the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests sent.
    pub issued: AtomicU64,
    /// Samples collected.
    pub completed: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
    /// Stale reads.
    pub stale: AtomicU64,
    /// Read latency p50 and p99 so far, µs (refreshed every 250 ms).
    pub read_p50_p99: [AtomicU64; 2],
    /// Write latency p50 and p99 so far, µs (refreshed every 250 ms).
    pub write_p50_p99: [AtomicU64; 2],
}

impl Live {
    /// Publishes the current p50 and p99 of `stats`.
    fn publish_percentiles(&self, stats: &Stats) {
        for (h, out) in [
            (&stats.reads, &self.read_p50_p99),
            (&stats.writes, &self.write_p50_p99),
        ] {
            if !h.is_empty() {
                out[0].store(h.value_at_quantile(0.5), Relaxed);
                out[1].store(h.value_at_quantile(0.99), Relaxed);
            }
        }
    }

    /// `p50/p99 ms` of one pair.
    fn pair_ms(pair: &[AtomicU64; 2]) -> String {
        let ms = |a: &AtomicU64| a.load(Relaxed) as f64 / 1000.0;
        format!("{:.1}/{:.1} ms", ms(&pair[0]), ms(&pair[1]))
    }
}

/// What the pacing loop reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Driven {
    /// Requests sent.
    pub issued: u64,
    /// Open loop: scheduled requests never sent.
    pub not_issued: u64,
    /// From the start to the last answer.
    pub elapsed: Duration,
    /// The start: samples' `intended_us` count from here.
    pub started: Instant,
}

/// Runs the pacing loop of `plan`, sending every sample to `tx`.
pub async fn drive<W: Workload>(
    w: Arc<W>,
    plan: Plan,
    tx: mpsc::Sender<Sample>,
    live: Arc<Live>,
) -> Driven {
    drive_from(Instant::now(), w, plan, tx, live).await
}

/// [`drive`], with samples' times counted from `start` (e.g. shared with the nemesis).
pub async fn drive_from<W: Workload>(
    start: Instant,
    w: Arc<W>,
    plan: Plan,
    tx: mpsc::Sender<Sample>,
    live: Arc<Live>,
) -> Driven {
    let (issued, not_issued) = match plan.pace {
        Pace::Open { qps, max_in_flight } => {
            open_loop(&w, &plan, qps, max_in_flight, start, &tx, &live).await
        }
        Pace::Closed { clients } => (closed_loop(&w, &plan, clients, start, &tx, &live).await, 0),
    };
    Driven {
        issued,
        not_issued,
        elapsed: start.elapsed(),
        started: start,
    }
}

async fn open_loop<W: Workload>(
    w: &Arc<W>,
    plan: &Plan,
    qps: f64,
    max_in_flight: u32,
    start: Instant,
    tx: &mpsc::Sender<Sample>,
    live: &Arc<Live>,
) -> (u64, u64) {
    let total = scheduled_count(qps, plan.duration, plan.max_requests);
    let permits = Arc::new(Semaphore::new(max_in_flight as usize));
    let hard_stop = start + plan.duration + plan.drain;
    let mut issued = 0;
    for i in 0..total {
        let due = start + due_offset(i, qps);
        wait_until(due).await;
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(hard_stop, permits.clone().acquire_owned()).await
        else {
            break;
        };
        let mut op = w.generate();
        // Open loop: requests overlap, so each is a session of its own.
        op.session = u32::try_from(op.seq).unwrap_or(u32::MAX);
        issued += 1;
        live.issued.fetch_add(1, Relaxed);
        let (w, tx) = (w.clone(), tx.clone());
        tokio::spawn(async move {
            let mut s = w.execute(op, due).await;
            s.intended_us = micros(due - start);
            drop(permit);
            let _ = tx.send(s).await;
        });
        // The new task sits in this worker's LIFO slot, which other workers
        // cannot steal from: let it start (send its request) before this
        // loop blocks the worker in `wait_until`.
        tokio::task::yield_now().await;
    }
    // Every permit back means every request answered (or timed out).
    let _ = tokio::time::timeout_at(hard_stop, permits.acquire_many(max_in_flight)).await;
    (issued, total - issued)
}

/// Waits until `due` with sub-millisecond precision. tokio's timer has a
/// 1 ms resolution (a `sleep_until` fires up to 1 ms late, which would add
/// up to 1 ms to every open-loop latency), so the task sleeps on tokio's
/// timer to within 1 ms of `due` and finishes with a short OS sleep. That
/// OS sleep blocks the dispatcher's worker thread for under 1 ms per
/// request; the other workers keep serving the request tasks.
async fn wait_until(due: Instant) {
    if let Some(coarse) = due.checked_sub(Duration::from_millis(1)) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse).await;
        }
    }
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

async fn closed_loop<W: Workload>(
    w: &Arc<W>,
    plan: &Plan,
    clients: u32,
    start: Instant,
    tx: &mpsc::Sender<Sample>,
    live: &Arc<Live>,
) -> u64 {
    let deadline = start + plan.duration;
    let max = plan.max_requests.unwrap_or(u64::MAX);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (w, tx, live, counter) = (w.clone(), tx.clone(), live.clone(), counter.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline && counter.fetch_add(1, Relaxed) < max {
                let mut op = w.generate();
                // Closed loop: a client waits for each answer; it is one session.
                op.session = client;
                live.issued.fetch_add(1, Relaxed);
                let sent = Instant::now();
                let mut s = w.execute(op, sent).await;
                s.intended_us = micros(sent - start);
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    counter
        .load(Relaxed)
        .min(max)
        .min(live.issued.load(Relaxed))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The operations a run recorded, up to a limit.
#[derive(Debug, Default)]
struct Recorder {
    ops: Vec<HistoryOp>,
    limit: usize,
    /// More operations than `limit` arrived: the history is incomplete.
    overflowed: bool,
}

impl Recorder {
    fn record(&mut self, s: &Sample) {
        if self.ops.len() < self.limit {
            self.ops.push(HistoryOp::from_sample(s));
        } else {
            self.overflowed = true;
        }
    }
}

/// Receives samples until every sender is gone: updates `stats` and `live`,
/// writes CSV rows, records the history.
async fn collect(
    mut rx: mpsc::Receiver<Sample>,
    live: Arc<Live>,
    mut csv: Option<output::SampleCsv>,
    mut recorder: Recorder,
) -> Result<(Stats, Recorder)> {
    let mut stats = Stats::default();
    let mut published = Instant::now();
    while let Some(s) = rx.recv().await {
        stats.record(&s);
        if published.elapsed() >= Duration::from_millis(250) {
            live.publish_percentiles(&stats);
            published = Instant::now();
        }
        live.completed.fetch_add(1, Relaxed);
        if s.is_error() {
            live.errors.fetch_add(1, Relaxed);
        }
        if s.stale {
            live.stale.fetch_add(1, Relaxed);
        }
        if let Some(csv) = csv.as_mut() {
            csv.write(&s)?;
        }
        recorder.record(&s);
    }
    if let Some(csv) = csv {
        csv.finish()?;
    }
    recorder.ops.sort_by_key(|o| o.id);
    Ok((stats, recorder))
}

/// The progress bar: elapsed time against the duration, with live
/// throughput, p50/p99 latency of reads and writes, errors and stale reads. Hidden with `--quiet` or when stdout
/// is not a terminal.
fn progress_bar(duration: Duration, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(
        Some(duration.as_millis() as u64),
        ProgressDrawTarget::stderr(),
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}

/// Updates the bar every 250 ms until aborted.
async fn tick_progress(pb: ProgressBar, live: Arc<Live>) {
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let done = live.completed.load(Relaxed);
        let now = Instant::now();
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        pb.set_position(start.elapsed().as_millis() as u64);
        pb.set_message(format!(
            "{rate:>7.1} req/s  {done} done  read p50/p99 {}  write {}  {} errors  {} stale",
            Live::pair_ms(&live.read_p50_p99),
            Live::pair_ms(&live.write_p50_p99),
            live.errors.load(Relaxed),
            live.stale.load(Relaxed)
        ));
    }
}

/// Everything a run produced: the summary, the histograms the plots need,
/// and what a later read-back needs.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The summary (`summary.json`).
    pub summary: Summary,
    /// The instant the load started: a sample was sent at `started +
    /// intended_us + queue_us` and answered `service_us` later.
    pub started: std::time::Instant,
    /// Every key's highest acknowledged write (for [`crate::verify::verify`]
    /// after the run, e.g. once a restarted node caught up).
    pub acked: Vec<Acked>,
    /// Read latencies, µs.
    pub reads: Histogram<u64>,
    /// Write latencies, µs.
    pub writes: Histogram<u64>,
    /// Read-after-write intervals, µs.
    pub interval: Histogram<u64>,
}

/// Checks flags that clap cannot check alone.
fn validate(args: &RunArgs) -> Result<()> {
    let w = &args.workload;
    if w.keys == 0 {
        return Err(Error::Config("--keys must be at least 1".into()));
    }
    if w.value_size > kv_shared::limits::MAX_VALUE_BYTES as usize {
        return Err(Error::Config(format!(
            "--value-size {} exceeds the store's limit of {} bytes",
            w.value_size,
            kv_shared::limits::MAX_VALUE_BYTES
        )));
    }
    if w.key_prefix.len() + 9 > kv_shared::limits::MAX_KEY_BYTES as usize {
        return Err(Error::Config(
            "--key-prefix is too long for the store's key limit".into(),
        ));
    }
    Ok(())
}

/// An HTTP client for the load: no proxy, keep-alive, idle pool large enough
/// for the concurrency.
///
/// # Errors
/// When the TLS-less client cannot be built (it always can).
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?)
}

/// Runs one load as the flags say: finds the nodes, prepares, drives,
/// verifies, writes `--out` files. Returns the result; printing is left to
/// the caller.
///
/// # Errors
/// Bad flags, unreachable nodes, or files that cannot be written.
pub async fn run_load(args: &RunArgs) -> Result<RunResult> {
    run_resolved(args, None).await
}

/// [`run_load`] on a cluster the tester started: the nemesis kills and
/// restarts its nodes for real.
///
/// # Errors
/// As [`run_load`].
pub async fn run_on_cluster(args: &RunArgs, cluster: SharedCluster) -> Result<RunResult> {
    run_resolved(args, Some(cluster)).await
}

async fn run_resolved(args: &RunArgs, cluster: Option<SharedCluster>) -> Result<RunResult> {
    validate(args)?;
    let client = http_client()?;
    let targets = Targets::resolve(
        &client,
        args.mode,
        &args.nodes,
        args.discover.as_deref(),
        args.workload.read_from,
        args.single_node,
    )
    .await?;
    run_with(client, targets, args, cluster).await
}

/// Runs one load on known `targets`.
///
/// # Errors
/// As [`run_load`].
pub async fn run_on(
    client: reqwest::Client,
    targets: Targets,
    args: &RunArgs,
) -> Result<RunResult> {
    run_with(client, targets, args, None).await
}

/// Runs one load on known `targets` that the tester started as `cluster`
/// (the nemesis kills and restarts its nodes for real), or that it did not (`None`).
///
/// # Errors
/// As [`run_load`]; a `--nemesis` schedule that does not fit the cluster.
pub async fn run_with(
    client: reqwest::Client,
    targets: Targets,
    args: &RunArgs,
    cluster: Option<SharedCluster>,
) -> Result<RunResult> {
    validate(args)?;
    let plan = Plan::from_args(args);
    let start = Instant::now();
    let nemesis = match &args.workload.nemesis {
        None => None,
        Some(spec) => {
            let scope = RandomScope {
                n: targets.nodes.len() as u32,
                leaderless: targets.cluster_mode == Some(kv_shared::Mode::Leaderless),
                can_restart: cluster.is_some(),
            };
            let schedule = schedule_of(spec, plan.duration, scope);
            let nemesis = Nemesis::new(
                client.clone(),
                &targets.nodes,
                args.workload.admin_token.clone(),
                cluster.clone(),
                start,
            )?;
            nemesis.check(&schedule)?;
            if !args.workload.quiet {
                eprintln!("nemesis: {schedule}");
            }
            Some((nemesis, schedule))
        }
    };
    // The nodes trace writes while watched: the WARS prediction's write legs.
    let tracer = (!args.workload.no_check).then(|| {
        let urls: Vec<String> = targets.nodes.iter().map(|n| n.url.clone()).collect();
        TraceCollector::start(&client, &urls)
    });
    let workload = Arc::new(KvWorkload::new(client, targets, args)?);
    workload.prepare().await?;
    let csv = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            Some(output::SampleCsv::create(&dir.join("samples.csv"))?)
        }
        None => None,
    };
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let live = Arc::new(Live::default());
    let (tx, rx) = mpsc::channel(4096);
    let recorder = Recorder {
        limit: if args.workload.no_check {
            0
        } else {
            args.workload.history_max_ops
        },
        ..Recorder::default()
    };
    let collector = tokio::spawn(collect(rx, live.clone(), csv, recorder));
    let pb = progress_bar(plan.duration, args.workload.quiet);
    let ticker = tokio::spawn(tick_progress(pb.clone(), live.clone()));
    let (stop_nemesis, stopped) = tokio::sync::watch::channel(false);
    let nemesis_task = nemesis
        .clone()
        .map(|(n, schedule)| tokio::spawn(n.run(schedule, stopped)));
    let driven = drive_from(start, workload.clone(), plan, tx, live.clone()).await;
    let traces = tracer.map(TraceCollector::finish).unwrap_or_default();
    let _ = stop_nemesis.send(true);
    let faults = match nemesis_task {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some((n, _)) = &nemesis {
        // Whatever the schedule left behind: the read-back needs every node.
        n.heal_all().await;
    }
    ticker.abort();
    pb.finish_and_clear();
    let (stats, recorder) = collector
        .await
        .map_err(|e| Error::Config(format!("collector task: {e}")))??;
    let verification = if args.workload.no_verify {
        None
    } else {
        Some(workload.verify().await?)
    };
    let targets = workload.targets();
    let promise = consistency::promise(
        targets.cluster_mode,
        targets.config,
        args.workload.read_endpoint,
        &faults,
    );
    let ops = recorder.ops.len() as u64;
    let evaluation = if args.workload.no_check {
        None
    } else if recorder.overflowed {
        let why = format!(
            "more than --history-max-ops {} operations",
            args.workload.history_max_ops
        );
        eprintln!("history not checked: {why}");
        None
    } else {
        let history = History {
            ops: recorder.ops,
            faults: faults.clone(),
        };
        let limit = Duration::from_secs_f64(args.workload.check_time_limit);
        let tag = workload.run_tag().to_string();
        let promise = promise.clone();
        let (mode, config) = (targets.cluster_mode, targets.config);
        let (endpoint, read_from) = (args.workload.read_endpoint, args.workload.read_from);
        let seed = args.workload.seed;
        Some(
            tokio::task::spawn_blocking(move || {
                let mut e = consistency::evaluate(history, promise, &tag, limit);
                let shape = consistency::RunShape {
                    mode,
                    config,
                    endpoint,
                    read_from,
                };
                e.summary.wars = Some(consistency::predict(
                    shape,
                    &traces.finished,
                    &e.history,
                    e.staleness.as_ref().map(|s| &s.t_visibility),
                    seed,
                ));
                e
            })
            .await
            .map_err(|e| Error::Config(format!("checker task: {e}")))?,
        )
    };
    let consistency = match &evaluation {
        Some(e) => e.summary.clone(),
        None => consistency::not_checked(
            promise,
            if args.workload.no_check {
                "--no-check"
            } else {
                "history too long"
            },
            faults,
            ops,
        ),
    };
    let mut summary = summarize(
        args,
        &plan,
        workload.targets(),
        &stats,
        driven,
        verification,
        started_at,
    );
    summary.consistency = Some(consistency);
    let result = RunResult {
        summary,
        started: driven.started.into_std(),
        acked: workload.acked(),
        reads: stats.reads,
        writes: stats.writes,
        interval: stats.interval,
    };
    if let Some(dir) = &args.out {
        write_outputs(dir, &result)?;
        if let Some(e) = &evaluation {
            consistency::write_files(dir, e)?;
        }
    }
    Ok(result)
}

/// Drives `w` as `plan` says and keeps only the statistics (no history,
/// no read-back, no files): `--target etcd|redis` and `kv-loadtester bench`.
///
/// # Errors
/// `prepare` failed.
pub async fn run_plain<W: Workload>(w: Arc<W>, plan: Plan, quiet: bool) -> Result<(Stats, Driven)> {
    w.prepare().await?;
    let live = Arc::new(Live::default());
    let (tx, rx) = mpsc::channel(4096);
    let collector = tokio::spawn(collect(rx, live.clone(), None, Recorder::default()));
    let pb = progress_bar(plan.duration, quiet);
    let ticker = tokio::spawn(tick_progress(pb.clone(), live.clone()));
    let driven = drive(w, plan, tx, live).await;
    ticker.abort();
    pb.finish_and_clear();
    let (stats, _) = collector
        .await
        .map_err(|e| Error::Config(format!("collector task: {e}")))??;
    Ok((stats, driven))
}

/// Writes `summary.json` and the plots of one run into `dir`.
///
/// # Errors
/// Files that cannot be written, plots that cannot be drawn.
pub fn write_outputs(dir: &Path, r: &RunResult) -> Result<()> {
    output::write_json(&dir.join("summary.json"), &r.summary)?;
    let title = run_title(&r.summary);
    crate::plot::latency_plot(
        &dir.join("latency"),
        &format!("Latency — {title}"),
        &[("reads", &r.reads), ("writes", &r.writes)],
    )?;
    crate::plot::interval_plot(
        &dir.join("read-after-write"),
        &format!("Write → next read of the key — {title}"),
        &[("interval", &r.interval)],
    )?;
    Ok(())
}

/// A one-line description of a run for plot titles.
pub fn run_title(s: &Summary) -> String {
    let mode = match (s.settings.mode, s.cluster) {
        _ if s.cluster_mode == Some(kv_shared::Mode::Standalone) => "standalone node".into(),
        (ModeArg::Leader, Some(c)) => format!("leader-follower W{}R{}", c.w, c.r),
        (ModeArg::Leaderless, Some(c)) => format!("leaderless W{}R{}", c.w, c.r),
        (ModeArg::Leader, None) => "leader mode".into(),
        (ModeArg::Leaderless, None) => "leaderless mode".into(),
    };
    format!("{mode}, write ratio {}", s.settings.write_ratio)
}

fn summarize(
    args: &RunArgs,
    plan: &Plan,
    targets: &Targets,
    stats: &Stats,
    driven: Driven,
    verification: Option<Verification>,
    started_at: String,
) -> Summary {
    let completed = stats.reads.len() + stats.writes.len() + stats.error_count();
    let (target_rate, concurrency) = match plan.pace {
        Pace::Open { qps, max_in_flight } => (Some(qps), max_in_flight),
        Pace::Closed { clients } => (None, clients),
    };
    let window = plan.duration.as_secs_f64();
    Summary {
        tool: format!("kv-loadtester {}", env!("CARGO_PKG_VERSION")),
        started_at,
        nodes: targets.nodes.clone(),
        leader: targets.leader.map(|l| targets.nodes[l].url.clone()),
        leader_switches: targets.leader_switches(),
        final_leader: targets
            .current_leader()
            .map(|l| targets.nodes[l].url.clone()),
        cluster: targets.config,
        cluster_mode: targets.cluster_mode,
        settings: Settings {
            mode: args.mode,
            write_ratio: args.write_ratio,
            qps: args.qps,
            concurrency,
            duration_s: window,
            requests: args.requests,
            keys: args.workload.keys,
            key_dist: args.workload.key_dist,
            value_size: args.workload.value_size,
            seed: args.workload.seed,
            read_from: args.workload.read_from,
            read_endpoint: args.workload.read_endpoint,
        },
        throughput: Throughput {
            target_rate,
            scheduled: plan.scheduled().unwrap_or(driven.issued),
            issued: driven.issued,
            completed,
            not_issued: driven.not_issued,
            issue_rate: driven.issued as f64 / window.min(driven.elapsed.as_secs_f64()).max(1e-9),
            achieved_rate: completed as f64 / driven.elapsed.as_secs_f64().max(1e-9),
            elapsed_s: driven.elapsed.as_secs_f64(),
        },
        reads: LatencySummary::of(&stats.reads),
        writes: LatencySummary::of(&stats.writes),
        reads_service: LatencySummary::of(&stats.read_service),
        writes_service: LatencySummary::of(&stats.write_service),
        stale: stats.stale_summary(),
        read_after_write: LatencySummary::of(&stats.interval),
        errors: stats.error_summary(),
        verification,
        consistency: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::OpKind;

    #[test]
    fn the_schedule_holds_rate_times_duration_requests() {
        assert_eq!(scheduled_count(200.0, Duration::from_secs(3), None), 600);
        assert_eq!(scheduled_count(20.0, Duration::from_millis(1010), None), 21);
        assert_eq!(scheduled_count(0.5, Duration::from_secs(3), None), 2);
        assert_eq!(scheduled_count(200.0, Duration::from_secs(3), Some(10)), 10);
        assert_eq!(due_offset(0, 20.0), Duration::ZERO);
        assert_eq!(due_offset(30, 20.0), Duration::from_millis(1500));
    }

    /// A workload whose requests take `delay` each and that counts what it executes.
    struct Slow {
        delay: Duration,
        seq: AtomicU64,
    }

    impl Workload for Slow {
        async fn prepare(&self) -> Result<()> {
            Ok(())
        }
        fn generate(&self) -> crate::workload::Op {
            crate::workload::Op {
                seq: self.seq.fetch_add(1, Relaxed),
                kind: OpKind::Read,
                key: 0,
                node: 0,
                value: String::new(),
                session: 0,
            }
        }
        async fn execute(&self, op: crate::workload::Op, intended: Instant) -> Sample {
            let sent = Instant::now();
            tokio::time::sleep(self.delay).await;
            Sample {
                seq: op.seq,
                kind: op.kind,
                key: "k".into(),
                node: "n".into(),
                intended_us: 0,
                queue_us: micros(sent - intended),
                latency_us: micros(intended.elapsed()),
                service_us: micros(sent.elapsed()),
                outcome: "ok".into(),
                version: None,
                known_version: None,
                stale: false,
                since_write_us: None,
                error: None,
                session: op.session,
                node_id: None,
                value: None,
            }
        }
        async fn verify(&self) -> Result<Verification> {
            Ok(Verification::default())
        }
    }

    async fn run_slow(pace: Pace, delay_ms: u64, secs: u64) -> (Driven, Vec<Sample>) {
        let w = Arc::new(Slow {
            delay: Duration::from_millis(delay_ms),
            seq: AtomicU64::new(0),
        });
        let plan = Plan {
            pace,
            duration: Duration::from_secs(secs),
            max_requests: None,
            drain: Duration::from_secs(60),
        };
        let (tx, mut rx) = mpsc::channel(100_000);
        let d = drive(w, plan, tx, Arc::new(Live::default())).await;
        let mut samples = Vec::new();
        while let Some(s) = rx.recv().await {
            samples.push(s);
        }
        (d, samples)
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturated_open_loop_counts_queueing_in_latency() {
        // 10 req/s for 10 s, one request in flight at a time, each taking
        // 200 ms: the server can only do 5/s, so requests queue and the
        // latency from the due time grows far beyond the 200 ms service time.
        let (d, samples) = run_slow(
            Pace::Open {
                qps: 10.0,
                max_in_flight: 1,
            },
            200,
            10,
        )
        .await;
        assert_eq!((d.issued, d.not_issued), (100, 0));
        let last = samples.iter().max_by_key(|s| s.seq).unwrap();
        assert!(last.service_us < 250_000, "{last:?}");
        assert!(
            last.latency_us > 9_000_000,
            "the 100th request waited ~10 s: {last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_issues_back_to_back_per_client() {
        // 4 clients × (1 s / 100 ms) = 40 requests; latency equals service time.
        let (d, samples) = run_slow(Pace::Closed { clients: 4 }, 100, 1).await;
        assert_eq!(d.issued, 40);
        assert_eq!(samples.len(), 40);
        assert!(samples.iter().all(|s| s.latency_us == s.service_us));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_with_a_fast_server_sends_on_schedule() {
        let (d, samples) = run_slow(
            Pace::Open {
                qps: 50.0,
                max_in_flight: 100,
            },
            5,
            2,
        )
        .await;
        assert_eq!(d.issued, 100);
        assert!(
            samples.iter().all(|s| s.queue_us < 2_000),
            "no request left late"
        );
    }
}
