//! The router, the shared state and the server loop.

use crate::config::Config;
use crate::store::Store;
use crate::{api, error, ui};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use kv_shared::limits::MAX_BODY_BYTES;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

/// State shared by every handler: a cheap handle, cloned per request.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// The node's local store.
    pub store: Store,
}

impl AppState {
    /// State for a node with an empty store.
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            store: Store::new(),
        }
    }
}

/// The node's HTTP application, without a socket (tests use it with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/set", post(api::set))
        .route("/get", get(api::get_query))
        .route("/get/{key}", get(api::get_path))
        .route("/local_read", get(api::local_read_query))
        .route("/local_read/{key}", get(api::local_read_path))
        .route("/health", get(api::health))
        .fallback(ui::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES as usize))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the node on `listener` until `shutdown` completes, then finishes
/// the requests in flight and returns.
///
/// # Errors
/// An I/O error of the listener.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
