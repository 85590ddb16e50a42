//! The workload: what to send, how to send it, and how to check the result.
//!
//! [`Workload`] has four steps, called by the [`crate::runner`]:
//! 1. `prepare`: once, before the clock starts (here: every node's `/health`);
//! 2. `generate`: the next operation, from one seeded RNG under a lock, so
//!    the same seed gives the same sequence of operations (kind, key, target
//!    node, value) whatever the timing; only the interleaving differs;
//! 3. `execute`: sends one operation and measures it into a [`Sample`];
//! 4. `verify`: once, after the last answer: reads back every key's last
//!    acknowledged write.
//!
//! [`KvWorkload`] is the key-value workload: `POST /set` and `GET /get` (or
//! `/local_read`) with keys from [`crate::keys`], routed by
//! [`crate::targets`], reads judged by the [`crate::stale`] tracker.

use crate::cli::{KeyDist, ReadEndpoint, RunArgs};
use crate::error::{Error, Result};
use crate::keys::{key_name, KeyGenerator, LocalInTime, Uniform, Zipfian};
use crate::stale::{judge, Acked, ReadAnswer, StaleTracker};
use crate::targets::Targets;
use kv_shared::{GetResponse, NodeId, SetRequest, SetResponse, Version};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `GET /get` or `/local_read`.
    Read,
    /// `POST /set`.
    Write,
}

/// One operation to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the generated sequence, from 0.
    pub seq: u64,
    /// Read or write.
    pub kind: OpKind,
    /// Key index (see [`key_name`]).
    pub key: u64,
    /// Index of the target node in [`Targets::nodes`].
    pub node: usize,
    /// The value to write (empty for reads).
    pub value: String,
}

/// The measurement of one request: one row of `samples.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Position in the generated sequence.
    pub seq: u64,
    /// Read or write.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// Who answered: `node ID` (from `served_by` or `/status`) or the URL.
    pub node: String,
    /// Intended send time, µs after the start of the run.
    pub intended_us: u64,
    /// Wait between the intended and the actual send (open loop: client backlog), µs.
    pub queue_us: u64,
    /// Latency from the intended send time to the complete answer, µs
    /// (coordinated-omission corrected; equals `service_us` in closed loop).
    pub latency_us: u64,
    /// Latency from the actual send to the complete answer, µs.
    pub service_us: u64,
    /// `ok`, `not_found`, `http_STATUS`, `timeout`, `connect`, `decode` or `transport`.
    pub outcome: String,
    /// The version written or read.
    pub version: Option<Version>,
    /// Reads: highest version acknowledged before the read was sent.
    pub known_version: Option<Version>,
    /// Reads: whether the read was stale.
    pub stale: bool,
    /// Reads: time since the previous write of this key was acknowledged, µs
    /// (first read after each write only).
    pub since_write_us: Option<u64>,
    /// Failed requests: the error message (the JSON body's `error`, or the transport error).
    pub error: Option<String>,
}

impl Sample {
    /// Whether the request failed (anything but `ok` or a read's `not_found`).
    pub fn is_error(&self) -> bool {
        !(self.outcome == "ok" || self.outcome == "not_found")
    }
}

/// The result of the final read-back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Where the values were read: `leader` or `every node (max version)`.
    pub source: String,
    /// Keys with an acknowledged write.
    pub keys: u64,
    /// Keys whose read-back version is at least the acknowledged one.
    pub ok: u64,
    /// Keys whose read-back version is older than the acknowledged one, or missing.
    pub lost: u64,
    /// Keys read back at the acknowledged version but with another value
    /// (leaderless: a concurrent write with an equal version won).
    pub value_mismatch: u64,
    /// Keys no source answered for.
    pub unreachable: u64,
    /// A few of the failing keys, with what was expected and found.
    pub examples: Vec<String>,
}

/// A load workload (see the module docs for the four steps).
pub trait Workload: Send + Sync + 'static {
    /// Checks the targets before the run.
    fn prepare(&self) -> impl Future<Output = Result<()>> + Send;
    /// The next operation of the seeded sequence.
    fn generate(&self) -> Op;
    /// Sends `op` and measures it; latency counts from `intended`.
    fn execute(&self, op: Op, intended: Instant) -> impl Future<Output = Sample> + Send;
    /// Reads back what was written.
    fn verify(&self) -> impl Future<Output = Result<Verification>> + Send;
}

/// The seeded state of [`KvWorkload::generate`].
struct Generator {
    rng: ChaCha8Rng,
    keys: Box<dyn KeyGenerator>,
    seq: u64,
}

/// The key-value workload.
pub struct KvWorkload {
    client: reqwest::Client,
    targets: Targets,
    write_ratio: f64,
    value_size: usize,
    seed: u64,
    key_prefix: String,
    read_endpoint: ReadEndpoint,
    timeout: Duration,
    gen: Mutex<Generator>,
    tracker: StaleTracker,
}

impl KvWorkload {
    /// The workload the flags describe, over `targets`.
    ///
    /// # Errors
    /// An invalid key distribution (zipf theta outside (0, 1)).
    pub fn new(client: reqwest::Client, targets: Targets, args: &RunArgs) -> Result<Self> {
        let w = &args.workload;
        let keys: Box<dyn KeyGenerator> = match w.key_dist {
            KeyDist::Local => Box::new(LocalInTime::new(
                w.keys,
                w.hot_keys,
                w.window_step,
                w.hot_fraction,
            )),
            KeyDist::Uniform => Box::new(Uniform::new(w.keys)),
            KeyDist::Zipfian => {
                Box::new(Zipfian::new(w.keys, w.zipf_theta).map_err(Error::Config)?)
            }
        };
        Ok(Self {
            client,
            targets,
            write_ratio: args.write_ratio,
            value_size: w.value_size,
            seed: w.seed,
            key_prefix: w.key_prefix.clone(),
            read_endpoint: w.read_endpoint,
            timeout: Duration::from_millis(w.timeout_ms.max(1)),
            gen: Mutex::new(Generator {
                rng: ChaCha8Rng::seed_from_u64(w.seed),
                keys,
                seq: 0,
            }),
            tracker: StaleTracker::new(),
        })
    }

    /// The nodes and routing.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The value of the write at position `seq`: unique per seed and
    /// position, padded to `--value-size` bytes.
    fn value(&self, seq: u64) -> String {
        let mut v = format!("s{}-{seq}-", self.seed);
        let pad = self.value_size.saturating_sub(v.len());
        v.extend(std::iter::repeat_n('x', pad));
        v
    }

    async fn write(
        &self,
        op: &Op,
        url: &str,
        error: &mut Option<String>,
    ) -> (String, Option<Version>, Option<NodeId>) {
        let body = SetRequest {
            key: key_name(&self.key_prefix, op.key),
            value: op.value.clone(),
        };
        let res = self
            .client
            .post(format!("{url}/set"))
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => match r.json::<SetResponse>().await {
                Ok(set) => {
                    self.tracker.write_acked(
                        op.key,
                        set.version,
                        &op.value,
                        Instant::now().into_std(),
                    );
                    ("ok".into(), Some(set.version), set.served_by)
                }
                Err(e) => failed(&e, error),
            },
            Ok(r) => (http_error(r, error).await, None, None),
            Err(e) => failed(&e, error),
        }
    }

    async fn read(
        &self,
        op: &Op,
        url: &str,
        error: &mut Option<String>,
    ) -> (String, Option<ReadAnswer>, Option<NodeId>) {
        let key = key_name(&self.key_prefix, op.key);
        let res = self
            .client
            .get(format!("{url}{}", self.read_endpoint.path()))
            .query(&[("key", &key)])
            .timeout(self.timeout)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => match r.json::<GetResponse>().await {
                Ok(get) => (
                    "ok".into(),
                    Some(ReadAnswer::Found(get.version)),
                    get.served_by,
                ),
                Err(e) => failed(&e, error),
            },
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                // Drain the body so that the connection is reused.
                let _ = r.bytes().await;
                ("not_found".into(), Some(ReadAnswer::NotFound), None)
            }
            Ok(r) => (http_error(r, error).await, None, None),
            Err(e) => failed(&e, error),
        }
    }
}

/// The highest version (and its value) of `key` among the `/local_read`
/// answers of `urls`: `None` when no URL answered, `Some(None)` when every
/// answer was 404.
async fn read_back(
    client: reqwest::Client,
    urls: Arc<Vec<String>>,
    key: String,
    timeout: Duration,
) -> Option<Option<(Version, String)>> {
    let mut best: Option<(Version, String)> = None;
    let mut answered = false;
    for url in urls.iter() {
        let res = client
            .get(format!("{url}/local_read"))
            .query(&[("key", &key)])
            .timeout(timeout)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                if let Ok(g) = r.json::<GetResponse>().await {
                    answered = true;
                    if best.as_ref().is_none_or(|b| g.version > b.0) {
                        best = Some((g.version, g.value));
                    }
                }
            }
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => answered = true,
            _ => {}
        }
    }
    answered.then_some(best)
}

/// The outcome of a transport error; its message goes to `error`.
fn failed<T>(
    e: &reqwest::Error,
    error: &mut Option<String>,
) -> (String, Option<T>, Option<NodeId>) {
    *error = Some(e.to_string());
    (error_kind(e), None, None)
}

/// The outcome of a non-2xx answer (`http_STATUS`); the `error` of its JSON
/// body (or the start of its text) goes to `error`.
async fn http_error(r: reqwest::Response, error: &mut Option<String>) -> String {
    let outcome = format!("http_{}", r.status().as_u16());
    let text = r.text().await.unwrap_or_default();
    let message = serde_json::from_str::<kv_shared::ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or_else(|_| text.chars().take(200).collect());
    *error = Some(message);
    outcome
}

/// The `outcome` name of a transport error.
fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_decode() || e.is_body() {
        "decode"
    } else {
        "transport"
    }
    .into()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Workload for KvWorkload {
    async fn prepare(&self) -> Result<()> {
        let mut down = Vec::new();
        for n in &self.targets.nodes {
            let ok = self
                .client
                .get(format!("{}/health", n.url))
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                down.push(n.url.clone());
            }
        }
        if down.len() == self.targets.nodes.len() {
            return Err(Error::Discovery(format!(
                "no node answers /health: {}",
                down.join(", ")
            )));
        }
        for url in down {
            eprintln!("warning: {url} does not answer /health; its requests will count as errors");
        }
        Ok(())
    }

    fn generate(&self) -> Op {
        let mut g = self.gen.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let seq = g.seq;
        g.seq += 1;
        let kind = if g.rng.random_bool(self.write_ratio) {
            OpKind::Write
        } else {
            OpKind::Read
        };
        let key = g.keys.next_key(&mut g.rng);
        let (node, value) = match kind {
            OpKind::Write => (self.targets.pick_write(&mut g.rng), self.value(seq)),
            OpKind::Read => (self.targets.pick_read(&mut g.rng), String::new()),
        };
        Op {
            seq,
            kind,
            key,
            node,
            value,
        }
    }

    async fn execute(&self, op: Op, intended: Instant) -> Sample {
        let url = self.targets.nodes[op.node].url.clone();
        let sent = Instant::now();
        let mut sample = Sample {
            seq: op.seq,
            kind: op.kind,
            key: key_name(&self.key_prefix, op.key),
            node: String::new(),
            intended_us: 0,
            queue_us: micros(sent.saturating_duration_since(intended)),
            latency_us: 0,
            service_us: 0,
            outcome: String::new(),
            version: None,
            known_version: None,
            stale: false,
            since_write_us: None,
            error: None,
        };
        let served_by = match op.kind {
            OpKind::Write => {
                let (outcome, version, served_by) = self.write(&op, &url, &mut sample.error).await;
                (sample.outcome, sample.version) = (outcome, version);
                served_by
            }
            OpKind::Read => {
                let ticket = self.tracker.begin_read(op.key, sent.into_std());
                let (outcome, answer, served_by) = self.read(&op, &url, &mut sample.error).await;
                sample.outcome = outcome;
                sample.known_version = Some(ticket.known);
                sample.since_write_us = ticket.since_write.map(micros);
                if let Some(answer) = answer {
                    if let ReadAnswer::Found(v) = answer {
                        sample.version = Some(v);
                    }
                    sample.stale = judge(ticket, answer).is_stale();
                }
                served_by
            }
        };
        let done = Instant::now();
        sample.latency_us = micros(done.saturating_duration_since(intended));
        sample.service_us = micros(done.saturating_duration_since(sent));
        sample.node = self.targets.label(served_by, op.node);
        sample
    }

    async fn verify(&self) -> Result<Verification> {
        let acked = self.tracker.acked();
        let (source, sources): (&str, Vec<usize>) = match self.targets.leader {
            Some(l) if self.targets.mode == crate::cli::ModeArg::Leader => ("leader", vec![l]),
            _ => (
                "every node (highest version)",
                (0..self.targets.nodes.len()).collect(),
            ),
        };
        let urls: Arc<Vec<String>> = Arc::new(
            sources
                .iter()
                .map(|i| self.targets.nodes[*i].url.clone())
                .collect(),
        );
        let limit = Arc::new(Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for a in acked.iter().cloned() {
            let (client, urls, limit) = (self.client.clone(), urls.clone(), limit.clone());
            let (key, timeout) = (key_name(&self.key_prefix, a.key), self.timeout);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let found = read_back(client, urls, key, timeout).await;
                (a, found)
            });
        }
        let mut v = Verification {
            source: source.into(),
            keys: acked.len() as u64,
            ..Default::default()
        };
        while let Some(joined) = tasks.join_next().await {
            let (a, found) =
                joined.map_err(|e| Error::Config(format!("verification task: {e}")))?;
            classify(&mut v, &self.key_prefix, &a, found);
        }
        v.examples.sort();
        v.examples.truncate(10);
        Ok(v)
    }
}

/// Counts one read-back result into `v`.
fn classify(
    v: &mut Verification,
    prefix: &str,
    a: &Acked,
    found: Option<Option<(Version, String)>>,
) {
    let key = key_name(prefix, a.key);
    match found {
        None => {
            v.unreachable += 1;
            v.examples.push(format!("{key}: no source answered"));
        }
        Some(None) => {
            v.lost += 1;
            v.examples
                .push(format!("{key}: acknowledged v{}, found nothing", a.version));
        }
        Some(Some((ver, _))) if ver < a.version => {
            v.lost += 1;
            v.examples
                .push(format!("{key}: acknowledged v{}, found v{ver}", a.version));
        }
        Some(Some((ver, val))) if ver == a.version && val != a.value => {
            v.value_mismatch += 1;
            v.examples
                .push(format!("{key}: v{ver} holds another value"));
        }
        Some(Some(_)) => v.ok += 1,
    }
}
