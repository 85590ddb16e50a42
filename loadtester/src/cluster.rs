//! Local clusters of `kv-node` processes, for the report and the tests.
//!
//! [`LocalCluster::start`] picks free ports on 127.0.0.1, spawns one
//! `kv-node` per node with the cluster flags of the node's contract
//! (`--mode`, `--role`, `--node-id`, `--port`, `--peers`, `--w`, `--r`,
//! `--delay-profile`), sends each node's output to `node-ID.log` in the log
//! directory (or discards it), and waits until every node answers
//! `/health` and, in leader-follower mode, until the leader's `/health` says
//! it is ready (a starting leader answers writes with 503 while it recovers
//! its followers' state). Dropping the cluster kills the processes.
//!
//! Free ports are found by binding `127.0.0.1:0` and releasing the port just
//! before the node binds it: another process could take it in between, in
//! which case the node exits and the start fails with its log.

use crate::error::{Error, Result};
use kv_shared::NodeId;
use std::fs::File;
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
    /// Node 1 leads; `w` and `r` are the quorums.
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
}

/// A running local cluster; dropping it kills the nodes.
#[derive(Debug)]
pub struct LocalCluster {
    children: Vec<(NodeId, Child)>,
    /// Base URLs, node 1 first (node 1 leads in leader-follower mode).
    pub urls: Vec<String>,
    logs: Vec<Option<PathBuf>>,
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
    a
}

/// Environment variables of the node's flags: removed from the children's
/// environment so that only the flags given here count.
const NODE_ENV: [&str; 14] = [
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
    /// Starts the cluster and waits (at most 15 s) until every node answers `/health`.
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
            children: Vec::new(),
            urls: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            logs: Vec::new(),
        };
        for id in 1..=n {
            let log = spec
                .log_dir
                .as_ref()
                .map(|d| d.join(format!("node-{id}.log")));
            let (out, err) = match &log {
                Some(path) => {
                    let f = File::create(path).map_err(|e| Error::io(path, e))?;
                    let f2 = f.try_clone().map_err(|e| Error::io(path, e))?;
                    (Stdio::from(f), Stdio::from(f2))
                }
                None => (Stdio::null(), Stdio::null()),
            };
            let child = Command::new(&spec.node_bin)
                .args(node_args(spec, id, &ports))
                .env("NO_COLOR", "1")
                .envs_remove_contract()
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::Cluster(format!("spawn {}: {e}", spec.node_bin.display())))?;
            cluster.children.push((id, child));
            cluster.logs.push(log);
        }
        cluster.wait_healthy(Duration::from_secs(15)).await?;
        if matches!(spec.kind, ClusterKind::LeaderFollower { .. }) {
            cluster.wait_writable(Duration::from_secs(15)).await?;
        }
        Ok(cluster)
    }

    /// Polls `/health` of every node until all answer or `limit` passes.
    async fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + limit;
        let mut pending: Vec<usize> = (0..self.urls.len()).collect();
        while !pending.is_empty() {
            for i in pending.clone() {
                if let Ok(Some(status)) = self.children[i].1.try_wait() {
                    return Err(Error::Cluster(format!(
                        "kv-node {} ({}) exited during start ({status}); log: {}",
                        self.children[i].0,
                        self.urls[i],
                        self.log_tail(i)
                    )));
                }
                let ok = client
                    .get(format!("{}/health", self.urls[i]))
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

    /// Leader-follower: polls the leader's (node 1) `/health` until it says
    /// `"ready": true`. A freshly started leader first recovers its
    /// followers' state and answers writes with 503 meanwhile; the cluster is
    /// ready for a measured load only once it takes writes.
    async fn wait_writable(&self, limit: Duration) -> Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            let res = client
                .get(format!("{}/health", self.urls[0]))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            match res {
                Ok(r) => match r.json::<kv_shared::HealthResponse>().await {
                    Ok(h) if h.ready => return Ok(()),
                    Ok(_) => last = "the leader is still recovering".into(),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::Cluster(format!(
            "the leader was not ready for writes within {limit:?}: {last}"
        )))
    }

    /// The last lines of node `i`'s log, or a note that output was discarded.
    fn log_tail(&self, i: usize) -> String {
        match &self.logs[i] {
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
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
    }
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
    fn free_ports_are_distinct() {
        let p = free_ports(5).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 5);
    }
}
