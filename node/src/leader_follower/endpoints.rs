//! Thin handlers of the leader-follower node-to-node endpoints
//! (`/internal/lf/...`, see [`kv_shared::leader_follower`]): they translate
//! between HTTP and the runtime ([`super::LeaderFollower`]), whose
//! [`crate::error::ReplicationError`]s become answers through `?`.

use crate::error::{ApiJson, AppError};
use crate::faults::FROM_HEADER;
use crate::server::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, SnapshotRequest, VoteRequest, VoteResponse, STREAM_PATH,
    STREAM_PROTOCOL,
};
use kv_shared::replication::SIGNATURE_HEADER;
use kv_shared::NodeId;

fn lf_only(state: &AppState) -> Result<&super::LeaderFollower, AppError> {
    state.replication.leader_follower().ok_or_else(|| {
        AppError::new(
            StatusCode::CONFLICT,
            "this node does not run leader-follower replication",
        )
    })
}

/// `POST /internal/lf/vote`: a (pre-)vote request.
pub async fn vote(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VoteRequest>,
) -> Result<Json<VoteResponse>, AppError> {
    Ok(Json(lf_only(&state)?.on_vote(req)?))
}

/// `POST /internal/lf/append`: entries (or a heartbeat) from the leader.
pub async fn append(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AppendRequest>,
) -> Result<Json<AppendResponse>, AppError> {
    Ok(Json(lf_only(&state)?.on_append(req).await?))
}

/// `POST /internal/lf/stream`: a leader opens its append stream (see
/// [`crate::append_stream`]); answered 101, then served until it
/// ends. The request passed [`crate::security::authenticate_peer`], so its
/// sender header is genuine.
///
/// # Errors
/// 409 outside leader-follower mode; 400 for a request that is not an
/// upgrade to the stream or names no peer.
pub async fn append_stream(
    State(state): State<AppState>,
    mut req: Request,
) -> Result<Response, AppError> {
    lf_only(&state)?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let upgrade = header(axum::http::header::UPGRADE.as_str()) == Some(STREAM_PROTOCOL);
    let from = header(FROM_HEADER).and_then(|v| v.parse::<NodeId>().ok());
    let signature = header(SIGNATURE_HEADER).map(str::to_owned);
    let (true, Some(from), Some(signature)) = (upgrade, from, signature) else {
        return Err(AppError::bad_request(format!(
            "{STREAM_PATH} takes a signed upgrade to {STREAM_PROTOCOL}"
        )));
    };
    if state.cluster.peers().url(from).is_none() {
        return Err(AppError::bad_request(format!("node {from} is not a peer")));
    }
    let upgrading = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrading.await {
            crate::append_stream::serve(state, from, signature, io).await;
        }
    });
    Ok(crate::append_stream::switching_protocols())
}

/// `POST /internal/lf/snapshot`: the leader's committed state.
pub async fn snapshot(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> Result<Json<AppendResponse>, AppError> {
    Ok(Json(lf_only(&state)?.on_snapshot(req).await?))
}
