//! The JSON body of every error response.

use crate::ids::{NodeId, Term};
use serde::{Deserialize, Serialize};

/// Body of every non-2xx response: `{"error": "..."}` plus optional details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Human-readable description of what went wrong.
    pub error: String,
    /// For a write that missed its quorum: how many replicas acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<u32>,
    /// For a write that missed its quorum: how many acknowledgements it needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<u32>,
    /// For a request that had to reach the leader: which node that is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub leader: Option<NodeId>,
    /// Leader-follower mode, for a request that needed a leader: the term
    /// the answering node is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub term: Option<Term>,
}

impl ErrorBody {
    /// An error body with only a message.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            acked: None,
            required: None,
            leader: None,
            term: None,
        }
    }
}
