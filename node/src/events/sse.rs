//! `GET /events`: the feed as Server-Sent Events.

use super::*;
use crate::error::{ApiQuery, AppError};
use crate::server::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast;

/// What a `/events` stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Only {
    /// Only the traces of writes this node coordinated and the events of its
    /// own replication (what peers relay).
    OwnTraces,
}

/// Query string of `GET /events`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct EventsQuery {
    /// Absent: snapshots and every trace (a page). `own-traces`: see [`Only`].
    #[serde(default)]
    pub only: Option<Only>,
}

/// Counts an open page stream while it lives.
pub(super) struct Watcher(EventHub);

impl Watcher {
    pub(super) fn new(hub: &EventHub) -> Self {
        hub.inner.watchers.fetch_add(1, Ordering::AcqRel);
        Self(hub.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.inner.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /events`: the live feed as Server-Sent Events (see the module docs).
///
/// # Errors
/// 400 for an unknown `only` value.
pub async fn events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let hub = state.cluster.events().clone();
    // Held by the stream: the permit returns when the client goes away.
    let Ok(permit) = hub.inner.streams.clone().try_acquire_owned() else {
        let refused = hub.inner.refused_streams.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            refused,
            "event stream refused: --max-event-streams are open"
        );
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams on this node (--max-event-streams); close a dashboard tab or retry later",
        ));
    };
    let rx = hub.inner.tx.subscribe();
    let own_traces_only = query.only == Some(Only::OwnTraces);
    let (watcher, first, recent) = if own_traces_only {
        (None, None, Vec::new())
    } else {
        let watcher = Watcher::new(&hub);
        hub.ensure_aggregator(&state);
        // Only a fresh snapshot: an old one is not this page's history.
        let fresh = hub
            .lock_status()
            .clone()
            .filter(|(at, _)| at + FRESH_STATUS_MS >= wall_ms())
            .map(|(_, json)| json);
        (Some(watcher), fresh, hub.recent_for_new_page())
    };
    let opened_at = wall_ms().saturating_sub(TRACE_GRACE_MS);
    let closed = hub.inner.closed.subscribe();
    let hello = Event::default()
        .retry(CLIENT_RETRY)
        .comment("kv-node events");
    let start = stream::iter(
        std::iter::once(hello)
            .chain(first.map(|json| Event::default().data(&*json)))
            .chain(recent.iter().map(|json| Event::default().data(&**json)))
            .collect::<Vec<_>>(),
    )
    .map(Ok);
    let live = stream::unfold(
        (rx, closed, (watcher, permit)),
        move |(mut rx, mut closed, watcher)| async move {
            loop {
                if *closed.borrow() {
                    return None;
                }
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Ok(p) if own_traces_only && !p.own_trace => continue,
                        // A write that started before this stream: not its history.
                        Ok(p) if p.write_started_at_ms.is_some_and(|s| s < opened_at) => continue,
                        Ok(p) => return Some((Ok(Event::default().data(&*p.json)), (rx, closed, watcher))),
                        // A slow client skips what it missed; the next snapshot resets it.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = closed.changed() => return None,
                }
            }
        },
    );
    Ok(Sse::new(start.chain(live)).keep_alive(KeepAlive::default()))
}
