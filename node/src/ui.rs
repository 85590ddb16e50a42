//! Serves the dashboard that `trunk build` writes to `web-ui/dist`.
//!
//! Release builds embed the files in the binary (rust-embed), so a deployed
//! replica needs nothing beside its executable; debug builds read them from
//! `web-ui/dist` at run time. Without a UI build the node answers `/` with a
//! page that says how to make one, and unknown paths with a JSON 404.
//!
//! **Compressed.** `scripts/build.sh` writes a brotli (`.br`) and a gzip
//! (`.gz`) copy beside each file of the build; a request whose
//! `Accept-Encoding` admits one gets it, with `Content-Encoding` and
//! `Vary: Accept-Encoding` (brotli first, gzip next, the plain file
//! otherwise — also when the build has no compressed copies). This is
//! tower-http's `ServeDir::precompressed_br().precompressed_gzip()` over the
//! embedded files: `ServeDir` reads a directory, and a deployed replica has
//! none.
//!
//! The favicon (`web-ui/favicon.svg`) is compiled in, so `/favicon.ico` and
//! `/favicon.svg` answer even without a UI build.

use crate::error::AppError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
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

/// The dashboard's icon, served at `/favicon.ico` and `/favicon.svg`.
const FAVICON_SVG: &[u8] = include_bytes!("../../web-ui/favicon.svg");

/// The longest `Accept-Encoding` header read; the rest is ignored.
pub const MAX_ACCEPT_ENCODING_BYTES: usize = 512;

/// Whether a UI build is available to serve.
pub fn is_built() -> bool {
    UiAssets::get("index.html").is_some()
}

/// A content coding the node has precompressed copies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli, `.br` beside the file.
    Brotli,
    /// Gzip, `.gz` beside the file.
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// The codings `accept` (an `Accept-Encoding` value) admits, best first:
/// by q-value, brotli before gzip at the same q; `q=0` refuses one, `*`
/// stands for those not named. Unreadable entries are ignored; only the
/// first [`MAX_ACCEPT_ENCODING_BYTES`] are read.
pub fn acceptable(accept: &str) -> Vec<Coding> {
    let accept = match accept.char_indices().nth(MAX_ACCEPT_ENCODING_BYTES) {
        Some((cut, _)) => &accept[..cut],
        None => accept,
    };
    let q_of = |name: &str| -> Option<f32> {
        let mut star = None;
        for entry in accept.split(',') {
            let mut parts = entry.split(';');
            let token = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            if token.eq_ignore_ascii_case(name) {
                return Some(q);
            }
            if token == "*" {
                star = Some(q);
            }
        }
        star
    };
    let mut out: Vec<(f32, Coding)> = [Coding::Brotli, Coding::Gzip]
        .into_iter()
        .filter_map(|c| q_of(c.token()).filter(|q| *q > 0.0).map(|q| (q, c)))
        .collect();
    // Stable: brotli stays first at equal q.
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().map(|(_, c)| c).collect()
}

/// Router fallback: a UI file (compressed when the client takes it), the
/// favicon, the UI's index, or a JSON 404.
pub async fn fallback(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if matches!(path, "favicon.ico" | "favicon.svg") {
        return (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            FAVICON_SVG,
        )
            .into_response();
    }
    let Some(file) = UiAssets::get(path) else {
        return if path == "index.html" {
            Html(NO_UI_PAGE).into_response()
        } else {
            AppError::new(
                StatusCode::NOT_FOUND,
                format!("no route for {}", uri.path()),
            )
            .into_response()
        };
    };
    let cache = if path == "index.html" {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let compressed = acceptable(accept).into_iter().find_map(|c| {
        UiAssets::get(&format!("{path}{}", c.suffix())).map(|f| (c, f.data.into_owned()))
    });
    let mut resp = match compressed {
        Some((coding, data)) => {
            let mut r = data.into_response();
            r.headers_mut().insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
            r
        }
        None => file.data.into_owned().into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_picks_brotli_then_gzip_and_honours_q() {
        use Coding::{Brotli, Gzip};
        assert_eq!(acceptable("gzip, deflate, br, zstd"), [Brotli, Gzip]);
        assert_eq!(acceptable("gzip"), [Gzip]);
        assert_eq!(acceptable("BR"), [Brotli]);
        assert_eq!(acceptable("br;q=0.5, gzip"), [Gzip, Brotli]);
        assert_eq!(acceptable("br;q=0, gzip;q=0.1"), [Gzip]);
        assert_eq!(acceptable("*"), [Brotli, Gzip]);
        assert_eq!(acceptable("*;q=0, gzip"), [Gzip]);
        assert_eq!(acceptable("identity"), []);
        assert_eq!(acceptable(""), []);
        assert_eq!(acceptable("br;q=banana"), [Brotli], "an unreadable q is 1");
        let long = format!("{}, br", "x".repeat(MAX_ACCEPT_ENCODING_BYTES));
        assert_eq!(acceptable(&long), [], "past the limit nothing is read");
    }
}
