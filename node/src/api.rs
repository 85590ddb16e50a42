//! Handlers of the client API. They stay thin: parse, call the store (or,
//! later, the replication core), translate the answer.

use crate::error::{ApiJson, ApiPath, ApiQuery, AppError};
use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kv_shared::api::KeyQuery;
use kv_shared::limits::{validate_key, validate_set};
use kv_shared::{GetResponse, HealthResponse, SetRequest, SetResponse};

/// `POST /set`: writes a key and answers 201 with its new version.
pub async fn set(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetRequest>,
) -> Result<(StatusCode, Json<SetResponse>), AppError> {
    validate_set(&req)?;
    let (version, status) = state.store.write_next(&req.key, req.value.clone());
    Ok((
        StatusCode::CREATED,
        Json(SetResponse {
            key: req.key,
            value: req.value,
            version,
            status,
            served_by: Some(state.config.node_id),
        }),
    ))
}

/// `GET /get?key=K`.
pub async fn get_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, q.key)
}

/// `GET /get/{key}`.
pub async fn get_path(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, key)
}

/// `GET /local_read?key=K`: this node's own copy, never coordinated.
pub async fn local_read_query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, q.key)
}

/// `GET /local_read/{key}`.
pub async fn local_read_path(
    State(state): State<AppState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<GetResponse>, AppError> {
    read(&state, key)
}

/// Reads the node's own copy of a key.
fn read(state: &AppState, key: String) -> Result<Json<GetResponse>, AppError> {
    validate_key(&key)?;
    match state.store.get(&key) {
        Some(entry) => Ok(Json(GetResponse {
            key,
            value: entry.value,
            version: entry.version,
            served_by: Some(state.config.node_id),
        })),
        None => Err(AppError::key_not_found(&key)),
    }
}

/// `GET /health`: answers 200 while the node runs.
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy".into(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        node_id: state.config.node_id,
        mode: state.config.mode(),
        role: state.config.role(),
        keys: state.store.len(),
    })
}
