//! The assignment's consistency tests on a 5-node leader-follower cluster
//! over real HTTP: what a read returns after a write's 201, per preset.

mod common;

use common::Cluster;
use kv_shared::{GetResponse, SetResponse};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn write(c: &Cluster, node: u32, key: &str, value: &str) -> SetResponse {
    let r = c.set(node, key, value).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "write of {key} at node {node}"
    );
    r.json().await.unwrap()
}

async fn read(c: &Cluster, node: u32, key: &str) -> GetResponse {
    let r = c.get(node, key).await;
    assert_eq!(r.status(), StatusCode::OK, "read of {key} at node {node}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w5r1_reads_at_leader_and_followers_see_the_write_after_201() {
    // W5: the 201 means every replica applied the write, so a local read anywhere sees it.
    let c = Cluster::start(5, 5, 1, |_| {}).await;
    for round in 1..=3u64 {
        let w = write(&c, Cluster::LEADER, "k", &format!("v{round}")).await;
        assert_eq!(w.version, round);
        for node in 1..=5 {
            let g = read(&c, node, "k").await;
            assert_eq!(
                (g.version, g.value.clone()),
                (round, format!("v{round}")),
                "node {node}"
            );
            assert_eq!(
                g.served_by,
                Some(node),
                "R=1 answers from the node's own copy"
            );
            assert_eq!(c.local(node, "k").await.unwrap().version, round);
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w3r3_reads_of_three_replicas_see_the_write_after_201() {
    // W3 + R3 > 5: every read quorum overlaps the write quorum.
    let c = Cluster::start(5, 3, 3, |_| {}).await;
    for round in 1..=5u64 {
        // Writes enter through followers too (forwarded to the leader).
        let entry = 1 + (round as u32 % 5);
        let w = write(&c, entry, "k", &format!("v{round}")).await;
        assert_eq!(w.version, round);
        for node in 1..=5 {
            let g = read(&c, node, "k").await;
            assert_eq!(g.version, round, "node {node}");
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w1_with_delay_profile_followers_serve_the_old_version_inside_the_window_then_converge() {
    // W1 with the assignment's delays: the 201 comes before the followers apply the
    // write, and local reads on followers show the old copy (or 404) until they do.
    let c = Cluster::start(5, 1, 1, |cfg| {
        cfg.delay_profile = kv_node::config::DelayProfileArg::Assignment;
        cfg.write_timeout_ms = 5000;
    })
    .await;
    for (key, old) in [("fresh", None), ("existing", Some(1u64))] {
        if old.is_some() {
            write(&c, Cluster::LEADER, key, "old").await;
            c.wait_converged().await;
        }
        let w = write(&c, Cluster::LEADER, key, "new").await;
        let new_version = w.version;
        // Poll every follower until all have the new version; record what was seen.
        let mut seen_old = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut all_new = true;
            for f in c.followers() {
                let v = c.local(f, key).await.map(|g| g.version);
                if v != Some(new_version) {
                    all_new = false;
                    assert_eq!(v, old, "follower {f} holds either the old or the new copy");
                    seen_old.push(f);
                }
            }
            if all_new {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "followers did not converge"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !seen_old.is_empty(),
            "some follower served the old copy of `{key}` after the leader's 201"
        );
        assert_eq!(
            c.local(Cluster::LEADER, key).await.unwrap().version,
            new_version
        );
    }
    c.stop().await;
}

/// Writers and readers on many keys, through every node; a read that starts
/// after a write's 201 must return that version or a newer one.
async fn reads_never_go_back(c: &Cluster, tag: &str) {
    const KEYS: usize = 40;
    // key -> highest version acknowledged with 201 so far
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..4u32 {
        let (client, urls, acked) = (c.client.clone(), all_urls(c), acked.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..60usize {
                let key = format!("{tag}-{}", (i * 7 + w as usize) % KEYS);
                let url = &urls[(i + w as usize) % urls.len()];
                let r = client
                    .post(format!("{url}/set"))
                    .json(&json!({"key": key, "value": format!("w{w}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                let s: SetResponse = r.json().await.unwrap();
                let mut a = acked.lock().unwrap();
                let e = a.entry(key).or_insert(0);
                *e = (*e).max(s.version);
            }
        }));
    }
    for rd in 0..4u32 {
        let (client, urls, acked) = (c.client.clone(), all_urls(c), acked.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..80usize {
                let key = format!("{tag}-{}", (i * 3 + rd as usize) % KEYS);
                let floor = acked.lock().unwrap().get(&key).copied();
                let url = &urls[(i + rd as usize) % urls.len()];
                let r = client
                    .get(format!("{url}/get"))
                    .query(&[("key", &key)])
                    .send()
                    .await
                    .unwrap();
                match (r.status().as_u16(), floor) {
                    (404, None) => {}
                    (200, _) => {
                        let g: GetResponse = r.json().await.unwrap();
                        let floor = floor.unwrap_or(0);
                        assert!(
                            g.version >= floor,
                            "{url} returned v{} of {key} after v{floor} was acknowledged",
                            g.version
                        );
                    }
                    (s, f) => panic!("read of {key} at {url}: status {s}, acknowledged {f:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn all_urls(c: &Cluster) -> Vec<String> {
    (1..=c.n()).map(|id| c.url(id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_201_never_return_an_older_version_for_every_preset_with_r_plus_w_over_n() {
    // W5R1, W1R5, W3R3 on one cluster, switched at run time with POST /config.
    let c = Cluster::start(5, 3, 3, |_| {}).await;
    for (w, r) in [(5, 1), (1, 5), (3, 3)] {
        let resp = c.post_config(2, json!({"w": w, "r": r})).await;
        assert_eq!(resp.status(), StatusCode::OK);
        for id in 1..=5 {
            let cfg = c.config(id).await;
            assert_eq!((cfg.w, cfg.r), (w, r), "node {id} runs the new quorums");
        }
        reads_never_go_back(&c, &format!("w{w}r{r}")).await;
    }
    c.stop().await;
}
