//! The aggregator: a snapshot of the cluster every [`AGGREGATE_EVERY`] while a
//! page watches, and the relays of every peer's own traces.

use super::*;
use crate::server::AppState;
use kv_shared::cluster::StatusResponse;
use kv_shared::events::{ClusterEvent, ClusterView, SseReader, EVENTS_PATH, OWN_TRACES_QUERY};
use std::sync::atomic::Ordering;

impl EventHub {
    /// Starts the aggregator unless it runs.
    pub(super) fn ensure_aggregator(&self, state: &AppState) {
        if self.inner.aggregator_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (hub, state) = (self.clone(), state.clone());
        tokio::spawn(async move { hub.aggregate(state).await });
    }

    /// Publishes snapshots and relays the peers' traces while a page
    /// watches; ends with the last one (or at shutdown).
    pub(super) async fn aggregate(self, state: AppState) {
        let mut closed = self.inner.closed.subscribe();
        let client = state.cluster.transport().client().clone();
        let relays: Vec<_> = state
            .cluster
            .peers()
            .list()
            .iter()
            .map(|p| tokio::spawn(self.clone().relay(client.clone(), p.url.clone())))
            .collect();
        loop {
            if self.watchers() == 0 || *closed.borrow() {
                self.inner
                    .aggregator_running
                    .store(false, Ordering::Release);
                // A page that came in between keeps the task alive.
                if self.watchers() > 0
                    && !*closed.borrow()
                    && !self.inner.aggregator_running.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
                relays.iter().for_each(|r| r.abort());
                return;
            }
            let view = build_view(&state).await;
            self.publish_status(view);
            tokio::select! {
                _ = tokio::time::sleep(AGGREGATE_EVERY) => {}
                _ = closed.changed() => {}
            }
        }
    }
    /// Follows a peer's own traces and events and republishes them here, reconnecting
    /// after [`RELAY_RETRY`]; runs until the aggregator aborts it.
    pub(super) async fn relay(self, client: reqwest::Client, peer_url: String) {
        let url = format!(
            "{}{EVENTS_PATH}?{OWN_TRACES_QUERY}",
            peer_url.trim_end_matches('/')
        );
        loop {
            if let Err(e) = self.relay_once(&client, &url).await {
                tracing::debug!("trace relay from {url}: {e}");
            }
            tokio::time::sleep(RELAY_RETRY).await;
        }
    }

    /// One connection to a peer's stream, until it ends or fails.
    pub(super) async fn relay_once(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> Result<(), String> {
        let mut resp = client.get(url).send().await.map_err(|e| short_error(&e))?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let mut reader = SseReader::default();
        loop {
            let chunk = match tokio::time::timeout(RELAY_CHECK, resp.chunk()).await {
                Err(_) => continue,
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(e.to_string()),
            };
            // Snapshots are not relayed: each node builds its own.
            for event in reader.push(&chunk) {
                if !matches!(event, ClusterEvent::Status(_)) {
                    self.publish(&event, false);
                }
            }
        }
    }
}

/// This node's `/status` plus every peer's, as one [`ClusterView`].
pub async fn build_view(state: &AppState) -> ClusterView {
    let own = state.replication.status(&state.cluster, &state.store);
    let client = state.cluster.transport().client().clone();
    let fetches = own.peers.iter().map(|p| {
        let client = client.clone();
        let url = format!("{}{}", p.url.trim_end_matches('/'), kv_shared::STATUS_PATH);
        async move {
            let answer = async {
                let resp = client
                    .get(&url)
                    .timeout(PEER_STATUS_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| short_error(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("/status answered {}", resp.status()));
                }
                resp.json::<StatusResponse>()
                    .await
                    .map_err(|e| format!("unreadable /status: {e}"))
            };
            answer.await
        }
    });
    let answers = futures_util::future::join_all(fetches).await;
    assemble(
        &own,
        own.peers.iter().map(|p| p.id).zip(answers).collect(),
        wall_ms(),
    )
}

/// Words a request error briefly (reqwest's text nests every cause).
pub(super) fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the status timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}
