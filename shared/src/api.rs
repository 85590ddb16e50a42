//! Client-facing requests and responses.
//!
//! The shapes follow the original phase-1 document: `POST /set` takes
//! `{"key","value"}` and answers `{"key","value","version","status"}`;
//! `GET /get` answers `{"key","value","version"}`. Fields added since are
//! optional on the wire so that the original curl examples read the same.

/// Path of [`SetRequest`] (`POST`).
pub const SET_PATH: &str = "/set";
/// Path of the coordinated read `GET /get?key=K` ([`KeyQuery`], answered with [`GetResponse`]).
pub const GET_PATH: &str = "/get";
/// Route of the coordinated read with the key in the path, `GET /get/K`.
pub const GET_KEY_ROUTE: &str = "/get/{key}";
/// Path of the local read `GET /local_read?key=K` (this replica's copy only).
pub const LOCAL_READ_PATH: &str = "/local_read";
/// Route of the local read with the key in the path, `GET /local_read/K`.
pub const LOCAL_READ_KEY_ROUTE: &str = "/local_read/{key}";
/// Path of [`HealthResponse`] (`GET`).
pub const HEALTH_PATH: &str = "/health";
/// The path of the node's metrics in the Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";
/// The path of the OpenAPI 3.1 description of the client and admin API
/// (JSON), served by every node.
pub const OPENAPI_PATH: &str = "/openapi.json";
use crate::ids::{Mode, NodeId, Role, Version};
use serde::{Deserialize, Serialize};

/// Body of `POST /set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRequest {
    /// The key to write: 1 to 256 bytes of UTF-8, no control character
    /// (see [`crate::limits`]).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub key: String,
    /// The value to store; the empty string is a valid value.
    pub value: String,
}

/// Whether a write created the key or replaced an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WriteStatus {
    /// The key did not exist before this write.
    Created,
    /// The key existed and now holds the new value.
    Updated,
}

/// Answer of a successful `POST /set` (status 201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetResponse {
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: String,
    /// The version the write was given.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
    /// Whether the key was created or updated.
    pub status: WriteStatus,
    /// The node that decided the write, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub served_by: Option<NodeId>,
    /// The follower that received the request and forwarded it to the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub forwarded_by: Option<NodeId>,
}

/// Query string of `GET /get?key=K` and `GET /local_read?key=K`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct KeyQuery {
    /// The key to read: 1 to 256 bytes of UTF-8, no control character.
    #[cfg_attr(
        feature = "openapi",
        param(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
        )
    )]
    pub key: String,
}

/// Answer of a successful `GET /get` or `GET /local_read` (status 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GetResponse {
    /// The key read.
    pub key: String,
    /// Its value.
    pub value: String,
    /// The version of that value.
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub version: Version,
    /// The node that answered, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub served_by: Option<NodeId>,
}

/// Answer of `GET /health` (status 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// Always `"healthy"` when the node answers at all.
    pub status: String,
    /// The node's wall-clock time, RFC 3339 in UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub time: String,
    /// The node's id.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub node_id: NodeId,
    /// How the node replicates.
    pub mode: Mode,
    /// The node's role in its cluster.
    pub role: Role,
    /// Number of keys in the node's local store.
    pub keys: u64,
    /// Whether the node takes writes now. False only while a leader that has
    /// just started recovers its followers' state (writes answer 503 then).
    #[serde(default = "ready_by_default")]
    pub ready: bool,
}

/// Nodes that do not say otherwise are ready.
fn ready_by_default() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_response_has_the_seed_shape() {
        let r = SetResponse {
            key: "mykey".into(),
            value: "myvalue".into(),
            version: 1,
            status: WriteStatus::Created,
            served_by: None,
            forwarded_by: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"key":"mykey","value":"myvalue","version":1,"status":"created"}"#
        );
    }
}
