//! `kv-loadtester`: closed-loop load against one node, with a latency summary.

use clap::Parser;
use hdrhistogram::Histogram;
use kv_shared::{GetResponse, SetRequest};
use std::time::{Duration, Instant};

/// Flags of `kv-loadtester`.
#[derive(Debug, Parser)]
#[command(name = "kv-loadtester", version, about = "Load tester of the replicated key-value store")]
struct Args {
    /// Base URL of the node to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Fraction of requests that are writes (0.0 to 1.0).
    #[arg(long, default_value_t = 0.5)]
    write_ratio: f64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 4)]
    concurrency: u32,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100)]
    keys: u32,
}

/// What one client measured.
struct Measured {
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let (client, url) = (client.clone(), args.url.clone());
        let (ratio, keys) = (args.write_ratio, args.keys.max(1));
        tasks.push(tokio::spawn(async move {
            client_loop(client, url, worker, ratio, keys, deadline).await
        }));
    }
    let mut reads = Histogram::<u64>::new(3).expect("valid histogram");
    let mut writes = reads.clone();
    let mut errors = 0;
    for t in tasks {
        let m = t.await.expect("client task");
        reads.add(m.reads).expect("same bounds");
        writes.add(m.writes).expect("same bounds");
        errors += m.errors;
    }
    for (name, h) in [("reads", &reads), ("writes", &writes)] {
        println!(
            "{name:>6}: {:>8} ok  {:>8.1}/s  p50 {:>7} µs  p99 {:>7} µs  max {:>7} µs",
            h.len(),
            h.len() as f64 / args.duration as f64,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        );
    }
    println!("errors: {errors}");
}

/// One client: issues requests back to back until the deadline.
async fn client_loop(
    client: reqwest::Client,
    url: String,
    worker: u32,
    write_ratio: f64,
    keys: u32,
    deadline: Instant,
) -> Measured {
    let mut m = Measured {
        reads: Histogram::new(3).expect("valid histogram"),
        writes: Histogram::new(3).expect("valid histogram"),
        errors: 0,
    };
    // A small linear congruential sequence: deterministic per worker.
    let mut x = u64::from(worker).wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut i = 0u64;
    while Instant::now() < deadline {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let key = format!("key-{}", (x >> 33) % u64::from(keys));
        let is_write = ((x >> 11) as f64 / (1u64 << 53) as f64) < write_ratio;
        let start = Instant::now();
        let ok = if is_write {
            i += 1;
            let body = SetRequest { key, value: format!("w{worker}-{i}") };
            client.post(format!("{url}/set")).json(&body).send().await.is_ok_and(|r| r.status() == 201)
        } else {
            match client.get(format!("{url}/get")).query(&[("key", &key)]).send().await {
                Ok(r) if r.status() == 404 => true,
                Ok(r) => r.json::<GetResponse>().await.is_ok(),
                Err(_) => false,
            }
        };
        let micros = start.elapsed().as_micros() as u64;
        let h = if is_write { &mut m.writes } else { &mut m.reads };
        if ok {
            h.record(micros.max(1)).expect("auto-resizing histogram");
        } else {
            m.errors += 1;
        }
    }
    m
}
