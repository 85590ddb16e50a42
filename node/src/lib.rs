//! `kv-node`: one replica of the replicated key-value store.
//!
//! # Layout
//! - [`config`]: command-line flags and environment variables (clap).
//! - [`store`]: the concurrent in-memory map of key → (value, version).
//! - [`error`]: `AppError`, the one error type of the HTTP boundary, and the
//!   extractors that turn every rejection into the same JSON shape.
//! - [`api`]: the thin HTTP handlers of the client API.
//! - [`ui`]: serves the dashboard built by trunk (embedded in release builds).
//! - [`server`]: the router, the shared state and `run(listener, shutdown)`.

pub mod api;
pub mod config;
pub mod error;
pub mod server;
pub mod store;
pub mod ui;

pub use config::Config;
pub use server::{app, run, AppState};
