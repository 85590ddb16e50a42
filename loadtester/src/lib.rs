//! `kv-loadtester`: load, latency and stale-read measurement for the
//! replicated key-value store, in the tradition of wrk2 and YCSB.
//!
//! A run sends a seeded mix of `POST /set` and `GET /get` (or
//! `/local_read`) requests to the nodes of a cluster, either on a fixed
//! schedule (open loop, `--qps`; latency measured from the intended send
//! time, so coordinated omission is corrected) or as fast as `--concurrency`
//! clients can go (closed loop). Every request's latency lands in an HDR
//! histogram; every read is checked against the highest version the client
//! saw acknowledged before the read started (stale-read detection); at the
//! end every acknowledged write is read back from every node (verification).
//!
//! Leader-follower clusters elect their leader (any node can lead), so a
//! run survives a failover: writes follow the leader the nodes report
//! ([`targets`]), and the verification first waits until every node caught
//! up with the leader, then reports per node what it holds ([`verify`]).
//! `kv-loadtester failover` measures how long writes fail after the
//! leader of a local cluster is killed ([`failover`]); [`cluster`] kills,
//! pauses, resumes and restarts local nodes for it and for the tests.
//!
//! # Layout
//! - [`cli`]: flags (clap), Go-style `-flag` rewriting, `--help` examples.
//! - [`error`]: the crate's error type.
//! - [`keys`]: key generators: local-in-time (moving hot window), uniform, zipfian.
//! - [`targets`]: the nodes (from `--nodes` or a node's `/status`), where each
//!   request goes, and following the leader when it changes.
//! - [`stale`]: the per-key tracker of acknowledged versions that judges reads.
//! - [`workload`]: the [`workload::Workload`] trait (prepare / generate / execute /
//!   verify) and the key-value workload that implements it.
//! - [`verify`]: the final read-back: convergence wait, every node's copy of
//!   every acknowledged key, lost writes and per-node divergence.
//! - [`runner`]: open-loop (scheduled) and closed-loop pacing, the sample
//!   collector and the progress bar; [`runner::run_load`] runs one whole load.
//! - [`stats`]: HDR histograms, error and stale counters, the JSON summary type.
//! - [`output`]: the terminal summary, JSON summary and CSV of raw samples.
//! - [`plot`]: latency and read-after-write interval plots (SVG and PNG).
//! - [`plot_consistency`]: t-visibility curves and the run's timeline with its faults.
//! - [`cluster`]: local `kv-node` clusters on free 127.0.0.1 ports: start,
//!   kill, pause, resume, restart.
//! - [`report`]: the assignment's matrix (configurations × write ratios) and
//!   its Markdown/HTML report.
//! - [`bench`](mod@bench): `kv-loadtester bench`: the store side by side with etcd and
//!   Redis started locally, one table of peaks, latencies and ratios.
//! - [`peers`]: etcd and Redis as load targets (`--target`), and local
//!   clusters of them.
//! - [`failover`]: `kv-loadtester failover`: time from a leader's crash to
//!   the next acknowledged write, over repeated kills.
//! - [`history`]: the record of a run (operations with invocation and
//!   completion times, faults) that the checker and the staleness measures read.
//! - [`checker`]: linearizability per key, read-your-writes and monotonic reads.
//! - [`nemesis`]: faults on a schedule (`--nemesis`) through the nodes' fault API.
//! - [`consistency`]: after a run, the checker and the staleness measures
//!   against what the configuration promises; `history.jsonl`, `check.json`
//!   and the violation pages.
//! - [`pbs`]: staleness as the PBS paper defines it (t-visibility,
//!   k-staleness), the inconsistency window, and the WARS predictor.
//! - [`traces`]: the write traces the nodes publish during a run (the WARS
//!   predictor's write legs).

#![warn(missing_docs)]

pub mod bench;
pub mod checker;
pub mod cli;
pub mod cluster;
pub mod consistency;
pub mod error;
pub mod failover;
pub mod history;
pub mod keys;
pub mod nemesis;
pub mod output;
pub mod pbs;
pub mod peers;
pub mod plot;
pub mod plot_consistency;
pub mod report;
pub mod runner;
pub mod stale;
pub mod stats;
pub mod targets;
pub mod traces;
pub mod verify;
pub mod workload;

pub use error::{Error, Result};
