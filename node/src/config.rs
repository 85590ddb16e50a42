//! Configuration of a node, from flags and environment variables.

use clap::Parser;
use kv_shared::{Mode, NodeId, Role};
use std::net::IpAddr;

/// Flags of `kv-node`. Every flag can also be given as the environment
/// variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(name = "kv-node", version, about = "A replica of the replicated key-value store")]
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
}

impl Config {
    /// How this node replicates.
    pub fn mode(&self) -> Mode {
        Mode::Standalone
    }

    /// The part this node plays in its cluster.
    pub fn role(&self) -> Role {
        Role::Standalone
    }

    /// A configuration for tests: port 0 (any free port) on 127.0.0.1.
    pub fn for_tests(node_id: NodeId) -> Self {
        Self {
            port: 0,
            bind: IpAddr::from([127, 0, 0, 1]),
            node_id,
            log_level: "warn".into(),
        }
    }
}
