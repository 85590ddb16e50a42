//! The wire protocol of the replicated key-value store.
//!
//! Every type that crosses HTTP — between a client and a node, between two
//! nodes, or between a node and the dashboard — is defined here and nowhere
//! else. The crate is pure Rust + serde so that it builds for the host and for
//! `wasm32-unknown-unknown` alike; fixed-width integers only, never `usize`.
//!
//! With the `openapi` feature (kv-node's `GET /openapi.json`), the types of
//! the client and admin API also derive `utoipa::ToSchema`, which reads their
//! serde attributes. A field typed with a domain alias (`NodeId`, `Version`,
//! `Term`, `Seq`) names its integer in `schema(value_type = ...)`: the derive
//! sees the alias's name, not what it stands for.
//!
//! # Layout
//! - [`ids`]: domain scalars (`NodeId`, `Version`) and the node's mode and role.
//! - [`admin`]: fault injection (`/admin/faults`): pause, crash, cut, delay,
//!   drop, clock skew, heal.
//! - [`api`]: client requests and responses (`/set`, `/get`, `/health`).
//! - [`cluster`]: N/W/R, the delay profile and `/status` (cluster view).
//! - [`error`]: the JSON error body every failing request returns.
//! - [`events`]: the dashboard's live feed (`GET /events`): cluster snapshots
//!   and write traces.
//! - [`leader_follower`]: node-to-node messages of leader-follower mode
//!   (`/internal/lf/...`): votes, log appends, snapshots; its `/status` fields.
//! - [`leaderless`]: node-to-node messages of leaderless mode (`/internal/ll/...`):
//!   replicated writes and hints, anti-entropy digests; its `/status` fields.
//! - [`limits`]: size limits on keys, values and bodies, and their validation.
//! - [`replication`]: node-to-node messages (`/internal/...`): log batches,
//!   snapshots, coordinated reads, read repair, configuration changes.

pub mod admin;
pub mod api;
pub mod cluster;
pub mod error;
pub mod events;
pub mod ids;
pub mod leader_follower;
pub mod leaderless;
pub mod limits;
pub mod replication;

pub use api::{
    GetResponse, HealthResponse, SetRequest, SetResponse, WriteStatus, GET_KEY_ROUTE, GET_PATH,
    HEALTH_PATH, LOCAL_READ_KEY_ROUTE, LOCAL_READ_PATH, METRICS_PATH, OPENAPI_PATH, SET_PATH,
};
pub use cluster::{CONFIG_PATH, STATUS_PATH};
pub use error::ErrorBody;
pub use ids::{Mode, NodeId, Role, Term, Version};
