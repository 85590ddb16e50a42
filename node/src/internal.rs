//! Handlers of the node-to-node endpoints (`/internal/...`, see
//! [`kv_shared::replication`]). Thin like the client ones: they translate
//! between HTTP and the replication modes.

use crate::error::{ApiJson, ApiQuery, AppError};
use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kv_shared::api::KeyQuery;
use kv_shared::replication::{
    ConfigEnvelope, InternalReadResponse, RepairRequest, RepairResponse, ReplicateRequest,
    ReplicateResponse, SnapshotRequest, StateResponse, VersionedValue,
};
use std::time::Duration;

fn lf_only(state: &AppState) -> Result<&crate::leader_follower::LeaderFollower, AppError> {
    state.replication.leader_follower().ok_or_else(|| {
        AppError::new(
            StatusCode::CONFLICT,
            "this node does not run leader-follower replication",
        )
    })
}

/// `POST /internal/replicate`: a batch of log entries from the leader.
pub async fn replicate(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ReplicateRequest>,
) -> Result<Json<ReplicateResponse>, AppError> {
    lf_only(&state)?.on_replicate(req).await.map(Json)
}

/// `POST /internal/snapshot`: the leader's whole store.
pub async fn snapshot(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> Result<Json<ReplicateResponse>, AppError> {
    lf_only(&state)?.on_snapshot(req).await.map(Json)
}

/// `GET /internal/state`: a follower's records, for a restarting leader.
pub async fn state(State(state): State<AppState>) -> Result<Json<StateResponse>, AppError> {
    lf_only(&state)?.state().map(Json)
}

/// `GET /internal/read?key=K`: this replica's copy, after the remote-read delay.
pub async fn read(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Json<InternalReadResponse> {
    let ms = state.cluster.delays().remote_read_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
    Json(InternalReadResponse {
        node_id: state.cluster.node_id(),
        found: state.store.get(&q.key).map(|e| VersionedValue {
            value: e.value,
            version: e.version,
        }),
    })
}

/// `POST /internal/repair`: newer records seen by a coordinated read.
pub async fn repair(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RepairRequest>,
) -> Json<RepairResponse> {
    state.cluster.peers().mark_up(req.from);
    let changed = req
        .records
        .into_iter()
        .filter(|r| state.store.apply(&r.key, r.value.clone(), r.version))
        .count();
    Json(RepairResponse {
        node_id: state.cluster.node_id(),
        changed: changed as u32,
    })
}

/// `POST /internal/config`: a configuration change made on another node.
pub async fn config(
    State(state): State<AppState>,
    ApiJson(env): ApiJson<ConfigEnvelope>,
) -> Json<ConfigEnvelope> {
    Json(state.cluster.merge_envelope(env))
}
