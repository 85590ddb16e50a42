//! Thin handlers of the leaderless node-to-node endpoints
//! (`/internal/ll/...`, see [`kv_shared::leaderless`]).

use super::anti_entropy;
use super::runtime::Leaderless;
use crate::error::{ApiJson, AppError, Invalid};
use crate::peer_stream::{self, LlWrites};
use crate::server::AppState;
use crate::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kv_shared::leaderless::{
    BucketKeysRequest, BucketKeysResponse, DigestRequest, DigestResponse, FetchRequest,
    FetchResponse, LlWrite, LlWriteAck,
};
use kv_shared::replication::{ConfigEnvelope, Record};
use kv_shared::Version;

/// Runs `f` with what [`crate::validate`] needs of this node.
fn check(
    state: &AppState,
    f: impl FnOnce(&validate::Context<'_>) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    validate::with_context(&state.cluster, f)
}

/// Checks the sender and the configuration envelope a message carries.
fn check_sender(
    state: &AppState,
    from: kv_shared::NodeId,
    config: Option<&ConfigEnvelope>,
) -> Result<(), Invalid> {
    let epoch = state.cluster.envelope().epoch;
    check(state, |c| {
        c.member(from)?;
        config.map_or(Ok(()), |env| validate::envelope(c, env, epoch))
    })
}

/// Checks records stamped by leaderless clocks: keys and values within the
/// limits, versions not too far ahead of this node's clock.
pub fn check_records(
    state: &AppState,
    clock: Option<Version>,
    records: &[Record],
) -> Result<(), Invalid> {
    let (wall, offset) = (
        state.cluster.faults().wall_ms(),
        state.config.max_clock_offset_ms,
    );
    if let Some(c) = clock {
        validate::clock("clock", c, wall, offset)?;
    }
    records.iter().try_for_each(|r| {
        validate::key_value(&r.key, &r.value)?;
        validate::clock("version", r.version, wall, offset)
    })
}

/// Checks a read-repair message (leaderless mode).
///
/// # Errors
/// 400.
pub fn check_sender_of_repair(
    state: &AppState,
    req: &kv_shared::replication::RepairRequest,
) -> Result<(), Invalid> {
    check_sender(state, req.from, None)?;
    check_records(state, None, &req.records)
}

/// Checks a configuration envelope pushed by a peer (leaderless mode).
///
/// # Errors
/// 400.
pub fn check_envelope(state: &AppState, env: &ConfigEnvelope) -> Result<(), Invalid> {
    let epoch = state.cluster.envelope().epoch;
    check(state, |c| validate::envelope(c, env, epoch))
}

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
/// 409 on a node that is not leaderless; 400 for a malformed message (an
/// unknown sender, a clock or version too far ahead, a bad configuration).
pub async fn write(
    State(state): State<AppState>,
    ApiJson(msg): ApiJson<LlWrite>,
) -> Result<Json<LlWriteAck>, AppError> {
    Ok(Json(take_write(&state, msg).await?))
}

/// `POST /internal/ll/write/stream`: a write coordinator opens a stream of
/// its batches of client writes (see [`crate::peer_stream`]), each answered
/// as `POST /internal/ll/write` would be; answered 101, then served until it
/// ends or this node stops.
///
/// # Errors
/// 409 on a node that is not leaderless; 400 for a request that is not an
/// upgrade to the stream or names no peer.
pub async fn write_stream(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, AppError> {
    leaderless(&state)?;
    let served = state.clone();
    peer_stream::accept::<LlWrites, _, _>(&state, req, move |from, stream, io| async move {
        let handle = |msg| take_write(&served, msg);
        peer_stream::serve::<LlWrites, _, _>(served.clone(), from, stream, io, handle).await;
    })
}

/// Checks a message of records and applies it: what both ways of sending
/// one answer.
async fn take_write(state: &AppState, msg: LlWrite) -> Result<LlWriteAck, AppError> {
    let ll = leaderless(state)?;
    check_sender(state, msg.from, msg.config.as_ref())?;
    check_records(state, Some(msg.clock), &msg.records)?;
    Ok(ll.on_write(msg).await)
}

/// `POST /internal/ll/digest`: Merkle hashes for an anti-entropy round.
///
/// # Errors
/// 409 on a node that is not leaderless; 400 for a malformed request.
pub async fn digest(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DigestRequest>,
) -> Result<Json<DigestResponse>, AppError> {
    let ll = leaderless(&state)?;
    check_sender(&state, req.from, req.config.as_ref())?;
    Ok(Json(anti_entropy::on_digest(ll, req)?))
}

/// `POST /internal/ll/keys`: keys and versions of some leaf buckets.
///
/// # Errors
/// 409 on a node that is not leaderless; 400 for another tree shape.
pub async fn keys(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BucketKeysRequest>,
) -> Result<Json<BucketKeysResponse>, AppError> {
    let ll = leaderless(&state)?;
    check_sender(&state, req.from, None)?;
    Ok(Json(anti_entropy::on_keys(ll, req)?))
}

/// `POST /internal/ll/fetch`: records of some keys.
///
/// # Errors
/// 409 on a node that is not leaderless.
pub async fn fetch(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<FetchRequest>,
) -> Result<Json<FetchResponse>, AppError> {
    let ll = leaderless(&state)?;
    check_sender(&state, req.from, None)?;
    Ok(Json(anti_entropy::on_fetch(ll, req)))
}
