//! Handlers of the client API. They stay thin: parse, call the store or the
//! replication mode, translate the answer.

use crate::error::{ApiJson, ApiPath, ApiQuery, AppError};
use crate::leader_follower::FORWARDED_BY_HEADER;
use crate::replication::local_read;
use crate::security::AdminAction;
use crate::server::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use kv_shared::admin::{FaultRequest, FaultsStatus};
use kv_shared::api::KeyQuery;
use kv_shared::cluster::{ClusterConfig, ConfigUpdate, StatusResponse};
use kv_shared::events::NodeEventKind;
use kv_shared::limits::{validate_key, validate_set};
use kv_shared::{ErrorBody, GetResponse, HealthResponse, NodeId, SetRequest, SetResponse};

/// `POST /set`: writes a key and answers 201 with its new version. In a
/// cluster, the write is decided by the mode (on a follower: forwarded to the
/// leader).
#[utoipa::path(
    post,
    path = kv_shared::SET_PATH,
    tag = "data",
    request_body = SetRequest,
    responses(
        (status = 201, description = "Written; the answer names the new version.", body = SetResponse),
        (status = 400, description = "Not the JSON described, or a key that is empty, over 256 \
            bytes or holds a control character.", body = ErrorBody),
        (status = 409, description = "The key is at the highest version the cluster hands out.",
            body = ErrorBody),
        (status = 413, description = "A value over 64 KiB, or a body over 128 KiB.", body = ErrorBody),
        (status = 502, description = "Leader-follower, on a follower: the leader's answer could \
            not be read.", body = ErrorBody),
        (status = 503, description = "The write quorum was not met (`acked`, `required`), or, in \
            leader-follower mode, no leader is known or reachable, or it is not ready yet \
            (`leader`, `term`).", body = ErrorBody),
    ),
)]
pub async fn set(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SetRequest>,
) -> Result<(StatusCode, Json<SetResponse>), AppError> {
    validate_set(&req)?;
    let forwarded_by: Option<NodeId> = headers
        .get(FORWARDED_BY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let resp = state
        .replication
        .write(&state.cluster, &state.store, req, forwarded_by)
        .await?;
    Ok((StatusCode::CREATED, Json(resp)))
}

/// `GET /get?key=K`: the newest copy among R replicas.
#[utoipa::path(
    get,
    path = kv_shared::GET_PATH,
    tag = "data",
    params(KeyQuery),
    responses(
        (status = 200, description = "The newest copy among R replicas.", body = GetResponse),
        (status = 400, description = "No `key`, or a key that is empty, over 256 bytes, holds a \
            control character or is not UTF-8.", body = ErrorBody),
        (status = 404, description = "No replica consulted holds the key.", body = ErrorBody),
        (status = 503, description = "The read quorum was not met, or, in leader-follower mode, \
            no leader answered.", body = ErrorBody),
    ),
)]
pub async fn get_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, q.key).await
}

/// `GET /get/{key}`.
#[utoipa::path(
    get,
    path = kv_shared::GET_KEY_ROUTE,
    tag = "data",
    params((
        "key" = String, Path,
        description = "The key to read: 1 to 256 bytes of UTF-8, no control character.",
        min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )),
    responses(
        (status = 200, description = "The newest copy among R replicas.", body = GetResponse),
        (status = 400, description = "A key that is empty, over 256 bytes, holds a \
            control character or is not UTF-8.", body = ErrorBody),
        (status = 404, description = "No replica consulted holds the key.", body = ErrorBody),
        (status = 503, description = "The read quorum was not met, or, in leader-follower mode, \
            no leader answered.", body = ErrorBody),
    ),
)]
pub async fn get_path(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, key).await
}

async fn read(state: &AppState, key: String) -> Result<Json<GetResponse>, AppError> {
    validate_key(&key)?;
    let resp = state
        .replication
        .read(&state.cluster, &state.store, key)
        .await?;
    Ok(Json(resp))
}

/// `GET /local_read?key=K`: this node's own copy, never coordinated.
#[utoipa::path(
    get,
    path = kv_shared::LOCAL_READ_PATH,
    tag = "data",
    params(KeyQuery),
    responses(
        (status = 200, description = "This node's own copy.", body = GetResponse),
        (status = 400, description = "No `key`, or a key that is empty, over 256 bytes, holds a \
            control character or is not UTF-8.", body = ErrorBody),
        (status = 404, description = "This node does not hold the key.", body = ErrorBody),
    ),
)]
pub async fn local_read_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    local(&state, q.key)
}

/// `GET /local_read/{key}`.
#[utoipa::path(
    get,
    path = kv_shared::LOCAL_READ_KEY_ROUTE,
    tag = "data",
    params((
        "key" = String, Path,
        description = "The key to read: 1 to 256 bytes of UTF-8, no control character.",
        min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )),
    responses(
        (status = 200, description = "This node's own copy.", body = GetResponse),
        (status = 400, description = "A key that is empty, over 256 bytes, holds a \
            control character or is not UTF-8.", body = ErrorBody),
        (status = 404, description = "This node does not hold the key.", body = ErrorBody),
    ),
)]
pub async fn local_read_path(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<GetResponse>, AppError> {
    local(&state, key)
}

fn local(state: &AppState, key: String) -> Result<Json<GetResponse>, AppError> {
    validate_key(&key)?;
    Ok(Json(local_read(&state.cluster, &state.store, key)?))
}

/// `GET /health`: answers 200 while the node runs.
#[utoipa::path(
    get,
    path = kv_shared::HEALTH_PATH,
    tag = "cluster",
    responses((status = 200, description = "The node runs.", body = HealthResponse)),
)]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy".into(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        node_id: state.cluster.node_id(),
        mode: state.cluster.mode(),
        role: state.replication.role(&state.cluster),
        keys: state.store.len(),
        ready: state.replication.is_ready(),
    })
}

/// `GET /status`: this node, its configuration, its peers and (on the
/// leader) each follower's lag.
#[utoipa::path(
    get,
    path = kv_shared::STATUS_PATH,
    tag = "cluster",
    responses((status = 200, description = "This node and its view of the cluster.",
        body = StatusResponse)),
)]
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    Json(full_status(&state))
}

/// `/status`'s answer: replication, security and faults.
fn full_status(state: &AppState) -> StatusResponse {
    let mut status = state.replication.status(&state.cluster, &state.store);
    let mut security = state.security.status();
    security.refused_event_streams = state.cluster.events().refused_streams();
    status.security = Some(security);
    status.faults = Some(faults_status(state));
    status
}

/// `GET /metrics`: requests and the `/status` figures in the Prometheus
/// text format (see [`crate::metrics`]).
#[utoipa::path(
    get,
    path = kv_shared::METRICS_PATH,
    tag = "observability",
    responses((status = 200, description = "Prometheus / OpenMetrics text.", body = String,
        content_type = "application/openmetrics-text")),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&full_status(&state));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

fn faults_status(state: &AppState) -> FaultsStatus {
    let faults = state.cluster.faults();
    FaultsStatus {
        node_id: state.cluster.node_id(),
        active: faults.active(),
        injected: faults.injected(),
    }
}

/// `GET /admin/faults`: the faults in force (needs the admin token).
///
/// # Errors
/// 401/403 without the admin token.
#[utoipa::path(
    get,
    path = kv_shared::admin::FAULTS_PATH,
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The faults in force.", body = FaultsStatus),
        (status = 401, description = "No admin token, or another one.", body = ErrorBody),
        (status = 403, description = "The node has no admin token (or a foreign `Host`).",
            body = ErrorBody),
    ),
)]
pub async fn get_faults(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FaultsStatus>, AppError> {
    state.security.authorize(&headers, AdminAction::Faults)?;
    Ok(Json(faults_status(&state)))
}

/// `POST /admin/faults`: injects a fault or heals them all (see
/// [`crate::faults`]); `crash` answers 202 and exits the process, `restart`
/// answers 202 and replaces it by a fresh run of itself.
///
/// # Errors
/// 401/403 without the admin token; 400 for an unknown peer or a value out
/// of range, or a `restart` of a node that is not the `kv-node` executable.
#[utoipa::path(
    post,
    path = kv_shared::admin::FAULTS_PATH,
    tag = "admin",
    security(("admin_token" = [])),
    request_body = FaultRequest,
    responses(
        (status = 200, description = "Injected (or healed); the faults now in force.",
            body = FaultsStatus),
        (status = 202, description = "`crash` or `restart` taken: the process exits (or starts \
            again, empty) right after this answer.", body = FaultsStatus),
        (status = 400, description = "Not the JSON described, a peer that is not one, a value \
            out of range, a skew outside leaderless mode, or a `restart` of a node that cannot.",
            body = ErrorBody),
        (status = 401, description = "No admin token, or another one.", body = ErrorBody),
        (status = 403, description = "The node has no admin token (or a foreign `Host`, or a \
            cross-origin call from an origin it does not allow).", body = ErrorBody),
    ),
)]
pub async fn post_faults(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<FaultRequest>,
) -> Result<(StatusCode, Json<FaultsStatus>), AppError> {
    state.security.authorize(&headers, AdminAction::Faults)?;
    if req == FaultRequest::Restart
        && !(state.config.self_restart && std::path::Path::new(SELF_EXE).exists())
    {
        return Err(AppError::bad_request(
            "this node cannot restart itself: it does not run as the kv-node executable \
             (a node served inside another program, or a system without /proc/self/exe)",
        ));
    }
    let cluster = &state.cluster;
    let peers = cluster.peers().ids();
    let leaderless = state.replication.leaderless().is_some();
    let description = cluster
        .faults()
        .apply(&req, &peers, leaderless)
        .map_err(|e| AppError::bad_request(e.0))?;
    tracing::warn!(node = cluster.node_id(), "fault injection: {description}");
    let term = state
        .replication
        .leader_follower()
        .map_or(0, crate::leader_follower::LeaderFollower::term);
    cluster.events().node_event(
        cluster.node_id(),
        term,
        NodeEventKind::Fault {
            description: description.clone(),
        },
    );
    if req == FaultRequest::Crash {
        // Answer first, then go: the caller learns the crash was taken.
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tracing::error!("exiting: crash injected through /admin/faults");
            std::process::exit(CRASH_EXIT_CODE);
        });
        return Ok((StatusCode::ACCEPTED, Json(faults_status(&state))));
    }
    if req == FaultRequest::Restart {
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            restart_empty();
        });
        return Ok((StatusCode::ACCEPTED, Json(faults_status(&state))));
    }
    Ok((StatusCode::OK, Json(faults_status(&state))))
}

/// The running executable (even when its file was replaced or deleted).
const SELF_EXE: &str = "/proc/self/exe";

/// Replaces this process by a fresh run of its own executable, with the
/// same arguments and environment: everything in memory is lost, the pid
/// stays. Its sockets close on exec (Rust opens them close-on-exec), so the
/// new run can bind the same port. Exits like a crash when the exec fails.
fn restart_empty() {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "kv-node".into());
    tracing::warn!("restarting empty: re-executing {SELF_EXE} with the same arguments");
    let err = std::process::Command::new(SELF_EXE)
        .arg0(arg0)
        .args(args)
        .exec();
    tracing::error!("restart failed ({err}); exiting as a crash");
    std::process::exit(CRASH_EXIT_CODE);
}

/// The exit status of a crash injected through `/admin/faults`.
pub const CRASH_EXIT_CODE: i32 = 137;

/// `GET /config`: N, W, R and the delay profile in force.
#[utoipa::path(
    get,
    path = kv_shared::CONFIG_PATH,
    tag = "cluster",
    responses((status = 200, description = "N, W, R and the delay profile in force.",
        body = ClusterConfig)),
)]
pub async fn get_config(State(state): State<AppState>) -> Json<ClusterConfig> {
    Json(state.cluster.config())
}

/// `POST /config`: changes W and/or R (and, with the admin token, the delay
/// profile) on every node. Leader-follower: through the leader's log, answered
/// once in force everywhere. Leaderless: applied here and pushed to every peer.
///
/// # Errors
/// 400 when W or R is outside 1..=N or a delay is over the limit; 401/403
/// without the right admin token (see [`crate::security`]); 503 in
/// leader-follower mode without a leader.
#[utoipa::path(
    post,
    path = kv_shared::CONFIG_PATH,
    tag = "cluster",
    security((), ("admin_token" = [])),
    request_body = ConfigUpdate,
    responses(
        (status = 200, description = "In force on every node (leader-follower) or here and sent \
            to every peer (leaderless).", body = ClusterConfig),
        (status = 400, description = "Not the JSON described, W or R outside 1..=N, or a delay \
            over 10 s.", body = ErrorBody),
        (status = 401, description = "A node with an admin token, and no token or another one.",
            body = ErrorBody),
        (status = 403, description = "An admin action the node refuses without an admin token \
            (a delay profile; W/R on a node not bound to loopback), or a foreign `Host`.",
            body = ErrorBody),
        (status = 502, description = "Leader-follower, on a follower: the leader's answer could \
            not be read.", body = ErrorBody),
        (status = 503, description = "Leader-follower: no leader, leadership changed during the \
            change, or it did not reach every node in time.", body = ErrorBody),
    ),
)]
pub async fn post_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(update): ApiJson<ConfigUpdate>,
) -> Result<Json<ClusterConfig>, AppError> {
    if update.w.is_some() || update.r.is_some() {
        state.security.authorize(&headers, AdminAction::Quorums)?;
    }
    if update.delay_profile.is_some() {
        state
            .security
            .authorize(&headers, AdminAction::DelayProfile)?;
    }
    if let Some(lf) = state.replication.leader_follower() {
        let forwarded = headers.contains_key(FORWARDED_BY_HEADER);
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        return Ok(Json(lf.change_config(update, forwarded, auth).await?));
    }
    let envelope = state
        .cluster
        .apply_update(&update)
        .map_err(|e| AppError::bad_request(e.0))?;
    let missed = state.cluster.broadcast_config(envelope).await;
    if !missed.is_empty() {
        tracing::warn!(
            ?missed,
            "configuration change not delivered to every peer yet"
        );
    }
    Ok(Json(envelope.config))
}
