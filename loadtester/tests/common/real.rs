//! Helpers for tests on real `kv-node` processes: the binary, cluster
//! specs, bounded polling, direct writes and reads.

use kv_loadtester::cluster::{default_node_bin, ClusterKind, ClusterSpec};
use kv_shared::cluster::StatusResponse;
use kv_shared::{GetResponse, SetRequest, SetResponse, Version};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `kv-node` the workspace build put next to the test executable.
///
/// # Panics
/// When it is missing, with the command that builds it.
pub fn node_bin() -> PathBuf {
    let bin = default_node_bin();
    assert!(
        bin.is_file(),
        "kv-node not found at {}: build it first (cargo build -p kv-node)",
        bin.display()
    );
    bin
}

/// `n` nodes of `kind`, no delay profile, output discarded, no extra flags.
pub fn spec(kind: ClusterKind, n: u32) -> ClusterSpec {
    ClusterSpec {
        kind,
        n,
        delay_profile: false,
        node_bin: node_bin(),
        log_dir: None,
        extra_args: Vec::new(),
        env: Vec::new(),
    }
}

/// Calls `probe` every 20 ms until it returns `Some`, for at most `limit`
/// (and so at most `limit / 20 ms + 1` times).
///
/// # Panics
/// When `limit` passes first, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let poll = Duration::from_millis(20);
    for _ in 0..=limit.as_millis() / poll.as_millis() {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// A client without proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `GET {url}/status`, `None` when the node does not answer within 300 ms.
pub async fn status(client: &reqwest::Client, url: &str) -> Option<StatusResponse> {
    client
        .get(format!("{url}/status"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `POST {url}/set`; the acknowledged version, or `None` for any failure.
pub async fn set(client: &reqwest::Client, url: &str, key: &str, value: &str) -> Option<Version> {
    let r = client
        .post(format!("{url}/set"))
        .json(&SetRequest {
            key: key.into(),
            value: value.into(),
        })
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    Some(r.json::<SetResponse>().await.ok()?.version)
}

/// What one read answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// 200 with this version.
    Found(Version),
    /// Another HTTP status, with the body's `error` (or text).
    Status(u16, String),
    /// No answer.
    NoAnswer,
}

/// `GET {url}{path}?key=K` with a 2 s timeout.
pub async fn read(client: &reqwest::Client, url: &str, path: &str, key: &str) -> Read {
    let res = client
        .get(format!("{url}{path}"))
        .query(&[("key", key)])
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    match res {
        Ok(r) if r.status().is_success() => match r.json::<GetResponse>().await {
            Ok(g) => Read::Found(g.version),
            Err(_) => Read::NoAnswer,
        },
        Ok(r) => {
            let code = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let message =
                serde_json::from_str::<kv_shared::ErrorBody>(&text).map_or(text, |b| b.error);
            Read::Status(code, message)
        }
        Err(_) => Read::NoAnswer,
    }
}
