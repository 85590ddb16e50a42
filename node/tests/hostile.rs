//! Hostile input against real `kv-node` processes on 127.0.0.1: a
//! standalone node, a leader-follower cluster and a leaderless cluster.
//!
//! Every attack gets its 4xx (401 without a valid signature) and leaves the
//! data, versions, clocks, terms and configuration of every node as they
//! were; the refusals are counted in `/status`. Meanwhile a client keeps
//! writing and reading: every one of its requests must succeed (within a
//! 2 s client timeout, a stall detector, not a latency target; the
//! latencies with and without the attack are printed for the record).

mod common;

use kv_loadtester::cluster::{ClusterKind, ClusterSpec, LocalCluster};
use kv_node::security::Secret;
use kv_shared::cluster::{ClusterConfig, DelayProfile, StatusResponse};
use kv_shared::leader_follower::{
    AppendRequest, Command, LogEntry, SnapshotRequest, VoteRequest, APPEND_PATH, SNAPSHOT_PATH,
    STREAM_PATH, VOTE_PATH,
};
use kv_shared::leaderless::{DigestRequest, LlWrite, TreeShape, WriteKind, LL_WRITE_STREAM_PATH};
use kv_shared::limits::{MAX_DELAY_MS, MAX_KEY_BYTES, MAX_READ_BATCH_KEYS, MAX_TERM, MAX_VERSION};
use kv_shared::replication::{
    ConfigEnvelope, InternalReadQuery, InternalReadsRequest, Record, RepairRequest,
    BODY_DIGEST_HEADER, FROM_HEADER, INTERNAL_READS_PATH, INTERNAL_READS_STREAM_PATH,
    SIGNATURE_HEADER, TIME_HEADER,
};
use kv_shared::{ErrorBody, NodeId};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_TOKEN: &str = "hostile-suite-admin-token";
/// Keys written before the attack and compared after it.
const SEEDED: [&str; 3] = ["victim", "k1", "k2"];
const BODY_TIMEOUT_MS: u64 = 1_000;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn start(kind: ClusterKind, n: u32) -> LocalCluster {
    let spec = ClusterSpec {
        kind,
        n,
        delay_profile: false,
        node_bin: PathBuf::from(env!("CARGO_BIN_EXE_kv-node")),
        log_dir: None,
        extra_args: [
            "--body-timeout-ms",
            &BODY_TIMEOUT_MS.to_string(),
            "--max-event-streams",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![("ADMIN_TOKEN".into(), ADMIN_TOKEN.into())],
    };
    LocalCluster::start(&spec).await.expect("cluster starts")
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What an attack must not change: per node, the configuration in force,
/// the leader and term (leader-follower), and every seeded key's copy.
#[derive(Debug, PartialEq)]
struct Observed {
    nodes: BTreeMap<NodeId, NodeState>,
}

#[derive(Debug, PartialEq)]
struct NodeState {
    config: ClusterConfig,
    leader: Option<NodeId>,
    term: Option<u64>,
    copies: BTreeMap<&'static str, Option<(String, u64)>>,
}

async fn status(c: &reqwest::Client, url: &str) -> StatusResponse {
    common::get_json(c, &format!("{url}/status")).await
}

async fn observe(cluster: &LocalCluster, c: &reqwest::Client) -> Observed {
    let mut nodes = BTreeMap::new();
    for (id, url) in cluster.ids().into_iter().zip(&cluster.urls) {
        let s = status(c, url).await;
        let mut copies = BTreeMap::new();
        for key in SEEDED {
            let r = c
                .get(format!("{url}/local_read/{key}"))
                .send()
                .await
                .unwrap();
            let copy = if r.status() == 200 {
                let v: Value = r.json().await.unwrap();
                Some((
                    v["value"].as_str().unwrap_or_default().to_owned(),
                    v["version"].as_u64().unwrap_or_default(),
                ))
            } else {
                None
            };
            copies.insert(key, copy);
        }
        nodes.insert(
            id,
            NodeState {
                config: s.config,
                leader: s.leader,
                term: s.leader_follower.as_ref().map(|lf| lf.term),
                copies,
            },
        );
    }
    Observed { nodes }
}

/// Writes the seeded keys through node 1 (it forwards to the leader) and
/// waits until every node holds them.
async fn seed(cluster: &LocalCluster, c: &reqwest::Client) {
    for key in SEEDED {
        let r = c
            .post(format!("{}/set", cluster.urls[0]))
            .json(&json!({"key": key, "value": "good"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "seed {key}: {}", r.text().await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = observe(cluster, c).await;
        if o.nodes
            .values()
            .all(|n| n.copies.values().all(Option::is_some))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seeded keys did not spread: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request of the attack and the status it must get.
struct Attack {
    name: String,
    req: reqwest::RequestBuilder,
    expect: u16,
}

/// Signed with `secret` as node `from`, at `time_ms` when given (else now).
fn signed(
    c: &reqwest::Client,
    url: &str,
    path: &str,
    from: NodeId,
    body: &Value,
    secret: &Secret,
    time_ms: Option<u64>,
) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = secret.sign_request("POST", path, from, time_ms.unwrap_or_else(wall_ms), &bytes);
    c.post(format!("{url}{path}"))
        .header(FROM_HEADER, from.to_string())
        .header(TIME_HEADER, sig.time_ms.to_string())
        .header(BODY_DIGEST_HEADER, sig.digest)
        .header(SIGNATURE_HEADER, sig.signature)
        .header("content-type", "application/json")
        .body(bytes)
}

/// `POST /internal/reads` asking for `n` copies of `key`.
fn read_batch(n: usize, key: &str) -> Value {
    let ask = InternalReadQuery {
        key: key.to_owned(),
        digest: false,
    };
    to_json(&InternalReadsRequest { asks: vec![ask; n] })
}

/// The node-to-node messages an outsider or a broken peer might send to
/// node `to`, each unsigned, signed with a wrong secret, signed too long ago
/// (all 401), and `signed_expect`: the status of the signed message.
fn internal_attacks(
    c: &reqwest::Client,
    url: &str,
    secret: &Secret,
    messages: Vec<(&str, &str, Value, u16)>,
) -> Vec<Attack> {
    let wrong = Secret::new("not-the-cluster-secret-at-all");
    let mut out = Vec::new();
    for (name, path, body, signed_expect) in messages {
        out.push(Attack {
            name: format!("{name}, unsigned"),
            req: c.post(format!("{url}{path}")).json(&body),
            expect: 401,
        });
        out.push(Attack {
            name: format!("{name}, wrong secret"),
            req: signed(c, url, path, 2, &body, &wrong, None),
            expect: 401,
        });
        out.push(Attack {
            name: format!("{name}, signed two minutes ago (a replay)"),
            req: signed(c, url, path, 2, &body, secret, Some(wall_ms() - 120_000)),
            expect: 401,
        });
        out.push(Attack {
            name: format!("{name}, signed"),
            req: signed(c, url, path, 2, &body, secret, None),
            expect: signed_expect,
        });
    }
    out
}

/// The client-side attacks every mode must refuse.
fn client_attacks(c: &reqwest::Client, url: &str, n: u32) -> Vec<Attack> {
    let host = url.trim_start_matches("http://");
    let mut v = vec![
        Attack {
            name: "a key with NUL".into(),
            req: c
                .post(format!("{url}/set"))
                .json(&json!({"key": "vic\u{0}tim", "value": "x"})),
            expect: 400,
        },
        Attack {
            name: "a query key that is not UTF-8".into(),
            req: c.get(format!("{url}/get?key=a%FFb")),
            expect: 400,
        },
        Attack {
            name: "a path key that is not UTF-8".into(),
            req: c.get(format!("{url}/get/a%FFb")),
            expect: 400,
        },
        Attack {
            name: "a write for a foreign Host (DNS rebinding)".into(),
            req: c
                .post(format!("{url}/set"))
                .header("host", "evil.example")
                .json(&json!({"key": "victim", "value": "evil"})),
            expect: 403,
        },
        Attack {
            name: "a cross-origin write from a foreign page".into(),
            req: c
                .post(format!("{url}/set"))
                .header("origin", "http://evil.example")
                .header("content-type", "text/plain")
                .body(r#"{"key":"victim","value":"evil"}"#),
            expect: 403,
        },
        Attack {
            name: "W/R without the admin token".into(),
            req: c.post(format!("{url}/config")).json(&json!({"w": 1})),
            expect: 401,
        },
        Attack {
            name: "a delay profile without the admin token".into(),
            req: c
                .post(format!("{url}/config"))
                .json(&json!({"delay_profile": {"send_ms": 1, "ack_ms": 1, "remote_read_ms": 1}})),
            expect: 401,
        },
        Attack {
            name: "a wrong admin token".into(),
            req: c
                .post(format!("{url}/config"))
                .bearer_auth("guess")
                .json(&json!({"w": 1})),
            expect: 401,
        },
    ];
    if n > 1 {
        for (name, body) in [
            ("W = 0", json!({"w": 0})),
            ("R = 0", json!({"r": 0})),
            ("W > N", json!({"w": n + 1})),
            (
                "a send delay of u32::MAX ms",
                json!({"delay_profile": {"send_ms": u32::MAX, "ack_ms": 0, "remote_read_ms": 0}}),
            ),
            (
                "a delay just over the cap",
                json!({"delay_profile": {"send_ms": 0, "ack_ms": MAX_DELAY_MS + 1, "remote_read_ms": 0}}),
            ),
        ] {
            v.push(Attack {
                name: format!("{name}, with the admin token"),
                req: c
                    .post(format!("{url}/config"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body),
                expect: 400,
            });
        }
    }
    let _ = host;
    v
}

/// Sends every attack and checks its status and JSON error body.
async fn run_attacks(attacks: Vec<Attack>) -> usize {
    let count = attacks.len();
    for a in attacks {
        let r = a
            .req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", a.name));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, a.expect, "{}: answered {status} {text}", a.name);
        let body: ErrorBody = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not a JSON error ({e}): {text}", a.name));
        assert!(!body.error.is_empty(), "{}", a.name);
        // The attack messages are well-formed: a 400 names a check, not a parse error.
        assert!(
            !body.error.starts_with("Failed to deserialize")
                && !body.error.starts_with("Failed to parse"),
            "{}: refused by the decoder, not by a check: {}",
            a.name,
            body.error
        );
    }
    count
}

/// Raw HTTP/1.1 on a fresh connection: sends `head` and `body`, returns the
/// status line's code (None if the connection closed first) and how long
/// the answer took. Bounded by `limit`.
async fn raw(url: &str, head: &str, body: &[u8], limit: Duration) -> (Option<u16>, Duration) {
    let addr = url.trim_start_matches("http://");
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(limit, async {
        // At most 64 reads: a status line arrives in the first one or two.
        for _ in 0..64 {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let took = started.elapsed();
    if read.is_err() {
        return (None, took);
    }
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok());
    (code, took)
}

/// The attacks on body sizes and slow bodies, over raw sockets.
async fn body_attacks(url: &str, pid: u32, secret: Option<&Secret>) {
    let host = url.trim_start_matches("http://");
    // A JSON POST head announcing `length` bytes, with more header lines.
    let head = |path: &str, length: u64, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             {extra}Content-Length: {length}\r\n\r\n"
        )
    };
    let five = Duration::from_secs(5);
    let before = common::rss(pid);
    let huge = 200 * 1024 * 1024;
    for i in 0..3 {
        // Unsigned: refused from the headers alone, nothing of the body read.
        let unsigned = head("/internal/repair", huge, "");
        let (code, _) = raw(url, &unsigned, b"{\"from\":2,\"records\":[", five).await;
        assert_eq!(code, Some(401), "200 MB unsigned body #{i}");
        if let Some(secret) = secret {
            // Signed (a member gone wrong): refused by its declared length.
            let sig = secret.sign_request("POST", "/internal/repair", 2, wall_ms(), b"");
            let extra = format!(
                "{FROM_HEADER}: 2\r\n{TIME_HEADER}: {}\r\n{BODY_DIGEST_HEADER}: {}\r\n\
                 {SIGNATURE_HEADER}: {}\r\n",
                sig.time_ms, sig.digest, sig.signature
            );
            let (code, _) = raw(url, &head("/internal/repair", huge, &extra), b"{", five).await;
            assert_eq!(code, Some(413), "200 MB signed body #{i}");
        }
        // A client body over the limit.
        let client = head("/set", huge, "");
        let (code, _) = raw(url, &client, b"{\"key\":\"victim\",\"value\":\"", five).await;
        assert_eq!(code, Some(413), "200 MB client body #{i}");
    }
    // A body announced longer than sent: answered once the body timeout
    // passes, not waited on forever.
    let short = head("/set", 1000, "");
    let (code, took) = raw(url, &short, b"{\"key\":\"victim\"", Duration::from_secs(10)).await;
    assert_eq!(code, Some(408), "short body");
    assert!(
        took >= Duration::from_millis(BODY_TIMEOUT_MS / 2),
        "answered before the timeout: {took:?}"
    );
    let after = common::rss(pid);
    assert!(
        after < before + 64 * 1024 * 1024,
        "RSS grew from {before} to {after} bytes during the body attacks"
    );
}

/// Writes and reads through `url` until `stop`; returns the latencies of
/// every successful round and panics on any failed request.
fn spawn_prober(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut took = Vec::new();
        // Bounded: at most 5 000 rounds (the attack takes a few seconds).
        for i in 0..5_000u32 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = format!("probe-{}", i % 50);
            let t = Instant::now();
            let w = c
                .post(format!("{url}/set"))
                .json(&json!({"key": key, "value": i.to_string()}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("a normal write failed during the attack: {e}"));
            assert_eq!(w.status(), 201, "a normal write during the attack");
            let r = c
                .get(format!("{url}/get/{key}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("a normal read failed during the attack: {e}"));
            assert_eq!(r.status(), 200, "a normal read during the attack");
            took.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took
    })
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Probes for a while without an attack (the baseline), then runs `attack`
/// while probing, and prints both.
async fn under_attack<F: std::future::Future<Output = usize>>(mode: &str, url: &str, attack: F) {
    let stop = Arc::new(AtomicBool::new(false));
    let baseline = spawn_prober(url.to_owned(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    let baseline = baseline.await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let during = spawn_prober(url.to_owned(), stop.clone());
    let attacks = attack.await;
    stop.store(true, Ordering::Relaxed);
    let during = during.await.unwrap();
    assert!(!during.is_empty(), "the prober ran during the attack");
    println!(
        "{mode}: {attacks} attacks; write+read round p50/p99: {:?}/{:?} without, {:?}/{:?} during ({} rounds)",
        percentile(baseline.clone(), 0.5),
        percentile(baseline, 0.99),
        percentile(during.clone(), 0.5),
        percentile(during.clone(), 0.99),
        during.len()
    );
}

/// Every attack counted: node `url`'s `/status` shows the refusals.
async fn assert_counted(c: &reqwest::Client, url: &str, signed: bool) {
    let s = status(c, url)
        .await
        .security
        .expect("/status has a security section");
    assert!(s.unauthenticated >= 3, "{s:?}");
    assert!(s.foreign_requests >= 2, "{s:?}");
    assert!(s.refused_admin >= 3, "{s:?}");
    if signed {
        assert!(s.invalid_messages >= 1, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_refuses_every_attack_and_keeps_serving() {
    let cluster = start(ClusterKind::Standalone, 1).await;
    let c = client();
    let url = cluster.urls[0].clone();
    seed(&cluster, &c).await;
    let before = observe(&cluster, &c).await;
    let secret = Secret::new(cluster.secret());
    let pid = cluster.pid(1).unwrap();
    under_attack("standalone", &url, async {
        let mut attacks = client_attacks(&c, &url, 1);
        // A standalone node has no peers: signed or not, no node-to-node
        // message changes it.
        let config = ClusterConfig {
            n: 1,
            w: 0,
            r: 0,
            delay_profile: DelayProfile::OFF,
        };
        attacks.extend(internal_attacks(
            &c,
            &url,
            &secret,
            vec![
                (
                    "a read repair with version u64::MAX",
                    "/internal/repair",
                    to_json(&RepairRequest {
                        from: 2,
                        records: vec![Record {
                            key: "victim".into(),
                            value: "evil".into(),
                            version: u64::MAX,
                        }],
                    }),
                    400,
                ),
                (
                    "W = R = 0 with epoch u64::MAX",
                    "/internal/config",
                    to_json(&ConfigEnvelope {
                        config,
                        epoch: u64::MAX,
                        origin: 2,
                    }),
                    400,
                ),
                (
                    "a leaderless write with clock u64::MAX",
                    "/internal/ll/write",
                    to_json(&LlWrite {
                        from: 2,
                        clock: u64::MAX,
                        kind: WriteKind::Client,
                        records: vec![],
                        config: None,
                    }),
                    409,
                ),
            ],
        ));
        let n = run_attacks(attacks).await;
        body_attacks(&url, pid, Some(&secret)).await;
        n
    })
    .await;
    assert_eq!(
        observe(&cluster, &c).await,
        before,
        "the attacks changed nothing"
    );
    assert_counted(&c, &url, false).await;
    // After everything, the victim is still writable with the next version.
    let r: Value = c
        .post(format!("{url}/set"))
        .json(&json!({"key": "victim", "value": "next"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["version"], 2, "{r}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_follower_cluster_refuses_every_attack_and_keeps_serving() {
    let cluster = start(ClusterKind::LeaderFollower { w: 2, r: 2 }, 3).await;
    let c = client();
    seed(&cluster, &c).await;
    let before = observe(&cluster, &c).await;
    let leader = before.nodes[&1].leader.expect("a leader");
    let term = before.nodes[&1].term.unwrap_or_default();
    let follower = cluster.ids().into_iter().find(|&i| i != leader).unwrap();
    let secret = Secret::new(cluster.secret());
    let (lurl, furl) = (
        cluster.urls[leader as usize - 1].clone(),
        cluster.urls[follower as usize - 1].clone(),
    );
    let config = ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap();
    let other = if follower == 2 { 3 } else { 2 };
    // Well-formed messages (typed), each with one extreme or forged field.
    let append = |t: u64, leader_id: NodeId, version: u64| {
        to_json(&AppendRequest {
            term: t,
            leader: leader_id,
            prev_index: 0,
            prev_term: 0,
            entries: vec![LogEntry {
                index: 1,
                term: t.min(MAX_TERM),
                command: Command::Write {
                    key: "victim".into(),
                    value: "evil".into(),
                    version,
                },
            }],
            leader_commit: 1,
            leader_last: 1,
            config,
            config_index: 0,
            sent_at_ms: wall_ms(),
        })
    };
    let vote = to_json(&VoteRequest {
        term: u64::MAX,
        candidate: other,
        last_index: u64::MAX,
        last_term: u64::MAX,
        pre_vote: false,
        probe: false,
    });
    let snapshot = to_json(&SnapshotRequest {
        offset: 0,
        done: true,
        term: term + 1,
        leader: other,
        last_index: 1,
        last_term: term + 1,
        records: vec![Record {
            key: "victim".into(),
            value: "evil".into(),
            version: MAX_VERSION + 1,
        }],
        floor: 0,
        window: 0,
        max_version: MAX_VERSION + 1,
        base_config: config,
        base_config_index: 0,
        config,
        config_index: 0,
        terms: vec![(1, term + 1)],
        leader_last: 1,
        sent_at_ms: wall_ms(),
    });
    let repair = to_json(&RepairRequest {
        from: other,
        records: vec![Record {
            key: "victim".into(),
            value: "evil".into(),
            version: 99,
        }],
    });
    let envelope = to_json(&ConfigEnvelope {
        config,
        epoch: u64::MAX,
        origin: other,
    });
    let pid = cluster.pid(follower).unwrap();
    under_attack("leader-follower", &lurl, async {
        let mut attacks = client_attacks(&c, &furl, 3);
        attacks.extend(client_attacks(&c, &lurl, 3));
        attacks.extend(internal_attacks(
            &c,
            &furl,
            &secret,
            vec![
                (
                    "a leader claim with term u64::MAX",
                    APPEND_PATH,
                    append(u64::MAX, other, 1),
                    400,
                ),
                (
                    "a leader claim with a term past the limit",
                    APPEND_PATH,
                    append(MAX_TERM + 1, other, 1),
                    400,
                ),
                (
                    "a leader claim by an unknown node",
                    APPEND_PATH,
                    append(term + 1, 9, 1),
                    400,
                ),
                (
                    "a leader claim in the receiver's name",
                    APPEND_PATH,
                    append(term + 1, follower, 1),
                    400,
                ),
                (
                    "an entry with version u64::MAX",
                    APPEND_PATH,
                    append(term + 1, other, u64::MAX),
                    400,
                ),
                (
                    "an entry past the version limit",
                    APPEND_PATH,
                    append(term + 1, other, MAX_VERSION + 1),
                    400,
                ),
                ("a vote request with term u64::MAX", VOTE_PATH, vote, 400),
                (
                    "an append stream asked for without the upgrade",
                    STREAM_PATH,
                    json!({}),
                    400,
                ),
                (
                    "a reads stream asked for without the upgrade",
                    INTERNAL_READS_STREAM_PATH,
                    json!({}),
                    400,
                ),
                (
                    "a leaderless writes stream (not this mode)",
                    LL_WRITE_STREAM_PATH,
                    json!({}),
                    409,
                ),
                (
                    "a snapshot with a version past the limit",
                    SNAPSHOT_PATH,
                    snapshot,
                    400,
                ),
                (
                    "a read repair (replicas change only through the log)",
                    "/internal/repair",
                    repair,
                    409,
                ),
                (
                    "a configuration envelope (changes go through the log)",
                    "/internal/config",
                    envelope,
                    409,
                ),
                (
                    "a batch of reads past the limit",
                    INTERNAL_READS_PATH,
                    read_batch(MAX_READ_BATCH_KEYS as usize + 1, "k"),
                    400,
                ),
                (
                    "a batch of reads with a key past the limit",
                    INTERNAL_READS_PATH,
                    read_batch(2, &"k".repeat(MAX_KEY_BYTES as usize + 1)),
                    400,
                ),
            ],
        ));
        let n = run_attacks(attacks).await;
        body_attacks(&furl, pid, Some(&secret)).await;
        n
    })
    .await;
    let after = observe(&cluster, &c).await;
    assert_eq!(
        after, before,
        "the attacks changed nothing (terms and leader included)"
    );
    assert_counted(&c, &furl, true).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaderless_cluster_refuses_every_attack_and_keeps_serving() {
    let cluster = start(
        ClusterKind::Leaderless {
            w: Some(2),
            r: Some(2),
        },
        3,
    )
    .await;
    let c = client();
    seed(&cluster, &c).await;
    let before = observe(&cluster, &c).await;
    let secret = Secret::new(cluster.secret());
    let url = cluster.urls[0].clone();
    // Built field by field: `ClusterConfig::new` would refuse these.
    let config = |w: u32, r: u32, send_ms: u32| ClusterConfig {
        n: 3,
        w,
        r,
        delay_profile: DelayProfile {
            send_ms,
            ack_ms: 0,
            remote_read_ms: 0,
        },
    };
    let envelope = |config: ClusterConfig, epoch: u64, origin: NodeId| {
        to_json(&ConfigEnvelope {
            config,
            epoch,
            origin,
        })
    };
    let record = |key: &str, version: u64| Record {
        key: key.into(),
        value: "evil".into(),
        version,
    };
    let future = |ms: u64| {
        // A leaderless version: physical ms since the HLC epoch in the top bits.
        let stamp = kv_node::leaderless::hlc::Stamp {
            physical: (wall_ms() + ms).saturating_sub(kv_node::leaderless::hlc::EPOCH_UNIX_MS),
            logical: 0,
            node: 2,
        };
        stamp.pack()
    };
    let pid = cluster.pid(1).unwrap();
    under_attack("leaderless", &cluster.urls[1].clone(), async {
        let mut attacks = client_attacks(&c, &url, 3);
        let write_of = |from: NodeId, clock: u64, r: Record| {
            to_json(&LlWrite {
                from,
                clock,
                kind: WriteKind::Client,
                records: vec![r],
                config: None,
            })
        };
        let write = |from: NodeId, clock: u64, version: u64| {
            write_of(from, clock, record("victim", version))
        };
        let now = future(0);
        attacks.extend(internal_attacks(
            &c,
            &url,
            &secret,
            vec![
                (
                    "a clock of u64::MAX",
                    "/internal/ll/write",
                    write(2, u64::MAX, now),
                    400,
                ),
                (
                    "a clock 10 s ahead",
                    "/internal/ll/write",
                    write(2, future(10_000), now),
                    400,
                ),
                (
                    "a version 10 s ahead",
                    "/internal/ll/write",
                    write(2, now, future(10_000)),
                    400,
                ),
                (
                    "a version of u64::MAX",
                    "/internal/ll/write",
                    write(2, now, u64::MAX),
                    400,
                ),
                (
                    "a write from an unknown node",
                    "/internal/ll/write",
                    write(9, now, now),
                    400,
                ),
                (
                    "a write in the receiver's name",
                    "/internal/ll/write",
                    write(1, now, now),
                    400,
                ),
                (
                    "a key with NUL",
                    "/internal/ll/write",
                    write_of(2, now, record("a\u{0}b", now)),
                    400,
                ),
                (
                    "a read repair with version u64::MAX",
                    "/internal/repair",
                    to_json(&RepairRequest {
                        from: 2,
                        records: vec![record("victim", u64::MAX)],
                    }),
                    400,
                ),
                (
                    "W = 0",
                    "/internal/config",
                    envelope(config(0, 2, 0), 1, 2),
                    400,
                ),
                (
                    "R > N",
                    "/internal/config",
                    envelope(config(2, 4, 0), 1, 2),
                    400,
                ),
                (
                    "a send delay of u32::MAX ms",
                    "/internal/config",
                    envelope(config(2, 2, u32::MAX), 1, 2),
                    400,
                ),
                (
                    "an epoch of u64::MAX (freezes the configuration)",
                    "/internal/config",
                    envelope(config(1, 1, 0), u64::MAX, 2),
                    400,
                ),
                (
                    "an epoch far past the receiver's",
                    "/internal/config",
                    envelope(config(1, 1, 0), 1_000_000, 2),
                    400,
                ),
                (
                    "a configuration from an unknown origin",
                    "/internal/config",
                    envelope(config(1, 1, 0), 1, 9),
                    400,
                ),
                (
                    "a reads stream asked for without the upgrade",
                    INTERNAL_READS_STREAM_PATH,
                    json!({}),
                    400,
                ),
                (
                    "a writes stream asked for without the upgrade",
                    LL_WRITE_STREAM_PATH,
                    json!({}),
                    400,
                ),
                (
                    "an anti-entropy digest from an unknown node",
                    "/internal/ll/digest",
                    to_json(&DigestRequest {
                        from: 9,
                        session: 1,
                        shape: TreeShape::DEFAULT,
                        level: 0,
                        nodes: vec![0],
                        config: None,
                    }),
                    400,
                ),
            ],
        ));
        let n = run_attacks(attacks).await;
        body_attacks(&url, pid, Some(&secret)).await;
        n
    })
    .await;
    let after = observe(&cluster, &c).await;
    assert_eq!(after, before, "the attacks changed nothing");
    assert_counted(&c, &url, true).await;
    // No clock was absorbed: every node's clock is within the offset of now.
    for u in &cluster.urls {
        let s = status(&c, u).await;
        let ll = s.leaderless.expect("leaderless status");
        assert!(
            ll.clock_ms <= wall_ms() + 500,
            "node {} clock {} ms ahead",
            s.node_id,
            ll.clock_ms - wall_ms()
        );
    }
    // And every write through the attacked node lands, twice in a row.
    for value in ["after-1", "after-2"] {
        let r = c
            .post(format!("{url}/set"))
            .json(&json!({"key": "victim", "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let got: Value = common::get_json(&c, &format!("{url}/get/victim")).await;
        assert_eq!(got["value"], value);
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_and_free_their_slot() {
    let cluster = start(ClusterKind::Standalone, 1).await;
    let c = client();
    let url = &cluster.urls[0];
    let mut open = Vec::new();
    for i in 0..4 {
        let r = c.get(format!("{url}/events")).send().await.unwrap();
        assert_eq!(r.status(), 200, "stream {i}");
        open.push(r);
    }
    let r = c.get(format!("{url}/events")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a fifth stream over --max-event-streams 4");
    let _: ErrorBody = r.json().await.unwrap();
    drop(open.pop());
    // The slot returns once the server sees the stream closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.get(format!("{url}/events")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = status(&c, url).await.security.unwrap();
    assert!(s.refused_event_streams >= 1, "{s:?}");
    drop(open);
    cluster.stop().await;
}
