//! The errors of the node: the replication's domain error and the one error
//! type of the HTTP boundary.
//!
//! Replication code (both runtimes, the read path, the checks of peers'
//! messages) returns a [`ReplicationError`] (or [`Invalid`]) and knows
//! nothing of HTTP; the handlers turn it into an [`AppError`] with `?`, and
//! the `From` impls below are the one place that gives each case its status
//! and JSON fields. Every failing request — a bad body, an unknown route, a
//! wrong method, a missed quorum — answers with a status and the JSON body
//! [`kv_shared::ErrorBody`]. Internal errors are logged and hidden.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kv_shared::limits::InputError;
use kv_shared::{ErrorBody, NodeId, Term, Version};

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

/// Why a replicated operation failed: what the replication runtimes and the
/// read path return. It carries no HTTP; [`From<ReplicationError> for
/// AppError`](AppError#impl-From<ReplicationError>-for-AppError) is the one
/// place that gives each case its status and JSON fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// A message from a peer failed the checks of [`crate::validate`].
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// W replicas did not hold the write within the write timeout.
    #[error(
        "write quorum not met: {acked} of {required} replicas {} version {version} of `{key}` \
         {}",
        aftermath.verb(),
        aftermath.describe(*after_ms)
    )]
    WriteQuorumNotMet {
        /// The key written.
        key: String,
        /// The version the write was given.
        version: Version,
        /// Replicas that hold it (the coordinator included).
        acked: u32,
        /// W.
        required: u32,
        /// The write timeout.
        after_ms: u64,
        /// The leader that decided the write (leader-follower).
        leader: Option<NodeId>,
        /// Its term (leader-follower).
        term: Option<Term>,
        /// What becomes of the write.
        aftermath: Aftermath,
    },
    /// The leader stopped leading before W replicas held the write.
    #[error(
        "node {node} stopped leading (term {term}) before version {version} of `{key}` reached \
         W replicas; it may survive or be rolled back"
    )]
    Abandoned {
        /// The node that led.
        node: NodeId,
        /// The term it stopped leading in.
        term: Term,
        /// The key written.
        key: String,
        /// The version the write was given.
        version: Version,
        /// The leader now, if known.
        leader: Option<NodeId>,
    },
    /// A coordinated read missed its quorum (see [`crate::reads`]).
    #[error("{0}")]
    Read(#[from] crate::reads::ReadError),
    /// No replica asked has the key.
    #[error("key not found: {key}")]
    KeyNotFound {
        /// The key.
        key: String,
    },
    /// The node stopped before the write was decided.
    #[error("the node stopped before the write was acknowledged")]
    Stopped,
    /// This node does not lead; a forwarded request is not forwarded again.
    #[error("{}", not_leader(*node, *leader, *term, *forwarded))]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader of the term.
        leader: NodeId,
        /// The term.
        term: Term,
        /// Whether the request had been forwarded here.
        forwarded: bool,
    },
    /// No leader in this term (an election is under way).
    #[error("no leader in term {term} (last known leader: {}); an election is under way, retry shortly", last_leader.map_or("none yet".to_owned(), |l| format!("node {l}")))]
    NoLeader {
        /// The term.
        term: Term,
        /// The last leader this node knew.
        last_leader: Option<NodeId>,
    },
    /// The leader's term has not started yet (its first entry is not committed).
    #[error(
        "node {node} was elected leader of term {term} and has not committed its first entry \
         yet (no majority answered within the write timeout)"
    )]
    TermNotStarted {
        /// This node.
        node: NodeId,
        /// Its term.
        term: Term,
    },
    /// The leader holds `--max-uncommitted` entries no majority acknowledged.
    #[error(
        "node {node} holds {window} entries no majority has acknowledged yet: the followers lag \
         behind; retry shortly"
    )]
    WindowFull {
        /// This node.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The window.
        window: u64,
    },
    /// A configuration change is in progress; writes wait for it.
    #[error("a configuration change is in progress")]
    ChangeInProgress {
        /// The leader, if known.
        leader: Option<NodeId>,
        /// The leader's term.
        term: Term,
    },
    /// The key is at the highest version the cluster hands out.
    #[error("`{key}` is at version {version}, the highest the cluster hands out")]
    VersionExhausted {
        /// The key.
        key: String,
        /// Its version.
        version: Version,
    },
    /// The leader a request must go to does not answer.
    #[error("leader {leader} ({url}) is unreachable: {reason}")]
    LeaderUnreachable {
        /// The leader.
        leader: NodeId,
        /// Where it was called.
        url: String,
        /// Why the call failed.
        reason: String,
        /// This node's term.
        term: Option<Term>,
    },
    /// The leader answered a forwarded request with an error: passed on as is.
    #[error("{}", body.error)]
    Forwarded {
        /// The leader's status code.
        status: u16,
        /// The leader's error body.
        body: ErrorBody,
    },
    /// The leader's answer to a forwarded request does not parse.
    #[error("leader {leader} answered: {reason}")]
    BadLeaderAnswer {
        /// The leader.
        leader: NodeId,
        /// Why the answer is unreadable.
        reason: String,
    },
    /// An injected fault cuts this node off from the sender.
    #[error("messages from node {from} are cut off by an injected fault")]
    CutOff {
        /// The sender.
        from: NodeId,
    },
    /// `POST /config` asked for an invalid configuration.
    #[error("{0}")]
    InvalidConfig(String),
    /// Leadership changed during a configuration change.
    #[error(
        "leadership changed (term {term}) during the configuration change; read /config and retry"
    )]
    ConfigAbandoned {
        /// The new term.
        term: Term,
    },
    /// A configuration change did not reach every node in time.
    #[error(
        "the configuration change did not reach every node within {after_ms} ms; it goes on in \
         the background (see /status)"
    )]
    ConfigTimedOut {
        /// How long the change was waited for.
        after_ms: u64,
    },
    /// A leader-follower read had the leader's answer, but a replica is in a newer term.
    #[error("the leader of term {leader_term} answered, but a replica is in term {seen_term}: a newer leader may exist; retry")]
    NewerTerm {
        /// The answering leader's term.
        leader_term: Term,
        /// The newer term a replica is in.
        seen_term: Term,
    },
    /// A leader-follower read found no leader among the replicas that answered.
    #[error(
        "no leader was among the replicas that answered (a read returns what the leader \
         committed, so it needs the leader): retry once a leader is elected"
    )]
    NoLeaderRead,
}

fn not_leader(node: NodeId, leader: NodeId, term: Term, forwarded: bool) -> String {
    if forwarded {
        format!(
            "node {node} is not the leader of term {term}; node {leader} is (a forwarded write is \
             not forwarded again)"
        )
    } else {
        format!("node {node} is not the leader; node {leader} is")
    }
}

/// What becomes of a write that missed its quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aftermath {
    /// Leader-follower: applied on the replicas that hold it, may still
    /// reach the others, or be rolled back by a new leader.
    MayRollBack,
    /// Leaderless: kept by the replicas that acknowledged it and in hints
    /// for the others.
    Hinted,
}

impl Aftermath {
    fn verb(self) -> &'static str {
        match self {
            Aftermath::MayRollBack => "hold",
            Aftermath::Hinted => "acknowledged",
        }
    }

    fn describe(self, after_ms: u64) -> String {
        match self {
            Aftermath::MayRollBack => format!(
                "after {after_ms} ms; the write is applied on those and may still reach the others \
                 (or be rolled back if a new leader lacks it)"
            ),
            Aftermath::Hinted => format!(
                "(the others are unreachable or did not answer within {after_ms} ms); the write \
                 stays on those replicas and in hints for the others, so it may still become visible"
            ),
        }
    }
}

/// A peer's message that failed a check of [`crate::validate`]: answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        Self::bad_request(e.0)
    }
}

impl ReplicationError {
    /// The HTTP status of this failure.
    fn status(&self) -> StatusCode {
        use ReplicationError as E;
        match self {
            E::Invalid(_) | E::InvalidConfig(_) => StatusCode::BAD_REQUEST,
            E::VersionExhausted { .. } => StatusCode::CONFLICT,
            E::KeyNotFound { .. } => StatusCode::NOT_FOUND,
            E::BadLeaderAnswer { .. } => StatusCode::BAD_GATEWAY,
            E::Forwarded { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            E::WriteQuorumNotMet { .. }
            | E::Abandoned { .. }
            | E::Stopped
            | E::NotLeader { .. }
            | E::NoLeader { .. }
            | E::TermNotStarted { .. }
            | E::WindowFull { .. }
            | E::ChangeInProgress { .. }
            | E::LeaderUnreachable { .. }
            | E::CutOff { .. }
            | E::ConfigAbandoned { .. }
            | E::ConfigTimedOut { .. }
            | E::NewerTerm { .. }
            | E::NoLeaderRead
            | E::Read(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<ReplicationError> for AppError {
    fn from(e: ReplicationError) -> Self {
        use ReplicationError as E;
        let status = e.status();
        if let E::Forwarded { body, .. } = e {
            return Self { status, body };
        }
        let mut body = ErrorBody::new(e.to_string());
        match e {
            E::WriteQuorumNotMet {
                acked,
                required,
                leader,
                term,
                ..
            } => {
                body.acked = Some(acked);
                body.required = Some(required);
                body.leader = leader;
                body.term = term;
            }
            E::Abandoned { term, leader, .. } => {
                body.term = Some(term);
                body.leader = leader;
            }
            E::NotLeader { leader, term, .. } => {
                body.leader = Some(leader);
                body.term = Some(term);
            }
            E::NoLeader { term, last_leader } => {
                body.leader = last_leader;
                body.term = Some(term);
            }
            E::TermNotStarted { node, term } => {
                body.leader = Some(node);
                body.term = Some(term);
            }
            E::WindowFull { node, term, .. } => {
                body.leader = Some(node);
                body.term = Some(term);
            }
            E::ChangeInProgress { leader, term } => {
                body.leader = leader;
                body.term = Some(term);
            }
            E::ConfigAbandoned { term } => body.term = Some(term),
            E::Read(crate::reads::ReadError::QuorumNotMet {
                acked, required, ..
            }) => {
                body.acked = Some(acked);
                body.required = Some(required);
            }
            E::LeaderUnreachable { leader, term, .. } => {
                body.leader = Some(leader);
                body.term = term;
            }
            _ => {}
        }
        Self { status, body }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_must_be_utf8_once_decoded() {
        assert!(check_query_utf8("key=a%C3%A9b").is_ok());
        assert!(check_query_utf8("key=a+b&only=own-traces").is_ok());
        assert!(check_query_utf8("").is_ok());
        assert!(check_query_utf8("key=a%FFb").is_err());
        assert!(check_query_utf8("k%FF=x").is_err());
    }

    fn answer(e: ReplicationError) -> (u16, ErrorBody) {
        let a = AppError::from(e);
        (a.status.as_u16(), a.body)
    }

    #[test]
    fn a_missed_write_quorum_is_a_503_with_acked_required_leader_and_term() {
        let (status, body) = answer(ReplicationError::WriteQuorumNotMet {
            key: "k".into(),
            version: 4,
            acked: 1,
            required: 3,
            after_ms: 2000,
            leader: Some(2),
            term: Some(7),
            aftermath: Aftermath::MayRollBack,
        });
        assert_eq!(status, 503);
        assert_eq!(
            (body.acked, body.required, body.leader, body.term),
            (Some(1), Some(3), Some(2), Some(7))
        );
        assert_eq!(
            body.error,
            "write quorum not met: 1 of 3 replicas hold version 4 of `k` after 2000 ms; the write \
             is applied on those and may still reach the others (or be rolled back if a new \
             leader lacks it)"
        );
    }

    #[test]
    fn a_leaderless_missed_quorum_says_the_write_stays_in_hints() {
        let (status, body) = answer(ReplicationError::WriteQuorumNotMet {
            key: "k".into(),
            version: 9,
            acked: 2,
            required: 3,
            after_ms: 500,
            leader: None,
            term: None,
            aftermath: Aftermath::Hinted,
        });
        assert_eq!((status, body.leader, body.term), (503, None, None));
        assert!(body.error.starts_with(
            "write quorum not met: 2 of 3 replicas acknowledged version 9 of `k` (the others are \
             unreachable or did not answer within 500 ms)"
        ));
        assert!(body.error.ends_with("so it may still become visible"));
    }

    #[test]
    fn not_the_leader_names_the_leader_and_says_whether_the_request_was_forwarded() {
        let direct = answer(ReplicationError::NotLeader {
            node: 3,
            leader: 1,
            term: 5,
            forwarded: false,
        });
        assert_eq!(direct.0, 503);
        assert_eq!(direct.1.error, "node 3 is not the leader; node 1 is");
        assert_eq!((direct.1.leader, direct.1.term), (Some(1), Some(5)));
        let forwarded = answer(ReplicationError::NotLeader {
            node: 3,
            leader: 1,
            term: 5,
            forwarded: true,
        });
        assert!(forwarded.1.error.contains("not forwarded again"));
        let none = answer(ReplicationError::NoLeader {
            term: 6,
            last_leader: None,
        });
        assert!(none.1.error.contains("last known leader: none yet"));
        assert_eq!((none.0, none.1.leader, none.1.term), (503, None, Some(6)));
    }

    #[test]
    fn a_leaders_own_error_is_passed_on_with_its_status_and_body() {
        let mut body = ErrorBody::new("value too large");
        body.term = Some(3);
        let (status, got) = answer(ReplicationError::Forwarded {
            status: 413,
            body: body.clone(),
        });
        assert_eq!((status, got), (413, body));
        // A status that is not one cannot come back as a 5xx of our own making.
        let (odd, _) = answer(ReplicationError::Forwarded {
            status: 1000,
            body: ErrorBody::new("?"),
        });
        assert_eq!(odd, 502);
    }

    #[test]
    fn client_mistakes_are_4xx_and_availability_failures_503() {
        let cases = [
            (ReplicationError::Invalid(Invalid("bad".into())), 400),
            (
                ReplicationError::InvalidConfig("w must be 1..=N".into()),
                400,
            ),
            (ReplicationError::KeyNotFound { key: "k".into() }, 404),
            (
                ReplicationError::VersionExhausted {
                    key: "k".into(),
                    version: 9,
                },
                409,
            ),
            (
                ReplicationError::BadLeaderAnswer {
                    leader: 1,
                    reason: "eof".into(),
                },
                502,
            ),
            (ReplicationError::Stopped, 503),
            (ReplicationError::CutOff { from: 2 }, 503),
            (ReplicationError::NoLeaderRead, 503),
            (
                ReplicationError::Read(crate::reads::ReadError::QuorumNotMet {
                    acked: 1,
                    required: 3,
                    not_current: vec![4],
                }),
                503,
            ),
            (ReplicationError::ConfigTimedOut { after_ms: 10 }, 503),
        ];
        for (e, status) in cases {
            let message = e.to_string();
            let (got, body) = answer(e);
            assert_eq!(got, status, "{message}");
            assert_eq!(body.error, message);
        }
    }
}
