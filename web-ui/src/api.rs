//! Calls to the nodes' HTTP API and the live feed. Components never build
//! requests themselves: they call these functions and dispatch what comes back.
//!
//! The page talks to the node that served it (relative URLs, so `trunk serve`
//! can proxy them) and, for the operations and fault panels only, to the
//! replica the user picks, at the URL the cluster snapshot gives for it.

use futures_util::StreamExt;
use gloo_net::eventsource::futures::EventSource;
use gloo_net::http::{Request, Response};
use kv_shared::admin::{FaultRequest, FaultsStatus, FAULTS_PATH};
use kv_shared::cluster::{ClusterConfig, ConfigUpdate};
use kv_shared::events::{ClusterEvent, ClusterView};
use kv_shared::{ErrorBody, GetResponse, HealthResponse, NodeId, SetRequest, SetResponse};
use serde::de::DeserializeOwned;
use std::fmt;
use yew::Callback;

/// The state of a request a component waits on.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchState<T> {
    /// Not answered yet.
    Loading,
    /// Answered with a value.
    Ready(T),
    /// Failed; the message says why, as the API or the browser worded it.
    Failed(String),
}

/// The three client operations of the operations panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `POST /set`.
    Set,
    /// `GET /get?key=K` (coordinated by the node asked).
    Get,
    /// `GET /local_read?key=K` (the node's own copy).
    LocalRead,
}

impl OpKind {
    /// Every kind, in the order the panel offers them.
    pub const ALL: [OpKind; 3] = [OpKind::Set, OpKind::Get, OpKind::LocalRead];

    /// The kind named by `s` (as [`fmt::Display`] writes it).
    pub fn parse(s: &str) -> Option<OpKind> {
        Self::ALL.into_iter().find(|k| k.to_string() == s)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Set => "set",
            OpKind::Get => "get",
            OpKind::LocalRead => "local_read",
        })
    }
}

/// An operation the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRequest {
    /// Which operation.
    pub kind: OpKind,
    /// The replica to send it to.
    pub node: NodeId,
    /// The key.
    pub key: String,
    /// The value (set only).
    pub value: String,
}

/// What a node answered to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpAnswer {
    /// A write's 201 answer.
    Written(SetResponse),
    /// A read's 200 answer.
    Read(GetResponse),
    /// An error answer, as the API worded it.
    Refused(ErrorBody),
    /// No answer at all: the browser's reason.
    Unreachable(String),
}

/// An operation, its answer and how long the answer took.
#[derive(Debug, Clone, PartialEq)]
pub struct OpOutcome {
    /// What was asked.
    pub request: OpRequest,
    /// The HTTP status, when the node answered.
    pub status: Option<u16>,
    /// Time from sending to the whole answer, measured in the browser, in ms.
    pub latency_ms: f64,
    /// The answer.
    pub answer: OpAnswer,
}

/// The browser's wall clock, in ms since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A monotonic clock for latencies, in ms.
fn monotonic_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or_else(now_ms, |p| p.now())
}

/// The base URL of replica `node`: relative for the node that serves the
/// page (so that `trunk serve` proxies it), its advertised URL otherwise.
pub fn base_url(view: Option<&ClusterView>, node: NodeId) -> String {
    match view {
        Some(v) if v.observer != node => v
            .replicas
            .iter()
            .find(|r| r.id == node)
            .map(|r| r.url.trim_end_matches('/').to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Reads an error body; a body that is not the API's JSON is shown as text.
async fn error_body(resp: &Response) -> ErrorBody {
    match resp.text().await {
        Ok(text) => serde_json::from_str(&text)
            .unwrap_or_else(|_| ErrorBody::new(format!("HTTP {} {}", resp.status(), text.trim()))),
        Err(e) => ErrorBody::new(format!("HTTP {}: unreadable body: {e}", resp.status())),
    }
}

/// Decodes a success body as `T`.
async fn success<T: DeserializeOwned>(resp: &Response) -> Result<T, String> {
    resp.json::<T>()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))
}

/// `GET /health` of the node that served the page.
pub async fn health() -> FetchState<HealthResponse> {
    match Request::get(kv_shared::HEALTH_PATH).send().await {
        Ok(resp) if resp.ok() => match success(&resp).await {
            Ok(h) => FetchState::Ready(h),
            Err(e) => FetchState::Failed(e),
        },
        Ok(resp) => FetchState::Failed(error_body(&resp).await.error),
        Err(e) => FetchState::Failed(format!("node unreachable: {e}")),
    }
}

/// Sends one operation to the replica at `base` and times it.
pub async fn run_op(base: &str, request: OpRequest) -> OpOutcome {
    let started = monotonic_ms();
    let sent = match request.kind {
        OpKind::Set => {
            let body = SetRequest {
                key: request.key.clone(),
                value: request.value.clone(),
            };
            match Request::post(&format!("{base}{}", kv_shared::SET_PATH)).json(&body) {
                Ok(req) => req.send().await,
                Err(e) => Err(e),
            }
        }
        OpKind::Get | OpKind::LocalRead => {
            Request::get(&format!("{base}/{}", request.kind))
                .query([("key", request.key.as_str())])
                .send()
                .await
        }
    };
    let (status, answer) = match sent {
        Err(e) => (None, OpAnswer::Unreachable(e.to_string())),
        Ok(resp) => {
            let answer = if !resp.ok() {
                OpAnswer::Refused(error_body(&resp).await)
            } else if request.kind == OpKind::Set {
                success(&resp)
                    .await
                    .map_or_else(OpAnswer::Unreachable, OpAnswer::Written)
            } else {
                success(&resp)
                    .await
                    .map_or_else(OpAnswer::Unreachable, OpAnswer::Read)
            };
            (Some(resp.status()), answer)
        }
    };
    OpOutcome {
        request,
        status,
        latency_ms: monotonic_ms() - started,
        answer,
    }
}

/// `POST /config` on the node that served the page. Changing the delay
/// profile needs the admin token, and so do W and R on a node that has one.
pub async fn change_config(
    update: ConfigUpdate,
    token: Option<String>,
) -> FetchState<ClusterConfig> {
    let mut req = Request::post(kv_shared::CONFIG_PATH);
    if let Some(t) = token.filter(|t| !t.trim().is_empty()) {
        req = req.header("Authorization", &format!("Bearer {}", t.trim()));
    }
    let sent = match req.json(&update) {
        Ok(r) => r.send().await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(resp) if resp.ok() => match success(&resp).await {
            Ok(c) => FetchState::Ready(c),
            Err(e) => FetchState::Failed(e),
        },
        Ok(resp) => FetchState::Failed(format!(
            "{}: {}",
            resp.status(),
            error_body(&resp).await.error
        )),
        Err(e) => FetchState::Failed(format!("node unreachable: {e}")),
    }
}

/// Where the page keeps the admin token for the tab's session
/// (`sessionStorage`): typed once, forgotten when the tab closes.
const TOKEN_KEY: &str = "kv-admin-token";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

/// The admin token kept for this tab's session (empty if none).
pub fn session_token() -> String {
    session_storage()
        .and_then(|s| s.get_item(TOKEN_KEY).ok().flatten())
        .unwrap_or_default()
}

/// Keeps `token` for this tab's session (an empty one is forgotten).
pub fn keep_session_token(token: &str) {
    if let Some(s) = session_storage() {
        let _ = if token.is_empty() {
            s.remove_item(TOKEN_KEY)
        } else {
            s.set_item(TOKEN_KEY, token)
        };
    }
}

/// What one node answered to a fault request.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultOutcome {
    /// The node asked.
    pub node: NodeId,
    /// Its faults in force afterwards, or why it refused or did not answer.
    pub result: Result<FaultsStatus, String>,
}

/// `POST /admin/faults` with `request` on node `node` at `base`, with the
/// admin token.
pub async fn post_fault(
    base: &str,
    node: NodeId,
    token: &str,
    request: &FaultRequest,
) -> FaultOutcome {
    let sent = match Request::post(&format!("{base}{FAULTS_PATH}"))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .json(request)
    {
        Ok(r) => r.send().await,
        Err(e) => Err(e),
    };
    let result = match sent {
        Ok(resp) if resp.ok() => success(&resp).await,
        Ok(resp) => Err(format!(
            "{}: {}",
            resp.status(),
            error_body(&resp).await.error
        )),
        Err(e) => Err(format!("unreachable: {e}")),
    };
    FaultOutcome { node, result }
}

/// The live feed: `GET /events` as Server-Sent Events. Dropping it closes
/// the connection.
pub struct EventFeed {
    _source: EventSource,
}

impl EventFeed {
    /// Opens `/events` and calls `on_event` with each event and its browser
    /// arrival time. The browser reconnects by itself after a network error;
    /// when it gives up for good (the answer was not an event stream),
    /// `on_closed` is called once.
    ///
    /// # Errors
    /// The browser's reason when it refuses to open the stream.
    pub fn open(
        on_event: Callback<(ClusterEvent, f64)>,
        on_closed: Callback<String>,
    ) -> Result<Self, String> {
        let mut source =
            EventSource::new(kv_shared::events::EVENTS_PATH).map_err(|e| e.to_string())?;
        let mut messages = source.subscribe("message").map_err(|e| e.to_string())?;
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(next) = messages.next().await {
                match next {
                    Ok((_, msg)) => {
                        let Some(text) = msg.data().as_string() else {
                            continue;
                        };
                        match serde_json::from_str::<ClusterEvent>(&text) {
                            Ok(ev) => on_event.emit((ev, now_ms())),
                            Err(e) => web_sys_log(&format!("unreadable event: {e}")),
                        }
                    }
                    Err(e) => {
                        on_closed.emit(e.to_string());
                        return;
                    }
                }
            }
        });
        Ok(Self { _source: source })
    }
}

fn web_sys_log(msg: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::warn_1(&msg.into());
    #[cfg(not(target_arch = "wasm32"))]
    let _ = msg;
}
