//! Throughput and latency of leader-follower presets next to a single node,
//! measured in one run over real HTTP on 127.0.0.1 (in-process nodes).
//!
//! ```text
//! cargo bench -p kv-node --bench lf_throughput
//! BENCH_SECS=2 BENCH_CLIENTS=16 cargo bench -p kv-node --bench lf_throughput
//! ```
//!
//! For each setup: a closed loop of `BENCH_CLIENTS` concurrent clients sends
//! writes to the leader for `BENCH_SECS`, then reads (`GET /get`) spread over
//! every node for `BENCH_SECS`, after one unmeasured second of warm-up. No
//! delay profile. Leaderless presets (rows named `leaderless …`) send their
//! writes to every node, since every node coordinates. A last table shows write
//! latency with the assignment's delay profile, where W decides the cost.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Cluster, TestNode};
use kv_node::config::{DelayProfileArg, ModeArg};
use kv_node::Config;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 1000;

struct Phase {
    ops: usize,
    errors: usize,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `clients` closed loops for `secs`; `write` selects `POST /set` or `GET /get`.
async fn drive(urls: Arc<Vec<String>>, write: bool, clients: usize, secs: u64) -> Phase {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, urls) = (client.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 7919;
            while Instant::now() < deadline {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let key = format!("key-{}", (i >> 8) % KEYS);
                let url = &urls[(i >> 4) % urls.len()];
                let t = Instant::now();
                let resp = if write {
                    let body = json!({"key": key, "value": format!("value-{i}")});
                    client.post(format!("{url}/set")).json(&body).send().await
                } else {
                    client.get(format!("{url}/get/{key}")).send().await
                };
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Phase {
        ops: all.len(),
        errors,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

async fn preload(urls: &[String]) {
    let client = reqwest::Client::new();
    for k in 0..KEYS {
        let r = client
            .post(format!("{}/set", urls[0]))
            .json(&json!({"key": format!("key-{k}"), "value": "initial"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

async fn delay_profile_latency() {
    println!("\nWrite latency with --delay-profile assignment (200 ms per send, 100 ms ack), 5 sequential writes each:\n");
    println!("| W | mean ms | min ms | max ms |");
    println!("| --- | ---: | ---: | ---: |");
    let c = Cluster::start(5, 1, 1, |cfg| {
        cfg.delay_profile = DelayProfileArg::Assignment;
        cfg.write_timeout_ms = 10_000;
    })
    .await;
    for w in [1u32, 3, 5] {
        assert!(c
            .post_config(1, json!({"w": w}))
            .await
            .status()
            .is_success());
        c.wait_converged().await;
        let mut ms = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            assert!(c.set(1, &format!("d{i}"), "v").await.status().is_success());
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            c.wait_converged().await;
        }
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let min = ms.iter().copied().fold(f64::MAX, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        println!("| {w} | {mean:.0} | {min:.0} | {max:.0} |");
    }
    c.stop().await;
}

fn main() {
    let secs = env("BENCH_SECS", 4);
    let clients = env("BENCH_CLIENTS", 32) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{clients} concurrent clients, {secs} s per phase, {KEYS} keys; writes to the leader (leaderless: to every node), reads over every node.\n");
        let mut rows: Vec<(String, Phase, Phase)> = Vec::new();
        for (name, wr) in [("single node", None), ("W5R1", Some((5, 1))), ("W1R5", Some((1, 5))), ("W3R3", Some((3, 3))), ("leaderless W5R1", Some((5, 1))), ("leaderless W3R3", Some((3, 3))), ("leaderless W1R1", Some((1, 1)))] {
            let leaderless = name.starts_with("leaderless");
            let (urls, stop): (Vec<String>, Box<dyn FnOnce() -> _>) = match wr {
                None => {
                    let n = TestNode::start(Config::for_tests(1)).await;
                    (vec![n.url.clone()], Box::new(move || tokio::spawn(n.stop())))
                }
                Some((w, r)) => {
                    let c = Cluster::start(5, w, r, |cfg| {
                        if leaderless {
                            cfg.mode = ModeArg::Leaderless;
                            cfg.role = None;
                        }
                    })
                    .await;
                    ((1..=5).map(|id| c.url(id)).collect(), Box::new(move || tokio::spawn(c.stop())))
                }
            };
            preload(&urls).await;
            // Warm-up (connections, allocator), not measured.
            drive(Arc::new(urls.clone()), true, clients, 1).await;
            let writers = if leaderless { urls.clone() } else { vec![urls[0].clone()] };
            let writes = drive(Arc::new(writers), true, clients, secs).await;
            let reads = drive(Arc::new(urls), false, clients, secs).await;
            stop().await.unwrap();
            rows.push((name.to_owned(), writes, reads));
        }
        let (base_w, base_r) = (rows[0].1.rate(), rows[0].2.rate());
        println!("| setup | writes/s | × single | write p50 ms | write p99 ms | reads/s | × single | read p50 ms | read p99 ms | errors |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (name, w, r) in &rows {
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                w.rate(),
                w.rate() / base_w,
                w.p50_us as f64 / 1000.0,
                w.p99_us as f64 / 1000.0,
                r.rate(),
                r.rate() / base_r,
                r.p50_us as f64 / 1000.0,
                r.p99_us as f64 / 1000.0,
                w.errors + r.errors
            );
        }
        delay_profile_latency().await;
    });
}
