//! The error type of the HTTP boundary.
//!
//! Every failing request — a bad body, an unknown route, a wrong method, a
//! missed quorum — answers with a status and the JSON body
//! [`kv_shared::ErrorBody`]. Internal errors are logged and hidden.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kv_shared::limits::InputError;
use kv_shared::ErrorBody;

/// A failed request: the status to answer with and its JSON body.
#[derive(Debug, Clone)]
pub struct AppError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ErrorBody,
}

impl AppError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(message),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found for a key.
    pub fn key_not_found(key: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("key not found: {key}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.body.error, "request failed");
        }
        (self.status, Json(self.body)).into_response()
    }
}

impl From<InputError> for AppError {
    fn from(e: InputError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.to_string())
    }
}

/// Statuses of extractor rejections, with 422 folded into 400: a body that
/// parses as JSON but lacks a field is as malformed to a client as bad JSON.
fn rejection_status(status: StatusCode) -> StatusCode {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    }
}

/// Whether `e` or one of its sources is the body read timeout
/// (`--body-timeout-ms`).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    // Bounded: error chains are short; 16 is far more than any real one.
    for _ in 0..16 {
        let Some(err) = next else { return false };
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// 408 for a body that did not arrive within `--body-timeout-ms`.
pub fn body_timeout() -> AppError {
    AppError::new(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time (--body-timeout-ms)",
    )
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if is_body_timeout(&r) {
            return body_timeout();
        }
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a request with `Content-Type: application/json`".to_owned()
            }
            _ => r.body_text(),
        };
        Self::new(rejection_status(r.status()), message)
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        Self::new(rejection_status(r.status()), r.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        Self::new(rejection_status(r.status()), r.body_text())
    }
}

/// `axum::Json` whose rejections are [`AppError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` whose rejections are [`AppError`]s, and which
/// refuses a query whose percent-decoded names or values are not UTF-8 (the
/// form decoder underneath would replace such bytes with U+FFFD, so that
/// `?key=a%FFb` named another key than the path `/get/a%FFb` refuses).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query() {
            check_query_utf8(query)?;
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Refuses a query string with a name or value that is not UTF-8 once
/// percent-decoded.
fn check_query_utf8(query: &str) -> Result<(), AppError> {
    let bad = query
        .split('&')
        .flat_map(|pair| pair.splitn(2, '='))
        .any(|part| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .is_err()
        });
    if bad {
        return Err(AppError::bad_request(
            "the query string is not valid UTF-8 once percent-decoded",
        ));
    }
    Ok(())
}

/// `axum::extract::Path` whose rejections are [`AppError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

/// 413 at once for a request whose `Content-Length` is over `limit`
/// (without it, the body would be read up to the limit first, or waited on
/// until the body timeout when the client never sends it all).
pub async fn refuse_declared_over(
    axum::extract::State(limit): axum::extract::State<u64>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Fallback for a path that exists with another method: 405 in JSON.
pub async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this path",
    )
}

impl From<crate::reads::ReadError> for AppError {
    /// 503 for a read that missed its quorum, with `acked` and `required`.
    fn from(e: crate::reads::ReadError) -> Self {
        use crate::reads::ReadError;
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        match e {
            ReadError::QuorumNotMet {
                acked, required, ..
            } => {
                err.body.acked = Some(acked);
                err.body.required = Some(required);
            }
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::check_query_utf8;

    #[test]
    fn a_query_must_be_utf8_once_decoded() {
        assert!(check_query_utf8("key=a%C3%A9b").is_ok());
        assert!(check_query_utf8("key=a+b&only=own-traces").is_ok());
        assert!(check_query_utf8("").is_ok());
        assert!(check_query_utf8("key=a%FFb").is_err());
        assert!(check_query_utf8("k%FF=x").is_err());
    }
}
