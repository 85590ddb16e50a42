//! The dashboard of the replicated key-value store.
//!
//! # Layout
//! - [`api`]: calls to the node's HTTP API, returning a [`api::FetchState`].
//! - [`app`]: the root component.
//!
//! Every wire type comes from `kv-shared`; the UI has no copy of them.

pub mod api;
pub mod app;
