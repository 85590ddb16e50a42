//! Local clusters of `kv-node` processes, for the report, the failover
//! measurement and the tests.
//!
//! [`LocalCluster::start`] picks free ports on 127.0.0.1, spawns one
//! `kv-node` per node with the cluster flags of the node's contract
//! (`--mode`, `--role`, `--node-id`, `--port`, `--peers`, `--w`, `--r`,
//! `--delay-profile`, then [`ClusterSpec::extra_args`]), sends each node's
//! output to `node-ID.log` in the log directory (or discards it), and waits
//! until every node answers `/health` and, in leader-follower mode, until
//! every node's `/health` says `"ready": true`: a leader is elected, its term
//! has started, and every follower knows it. Node 1 gets `--role leader`,
//! which is only a hint to campaign first in the first term.
//!
//! # Lifecycle of one node
//! - [`LocalCluster::kill`]: SIGKILL, then the process is reaped and its
//!   `/proc` entry checked gone (a crash: the node loses everything);
//! - [`LocalCluster::pause`] / [`LocalCluster::resume`]: SIGSTOP / SIGCONT,
//!   each confirmed by the process state in `/proc` (a node that stops
//!   answering for a while and comes back with its state, as after a long
//!   GC pause or a partition);
//! - [`LocalCluster::restart`]: a killed node starts again on the same port
//!   with the same flags, empty, and answers `/health`; its log is appended
//!   to. [`LocalCluster::respawn`] does the same without waiting.
//!
//! Dropping the cluster sends SIGKILL to every process still running,
//! paused ones included (SIGKILL ends a stopped process too), so no node
//! outlives a failing test. [`LocalCluster::stop`] does the same and waits.
//!
//! Free ports are found by binding `127.0.0.1:0` and releasing the port just
//! before the node binds it: another process could take it in between, in
//! which case the node exits and the start fails with its log.

use crate::error::{Error, Result};
use crate::targets::{choose_leader, probe_statuses, LeaderChoice, Node, STATUS_TIMEOUT};
use kv_shared::cluster::StatusResponse;
use kv_shared::NodeId;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The shape of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    /// One node, no mode flags (phase-1 behaviour).
    Standalone,
    /// Leader-follower; node 1 has the `--role leader` hint; `w` and `r` are the quorums.
    LeaderFollower {
        /// Write quorum.
        w: u32,
        /// Read quorum.
        r: u32,
    },
    /// Every node coordinates; quorums default to the node's when `None`.
    Leaderless {
        /// Write quorum.
        w: Option<u32>,
        /// Read quorum.
        r: Option<u32>,
    },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Mode and quorums.
    pub kind: ClusterKind,
    /// Number of nodes (ignored for standalone).
    pub n: u32,
    /// Whether the assignment's delay profile is on.
    pub delay_profile: bool,
    /// The `kv-node` executable.
    pub node_bin: PathBuf,
    /// Where `node-ID.log` files go; `None` discards node output.
    pub log_dir: Option<PathBuf>,
    /// Flags appended to every node's command line (e.g.
    /// `--election-timeout-ms 500`).
    pub extra_args: Vec<String>,
    /// Environment variables of every node, set after the node contract's
    /// are removed (e.g. `ADMIN_TOKEN`, which belongs in the environment,
    /// not on a command line every local user can read).
    pub env: Vec<(String, String)>,
}

/// One process of the cluster.
#[derive(Debug)]
struct Member {
    id: NodeId,
    /// `None` once killed.
    child: Option<Child>,
    paused: bool,
    log: Option<PathBuf>,
}

/// A running local cluster; dropping it kills the nodes.
#[derive(Debug)]
pub struct LocalCluster {
    members: Vec<Member>,
    /// Base URLs, node 1 first.
    pub urls: Vec<String>,
    spec: ClusterSpec,
    ports: Vec<u16>,
    client: reqwest::Client,
    /// The cluster secret its nodes share (new for every cluster; given to
    /// them in their environment, never on their command line).
    secret: String,
}

/// A new random cluster secret (also good as an admin token).
pub fn new_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// The `kv-node` next to the running executable: `target/<profile>/kv-node`
/// for the tool itself, and the same file from `target/<profile>/deps/` for
/// test executables.
pub fn default_node_bin() -> PathBuf {
    let name = format!("kv-node{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [Some(dir.join(&name)), dir.parent().map(|p| p.join(&name))];
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| dir.join(&name))
}

/// `n` distinct free ports on 127.0.0.1 (held together, then released).
///
/// # Errors
/// When the OS gives no port.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Cluster(format!("no free port: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::Cluster(format!("no free port: {e}")))
}

/// The command-line flags of node `id` (1-based) of the cluster.
pub fn node_args(spec: &ClusterSpec, id: NodeId, ports: &[u16]) -> Vec<String> {
    let mut a = vec![
        "--node-id".into(),
        id.to_string(),
        "--port".into(),
        ports[id as usize - 1].to_string(),
    ];
    let peers = || {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let profile = if spec.delay_profile {
        "assignment"
    } else {
        "off"
    };
    match spec.kind {
        ClusterKind::Standalone => {}
        ClusterKind::LeaderFollower { w, r } => {
            let role = if id == 1 { "leader" } else { "follower" };
            a.extend(["--mode", "leader-follower", "--role", role].map(String::from));
            a.extend([
                "--peers".into(),
                peers(),
                "--w".into(),
                w.to_string(),
                "--r".into(),
                r.to_string(),
            ]);
            a.extend(["--delay-profile".into(), profile.into()]);
        }
        ClusterKind::Leaderless { w, r } => {
            a.extend([
                "--mode".into(),
                "leaderless".into(),
                "--peers".into(),
                peers(),
            ]);
            a.extend(w.into_iter().flat_map(|w| ["--w".into(), w.to_string()]));
            a.extend(r.into_iter().flat_map(|r| ["--r".into(), r.to_string()]));
            a.extend(["--delay-profile".into(), profile.into()]);
        }
    }
    a.extend(spec.extra_args.iter().cloned());
    a
}

/// Environment variables of the node's flags: removed from the children's
/// environment so that only the flags given here count.
const NODE_ENV: [&str; 18] = [
    "PORT",
    "BIND",
    "NODE_ID",
    "MODE",
    "ROLE",
    "ADVERTISE_URL",
    "PEERS",
    "W",
    "R",
    "DELAY_PROFILE",
    "SEND_DELAY_MS",
    "ACK_DELAY_MS",
    "REMOTE_READ_DELAY_MS",
    "ADMIN_TOKEN",
    "ADMIN_TOKEN_FILE",
    "CLUSTER_SECRET",
    "CLUSTER_SECRET_FILE",
    "ALLOW_ORIGIN",
];

/// `Command::env_remove` for every variable of [`NODE_ENV`].
trait RemoveContractEnv {
    fn envs_remove_contract(&mut self) -> &mut Self;
}

impl RemoveContractEnv for Command {
    fn envs_remove_contract(&mut self) -> &mut Self {
        NODE_ENV.iter().fold(self, |c, v| c.env_remove(v))
    }
}

impl LocalCluster {
    /// Starts the cluster and waits (at most 15 s each) until every node
    /// answers `/health` and, in leader-follower mode, says it is ready.
    ///
    /// # Errors
    /// A missing binary, a node that exits (its log tail is in the message) or does not come up.
    pub async fn start(spec: &ClusterSpec) -> Result<Self> {
        if !spec.node_bin.is_file() {
            return Err(Error::Cluster(format!(
                "kv-node not found at {}; build it (cargo build -p kv-node) or pass --node-bin",
                spec.node_bin.display()
            )));
        }
        let n = match spec.kind {
            ClusterKind::Standalone => 1,
            _ => spec.n.max(1),
        };
        if let Some(dir) = &spec.log_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let ports = free_ports(n as usize)?;
        let mut cluster = LocalCluster {
            members: Vec::new(),
            urls: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            spec: spec.clone(),
            ports,
            client: reqwest::Client::builder().no_proxy().build()?,
            secret: new_secret(),
        };
        for id in 1..=n {
            let log = spec
                .log_dir
                .as_ref()
                .map(|d| d.join(format!("node-{id}.log")));
            let child = cluster.spawn(id, log.as_deref(), false)?;
            cluster.members.push(Member {
                id,
                child: Some(child),
                paused: false,
                log,
            });
        }
        let all: Vec<usize> = (0..cluster.members.len()).collect();
        cluster.wait_healthy(&all, Duration::from_secs(15)).await?;
        if matches!(spec.kind, ClusterKind::LeaderFollower { .. }) {
            cluster.wait_ready(Duration::from_secs(15)).await?;
        }
        Ok(cluster)
    }

    /// Spawns node `id`, its output to `log` (appended to when `append`).
    fn spawn(&self, id: NodeId, log: Option<&Path>, append: bool) -> Result<Child> {
        let (out, err) = match log {
            Some(path) => {
                let f = if append {
                    OpenOptions::new().create(true).append(true).open(path)
                } else {
                    File::create(path)
                }
                .map_err(|e| Error::io(path, e))?;
                let f2 = f.try_clone().map_err(|e| Error::io(path, e))?;
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        Command::new(&self.spec.node_bin)
            .args(node_args(&self.spec, id, &self.ports))
            .env("NO_COLOR", "1")
            .envs_remove_contract()
            .env("CLUSTER_SECRET", &self.secret)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Cluster(format!("spawn {}: {e}", self.spec.node_bin.display())))
    }

    /// The admin token its nodes were given (`ADMIN_TOKEN` in
    /// [`ClusterSpec::env`]), if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.spec
            .env
            .iter()
            .find(|(k, _)| k == "ADMIN_TOKEN")
            .map(|(_, v)| v.as_str())
    }

    /// The cluster secret its nodes share (to sign node-to-node messages
    /// and answers).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The ids of the nodes, in order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The nodes as the load tester's targets know them (id and URL).
    pub fn nodes(&self) -> Vec<Node> {
        self.members
            .iter()
            .zip(&self.urls)
            .map(|(m, url)| Node {
                id: Some(m.id),
                url: url.clone(),
                role: None,
            })
            .collect()
    }

    /// The base URL of node `id`.
    ///
    /// # Panics
    /// When the cluster has no node `id`.
    pub fn url(&self, id: NodeId) -> &str {
        &self.urls[self.index(id).expect("no such node")]
    }

    /// The process id of node `id`, while it runs (paused included).
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        let m = &self.members[self.index(id)?];
        m.child.as_ref().and_then(Child::id)
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.index(id).is_some_and(|i| self.members[i].paused)
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    fn member(&mut self, id: NodeId) -> Result<&mut Member> {
        let i = self
            .index(id)
            .ok_or_else(|| Error::Cluster(format!("no node {id} in the cluster")))?;
        Ok(&mut self.members[i])
    }

    /// Kills node `id` with SIGKILL (a crash) and waits until the process
    /// is gone: reaped, and no longer in `/proc`. Killing a killed node does
    /// nothing.
    ///
    /// # Errors
    /// When the process does not end within 10 s.
    pub async fn kill(&mut self, id: NodeId) -> Result<()> {
        let m = self.member(id)?;
        let Some(mut child) = m.child.take() else {
            return Ok(());
        };
        m.paused = false;
        let pid = child.id();
        // Fails only when the child was already reaped: nothing left to kill.
        let _ = child.start_kill();
        tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .map_err(|_| Error::Cluster(format!("node {id} did not die within 10 s")))?
            .map_err(|e| Error::Cluster(format!("waiting for node {id}: {e}")))?;
        if let Some(pid) = pid {
            wait_state(pid, Duration::from_secs(5), |s| {
                s.is_none_or(|c| c == 'Z' || c == 'X')
            })
            .await
            .map_err(|s| Error::Cluster(format!("node {id} (pid {pid}) still {s:?}")))?;
        }
        Ok(())
    }

    /// Waits (at most `limit`) until node `id` exits by itself — a crash
    /// injected through `/admin/faults` — and reaps it, so that
    /// [`LocalCluster::restart`] can start it again. Returns its exit status.
    ///
    /// # Errors
    /// A node that is not running, or one still running after `limit`.
    pub async fn wait_exit(
        &mut self,
        id: NodeId,
        limit: Duration,
    ) -> Result<std::process::ExitStatus> {
        let m = self.member(id)?;
        let Some(child) = m.child.as_mut() else {
            return Err(Error::Cluster(format!("node {id} is not running")));
        };
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .map_err(|_| Error::Cluster(format!("node {id} still runs after {limit:?}")))?
            .map_err(|e| Error::Cluster(format!("waiting for node {id}: {e}")))?;
        m.child = None;
        m.paused = false;
        Ok(status)
    }

    /// Pauses node `id` with SIGSTOP and waits until the process is stopped
    /// (state `T` in `/proc`). It keeps its state and its sockets; requests
    /// to it wait in the kernel's queues.
    ///
    /// # Errors
    /// A node that is not running, or a signal that fails.
    pub async fn pause(&mut self, id: NodeId) -> Result<()> {
        let pid = self.running_pid(id)?;
        signal(pid, Signal::Stop)?;
        self.member(id)?.paused = true;
        wait_state(pid, Duration::from_secs(5), |s| s == Some('T'))
            .await
            .map_err(|s| Error::Cluster(format!("node {id} (pid {pid}) not stopped: {s:?}")))
    }

    /// Resumes node `id` paused by [`LocalCluster::pause`] (SIGCONT) and
    /// waits until the process runs again.
    ///
    /// # Errors
    /// A node that is not running, or a signal that fails.
    pub async fn resume(&mut self, id: NodeId) -> Result<()> {
        let pid = self.running_pid(id)?;
        signal(pid, Signal::Cont)?;
        self.member(id)?.paused = false;
        wait_state(pid, Duration::from_secs(5), |s| s != Some('T'))
            .await
            .map_err(|s| Error::Cluster(format!("node {id} (pid {pid}) still stopped: {s:?}")))
    }

    fn running_pid(&self, id: NodeId) -> Result<u32> {
        self.pid(id)
            .ok_or_else(|| Error::Cluster(format!("node {id} is not running")))
    }

    /// Starts killed node `id` again: same port, same flags, empty store.
    /// Does not wait for it (see [`LocalCluster::restart`]).
    ///
    /// # Errors
    /// A node that still runs, or a spawn that fails.
    pub fn respawn(&mut self, id: NodeId) -> Result<()> {
        let i = self
            .index(id)
            .ok_or_else(|| Error::Cluster(format!("no node {id} in the cluster")))?;
        if self.members[i].child.is_some() {
            return Err(Error::Cluster(format!(
                "node {id} still runs: kill it before restarting it"
            )));
        }
        let log = self.members[i].log.clone();
        let child = self.spawn(id, log.as_deref(), true)?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// [`LocalCluster::respawn`], then waits (at most 15 s) until the node answers `/health`.
    ///
    /// # Errors
    /// As `respawn`; a node that exits or does not answer.
    pub async fn restart(&mut self, id: NodeId) -> Result<()> {
        self.respawn(id)?;
        let i = self.index(id).expect("respawned");
        self.wait_healthy(&[i], Duration::from_secs(15)).await
    }

    /// Polls `/health` of the nodes at `indexes` until all answer or `limit` passes.
    async fn wait_healthy(&mut self, indexes: &[usize], limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut pending = indexes.to_vec();
        while !pending.is_empty() {
            for i in pending.clone() {
                let exited = match self.members[i].child.as_mut() {
                    Some(child) => child.try_wait().ok().flatten(),
                    None => None,
                };
                if let Some(status) = exited {
                    return Err(Error::Cluster(format!(
                        "kv-node {} ({}) exited during start ({status}); log: {}",
                        self.members[i].id,
                        self.urls[i],
                        self.log_tail(i)
                    )));
                }
                let ok = self
                    .client
                    .get(format!("{}{}", self.urls[i], kv_shared::HEALTH_PATH))
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    pending.retain(|p| *p != i);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Cluster(format!(
                    "nodes {pending:?} not healthy within {limit:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Leader-follower: polls `/health` of every running, unpaused node until
    /// each says `"ready": true` (a leader's term started and every follower
    /// knows the leader) or `limit` passes.
    ///
    /// # Errors
    /// Nodes not ready in time (named in the message).
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut not_ready = Vec::new();
            for (m, url) in self.members.iter().zip(&self.urls) {
                if m.child.is_none() || m.paused {
                    continue;
                }
                let res = self
                    .client
                    .get(format!("{url}{}", kv_shared::HEALTH_PATH))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                let ready = match res {
                    Ok(r) => r
                        .json::<kv_shared::HealthResponse>()
                        .await
                        .is_ok_and(|h| h.ready),
                    Err(_) => false,
                };
                if !ready {
                    not_ready.push(m.id);
                }
            }
            if not_ready.is_empty() {
                return Ok(());
            }
            last = format!("nodes {not_ready:?} not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::Cluster(format!(
            "the cluster was not ready for writes within {limit:?}: {last}"
        )))
    }

    /// Every node's `/status` (timeout 300 ms each), in node order; `None`
    /// for a node that does not answer.
    pub async fn statuses(&self) -> Vec<Option<StatusResponse>> {
        probe_statuses(&self.client, &self.urls, STATUS_TIMEOUT)
            .await
            .into_iter()
            .map(|p| p.status().cloned())
            .collect()
    }

    /// The leader the nodes that answer report in the highest term, with
    /// that term (see [`choose_leader`]). `None` during an election.
    pub async fn leader(&self) -> Option<(NodeId, kv_shared::Term)> {
        let probes = probe_statuses(&self.client, &self.urls, STATUS_TIMEOUT).await;
        let LeaderChoice { index, term } = choose_leader(&self.nodes(), &probes)?;
        Some((self.members[index].id, term))
    }

    /// Leader-follower: waits until the cluster is ready
    /// ([`LocalCluster::wait_ready`]) and every running node has applied
    /// what the leader had applied when the wait began, in its term, and is
    /// not catching up. Returns the leader and its term.
    ///
    /// # Errors
    /// Not converged within `limit`.
    pub async fn wait_converged(&self, limit: Duration) -> Result<(NodeId, kv_shared::Term)> {
        let deadline = Instant::now() + limit;
        self.wait_ready(limit).await?;
        let rounds = limit.as_millis() / 50 + 1;
        let mut last = String::from("no leader");
        for _ in 0..rounds {
            let probes = probe_statuses(&self.client, &self.urls, STATUS_TIMEOUT).await;
            if let Some(c) = choose_leader(&self.nodes(), &probes) {
                let leader = probes[c.index].status().expect("the leader answered");
                let target = Some((leader.applied_seq, c.term));
                let lagging = crate::verify::lagging(target, &probes);
                let silent: Vec<NodeId> = self
                    .members
                    .iter()
                    .zip(&probes)
                    .filter(|(m, p)| m.child.is_some() && !m.paused && !p.answered())
                    .map(|(m, _)| m.id)
                    .collect();
                if lagging.is_empty() && silent.is_empty() {
                    return Ok((self.members[c.index].id, c.term));
                }
                let lagging: Vec<NodeId> = lagging.iter().map(|i| self.members[*i].id).collect();
                last =
                    format!("nodes {lagging:?} lag behind the leader, nodes {silent:?} are silent");
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::Cluster(format!(
            "the cluster did not converge within {limit:?}: {last}"
        )))
    }

    /// The last lines of node `i`'s log, or a note that output was discarded.
    fn log_tail(&self, i: usize) -> String {
        match &self.members[i].log {
            Some(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(8)..].join(" | ")
            }
            None => "(output discarded)".into(),
        }
    }

    /// Kills every node and waits for the processes to end.
    pub async fn stop(mut self) {
        for id in self.ids() {
            let _ = self.kill(id).await;
        }
    }
}

impl Drop for LocalCluster {
    /// SIGKILL to every process still running, paused ones included (a
    /// stopped process dies of SIGKILL too; tokio reaps it).
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// The signals [`signal`] sends.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Stop,
    Cont,
}

/// Sends `sig` to process `pid`.
#[cfg(unix)]
fn signal(pid: u32, sig: Signal) -> Result<()> {
    let (number, name) = match sig {
        Signal::Stop => (libc::SIGSTOP, "SIGSTOP"),
        Signal::Cont => (libc::SIGCONT, "SIGCONT"),
    };
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| Error::Cluster(format!("pid {pid} out of range")))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours; the
    // pid is one of our own children, not yet reaped (we hold its `Child`).
    if unsafe { libc::kill(pid, number) } == 0 {
        Ok(())
    } else {
        Err(Error::Cluster(format!(
            "{name} to pid {pid}: {}",
            std::io::Error::last_os_error()
        )))
    }
}

/// Pausing needs POSIX signals.
#[cfg(not(unix))]
fn signal(pid: u32, _sig: Signal) -> Result<()> {
    Err(Error::Cluster(format!(
        "pausing pid {pid} needs SIGSTOP/SIGCONT (Unix only)"
    )))
}

/// The state letter of process `pid` from `/proc/PID/stat` (`R`, `S`, `T`
/// for stopped, `Z` for a zombie…), or `None` when there is no such process
/// (or no `/proc`).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Polls [`process_state`] every 5 ms until `done` holds or `limit` passes;
/// the error is the last state seen.
async fn wait_state(
    pid: u32,
    limit: Duration,
    done: impl Fn(Option<char>) -> bool,
) -> std::result::Result<(), Option<char>> {
    let poll = Duration::from_millis(5);
    let rounds = limit.as_millis() / poll.as_millis() + 1;
    let mut state = process_state(pid);
    for _ in 0..rounds {
        if done(state) {
            return Ok(());
        }
        tokio::time::sleep(poll).await;
        state = process_state(pid);
    }
    Err(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ClusterKind, delay: bool) -> ClusterSpec {
        ClusterSpec {
            kind,
            n: 3,
            delay_profile: delay,
            node_bin: PathBuf::from("kv-node"),
            log_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    #[test]
    fn leader_follower_flags_follow_the_node_contract() {
        let a = node_args(
            &spec(ClusterKind::LeaderFollower { w: 3, r: 1 }, true),
            2,
            &[9001, 9002, 9003],
        );
        assert_eq!(
            a.join(" "),
            "--node-id 2 --port 9002 --mode leader-follower --role follower \
             --peers 1=http://127.0.0.1:9001,2=http://127.0.0.1:9002,3=http://127.0.0.1:9003 \
             --w 3 --r 1 --delay-profile assignment"
        );
        let l = node_args(
            &spec(
                ClusterKind::Leaderless {
                    w: None,
                    r: Some(2),
                },
                false,
            ),
            1,
            &[1, 2, 3],
        );
        assert!(l.join(" ").ends_with("--r 2 --delay-profile off"), "{l:?}");
        assert!(!l.contains(&"--w".to_owned()));
        let s = node_args(&spec(ClusterKind::Standalone, false), 1, &[7]);
        assert_eq!(s, ["--node-id", "1", "--port", "7"]);
    }

    #[test]
    fn extra_args_come_last_on_every_node() {
        let mut lf = spec(ClusterKind::LeaderFollower { w: 2, r: 2 }, false);
        lf.extra_args = vec!["--election-timeout-ms".into(), "500".into()];
        for id in 1..=3 {
            let a = node_args(&lf, id, &[1, 2, 3]);
            assert_eq!(a[a.len() - 2..], ["--election-timeout-ms", "500"]);
        }
        let role = |id| node_args(&lf, id, &[1, 2, 3])[7].clone();
        assert_eq!((role(1), role(2)), ("leader".into(), "follower".into()));
    }

    #[test]
    fn the_state_of_this_process_is_read_from_proc() {
        if Path::new("/proc/self/stat").is_file() {
            // The main thread of the test harness runs or waits for this one.
            let state = process_state(std::process::id());
            assert!(matches!(state, Some('R' | 'S')), "{state:?}");
        }
        assert_eq!(process_state(u32::MAX), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = free_ports(5).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 5);
    }
}
