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
use kv_shared::{GetResponse, HealthResponse, NodeId, SetRequest, SetResponse};

/// `POST /set`: writes a key and answers 201 with its new version. In a
/// cluster, the write is decided by the mode (on a follower: forwarded to the
/// leader).
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
pub async fn get_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, q.key).await
}

/// `GET /get/{key}`.
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
pub async fn local_read_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    local(&state, q.key)
}

/// `GET /local_read/{key}`.
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
