//! The load tester against fake nodes whose answers are known exactly:
//! stale-read counts, rate control, output files, the Go-style command line.

mod common;

use common::{run_args, single_fake, temp_dir, two_node_status, Behaviour, Fake, FakeNode};
use kv_loadtester::runner::run_load;
use kv_loadtester::stats::Summary;
use kv_loadtester::workload::Sample;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Node 1 leads and is fresh; node 2 always serves one version behind.
async fn leader_and_lagging_follower() -> (Arc<Fake>, String, String) {
    let fake = Arc::new(Fake::default());
    let (mut leader, mut follower) = (FakeNode::bind().await, FakeNode::bind().await);
    let status = two_node_status(&leader.url, &follower.url);
    leader.serve(fake.clone(), 1, Behaviour::Fresh, Some(status));
    follower.serve(fake.clone(), 2, Behaviour::OneBehind, None);
    (fake, leader.url, follower.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_from_a_lagging_node_are_counted_exactly_and_attributed_to_it() {
    // One client, so every write is acknowledged before the next request:
    // the fake's notion of "latest" is exactly the client's, and every read
    // the lagging node answers after a write is stale — no more, no less.
    let (fake, leader, follower) = leader_and_lagging_follower().await;
    let args = run_args(&format!(
        "--mode leader --nodes {leader},{follower} --read-from all --concurrency 1 --requests 600 \
         --duration 60 --write-ratio 0.4 --keys 30 --key-dist uniform --seed 11 --quiet"
    ));
    let r = run_load(&args).await.unwrap();
    let st = &r.summary.stale;
    let served = fake.stale_served.load(Relaxed);
    assert!(
        served > 50,
        "the workload exercised the lagging node: {served}"
    );
    assert_eq!(st.stale, served);
    assert_eq!(st.stale_missing, fake.stale_missing_served.load(Relaxed));
    assert_eq!(st.max_versions_behind, 1);
    let by_node: Vec<(&str, u64)> = st
        .by_node
        .iter()
        .map(|n| (n.node.as_str(), n.stale))
        .collect();
    assert_eq!(by_node, [("node 1", 0), ("node 2", served)]);
    assert!((st.rate - st.stale as f64 / st.checked as f64).abs() < 1e-12);
    // Writes all went to the leader, and the read-back finds them all there;
    // the lagging node holds every key one version behind.
    assert_eq!(r.summary.leader.as_deref(), Some(leader.as_str()));
    let v = r.summary.verification.unwrap();
    assert_eq!((v.lost, v.unreachable, v.value_mismatch), (0, 0, 0));
    assert_eq!(v.ok, v.keys);
    let per_node: Vec<(&str, u64, u64)> = v
        .per_node
        .iter()
        .map(|n| (n.node.as_str(), n.ok, n.behind))
        .collect();
    assert_eq!(per_node, [("node 1", v.keys, 0), ("node 2", 0, v.keys)]);
    assert_eq!(v.diverged, v.keys);
    assert_eq!(r.summary.throughput.issued, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_move_to_the_leader_a_503_names_and_the_failed_one_is_not_retried() {
    // Node 1 leads when the run starts (its /status says so), then answers
    // every write with 503 naming node 2. One client: the first write fails,
    // every later one goes to node 2.
    let fake = Arc::new(Fake::default());
    let (mut old, mut new) = (FakeNode::bind().await, FakeNode::bind().await);
    let status = two_node_status(&old.url, &new.url);
    old.serve(
        fake.clone(),
        1,
        Behaviour::Deposed { leader: 2 },
        Some(status),
    );
    new.serve(fake.clone(), 2, Behaviour::Fresh, None);
    let args = run_args(&format!(
        "--mode leader --nodes {},{} --concurrency 1 --requests 100 --duration 60 \
         --write-ratio 1 --keys 1000 --key-dist uniform --quiet",
        old.url, new.url
    ));
    let r = run_load(&args).await.unwrap();
    let s = &r.summary;
    assert_eq!(s.errors.by_kind.get("http_503"), Some(&1), "{:?}", s.errors);
    assert_eq!(s.errors.total, 1);
    assert_eq!(s.writes.count, 99);
    assert_eq!(
        (s.leader.as_deref(), s.leader_switches),
        (Some(old.url.as_str()), 1)
    );
    assert_eq!(s.final_leader.as_deref(), Some(new.url.as_str()));
    let v = s.verification.as_ref().unwrap();
    assert_eq!((v.ok, v.lost), (v.keys, 0));
    assert_eq!(fake.requests.load(Relaxed), 100 + 2 * v.keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_the_leader_only_are_never_stale() {
    let (fake, leader, follower) = leader_and_lagging_follower().await;
    let args = run_args(&format!(
        "--nodes {leader},{follower} --read-from leader --concurrency 2 --requests 200 --keys 10 --quiet"
    ));
    let r = run_load(&args).await.unwrap();
    assert!(r.summary.stale.checked > 20);
    assert_eq!(r.summary.stale.stale, 0);
    assert_eq!(
        fake.stale_served.load(Relaxed),
        0,
        "the lagging node got no read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_issues_rate_times_duration_requests() {
    // 200 req/s for 3 s against a fast node: the node receives 600 ± 5 %.
    let (fake, url) = single_fake().await;
    let args = run_args(&format!(
        "--nodes {url} --qps 200 --duration 3 --write-ratio 0.3 --no-verify --quiet"
    ));
    let r = run_load(&args).await.unwrap();
    let received = fake.requests.load(Relaxed);
    assert!((570..=630).contains(&received), "received {received}");
    assert_eq!(r.summary.throughput.scheduled, 600);
    assert_eq!(r.summary.throughput.issued, received);
    assert_eq!(r.summary.errors.total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_dir_holds_json_csv_and_plots_that_parse() {
    let (_fake, url) = single_fake().await;
    let dir = temp_dir("out");
    let args = run_args(&format!(
        "--nodes {url} --qps 100 --duration 1 --keys 50 --out {} --quiet",
        dir.display()
    ));
    let r = run_load(&args).await.unwrap();

    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let summary: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(summary.started_at, r.summary.started_at);
    assert_eq!(summary.stale, r.summary.stale);
    assert_eq!(
        (summary.reads.count, summary.writes.count),
        (r.summary.reads.count, r.summary.writes.count)
    );
    assert_eq!(summary.throughput.completed, 100);

    let mut csv = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    let samples: Vec<Sample> = csv.deserialize().map(Result::unwrap).collect();
    assert_eq!(samples.len(), 100);
    let mut seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());

    for stem in ["latency", "read-after-write"] {
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(svg.contains("percentile"), "{stem}.svg has its axis titles");
        let png = image::open(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (1400, 560));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_accepts_the_original_go_style_command_line() {
    let (fake, url) = single_fake().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kv-loadtester"))
        .args([
            "-mode",
            "leader",
            "-write-ratio",
            "0.5",
            "-duration",
            "1",
            "-qps",
            "20",
            "-nodes",
            &url,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("open loop, target 20.0 req/s: 20 issued"),
        "{stdout}"
    );
    assert!(stdout.contains("stale reads: 0"), "{stdout}");
    assert!(fake.requests.load(Relaxed) >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = run_args(&format!(
        "--nodes http://127.0.0.1:{port} --duration 1 --quiet"
    ));
    let err = run_load(&args).await.unwrap_err().to_string();
    assert!(err.contains("no node answers /health"), "{err}");
}
