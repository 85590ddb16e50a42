//! The phase-1 API of a single node, over real HTTP on 127.0.0.1.

mod common;

use common::TestNode;
use kv_node::Config;
use kv_shared::limits::{MAX_BODY_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use kv_shared::{ErrorBody, GetResponse, HealthResponse, Mode, Role, SetResponse, WriteStatus};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

async fn node() -> (TestNode, Client) {
    (TestNode::start(Config::for_tests(7)).await, Client::new())
}

async fn set(c: &Client, url: &str, key: &str, value: &str) -> reqwest::Response {
    c.post(format!("{url}/set"))
        .json(&json!({"key": key, "value": value}))
        .send()
        .await
        .unwrap()
}

/// Asserts the response has `status` and a JSON `{"error": ...}` body; returns the message.
async fn expect_error(resp: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status, "status of {}", resp.url());
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: ErrorBody = resp.json().await.unwrap();
    assert!(!body.error.is_empty());
    body.error
}

#[tokio::test]
async fn set_creates_then_updates_with_versions_one_and_two() {
    let (n, c) = node().await;
    let r = set(&c, &n.url, "mykey", "myvalue").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["key"], "mykey");
    assert_eq!(v["value"], "myvalue");
    assert_eq!(v["version"], 1);
    assert_eq!(v["status"], "created");

    let r: SetResponse = set(&c, &n.url, "mykey", "other")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((r.version, r.status), (2, WriteStatus::Updated));
    n.stop().await;
}

#[tokio::test]
async fn empty_value_is_stored() {
    let (n, c) = node().await;
    assert_eq!(set(&c, &n.url, "k", "").await.status(), StatusCode::CREATED);
    let g: GetResponse = c
        .get(format!("{}/get?key=k", n.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((g.value.as_str(), g.version), ("", 1));
}

#[tokio::test]
async fn get_and_local_read_answer_in_query_and_path_form() {
    let (n, c) = node().await;
    set(&c, &n.url, "a b/c", "v1").await;
    set(&c, &n.url, "plain", "v2").await;
    for path in [
        "/get?key=a%20b%2Fc",
        "/local_read?key=a%20b%2Fc",
        "/get/plain",
        "/local_read/plain",
    ] {
        let r = c.get(format!("{}{path}", n.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let g: GetResponse = r.json().await.unwrap();
        assert_eq!(g.version, 1, "{path}");
        assert_eq!(g.served_by, Some(7));
        assert!(g.value == "v1" || g.value == "v2");
    }
}

#[tokio::test]
async fn unknown_key_is_404_in_json() {
    let (n, c) = node().await;
    for path in [
        "/get?key=nope",
        "/get/nope",
        "/local_read?key=nope",
        "/local_read/nope",
    ] {
        let r = c.get(format!("{}{path}", n.url)).send().await.unwrap();
        let msg = expect_error(r, StatusCode::NOT_FOUND).await;
        assert!(msg.contains("nope"), "{msg}");
    }
}

#[tokio::test]
async fn health_reports_time_id_mode_and_role() {
    let (n, c) = node().await;
    set(&c, &n.url, "k", "v").await;
    let h: HealthResponse = c
        .get(format!("{}/health", n.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h.status, "healthy");
    assert_eq!(
        (h.node_id, h.mode, h.role, h.keys, h.ready),
        (7, Mode::Standalone, Role::Standalone, 1, true)
    );
    chrono::DateTime::parse_from_rfc3339(&h.time).expect("RFC 3339 time");
}

#[tokio::test]
async fn malformed_input_is_400() {
    let (n, c) = node().await;
    let post = |body: &'static str| {
        c.post(format!("{}/set", n.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        "{not json",
        "",
        "[]",
        r#"{"value":"v"}"#,
        r#"{"key":"","value":"v"}"#,
        r#"{"key":1,"value":"v"}"#,
        r#"{"key":"k"}"#,
    ] {
        expect_error(post(body).await.unwrap(), StatusCode::BAD_REQUEST).await;
    }
    let r = c.get(format!("{}/get", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    let r = c.get(format!("{}/get?key=", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;
    // Nothing was stored by any of the refused writes.
    let h: HealthResponse = c
        .get(format!("{}/health", n.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h.keys, 0);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (n, c) = node().await;
    for ct in [None, Some("text/plain")] {
        let mut req = c
            .post(format!("{}/set", n.url))
            .body(r#"{"key":"k","value":"v"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let msg = expect_error(
            req.send().await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .await;
        assert!(msg.contains("application/json"), "{msg}");
    }
}

#[tokio::test]
async fn limits_are_enforced_with_clear_errors() {
    let (n, c) = node().await;
    let long_key = "k".repeat(MAX_KEY_BYTES as usize + 1);
    let msg = expect_error(
        set(&c, &n.url, &long_key, "v").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("limit"), "{msg}");
    let r = c
        .get(format!("{}/get/{long_key}", n.url))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST).await;

    let long_value = "v".repeat(MAX_VALUE_BYTES as usize + 1);
    let msg = expect_error(
        set(&c, &n.url, "k", &long_value).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(msg.contains("limit"), "{msg}");

    let huge = format!(
        r#"{{"key":"k","value":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES as usize + 1)
    );
    let r = c
        .post(format!("{}/set", n.url))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::PAYLOAD_TOO_LARGE).await;

    // The longest accepted key and value still work.
    let key = "k".repeat(MAX_KEY_BYTES as usize);
    let value = "v".repeat(MAX_VALUE_BYTES as usize);
    assert_eq!(
        set(&c, &n.url, &key, &value).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405_in_json() {
    let (n, c) = node().await;
    let r = c.get(format!("{}/nowhere", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = c.post(format!("{}/nowhere", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND).await;
    let r = c.get(format!("{}/set", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = c.post(format!("{}/get", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = c.delete(format!("{}/health", n.url)).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn root_serves_the_ui_or_says_it_is_not_built() {
    let (n, c) = node().await;
    let r = c.get(format!("{}/", n.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = r.text().await.unwrap();
    if kv_node::ui::is_built() {
        assert!(
            body.contains(".wasm") || body.contains("kv_web_ui"),
            "{body}"
        );
    } else {
        assert!(body.contains("not been built"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_key_get_versions_one_to_n() {
    let (n, c) = node().await;
    let (writers, each) = (16, 25);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (c, url) = (c.clone(), n.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..each {
                let r: SetResponse = set(&c, &url, "hot", &format!("{w}-{i}"))
                    .await
                    .json()
                    .await
                    .unwrap();
                versions.push(r.version);
            }
            versions
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=writers * each).collect();
    assert_eq!(
        all, expected,
        "versions must be 1..=n, no gap, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_many_keys_lose_nothing() {
    let (n, c) = node().await;
    let (writers, keys_each) = (8u32, 40u32);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (c, url) = (c.clone(), n.url.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..keys_each {
                for round in 0..2 {
                    let r = set(&c, &url, &format!("w{w}-k{k}"), &format!("r{round}")).await;
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = HashSet::new();
    for w in 0..writers {
        for k in 0..keys_each {
            let key = format!("w{w}-k{k}");
            let g: GetResponse = c
                .get(format!("{}/get", n.url))
                .query(&[("key", &key)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!((g.value.as_str(), g.version), ("r1", 2), "{key}");
            seen.insert(key);
        }
    }
    assert_eq!(seen.len() as u32, writers * keys_each);
}
