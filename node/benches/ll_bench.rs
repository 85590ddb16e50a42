//! Leaderless measurements over real HTTP on 127.0.0.1 (in-process nodes):
//! write latency under the delay profile, and how long a replica that
//! restarts empty takes to converge with its peers. (Throughput next to
//! leader-follower and a single node: the `leaderless …` rows of the
//! `lf_throughput` bench.)
//!
//! ```text
//! cargo bench -p kv-node --bench ll_bench
//! LL_KEYS=100000 LL_AE_MS=1000 LL_HINTS=1 cargo bench -p kv-node --bench ll_bench
//! ```
//!
//! Delay profile: five leaderless nodes with `--delay-profile assignment`;
//! for W = 1, 3, 5, five sequential writes through rotating coordinators,
//! each after the previous one reached every replica.
//!
//! Convergence: three leaderless nodes; node 3 is stopped, `LL_KEYS` keys are written
//! through nodes 1 and 2 (W = 2, 64 concurrent clients), node 3 restarts
//! empty, and the clock runs until its store equals node 1's. With
//! `LL_HINTS=0` (the default) hints are disabled (`--max-hints-per-peer 0`),
//! so anti-entropy alone does the work; with `LL_HINTS=1` hinted handoff runs
//! alongside. `LL_AE_MS` is the anti-entropy period (default 5000, the
//! node's default). Prints the time to convergence and the anti-entropy
//! rounds that repaired keys.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{wait_until, Cluster};
use kv_node::config::{DelayProfileArg, ModeArg};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `keys` keys through nodes 1 and 2 with 64 concurrent clients.
async fn load(c: &Cluster, keys: u64) -> Duration {
    let urls = Arc::new([c.url(1), c.url(2)]);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (client, urls) = (client.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = t;
            while k < keys {
                let url = &urls[(k % 2) as usize];
                let body = json!({"key": format!("key-{k:06}"), "value": format!("value-{k}")});
                let r = client
                    .post(format!("{url}/set"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                k += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Write latency of a 5-node leaderless cluster with the assignment's delays.
async fn delay_profile_latency() {
    println!("Leaderless write latency with --delay-profile assignment (200 ms per send, 100 ms ack), 5 sequential writes each:\n");
    println!("| W | mean ms | min ms | max ms |");
    println!("| --- | ---: | ---: | ---: |");
    let c = Cluster::start(5, 1, 1, |cfg| {
        cfg.mode = ModeArg::Leaderless;
        cfg.role = None;
        cfg.delay_profile = DelayProfileArg::Assignment;
        cfg.anti_entropy_ms = 0;
        cfg.write_timeout_ms = 10_000;
    })
    .await;
    for w in [1u32, 3, 5] {
        assert!(c
            .post_config(1, json!({"w": w}))
            .await
            .status()
            .is_success());
        let mut ms = Vec::new();
        for i in 0..5u32 {
            let key = format!("d{w}-{i}");
            let t = Instant::now();
            assert!(c.set(i % 5 + 1, &key, "v").await.status().is_success());
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            wait_until(
                "the write on every replica",
                Duration::from_secs(10),
                || async {
                    let mut all = true;
                    for id in 1..=5 {
                        all &= c.local(id, &key).await.is_some();
                    }
                    all
                },
            )
            .await;
        }
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let min = ms.iter().copied().fold(f64::MAX, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        println!("| {w} | {mean:.0} | {min:.0} | {max:.0} |");
    }
    println!();
    c.stop().await;
}

fn main() {
    let keys = env("LL_KEYS", 100_000);
    let ae_ms = env("LL_AE_MS", 5_000);
    let hints = env("LL_HINTS", 0) != 0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        delay_profile_latency().await;
        let mut c = Cluster::start(3, 2, 1, |cfg| {
            cfg.mode = ModeArg::Leaderless;
            cfg.role = None;
            cfg.anti_entropy_ms = ae_ms;
            cfg.write_timeout_ms = 10_000;
            cfg.peer_timeout_ms = 5_000;
            if !hints {
                cfg.max_hints_per_peer = 0;
            }
        })
        .await;
        c.kill(3).await;
        let took = load(&c, keys).await;
        println!(
            "loaded {keys} keys through nodes 1 and 2 in {:.1} s ({:.0} writes/s)",
            took.as_secs_f64(),
            keys as f64 / took.as_secs_f64()
        );
        let reference = c.node(1).state.store.len();
        assert_eq!(reference, keys);

        c.restart(3).await;
        let start = Instant::now();
        loop {
            let n3 = c.node(3).state.store.len();
            if n3 == reference {
                let mut a = c.node(1).state.store.records();
                let mut b = c.node(3).state.store.records();
                a.sort_by(|x, y| x.key.cmp(&y.key));
                b.sort_by(|x, y| x.key.cmp(&y.key));
                if a == b {
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(600), "no convergence");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let converged = start.elapsed();
        println!(
            "node 3 restarted empty and equal to node 1 after {:.2} s (anti-entropy period {ae_ms} ms ±25 %, hints {})",
            converged.as_secs_f64(),
            if hints { "on" } else { "off" }
        );
        if !hints {
            // The repairing round is recorded when it ends.
            wait_until("the repairing round recorded", Duration::from_secs(60), || async {
                let mut any = false;
                for id in 1..=3 {
                    let ll = c.status(id).await.leaderless.unwrap();
                    any |= ll.last_anti_entropy.is_some_and(|r| r.keys_repaired > 0);
                }
                any
            })
            .await;
        }
        for id in 1..=3 {
            let ll = c.status(id).await.leaderless.unwrap();
            if let Some(r) = ll.last_anti_entropy.filter(|r| r.keys_repaired > 0) {
                println!(
                    "  node {id}: round with node {}: {} keys repaired in {} ms, {} of 4096 buckets differed",
                    r.peer, r.keys_repaired, r.duration_ms, r.buckets_differing
                );
            }
            if ll.delivered_hints > 0 {
                println!("  node {id}: {} hints delivered", ll.delivered_hints);
            }
        }
        // A round between stores already equal: one digest request, no keys.
        let since = kv_node::events::wall_ms();
        let in_sync = std::cell::Cell::new(None);
        wait_until("a round between equal stores", Duration::from_secs(60), || async {
            for id in 1..=3 {
                let ll = c.status(id).await.leaderless.unwrap();
                if let Some(r) = ll.last_anti_entropy.filter(|r| {
                    r.completed && r.keys_repaired == 0 && r.buckets_differing == 0 && r.ended_at_ms > since
                }) {
                    in_sync.set(Some((id, r.duration_ms)));
                }
            }
            in_sync.get().is_some()
        })
        .await;
        if let Some((id, ms)) = in_sync.get() {
            println!("  a later round between equal stores (node {id}): {ms} ms (two {keys}-key tree builds, one request)");
        }
        c.stop().await;
    });
}
