//! The nemesis and the history checker on real `kv-node` processes: a
//! leader-follower W3R3 cluster under load, its leader cut off, killed and
//! paused, keeps every promise (linearizable, no stale read after a 201,
//! sessions); a W1 cluster read through `/local_read` with its followers
//! slowed shows the stale reads it is allowed to have.
//!
//! Every test is bounded ([`within`]); the `kv-node` binary is the one the
//! workspace build put next to the test executable.

mod common;

use common::real::spec;
use common::{run_args, temp_dir};
use kv_loadtester::checker::Verdict;
use kv_loadtester::cluster::{new_secret, ClusterKind, LocalCluster};
use kv_loadtester::consistency::Consistency;
use kv_loadtester::history::History;
use kv_loadtester::nemesis::SharedCluster;
use kv_loadtester::runner::{run_on_cluster, RunResult};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

async fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {limit:?}"))
}

/// Starts a leader-follower cluster with an admin token, runs `line`
/// against it with the tester owning it (kills are real), stops it.
async fn run_lf(w: u32, r: u32, delay: bool, line: &str, out: &std::path::Path) -> RunResult {
    run_on(ClusterKind::LeaderFollower { w, r }, delay, line, out).await
}

async fn run_on(kind: ClusterKind, delay: bool, line: &str, out: &std::path::Path) -> RunResult {
    let mut s = spec(kind, 5);
    s.delay_profile = delay;
    s.env = vec![("ADMIN_TOKEN".into(), new_secret())];
    s.log_dir = Some(out.to_owned());
    if let ClusterKind::LeaderFollower { .. } = kind {
        s.extra_args = ["--election-timeout-ms", "500"].map(String::from).to_vec();
    }
    let cluster = LocalCluster::start(&s).await.expect("the cluster starts");
    let mode = match kind {
        ClusterKind::Leaderless { .. } => "leaderless",
        _ => "leader",
    };
    let mut args = run_args(&format!(
        "--mode {mode} --discover {} --out {} --quiet {line}",
        cluster.urls[0],
        out.display()
    ));
    args.workload.admin_token = cluster.admin_token().map(str::to_string);
    let shared: SharedCluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let result = run_on_cluster(&args, shared.clone())
        .await
        .expect("the run completes");
    Arc::try_unwrap(shared)
        .expect("the nemesis let go of the cluster")
        .into_inner()
        .stop()
        .await;
    result
}

fn consistency(r: &RunResult) -> &Consistency {
    r.summary.consistency.as_ref().expect("the run was checked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3r3_under_partition_kill_and_pause_keeps_every_promise() {
    within(Duration::from_secs(120), async {
        let out = temp_dir("nemesis-w3r3");
        // 8 closed-loop clients (sessions) on 16 hot keys, half writes.
        let r = run_lf(
            3,
            3,
            false,
            "--duration 14 --concurrency 8 --keys 16 --key-dist uniform --write-ratio 0.5 --timeout-ms 2000 \
             --nemesis partition-leader@2s+3s,kill:leader@7s+2500ms,pause:3@11s+1500ms",
            &out,
        )
        .await;
        let c = consistency(&r);
        eprintln!("{}", kv_loadtester::output::render_summary(&r.summary));
        // The three faults happened and were undone.
        let kinds: Vec<&str> = c.faults.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["partition", "kill", "pause"], "{:?}", c.faults);
        assert!(c.faults.iter().all(|f| f.until_us.is_some() && !f.detail.contains("failed")), "{:?}", c.faults);
        assert!(c.promise.linearizable && c.promise.no_stale_after_ack, "{:?}", c.promise);
        // Enough happened to make the check mean something.
        assert!(c.ops > 1000 && c.reads - c.unchecked_reads > 300, "{c:?}");
        assert!(r.summary.errors.total > 0, "the faults were felt by the clients");
        assert!(r.summary.leader_switches >= 1, "the leader changed");
        assert_eq!(c.linearizable, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.read_your_writes, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.monotonic_reads, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.stale_after_ack, 0);
        assert!(c.broken.is_empty(), "{:?}", c.broken);
        assert_eq!(r.summary.verification.as_ref().map(|v| v.lost), Some(0));
        // The history on disk is the one that was checked, faults included.
        let h = History::read_jsonl(&out.join("history.jsonl")).unwrap();
        assert_eq!(h.ops.len() as u64, c.ops);
        assert_eq!(h.faults, c.faults);
        assert!(out.join("check.json").is_file() && out.join("staleness.json").is_file());
        // The timeline draws every fault; the t-visibility plot has a line per node.
        let timeline = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
        assert!(timeline.contains("cut from every peer") && timeline.contains("killed"), "faults drawn");
        let vis = std::fs::read_to_string(out.join("t-visibility.svg")).unwrap();
        assert!(vis.contains("all reads") && vis.contains("node 2"), "a line per node");
        // The WARS model, fed this run's traces, has the leader answer every read.
        let wars = c.wars.as_ref().expect("a WARS prediction");
        assert_eq!(wars.not_predicted, None, "{wars:?}");
        assert!(wars.traces > 0 && wars.reads.contains("leader"), "{wars:?}");
        assert_eq!(wars.at(0), Some(1.0), "{wars:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_local_reads_with_slow_followers_show_the_stale_reads_they_may_have() {
    within(Duration::from_secs(90), async {
        let out = temp_dir("nemesis-w1");
        // The delay profile makes followers apply 100 ms late; the nemesis
        // delays the leader's messages by another 300 ms for a while.
        let r = run_lf(
            1,
            1,
            true,
            "--duration 8 --qps 100 --keys 8 --key-dist uniform --write-ratio 0.5 \
             --read-endpoint local-read --nemesis delay:leader=300ms@1s+5s",
            &out,
        )
        .await;
        let c = consistency(&r);
        eprintln!("{}", kv_loadtester::output::render_summary(&r.summary));
        assert!(
            !c.promise.no_stale_after_ack && !c.promise.linearizable,
            "{:?}",
            c.promise
        );
        assert!(
            c.stale_after_ack > 0,
            "followers 100–400 ms behind serve stale reads: {c:?}"
        );
        assert_eq!(
            c.linearizable,
            Verdict::Fail,
            "stale reads are not linearizable"
        );
        assert!(!c.violations.is_empty());
        assert!(
            c.broken.is_empty(),
            "nothing was promised, so nothing is broken: {:?}",
            c.broken
        );
        // Many reads within 100 ms of a 201 miss it (on the followers).
        let p100 = c.t_visibility[0].p.expect("reads within 100 ms of a 201");
        assert!(
            p100 < 1.0,
            "some reads within 100 ms are stale: {:?}",
            c.t_visibility
        );
        // Whichever node won the first election.
        let leader_url = r.summary.leader.clone().expect("a leader");
        let leader_id = r
            .summary
            .nodes
            .iter()
            .find(|n| n.url == leader_url)
            .and_then(|n| n.id);
        let leader = format!("node {}", leader_id.expect("the leader's id"));
        let leader_stale = r
            .summary
            .stale
            .by_node
            .iter()
            .find(|n| n.node == leader)
            .map(|n| n.stale);
        // (A 300 ms delay can cost the leader its term; then its old reads
        // were stale like a follower's and only the curve above is checked.)
        if r.summary.leader_switches == 0 {
            assert_eq!(
                leader_stale,
                Some(0),
                "the leader's own copy is never stale: {:?}",
                r.summary.stale.by_node
            );
        }
        // Each violation has its timeline page.
        let pages = std::fs::read_dir(out.join("violations")).unwrap().count();
        assert!(pages >= 1);
        // The WARS model, fed the legs the nodes traced in this run,
        // predicts stale reads right after a commit that fade with time —
        // drawn dashed next to the measured curve.
        let wars = c.wars.as_ref().expect("a WARS prediction");
        eprintln!("WARS: {wars:?}");
        assert_eq!(wars.not_predicted, None, "{wars:?}");
        assert!(wars.traces > 0 && wars.reads_sampled > 0, "{wars:?}");
        let p0 = wars.at(0).expect("P at 0 ms");
        let p5000 = wars.at(5000).expect("P at 5 s");
        assert!(p0 < 1.0 && p0 < p5000, "{wars:?}");
        assert!(
            wars.mean_legs_ms[0] >= 100.0,
            "followers apply 100 ms late: {wars:?}"
        );
        // The prediction for the same reads, band by band, as the report shows it.
        assert_eq!(wars.bands.len(), c.t_visibility.len());
        assert!(wars.bands[0].is_some_and(|p| p < 1.0), "{wars:?}");
        let vis = std::fs::read_to_string(out.join("t-visibility.svg")).unwrap();
        assert!(
            vis.contains("WARS-predicted"),
            "the predicted curve is drawn"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w5r1_under_leader_kill_and_partition_never_reads_stale_after_a_201() {
    within(Duration::from_secs(120), async {
        let out = temp_dir("nemesis-w5r1");
        let r = run_lf(
            5,
            1,
            false,
            "--duration 12 --concurrency 8 --keys 16 --key-dist uniform --write-ratio 0.5 --timeout-ms 2000 \
             --nemesis kill:leader@2s+2500ms,partition:4@7s+2s",
            &out,
        )
        .await;
        let c = consistency(&r);
        eprintln!("{}", kv_loadtester::output::render_summary(&r.summary));
        assert_eq!(c.faults.len(), 2, "{:?}", c.faults);
        assert!(c.promise.no_stale_after_ack && c.promise.read_your_writes && !c.promise.linearizable);
        assert!(c.reads - c.unchecked_reads > 300, "{c:?}");
        assert_eq!(c.stale_after_ack, 0);
        assert_eq!(c.read_your_writes, Verdict::Pass, "{:?}", c.violations);
        assert!(c.broken.is_empty(), "{:?}", c.broken);
        assert_eq!(r.summary.verification.as_ref().map(|v| v.lost), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_w3r3_under_partition_pause_and_loss_never_reads_stale_after_a_201() {
    within(Duration::from_secs(120), async {
        let out = temp_dir("nemesis-ll");
        let r = run_on(
            ClusterKind::Leaderless {
                w: Some(3),
                r: Some(3),
            },
            false,
            "--duration 12 --concurrency 8 --keys 16 --key-dist uniform --write-ratio 0.5 --timeout-ms 2000 \
             --nemesis partition:1@2s+2s,pause:2@5s+2s,drop:3=0.5@8s+2s",
            &out,
        )
        .await;
        let c = consistency(&r);
        eprintln!("{}", kv_loadtester::output::render_summary(&r.summary));
        assert_eq!(c.faults.len(), 3, "{:?}", c.faults);
        assert!(c.promise.no_stale_after_ack && !c.promise.linearizable, "{:?}", c.promise);
        assert!(c.reads - c.unchecked_reads > 300, "{c:?}");
        assert_eq!(c.stale_after_ack, 0, "{:?}", c.violations);
        assert_eq!(c.read_your_writes, Verdict::Pass, "{:?}", c.violations);
        assert!(c.broken.is_empty(), "{:?}", c.broken);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3r3_under_one_way_cut_delay_and_message_loss_keeps_every_promise() {
    within(Duration::from_secs(120), async {
        let out = temp_dir("nemesis-w3r3-messages");
        let r = run_lf(
            3,
            3,
            false,
            "--duration 12 --concurrency 8 --keys 16 --key-dist uniform --write-ratio 0.5 --timeout-ms 2000 \
             --nemesis oneway:leader@2s+2s,delay:leader=200ms@5s+2s,drop:leader=0.5@8s+2s",
            &out,
        )
        .await;
        let c = consistency(&r);
        eprintln!("{}", kv_loadtester::output::render_summary(&r.summary));
        let kinds: Vec<&str> = c.faults.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["oneway", "delay", "drop"], "{:?}", c.faults);
        assert!(
            c.faults.iter().all(|f| f.until_us.is_some() && !f.detail.contains("failed")),
            "{:?}",
            c.faults
        );
        assert!(c.promise.linearizable, "{:?}", c.promise);
        assert!(c.ops > 1000 && c.reads - c.unchecked_reads > 300, "{c:?}");
        assert_eq!(c.linearizable, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.read_your_writes, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.monotonic_reads, Verdict::Pass, "{:?}", c.violations);
        assert_eq!(c.stale_after_ack, 0);
        assert!(c.broken.is_empty(), "{:?}", c.broken);
        assert_eq!(r.summary.verification.as_ref().map(|v| v.lost), Some(0));
    })
    .await;
}
