//! Thin handlers of the leaderless node-to-node endpoints
//! (`/internal/ll/...`, see [`kv_shared::leaderless`]).

use super::anti_entropy;
use super::runtime::Leaderless;
use crate::error::{ApiJson, AppError};
use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kv_shared::leaderless::{
    BucketKeysRequest, BucketKeysResponse, DigestRequest, DigestResponse, FetchRequest,
    FetchResponse, LlWrite, LlWriteAck,
};

fn leaderless(state: &AppState) -> Result<&Leaderless, AppError> {
    state.replication.leaderless().ok_or_else(|| {
        AppError::new(
            StatusCode::CONFLICT,
            "this node does not run leaderless replication",
        )
    })
}

/// `POST /internal/ll/write`: records from a write coordinator, a hint
/// delivery or an anti-entropy push.
///
/// # Errors
/// 409 on a node that is not leaderless.
pub async fn write(
    State(state): State<AppState>,
    ApiJson(msg): ApiJson<LlWrite>,
) -> Result<Json<LlWriteAck>, AppError> {
    Ok(Json(leaderless(&state)?.on_write(msg).await))
}

/// `POST /internal/ll/digest`: Merkle hashes for an anti-entropy round.
///
/// # Errors
/// 409 on a node that is not leaderless; 400 for a malformed request.
pub async fn digest(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DigestRequest>,
) -> Result<Json<DigestResponse>, AppError> {
    anti_entropy::on_digest(leaderless(&state)?, req).map(Json)
}

/// `POST /internal/ll/keys`: keys and versions of some leaf buckets.
///
/// # Errors
/// 409 on a node that is not leaderless; 400 for another tree shape.
pub async fn keys(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BucketKeysRequest>,
) -> Result<Json<BucketKeysResponse>, AppError> {
    anti_entropy::on_keys(leaderless(&state)?, req).map(Json)
}

/// `POST /internal/ll/fetch`: records of some keys.
///
/// # Errors
/// 409 on a node that is not leaderless.
pub async fn fetch(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<FetchRequest>,
) -> Result<Json<FetchResponse>, AppError> {
    Ok(Json(anti_entropy::on_fetch(leaderless(&state)?, req)))
}
