//! Thin handlers of the leader-follower node-to-node endpoints
//! (`/internal/lf/...`, see [`kv_shared::leader_follower`]): they translate
//! between HTTP and the runtime ([`super::LeaderFollower`]), whose
//! [`crate::error::ReplicationError`]s become answers through `?`.

use crate::error::{ApiJson, AppError};
use crate::peer_stream::{self, Appends};
use crate::server::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, SnapshotRequest, VoteRequest, VoteResponse,
};

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
/// [`crate::peer_stream`]); answered 101, then served until it ends or this
/// node stops.
///
/// # Errors
/// 409 outside leader-follower mode; 400 for a request that is not an
/// upgrade to the stream or names no peer.
pub async fn append_stream(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, AppError> {
    let lf = lf_only(&state)?.clone();
    let served = state.clone();
    peer_stream::accept::<Appends, _, _>(&state, req, move |from, stream, io| async move {
        let handle = |req| {
            let lf = lf.clone();
            async move { lf.on_append(req).await.map_err(AppError::from) }
        };
        peer_stream::serve::<Appends, _, _>(served, from, stream, io, handle).await;
    })
}

/// `POST /internal/lf/snapshot`: the leader's committed state.
pub async fn snapshot(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> Result<Json<AppendResponse>, AppError> {
    Ok(Json(lf_only(&state)?.on_snapshot(req).await?))
}
