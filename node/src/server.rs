//! The router, the shared state and the server loop.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::replication::Replication;
use crate::store::Store;
use crate::{api, error, events, internal, leaderless, transport, ui};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use kv_shared::leader_follower::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use kv_shared::limits::MAX_BODY_BYTES;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

/// Largest body of a node-to-node message (batches and snapshots), in bytes.
pub const MAX_INTERNAL_BODY_BYTES: usize = 1024 * 1024 * 1024;

/// State shared by every handler: a cheap handle, cloned per request.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The node's flags.
    pub config: Arc<Config>,
    /// The node's local store.
    pub store: Store,
    /// Identity, peers, transport and live W/R of the node's cluster.
    pub cluster: Cluster,
    /// The replication mode the node runs.
    pub replication: Replication,
    /// Background tasks started by [`run`]; aborted when it returns.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl AppState {
    /// State for a node with an empty store.
    ///
    /// # Errors
    /// When the flags do not describe a valid cluster.
    pub fn try_new(config: Config) -> Result<Self, String> {
        let store = Store::new();
        let cluster = Cluster::from_config(&config)?;
        let replication = Replication::new(&cluster, &store, &config)?;
        Ok(Self {
            config: Arc::new(config),
            store,
            cluster,
            replication,
            tasks: Arc::default(),
        })
    }

    /// State for a node with an empty store.
    ///
    /// # Panics
    /// When the flags do not describe a valid cluster (see [`AppState::try_new`]).
    pub fn new(config: Config) -> Self {
        match Self::try_new(config) {
            Ok(s) => s,
            Err(e) => panic!("invalid node configuration: {e}"),
        }
    }

    /// Starts the health prober and the replication mode's tasks.
    pub fn start_background(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if !tasks.is_empty() || self.cluster.peers().list().is_empty() {
            return;
        }
        let probe =
            transport::probe_peers(self.cluster.transport().clone(), self.cluster.heartbeat());
        tasks.push(tokio::spawn(probe));
        tasks.extend(self.replication.spawn_background());
    }

    /// Stops the background tasks and every further message to peers.
    pub fn stop_background(&self) {
        self.replication.stop();
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The client API: what users, the dashboard and the load tester call.
fn client_routes() -> Router<AppState> {
    Router::new()
        .route("/set", post(api::set))
        .route("/get", get(api::get_query))
        .route("/get/{key}", get(api::get_path))
        .route("/local_read", get(api::local_read_query))
        .route("/local_read/{key}", get(api::local_read_path))
        .route("/health", get(api::health))
        .route("/status", get(api::status))
        .route("/config", get(api::get_config).post(api::post_config))
        .route("/events", get(events::events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES as usize))
}

/// Node-to-node endpoints, with a body limit sized for batches and snapshots.
fn internal_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(VOTE_PATH, post(internal::vote))
        .route(APPEND_PATH, post(internal::append))
        .route(SNAPSHOT_PATH, post(internal::snapshot))
        .route("/internal/read", get(internal::read))
        .route("/internal/repair", post(internal::repair))
        .route("/internal/config", post(internal::config))
        .route("/internal/ll/write", post(leaderless::endpoints::write))
        .route("/internal/ll/digest", post(leaderless::endpoints::digest))
        .route("/internal/ll/keys", post(leaderless::endpoints::keys))
        .route("/internal/ll/fetch", post(leaderless::endpoints::fetch))
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            internal::refuse_cut_peers,
        ))
}

/// The node's HTTP application, without a socket (tests use it with `oneshot`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(client_routes())
        .merge(internal_routes(&state))
        .fallback(ui::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Outermost, so that it answers preflights; it allows the data routes only.
        .layer(events::cors())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the node on `listener` until `shutdown` completes, then finishes
/// the requests in flight, stops the background tasks and returns.
///
/// # Errors
/// An I/O error of the listener.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.start_background();
    // Open event streams never end by themselves: end them on shutdown.
    let hub = state.cluster.events().clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let result = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    state.stop_background();
    result
}
