//! End to end: short loads against real `kv-node` processes on 127.0.0.1
//! (a standalone node, a 5-node leader-follower cluster, a 5-node leaderless
//! cluster) and a one-cell report.
//!
//! The `kv-node` binary is the one the workspace build put next to this
//! test's target directory (`target/<profile>/kv-node`); the tests fail with
//! a clear message when it is missing.

mod common;

use common::real::{node_bin, spec};
use common::{run_args, temp_dir};
use kv_loadtester::cli::{parse_from, Command};
use kv_loadtester::cluster::{ClusterKind, LocalCluster};
use kv_loadtester::runner::{run_load, RunResult};

async fn start(kind: ClusterKind) -> LocalCluster {
    LocalCluster::start(&spec(kind, 5)).await.unwrap()
}

/// A 2 s open-loop load at 100 req/s, half writes, on the nodes `targets` names.
async fn short_load(mode: &str, targets: &str) -> RunResult {
    let args = run_args(&format!(
        "--mode {mode} {targets} --qps 100 --duration 2 --write-ratio 0.5 --keys 200 --quiet"
    ));
    run_load(&args).await.unwrap()
}

fn nodes_flag(cluster: &LocalCluster) -> String {
    format!("--nodes {}", cluster.urls.join(","))
}

/// Every request answered, no read stale, every acknowledged write read back
/// from every node (W = N, or a converged leader-follower cluster).
fn assert_clean(r: &RunResult) {
    let s = &r.summary;
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    assert_eq!(s.throughput.completed, 200);
    assert!(s.stale.checked > 0, "some reads followed a write");
    assert_eq!(s.stale.stale, 0, "{:?}", s.stale);
    let v = s.verification.as_ref().unwrap();
    assert_eq!(
        (v.lost, v.unreachable, v.value_mismatch),
        (0, 0, 0),
        "{v:?}"
    );
    assert_eq!(v.ok, v.keys);
    assert_eq!(v.diverged, 0, "{:?}", v.per_node);
    assert!(!v.per_node.is_empty());
    assert!(
        v.per_node.iter().all(|n| n.ok == v.keys),
        "{:?}",
        v.per_node
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_serves_a_load_with_no_stale_read_and_no_lost_write() {
    let cluster = start(ClusterKind::Standalone).await;
    let r = short_load("leader", &nodes_flag(&cluster)).await;
    assert_clean(&r);
    assert_eq!(r.summary.stale.by_node[0].node, "node 1");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_node_leader_follower_cluster_w3r3_reads_its_writes_everywhere() {
    // R + W > N: a read started after a write's acknowledgement sees it, on every node.
    // The nodes are discovered from a follower's /status.
    let cluster = start(ClusterKind::LeaderFollower { w: 3, r: 3 }).await;
    let r = short_load("leader", &format!("--discover {}", cluster.urls[2])).await;
    assert_clean(&r);
    let s = &r.summary;
    assert_eq!(s.nodes.len(), 5);
    let (leader, _term) = cluster.leader().await.expect("a leader");
    assert_eq!(s.leader.as_deref(), Some(cluster.url(leader)));
    assert_eq!(s.leader_switches, 0);
    let c = s.cluster.expect("/status tells N, W, R");
    assert_eq!((c.n, c.w, c.r), (5, 3, 3));
    assert!(
        s.stale.by_node.len() > 1,
        "reads spread over the nodes: {:?}",
        s.stale.by_node
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_node_leaderless_cluster_w5r1_reads_its_writes_everywhere() {
    let cluster = start(ClusterKind::Leaderless {
        w: Some(5),
        r: Some(1),
    })
    .await;
    let r = short_load("leaderless", &nodes_flag(&cluster)).await;
    assert_clean(&r);
    assert_eq!(
        r.summary.verification.as_ref().unwrap().source,
        "every node (highest version)"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_cell_report_writes_its_table_plots_and_json() {
    let dir = temp_dir("report");
    let line = format!(
        "kv-loadtester report --out {} --configs lf-w3r3 --ratios 0.5 --duration 1 --qps 20 --node-bin {} --quiet",
        dir.display(),
        node_bin().display()
    );
    let Some(Command::Report(args)) = parse_from(line.split_whitespace()).unwrap().command else {
        panic!("report expected")
    };
    let runs = kv_loadtester::report::run_report(&args, &line)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert!(
        runs[0].result.is_ok(),
        "{:?}",
        runs[0].result.as_ref().err()
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| LF W3R3 | 50 % |"), "{md}");
    assert!(md.contains("off/write-50pct/reads.png"), "{md}");
    for f in [
        "report.html",
        "off/write-50pct/reads.svg",
        "off/lf-w3r3/write-50pct/summary.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let all: Vec<kv_loadtester::stats::Summary> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(all.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_on_an_existing_deployment_sets_each_configurations_quorums() {
    // One running cluster, found from one URL; W/R change by POST /config between runs.
    let cluster = start(ClusterKind::LeaderFollower { w: 3, r: 3 }).await;
    let dir = temp_dir("existing");
    let line = format!(
        "kv-loadtester report --out {} --configs lf-w5r1,lf-w1r5 --ratios 0.5 --duration 1 --qps 20 --lf-nodes {} --quiet",
        dir.display(),
        cluster.urls[0]
    );
    let Some(Command::Report(args)) = parse_from(line.split_whitespace()).unwrap().command else {
        panic!("report expected")
    };
    let runs = kv_loadtester::report::run_report(&args, &line)
        .await
        .unwrap();
    let quorums: Vec<(u32, u32)> = runs
        .iter()
        .map(|r| {
            let c = r.result.as_ref().unwrap().summary.cluster.unwrap();
            (c.w, c.r)
        })
        .collect();
    assert_eq!(quorums, [(5, 1), (1, 5)]);
    for r in &runs {
        let s = &r.result.as_ref().unwrap().summary;
        assert_eq!((s.nodes.len(), s.errors.total, s.stale.stale), (5, 0, 0));
    }
    cluster.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
