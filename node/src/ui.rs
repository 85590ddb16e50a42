//! Serves the dashboard that `trunk build` writes to `web-ui/dist`.
//!
//! Release builds embed the files in the binary (rust-embed), so a deployed
//! replica needs nothing beside its executable; debug builds read them from
//! `web-ui/dist` at run time. Without a UI build the node answers `/` with a
//! page that says how to make one, and unknown paths with a JSON 404.

use crate::error::AppError;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::Embed;

/// The files of the trunk build.
#[derive(Embed)]
#[folder = "../web-ui/dist/"]
#[allow_missing = true]
struct UiAssets;

/// The page shown at `/` when no UI build exists.
const NO_UI_PAGE: &str = "<!doctype html><html><head><title>kv-node</title></head><body>\
<h1>kv-node is running</h1><p>The web UI has not been built. Run <code>trunk build --release</code> \
at the top of the repository (or <code>scripts/up.sh</code>), then rebuild the node. \
The API is available: try <a href=\"/health\">/health</a>.</p></body></html>";

/// Whether a UI build is available to serve.
pub fn is_built() -> bool {
    UiAssets::get("index.html").is_some()
}

/// Router fallback: a UI file, the UI's index, or a JSON 404.
pub async fn fallback(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match UiAssets::get(path) {
        Some(file) => {
            let cache = if path == "index.html" {
                "no-cache"
            } else {
                "public, max-age=31536000, immutable"
            };
            (
                [
                    (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                    (header::CACHE_CONTROL, cache.to_owned()),
                ],
                file.data.into_owned(),
            )
                .into_response()
        }
        None if path == "index.html" => Html(NO_UI_PAGE).into_response(),
        None => AppError::new(
            StatusCode::NOT_FOUND,
            format!("no route for {}", uri.path()),
        )
        .into_response(),
    }
}
