//! Fault injection (the nemesis): `/admin/faults`, behind the admin token.
//!
//! | endpoint | body | answer |
//! | --- | --- | --- |
//! | `POST /admin/faults` | [`FaultRequest`] | 200 [`FaultsStatus`] (for `crash`: 202, then the process exits; for `restart`: 202, then it starts again, empty) |
//! | `GET /admin/faults` | — | 200 [`FaultsStatus`] |
//!
//! Faults act inside the node — in its own transport and request handling —
//! so they work for nodes that share one loopback address:
//!
//! ```text
//! curl -X POST localhost:8081/admin/faults -H "Authorization: Bearer $ADMIN_TOKEN" \
//!   -H 'Content-Type: application/json' -d '{"kind":"cut","peers":[2,3],"direction":"both"}'
//! curl -X POST localhost:8081/admin/faults -H "Authorization: Bearer $ADMIN_TOKEN" \
//!   -H 'Content-Type: application/json' -d '{"kind":"heal"}'
//! ```

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// Where faults are injected and listed.
pub const FAULTS_PATH: &str = "/admin/faults";

/// Longest pause, delay or fault duration accepted, in ms (10 minutes).
pub const MAX_FAULT_MS: u64 = 600_000;

/// Largest clock skew accepted, in ms either way.
pub const MAX_SKEW_MS: i64 = 60_000;

/// Which messages between this node and the named peers a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// What this node sends (its requests, and its answers to their requests).
    Outgoing,
    /// What this node receives from them.
    Incoming,
}

impl Direction {
    /// Whether the fault hits what this node sends.
    pub fn outgoing(self) -> bool {
        matches!(self, Direction::Both | Direction::Outgoing)
    }

    /// Whether the fault hits what this node receives.
    pub fn incoming(self) -> bool {
        matches!(self, Direction::Both | Direction::Incoming)
    }
}

/// A fault to inject (`POST /admin/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultRequest {
    /// Stop answering and sending for `duration_ms` (as if the process were
    /// stopped); requests that arrive meanwhile wait, then are served.
    /// `/admin/faults` keeps answering (a `heal` ends the pause).
    Pause {
        /// How long, at most [`MAX_FAULT_MS`].
        #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 600_000))]
        duration_ms: u64,
    },
    /// Exit the process at once, losing everything in memory (a supervisor
    /// or the load tester may start it again, empty).
    Crash,
    /// Exit and start again at once, empty: the process replaces itself by
    /// a fresh run of its own executable with the same arguments and
    /// environment (the same pid, so whatever supervises it still knows
    /// it). Only a node running as the `kv-node` executable can (400
    /// otherwise).
    Restart,
    /// Lose every message to and/or from `peers` (a partition; one-way with
    /// a direction).
    Cut {
        /// The peers.
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<u32>))]
        peers: Vec<NodeId>,
        /// Which way.
        #[serde(default)]
        direction: Direction,
    },
    /// Delay every message to and/or from `peers` by `ms`.
    Delay {
        /// The peers.
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<u32>))]
        peers: Vec<NodeId>,
        /// The delay, at most [`MAX_FAULT_MS`].
        #[cfg_attr(feature = "openapi", schema(maximum = 600_000))]
        ms: u64,
        /// Which way.
        #[serde(default)]
        direction: Direction,
    },
    /// Lose each message to and/or from `peers` with probability `probability`.
    Drop {
        /// The peers.
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<u32>))]
        peers: Vec<NodeId>,
        /// In 0..=1.
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
        probability: f64,
        /// Which way.
        #[serde(default)]
        direction: Direction,
    },
    /// Run the node's clock `ms` ahead (or behind, negative) of the wall
    /// clock: leaderless versions and clock readings shift by that much.
    Skew {
        /// The offset, at most [`MAX_SKEW_MS`] either way.
        #[cfg_attr(feature = "openapi", schema(minimum = -60_000, maximum = 60_000))]
        ms: i64,
    },
    /// Remove every fault in force (pause, cuts, delays, drops, skew).
    Heal,
}

/// A fault in force, as `GET /admin/faults` and `/status` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActiveFault {
    /// `pause`, `cut`, `delay`, `drop` or `skew`.
    pub kind: String,
    /// The peers it hits (empty for pause and skew).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<u32>))]
    pub peers: Vec<NodeId>,
    /// Which way (cut, delay, drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Delay or skew in ms; for a pause, the ms left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<i64>,
    /// Drop probability, in percent (rounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// For people: `cut from 2, 3 (both ways)`.
    pub description: String,
}

/// The faults in force on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultsStatus {
    /// The node.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub node_id: NodeId,
    /// Every fault in force.
    pub active: Vec<ActiveFault>,
    /// Faults injected since the node started (heals not counted).
    pub injected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_requests_read_as_the_curl_examples_write_them() {
        let cut: FaultRequest =
            serde_json::from_str(r#"{"kind":"cut","peers":[2,3],"direction":"outgoing"}"#).unwrap();
        assert_eq!(
            cut,
            FaultRequest::Cut {
                peers: vec![2, 3],
                direction: Direction::Outgoing
            }
        );
        let both: FaultRequest = serde_json::from_str(r#"{"kind":"cut","peers":[2]}"#).unwrap();
        assert!(matches!(
            both,
            FaultRequest::Cut {
                direction: Direction::Both,
                ..
            }
        ));
        let heal: FaultRequest = serde_json::from_str(r#"{"kind":"heal"}"#).unwrap();
        assert_eq!(heal, FaultRequest::Heal);
        let skew: FaultRequest = serde_json::from_str(r#"{"kind":"skew","ms":-300}"#).unwrap();
        assert_eq!(skew, FaultRequest::Skew { ms: -300 });
        assert!(serde_json::from_str::<FaultRequest>(r#"{"kind":"explode"}"#).is_err());
    }
}
