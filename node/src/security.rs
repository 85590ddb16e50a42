//! Who may do what: the cluster secret of node-to-node requests, the admin
//! token of admin actions, and the browser policy (which `Host` headers the
//! node answers, which web origins may call it).
//!
//! - **Cluster secret.** Every node of a cluster shares one secret
//!   (`--cluster-secret-file`, `CLUSTER_SECRET`); leader-follower and
//!   leaderless nodes refuse to start without one. The secret never travels:
//!   the transport signs every node-to-node request with HMAC-SHA256 under it
//!   (method, path and query, sender, time, SHA-256 of the body; see
//!   [`kv_shared::replication`]), and [`authenticate_peer`] answers 401 to a
//!   request without a valid signature or signed more than
//!   [`SIGNATURE_WINDOW_MS`] away from this node's clock, before reading its
//!   body. The answer is signed too (over the request's signature, its status
//!   and body), so a process that took a stopped peer's port learns nothing
//!   that lets it forge a request, and its answers are refused. A captured
//!   request can be replayed within the window; every node-to-node message is
//!   idempotent (a log append or vote of a term already seen, a record not
//!   newer than the replica's, a configuration not newer), so a replay
//!   changes nothing.
//! - **Admin token.** With `--admin-token` (or `ADMIN_TOKEN`,
//!   `--admin-token-file`), every admin action — changing W/R, the delay
//!   profile — needs `Authorization: Bearer <token>` (401 otherwise).
//!   Without one, a node bound to a loopback address lets W/R change (only
//!   local processes reach it) and refuses the rest (403); a node bound to
//!   another address refuses every admin action, saying how to enable them.
//! - Secrets and tokens are compared in constant time ([`subtle`]).
//! - **Host.** A request whose `Host` names a host this node does not answer
//!   to is refused (403): IP addresses, `localhost`, the hosts of this node's
//!   and its peers' URLs and `--allow-host` are accepted. That stops DNS
//!   rebinding (a page of `evil.example` whose name resolves to 127.0.0.1).
//! - **Origins.** The data endpoints (`/set`, `/get`, `/local_read`,
//!   `/health`) answer cross-origin requests only from this node's and its
//!   peers' origins (the dashboard served by one replica calls the others)
//!   and `--allow-origin`; a cross-origin `POST /set` from any other origin
//!   is refused (403), not only hidden from the page. `/admin/faults`
//!   answers the same origins (the dashboard's fault panel), and still
//!   needs the admin token.

use crate::config::{ClusterSpec, Config, FlagError};
use crate::error::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::BodyExt;
use kv_shared::cluster::{AdminPolicy, SecurityStatus};
use kv_shared::limits::MAX_INTERNAL_BODY_BYTES;
use kv_shared::replication::{
    BODY_DIGEST_HEADER, FROM_HEADER, SIGNATURE_HEADER, SIGNATURE_WINDOW_MS, TIME_HEADER,
};
use kv_shared::NodeId;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

type HmacSha256 = Hmac<Sha256>;

/// Shortest cluster secret a node accepts.
pub const MIN_SECRET_LEN: usize = 16;

/// A secret string: compared in constant time, never printed.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Lower-case hex SHA-256 of `body`.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What a signed node-to-node request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// The signer's wall clock, ms since the Unix epoch.
    pub time_ms: u64,
    /// SHA-256 of the body, hex.
    pub digest: String,
    /// HMAC-SHA256 of the request, hex.
    pub signature: String,
}

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Self {
        Self(text.into())
    }

    /// Whether `given` is this secret (constant time in the secret's length).
    pub fn matches(&self, given: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given))
    }

    /// HMAC-SHA256 under this secret of `parts`, each followed by a newline.
    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    fn request_mac(
        &self,
        method: &str,
        path_and_query: &str,
        from: NodeId,
        time_ms: u64,
        digest: &str,
    ) -> HmacSha256 {
        self.mac(&[
            "kv1-request",
            method,
            path_and_query,
            &from.to_string(),
            &time_ms.to_string(),
            digest,
        ])
    }

    /// Signs a request of node `from` at `time_ms`.
    pub fn sign_request(
        &self,
        method: &str,
        path_and_query: &str,
        from: NodeId,
        time_ms: u64,
        body: &[u8],
    ) -> RequestSignature {
        let digest = body_digest(body);
        let signature = hex::encode(
            self.request_mac(method, path_and_query, from, time_ms, &digest)
                .finalize()
                .into_bytes(),
        );
        RequestSignature {
            time_ms,
            digest,
            signature,
        }
    }

    /// Whether `signature` signs these request headers (constant time).
    pub fn verify_request(
        &self,
        method: &str,
        path_and_query: &str,
        from: NodeId,
        time_ms: u64,
        digest: &str,
        signature: &str,
    ) -> bool {
        hex::decode(signature).is_ok_and(|sig| {
            self.request_mac(method, path_and_query, from, time_ms, digest)
                .verify_slice(&sig)
                .is_ok()
        })
    }

    /// Signs the answer `status` + `body` to the request signed `request_signature`.
    pub fn sign_response(&self, request_signature: &str, status: u16, body: &[u8]) -> String {
        let mac = self.mac(&[
            "kv1-response",
            request_signature,
            &status.to_string(),
            &body_digest(body),
        ]);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` signs this answer (constant time).
    pub fn verify_response(
        &self,
        request_signature: &str,
        status: u16,
        body: &[u8],
        signature: &str,
    ) -> bool {
        hex::decode(signature).is_ok_and(|sig| {
            self.mac(&[
                "kv1-response",
                request_signature,
                &status.to_string(),
                &body_digest(body),
            ])
            .verify_slice(&sig)
            .is_ok()
        })
    }

    fn frame(&self, stream: &str, direction: &str, seq: u64, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac(&["kv1-frame", stream, direction, &seq.to_string()]);
        mac.update(payload);
        mac
    }

    /// The MAC of frame `seq` (from 0) travelling `direction` on the stream
    /// opened by the request signed `stream`, carrying `payload` (see
    /// [`kv_shared::leader_follower`]'s append stream).
    pub fn frame_mac(&self, stream: &str, direction: &str, seq: u64, payload: &[u8]) -> [u8; 32] {
        let out = self
            .frame(stream, direction, seq, payload)
            .finalize()
            .into_bytes();
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&out);
        tag
    }

    /// Whether `tag` is the MAC of that frame (constant time).
    pub fn verify_frame(
        &self,
        stream: &str,
        direction: &str,
        seq: u64,
        payload: &[u8],
        tag: &[u8],
    ) -> bool {
        self.frame(stream, direction, seq, payload)
            .verify_slice(tag)
            .is_ok()
    }

    /// The headers of a request of node `from` signed now: [`FROM_HEADER`],
    /// [`TIME_HEADER`], [`BODY_DIGEST_HEADER`], [`SIGNATURE_HEADER`].
    pub fn signed_headers(
        &self,
        method: &str,
        path_and_query: &str,
        from: NodeId,
        body: &[u8],
    ) -> (HeaderMap, RequestSignature) {
        let sig = self.sign_request(method, path_and_query, from, crate::events::wall_ms(), body);
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        put(FROM_HEADER, from.to_string());
        put(TIME_HEADER, sig.time_ms.to_string());
        put(BODY_DIGEST_HEADER, sig.digest.clone());
        put(SIGNATURE_HEADER, sig.signature.clone());
        (h, sig)
    }
}

/// An admin action, by what it may do to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Changing W or R.
    Quorums,
    /// Changing the artificial delays (it can slow every node).
    DelayProfile,
    /// Injecting a fault (it can stop, slow or cut off the node).
    Faults,
}

/// Counters of what the node refused, since it started (`/status`).
#[derive(Debug, Default)]
pub struct Refusals {
    /// Connections open now.
    pub open_connections: AtomicU64,
    /// Connections closed at once because `--max-connections` were open.
    pub refused_connections: AtomicU64,
    /// Node-to-node requests without the cluster secret.
    pub unauthenticated: AtomicU64,
    /// Node-to-node messages refused by [`crate::validate`].
    pub invalid_messages: AtomicU64,
    /// Requests refused for their `Host` or `Origin`.
    pub foreign_requests: AtomicU64,
    /// Admin actions refused.
    pub refused_admin: AtomicU64,
}

/// Adds one to `counter` and returns the new count.
pub fn count(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// The node's security policy, built once at start: a cheap handle (one
/// reference count per clone; every request clones it).
#[derive(Debug, Clone)]
pub struct Security(Arc<Policy>);

impl std::ops::Deref for Security {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.0
    }
}

/// What [`Security`] holds.
#[derive(Debug)]
pub struct Policy {
    refusals: Refusals,
    cluster_secret: Option<Secret>,
    admin_token: Option<Secret>,
    loopback: bool,
    bind: IpAddr,
    hosts: BTreeSet<String>,
    origins: BTreeSet<String>,
}

/// Reads a secret from the flag or from the first line of the file.
fn load(
    flag: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<Option<Secret>, String> {
    let value = match (flag.filter(|s| !s.is_empty()), file) {
        (Some(v), _) => Some(v.trim().to_owned()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{what} file {}: {e}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_owned())
        }
        (None, None) => None,
    };
    Ok(value.filter(|v| !v.is_empty()).map(|v| Secret(v.into())))
}

/// `host` of a URL `scheme://host[:port][/…]`, lower-cased, brackets kept for IPv6.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]"))?
    } else {
        authority.split(':').next()?.to_owned()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `scheme://host:port` of a URL, lower-cased (what a browser sends as `Origin`).
fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    ))
}

/// The same origin spelled with every loopback name (`127.0.0.1`,
/// `localhost`, `[::1]`), when it is a loopback origin.
fn loopback_aliases(origin: &str) -> Vec<String> {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return vec![origin.to_owned()];
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    if !loopback {
        return vec![origin.to_owned()];
    }
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| match port {
            Some(p) => format!("{scheme}://{h}:{p}"),
            None => format!("{scheme}://{h}"),
        })
        .collect()
}

impl Security {
    /// The policy of a node started with `config`, in the cluster `spec`.
    ///
    /// # Errors
    /// An unreadable secret file; a cluster mode without a cluster secret, or
    /// with one shorter than [`MIN_SECRET_LEN`].
    pub fn from_config(config: &Config, spec: &ClusterSpec) -> Result<Self, FlagError> {
        let cluster_secret = load(
            config.cluster_secret.as_deref(),
            config.cluster_secret_file.as_deref(),
            "--cluster-secret",
        )?;
        let admin_token = load(
            config.admin_token.as_deref(),
            config.admin_token_file.as_deref(),
            "--admin-token",
        )?;
        if spec.mode != kv_shared::Mode::Standalone {
            match &cluster_secret {
                None => {
                    return Err(format!(
                        "--mode {} needs a cluster secret, the same on every node: \
                         --cluster-secret-file PATH or CLUSTER_SECRET (at least {MIN_SECRET_LEN} \
                         characters; e.g. `export CLUSTER_SECRET=$(head -c 24 /dev/urandom | base64)`)",
                        spec.mode
                    )
                    .into())
                }
                Some(s) if s.0.len() < MIN_SECRET_LEN => {
                    return Err(format!(
                        "the cluster secret must be at least {MIN_SECRET_LEN} characters, got {}",
                        s.0.len()
                    )
                    .into())
                }
                Some(_) => {}
            }
        }
        let urls: Vec<&str> = std::iter::once(spec.self_url.as_str())
            .chain(spec.peers.iter().map(|p| p.url.as_str()))
            .collect();
        let mut hosts: BTreeSet<String> = urls.iter().filter_map(|u| url_host(u)).collect();
        hosts.insert("localhost".into());
        hosts.extend(
            config
                .allow_host
                .iter()
                .map(|h| h.trim().to_ascii_lowercase()),
        );
        let mut origins: BTreeSet<String> = BTreeSet::new();
        for o in urls.iter().filter_map(|u| url_origin(u)) {
            origins.extend(loopback_aliases(&o));
        }
        origins.extend(
            config
                .allow_origin
                .iter()
                .filter_map(|o| url_origin(o.trim())),
        );
        Ok(Self(Arc::new(Policy {
            refusals: Refusals::default(),
            cluster_secret,
            admin_token,
            loopback: config.bind.is_loopback(),
            bind: config.bind,
            hosts,
            origins,
        })))
    }
}

impl Policy {
    /// What the node refused so far.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// The counters and the admin policy, as `/status` shows them.
    pub fn status(&self) -> SecurityStatus {
        let r = &self.refusals;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SecurityStatus {
            admin: Some(match (&self.admin_token, self.loopback) {
                (Some(_), _) => AdminPolicy::Token,
                (None, true) => AdminPolicy::LoopbackQuorumsOnly,
                (None, false) => AdminPolicy::Disabled,
            }),
            open_connections: get(&r.open_connections),
            refused_connections: get(&r.refused_connections),
            unauthenticated: get(&r.unauthenticated),
            invalid_messages: get(&r.invalid_messages),
            foreign_requests: get(&r.foreign_requests),
            refused_admin: get(&r.refused_admin),
            refused_event_streams: 0,
        }
    }

    /// The cluster secret, if this node has one.
    pub fn cluster_secret(&self) -> Option<&Secret> {
        self.cluster_secret.as_ref()
    }

    /// Whether an admin token is configured.
    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Lets an admin action through, or says why not.
    ///
    /// # Errors
    /// 401 for a missing or wrong token; 403 when no token is configured and
    /// the action needs one.
    pub fn authorize(&self, headers: &HeaderMap, action: AdminAction) -> Result<(), AppError> {
        let verdict = self.judge(headers, action);
        if let Err(e) = &verdict {
            let refused = count(&self.refusals.refused_admin);
            tracing::warn!(refused, ?action, error = %e.body.error, "admin action refused");
        }
        verdict
    }

    fn judge(&self, headers: &HeaderMap, action: AdminAction) -> Result<(), AppError> {
        let Some(token) = &self.admin_token else {
            return match action {
                AdminAction::Quorums if self.loopback => Ok(()),
                AdminAction::Quorums => Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "admin actions are disabled on a node bound to {} without an admin token: \
                         start every node with ADMIN_TOKEN (or --admin-token-file) and send \
                         `Authorization: Bearer <token>`",
                        self.bind
                    ),
                )),
                AdminAction::DelayProfile | AdminAction::Faults => Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "this admin call needs an admin token: start every node with ADMIN_TOKEN \
                     (or --admin-token-file) and send `Authorization: Bearer <token>`",
                )),
            };
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| token.matches(g.as_bytes())) {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "this change needs the header `Authorization: Bearer <admin token>`",
            ));
        }
        Ok(())
    }

    /// Whether the node answers to `host` (a `Host` header, port included).
    /// Allocates only for a name with upper-case letters (every request asks).
    pub fn answers_host(&self, host: &str) -> bool {
        if let Some(rest) = host.strip_prefix('[') {
            // An IPv6 literal, `[addr]` or `[addr]:port`.
            return rest
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.contains(&name.to_ascii_lowercase())
        } else {
            self.hosts.contains(name)
        }
    }

    /// Whether pages of `origin` may call the data endpoints.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        std::str::from_utf8(origin)
            .ok()
            .is_some_and(|o| self.origins.contains(&o.to_ascii_lowercase()))
    }

    /// The origins allowed besides `--allow-origin` (for `/status`).
    pub fn origins(&self) -> Vec<String> {
        self.origins.iter().cloned().collect()
    }
}

/// CORS for the paths `cross_origin` allows (the router's policy,
/// [`crate::server::cross_origin_path`]), for the allowed origins only:
/// GET/POST and the JSON content type, no credentials. Other paths get no
/// CORS headers. Apply it outermost, so that it answers preflights.
pub fn cors(security: &Security, cross_origin: fn(&str) -> bool) -> CorsLayer {
    let s = security.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, parts| {
                cross_origin(parts.uri.path()) && s.allows_origin(origin.as_bytes())
            },
        ))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
}

/// Refuses requests for a host the node does not answer to, and
/// cross-origin writes from origins it does not allow (a browser sends a
/// simple cross-origin POST without asking first, so CORS alone would only
/// hide the answer, not stop the write).
pub async fn browser_policy(
    State(security): State<Security>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        if !security.answers_host(host) {
            let refused = count(&security.refusals.foreign_requests);
            tracing::warn!(refused, host, "request for a foreign host refused");
            return AppError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this node does not answer to the host `{host}`; if it is right, start the \
                     node with --allow-host {}",
                    host.rsplit_once(':').map_or(host, |(h, _)| h)
                ),
            )
            .into_response();
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .zip(origin.to_str().ok())
            .is_some_and(|(h, o)| {
                o.split_once("://")
                    .is_some_and(|(_, a)| a.eq_ignore_ascii_case(h))
            });
        if !same && req.method() != Method::GET && !security.allows_origin(origin.as_bytes()) {
            let refused = count(&security.refusals.foreign_requests);
            tracing::warn!(refused, ?origin, "cross-origin request refused");
            return AppError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request from {} refused; allow it with --allow-origin",
                    origin.to_str().unwrap_or("an unreadable origin")
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Refuses a node-to-node request that is not signed with the cluster
/// secret (401, before its body is read), reads its body (at most
/// [`MAX_INTERNAL_BODY_BYTES`]: 413) and checks it is the one signed (400),
/// then signs the answer.
pub async fn authenticate_peer(
    State(security): State<Security>,
    req: Request,
    next: Next,
) -> Response {
    let refuse = |message: String, path: &str| {
        let refused = count(&security.refusals.unauthenticated);
        tracing::warn!(refused, path, "node-to-node request refused: {message}");
        AppError::new(StatusCode::UNAUTHORIZED, message).into_response()
    };
    let path = req.uri().path().to_owned();
    let Some(secret) = security.cluster_secret.clone() else {
        return refuse(
            "this node takes no node-to-node requests (it has no cluster secret)".into(),
            &path,
        );
    };
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let from = header(FROM_HEADER).and_then(|v| v.parse::<NodeId>().ok());
    let time_ms = header(TIME_HEADER).and_then(|v| v.parse::<u64>().ok());
    let (Some(from), Some(time_ms), Some(digest), Some(signature)) = (
        from,
        time_ms,
        header(BODY_DIGEST_HEADER),
        header(SIGNATURE_HEADER),
    ) else {
        return refuse(
            "node-to-node endpoints take only requests signed with the cluster secret".into(),
            &path,
        );
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.as_str(), |p| p.as_str());
    let method = parts.method.as_str();
    if !secret.verify_request(method, path_and_query, from, time_ms, digest, signature) {
        return refuse(
            "the signature does not match: the sender has another cluster secret".into(),
            &path,
        );
    }
    let skew = crate::events::wall_ms().abs_diff(time_ms);
    if skew > SIGNATURE_WINDOW_MS {
        return refuse(
            format!(
                "signed {skew} ms away from this node's clock (the window is {SIGNATURE_WINDOW_MS} ms): \
                 a replay, or the clocks are not synchronised"
            ),
            &path,
        );
    }
    let (digest, signature) = (digest.to_owned(), signature.to_owned());
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("node-to-node bodies are limited to {MAX_INTERNAL_BODY_BYTES} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > u64::from(MAX_INTERNAL_BODY_BYTES)) {
        return too_large();
    }
    let bytes = match http_body_util::Limited::new(body, MAX_INTERNAL_BODY_BYTES as usize)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) if crate::error::is_body_timeout(&*e) => {
            return crate::error::body_timeout().into_response()
        }
        Err(e) => {
            return AppError::bad_request(format!("the body could not be read: {e}"))
                .into_response()
        }
    };
    if !bool::from(body_digest(&bytes).as_bytes().ct_eq(digest.as_bytes())) {
        return AppError::bad_request("the body is not the one that was signed").into_response();
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (mut parts, body) = resp.into_parts();
    // Our own answer, bounded by what the handlers build.
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("answer lost: {e}"),
            )
            .into_response()
        }
    };
    let answer = secret.sign_response(&signature, parts.status.as_u16(), &bytes);
    if let Ok(v) = HeaderValue::from_str(&answer) {
        parts.headers.insert(SIGNATURE_HEADER, v);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn security(args: &[&str]) -> Security {
        let config =
            Config::try_parse_from(std::iter::once("kv-node").chain(args.iter().copied())).unwrap();
        let spec = config.cluster_spec().unwrap();
        Security::from_config(&config, &spec).unwrap()
    }

    const PEERS: &str = "1=http://127.0.0.1:8081,2=http://10.0.0.2:8082,3=http://db3.internal:8083";

    #[test]
    fn cluster_modes_need_a_long_enough_secret() {
        let config =
            Config::try_parse_from(["kv-node", "--mode", "leaderless", "--peers", PEERS]).unwrap();
        let spec = config.cluster_spec().unwrap();
        let e = Security::from_config(&config, &spec).unwrap_err();
        assert!(e.0.contains("CLUSTER_SECRET"), "{e}");
        let mut short = config.clone();
        short.cluster_secret = Some("short".into());
        assert!(Security::from_config(&short, &spec)
            .unwrap_err()
            .0
            .contains("at least 16"));
        let s = security(&[
            "--mode",
            "leaderless",
            "--peers",
            PEERS,
            "--cluster-secret",
            "0123456789abcdef",
        ]);
        assert_eq!(format!("{:?}", s.cluster_secret().unwrap()), "Secret(…)");
    }

    #[test]
    fn signatures_bind_every_signed_part() {
        let secret = Secret::new("0123456789abcdef");
        let other = Secret::new("0123456789abcdeX");
        let sig = secret.sign_request("POST", "/internal/repair", 2, 1_000, b"{}");
        let ok = |s: &Secret, (m, p, from, t, d): (&str, &str, NodeId, u64, &str)| {
            s.verify_request(m, p, from, t, d, &sig.signature)
        };
        let signed = ("POST", "/internal/repair", 2, 1_000, sig.digest.as_str());
        assert!(ok(&secret, signed));
        assert!(!ok(&other, signed));
        let other_body = body_digest(b"{ }");
        for changed in [
            ("GET", "/internal/repair", 2, 1_000, sig.digest.as_str()),
            ("POST", "/internal/config", 2, 1_000, sig.digest.as_str()),
            ("POST", "/internal/repair", 3, 1_000, sig.digest.as_str()),
            ("POST", "/internal/repair", 2, 1_001, sig.digest.as_str()),
            ("POST", "/internal/repair", 2, 1_000, other_body.as_str()),
        ] {
            assert!(!ok(&secret, changed), "{changed:?}");
        }
        assert!(!secret.verify_request("POST", "/internal/repair", 2, 1_000, &sig.digest, "zz"));
        let answer = secret.sign_response(&sig.signature, 200, b"ok");
        assert!(secret.verify_response(&sig.signature, 200, b"ok", &answer));
        assert!(!secret.verify_response(&sig.signature, 201, b"ok", &answer));
        assert!(!secret.verify_response(&sig.signature, 200, b"ok!", &answer));
        assert!(!other.verify_response(&sig.signature, 200, b"ok", &answer));
    }

    #[test]
    fn admin_actions_follow_the_token_and_the_bind_address() {
        let local = security(&[]);
        let h = HeaderMap::new();
        assert!(local.authorize(&h, AdminAction::Quorums).is_ok());
        assert_eq!(
            local
                .authorize(&h, AdminAction::DelayProfile)
                .unwrap_err()
                .status,
            403
        );
        let public = security(&["--bind", "0.0.0.0"]);
        let e = public.authorize(&h, AdminAction::Quorums).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.body.error.contains("ADMIN_TOKEN"), "{}", e.body.error);
        let guarded = security(&["--admin-token", "t0ken"]);
        assert_eq!(
            guarded
                .authorize(&h, AdminAction::Quorums)
                .unwrap_err()
                .status,
            401
        );
        let mut ok = HeaderMap::new();
        ok.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken"),
        );
        assert!(guarded.authorize(&ok, AdminAction::DelayProfile).is_ok());
        let mut bad = HeaderMap::new();
        bad.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ke"),
        );
        assert_eq!(
            guarded
                .authorize(&bad, AdminAction::Quorums)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn hosts_and_origins_are_the_clusters_own() {
        let s = security(&[
            "--mode",
            "leaderless",
            "--node-id",
            "4",
            "--peers",
            PEERS,
            "--cluster-secret",
            "0123456789abcdef",
            "--allow-host",
            "kv.example",
        ]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8081",
            "[::1]:9",
            "10.9.8.7",
            "db3.internal:8083",
            "KV.example:80",
        ] {
            assert!(s.answers_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.nip.io:8080"] {
            assert!(!s.answers_host(bad), "{bad}");
        }
        for ok in [
            "http://127.0.0.1:8081",
            "http://localhost:8081",
            "http://10.0.0.2:8082",
            "http://db3.internal:8083",
        ] {
            assert!(s.allows_origin(ok.as_bytes()), "{ok}");
        }
        for bad in ["http://evil.example", "http://127.0.0.1:9999", "null"] {
            assert!(!s.allows_origin(bad.as_bytes()), "{bad}");
        }
    }

    #[tokio::test]
    async fn only_the_data_routes_answer_preflights_and_only_for_known_origins() {
        use crate::server::AppState;
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let mut config = Config::for_tests(1);
        config.allow_origin = vec!["http://dashboard.example:3000".into()];
        let app = crate::app(AppState::new(config));
        let preflight = |path: &str, origin: &str| {
            Request::options(path)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .body(Body::empty())
                .unwrap()
        };
        for origin in [
            "http://127.0.0.1:0",
            "http://localhost:0",
            "http://dashboard.example:3000",
        ] {
            for path in ["/set", "/get/k", "/local_read", "/health"] {
                let resp = app.clone().oneshot(preflight(path, origin)).await.unwrap();
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
                assert_eq!(
                    resp.headers()["access-control-allow-origin"],
                    origin,
                    "{path}"
                );
            }
        }
        // The fault panel of a page served by a peer: allowed, with the token header.
        let faults = Request::options("/admin/faults")
            .header("origin", "http://localhost:0")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(faults).await.unwrap();
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "http://localhost:0"
        );
        for (path, origin) in [
            ("/admin/faults", "http://evil.example"),
            ("/config", "http://127.0.0.1:0"),
            ("/status", "http://127.0.0.1:0"),
            ("/internal/read", "http://127.0.0.1:0"),
            ("/set", "http://evil.example"),
        ] {
            let resp = app.clone().oneshot(preflight(path, origin)).await.unwrap();
            let allowed = resp.headers().get("access-control-allow-origin");
            assert!(
                allowed.is_none(),
                "{path} from {origin} must not be callable cross-origin"
            );
        }
        // A simple cross-origin POST (no preflight) from elsewhere is refused, not run.
        let forged = Request::post("/set")
            .header("origin", "http://evil.example")
            .header("host", "127.0.0.1:0")
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"key":"k","value":"v"}"#))
            .unwrap();
        let resp = app.clone().oneshot(forged).await.unwrap();
        assert_eq!(resp.status(), 403);
        // DNS rebinding: a page of another name resolving to this node.
        let rebound = Request::get("/health")
            .header("host", "evil.example:8080")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.clone().oneshot(rebound).await.unwrap().status(), 403);
    }
}
