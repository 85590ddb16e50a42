//! Handlers of the node-to-node endpoints both modes share (`/internal/read`,
//! `/internal/reads`, `/internal/reads/stream`, `/internal/repair`,
//! `/internal/config`, see [`kv_shared::replication`]) and the middleware
//! that applies injected faults to every node-to-node request.
//! Each mode's own endpoints have their handlers beside the mode
//! ([`crate::leader_follower::endpoints`], [`crate::leaderless::endpoints`]).
//! Thin like the client ones: they translate between HTTP and the
//! replication modes.

use crate::error::{ApiJson, ApiQuery, AppError};
use crate::faults::{Fate, FROM_HEADER};
use crate::peer_stream::{self, Reads};
use crate::server::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kv_shared::limits::{validate_key, MAX_READ_BATCH_KEYS};
use kv_shared::replication::{
    ConfigEnvelope, InternalReadQuery, InternalReadResponse, InternalReadsRequest,
    InternalReadsResponse, ReadCopy, RepairRequest, RepairResponse,
};
use kv_shared::NodeId;
use std::time::Duration;

/// Refuses node-to-node requests from a peer that an injected fault cuts off
/// (the sender names itself in [`FROM_HEADER`]), as if they never arrived.
pub async fn refuse_cut_peers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let from: Option<NodeId> = req
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let faults = state.cluster.faults();
    let lost = |what: &str| {
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, what.to_owned()).into_response()
    };
    if let Some(from) = from {
        match faults.incoming(from) {
            Fate::Cut => {
                return lost(&format!(
                    "messages from node {from} are cut off by an injected fault"
                ))
            }
            Fate::Dropped => return lost("the message was dropped by an injected fault"),
            Fate::Pass(d) if !d.is_zero() => tokio::time::sleep(d).await,
            Fate::Pass(_) => {}
        }
    }
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    // The answer travels back to the sender: faults on what this node sends apply.
    if let Some(from) = from {
        match faults.outgoing(from) {
            Fate::Cut => {
                return lost(&format!(
                    "the answer to node {from} is cut off by an injected fault"
                ))
            }
            Fate::Dropped => return lost("the answer was dropped by an injected fault"),
            Fate::Pass(d) if !d.is_zero() => tokio::time::sleep(d).await,
            Fate::Pass(_) => {}
        }
    }
    if resp.status() == StatusCode::BAD_REQUEST {
        // A member sent something the checks refused: worth knowing.
        let n = crate::security::count(&state.security.refusals().invalid_messages);
        tracing::warn!(from = ?from, %path, refused = n, "refused a malformed node-to-node message");
    }
    resp
}

/// `GET /internal/read?key=K[&digest=true]`: this replica's copy (its
/// version only for a digest), after the remote-read delay, and whether it
/// counts towards R.
pub async fn read(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InternalReadQuery>,
) -> Json<InternalReadResponse> {
    remote_read_delay(&state).await;
    Json(read_copy(&state, &q))
}

/// `POST /internal/reads`: what `GET /internal/read` answers, for each of
/// several asks at once (one remote-read delay for the whole batch).
///
/// # Errors
/// 400 for more than [`MAX_READ_BATCH_KEYS`] asks or a key the client API
/// would refuse.
pub async fn reads(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<InternalReadsRequest>,
) -> Result<Json<InternalReadsResponse>, AppError> {
    Ok(Json(read_batch(&state, req).await?))
}

/// `POST /internal/reads/stream`: a read coordinator opens a stream of
/// batches (see [`crate::peer_stream`]), each answered as `POST
/// /internal/reads` would be; answered 101, then served until it ends or
/// this node stops.
///
/// # Errors
/// 400 for a request that is not an upgrade to the stream or names no peer.
pub async fn reads_stream(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, AppError> {
    let served = state.clone();
    peer_stream::accept::<Reads, _, _>(&state, req, move |from, stream, io| async move {
        let handle = |req| read_batch(&served, req);
        peer_stream::serve::<Reads, _, _>(served.clone(), from, stream, io, handle).await;
    })
}

/// The answer to a batch of asks.
async fn read_batch(
    state: &AppState,
    req: InternalReadsRequest,
) -> Result<InternalReadsResponse, AppError> {
    if req.asks.len() > MAX_READ_BATCH_KEYS as usize {
        return Err(AppError::bad_request(format!(
            "{} asks in one batch; the limit is {MAX_READ_BATCH_KEYS}",
            req.asks.len()
        )));
    }
    for ask in &req.asks {
        validate_key(&ask.key)?;
    }
    remote_read_delay(state).await;
    Ok(InternalReadsResponse {
        answers: req.asks.iter().map(|q| read_copy(state, q)).collect(),
    })
}

/// The delay profile's remote-read delay, once per request.
async fn remote_read_delay(state: &AppState) {
    let ms = state.cluster.delays().remote_read_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
}

/// This replica's copy of one key (its version only for a digest) and
/// whether it counts towards R.
fn read_copy(state: &AppState, q: &InternalReadQuery) -> InternalReadResponse {
    let local = state.replication.local_answer(&q.key);
    InternalReadResponse {
        node_id: state.cluster.node_id(),
        found: state.store.get(&q.key).map(|e| ReadCopy {
            version: e.version,
            value: (!q.digest).then_some(e.value),
        }),
        current: state.replication.is_current(),
        term: local.term,
        leader_read: local.leader_read,
    }
}

/// `POST /internal/repair`: newer records seen by a coordinated read
/// (leaderless mode; a leader-follower replica changes only through its log).
///
/// # Errors
/// 409 in leader-follower mode.
pub async fn repair(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RepairRequest>,
) -> Result<Json<RepairResponse>, AppError> {
    if state.replication.leader_follower().is_some() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "leader-follower replicas change only through the leader's log",
        ));
    }
    crate::leaderless::endpoints::check_sender_of_repair(&state, &req)?;
    state.cluster.peers().mark_up(req.from);
    let changed = req
        .records
        .into_iter()
        .filter(|r| state.store.apply(&r.key, r.value.clone(), r.version))
        .count();
    Ok(Json(RepairResponse {
        node_id: state.cluster.node_id(),
        changed: changed as u32,
    }))
}

/// `POST /internal/config`: a configuration change made on another node
/// (leaderless mode; leader-follower changes go through the leader's log).
///
/// # Errors
/// 409 in leader-follower mode.
pub async fn config(
    State(state): State<AppState>,
    ApiJson(env): ApiJson<ConfigEnvelope>,
) -> Result<Json<ConfigEnvelope>, AppError> {
    if state.replication.leader_follower().is_some() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "leader-follower configuration changes go through the leader's log: POST /config",
        ));
    }
    crate::leaderless::endpoints::check_envelope(&state, &env)?;
    Ok(Json(state.cluster.merge_envelope(env)))
}
