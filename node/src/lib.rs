//! `kv-node`: one replica of the replicated key-value store.
//!
//! # Layout
//! - [`config`]: command-line flags and environment variables (clap), checked
//!   into a cluster spec (id, role, peers, N/W/R, delay profile); a
//!   `FlagError` names the flag at fault.
//! - [`store`]: the concurrent in-memory map of key → (value, version).
//! - [`peers`]: static membership and up/down tracking of the other nodes.
//! - [`transport`]: node-to-node HTTP over one keep-alive pool, the send pacer
//!   of the delay profile, the health prober.
//! - [`peer_stream`]: connections kept open to a peer for one kind of message
//!   (the leader's appends to each follower, a coordinator's batches of
//!   reads, a leaderless coordinator's batches of writes): upgraded
//!   connections of authenticated, numbered frames instead of one request
//!   per message, and the receiving end of them.
//! - [`faults`]: faults injected into the node's own transport (cut messages
//!   to or from chosen peers).
//! - [`security`]: the cluster secret, the admin token, the `Host` and
//!   `Origin` policy.
//! - [`validate`]: checks of everything peers send (ids, terms, epochs,
//!   configurations, versions, clock offsets) before it reaches a store.
//! - [`cluster`]: the node's cluster context: identity, peers, transport, the
//!   live W/R configuration and its propagation.
//! - [`reads`]: reads coordinated over R replicas (digest reads in
//!   leaderless mode), with read repair: the read quorum as a state machine
//!   (`reads::core`, with a seeded random test in its tests), the runtime in
//!   the module.
//! - [`leader_follower`]: leader-follower replication: terms, elections, the
//!   replicated log (`leader_follower::log`), the node's state machine
//!   (`leader_follower::core`, with a seeded simulation in its tests), the
//!   runtime in the module, its node-to-node handlers
//!   (`leader_follower::endpoints`).
//! - [`leaderless`]: leaderless (Dynamo-style) replication: hybrid logical
//!   clock, write coordinator, hints, Merkle anti-entropy (state machines
//!   and their runtime).
//! - [`replication`]: which mode a node runs; dispatches client operations.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format: requests by
//!   route and status with latency histograms, and the `/status` figures.
//! - [`internal`]: the thin handlers of the node-to-node endpoints both modes
//!   share, and the fault middleware of every node-to-node request.
//! - [`error`]: `ReplicationError`, what the runtimes and the read path
//!   return (no HTTP in it), `Invalid` for refused peer messages, and
//!   `AppError`, the one error type of the HTTP boundary, with the one
//!   translation between them and the extractors that turn every rejection
//!   into the same JSON shape.
//! - [`api`]: the thin HTTP handlers of the client API.
//! - [`openapi`]: the OpenAPI description of the client and admin API
//!   (`GET /openapi.json`), checked against a real node by schemathesis.
//! - [`events`]: the dashboard's live feed (`GET /events`, Server-Sent Events):
//!   the hub the runtimes report traces into (`events::hub`), the aggregator
//!   and relays (`events::relay`), the pure snapshot assembly
//!   (`events::view`) and the handler (`events::sse`).
//! - [`ui`]: serves the dashboard built by trunk (embedded in release builds),
//!   brotli- or gzip-compressed to browsers that take it, and its favicon.
//! - [`server`]: the router, the CORS policy of its routes, the shared state
//!   and `run(listener, shutdown)` (its connections bounded in number and in
//!   time).

pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod events;
pub mod faults;
pub mod internal;
pub mod leader_follower;
pub mod leaderless;
pub mod metrics;
pub mod openapi;
pub mod peer_stream;
pub mod peers;
pub mod reads;
pub mod replication;
pub mod security;
pub mod server;
pub mod store;
pub mod transport;
pub mod ui;
pub mod validate;

pub use config::Config;
pub use server::{app, run, AppState};
