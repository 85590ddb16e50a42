//! Failover on real `kv-node` processes: the leader killed under load, a
//! W1 leader paused until the others elect another, a restarted follower
//! read while it catches up.
//!
//! Every test is bounded ([`within`]), every wait polls a condition with a
//! bound ([`eventually`]), and the timings that matter are printed (run
//! with `--nocapture` to see them). The `kv-node` binary is the one the
//! workspace build put next to the test executable (`cargo build -p kv-node`).

mod common;

use common::real::{client, eventually, read, set, spec, status, Read};
use common::{run_args, temp_dir};
use kv_loadtester::cli::{ModeArg, ReadFrom};
use kv_loadtester::cluster::{process_state, ClusterKind, LocalCluster};
use kv_loadtester::keys::key_name;
use kv_loadtester::runner::run_load;
use kv_loadtester::stale::Acked;
use kv_loadtester::targets::Targets;
use kv_loadtester::verify::{verify, LostWrite, Verification};
use kv_loadtester::workload::{OpKind, Sample};
use kv_shared::{NodeId, Role, Term};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `test`, failing it when it takes longer than `limit`.
async fn within<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {limit:?}"))
}

/// The leader the nodes report, once it is not `old` and leads a term after `term`.
async fn new_leader(cluster: &LocalCluster, old: NodeId, term: Term) -> (NodeId, Term) {
    eventually(
        "another node leads a newer term",
        Duration::from_secs(15),
        || async move {
            cluster
                .leader()
                .await
                .filter(|(id, t)| *id != old && *t > term)
        },
    )
    .await
}

/// Targets over every node of `cluster`, writes routed to `leader`.
fn targets(cluster: &LocalCluster, leader: NodeId) -> Targets {
    let index = cluster.ids().iter().position(|id| *id == leader);
    Targets::new(ModeArg::Leader, cluster.nodes(), index, ReadFrom::All).unwrap()
}

/// The per-node line of node `id`.
fn node_line(v: &Verification, id: NodeId) -> (u64, u64, u64, u64) {
    let n = v
        .per_node
        .iter()
        .find(|n| n.node == format!("node {id}"))
        .unwrap_or_else(|| panic!("node {id} in {:?}", v.per_node));
    (n.ok, n.behind, n.value_mismatch, n.unreachable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write_w3r3() {
    // W3 of 5 is a majority: an acknowledged write is committed, so the next
    // leader holds it. Writes follow the new leader, none acknowledged is
    // lost, no read is stale, and the old leader, back empty, catches up
    // with every key.
    within(Duration::from_secs(150), async {
        let kind = ClusterKind::LeaderFollower { w: 3, r: 3 };
        let mut cluster = LocalCluster::start(&spec(kind, 5)).await.unwrap();
        let http = client();
        let (old, term) = cluster.leader().await.expect("a leader after start");
        let dir = temp_dir("kill-w3r3");
        let args = run_args(&format!(
            "--mode leader --nodes {} --qps 150 --duration 9 --write-ratio 0.5 --key-dist uniform \
             --keys 1000000 --key-prefix kill --timeout-ms 3000 --quiet --out {}",
            cluster.urls.join(","),
            dir.display()
        ));
        let load = tokio::spawn(async move { run_load(&args).await });

        // About 2 s in (75 writes/s), kill -9 the leader.
        let old_url = cluster.url(old).to_owned();
        let (h, u) = (&http, old_url.as_str());
        eventually("the load wrote 150 keys", Duration::from_secs(15), || async move {
            status(h, u).await.filter(|s| s.keys >= 150).map(|_| ())
        })
        .await;
        let killed_at = Instant::now();
        cluster.kill(old).await.unwrap();
        let (leader, new_term) = new_leader(&cluster, old, term).await;
        println!(
            "node {old} (term {term}) killed; node {leader} leads term {new_term} after {:?}",
            killed_at.elapsed()
        );

        let r = load.await.unwrap().unwrap();
        let s = &r.summary;
        assert!(s.leader_switches >= 1, "writes moved: {}", s.leader_switches);
        assert_eq!(s.final_leader.as_deref(), Some(cluster.url(leader)));
        // Writes sent after the kill that were acknowledged, and the first of them.
        let mut csv = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
        let samples: Vec<Sample> = csv.deserialize().map(Result::unwrap).collect();
        let after: Vec<(Instant, Instant)> = samples
            .iter()
            .filter(|s| s.kind == OpKind::Write && s.outcome == "ok")
            .map(|s| {
                let sent = r.started + Duration::from_micros(s.intended_us + s.queue_us);
                (sent, sent + Duration::from_micros(s.service_us))
            })
            .filter(|(sent, _)| *sent >= killed_at)
            .collect();
        let first = after.iter().map(|(_, done)| *done).min().expect("a write after the kill");
        let gap = first - killed_at;
        println!(
            "first acknowledged write {gap:?} after the kill; {} acknowledged after it; errors {:?}",
            after.len(),
            s.errors.by_kind
        );
        assert!(gap < Duration::from_secs(10), "{gap:?}");
        assert!(after.len() >= 100, "{} writes after the kill", after.len());
        assert_eq!(s.stale.stale, 0, "{:?}", s.stale);

        // Nothing acknowledged is lost; the survivors hold every key; the dead node is left out.
        let v = s.verification.as_ref().unwrap();
        println!("verification: {v:?}", v = (v.keys, v.ok, v.lost, &v.convergence));
        assert_eq!((v.lost, v.value_mismatch, v.unreachable), (0, 0, 0), "{v:?}");
        assert!(v.lost_writes.is_empty());
        assert_eq!(v.ok, v.keys);
        assert!(v.keys > 300, "{} keys", v.keys);
        assert_eq!(node_line(v, old), (0, 0, 0, v.keys));
        assert_eq!(v.diverged, 0, "{:?}", v.per_node);
        assert!(v.convergence.as_ref().is_some_and(|c| c.converged));

        // The old leader, restarted empty, ends up with every acknowledged key.
        cluster.restart(old).await.unwrap();
        let again = verify(&http, &targets(&cluster, leader), &r.acked, "kill", Duration::from_secs(5))
            .await
            .unwrap();
        let c = again.convergence.as_ref().unwrap();
        println!("restarted node {old} caught up in {} ms", c.waited_ms);
        assert!(c.converged, "{c:?}");
        assert_eq!((again.keys, again.ok, again.lost), (v.keys, v.keys, 0));
        assert_eq!(node_line(&again, old), (v.keys, 0, 0, 0));
        assert_eq!(again.diverged, 0, "{:?}", again.per_node);
        cluster.stop().await;
        std::fs::remove_dir_all(dir).unwrap();
    })
    .await;
}

/// Writes `count` keys `PREFIX-0000000i` to `url` one after another; the acknowledged ones.
async fn write_burst(http: &reqwest::Client, url: &str, prefix: &str, count: u64) -> Vec<Acked> {
    let mut acked = Vec::new();
    for i in 0..count {
        let value = format!("burst-{i}");
        if let Some(version) = set(http, url, &key_name(prefix, i), &value).await {
            acked.push(Acked {
                key: i,
                version,
                value,
            });
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_w1_the_lost_writes_are_exactly_the_ones_reported_rolled_back() {
    // W1: the leader acknowledges a write it alone holds; with the delay
    // profile its followers get it 200 ms later at the earliest. Paused, it
    // is replaced by a leader without those writes; back, it rolls them
    // back. Every acknowledged write no node holds any more is one the old
    // leader reports rolled back as acknowledged, and the reverse.
    within(Duration::from_secs(150), async {
        let mut s = spec(ClusterKind::LeaderFollower { w: 1, r: 5 }, 5);
        s.delay_profile = true;
        let mut cluster = LocalCluster::start(&s).await.unwrap();
        let http = client();
        let (old, term) = cluster.leader().await.expect("a leader after start");
        let old_url = cluster.url(old).to_owned();
        // Keys from 10^8 never repeat: a lost write is a missing key. At most 8
        // requests in flight, so few pile up at the paused leader; a long
        // timeout, so that every write the node acknowledges reaches the client.
        let args = run_args(&format!(
            "--mode leader --nodes {} --qps 20 --duration 14 --write-ratio 0.9 --key-dist uniform \
             --keys 100000000 --key-prefix w1 --concurrency 8 --timeout-ms 30000 --quiet",
            cluster.urls.join(",")
        ));
        let load = tokio::spawn(async move { run_load(&args).await });
        let (h, u) = (&http, old_url.as_str());
        eventually("the load wrote 30 keys", Duration::from_secs(15), || async move {
            status(h, u).await.filter(|s| s.keys >= 30).map(|_| ())
        })
        .await;

        // A burst through the leader right before the pause: held by it alone.
        let burst = write_burst(&http, &old_url, "w1burst", 5).await;
        cluster.pause(old).await.unwrap();
        let paused_at = Instant::now();
        assert!(!burst.is_empty(), "the leader acknowledged the burst");
        let (leader, new_term) = new_leader(&cluster, old, term).await;
        println!(
            "node {old} paused; node {leader} leads term {new_term} after {:?}",
            paused_at.elapsed()
        );
        tokio::time::sleep_until((paused_at + Duration::from_secs(3)).into()).await;
        cluster.resume(old).await.unwrap();

        // Back, the old leader follows the new one in its term (it rolled back).
        let cl = &cluster;
        eventually("the old leader follows the new one", Duration::from_secs(15), || async move {
            let (lead, t) = cl.leader().await?;
            let st = status(h, u).await?;
            let lf = st.leader_follower.as_ref()?;
            (lead != old && st.role == Role::Follower && st.leader == Some(lead) && lf.term == t)
                .then_some(())
        })
        .await;
        let r = load.await.unwrap().unwrap();
        let v = r.summary.verification.as_ref().unwrap();
        let b = verify(&http, &targets(&cluster, leader), &burst, "w1burst", Duration::from_secs(5))
            .await
            .unwrap();
        let lost: BTreeSet<LostWrite> = v.lost_writes.iter().chain(&b.lost_writes).cloned().collect();
        assert_eq!(lost.len() as u64, v.lost + b.lost);

        // What every node reports rolled back after acknowledging it.
        let statuses: Vec<_> = cluster.statuses().await.into_iter().flatten().collect();
        assert_eq!(statuses.len(), 5);
        let lfs: Vec<_> = statuses.iter().filter_map(|s| s.leader_follower.as_ref()).collect();
        let rolled_back: BTreeSet<LostWrite> = lfs
            .iter()
            .flat_map(|l| &l.recent_rollbacks)
            .filter(|w| w.acknowledged)
            .map(|w| LostWrite {
                key: w.key.clone(),
                version: w.version,
            })
            .collect();
        let acknowledged: u64 = lfs.iter().map(|l| l.rolled_back_acknowledged).sum();
        let complete = lfs.iter().all(|l| l.rolled_back <= 64);
        println!(
            "lost: {} of {} load keys, {} of {} burst keys; rolled back (acknowledged): {acknowledged}, listed {}",
            v.lost,
            v.keys,
            b.lost,
            b.keys,
            rolled_back.len()
        );
        // Not vacuous: acknowledged writes were lost (the burst left the
        // leader within milliseconds of the pause, before its next append).
        assert!(!lost.is_empty(), "no acknowledged write was lost: {b:?}");
        assert_eq!(acknowledged, lost.len() as u64);
        if complete {
            assert_eq!(rolled_back, lost);
        } else {
            assert!(rolled_back.is_subset(&lost), "{rolled_back:?} ⊄ {lost:?}");
        }
        // Every other acknowledged key is on every node once they converged.
        assert!(v.convergence.as_ref().is_some_and(|c| c.converged), "{v:?}");
        assert_eq!(v.ok + v.lost, v.keys);
        assert_eq!(v.diverged, v.lost * 5, "{:?}", v.per_node);
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_steps_down_when_it_returns_and_the_majority_elected_another() {
    // A leader that stops answering is replaced once the others' election
    // timeouts pass; when it answers again it learns of the newer term and
    // follows the new leader.
    within(Duration::from_secs(60), async {
        let kind = ClusterKind::LeaderFollower { w: 3, r: 3 };
        let mut cluster = LocalCluster::start(&spec(kind, 5)).await.unwrap();
        let http = client();
        let (old, term) = cluster.leader().await.expect("a leader after start");
        cluster.pause(old).await.unwrap();
        let paused_at = Instant::now();
        let (leader, new_term) = new_leader(&cluster, old, term).await;
        let elected_after = paused_at.elapsed();
        assert!(cluster.is_paused(old));
        cluster.resume(old).await.unwrap();
        let resumed_at = Instant::now();
        let u = cluster.url(old).to_owned();
        let (h, u) = (&http, u.as_str());
        let st = eventually(
            "the old leader follows",
            Duration::from_secs(10),
            || async move {
                status(h, u)
                    .await
                    .filter(|s| s.role == Role::Follower && s.leader == Some(leader))
            },
        )
        .await;
        let lf = st.leader_follower.expect("leader-follower fields");
        println!(
            "node {old} paused in term {term}; node {leader} elected for term {new_term} after \
             {elected_after:?}; node {old} followed {:?} after resuming",
            resumed_at.elapsed()
        );
        assert_eq!(lf.term, new_term);
        assert!(new_term > term);
        assert!(elected_after < Duration::from_secs(15));
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_empty_never_serves_a_stale_read() {
    // W5 R1: every acknowledged write is on all five nodes, and a node
    // answers a read from its own copy when it counts as current. A
    // follower back empty does not count until it caught up: meanwhile it
    // reads from a current peer, so every answer carries the acknowledged version.
    within(Duration::from_secs(90), async {
        let kind = ClusterKind::LeaderFollower { w: 5, r: 1 };
        let mut cluster = LocalCluster::start(&spec(kind, 5)).await.unwrap();
        let http = client();
        let (leader, _) = cluster.leader().await.expect("a leader after start");
        let acked = write_burst(&http, cluster.url(leader), "restart", 200).await;
        assert_eq!(acked.len(), 200, "every write met W5");
        let follower = *cluster.ids().iter().find(|id| **id != leader).unwrap();
        let url = cluster.url(follower).to_owned();
        cluster.kill(follower).await.unwrap();
        cluster.respawn(follower).unwrap();
        let restarted_at = Instant::now();

        // Whether the follower still catches up, polled beside the reads.
        let caught_up = Arc::new(AtomicBool::new(false));
        let poll = {
            let (caught_up, http, url) = (caught_up.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..3000 {
                    let done = status(&http, &url).await.and_then(|s| s.leader_follower);
                    if done.is_some_and(|lf| !lf.catching_up) {
                        caught_up.store(true, Relaxed);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let (mut during, mut after, mut unavailable, mut not_listening) = (0u64, 0u64, 0u64, 0u64);
        let mut stale = Vec::new();
        let mut first_503 = None;
        let deadline = restarted_at + Duration::from_secs(30);
        // After catch-up, one full pass over the keys more.
        let mut passes_after = None;
        for i in 0..200_000usize {
            let a = &acked[i % acked.len()];
            let done = caught_up.load(Relaxed);
            if done && passes_after.is_none() {
                passes_after = Some(i + acked.len());
            }
            if passes_after.is_some_and(|end| i >= end) || Instant::now() > deadline {
                break;
            }
            match read(&http, &url, "/get", &key_name("restart", a.key)).await {
                Read::Found(v) if v == a.version && done => after += 1,
                Read::Found(v) if v == a.version => during += 1,
                Read::Status(503, message) => {
                    unavailable += 1;
                    first_503.get_or_insert(message);
                }
                Read::NoAnswer if during + after + unavailable == 0 => {
                    not_listening += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                other => stale.push((a.key, a.version, other)),
            }
        }
        poll.abort();
        println!(
            "restarted node {follower}: caught up after {:?}; {during} reads while catching up, \
             {after} after, {unavailable} answered 503 (first: {first_503:?}), {not_listening} \
             before it listened",
            restarted_at.elapsed()
        );
        assert!(
            caught_up.load(Relaxed),
            "the follower caught up within 30 s"
        );
        assert!(
            stale.is_empty(),
            "{} stale or failed reads: {:?}",
            stale.len(),
            &stale[..stale.len().min(10)]
        );
        assert!(after >= 200, "a full pass after catch-up: {after}");
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_cluster_kills_every_node_even_a_paused_one() {
    // A test that fails early drops its cluster: no node, stopped or not, may outlive it.
    within(Duration::from_secs(60), async {
        let kind = ClusterKind::LeaderFollower { w: 2, r: 2 };
        let mut cluster = LocalCluster::start(&spec(kind, 3)).await.unwrap();
        cluster.pause(2).await.unwrap();
        assert_eq!(process_state(cluster.pid(2).unwrap()), Some('T'));
        let pids: Vec<u32> = cluster
            .ids()
            .iter()
            .map(|id| cluster.pid(*id).unwrap())
            .collect();
        drop(cluster);
        for pid in pids {
            // Dead: gone, or a zombie until tokio reaps it.
            eventually("the node died", Duration::from_secs(10), || async move {
                process_state(pid)
                    .is_none_or(|s| s == 'Z' || s == 'X')
                    .then_some(())
            })
            .await;
        }
    })
    .await;
}
