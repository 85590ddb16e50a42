//! Configuration of a node, from flags and environment variables.
//!
//! [`Config`] is what clap parses; [`Config::cluster_spec`] checks it and turns
//! it into a [`ClusterSpec`]: who this node is, who its peers are, N, W, R and
//! the delay profile. A node refuses to start on a spec that does not hold
//! together (a follower with no peers, W > N, an unparsable peer list…).

use crate::peers::{parse_peers, PeerInfo};
use clap::{Parser, ValueEnum};
use kv_shared::cluster::{ClusterConfig, DelayProfile};
use kv_shared::{Mode, NodeId, Role};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags that do not describe a valid node: the message names the flag at
/// fault (`kv-node` prints it and exits with status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

impl From<String> for FlagError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for FlagError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl From<crate::leaderless::hlc::NodeIdTooLarge> for FlagError {
    fn from(e: crate::leaderless::hlc::NodeIdTooLarge) -> Self {
        Self(e.to_string())
    }
}

/// `--role` values (leader-follower mode only): a hint for the first term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Campaigns at once when the cluster starts, so it is likely the first
    /// leader; after that it is a node like the others.
    Leader,
    /// Waits a random election timeout before campaigning (the default).
    Follower,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ModeArg {
    /// One node, no replication (the phase-1 service).
    #[default]
    Standalone,
    /// One leader, N-1 followers, tunable W and R.
    LeaderFollower,
    /// Every node coordinates writes (Dynamo-style).
    Leaderless,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Standalone => Mode::Standalone,
            ModeArg::LeaderFollower => Mode::LeaderFollower,
            ModeArg::Leaderless => Mode::Leaderless,
        }
    }
}

/// `--delay-profile` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DelayProfileArg {
    /// No artificial delay.
    #[default]
    Off,
    /// 200 ms after each replication send, 100 ms before each ack, 50 ms
    /// before answering a coordinated read (each overridable).
    Assignment,
}

/// Flags of `kv-node`. Every flag can also be given as the environment
/// variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kv-node",
    version,
    about = "A replica of the replicated key-value store"
)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind; 127.0.0.1 by default, `--bind 0.0.0.0` to listen on every interface.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// This node's id, unique in its cluster.
    #[arg(long, env = "NODE_ID", default_value_t = 1)]
    pub node_id: NodeId,
    /// Log filter when `RUST_LOG` is not set (e.g. `info`, `debug`, `kv_node=trace`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Threads running the node's tasks; 0: one per CPU core. Several nodes
    /// sharing one machine's cores spend less CPU per replicated write with
    /// 1 each (fewer wake-ups across threads; see docs/results.md).
    #[arg(long, env = "WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// How the cluster replicates.
    #[arg(long, env = "MODE", value_enum, default_value_t = ModeArg::Standalone)]
    pub mode: ModeArg,
    /// Leader-follower mode: a hint for the first term. `leader` campaigns at
    /// once at start (and so usually leads first); every node can lead later.
    #[arg(long, env = "ROLE", value_enum)]
    pub role: Option<RoleArg>,
    /// How peers reach this node; default `http://BIND:PORT`.
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Every node of the cluster: `1=http://127.0.0.1:8081,2=http://127.0.0.1:8082,…`.
    /// An entry with this node's own id is allowed and ignored.
    #[arg(long, env = "PEERS", default_value = "")]
    pub peers: String,
    /// Write quorum, 1..=N. Default: majority in leader-follower mode, N in leaderless mode.
    #[arg(long, env = "W")]
    pub w: Option<u32>,
    /// Read quorum, 1..=N. Default: majority in leader-follower mode, 1 in leaderless mode.
    #[arg(long, env = "R")]
    pub r: Option<u32>,
    /// Quorums by the assignment's name: `W5R1`, `W1R5`, `W3R3` (any `W<w>R<r>`,
    /// case-insensitive). `--w`/`--r` given as well take precedence.
    #[arg(long, env = "PRESET", value_parser = parse_preset)]
    pub preset: Option<(u32, u32)>,
    /// Artificial delays: `off` or `assignment` (200/100/50 ms).
    #[arg(long, env = "DELAY_PROFILE", value_enum, default_value_t = DelayProfileArg::Off)]
    pub delay_profile: DelayProfileArg,
    /// Overrides the profile's wait after each replication send, in ms.
    #[arg(long, env = "SEND_DELAY_MS")]
    pub send_delay_ms: Option<u32>,
    /// Overrides the profile's wait before acknowledging an update, in ms.
    #[arg(long, env = "ACK_DELAY_MS")]
    pub ack_delay_ms: Option<u32>,
    /// Overrides the profile's wait before answering a coordinated read, in ms.
    #[arg(long, env = "REMOTE_READ_DELAY_MS")]
    pub remote_read_delay_ms: Option<u32>,
    /// Bearer token required for admin calls (W/R and delay-profile changes).
    /// Prefer the environment variable or `--admin-token-file`: a value given
    /// on the command line is visible to every local user in `ps`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (its first line).
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Secret shared by every node of the cluster: node-to-node requests and
    /// their answers are signed with it (it never travels), and `/internal/*`
    /// answers 401 to anything else. Required in leader-follower and
    /// leaderless mode (at least 16 characters); prefer the environment
    /// variable or `--cluster-secret-file`.
    #[arg(long, env = "CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (its first line).
    #[arg(long, env = "CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// More origins (`http://host:port`) whose pages may call the data
    /// endpoints cross-origin, besides this node's and its peers' own.
    #[arg(long, env = "ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,
    /// More host names this node answers to (the `Host` header), besides IP
    /// addresses, `localhost` and the hosts of its own and its peers' URLs.
    #[arg(long, env = "ALLOW_HOST", value_delimiter = ',')]
    pub allow_host: Vec<String>,
    /// Most client connections open at once; further ones are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: u32,
    /// A connection that started a request head and has not completed it
    /// within this many ms is closed (slow clients, slowloris).
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A connection on which nothing was read or written for this many ms is
    /// closed: one that never sends a request, or a kept-alive one between
    /// requests. Longer than the 15 s keep-alive of `/events` streams.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// A request whose body has not fully arrived within this many ms answers 408.
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Most `/events` streams open at once (dashboard pages and peers' relays);
    /// further ones answer 503.
    #[arg(long, env = "MAX_EVENT_STREAMS", default_value_t = 64)]
    pub max_event_streams: u32,
    /// Leader-follower mode: most bytes of committed entries kept for
    /// catch-up (with `--log-capacity`, whichever is reached first).
    #[arg(long, env = "LOG_CAPACITY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub log_capacity_bytes: u64,
    /// Leader-follower mode: most bytes of entries the leader holds beyond the
    /// commit point (with `--max-uncommitted`); further writes wait.
    #[arg(long, env = "MAX_UNCOMMITTED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_uncommitted_bytes: u64,
    /// Most bytes of one snapshot message (a larger store travels in chunks).
    #[arg(long, env = "SNAPSHOT_CHUNK_BYTES", default_value_t = 1024 * 1024)]
    pub snapshot_chunk_bytes: u64,
    /// Leaderless mode: most bytes of hints a node keeps per peer (with
    /// `--max-hints-per-peer`); beyond, hints are dropped, counted and left to
    /// anti-entropy.
    #[arg(long, env = "MAX_HINT_BYTES_PER_PEER", default_value_t = 64 * 1024 * 1024)]
    pub max_hint_bytes_per_peer: u64,
    /// Leaderless mode: most a received clock reading or version may run
    /// ahead of this node's wall clock, in ms; a message beyond is refused
    /// and logged.
    #[arg(long, env = "MAX_CLOCK_OFFSET_MS", default_value_t = 500)]
    pub max_clock_offset_ms: u64,
    /// How long a write waits for W acknowledgements before answering 503, in ms.
    #[arg(long, env = "WRITE_TIMEOUT_MS", default_value_t = 3000)]
    pub write_timeout_ms: u64,
    /// How long a node waits for one peer's answer (reads, forwarding, config), in ms.
    #[arg(long, env = "PEER_TIMEOUT_MS", default_value_t = 2000)]
    pub peer_timeout_ms: u64,
    /// Batches coordinated reads' asks to a peer: at most this many batches
    /// travel to one peer at once, each over one of as many reads streams
    /// kept open to it (`/internal/reads/stream`), and asks made meanwhile
    /// leave together in the next; a read may wait one round trip to the
    /// peer (one remote-read delay of the delay profile) for the batch ahead
    /// of it. 0: off — each ask is its own `GET /internal/read`, sent at once.
    #[arg(long, env = "READ_BATCHES_IN_FLIGHT", default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub read_batches_in_flight: u32,
    /// Interval of the leader's heartbeats and of the peers' health probes, in ms.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// Leader-follower mode: a follower that hears nothing from a leader for
    /// a random time between this and twice this (in ms) starts an election;
    /// a leader that hears from no majority for this long steps down.
    #[arg(long, env = "ELECTION_TIMEOUT_MS", default_value_t = 1000)]
    pub election_timeout_ms: u64,
    /// Leader-follower mode: how long (ms) a node trusts the W/R it last
    /// heard from a leader. A node that heard from no leader for longer reads
    /// all N replicas, and a leader lowering W waits this long (plus 500 ms)
    /// for a node that does not confirm the higher R. At least the election timeout.
    #[arg(long, env = "LEASE_MS", default_value_t = 5000)]
    pub lease_ms: u64,
    /// Leader-follower mode: most log entries the leader holds beyond what a
    /// majority acknowledged; further writes wait (up to the write timeout).
    /// A new leader starts versions this far above the highest it holds.
    #[arg(long, env = "MAX_UNCOMMITTED", default_value_t = 10_000)]
    pub max_uncommitted: u64,
    /// Entries the leader keeps in its log for catch-up; a follower further
    /// behind receives a snapshot first.
    #[arg(long, env = "LOG_CAPACITY", default_value_t = 100_000)]
    pub log_capacity: u32,
    /// Most log entries in one replication message.
    #[arg(long, env = "MAX_BATCH", default_value_t = 512)]
    pub max_batch: u32,
    /// Leaderless mode: mean interval between two anti-entropy rounds, in ms
    /// (each is jittered by ±25 %); 0 turns anti-entropy off.
    #[arg(long, env = "ANTI_ENTROPY_MS", default_value_t = 5000)]
    pub anti_entropy_ms: u64,
    /// Leaderless mode: most hints (distinct keys) a node keeps per peer.
    #[arg(long, env = "MAX_HINTS_PER_PEER", default_value_t = 100_000)]
    pub max_hints_per_peer: u32,
    /// Whether this process is the `kv-node` executable, which a `restart`
    /// fault may replace by a fresh run of itself (set by `main`, never a
    /// flag: a node served inside another program, such as a test, must not
    /// re-execute that program).
    #[arg(skip)]
    pub self_restart: bool,
}

/// The cluster secret of [`Config::for_tests`].
pub const TEST_CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

/// Who this node is in its cluster, checked and ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// How the cluster replicates.
    pub mode: Mode,
    /// This node's role.
    pub role: Role,
    /// This node's id.
    pub node_id: NodeId,
    /// How peers reach this node.
    pub self_url: String,
    /// The other nodes, sorted by id.
    pub peers: Vec<PeerInfo>,
    /// N, W, R and the delay profile at start.
    pub config: ClusterConfig,
}

/// Parses `W<w>R<r>` (e.g. `W5R1`, `w3r3`) into `(w, r)`.
///
/// # Errors
/// A message showing the expected form.
pub fn parse_preset(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a preset: expected W<w>R<r>, e.g. W5R1, W1R5, W3R3");
    let upper = s.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix('W').ok_or_else(bad)?;
    let (w, r) = rest.split_once('R').ok_or_else(bad)?;
    Ok((w.parse().map_err(|_| bad())?, r.parse().map_err(|_| bad())?))
}

impl Config {
    /// W and R as the flags give them (`--w`/`--r`, else `--preset`), if at all.
    fn quorum_flags(&self) -> (Option<u32>, Option<u32>) {
        (
            self.w.or(self.preset.map(|p| p.0)),
            self.r.or(self.preset.map(|p| p.1)),
        )
    }

    /// How this node replicates.
    pub fn mode(&self) -> Mode {
        self.mode.into()
    }

    /// The part this node plays in its cluster.
    pub fn role(&self) -> Role {
        match (self.mode, self.role) {
            (ModeArg::Standalone, _) => Role::Standalone,
            (ModeArg::Leaderless, _) => Role::Peer,
            (ModeArg::LeaderFollower, Some(RoleArg::Leader)) => Role::Leader,
            (ModeArg::LeaderFollower, _) => Role::Follower,
        }
    }

    /// The delay profile the flags select.
    pub fn delays(&self) -> DelayProfile {
        let base = match self.delay_profile {
            DelayProfileArg::Off => DelayProfile::OFF,
            DelayProfileArg::Assignment => DelayProfile::ASSIGNMENT,
        };
        DelayProfile {
            send_ms: self.send_delay_ms.unwrap_or(base.send_ms),
            ack_ms: self.ack_delay_ms.unwrap_or(base.ack_ms),
            remote_read_ms: self.remote_read_delay_ms.unwrap_or(base.remote_read_ms),
        }
    }

    /// How peers reach this node.
    pub fn self_url(&self) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.bind, self.port))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// The timeout of one request to a peer.
    pub fn peer_timeout(&self) -> Duration {
        Duration::from_millis(self.peer_timeout_ms)
    }

    /// The heartbeat and probe interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    /// Checks the flags and derives the cluster this node belongs to.
    ///
    /// # Errors
    /// A message naming the flag at fault.
    pub fn cluster_spec(&self) -> Result<ClusterSpec, FlagError> {
        let mode = self.mode();
        let peers = parse_peers(&self.peers, self.node_id)?;
        let n = u32::try_from(peers.len() + 1).map_err(|_| FlagError::from("too many peers"))?;
        let majority = n / 2 + 1;
        let (flag_w, flag_r) = self.quorum_flags();
        let (w, r) = match mode {
            Mode::Standalone => {
                if !peers.is_empty() {
                    return Err("--peers needs --mode leader-follower or leaderless".into());
                }
                (flag_w.unwrap_or(1), flag_r.unwrap_or(1))
            }
            Mode::LeaderFollower => (flag_w.unwrap_or(majority), flag_r.unwrap_or(majority)),
            Mode::Leaderless => (flag_w.unwrap_or(n), flag_r.unwrap_or(1)),
        };
        if self.max_batch == 0 || self.log_capacity == 0 || self.max_uncommitted == 0 {
            return Err(
                "--max-batch, --log-capacity and --max-uncommitted must be at least 1".into(),
            );
        }
        if self.election_timeout_ms
            < 2 * u64::try_from(self.heartbeat().as_millis()).unwrap_or(u64::MAX)
        {
            return Err(format!(
                "--election-timeout-ms ({}) must be at least twice --heartbeat-ms ({})",
                self.election_timeout_ms, self.heartbeat_ms
            )
            .into());
        }
        let config =
            ClusterConfig::new(n, w, r, self.delays()).map_err(|e| format!("--w/--r: {e}"))?;
        Ok(ClusterSpec {
            mode,
            role: self.role(),
            node_id: self.node_id,
            self_url: self.self_url(),
            peers,
            config,
        })
    }

    /// A configuration for tests: a standalone node on port 0 (any free port)
    /// of 127.0.0.1, with every other flag at its default and the cluster
    /// secret [`TEST_CLUSTER_SECRET`] (so that a test turning it into a
    /// cluster node only sets the mode and the peers).
    pub fn for_tests(node_id: NodeId) -> Self {
        let mut c = Self::parse_from(["kv-node", "--port", "0"]);
        c.node_id = node_id;
        c.log_level = "warn".into();
        c.cluster_secret = Some(TEST_CLUSTER_SECRET.into());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("kv-node").chain(args.iter().copied())).unwrap()
    }

    const PEERS: &str = "1=http://127.0.0.1:8081,2=http://127.0.0.1:8082,3=http://127.0.0.1:8083,4=http://127.0.0.1:8084,5=http://127.0.0.1:8085";

    #[test]
    fn leader_follower_defaults_to_majority_quorums() {
        let c = parse(&[
            "--mode",
            "leader-follower",
            "--role",
            "follower",
            "--node-id",
            "2",
            "--peers",
            PEERS,
        ]);
        let spec = c.cluster_spec().unwrap();
        assert_eq!((spec.config.n, spec.config.w, spec.config.r), (5, 3, 3));
        assert_eq!(spec.role, Role::Follower);
        assert_eq!(
            spec.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
        assert_eq!(spec.self_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn presets_name_the_quorums_and_explicit_flags_win() {
        let base = [
            "--mode",
            "leader-follower",
            "--role",
            "leader",
            "--peers",
            PEERS,
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            let c = parse(&args).cluster_spec().unwrap().config;
            (c.w, c.r)
        };
        assert_eq!(with(&["--preset", "W5R1"]), (5, 1));
        assert_eq!(with(&["--preset", "w1r5"]), (1, 5));
        assert_eq!(with(&["--preset", "W3R3", "--r", "2"]), (3, 2));
        let err = Config::try_parse_from(["kv-node", "--preset", "W5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected W<w>R<r>"), "{err}");
    }

    #[test]
    fn delay_profile_values_are_overridable() {
        let c = parse(&["--delay-profile", "assignment", "--ack-delay-ms", "7"]);
        assert_eq!(
            c.delays(),
            DelayProfile {
                send_ms: 200,
                ack_ms: 7,
                remote_read_ms: 50
            }
        );
        assert_eq!(parse(&[]).delays(), DelayProfile::OFF);
    }

    #[test]
    fn inconsistent_flags_are_refused_with_the_flag_named() {
        let no_role = parse(&["--mode", "leader-follower", "--peers", PEERS]);
        assert_eq!(
            no_role.cluster_spec().unwrap().role,
            Role::Follower,
            "--role is a hint"
        );
        let fast = parse(&[
            "--mode",
            "leader-follower",
            "--peers",
            PEERS,
            "--election-timeout-ms",
            "300",
        ]);
        assert!(fast
            .cluster_spec()
            .unwrap_err()
            .0
            .contains("--election-timeout-ms (300) must be at least twice --heartbeat-ms (250)"));
        let big_w = parse(&[
            "--mode",
            "leader-follower",
            "--role",
            "leader",
            "--peers",
            PEERS,
            "--w",
            "6",
        ]);
        assert!(big_w
            .cluster_spec()
            .unwrap_err()
            .0
            .contains("w must be between 1 and n=5"));
        let leaderless = parse(&["--mode", "leaderless", "--peers", PEERS]);
        let spec = leaderless.cluster_spec().unwrap();
        assert_eq!(
            (spec.config.w, spec.config.r, spec.role),
            (5, 1, Role::Peer)
        );
        assert!(parse(&["--peers", PEERS]).cluster_spec().is_err());
    }
}
