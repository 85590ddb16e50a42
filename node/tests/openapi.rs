//! `GET /openapi.json` describes what the node really answers: schemathesis
//! (a property-based API tester) runs against real nodes on 127.0.0.1 with
//! every response check, and the document names every client route.
//!
//! schemathesis is installed by `scripts/setup.sh --tests` into
//! `~/.cache/kv-store/schemathesis-venv`. Its run is reproducible: a fixed
//! seed, bounded examples per operation, one worker, no example database.
//! `/events` is left out of the runs (the stream never ends, so a request
//! to it would only time out), and so are the faults that stop the node
//! (see `openapi_hooks.py` beside this file).

mod common;

use common::{Cluster, TestNode};
use kv_node::config::ModeArg;
use kv_node::Config;
use kv_shared::admin::{FAULTS_PATH, MAX_FAULT_MS, MAX_SKEW_MS};
use kv_shared::events::EVENTS_PATH;
use kv_shared::limits::{MAX_DELAY_MS, MAX_KEY_BYTES};
use kv_shared::{
    CONFIG_PATH, GET_KEY_ROUTE, GET_PATH, HEALTH_PATH, LOCAL_READ_KEY_ROUTE, LOCAL_READ_PATH,
    METRICS_PATH, OPENAPI_PATH, SET_PATH, STATUS_PATH,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The admin token of the nodes under test, sent by schemathesis on every request.
const TOKEN: &str = "openapi-test-admin-token";

/// The seed of every run: a failure reproduces with the same cases.
const SEED: &str = "20261202";

/// Cases per operation and phase: enough to reach every documented status,
/// few enough that a run takes seconds.
const MAX_EXAMPLES: &str = "50";

/// A run that takes longer is killed and fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The checks of every run: no 5xx; every status, content type, header and
/// body as the document says.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Every operation the client router serves: (method, path as in the document).
const CLIENT_OPERATIONS: &[(&str, &str)] = &[
    ("post", SET_PATH),
    ("get", GET_PATH),
    ("get", GET_KEY_ROUTE),
    ("get", LOCAL_READ_PATH),
    ("get", LOCAL_READ_KEY_ROUTE),
    ("get", HEALTH_PATH),
    ("get", STATUS_PATH),
    ("get", CONFIG_PATH),
    ("post", CONFIG_PATH),
    ("get", EVENTS_PATH),
    ("get", FAULTS_PATH),
    ("post", FAULTS_PATH),
    ("get", METRICS_PATH),
    ("get", OPENAPI_PATH),
];

/// The schemathesis executable, or a failure that says how to install it.
fn schemathesis() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let st = PathBuf::from(home).join(".cache/kv-store/schemathesis-venv/bin/st");
    assert!(
        st.is_file(),
        "schemathesis is not installed at {}: run scripts/setup.sh --tests",
        st.display()
    );
    st
}

/// Runs schemathesis against the document `base` serves, with `extra`
/// arguments; fails the test (printing its report) unless it exits 0 within
/// [`RUN_LIMIT`]. Returns how long it ran.
async fn run_schemathesis(base: &str, extra: &[&str]) -> Duration {
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi_hooks.py");
    let workdir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    std::fs::create_dir_all(&workdir).unwrap();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let schema = format!("{base}{}", OPENAPI_PATH);
    let mut args = vec![
        "run",
        schema.as_str(),
        "--checks",
        CHECKS,
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--header",
        auth.as_str(),
        "--exclude-path",
        EVENTS_PATH,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let child = tokio::process::Command::new(schemathesis())
        .args(&args)
        .env("SCHEMATHESIS_HOOKS", hooks)
        .current_dir(&workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis starts");
    // On time-out the future is dropped, and with it the child: killed.
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran over {RUN_LIMIT:?} and was killed"))
        .expect("schemathesis runs");
    let took = started.elapsed();
    let report = format!(
        "st {}\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{report}",
        output.status
    );
    println!("schemathesis passed in {took:?}:\n{report}");
    took
}

/// A standalone node with the admin token of the runs.
fn standalone_config() -> Config {
    let mut c = Config::for_tests(1);
    c.admin_token = Some(TOKEN.into());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_of_a_standalone_node_documented() {
    // Every operation, POST /admin/faults and POST /config (with the admin token) included.
    let node = TestNode::start(standalone_config()).await;
    run_schemathesis(&node.url, &[]).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_of_a_leaderless_node_documented() {
    // A leaderless node of its own takes clock skews (400 in other modes).
    // Before the document stated the skew's range, this run sent a skew of
    // i64::MIN, which overflowed the range check and panicked the handler
    // (a unit test in `faults.rs` keeps that case).
    let mut config = standalone_config();
    config.mode = ModeArg::Leaderless;
    let node = TestNode::start(config).await;
    run_schemathesis(&node.url, &[]).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_every_answer_of_a_leader_follower_cluster_documented() {
    // Against a follower, so that writes and configuration reads go through
    // forwarding and coordinated reads. Faults and configuration changes are
    // left out: a fault that cuts or delays a peer, or a delay profile of
    // seconds, makes writes miss W, and the documented 503 is then the right
    // answer, but not one this check may see.
    let cluster = Cluster::start(3, 2, 2, |c| c.admin_token = Some(TOKEN.into())).await;
    let follower = cluster.url(2);
    run_schemathesis(
        &follower,
        &[
            "--exclude-operation-id",
            "post_faults",
            "--exclude-operation-id",
            "post_config",
        ],
    )
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn the_document_names_every_client_route_and_every_error_is_an_error_body() {
    let node = TestNode::start(Config::for_tests(1)).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}{}", node.url, OPENAPI_PATH))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().unwrap();
            ["get", "post", "put", "delete", "patch"]
                .into_iter()
                .filter(|m| item.contains_key(*m))
                .map(|m| (m.to_owned(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = CLIENT_OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served, "documented operations vs client routes");

    for (method, path) in &served {
        let op = &doc["paths"][path.as_str()][method.as_str()];
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents a success"
        );
        assert!(
            responses.contains_key("403"),
            "{method} {path} documents the Host policy's 403"
        );
        for (status, response) in responses {
            if status.as_str() < "400" {
                continue;
            }
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} answers {status} with an ErrorBody"
            );
        }
    }
    // The limits the schemas state are the node's.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["SetRequest"]["properties"]["key"]["maxLength"],
        MAX_KEY_BYTES
    );
    for field in ["send_ms", "ack_ms", "remote_read_ms"] {
        assert_eq!(
            schemas["DelayProfile"]["properties"][field]["maximum"],
            MAX_DELAY_MS
        );
    }
    let faults = schemas["FaultRequest"]["oneOf"].as_array().unwrap();
    let variant = |kind: &str| {
        faults
            .iter()
            .find(|v| v["properties"]["kind"]["enum"][0] == kind)
            .unwrap_or_else(|| panic!("FaultRequest has `{kind}`"))
    };
    assert_eq!(
        variant("pause")["properties"]["duration_ms"]["maximum"],
        MAX_FAULT_MS
    );
    assert_eq!(
        variant("delay")["properties"]["ms"]["maximum"],
        MAX_FAULT_MS
    );
    assert_eq!(variant("skew")["properties"]["ms"]["maximum"], MAX_SKEW_MS);
    assert_eq!(variant("skew")["properties"]["ms"]["minimum"], -MAX_SKEW_MS);

    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&Value::from("http"), &Value::from("bearer"))
    );
    for method in ["get", "post"] {
        assert_eq!(
            doc["paths"][FAULTS_PATH][method]["security"][0]["admin_token"],
            Value::Array(vec![]),
            "{method} {FAULTS_PATH} needs the admin token"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    // The list above is the router's: no operation of it falls through to
    // the dashboard's 404 or to the 405 of another method.
    let node = TestNode::start(standalone_config()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let set = client
        .post(format!("{}{SET_PATH}", node.url))
        .json(&serde_json::json!({"key": "k", "value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 201);
    for (method, path) in CLIENT_OPERATIONS {
        let url = format!("{}{}", node.url, path.replace("{key}", "k"));
        let url = if [GET_PATH, LOCAL_READ_PATH].contains(path) {
            format!("{url}?key=k")
        } else {
            url
        };
        let req = match *method {
            "get" => client.get(&url),
            _ => client.post(&url),
        };
        // Headers only: `/events` streams without end.
        let status = req.send().await.unwrap().status();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answers {status}"
        );
    }
    node.stop().await;
}
