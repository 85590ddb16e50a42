//! The dashboard of the replicated key-value store.
//!
//! One page, served by every node at `/`: the cluster's topology with each
//! replica's role, health, position and lag; an operations panel (set, get,
//! local_read against any replica); the W/R and delay-profile controls; a
//! fault panel (pause, crash, restart, partitions, delay, loss, clock skew,
//! heal) behind the admin token; and each write drawn as it travels to the
//! replicas, timed by the cluster.
//! Live data comes from the serving node's `/events` stream; the browser never
//! polls the replicas itself.
//!
//! # Layout
//! - [`state`]: `State`, `Action` and the pure reducer (unit-tested natively);
//!   the instant drawn, the recorded history, the event log.
//! - [`lab`]: what the page works out from what it saw: readable versions,
//!   the quorum picture of a read, the staleness curve.
//! - [`api`]: calls to the nodes' HTTP API and the `/events` feed, returning a
//!   [`api::FetchState`] or an [`api::OpOutcome`].
//! - [`components`]: the panels; each takes `Props` with data and `Callback`s.
//! - [`app`]: the root component: owns the state, the feed and the clock.
//!
//! Every wire type comes from `kv-shared`; the UI has no copy of them.

pub mod api;
pub mod app;
pub mod components;
pub mod lab;
pub mod state;
