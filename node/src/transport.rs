//! Node-to-node HTTP: one pooled client per node, typed calls to peers, the
//! send pacer of the delay profile, and the health prober.
//!
//! One [`reqwest::Client`] serves every call a node makes to its peers, so
//! connections stay open (HTTP/1.1 keep-alive) and a replication batch, a
//! coordinated read or a forwarded write reuses an idle connection instead of
//! opening one. Every call records its outcome in [`Peers`]: a reply (any
//! status) marks the peer up, a connection error or a timeout marks it down.
//!
//! Flow control (one in-flight replication message per follower, later
//! entries batched into the next one) lives in the replication cores, which
//! decide what to send; this module only carries it. Leader-follower
//! appends, and batched reads' asks, usually travel on peer streams instead
//! ([`crate::peer_stream`], built on this transport's peers, faults and
//! secret); they come here when every stream is busy or none is offered.

use crate::faults::{Fate, Faults};
use crate::peers::Peers;
use kv_shared::replication::{FROM_HEADER, SIGNATURE_HEADER};
use kv_shared::{ErrorBody, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// What the faults injected into this node do to one message it sends to
/// `to`: cut or drop it (an error, as the real failure would be), delay it,
/// or let it pass. Every outgoing message meets this, as a request or as a
/// frame of the append stream.
///
/// # Errors
/// [`TransportError::Cut`] or [`TransportError::Unreachable`] for a cut or
/// dropped message.
pub async fn outgoing_fault(faults: &Faults, to: NodeId) -> Result<(), TransportError> {
    match faults.outgoing(to) {
        Fate::Cut => Err(TransportError::Cut(to)),
        Fate::Dropped => Err(TransportError::Unreachable(
            "lost: dropped by an injected fault".into(),
        )),
        Fate::Pass(d) => {
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            Ok(())
        }
    }
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The id is not in the peer list.
    UnknownPeer(NodeId),
    /// The connection was refused: the request certainly never arrived.
    Refused(String),
    /// No answer: connection reset, or the timeout expired (the request may
    /// have arrived).
    Unreachable(String),
    /// The peer answered with a non-2xx status; carries it and the error text.
    Status(u16, String),
    /// The peer answered 2xx with a body that does not parse.
    Decode(String),
    /// An injected fault cuts this node off from the peer.
    Cut(NodeId),
    /// The answer is not signed with the cluster secret: not from a member
    /// (another process on the peer's port), or a peer with another secret.
    Unauthenticated(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::UnknownPeer(id) => write!(f, "node {id} is not a peer"),
            TransportError::Refused(e) => write!(f, "connection refused: {e}"),
            TransportError::Unreachable(e) => write!(f, "unreachable: {e}"),
            TransportError::Status(s, e) => write!(f, "answered {s}: {e}"),
            TransportError::Decode(e) => write!(f, "unreadable answer: {e}"),
            TransportError::Cut(id) => write!(f, "cut off from node {id} by an injected fault"),
            TransportError::Unauthenticated(e) => {
                write!(f, "answer not signed with the cluster secret: {e}")
            }
        }
    }
}

/// Typed HTTP calls to peers over one keep-alive connection pool.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    peers: Peers,
    faults: Faults,
    /// Signs every node-to-node request and checks every answer.
    secret: Option<crate::security::Secret>,
}

/// The HTTP client every node uses for its peers: keep-alive, no Nagle delay.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        // Well under the peers' --idle-timeout-ms (60 s by default), so that a
        // pooled connection is not reused just as the peer closes it.
        .pool_idle_timeout(Duration::from_secs(20))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

impl Transport {
    /// A transport to `peers` with a fresh connection pool, subject to
    /// `faults`, sending the cluster `secret`.
    pub fn new(peers: Peers, faults: Faults, secret: Option<crate::security::Secret>) -> Self {
        Self {
            client: http_client(),
            peers,
            faults,
            secret,
        }
    }

    /// The faults injected into this transport.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The underlying client (for calls whose answer is passed on as is).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The cluster secret that signs this node's requests, if it has one.
    pub fn secret(&self) -> Option<&crate::security::Secret> {
        self.secret.as_ref()
    }

    /// The peer list this transport reaches.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// `POST {peer}{path}` with a JSON body; parses a JSON answer.
    ///
    /// # Errors
    /// See [`TransportError`].
    pub async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let url = self.url(to, path)?;
        let body = serde_json::to_vec(body).map_err(|e| TransportError::Decode(e.to_string()))?;
        self.finish(to, reqwest::Method::POST, url, body, timeout)
            .await
    }

    /// `GET {peer}{path}`; `path` may carry a query string (already encoded).
    ///
    /// # Errors
    /// See [`TransportError`].
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let url = self.url(to, path)?;
        self.finish(to, reqwest::Method::GET, url, Vec::new(), timeout)
            .await
    }

    fn url(&self, to: NodeId, path: &str) -> Result<String, TransportError> {
        let base = self.peers.url(to).ok_or(TransportError::UnknownPeer(to))?;
        Ok(format!("{base}{path}"))
    }

    async fn finish<Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        method: reqwest::Method,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        // A paused node sends nothing until the pause is over.
        self.faults.wait_unpaused().await;
        outgoing_fault(&self.faults, to).await?;
        let url = reqwest::Url::parse(&url)
            .map_err(|e| TransportError::Unreachable(format!("bad peer URL: {e}")))?;
        // What the peer sees as the request target.
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let me = self.peers.self_id();
        let mut req = self.client.request(method.clone(), url).timeout(timeout);
        // Node-to-node endpoints are signed both ways; public ones (`/health`) are not.
        let internal = target.starts_with(kv_shared::replication::INTERNAL_PREFIX);
        let signed = self.secret.as_ref().filter(|_| internal).map(|secret| {
            let (headers, sig) = secret.signed_headers(method.as_str(), &target, me, &body);
            (secret, headers, sig)
        });
        req = match &signed {
            Some((_, headers, _)) => req.headers(headers.clone()),
            None => req.header(FROM_HEADER, me.to_string()),
        };
        if method == reqwest::Method::POST {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let e = if e.is_connect() {
                    TransportError::Refused(e.to_string())
                } else {
                    TransportError::Unreachable(e.to_string())
                };
                self.peers.mark_down(to, e.to_string());
                return Err(e);
            }
        };
        let status = resp.status();
        let answer_sig = resp
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let text = || {
            serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect())
        };
        if let Some((secret, _, sig)) = &signed {
            let genuine = answer_sig.as_deref().is_some_and(|a| {
                secret.verify_response(&sig.signature, status.as_u16(), &bytes, a)
            });
            if !genuine {
                let e = TransportError::Unauthenticated(format!("{status}: {}", text()));
                self.peers.mark_down(to, e.to_string());
                return Err(e);
            }
        }
        self.peers.mark_up(to);
        if !status.is_success() {
            return Err(TransportError::Status(status.as_u16(), text()));
        }
        serde_json::from_slice(&bytes).map_err(|e| TransportError::Decode(e.to_string()))
    }
}

/// Serialises the sends of the delay profile: after each replication message
/// the sender holds the pacer for `send_ms`, so the next message (to any peer)
/// leaves only then. With the assignment's 200 ms, a write that needs four
/// followers waits for four such slots.
#[derive(Debug, Default)]
pub struct SendPacer {
    slot: tokio::sync::Mutex<()>,
}

impl SendPacer {
    /// Runs `send` (which must start the request and return a future of its
    /// answer) in the next free slot, holds the slot for `delay` after the
    /// request left, then awaits the answer. With a zero delay the pacer is
    /// bypassed. The slot is a fair async mutex: no thread is blocked.
    pub async fn paced<T: Send + 'static>(
        &self,
        delay: Duration,
        send: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        if delay.is_zero() {
            return send.await;
        }
        let answer = {
            let _slot = self.slot.lock().await;
            let answer = tokio::spawn(send);
            tokio::time::sleep(delay).await;
            answer
        };
        match answer.await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Asks `/health` of every peer not heard from within `interval`, forever,
/// recording up/down and the role each peer reports. Run it as a background task.
pub async fn probe_peers(transport: Transport, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for id in transport.peers.ids() {
            let fresh = transport
                .peers
                .health(id)
                .and_then(|h| h.last_ok)
                .is_some_and(|t| t.elapsed() < interval);
            if fresh {
                continue;
            }
            let t = transport.clone();
            tokio::spawn(async move {
                let timeout = interval.max(Duration::from_millis(200));
                if let Ok(h) = t
                    .get::<kv_shared::HealthResponse>(id, kv_shared::HEALTH_PATH, timeout)
                    .await
                {
                    t.peers.set_role(id, h.role);
                }
            });
        }
    }
}
