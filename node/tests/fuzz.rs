//! Property-based fuzzing of every endpoint's decoder and checks, through
//! the node's real router (in process, no socket: thousands of cases a
//! second).
//!
//! Each case takes a well-formed message of one endpoint (built from the
//! wire types), applies a few random mutations to its JSON — a number made
//! extreme or negative or fractional, a string made empty, huge, NUL-laden
//! or non-ASCII, a field dropped, added, nulled or turned into another type,
//! a value nested deep — signs it as a member would, and sends it to a
//! standalone, a leader-follower and a leaderless node. Every answer must
//! be a JSON body with a status that is not a server error, and afterwards
//! every node's state must still be sane: W and R within 1..=N, delays
//! capped, terms below the limit, a leaderless clock not ahead of the wall
//! clock by more than the allowed offset, every stored version within its
//! limit.
//!
//! `PROPTEST_CASES` sets the number of cases (default 1 000 per test, a few
//! seconds); a failing case is printed, shrunk, and saved for replay under
//! `proptest-regressions/`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kv_node::config::{ModeArg, TEST_CLUSTER_SECRET};
use kv_node::security::Secret;
use kv_node::{app, AppState, Config};
use kv_shared::cluster::{ClusterConfig, ConfigUpdate, DelayProfile};
use kv_shared::leader_follower::{
    AppendRequest, Command, LogEntry, SnapshotRequest, VoteRequest, APPEND_PATH, SNAPSHOT_PATH,
    VOTE_PATH,
};
use kv_shared::leaderless::{
    BucketKeysRequest, DigestRequest, FetchRequest, LlWrite, TreeShape, WriteKind,
};
use kv_shared::limits::{MAX_DELAY_MS, MAX_TERM, MAX_VERSION};
use kv_shared::replication::{ConfigEnvelope, Record, RepairRequest};
use kv_shared::SetRequest;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

/// One change to a JSON document, applied at the `at`-th node (pre-order).
#[derive(Debug, Clone)]
enum Mutation {
    Number(u64),
    Negative,
    Fraction,
    Text(String),
    Null,
    Drop,
    Add,
    Bool,
    Nest(u8),
}

fn extreme_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(255),
        Just(256),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(MAX_TERM),
        Just(MAX_TERM + 1),
        Just(1u64 << 53),
        Just(MAX_VERSION),
        Just(MAX_VERSION + 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn weird_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("x".repeat(300)),
        Just("\u{FFFF}\u{1F600}é".to_owned()),
        Just("../../etc/passwd".to_owned()),
        "[ -~]{0,20}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => extreme_number().prop_map(Mutation::Number),
        1 => Just(Mutation::Negative),
        1 => Just(Mutation::Fraction),
        2 => weird_text().prop_map(Mutation::Text),
        1 => Just(Mutation::Null),
        2 => Just(Mutation::Drop),
        1 => Just(Mutation::Add),
        1 => Just(Mutation::Bool),
        1 => (1u8..200).prop_map(Mutation::Nest),
    ]
}

/// Number of nodes of `v`, pre-order.
fn size(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(size).sum(),
        Value::Object(o) => o.values().map(size).sum(),
        _ => 0,
    }
}

/// Applies `m` at node `at` of `v` (pre-order); `at` counts down.
fn apply(v: &mut Value, at: &mut usize, m: &Mutation) -> bool {
    if *at == 0 {
        *v = match (m, &*v) {
            (Mutation::Number(n), _) => json!(n),
            (Mutation::Negative, _) => json!(-1),
            (Mutation::Fraction, _) => json!(1.5),
            (Mutation::Text(t), _) => json!(t),
            (Mutation::Null, _) => Value::Null,
            (Mutation::Bool, _) => json!(true),
            (Mutation::Nest(depth), old) => {
                let mut nested = old.clone();
                for _ in 0..*depth {
                    nested = json!([nested]);
                }
                nested
            }
            (Mutation::Drop | Mutation::Add, Value::Object(o)) => {
                let mut o = o.clone();
                match m {
                    Mutation::Drop => {
                        let first = o.keys().next().cloned();
                        if let Some(k) = first {
                            o.remove(&k);
                        }
                    }
                    _ => {
                        o.insert("unexpected".into(), json!({"x": [1, "two"]}));
                    }
                }
                Value::Object(o)
            }
            (Mutation::Drop, Value::Array(a)) => Value::Array(a.iter().skip(1).cloned().collect()),
            (Mutation::Add, Value::Array(a)) => {
                let mut a = a.clone();
                a.extend(a.first().cloned());
                Value::Array(a)
            }
            (_, old) => old.clone(),
        };
        return true;
    }
    *at -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| apply(x, at, m)),
        Value::Object(o) => o.values_mut().any(|x| apply(x, at, m)),
        _ => false,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn now_ms() -> u64 {
    kv_node::events::wall_ms()
}

/// A well-formed message of every endpoint: (path, body, signed).
fn seeds() -> Vec<(&'static str, Value, bool)> {
    let config = ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap();
    let record = Record {
        key: "k".into(),
        value: "v".into(),
        version: 3,
    };
    let hlc = kv_node::leaderless::hlc::Stamp {
        physical: now_ms() - kv_node::leaderless::hlc::EPOCH_UNIX_MS,
        logical: 0,
        node: 2,
    }
    .pack();
    vec![
        (
            "/set",
            to_json(&SetRequest {
                key: "k".into(),
                value: "v".into(),
            }),
            false,
        ),
        (
            "/config",
            to_json(&ConfigUpdate {
                w: Some(1),
                r: Some(3),
                delay_profile: Some(DelayProfile {
                    send_ms: 1,
                    ack_ms: 1,
                    remote_read_ms: MAX_DELAY_MS,
                }),
            }),
            false,
        ),
        (
            VOTE_PATH,
            to_json(&VoteRequest {
                term: 2,
                candidate: 2,
                last_index: 1,
                last_term: 1,
                pre_vote: true,
                probe: false,
            }),
            true,
        ),
        (
            APPEND_PATH,
            to_json(&AppendRequest {
                term: 2,
                leader: 2,
                prev_index: 0,
                prev_term: 0,
                entries: vec![
                    LogEntry {
                        index: 1,
                        term: 2,
                        command: Command::TermStart {
                            floor: 0,
                            window: 1,
                        },
                    },
                    LogEntry {
                        index: 2,
                        term: 2,
                        command: Command::Write {
                            key: "k".into(),
                            value: "v".into(),
                            version: 1,
                        },
                    },
                    LogEntry {
                        index: 3,
                        term: 2,
                        command: Command::Config { config },
                    },
                ],
                leader_commit: 2,
                leader_last: 3,
                config,
                config_index: 3,
                sent_at_ms: now_ms(),
            }),
            true,
        ),
        (
            SNAPSHOT_PATH,
            to_json(&SnapshotRequest {
                offset: 0,
                done: true,
                term: 2,
                leader: 2,
                last_index: 4,
                last_term: 2,
                records: vec![record.clone()],
                floor: 1,
                window: 1,
                max_version: 3,
                base_config: config,
                base_config_index: 0,
                config,
                config_index: 0,
                terms: vec![(1, 1), (3, 2)],
                leader_last: 4,
                sent_at_ms: now_ms(),
            }),
            true,
        ),
        (
            "/internal/repair",
            to_json(&RepairRequest {
                from: 2,
                records: vec![Record {
                    version: hlc,
                    ..record.clone()
                }],
            }),
            true,
        ),
        (
            "/internal/config",
            to_json(&ConfigEnvelope {
                config,
                epoch: 1,
                origin: 2,
            }),
            true,
        ),
        (
            "/internal/ll/write",
            to_json(&LlWrite {
                from: 2,
                clock: hlc,
                kind: WriteKind::Hint,
                records: vec![Record {
                    version: hlc,
                    ..record.clone()
                }],
                config: Some(ConfigEnvelope {
                    config,
                    epoch: 1,
                    origin: 2,
                }),
            }),
            true,
        ),
        (
            "/internal/ll/digest",
            to_json(&DigestRequest {
                from: 2,
                session: 1,
                shape: TreeShape::DEFAULT,
                level: 1,
                nodes: vec![0, 3],
                config: None,
            }),
            true,
        ),
        (
            "/internal/ll/keys",
            to_json(&BucketKeysRequest {
                from: 2,
                shape: TreeShape::DEFAULT,
                buckets: vec![0, 17],
            }),
            true,
        ),
        (
            "/internal/ll/fetch",
            to_json(&FetchRequest {
                from: 2,
                keys: vec!["k".into(), "missing".into()],
            }),
            true,
        ),
    ]
}

/// A standalone node, node 1 of a leader-follower trio and node 1 of a
/// leaderless trio (peers unreachable; no background task runs).
fn nodes() -> Vec<AppState> {
    let peers = "1=http://127.0.0.1:1,2=http://127.0.0.1:2,3=http://127.0.0.1:3";
    let mut out = vec![AppState::new(Config::for_tests(1))];
    for mode in [ModeArg::LeaderFollower, ModeArg::Leaderless] {
        let mut c = Config::for_tests(1);
        c.mode = mode;
        c.peers = peers.into();
        out.push(AppState::new(c));
    }
    out
}

/// Sends `body` (signed as node 2 when `signed`) to `path` of `state`.
async fn send(state: &AppState, path: &str, body: &[u8], signed: bool) -> (StatusCode, Vec<u8>) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if signed {
        let (headers, _) = Secret::new(TEST_CLUSTER_SECRET).signed_headers("POST", path, 2, body);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
    }
    let req = req.body(Body::from(body.to_vec())).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// What must hold of a node after any message.
fn sane(state: &AppState) -> Result<(), String> {
    let s = state.replication.status(&state.cluster, &state.store);
    let c = s.config;
    if c.w < 1 || c.w > c.n || c.r < 1 || c.r > c.n {
        return Err(format!("W/R out of range: {c:?}"));
    }
    let d = c.delay_profile;
    if d.send_ms.max(d.ack_ms).max(d.remote_read_ms) > MAX_DELAY_MS {
        return Err(format!("delay over the cap: {d:?}"));
    }
    if let Some(lf) = &s.leader_follower {
        if lf.term > MAX_TERM {
            return Err(format!("term {} over the limit", lf.term));
        }
    }
    let limit = match &s.leaderless {
        Some(ll) => {
            let allowed = now_ms() + state.config.max_clock_offset_ms + 1_000;
            if ll.clock_ms > allowed {
                return Err(format!(
                    "clock absorbed: {} ms ahead",
                    ll.clock_ms - now_ms()
                ));
            }
            kv_node::leaderless::hlc::Stamp {
                physical: allowed - kv_node::leaderless::hlc::EPOCH_UNIX_MS,
                logical: u64::MAX,
                node: u64::MAX,
            }
            .pack()
        }
        None => MAX_VERSION,
    };
    for r in state.store.records() {
        if r.version > limit {
            return Err(format!("{} stored at version {}", r.key, r.version));
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

#[test]
fn mutated_messages_never_crash_a_node_or_corrupt_its_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let nodes = nodes();
    let seeds = seeds();
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), mutation()), 0..4),
    );
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let started = std::time::Instant::now();
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u64>::new());
    runner
        .run(&strategy, |(seed, mutations)| {
            let (path, mut body, signed) = seeds[seed].clone();
            for (at, m) in &mutations {
                let mut at = at % size(&body);
                apply(&mut body, &mut at, m);
            }
            let bytes = serde_json::to_vec(&body).unwrap();
            for node in &nodes {
                let (status, answer) = rt.block_on(send(node, path, &bytes, signed));
                *statuses.borrow_mut().entry(status.as_u16()).or_default() += 1;
                // 503: no leader (the peers of these nodes never answer).
                if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                    return Err(TestCaseError::fail(format!(
                        "{path} answered {status} to {body}"
                    )));
                }
                if serde_json::from_slice::<Value>(&answer).is_err() {
                    return Err(TestCaseError::fail(format!(
                        "{path}: a non-JSON answer to {body}"
                    )));
                }
                sane(node).map_err(|e| TestCaseError::fail(format!("{path} {body}: {e}")))?;
            }
            Ok(())
        })
        .unwrap();
    println!(
        "{} cases x {} nodes in {:?}; statuses {:?}",
        cases(),
        nodes.len(),
        started.elapsed(),
        statuses.borrow()
    );
}

#[test]
fn arbitrary_bytes_never_crash_a_node() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let nodes = nodes();
    let paths: Vec<&str> = seeds().iter().map(|s| s.0).collect();
    let strategy = (
        0..paths.len(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            // Near-JSON: printable text with brackets and quotes.
            "[\\[\\]{}\":,0-9a-z \\\\-]{0,200}".prop_map(String::into_bytes),
        ],
        any::<bool>(),
    );
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&strategy, |(p, bytes, signed)| {
            for node in &nodes {
                let (status, answer) = rt.block_on(send(node, paths[p], &bytes, signed));
                prop_assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{} answered {status}",
                    paths[p]
                );
                prop_assert!(serde_json::from_slice::<Value>(&answer).is_ok());
            }
            Ok(())
        })
        .unwrap();
}
