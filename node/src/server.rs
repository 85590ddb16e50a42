//! The router, the shared state and the server loop.
//!
//! [`run`] accepts connections itself (hyper's connection builder under
//! axum's router) so that every connection is bounded: at most
//! `--max-connections` open at once (further ones are closed at once and
//! counted), a request head must arrive within `--header-timeout-ms` (also
//! between two requests of a kept-alive connection: an idle connection is
//! closed), and a body within `--body-timeout-ms` (408 otherwise). Bodies are
//! limited to [`MAX_BODY_BYTES`] (client routes) and [`MAX_INTERNAL_BODY_BYTES`]
//! (node-to-node routes, which also need the cluster secret).

use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::replication::Replication;
use crate::security::{self, Security};
use crate::store::Store;
use crate::{api, error, events, internal, leader_follower, leaderless, openapi, transport, ui};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kv_shared::admin::FAULTS_PATH;
use kv_shared::leader_follower::{APPEND_PATH, SNAPSHOT_PATH, STREAM_PATH, VOTE_PATH};
use kv_shared::leaderless::{
    LL_DIGEST_PATH, LL_FETCH_PATH, LL_KEYS_PATH, LL_WRITE_PATH, LL_WRITE_STREAM_PATH,
};
use kv_shared::limits::{MAX_BODY_BYTES, MAX_INTERNAL_BODY_BYTES};
use kv_shared::replication::{
    INTERNAL_CONFIG_PATH, INTERNAL_READS_PATH, INTERNAL_READS_STREAM_PATH, INTERNAL_READ_PATH,
    REPAIR_PATH,
};
use kv_shared::{
    CONFIG_PATH, GET_KEY_ROUTE, GET_PATH, HEALTH_PATH, LOCAL_READ_KEY_ROUTE, LOCAL_READ_PATH,
    METRICS_PATH, OPENAPI_PATH, SET_PATH, STATUS_PATH,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

/// State shared by every handler: a cheap handle (one reference count),
/// cloned several times per request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// The node's flags.
    pub config: Arc<Config>,
    /// The node's local store.
    pub store: Store,
    /// Identity, peers, transport and live W/R of the node's cluster.
    pub cluster: Cluster,
    /// The replication mode the node runs.
    pub replication: Replication,
    /// Who may do what: cluster secret, admin token, hosts and origins.
    pub security: Security,
    /// Requests counted for `/metrics`.
    pub metrics: Metrics,
    /// Background tasks started by [`run`]; aborted when it returns.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl AppState {
    /// State for a node with an empty store.
    ///
    /// # Errors
    /// When the flags do not describe a valid cluster.
    pub fn try_new(config: Config) -> Result<Self, crate::config::FlagError> {
        let spec = config.cluster_spec()?;
        let security = Security::from_config(&config, &spec)?;
        let store = Store::new();
        let cluster = Cluster::from_config(&config, security.cluster_secret().cloned())?;
        let replication = Replication::new(&cluster, &store, &config)?;
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            store,
            cluster,
            replication,
            security,
            metrics: Metrics::default(),
            tasks: Mutex::default(),
        })))
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
        self.cluster.stop();
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

/// Whether cross-origin calls may reach `path` at all (the CORS policy of
/// the routes below, applied by [`security::cors`] for the allowed origins):
/// the data operations, and fault injection (the dashboard served by one
/// replica injects faults into the others; it needs the admin token, which a
/// page of an origin that is not the cluster's cannot send, as CORS refuses
/// it the header). A client route the dashboard calls on *another* node must
/// be listed here, or the browser refuses the call.
pub fn cross_origin_path(path: &str) -> bool {
    const EXACT: [&str; 5] = [
        SET_PATH,
        GET_PATH,
        LOCAL_READ_PATH,
        HEALTH_PATH,
        FAULTS_PATH,
    ];
    const KEYED: [&str; 2] = [GET_PATH, LOCAL_READ_PATH];
    EXACT.contains(&path)
        || KEYED.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// The client API: what users, the dashboard and the load tester call.
fn client_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(SET_PATH, post(api::set))
        .route(GET_PATH, get(api::get_query))
        .route(GET_KEY_ROUTE, get(api::get_path))
        .route(LOCAL_READ_PATH, get(api::local_read_query))
        .route(LOCAL_READ_KEY_ROUTE, get(api::local_read_path))
        .route(HEALTH_PATH, get(api::health))
        .route(STATUS_PATH, get(api::status))
        .route(CONFIG_PATH, get(api::get_config).post(api::post_config))
        .route(kv_shared::events::EVENTS_PATH, get(events::events))
        .route(FAULTS_PATH, get(api::get_faults).post(api::post_faults))
        .route(METRICS_PATH, get(api::metrics))
        .route(OPENAPI_PATH, get(openapi::openapi_json))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES as usize))
        .layer(axum::middleware::from_fn_with_state(
            u64::from(MAX_BODY_BYTES),
            error::refuse_declared_over,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::count_request,
        ))
}

/// Node-to-node endpoints, with a body limit sized for batches and snapshots.
fn internal_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(VOTE_PATH, post(leader_follower::endpoints::vote))
        .route(APPEND_PATH, post(leader_follower::endpoints::append))
        .route(SNAPSHOT_PATH, post(leader_follower::endpoints::snapshot))
        .route(STREAM_PATH, post(leader_follower::endpoints::append_stream))
        .route(INTERNAL_READ_PATH, get(internal::read))
        .route(INTERNAL_READS_PATH, post(internal::reads))
        .route(INTERNAL_READS_STREAM_PATH, post(internal::reads_stream))
        .route(REPAIR_PATH, post(internal::repair))
        .route(INTERNAL_CONFIG_PATH, post(internal::config))
        .route(LL_WRITE_PATH, post(leaderless::endpoints::write))
        .route(
            LL_WRITE_STREAM_PATH,
            post(leaderless::endpoints::write_stream),
        )
        .route(LL_DIGEST_PATH, post(leaderless::endpoints::digest))
        .route(LL_KEYS_PATH, post(leaderless::endpoints::keys))
        .route(LL_FETCH_PATH, post(leaderless::endpoints::fetch))
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY_BYTES as usize))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            internal::refuse_cut_peers,
        ))
        // Outermost: nothing of an unsigned request is read.
        .layer(axum::middleware::from_fn_with_state(
            state.security.clone(),
            security::authenticate_peer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::count_request,
        ))
}

/// The node's HTTP application, without a socket (tests use it with `oneshot`).
pub fn app(state: AppState) -> Router {
    let body_timeout = Duration::from_millis(state.config.body_timeout_ms.max(1));
    Router::new()
        .merge(client_routes(&state))
        .merge(internal_routes(&state))
        .fallback(ui::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.cluster.faults().clone(),
            pause_gate,
        ))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(axum::middleware::from_fn_with_state(
            state.security.clone(),
            security::browser_policy,
        ))
        // Outermost, so that it answers preflights; it allows the data routes only.
        .layer(security::cors(&state.security, cross_origin_path))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A connection that fails its next read once nothing was read or written
/// for `idle` (hyper times out a started request head, not a connection
/// that sends nothing at all). Activity only records the time; the timer is
/// re-armed when it fires, so a busy connection costs no timer operation
/// per read or write.
struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    last_active: tokio::time::Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            last_active: tokio::time::Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn active(&mut self) {
        self.last_active = tokio::time::Instant::now();
    }

    /// Whether the connection has been idle for too long (re-arms the timer
    /// for the rest of the period otherwise).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        // Bounded: each turn either returns or moves the deadline forward.
        for _ in 0..4 {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last_active + self.idle;
            if tokio::time::Instant::now() >= due {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
        false
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.poll_expired(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle connection closed (--idle-timeout-ms)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Holds every request while the node is paused by an injected fault, but
/// those to `/admin/faults` (so that a heal gets through).
async fn pause_gate(
    axum::extract::State(faults): axum::extract::State<crate::faults::Faults>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() != FAULTS_PATH {
        faults.wait_unpaused().await;
    }
    next.run(req).await
}

/// File descriptors kept free for what is not a client connection: the
/// connection pool to peers, outgoing event relays, the log.
const RESERVED_FDS: u64 = 256;

/// `--max-connections`, lowered to what the open-file limit allows: the soft
/// limit is raised to the hard one first (so a `ulimit -n 1024` shell does
/// not cap a node that may open more), and if that is still too low the
/// cap is lowered with a warning, so that the node refuses connections it
/// cannot serve instead of failing every `accept` with "Too many open files".
fn connection_limit(flag: u32) -> usize {
    let wanted = u64::from(flag.max(1));
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => {
            let usable = files.saturating_sub(RESERVED_FDS).max(1);
            if wanted > usable {
                tracing::warn!(
                    "--max-connections {wanted} is more than the open-file limit ({files}) allows; \
                     serving at most {usable} connections (raise `ulimit -n` for more)"
                );
                return usize::try_from(usable).unwrap_or(usize::MAX);
            }
        }
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
    usize::try_from(wanted).unwrap_or(usize::MAX)
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
    let router = app(state.clone());
    // HTTP/1.1 only: the version sniffing of `auto` waits for the first bytes
    // without any timeout, so an idle connection would never be closed.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(state.config.header_timeout_ms.max(1)));
    let slots = Arc::new(Semaphore::new(connection_limit(
        state.config.max_connections,
    )));
    let graceful = GracefulShutdown::new();
    let idle = Duration::from_millis(state.config.idle_timeout_ms.max(1));
    let security = state.security.clone();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // accept: wait a little instead of spinning.
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let refused = security::count(&security.refusals().refused_connections);
            if refused.is_power_of_two() {
                tracing::warn!(refused, "connection closed: --max-connections are open");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stream = IdleTimeout::new(stream, idle);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        let security = security.clone();
        security::count(&security.refusals().open_connections);
        tokio::spawn(async move {
            let _ = conn.await;
            security
                .refusals()
                .open_connections
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    // Open event streams never end by themselves: end them, then let the
    // requests in flight finish (bounded).
    state.cluster.events().close();
    let grace = Duration::from_secs(10);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {grace:?} after shutdown; closing them");
    }
    state.stop_background();
    Ok(())
}
