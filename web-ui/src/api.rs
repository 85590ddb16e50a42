//! Calls to the node's API. Components never build requests themselves.

use gloo_net::http::Request;
use kv_shared::HealthResponse;

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

/// `GET /health` of the node that served the page.
pub async fn health() -> FetchState<HealthResponse> {
    match Request::get("/health").send().await {
        Ok(resp) if resp.ok() => match resp.json::<HealthResponse>().await {
            Ok(h) => FetchState::Ready(h),
            Err(e) => FetchState::Failed(format!("unreadable /health answer: {e}")),
        },
        Ok(resp) => FetchState::Failed(format!("/health answered {}", resp.status())),
        Err(e) => FetchState::Failed(format!("node unreachable: {e}")),
    }
}
