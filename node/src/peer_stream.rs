//! Peer streams: connections kept open to a peer, over which a node sends
//! the same kind of message again and again — the leader its appends to a
//! follower ([`Appends`]), a read coordinator its batches of asks to a
//! replica ([`Reads`]), a leaderless write coordinator its batches of client
//! writes to a replica ([`LlWrites`]) — instead of one HTTP request each.
//!
//! The sender opens a stream with a signed `POST` of the kind's upgrade path
//! (checked by [`crate::security::authenticate_peer`] like every
//! node-to-node request), which the peer upgrades; then each message is one
//! frame and its answer one frame back ([`kv_shared::replication`], "Peer
//! streams", gives the format). Every frame is authenticated with the
//! cluster secret, numbered, and bounded by [`MAX_INTERNAL_BODY_BYTES`]; a
//! frame that fails a check ends the stream. Each end keeps its buffers (the
//! message encoded, the frame sent, the payload read) from one frame to the
//! next, so a frame costs no allocation; one grown past 256 KiB is not kept:
//! the frame sent is let go right after it, the message encoded when the
//! next message starts, the payload read when a smaller one comes.
//!
//! What a message meets is what it met as a request: the sender waits out a
//! pause and applies its outgoing faults to each frame ([`Links::carry`], as
//! [`Transport`] does for a request); the peer holds each frame while
//! paused, refuses it when its incoming faults say so, and applies its
//! outgoing faults to the answer ([`serve`], as the server's middleware
//! does). The peer answers exactly what the kind's request would get (its
//! status and body), so the caller sees the same answers and failures, and
//! counts each frame in `/metrics` as that request. A node that stops ends
//! the streams it serves.
//!
//! One message is on a stream at a time. A sender keeps a fixed number of
//! streams per peer (one for appends and for leaderless writes, which the
//! cores' flow control — one message in flight per peer — fits;
//! `--read-batches-in-flight` for reads, which the read batcher never
//! exceeds); a message that finds them all busy — a heartbeat while a batch
//! is out, or a message sent again after a timeout — goes as a request of
//! its own, so nothing waits behind another message. A stream that breaks
//! (reset, closed, no answer in time, a bad frame) is dropped and the
//! message reported failed, as a failed request is; the next message opens
//! a new one. A peer that does not offer the stream (it refuses the
//! upgrade) gets requests for [`UPGRADE_RETRY`].

use crate::error::AppError;
use crate::faults::{Fate, Faults, FROM_HEADER};
use crate::security::Secret;
use crate::server::AppState;
use crate::transport::{Transport, TransportError};
use axum::body::Body;
use axum::extract::Request as ServerRequest;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, APPEND_PATH, STREAM_PATH, STREAM_PROTOCOL,
};
use kv_shared::leaderless::{
    LlWrite, LlWriteAck, LL_WRITE_PATH, LL_WRITE_STREAM_PATH, LL_WRITE_STREAM_PROTOCOL,
};
use kv_shared::limits::MAX_INTERNAL_BODY_BYTES;
use kv_shared::replication::{
    InternalReadsRequest, InternalReadsResponse, StreamAnswer, INTERNAL_READS_PATH,
    INTERNAL_READS_STREAM_PATH, READS_STREAM_PROTOCOL, SIGNATURE_HEADER, STREAM_MAC_BYTES,
};
use kv_shared::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

/// Direction label of the sender's frames in their MAC.
const REQUEST: &str = "request";
/// Direction label of the peer's frames in their MAC.
const ANSWER: &str = "answer";
/// After a peer refused the upgrade, messages to it go as requests for
/// this long before the sender asks again.
pub const UPGRADE_RETRY: Duration = Duration::from_secs(1);
/// A stream unused for this long is opened anew rather than reused: well
/// under the peers' `--idle-timeout-ms` (60 s by default), as for the
/// transport's pooled connections.
const IDLE_REUSE: Duration = Duration::from_secs(20);
/// Most time the TCP connection of a new stream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A frame's head: its length and its MAC.
const HEAD_BYTES: usize = 4 + STREAM_MAC_BYTES;
/// The buffers a stream keeps between frames (so that a frame costs no
/// allocation) are let go once they grew past this (see the module's notes
/// for when).
const KEEP_BUFFER_BYTES: usize = 256 * 1024;

/// A kind of message that peer streams carry.
pub trait Carried: 'static {
    /// The message.
    type Req: Serialize + DeserializeOwned + Send + Sync;
    /// Its answer.
    type Resp: Serialize + DeserializeOwned + Send;
    /// The request a message stands for: how it travels when no stream
    /// carries it, and its name in `/metrics`.
    const REQUEST_PATH: &'static str;
    /// The path the sender upgrades.
    const UPGRADE_PATH: &'static str;
    /// The `Upgrade` protocol.
    const PROTOCOL: &'static str;
    /// What the stream is called in errors and logs.
    const NAME: &'static str;
}

/// A leader's appends to a follower (`POST /internal/lf/append`).
pub struct Appends;

impl Carried for Appends {
    type Req = AppendRequest;
    type Resp = AppendResponse;
    const REQUEST_PATH: &'static str = APPEND_PATH;
    const UPGRADE_PATH: &'static str = STREAM_PATH;
    const PROTOCOL: &'static str = STREAM_PROTOCOL;
    const NAME: &'static str = "append stream";
}

/// A read coordinator's batches of asks to a replica (`POST /internal/reads`).
pub struct Reads;

impl Carried for Reads {
    type Req = InternalReadsRequest;
    type Resp = InternalReadsResponse;
    const REQUEST_PATH: &'static str = INTERNAL_READS_PATH;
    const UPGRADE_PATH: &'static str = INTERNAL_READS_STREAM_PATH;
    const PROTOCOL: &'static str = READS_STREAM_PROTOCOL;
    const NAME: &'static str = "reads stream";
}

/// A leaderless write coordinator's batches of client writes to a replica
/// (`POST /internal/ll/write`).
pub struct LlWrites;

impl Carried for LlWrites {
    type Req = LlWrite;
    type Resp = LlWriteAck;
    const REQUEST_PATH: &'static str = LL_WRITE_PATH;
    const UPGRADE_PATH: &'static str = LL_WRITE_STREAM_PATH;
    const PROTOCOL: &'static str = LL_WRITE_STREAM_PROTOCOL;
    const NAME: &'static str = "leaderless writes stream";
}

/// One end of a stream: numbered, authenticated frames over `S` (the
/// upgraded connection; an in-memory pipe in the tests).
struct Framed<S = TokioIo<Upgraded>> {
    io: BufReader<S>,
    secret: Secret,
    /// The signature of the upgrade request: names the stream in every MAC.
    stream: String,
    /// The direction label of what this end sends, and of what it reads.
    out: &'static str,
    inn: &'static str,
    sent: u64,
    received: u64,
    last_used: Instant,
    /// The frame being sent, and the payload last read: kept between frames.
    out_buf: Vec<u8>,
    in_buf: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Framed<S> {
    fn new(io: S, secret: Secret, stream: String, sender_end: bool) -> Self {
        let (out, inn) = if sender_end {
            (REQUEST, ANSWER)
        } else {
            (ANSWER, REQUEST)
        };
        Self {
            io: BufReader::new(io),
            secret,
            stream,
            out,
            inn,
            sent: 0,
            received: 0,
            last_used: Instant::now(),
            out_buf: Vec::new(),
            in_buf: Vec::new(),
        }
    }

    /// Sends one frame (one write: length, MAC and payload together).
    async fn write(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.send(|frame| {
            frame.extend_from_slice(payload);
            Ok(())
        })
        .await
    }

    /// Sends `value`, in JSON, as one frame.
    async fn write_json<T: serde::Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        self.send(|frame| serde_json::to_writer(frame, value).map_err(std::io::Error::other))
            .await
    }

    /// Sends one frame whose payload `fill` appends to the frame's head.
    async fn send(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let frame = &mut self.out_buf;
        frame.clear();
        frame.resize(HEAD_BYTES, 0);
        fill(frame)?;
        let len = u32::try_from(frame.len() - HEAD_BYTES)
            .ok()
            .filter(|&n| n <= MAX_INTERNAL_BODY_BYTES)
            .ok_or_else(|| invalid("frame over the node-to-node size limit"))?;
        let tag = self
            .secret
            .frame_mac(&self.stream, self.out, self.sent, &frame[HEAD_BYTES..]);
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame[4..HEAD_BYTES].copy_from_slice(&tag);
        self.sent += 1;
        self.io.write_all(frame).await?;
        self.io.flush().await?;
        if self.out_buf.capacity() > KEEP_BUFFER_BYTES {
            self.out_buf = Vec::new();
        }
        self.last_used = Instant::now();
        Ok(())
    }

    /// Reads one frame and checks its size and MAC; the payload stays valid
    /// until the next read.
    async fn read(&mut self) -> std::io::Result<&[u8]> {
        let mut head = [0u8; HEAD_BYTES];
        self.io.read_exact(&mut head).await?;
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[..4]);
        let len = u32::from_be_bytes(len);
        if len > MAX_INTERNAL_BODY_BYTES {
            return Err(invalid("frame over the node-to-node size limit"));
        }
        let len = len as usize;
        if self.in_buf.capacity() > KEEP_BUFFER_BYTES && len <= KEEP_BUFFER_BYTES {
            self.in_buf = Vec::new();
        }
        self.in_buf.clear();
        self.in_buf.resize(len, 0);
        self.io.read_exact(&mut self.in_buf).await?;
        let genuine = self.secret.verify_frame(
            &self.stream,
            self.inn,
            self.received,
            &self.in_buf,
            &head[4..],
        );
        if !genuine {
            return Err(invalid("frame not signed with the cluster secret"));
        }
        self.received += 1;
        self.last_used = Instant::now();
        Ok(&self.in_buf)
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// The state of one stream to one peer.
#[derive(Default)]
struct Link {
    conn: Option<Framed>,
    /// When the peer last refused the upgrade.
    refused_at: Option<Instant>,
    /// The message being sent, in JSON: kept between messages.
    body: Vec<u8>,
}

/// Why a stream could not be opened.
enum OpenError {
    /// The peer does not offer it: send requests instead.
    NotOffered,
    /// The peer is unreachable, or its answer not genuine: the message fails.
    Failed(TransportError),
}

/// A sender's streams of kind `K`: a fixed number per peer, each carrying
/// one message at a time.
pub struct Links<K> {
    links: BTreeMap<NodeId, Vec<tokio::sync::Mutex<Link>>>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Carried> Links<K> {
    /// Room for `per_peer` streams to each of `peers` (none open yet).
    pub fn new(peers: &[NodeId], per_peer: usize) -> Self {
        Self {
            links: peers
                .iter()
                .map(|&id| {
                    let slots = (0..per_peer)
                        .map(|_| tokio::sync::Mutex::new(Link::default()))
                        .collect();
                    (id, slots)
                })
                .collect(),
            kind: PhantomData,
        }
    }

    /// Closes every idle stream (the node stops).
    pub fn close(&self) {
        for link in self.links.values().flatten() {
            if let Ok(mut l) = link.try_lock() {
                l.conn = None;
            }
        }
    }

    /// Carries `req` to `to` over one of its streams, or as a request when
    /// they are all busy or not offered; answers as [`Transport::post`] to
    /// [`Carried::REQUEST_PATH`] would.
    ///
    /// # Errors
    /// As [`Transport::post`].
    pub async fn carry(
        &self,
        t: &Transport,
        to: NodeId,
        req: &K::Req,
        timeout: Duration,
    ) -> Result<K::Resp, TransportError> {
        let over_http = || t.post::<_, K::Resp>(to, K::REQUEST_PATH, req, timeout);
        let Some(secret) = t.secret() else {
            return over_http().await;
        };
        let free = self
            .links
            .get(&to)
            .and_then(|slots| slots.iter().find_map(|l| l.try_lock().ok()));
        let Some(mut link) = free else {
            return over_http().await;
        };
        let refused_lately = link
            .refused_at
            .is_some_and(|at| at.elapsed() < UPGRADE_RETRY);
        if link.conn.is_none() && refused_lately {
            drop(link);
            return over_http().await;
        }
        link.body.clear();
        if link.body.capacity() > KEEP_BUFFER_BYTES {
            link.body = Vec::new();
        }
        serde_json::to_writer(&mut link.body, req)
            .map_err(|e| TransportError::Decode(e.to_string()))?;
        if link.body.len() > MAX_INTERNAL_BODY_BYTES as usize {
            drop(link);
            return over_http().await;
        }
        // A paused node sends nothing until the pause is over.
        t.faults().wait_unpaused().await;
        let fresh = link
            .conn
            .as_ref()
            .is_none_or(|c| c.last_used.elapsed() >= IDLE_REUSE);
        if fresh && !link.reopen::<K>(t, secret, to, timeout).await? {
            drop(link);
            return over_http().await;
        }
        crate::transport::outgoing_fault(t.faults(), to).await?;
        let mut result = link.exchange::<K::Resp>(timeout).await;
        if matches!(result, Err(Broken::Io(_))) && !fresh {
            // A reused stream the peer closed meanwhile (it restarted, or
            // timed the stream out): appends, reads and leaderless writes
            // (applied only when newer) are idempotent, so send it once more
            // over a new one, as a connection pool retries a request on a
            // fresh connection.
            if !link.reopen::<K>(t, secret, to, timeout).await? {
                drop(link);
                return over_http().await;
            }
            result = link.exchange(timeout).await;
        }
        let answer = match result {
            Ok(a) => a,
            Err(b) => {
                let e = b.into_error(K::NAME, timeout);
                t.peers().mark_down(to, e.to_string());
                return Err(e);
            }
        };
        t.peers().mark_up(to);
        match answer {
            StreamAnswer {
                status: 200,
                answer: Some(resp),
                ..
            } => Ok(resp),
            StreamAnswer { status, error, .. } => Err(TransportError::Status(
                status,
                error.map(|e| e.error).unwrap_or_default(),
            )),
        }
    }
}

/// How an exchange on a stream failed (the stream is dropped).
enum Broken {
    /// Reset, closed, or a frame that fails its checks.
    Io(std::io::Error),
    /// No answer within the timeout.
    TimedOut,
    /// An answer that does not parse.
    Decode(String),
}

impl Broken {
    fn into_error(self, name: &str, timeout: Duration) -> TransportError {
        match self {
            Broken::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                TransportError::Unauthenticated(format!("{name}: {e}"))
            }
            Broken::Io(e) => TransportError::Unreachable(format!("{name} broken: {e}")),
            Broken::TimedOut => TransportError::Unreachable(format!(
                "{name}: no answer within {} ms",
                timeout.as_millis()
            )),
            Broken::Decode(e) => TransportError::Decode(e),
        }
    }
}

impl Link {
    /// Drops the link's stream and opens a new one of kind `K` to `to`;
    /// `false` when the peer does not offer it (noted, so that messages go
    /// as requests for [`UPGRADE_RETRY`]).
    ///
    /// # Errors
    /// The peer is unreachable or its answer not genuine (it is marked down).
    async fn reopen<K: Carried>(
        &mut self,
        t: &Transport,
        secret: &Secret,
        to: NodeId,
        timeout: Duration,
    ) -> Result<bool, TransportError> {
        self.conn = None;
        match open::<K>(t, secret, to, timeout).await {
            Ok(c) => {
                self.conn = Some(c);
                Ok(true)
            }
            Err(OpenError::NotOffered) => {
                self.refused_at = Some(Instant::now());
                Ok(false)
            }
            Err(OpenError::Failed(e)) => {
                t.peers().mark_down(to, e.to_string());
                Err(e)
            }
        }
    }

    /// The message in `body` and its answer on the link's stream; drops the
    /// stream unless the exchange completed.
    async fn exchange<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<StreamAnswer<T>, Broken> {
        // Taken out while in use: an exchange cut short leaves no stream behind
        // in an unknown state.
        let Some(mut conn) = self.conn.take() else {
            return Err(Broken::Io(invalid("no stream")));
        };
        let answered = tokio::time::timeout(timeout, async {
            conn.write(&self.body).await?;
            let payload = conn.read().await?;
            Ok::<_, std::io::Error>(serde_json::from_slice::<StreamAnswer<T>>(payload))
        })
        .await;
        let answer = match answered {
            Ok(Ok(a)) => a.map_err(|e| Broken::Decode(e.to_string()))?,
            Ok(Err(e)) => return Err(Broken::Io(e)),
            Err(_) => return Err(Broken::TimedOut),
        };
        self.conn = Some(conn);
        Ok(answer)
    }
}

/// Opens a stream of kind `K` to `to`: a TCP connection, and a signed
/// upgrade request whose answer must be signed too.
async fn open<K: Carried>(
    t: &Transport,
    secret: &Secret,
    to: NodeId,
    timeout: Duration,
) -> Result<Framed, OpenError> {
    let failed = OpenError::Failed;
    let unreachable = |e: String| OpenError::Failed(TransportError::Unreachable(e));
    let base = t
        .peers()
        .url(to)
        .ok_or(failed(TransportError::UnknownPeer(to)))?;
    let url = reqwest::Url::parse(base).map_err(|e| unreachable(format!("bad peer URL: {e}")))?;
    let (Some(host), Some(port), "http") =
        (url.host_str(), url.port_or_known_default(), url.scheme())
    else {
        // Not plain HTTP (a proxy, TLS): requests only.
        return Err(OpenError::NotOffered);
    };
    let authority = format!("{host}:{port}");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(failed(TransportError::Refused(e.to_string())))
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable("connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    // Drives the connection until the upgrade hands it over.
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let me = t.peers().self_id();
    let (headers, sig) = secret.signed_headers("POST", K::UPGRADE_PATH, me, b"");
    let mut req = Request::post(K::UPGRADE_PATH)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, K::PROTOCOL)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    req.headers_mut().extend(headers);
    let resp = match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer to the {} upgrade", K::NAME))),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(OpenError::NotOffered);
    }
    let genuine = resp
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| secret.verify_response(&sig.signature, 101, b"", a));
    if !genuine {
        return Err(failed(TransportError::Unauthenticated(format!(
            "the {} upgrade is not signed with the cluster secret",
            K::NAME
        ))));
    }
    let upgraded = match tokio::time::timeout(timeout, hyper::upgrade::on(resp)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => {
            return Err(unreachable(format!(
                "the {} upgrade did not complete",
                K::NAME
            )))
        }
    };
    Ok(Framed::new(
        TokioIo::new(upgraded),
        secret.clone(),
        sig.signature,
        true,
    ))
}

/// Accepts the upgrade of an authenticated request for a stream of kind
/// `K` (it passed [`crate::security::authenticate_peer`], so its sender
/// header is genuine): answers 101 and serves the stream with `serve_it`,
/// given the sender, the stream's name (the upgrade's signature) and the
/// connection.
///
/// # Errors
/// 400 for a request that is not an upgrade to `K`'s protocol or names no
/// peer.
pub fn accept<K: Carried, F, Fut>(
    state: &AppState,
    mut req: ServerRequest,
    serve_it: F,
) -> Result<Response, AppError>
where
    F: FnOnce(NodeId, String, Upgraded) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let upgrade = header(header::UPGRADE.as_str()) == Some(K::PROTOCOL);
    let from = header(FROM_HEADER).and_then(|v| v.parse::<NodeId>().ok());
    let signature = header(SIGNATURE_HEADER).map(str::to_owned);
    let (true, Some(from), Some(signature)) = (upgrade, from, signature) else {
        return Err(AppError::bad_request(format!(
            "{} takes a signed upgrade to {}",
            K::UPGRADE_PATH,
            K::PROTOCOL
        )));
    };
    if state.cluster.peers().url(from).is_none() {
        return Err(AppError::bad_request(format!("node {from} is not a peer")));
    }
    let upgrading = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrading.await {
            serve_it(from, signature, io).await;
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(K::PROTOCOL));
    Ok(resp)
}

/// The peer's end of a stream of kind `K` from node `from`: answers each
/// frame with what `handle` answers the message, until the stream ends or
/// the node stops ([`crate::cluster::Cluster::stop`]).
pub async fn serve<K, F, Fut>(
    state: AppState,
    from: NodeId,
    stream: String,
    io: Upgraded,
    mut handle: F,
) where
    K: Carried,
    F: FnMut(K::Req) -> Fut,
    Fut: Future<Output = Result<K::Resp, AppError>>,
{
    let Some(secret) = state.security.cluster_secret().cloned() else {
        return;
    };
    let mut framed = Framed::new(TokioIo::new(io), secret, stream, false);
    let cluster = state.cluster.clone();
    let stop = cluster.stopped();
    tokio::pin!(stop);
    loop {
        let payload = tokio::select! {
            () = &mut stop => return,
            read = framed.read() => match read {
                Ok(p) => p,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        let n = crate::security::count(&state.security.refusals().unauthenticated);
                        tracing::warn!(from, refused = n, "{} closed: {e}", K::NAME);
                    }
                    return;
                }
            },
        };
        let started = Instant::now();
        let answer = answer::<K, _, _>(&state, from, payload, &mut handle).await;
        // Counted for `/metrics` as the request it stands for.
        state
            .metrics
            .observe(K::REQUEST_PATH, "POST", answer.status, started.elapsed());
        if framed.write_json(&answer).await.is_err() {
            return;
        }
    }
}

/// What the request of kind `K` with `payload` would get, with the faults
/// the server's middleware applies around it.
async fn answer<K, F, Fut>(
    state: &AppState,
    from: NodeId,
    payload: &[u8],
    handle: &mut F,
) -> StreamAnswer<K::Resp>
where
    K: Carried,
    F: FnMut(K::Req) -> Fut,
    Fut: Future<Output = Result<K::Resp, AppError>>,
{
    let faults: &Faults = state.cluster.faults();
    // As the pause gate holds a request.
    faults.wait_unpaused().await;
    if let Some(gone) = lost(
        faults.incoming(from),
        || format!("messages from node {from} are cut off by an injected fault"),
        "the message was dropped by an injected fault",
    )
    .await
    {
        return gone;
    }
    let answer = match serde_json::from_slice::<K::Req>(payload) {
        Ok(req) => match handle(req).await {
            Ok(resp) => StreamAnswer {
                status: 200,
                answer: Some(resp),
                error: None,
            },
            Err(e) => refused(e),
        },
        Err(e) => refused(AppError::bad_request(format!("invalid message: {e}"))),
    };
    if answer.status == StatusCode::BAD_REQUEST.as_u16() {
        let n = crate::security::count(&state.security.refusals().invalid_messages);
        tracing::warn!(
            from,
            path = K::UPGRADE_PATH,
            refused = n,
            "refused a malformed node-to-node message"
        );
    }
    if let Some(gone) = lost(
        faults.outgoing(from),
        || format!("the answer to node {from} is cut off by an injected fault"),
        "the answer was dropped by an injected fault",
    )
    .await
    {
        return gone;
    }
    answer
}

/// The 503 of a cut or dropped message (after waiting out a delay, `None`);
/// `cut` words the error of a cut only when there is one.
async fn lost<T>(
    fate: Fate,
    cut: impl FnOnce() -> String,
    dropped: &str,
) -> Option<StreamAnswer<T>> {
    let error = match fate {
        Fate::Cut => cut(),
        Fate::Dropped => dropped.to_owned(),
        Fate::Pass(d) => {
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            return None;
        }
    };
    Some(refused(AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        error,
    )))
}

fn refused<T>(e: AppError) -> StreamAnswer<T> {
    StreamAnswer {
        status: e.status.as_u16(),
        answer: None,
        error: Some(e.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const STREAM: &str = "signature-of-the-upgrade";

    /// The leader's and the follower's ends of one stream over a pipe.
    fn pair(
        leader_secret: &str,
        follower_secret: &str,
    ) -> (Framed<DuplexStream>, Framed<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Framed::new(a, Secret::new(leader_secret), STREAM.into(), true),
            Framed::new(b, Secret::new(follower_secret), STREAM.into(), false),
        )
    }

    /// A frame as `write` puts it on the wire, signed by `secret`.
    fn raw_frame(secret: &str, stream: &str, direction: &str, seq: u64, payload: &[u8]) -> Vec<u8> {
        let tag = Secret::new(secret).frame_mac(stream, direction, seq, payload);
        let len = u32::try_from(payload.len()).unwrap();
        [&len.to_be_bytes()[..], &tag[..], payload].concat()
    }

    async fn send_raw(to: &mut DuplexStream, bytes: &[u8]) {
        to.write_all(bytes).await.unwrap();
        to.flush().await.unwrap();
    }

    #[tokio::test]
    async fn frames_cross_both_ways_in_order() {
        let (mut leader, mut follower) = pair("s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret");
        for i in 0..3u8 {
            leader.write(&[i; 5]).await.unwrap();
            assert_eq!(follower.read().await.unwrap(), vec![i; 5]);
            follower.write(b"ack").await.unwrap();
            assert_eq!(leader.read().await.unwrap(), b"ack");
        }
        assert_eq!((leader.sent, leader.received), (3, 3));
    }

    #[tokio::test]
    async fn frames_of_any_size_cross_and_a_large_ones_buffer_is_not_kept() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let secret = "s3cret-s3cret-s3cret";
        let mut leader = Framed::new(a, Secret::new(secret), STREAM.into(), true);
        let mut follower = Framed::new(b, Secret::new(secret), STREAM.into(), false);
        for (i, n) in [10, 3_000, 0, KEEP_BUFFER_BYTES * 2, 7]
            .into_iter()
            .enumerate()
        {
            let payload = vec![u8::try_from(i).unwrap(); n];
            leader.write(&payload).await.unwrap();
            assert_eq!(follower.read().await.unwrap(), payload, "frame {i}");
            follower
                .write_json(&serde_json::json!({ "n": n }))
                .await
                .unwrap();
            let answer: serde_json::Value =
                serde_json::from_slice(leader.read().await.unwrap()).unwrap();
            assert_eq!(answer["n"], n, "answer {i}");
            // The buffers stay between frames, except after a large one.
            assert!(leader.out_buf.capacity() <= KEEP_BUFFER_BYTES, "frame {i}");
        }
        assert!(follower.in_buf.capacity() <= KEEP_BUFFER_BYTES);
        assert!(follower.in_buf.capacity() >= 7 && leader.out_buf.capacity() >= 7);
    }

    #[tokio::test]
    async fn a_frame_under_another_secret_is_refused() {
        let (mut leader, mut follower) = pair("another-secret-entirely", "s3cret-s3cret-s3cret");
        leader.write(b"{}").await.unwrap();
        let e = follower.read().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("not signed"), "{e}");
    }

    #[tokio::test]
    async fn a_changed_byte_a_replayed_frame_or_another_streams_frame_is_refused() {
        let secret = "s3cret-s3cret-s3cret";
        let good = raw_frame(secret, STREAM, REQUEST, 0, b"{\"entries\":[]}");
        let cases: [(&str, Vec<u8>); 4] = [
            ("a payload byte changed", {
                let mut f = good.clone();
                *f.last_mut().unwrap() ^= 1;
                f
            }),
            (
                "numbered for a later place",
                raw_frame(secret, STREAM, REQUEST, 1, b"{}"),
            ),
            (
                "signed for another stream",
                raw_frame(secret, "other-stream", REQUEST, 0, b"{}"),
            ),
            (
                "signed as an answer",
                raw_frame(secret, STREAM, ANSWER, 0, b"{}"),
            ),
        ];
        for (what, frame) in cases {
            let (mut wire, b) = tokio::io::duplex(1 << 16);
            let mut follower = Framed::new(b, Secret::new(secret), STREAM.into(), false);
            send_raw(&mut wire, &frame).await;
            assert!(follower.read().await.is_err(), "{what} was accepted");
        }
        // The genuine frame passes once; sent again (a replay), it is refused.
        let (mut wire, b) = tokio::io::duplex(1 << 16);
        let mut follower = Framed::new(b, Secret::new(secret), STREAM.into(), false);
        send_raw(&mut wire, &good).await;
        assert!(follower.read().await.is_ok());
        send_raw(&mut wire, &good).await;
        assert!(
            follower.read().await.is_err(),
            "a replayed frame was accepted"
        );
    }

    #[tokio::test]
    async fn a_frame_declared_over_the_limit_is_refused_before_its_payload_is_read() {
        let (mut wire, b) = tokio::io::duplex(1 << 16);
        let mut follower =
            Framed::new(b, Secret::new("s3cret-s3cret-s3cret"), STREAM.into(), false);
        let mut head = (MAX_INTERNAL_BODY_BYTES + 1).to_be_bytes().to_vec();
        head.extend_from_slice(&[0u8; STREAM_MAC_BYTES]);
        // Only the head is sent: a node that waited for the payload would hang here.
        send_raw(&mut wire, &head).await;
        let e = tokio::time::timeout(Duration::from_secs(5), follower.read())
            .await
            .expect("the read waited for a payload over the limit")
            .unwrap_err();
        assert!(e.to_string().contains("size limit"), "{e}");
    }

    #[tokio::test]
    async fn a_payload_over_the_limit_is_never_sent() {
        let (mut leader, _follower) = pair("s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret");
        let big = vec![b'x'; MAX_INTERNAL_BODY_BYTES as usize + 1];
        assert!(leader.write(&big).await.is_err());
        assert_eq!(leader.sent, 0);
    }

    #[tokio::test]
    async fn a_peer_that_refuses_the_upgrade_gets_requests_and_is_asked_again_later() {
        use crate::peers::{PeerInfo, Peers};
        use axum::http::HeaderMap;
        use std::future::IntoFuture;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // A peer on 127.0.0.1 that answers batches as requests (signed, as
        // a node answers) but offers no reads stream.
        let secret = Secret::new("a secret of the peer-stream tests");
        let (upgrades, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (u, r, key) = (upgrades.clone(), requests.clone(), secret.clone());
        let app = axum::Router::new()
            .route(
                INTERNAL_READS_STREAM_PATH,
                axum::routing::post(move || async move {
                    u.fetch_add(1, Ordering::Relaxed);
                    StatusCode::NOT_FOUND
                }),
            )
            .route(
                INTERNAL_READS_PATH,
                axum::routing::post(move |headers: HeaderMap| async move {
                    r.fetch_add(1, Ordering::Relaxed);
                    let asked = headers[SIGNATURE_HEADER].to_str().unwrap();
                    let body = br#"{"answers":[]}"#;
                    let signed = key.sign_response(asked, 200, body);
                    ([(SIGNATURE_HEADER, signed)], &body[..])
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(axum::serve(listener, app).into_future());
        let peers = Peers::new(1, vec![PeerInfo { id: 2, url }]);
        let t = Transport::new(peers, Faults::default(), Some(secret));
        let links = Links::<Reads>::new(&[2], 1);
        let batch = InternalReadsRequest { asks: Vec::new() };
        let timeout = Duration::from_secs(5);
        for i in 0..3 {
            let answer = links.carry(&t, 2, &batch, timeout).await;
            assert_eq!(answer.unwrap().answers, Vec::new(), "batch {i}");
        }
        // Asked for the stream once; every batch went as a request.
        assert_eq!(upgrades.load(Ordering::Relaxed), 1);
        assert_eq!(requests.load(Ordering::Relaxed), 3);
        // Past the retry interval, the sender asks again.
        tokio::time::sleep(UPGRADE_RETRY + Duration::from_millis(100)).await;
        links.carry(&t, 2, &batch, timeout).await.unwrap();
        assert_eq!(upgrades.load(Ordering::Relaxed), 2);
        assert_eq!(requests.load(Ordering::Relaxed), 4);
        server.abort();
    }
}
