//! Domain scalars and the enums that say what a node is.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifier of a node in a cluster: a small positive integer, unique per cluster.
pub type NodeId = u32;

/// Per-key version: a logical integer that orders the writes of one key.
///
/// Starts at 1 for the first write of a key and grows with every write.
pub type Version = u64;

/// A leader-follower term: a period with at most one leader. Terms only grow.
pub type Term = u64;

/// How a node replicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A single node with no replication (the phase-1 `kv-service`).
    #[default]
    Standalone,
    /// One leader decides every write; followers replicate its log.
    LeaderFollower,
    /// Every node may coordinate a write (Dynamo-style).
    Leaderless,
}

/// The part a node plays in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The only node of a standalone deployment.
    #[default]
    Standalone,
    /// The leader of a leader-follower cluster.
    Leader,
    /// A follower of a leader-follower cluster.
    Follower,
    /// A leader-follower node asking for votes to become leader.
    Candidate,
    /// An equal peer of a leaderless cluster.
    Peer,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Standalone => "standalone",
            Mode::LeaderFollower => "leader-follower",
            Mode::Leaderless => "leaderless",
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Standalone => "standalone",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Peer => "peer",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_and_role_use_kebab_case_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&Mode::LeaderFollower).unwrap(),
            "\"leader-follower\""
        );
        assert_eq!(Mode::LeaderFollower.to_string(), "leader-follower");
        assert_eq!(serde_json::to_string(&Role::Peer).unwrap(), "\"peer\"");
    }
}
