//! The systems the store is measured against — etcd and Redis — driven
//! with the same seeded workload and measured the same way as `kv-node`
//! (`--target etcd|redis`, and `kv-loadtester bench`).
//!
//! - **etcd** through its v3 JSON gateway: a write is `POST /v3/kv/put`, a
//!   read `POST /v3/kv/range` (linearizable, etcd's default), keys and values
//!   base64 as the gateway wants them; requests go to the member that leads
//!   (followers would forward them). [`EtcdCluster`] starts a local cluster
//!   from Debian's `etcd-server` (`--unsafe-no-fsync`: in memory, like us).
//! - **Redis** through the `redis` crate: a write is `SET` followed, when
//!   `--redis-wait N` is given, by `WAIT N timeout` — the primary answers
//!   once N replicas acknowledged (N = W − 1 for a W-of-N comparison); a read
//!   is `GET` at the primary. Each closed-loop client has its own connection
//!   (`WAIT` counts the writes of its connection). [`RedisCluster`] starts a
//!   primary with replicas from Debian's `redis-server`, persistence off.
//!
//! Both processes sets listen on 127.0.0.1 only and die with their handle.

use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::keys::{key_name, KeyGenerator};
use crate::workload::{
    draw, error_kind, key_generator, Op, OpKind, Sample, Verification, Workload,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// What `--target` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `kv-node` (the default).
    Kv,
    /// etcd's v3 JSON gateway at `--nodes` (client URLs).
    Etcd,
    /// A Redis primary at the first of `--nodes` (`redis://HOST:PORT`).
    Redis,
}

/// How long `WAIT` may wait, ms (its answer says how many replicas acknowledged).
pub const REDIS_WAIT_TIMEOUT_MS: u64 = 1000;
/// Most Redis connections a workload opens.
pub const MAX_REDIS_CONNECTIONS: usize = 64;

/// The seeded operations of a peer run: kind by the write ratio, keys as
/// `--key-dist` says, values padded to `--value-size` bytes.
struct OpSource {
    rng: ChaCha8Rng,
    keys: Box<dyn KeyGenerator>,
    seq: u64,
}

/// A connection to the system measured.
enum Conn {
    Etcd {
        client: reqwest::Client,
        url: String,
    },
    Redis {
        conns: Vec<redis::aio::MultiplexedConnection>,
        wait: u32,
    },
}

/// The workload of `--target etcd|redis` (see the module docs).
pub struct PeerWorkload {
    conn: Conn,
    label: String,
    write_ratio: f64,
    value_size: usize,
    key_prefix: String,
    timeout: Duration,
    source: Mutex<OpSource>,
}

impl PeerWorkload {
    /// etcd at `urls` (client URLs): requests go to the leading member.
    ///
    /// # Errors
    /// No member answers its status.
    pub async fn etcd(client: reqwest::Client, urls: &[String], args: &RunArgs) -> Result<Self> {
        let url = etcd_leader(&client, urls).await?;
        Self::new(
            Conn::Etcd {
                client,
                url: url.clone(),
            },
            format!("etcd {url}"),
            args,
        )
    }

    /// The Redis primary at `url` (`redis://HOST:PORT`); writes wait for
    /// `wait` replicas.
    ///
    /// # Errors
    /// The primary does not take connections.
    pub async fn redis(url: &str, wait: u32, args: &RunArgs) -> Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| Error::Config(format!("Redis URL {url}: {e}")))?;
        let mut conns = Vec::new();
        let wanted = args.workload.concurrency.unwrap_or(8) as usize;
        for _ in 0..wanted.clamp(1, MAX_REDIS_CONNECTIONS) {
            let conn = tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| Error::Discovery(format!("Redis at {url} does not answer")))?
            .map_err(|e| Error::Discovery(format!("Redis at {url}: {e}")))?;
            conns.push(conn);
        }
        let label = if wait > 0 {
            format!("redis {url} (WAIT {wait})")
        } else {
            format!("redis {url}")
        };
        Self::new(Conn::Redis { conns, wait }, label, args)
    }

    fn new(conn: Conn, label: String, args: &RunArgs) -> Result<Self> {
        let w = &args.workload;
        Ok(PeerWorkload {
            conn,
            label,
            write_ratio: args.write_ratio,
            value_size: w.value_size,
            key_prefix: w.key_prefix.clone(),
            timeout: Duration::from_millis(w.timeout_ms.max(1)),
            source: Mutex::new(OpSource {
                rng: ChaCha8Rng::seed_from_u64(w.seed),
                keys: key_generator(w)?,
                seq: 0,
            }),
        })
    }

    fn value(&self, seq: u64) -> String {
        let mut v = format!("{seq}-");
        v.extend(std::iter::repeat_n(
            'x',
            self.value_size.saturating_sub(v.len()),
        ));
        v
    }

    /// Sends `op`; `Ok(found)` (reads: whether the key was there), or the
    /// outcome name and message of a failure.
    async fn send(&self, op: &Op, key: &str) -> std::result::Result<bool, (String, String)> {
        match &self.conn {
            Conn::Etcd { client, url } => {
                let (path, body) = match op.kind {
                    OpKind::Write => (
                        "/v3/kv/put",
                        serde_json::json!({"key": B64.encode(key), "value": B64.encode(&op.value)}),
                    ),
                    OpKind::Read => ("/v3/kv/range", serde_json::json!({"key": B64.encode(key)})),
                };
                let resp = client
                    .post(format!("{url}{path}"))
                    .json(&body)
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| (error_kind(&e), e.to_string()))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| (error_kind(&e), e.to_string()))?;
                if !status.is_success() {
                    return Err((
                        format!("http_{}", status.as_u16()),
                        text.chars().take(200).collect(),
                    ));
                }
                let range: EtcdRange = serde_json::from_str(&text)
                    .map_err(|e| ("decode".to_string(), e.to_string()))?;
                Ok(!range.kvs.is_empty())
            }
            Conn::Redis { conns, wait } => {
                let mut conn = conns[op.session as usize % conns.len()].clone();
                let call = async {
                    match op.kind {
                        OpKind::Write => {
                            redis::cmd("SET")
                                .arg(key)
                                .arg(&op.value)
                                .query_async::<()>(&mut conn)
                                .await?;
                            if *wait > 0 {
                                let acked: u32 = redis::cmd("WAIT")
                                    .arg(*wait)
                                    .arg(REDIS_WAIT_TIMEOUT_MS)
                                    .query_async(&mut conn)
                                    .await?;
                                if acked < *wait {
                                    return Ok(Err((
                                        "quorum".to_string(),
                                        format!("WAIT: {acked} of {wait} replicas acknowledged"),
                                    )));
                                }
                            }
                            Ok(Ok(true))
                        }
                        OpKind::Read => {
                            let v: Option<Vec<u8>> =
                                redis::cmd("GET").arg(key).query_async(&mut conn).await?;
                            Ok(Ok(v.is_some()))
                        }
                    }
                };
                match tokio::time::timeout(self.timeout, call).await {
                    Err(_) => Err(("timeout".into(), "no answer in time".into())),
                    Ok(Err(e)) => Err(("transport".into(), redis_error(&e))),
                    Ok(Ok(r)) => r,
                }
            }
        }
    }
}

fn redis_error(e: &redis::RedisError) -> String {
    e.to_string()
}

/// The part of a `/v3/kv/range` (or `/v3/kv/put`) answer the workload reads.
#[derive(Debug, Deserialize)]
struct EtcdRange {
    #[serde(default)]
    kvs: Vec<serde_json::Value>,
}

/// `/v3/maintenance/status`: who answered and who leads (ids as strings).
#[derive(Debug, Deserialize)]
struct EtcdStatus {
    header: EtcdHeader,
    #[serde(default)]
    leader: String,
}

#[derive(Debug, Deserialize)]
struct EtcdHeader {
    #[serde(default)]
    member_id: String,
}

/// The client URL of the member of `urls` that leads.
async fn etcd_leader(client: &reqwest::Client, urls: &[String]) -> Result<String> {
    let mut answered = Vec::new();
    for url in urls {
        let status = client
            .post(format!("{url}/v3/maintenance/status"))
            .json(&serde_json::json!({}))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        if let Ok(r) = status {
            if let Ok(s) = r.json::<EtcdStatus>().await {
                if !s.leader.is_empty() && s.leader == s.header.member_id {
                    return Ok(url.clone());
                }
                answered.push(url.clone());
            }
        }
    }
    answered.into_iter().next().ok_or_else(|| {
        Error::Discovery(format!(
            "no etcd member answers /v3/maintenance/status: {}",
            urls.join(", ")
        ))
    })
}

impl Workload for PeerWorkload {
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    fn generate(&self) -> Op {
        let mut g = self.source.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let seq = g.seq;
        g.seq += 1;
        let (kind, key) = draw(&mut g.rng, g.keys.as_mut(), self.write_ratio);
        let value = match kind {
            OpKind::Write => self.value(seq),
            OpKind::Read => String::new(),
        };
        Op {
            seq,
            kind,
            key,
            node: 0,
            value,
            session: 0,
        }
    }

    async fn execute(&self, op: Op, intended: Instant) -> Sample {
        let key = key_name(&self.key_prefix, op.key);
        let sent = Instant::now();
        let answer = self.send(&op, &key).await;
        let done = Instant::now();
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (outcome, error) = match answer {
            Ok(true) => ("ok".to_string(), None),
            Ok(false) if op.kind == OpKind::Read => ("not_found".to_string(), None),
            Ok(false) => ("ok".to_string(), None),
            Err((outcome, message)) => (outcome, Some(message)),
        };
        Sample {
            seq: op.seq,
            kind: op.kind,
            key,
            node: self.label.clone(),
            intended_us: 0,
            queue_us: micros(sent.saturating_duration_since(intended)),
            latency_us: micros(done.saturating_duration_since(intended)),
            service_us: micros(done.saturating_duration_since(sent)),
            outcome,
            version: None,
            known_version: None,
            stale: false,
            since_write_us: None,
            error,
            session: op.session,
            node_id: None,
            value: None,
        }
    }

    async fn verify(&self) -> Result<Verification> {
        Ok(Verification::default())
    }
}

/// A local process set that dies with its handle.
struct Processes {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Processes {
    fn spawn(&mut self, bin: &str, args: &[String], log: &str) -> Result<()> {
        let log_path = self.dir.join(log);
        let out = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let err = out.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::Cluster(format!(
                    "{bin} does not start: {e} (scripts/bench.sh installs it)"
                ))
            })?;
        self.children.push(child);
        Ok(())
    }

    async fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill().await;
        }
        self.children.clear();
    }
}

/// A local etcd cluster on 127.0.0.1 (see the module docs).
pub struct EtcdCluster {
    procs: Processes,
    /// Client URLs, member 1 first.
    pub urls: Vec<String>,
}

/// The command line of etcd member `i` (0-based) of a cluster whose
/// client and peer ports are `client[i]` and `peer[i]`.
pub fn etcd_args(i: usize, client: &[u16], peer: &[u16], data: &Path) -> Vec<String> {
    let cluster: Vec<String> = peer
        .iter()
        .enumerate()
        .map(|(j, p)| format!("m{}=http://127.0.0.1:{p}", j + 1))
        .collect();
    let c = format!("http://127.0.0.1:{}", client[i]);
    let p = format!("http://127.0.0.1:{}", peer[i]);
    [
        "--name",
        &format!("m{}", i + 1),
        "--data-dir",
        &data.join(format!("m{}", i + 1)).display().to_string(),
        "--listen-client-urls",
        &c,
        "--advertise-client-urls",
        &c,
        "--listen-peer-urls",
        &p,
        "--initial-advertise-peer-urls",
        &p,
        "--initial-cluster",
        &cluster.join(","),
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "kv-bench",
        "--unsafe-no-fsync",
        "--log-level",
        "error",
    ]
    .map(str::to_string)
    .to_vec()
}

impl EtcdCluster {
    /// Starts `n` members in `dir` (data and logs) and waits until every
    /// one answers `/health` (up to 30 s).
    ///
    /// # Errors
    /// `etcd` missing, or a member not healthy in time.
    pub async fn start(n: usize, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let ports = crate::cluster::free_ports(2 * n)?;
        let (client, peer) = ports.split_at(n);
        let mut procs = Processes {
            children: Vec::new(),
            dir: dir.to_owned(),
        };
        for i in 0..n {
            procs.spawn(
                "etcd",
                &etcd_args(i, client, peer, dir),
                &format!("etcd-{}.log", i + 1),
            )?;
        }
        let urls: Vec<String> = client
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let http = crate::runner::http_client()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in &urls {
            loop {
                let healthy = http
                    .get(format!("{url}{}", kv_shared::HEALTH_PATH))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success());
                if healthy.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    procs.stop().await;
                    return Err(Error::Cluster(format!(
                        "etcd at {url} not healthy within 30 s (logs in {})",
                        dir.display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(EtcdCluster { procs, urls })
    }

    /// Stops every member.
    pub async fn stop(mut self) {
        self.procs.stop().await;
    }
}

/// A local Redis primary with replicas on 127.0.0.1 (see the module docs).
pub struct RedisCluster {
    procs: Processes,
    /// `redis://127.0.0.1:PORT` of the primary.
    pub primary: String,
}

/// The command line of a Redis server on `port`, a replica of `primary`
/// when given; no persistence. Its working directory is `dir`: a replica
/// still writes the primary's snapshot there while it first syncs, and it
/// must not land in whatever directory the tool was started from.
pub fn redis_args(port: u16, primary: Option<u16>, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    .map(str::to_string)
    .to_vec();
    args.extend([
        "--dir".into(),
        dir.display().to_string(),
        "--dbfilename".into(),
        format!("redis-{port}.rdb"),
    ]);
    if let Some(p) = primary {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
    }
    args
}

impl RedisCluster {
    /// Starts a primary and `replicas` replicas, and waits until the
    /// primary counts them all connected and online (up to 30 s).
    ///
    /// # Errors
    /// `redis-server` missing, or replicas not online in time.
    pub async fn start(replicas: usize, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let ports = crate::cluster::free_ports(replicas + 1)?;
        let mut procs = Processes {
            children: Vec::new(),
            dir: dir.to_owned(),
        };
        procs.spawn(
            "redis-server",
            &redis_args(ports[0], None, dir),
            "redis-primary.log",
        )?;
        for (i, port) in ports[1..].iter().enumerate() {
            procs.spawn(
                "redis-server",
                &redis_args(*port, Some(ports[0]), dir),
                &format!("redis-replica-{}.log", i + 1),
            )?;
        }
        let primary = format!("redis://127.0.0.1:{}", ports[0]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(online) = redis_replicas_online(&primary).await {
                if online >= replicas {
                    break;
                }
            }
            if Instant::now() > deadline {
                procs.stop().await;
                return Err(Error::Cluster(format!(
                    "Redis replicas not online within 30 s (logs in {})",
                    dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(RedisCluster { procs, primary })
    }

    /// Stops every server.
    pub async fn stop(mut self) {
        self.procs.stop().await;
    }
}

/// Replicas the primary at `url` reports online (`INFO replication`).
async fn redis_replicas_online(url: &str) -> Option<usize> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(online_replicas(&info))
}

/// Counts the `slaveN:…,state=online,…` lines of `INFO replication`.
fn online_replicas(info: &str) -> usize {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_members_know_each_other_and_listen_on_loopback() {
        let args = etcd_args(1, &[2379, 2381], &[2380, 2382], Path::new("/d"));
        let joined = args.join(" ");
        assert!(joined.contains("--name m2 --data-dir /d/m2"), "{joined}");
        assert!(joined.contains("--listen-client-urls http://127.0.0.1:2381"));
        assert!(
            joined.contains("--initial-cluster m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2382")
        );
        assert!(joined.contains("--unsafe-no-fsync"));
        assert!(!joined.contains("0.0.0.0"));
    }

    #[test]
    fn redis_replicas_follow_the_primary_without_persistence() {
        let args = redis_args(7001, Some(7000), Path::new("/tmp/bench"));
        assert_eq!(&args[..4], ["--port", "7001", "--bind", "127.0.0.1"]);
        assert!(args.windows(2).any(|w| w == ["--save", ""]));
        assert_eq!(
            &args[args.len() - 3..],
            ["--replicaof", "127.0.0.1", "7000"]
        );
        assert!(args.windows(2).any(|w| w == ["--dir", "/tmp/bench"]));
        assert!(
            !redis_args(7000, None, Path::new("/tmp/bench")).contains(&"--replicaof".to_string())
        );
    }

    #[test]
    fn online_replicas_are_counted_from_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=1,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n";
        assert_eq!(online_replicas(info), 1);
    }
}
