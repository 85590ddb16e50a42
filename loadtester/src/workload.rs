//! The workload: what to send, how to send it, and how to check the result.
//!
//! [`Workload`] has four steps, called by the [`crate::runner`]:
//! 1. `prepare`: once, before the clock starts (here: every node's `/health`);
//! 2. `generate`: the next operation, from one seeded RNG under a lock, so
//!    the same seed gives the same sequence of operations (kind, key, target
//!    node, value) whatever the timing; only the interleaving differs;
//! 3. `execute`: sends one operation and measures it into a [`Sample`];
//! 4. `verify`: once, after the last answer: reads back every key's last
//!    acknowledged write from every node ([`crate::verify`]).
//!
//! [`KvWorkload`] is the key-value workload: `POST /set` and `GET /get` (or
//! `/local_read`) with keys from [`crate::keys`], routed by
//! [`crate::targets`] (which follows the leader when it changes: every
//! write's answer is reported back to it), reads judged by the
//! [`crate::stale`] tracker.

use crate::cli::{KeyDist, RunArgs, WorkloadArgs};
use crate::error::{Error, Result};
use crate::keys::{key_name, KeyGenerator, LocalInTime, Uniform, Zipfian};
use crate::stale::{judge, Acked, ReadAnswer, StaleTracker};
use crate::targets::{Targets, WriteFeedback};
use kv_shared::{ErrorBody, GetResponse, NodeId, Version};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub use crate::verify::Verification;

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
    /// Index of the target node in [`Targets::nodes`] as the seeded
    /// sequence chose it; [`Targets::write_node`] / [`Targets::read_node`]
    /// route it to the current leader when it has changed.
    pub node: usize,
    /// The value to write (empty for reads).
    pub value: String,
    /// The client session that sends it (set by the pacing loop: the
    /// client in closed loop, a session of its own per request in open loop).
    pub session: u32,
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
    /// The client session ([`Op::session`]).
    pub session: u32,
    /// The node that answered (`served_by`), else the node asked, when its id is known.
    pub node_id: Option<NodeId>,
    /// Writes: the value written; reads that found the key: the value read.
    /// Kept for the history (`history.jsonl`), not in `samples.csv`.
    #[serde(skip)]
    pub value: Option<String>,
}

impl Sample {
    /// Whether the request failed (anything but `ok` or a read's `not_found`).
    pub fn is_error(&self) -> bool {
        !(self.outcome == "ok" || self.outcome == "not_found")
    }
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

/// The URLs a node's requests go to, parsed once (the hot path clones them).
struct Endpoints {
    /// `POST /set`.
    set: reqwest::Url,
    /// `GET /get` or `/local_read`, without the query.
    read: reqwest::Url,
}

/// The body of `POST /set`, borrowing the key and value (the same JSON as
/// [`kv_shared::SetRequest`]).
#[derive(Serialize)]
struct SetBody<'a> {
    key: &'a str,
    value: &'a str,
}

/// What the workload needs of a 201 to `POST /set` ([`kv_shared::SetResponse`]
/// without the key and value it echoes, which are skipped unread).
#[derive(Deserialize)]
struct SetAnswer {
    version: Version,
    #[serde(default)]
    served_by: Option<NodeId>,
}

/// The key-value workload.
pub struct KvWorkload {
    client: reqwest::Client,
    targets: Targets,
    /// Per node of `targets.nodes`, by index.
    endpoints: Vec<Endpoints>,
    write_ratio: f64,
    value_size: usize,
    key_prefix: String,
    timeout: Duration,
    gen: Mutex<Generator>,
    tracker: StaleTracker,
    run_tag: String,
}

/// The key generator the flags describe.
///
/// # Errors
/// An invalid key distribution (zipf theta outside (0, 1)).
pub fn key_generator(w: &WorkloadArgs) -> Result<Box<dyn KeyGenerator>> {
    Ok(match w.key_dist {
        KeyDist::Local => Box::new(LocalInTime::new(
            w.keys,
            w.hot_keys,
            w.window_step,
            w.hot_fraction,
        )),
        KeyDist::Uniform => Box::new(Uniform::new(w.keys)),
        KeyDist::Zipfian => Box::new(Zipfian::new(w.keys, w.zipf_theta).map_err(Error::Config)?),
    })
}

impl KvWorkload {
    /// The workload the flags describe, over `targets`.
    ///
    /// # Errors
    /// An invalid key distribution (zipf theta outside (0, 1)).
    pub fn new(client: reqwest::Client, targets: Targets, args: &RunArgs) -> Result<Self> {
        let w = &args.workload;
        let keys = key_generator(w)?;
        let endpoints = targets
            .nodes
            .iter()
            .map(|n| {
                let parse = |path: &str| {
                    reqwest::Url::parse(&format!("{}{path}", n.url))
                        .map_err(|e| Error::Config(format!("node URL {}: {e}", n.url)))
                };
                Ok(Endpoints {
                    set: parse(kv_shared::SET_PATH)?,
                    read: parse(w.read_endpoint.path())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            client,
            targets,
            endpoints,
            write_ratio: args.write_ratio,
            value_size: w.value_size,
            key_prefix: w.key_prefix.clone(),
            timeout: Duration::from_millis(w.timeout_ms.max(1)),
            gen: Mutex::new(Generator {
                rng: ChaCha8Rng::seed_from_u64(w.seed),
                keys,
                seq: 0,
            }),
            tracker: StaleTracker::new(),
            run_tag: format!("s{}-{}-", w.seed, rand::rng().random::<u32>()),
        })
    }

    /// The nodes and routing.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The value of the write at position `seq`: unique per seed and
    /// position, padded to `--value-size` bytes.
    /// The start of every value this run writes: `s<seed>-<run>-`, where
    /// `<run>` is random per run, so values are unique across runs too.
    pub fn run_tag(&self) -> &str {
        &self.run_tag
    }

    fn value(&self, seq: u64) -> String {
        use std::fmt::Write as _;
        let mut v = String::with_capacity(self.value_size.max(self.run_tag.len() + 21));
        let _ = write!(v, "{}{seq}-", self.run_tag);
        let pad = self.value_size.saturating_sub(v.len());
        v.extend(std::iter::repeat_n('x', pad));
        v
    }

    /// Every key's highest acknowledged write so far.
    pub fn acked(&self) -> Vec<Acked> {
        self.tracker.acked()
    }

    /// Sends a write of `key` to node `node`; also returns what its answer
    /// says about the leader.
    async fn write(
        &self,
        op: &Op,
        key: &str,
        node: usize,
        error: &mut Option<String>,
    ) -> (String, Option<Version>, Option<NodeId>, WriteFeedback) {
        let body = serde_json::to_vec(&SetBody {
            key,
            value: &op.value,
        })
        .unwrap_or_default();
        let res = self
            .client
            .post(self.endpoints[node].set.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(self.timeout)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => match r.json::<SetAnswer>().await {
                Ok(set) => {
                    self.tracker.write_acked(
                        op.key,
                        set.version,
                        &op.value,
                        Instant::now().into_std(),
                    );
                    let feedback = WriteFeedback::Acknowledged {
                        served_by: set.served_by,
                    };
                    ("ok".into(), Some(set.version), set.served_by, feedback)
                }
                Err(e) => with_no_answer(failed(&e, error)),
            },
            Ok(r) => {
                let status = r.status().as_u16();
                let (outcome, body) = http_error(r, error).await;
                let leader = body.and_then(|b| b.leader);
                (
                    outcome,
                    None,
                    None,
                    WriteFeedback::Refused { status, leader },
                )
            }
            Err(e) => with_no_answer(failed(&e, error)),
        }
    }

    async fn read(
        &self,
        key: &str,
        node: usize,
        error: &mut Option<String>,
    ) -> (String, Option<ReadAnswer>, Option<NodeId>, Option<String>) {
        let mut url = self.endpoints[node].read.clone();
        url.query_pairs_mut().append_pair("key", key);
        let res = self.client.get(url).timeout(self.timeout).send().await;
        match res {
            Ok(r) if r.status().is_success() => match r.json::<GetResponse>().await {
                Ok(get) => (
                    "ok".into(),
                    Some(ReadAnswer::Found(get.version)),
                    get.served_by,
                    Some(get.value),
                ),
                Err(e) => no_value(failed(&e, error)),
            },
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                // Drain the body so that the connection is reused.
                let _ = r.bytes().await;
                ("not_found".into(), Some(ReadAnswer::NotFound), None, None)
            }
            Ok(r) => (http_error(r, error).await.0, None, None, None),
            Err(e) => no_value(failed(&e, error)),
        }
    }
}

/// A failed write's outcome, with [`WriteFeedback::NoAnswer`].
fn with_no_answer<T>(
    (outcome, v, by): (String, Option<T>, Option<NodeId>),
) -> (String, Option<T>, Option<NodeId>, WriteFeedback) {
    (outcome, v, by, WriteFeedback::NoAnswer)
}

/// A failed read's outcome, without a value.
fn no_value<T>(
    (outcome, v, by): (String, Option<T>, Option<NodeId>),
) -> (String, Option<T>, Option<NodeId>, Option<String>) {
    (outcome, v, by, None)
}

/// The outcome of a transport error; its message goes to `error`.
fn failed<T>(
    e: &reqwest::Error,
    error: &mut Option<String>,
) -> (String, Option<T>, Option<NodeId>) {
    *error = Some(e.to_string());
    (error_kind(e), None, None)
}

/// The outcome of a non-2xx answer (`http_STATUS`) and its JSON body, if
/// it has one; the body's `error` (or the start of its text) goes to `error`.
async fn http_error(
    r: reqwest::Response,
    error: &mut Option<String>,
) -> (String, Option<ErrorBody>) {
    let outcome = format!("http_{}", r.status().as_u16());
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text).ok();
    *error = Some(match &body {
        Some(b) => b.error.clone(),
        None => text.chars().take(200).collect(),
    });
    (outcome, body)
}

/// The kind (by `write_ratio`) and the key of the next operation: the one
/// place every workload draws them, so one seed gives one sequence whatever
/// the system loaded.
pub(crate) fn draw(
    rng: &mut ChaCha8Rng,
    keys: &mut dyn KeyGenerator,
    write_ratio: f64,
) -> (OpKind, u64) {
    let kind = if rng.random_bool(write_ratio) {
        OpKind::Write
    } else {
        OpKind::Read
    };
    (kind, keys.next_key(rng))
}

/// The `outcome` name of a transport error.
pub(crate) fn error_kind(e: &reqwest::Error) -> String {
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
                .get(format!("{}{}", n.url, kv_shared::HEALTH_PATH))
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
        let (kind, key) = draw(&mut g.rng, g.keys.as_mut(), self.write_ratio);
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
            session: 0,
        }
    }

    async fn execute(&self, op: Op, intended: Instant) -> Sample {
        let node = match op.kind {
            OpKind::Write => self.targets.write_node(op.node),
            OpKind::Read => self.targets.read_node(op.node),
        };
        let key = key_name(&self.key_prefix, op.key);
        let sent = Instant::now();
        let mut sample = Sample {
            seq: op.seq,
            kind: op.kind,
            key: String::new(),
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
            session: op.session,
            node_id: None,
            value: None,
        };
        let served_by = match op.kind {
            OpKind::Write => {
                let (outcome, version, served_by, feedback) =
                    self.write(&op, &key, node, &mut sample.error).await;
                self.targets.note_write(node, feedback, &self.client);
                (sample.outcome, sample.version) = (outcome, version);
                sample.value = Some(op.value);
                served_by
            }
            OpKind::Read => {
                let ticket = self.tracker.begin_read(op.key, sent.into_std());
                let (outcome, answer, served_by, value) =
                    self.read(&key, node, &mut sample.error).await;
                sample.outcome = outcome;
                sample.value = value;
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
        sample.key = key;
        sample.latency_us = micros(done.saturating_duration_since(intended));
        sample.service_us = micros(done.saturating_duration_since(sent));
        sample.node = self.targets.label(served_by, node);
        sample.node_id = served_by.or(self.targets.nodes[node].id);
        sample
    }

    async fn verify(&self) -> Result<Verification> {
        let acked = self.tracker.acked();
        crate::verify::verify(
            &self.client,
            &self.targets,
            &acked,
            &self.key_prefix,
            self.timeout,
        )
        .await
    }
}
