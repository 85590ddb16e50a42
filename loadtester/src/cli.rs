//! Command-line flags.
//!
//! `kv-loadtester [FLAGS]` runs one load; `kv-loadtester report [FLAGS]` runs
//! the assignment's matrix; `kv-loadtester failover [FLAGS]` measures how
//! long a local leader-follower cluster takes no write after its leader is
//! killed. Flags are GNU-style (`--write-ratio 0.5`), but the
//! Go-style spelling of the original tool (`-mode leader -write-ratio 0.5
//! -duration 60 -qps 20`) is accepted too: [`normalize_args`] rewrites a
//! single-dash word that names a known long flag (`-write-ratio`,
//! `-write-ratio=0.5`) into its double-dash form before clap parses the line.
//! Single-letter short flags (`-q`) and negative numbers are left alone.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Examples printed at the end of `--help`.
const EXAMPLES: &str = "\
Examples:
  # 20 req/s for 60 s, half writes, against a leader-follower cluster found from one node:
  kv-loadtester --discover http://127.0.0.1:8081 --mode leader --write-ratio 0.5 --duration 60 --qps 20

  # The original tool's spelling is accepted as is:
  kv-loadtester -mode leader -write-ratio 0.5 -duration 60 -qps 20

  # Leaderless, explicit nodes, closed loop with 32 clients, zipfian keys, results in ./out:
  kv-loadtester --mode leaderless --nodes http://127.0.0.1:8081,http://127.0.0.1:8082 \\
      --concurrency 32 --key-dist zipfian --duration 30 --out out

  # Reads from followers only, through /local_read (no read coordination):
  kv-loadtester --discover http://127.0.0.1:8081 --read-from followers --read-endpoint local_read

  # The assignment's matrix on local clusters, delay profile on, Markdown + HTML report:
  kv-loadtester report --out report --duration 20 --qps 20 --delay-profile assignment

  # Failover time: 20 times, kill -9 the leader of a local 5-node W3R3 cluster and time
  # the first acknowledged write after it (median, p90, max; JSON in failover.json):
  kv-loadtester failover --runs 20 --nodes 5 --w 3 --r 3 --out failover.json

In leader mode, writes follow the leader when it changes (a 503 naming another leader, or a
node that does not answer, makes the tool ask every node's /status and pick the leader of the
highest term); failed requests are counted, not retried. The final verification waits until
every node caught up with the leader, then reads every acknowledged key from every node: a key
is lost when no node holds its acknowledged version; per node, missing or older copies count as
behind. Exit status: 0, 1 on an error, 2 when an acknowledged write was lost.";

/// `kv-loadtester`: the whole command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kv-loadtester",
    version,
    about = "Load tester of the replicated key-value store: latency (HDR, coordinated-omission \
             corrected), throughput, stale reads, read-back verification",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// `report` runs the matrix; without a subcommand, one load runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of a single load.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the assignment's matrix (LF W5R1, W1R5, W3R3, leaderless × write
    /// ratios) and write a Markdown/HTML report with tables and plots.
    Report(ReportArgs),
    /// Measure failover: on a local leader-follower cluster, kill -9 the
    /// leader `--runs` times and time the first acknowledged write after
    /// each kill (writes every 10 ms, round-robin over the survivors);
    /// print every time, the median, p90 and max.
    Failover(FailoverArgs),
    /// Benchmark side by side, on 127.0.0.1 only: one kv-node; leader-follower
    /// N=5 at W1, W3, W5; leaderless N=5 at W3 and W5; a 5-member etcd
    /// (--unsafe-no-fsync); Redis with 4 replicas (SET, and SET + WAIT 2).
    /// A write-heavy and a read-heavy workload, each closed loop for the peak
    /// and open loop at half the peak for latency; one table with ratios to
    /// one node, etcd and Redis. Everything started is stopped.
    Bench(crate::bench::BenchArgs),
}

/// How the cluster replicates, which decides where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeArg {
    /// Leader-follower: writes go to the leader, reads per `--read-from`.
    #[value(alias = "leader-follower", alias = "lf")]
    Leader,
    /// Leaderless: every request goes to a node chosen at random.
    #[value(alias = "ll")]
    Leaderless,
}

/// Which nodes serve reads in leader mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadFrom {
    /// Any node, chosen at random per read.
    All,
    /// The leader only.
    #[value(alias = "leader-only")]
    Leader,
    /// The followers only, chosen at random per read.
    #[value(alias = "followers-only")]
    Followers,
}

/// The read endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadEndpoint {
    /// `GET /get?key=K`: the node's coordinated read (R replicas).
    Get,
    /// `GET /local_read?key=K`: the node's own copy, never coordinated.
    #[value(name = "local_read", alias = "local-read")]
    LocalRead,
}

impl ReadEndpoint {
    /// The path of the endpoint, e.g. `/get`.
    pub fn path(self) -> &'static str {
        match self {
            ReadEndpoint::Get => kv_shared::GET_PATH,
            ReadEndpoint::LocalRead => kv_shared::LOCAL_READ_PATH,
        }
    }
}

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDist {
    /// Local in time: a window of `--hot-keys` consecutive keys that slides
    /// over the key space by one key every `--window-step` operations.
    #[value(alias = "local-in-time")]
    Local,
    /// Every key equally likely.
    Uniform,
    /// Zipf-distributed popularity (YCSB's generator), key 0 the hottest.
    Zipfian,
}

/// Flags that shape the requests, shared by a single load and the report.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Size of the key space.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Key distribution: local (moving window of hot keys), uniform or zipfian.
    #[arg(long, value_enum, default_value_t = KeyDist::Local, alias = "distribution")]
    pub key_dist: KeyDist,
    /// local: number of keys in the hot window.
    #[arg(long, default_value_t = 32)]
    pub hot_keys: u64,
    /// local: operations between two moves of the window by one key.
    #[arg(long, default_value_t = 8)]
    pub window_step: u64,
    /// local: fraction of operations inside the window; the rest pick a key uniformly.
    #[arg(long, default_value_t = 0.9, value_parser = fraction)]
    pub hot_fraction: f64,
    /// zipfian: skew, strictly between 0 and 1 (YCSB uses 0.99).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Prefix of every key (keys are PREFIX-00000042).
    #[arg(long, default_value = "lt")]
    pub key_prefix: String,
    /// Seed of every random choice (kind, key, node, value): the same seed gives the same sequence of operations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Leader mode: which nodes serve reads (all, leader, followers).
    #[arg(long, value_enum, default_value_t = ReadFrom::All)]
    pub read_from: ReadFrom,
    /// Read endpoint: get (coordinated read) or local_read (the node's own copy).
    #[arg(long, value_enum, default_value_t = ReadEndpoint::Get)]
    pub read_endpoint: ReadEndpoint,
    /// Closed loop (no --qps): number of clients. Open loop: most requests in flight (default 1000).
    #[arg(long, short = 'c')]
    pub concurrency: Option<u32>,
    /// Per-request timeout, in milliseconds; a request that takes longer counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Skip the final read-back of every acknowledged write.
    #[arg(long)]
    pub no_verify: bool,
    /// No progress bar (it is also hidden when stdout is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Faults to inject during the load, e.g.
    /// `partition-leader@5s+8s,kill:2@15s,skew:3=+300ms@20s`, or `random[:SEED]`
    /// (see `kv-loadtester --help` and docs/loadtester.md, "Nemesis"). Needs
    /// --admin-token, except kills of nodes the tester started itself.
    #[arg(long, value_parser = crate::nemesis::parse)]
    pub nemesis: Option<crate::nemesis::Spec>,
    /// The nodes' admin token (`Authorization: Bearer`), for the fault API
    /// and for changing the delay profile of an existing deployment.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Skip the history check (linearizability, session guarantees) and the staleness measures.
    #[arg(long)]
    pub no_check: bool,
    /// Most operations recorded for the history check; a longer run is not checked.
    #[arg(long, default_value_t = 2_000_000)]
    pub history_max_ops: usize,
    /// Longest the history check may take, in seconds; keys not decided by then are "unknown".
    #[arg(long, default_value_t = 60.0, value_parser = positive)]
    pub check_time_limit: f64,
}

/// Flags of a single load (`kv-loadtester` without a subcommand).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// leader (leader-follower; alias lf) or leaderless.
    #[arg(long, value_enum, default_value_t = ModeArg::Leader)]
    pub mode: ModeArg,
    /// Node base URLs, comma-separated. Leader mode: the leader is read from
    /// the first node's /status, or is the first URL when /status is not served.
    #[arg(long, value_delimiter = ',', conflicts_with = "discover")]
    pub nodes: Vec<String>,
    /// Read the nodes, their roles and the leader from this node's /status.
    #[arg(long)]
    pub discover: Option<String>,
    /// With one URL in --nodes, load only that node instead of the cluster
    /// its /status describes.
    #[arg(long)]
    pub single_node: bool,
    /// Fraction of operations that are writes, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    pub write_ratio: f64,
    /// How long to issue requests, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub duration: f64,
    /// Open loop: requests per second on a fixed schedule; latency counts
    /// from the scheduled time. Without it the load is closed loop.
    #[arg(long, value_parser = positive)]
    pub qps: Option<f64>,
    /// Stop after this many requests (and at --duration at the latest).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Directory for summary.json, samples.csv and the plots.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// What to load: kv (kv-node), or etcd (v3 JSON gateway client URLs in
    /// --nodes) or redis (the primary as redis://HOST:PORT in --nodes) with
    /// the same workload, measured the same way (throughput and latency
    /// only: no stale-read tracking, history check or read-back).
    #[arg(long, value_enum, default_value_t = crate::peers::Target::Kv)]
    pub target: crate::peers::Target,
    /// --target redis: after each SET, WAIT for this many replicas (W − 1).
    #[arg(long, default_value_t = 0)]
    pub redis_wait: u32,
    /// Workload flags.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// A named cluster configuration of the assignment's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatrixConfig {
    /// Leader-follower, W=5, R=1.
    #[value(name = "lf-w5r1")]
    LfW5R1,
    /// Leader-follower, W=1, R=5.
    #[value(name = "lf-w1r5")]
    LfW1R5,
    /// Leader-follower, W=3, R=3.
    #[value(name = "lf-w3r3")]
    LfW3R3,
    /// Leaderless with the node's default quorums.
    Leaderless,
}

/// Delay profile(s) of the report's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// No artificial delay.
    Off,
    /// The assignment's delays (200 ms per send, 100 ms before an ack, 50 ms before a remote read).
    #[value(alias = "on")]
    Assignment,
    /// Run the matrix twice, without then with the delays.
    Both,
}

/// Flags of `kv-loadtester report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Directory of the report (report.md, report.html, report.json, one folder per run).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Seconds per run.
    #[arg(long, default_value_t = 20.0, value_parser = positive)]
    pub duration: f64,
    /// Open-loop rate of every run, requests per second.
    #[arg(long, default_value_t = 20.0, value_parser = positive)]
    pub qps: f64,
    /// Write ratios, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,0.5,0.9", value_parser = fraction)]
    pub ratios: Vec<f64>,
    /// Configurations, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lf-w5r1,lf-w1r5,lf-w3r3,leaderless"
    )]
    pub configs: Vec<MatrixConfig>,
    /// Delay profile of the runs: off, assignment (alias on) or both.
    #[arg(long, value_enum, default_value_t = ProfileArg::Off)]
    pub delay_profile: ProfileArg,
    /// Nodes per started cluster.
    #[arg(long, default_value_t = 5)]
    pub nodes: u32,
    /// The kv-node binary (default: kv-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Use this running leader-follower deployment (comma-separated URLs,
    /// or one URL to discover from) instead of starting clusters; W/R are set with POST /config.
    #[arg(long, value_delimiter = ',')]
    pub lf_nodes: Vec<String>,
    /// Use this running leaderless deployment instead of starting clusters.
    #[arg(long, value_delimiter = ',')]
    pub leaderless_nodes: Vec<String>,
    /// Workload flags.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// Flags of `kv-loadtester failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// How many times to kill the leader.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Nodes in the cluster (at least 3).
    #[arg(long, default_value_t = 5)]
    pub nodes: u32,
    /// Write quorum.
    #[arg(long, default_value_t = 3)]
    pub w: u32,
    /// Read quorum.
    #[arg(long, default_value_t = 3)]
    pub r: u32,
    /// The kv-node binary (default: kv-node next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// A flag for every node, e.g. `--node-arg=--election-timeout-ms=500` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub node_arg: Vec<String>,
    /// After a kill, time between two writes, ms.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// After a kill, timeout of each write, ms.
    #[arg(long, default_value_t = 500)]
    pub request_timeout_ms: u64,
    /// Write the times as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where node-ID.log files go (default: node output is discarded).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// No line per run while measuring.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Parses a number in 0..=1.
fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between 0 and 1, got {v}"))
    }
}

/// Parses a finite number > 0.
fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a number above 0, got {s}"))
    }
}

/// Every long flag name (and alias) of the command and its subcommands.
fn long_names() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            out.extend(arg.get_long().map(str::to_owned));
            out.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_owned),
            );
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&Cli::command(), &mut out);
    out.extend(["help".to_owned(), "version".to_owned()]);
    out
}

/// Rewrites Go-style single-dash long flags (`-write-ratio 0.5`,
/// `-qps=20`) into `--write-ratio 0.5`, `--qps=20`, for names clap knows as
/// long flags. The first item (the program name), short flags, values and
/// everything after `--` are left alone.
pub fn normalize_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let names = long_names();
    let mut rest_verbatim = false;
    args.into_iter()
        .map(Into::into)
        .enumerate()
        .map(|(i, arg)| {
            if i == 0 || rest_verbatim {
                return arg;
            }
            if arg == "--" {
                rest_verbatim = true;
                return arg;
            }
            match arg.strip_prefix('-') {
                Some(word) if !word.starts_with('-') => {
                    let name = word.split('=').next().unwrap_or(word);
                    if name.len() > 1 && names.contains(name) {
                        format!("-{arg}")
                    } else {
                        arg
                    }
                }
                _ => arg,
            }
        })
        .collect()
}

/// Parses a command line, after [`normalize_args`].
///
/// # Errors
/// clap's error (also for `--help` and `--version`, which clap reports as errors to print).
pub fn parse_from<I, S>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Cli::try_parse_from(normalize_args(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_of_the_original_readme_are_accepted() {
        let cli = parse_from(
            "kv-loadtester -mode leader -write-ratio 0.5 -duration 60 -qps 20".split(' '),
        )
        .unwrap();
        assert_eq!(cli.run.mode, ModeArg::Leader);
        assert_eq!(cli.run.write_ratio, 0.5);
        assert_eq!(cli.run.duration, 60.0);
        assert_eq!(cli.run.qps, Some(20.0));
        let cli = parse_from(["kv-loadtester", "-mode=leaderless", "-q", "-seed", "7"]).unwrap();
        assert_eq!(cli.run.mode, ModeArg::Leaderless);
        assert!(cli.run.workload.quiet);
        assert_eq!(cli.run.workload.seed, 7);
    }

    #[test]
    fn normalize_leaves_values_shorts_and_unknown_words_alone() {
        let out = normalize_args([
            "p",
            "-c",
            "4",
            "-read-endpoint",
            "local_read",
            "-x-unknown",
            "--",
            "-mode",
        ]);
        assert_eq!(
            out,
            [
                "p",
                "-c",
                "4",
                "--read-endpoint",
                "local_read",
                "-x-unknown",
                "--",
                "-mode"
            ]
        );
    }

    #[test]
    fn report_subcommand_takes_its_own_flags_and_lists() {
        let cli = parse_from([
            "kv-loadtester",
            "report",
            "-ratios",
            "0.1,0.9",
            "--configs",
            "lf-w3r3,leaderless",
        ])
        .unwrap();
        let Some(Command::Report(r)) = cli.command else {
            panic!("report expected")
        };
        assert_eq!(r.ratios, [0.1, 0.9]);
        assert_eq!(r.configs, [MatrixConfig::LfW3R3, MatrixConfig::Leaderless]);
    }

    #[test]
    fn failover_subcommand_takes_runs_quorums_and_node_flags() {
        let cli = parse_from([
            "kv-loadtester",
            "failover",
            "-runs",
            "3",
            "--w",
            "2",
            "--node-arg=--election-timeout-ms=500",
            "--out",
            "f.json",
        ])
        .unwrap();
        let Some(Command::Failover(f)) = cli.command else {
            panic!("failover expected")
        };
        assert_eq!((f.runs, f.nodes, f.w, f.r), (3, 5, 2, 3));
        assert_eq!(f.node_arg, ["--election-timeout-ms=500"]);
        assert_eq!(f.out.as_deref(), Some(std::path::Path::new("f.json")));
        assert!(parse_from(["p", "failover", "--runs", "0"]).is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse_from(["p", "--write-ratio", "1.5"]).is_err());
        assert!(parse_from(["p", "--qps", "0"]).is_err());
        assert!(parse_from(["p", "--nodes", "http://a", "--discover", "http://b"]).is_err());
    }
}
