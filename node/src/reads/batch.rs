//! Batched remote reads: the asks that concurrent reads send to the same
//! peer share one message, carried over a reads stream kept open to the
//! peer ([`crate::peer_stream`]; as `POST /internal/reads` when none can
//! carry it).
//!
//! Batching is on with `--read-batches-in-flight N`, N ≥ 1 (1 by default):
//! each peer has a queue, sender tasks and reads streams, at most N. A
//! sender takes the first ask waiting, then everything queued behind it (at
//! most [`MAX_READ_BATCH_KEYS`]), and
//! sends them as one batch; asks that arrive while N batches travel wait
//! for the next one. An idle peer gets an ask the moment it is made, and a
//! busy one gets fewer, larger requests — the batch grows with the load,
//! and no timer waits for it to fill (group commit, applied to reads); the
//! price is that a read may wait for the round trip of the batch ahead of
//! it. Each ask gets the answer to its own key — the answers come back in
//! the order of the asks, and a batch answered with another count of copies
//! fails every ask in it.
//!
//! With N = 0 batching is off: each ask is its own `GET /internal/read`,
//! sent at once by a task of its own, with no queue and no hand-over
//! between asks. Batches over streams spend about half the CPU per read and
//! answer sooner at every load measured (`docs/results.md`, "Reads over
//! peer streams"), hence N = 1 by default.
//!
//! What a batch changes for the read ([`super::core`]) is nothing but the
//! transport: an ask still gets a copy, a failure or a timeout. A batch that
//! fails (refused, cut, dropped by a fault, timed out) fails every ask it
//! carried, as the lost requests would have; each read then replaces that
//! peer as it would have. An ask is bounded by the peer timeout from the
//! moment it is made, time queued included; an ask whose read no longer
//! waits for it (the read met its quorum, or was dropped) is left out of
//! the next batch.

use crate::peer_stream::{Links, Reads};
use crate::transport::{Transport, TransportError};
use kv_shared::limits::MAX_READ_BATCH_KEYS;
use kv_shared::replication::{
    InternalReadQuery, InternalReadResponse, InternalReadsRequest, InternalReadsResponse,
    INTERNAL_READ_PATH,
};
use kv_shared::NodeId;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most asks waiting for one peer; an ask beyond fails at once.
const QUEUE_CAPACITY: usize = 4 * MAX_READ_BATCH_KEYS as usize;

/// What sending one batch to a peer returns.
pub type BatchAnswer =
    Pin<Box<dyn Future<Output = Result<InternalReadsResponse, TransportError>> + Send>>;

/// What sending one ask alone returns.
pub type OneAnswer =
    Pin<Box<dyn Future<Output = Result<InternalReadResponse, TransportError>> + Send>>;

/// Sends asks to a peer: the transport ([`PeerReads`]), or a stand-in in
/// tests.
pub trait SendBatch: Send + Sync + 'static {
    /// Sends the batch `req` to `to`, bounded by `timeout`.
    fn send(&self, to: NodeId, req: InternalReadsRequest, timeout: Duration) -> BatchAnswer;
    /// Sends one ask alone to `to`, bounded by `timeout`.
    fn send_one(&self, to: NodeId, query: InternalReadQuery, timeout: Duration) -> OneAnswer;
    /// Closes the connections kept idle for later batches (the node stops).
    fn close(&self) {}
}

/// How the node's asks travel: a batch over one of the reads streams kept
/// open to the peer (as many as batches may be in flight to it, see
/// [`crate::peer_stream`]), or as `POST /internal/reads` when no stream can
/// carry it; an ask alone as `GET /internal/read`.
#[derive(Clone)]
pub struct PeerReads {
    transport: Transport,
    links: Arc<Links<Reads>>,
}

impl PeerReads {
    /// Room for `streams` reads streams to each of `peers`.
    pub fn new(transport: Transport, peers: &[NodeId], streams: usize) -> Self {
        Self {
            transport,
            links: Arc::new(Links::new(peers, streams)),
        }
    }
}

impl SendBatch for PeerReads {
    fn send(&self, to: NodeId, req: InternalReadsRequest, timeout: Duration) -> BatchAnswer {
        let this = self.clone();
        Box::pin(async move { this.links.carry(&this.transport, to, &req, timeout).await })
    }

    fn send_one(&self, to: NodeId, query: InternalReadQuery, timeout: Duration) -> OneAnswer {
        let t = self.transport.clone();
        Box::pin(async move {
            let key = utf8_percent_encode(&query.key, NON_ALPHANUMERIC);
            let digest = if query.digest { "&digest=true" } else { "" };
            let path = format!("{INTERNAL_READ_PATH}?key={key}{digest}");
            t.get(to, &path, timeout).await
        })
    }

    fn close(&self) {
        self.links.close();
    }
}

/// One read's ask, waiting in a peer's queue.
struct Ask {
    query: InternalReadQuery,
    reply: oneshot::Sender<Result<InternalReadResponse, TransportError>>,
}

/// The asks waiting for one peer and the batches travelling to it.
#[derive(Default)]
struct PeerQueue {
    waiting: Vec<Ask>,
    /// Sender tasks of this peer: each sends one batch after another while
    /// asks wait, and ends when none does.
    senders: usize,
    /// A sender task was started and has not taken the waiting asks yet:
    /// asks made meanwhile leave with it.
    starting: bool,
}

/// The queues of this node's remote reads, one per peer.
pub struct ReadBatcher {
    shared: Arc<Shared>,
}

struct Shared {
    sender: Arc<dyn SendBatch>,
    timeout: Duration,
    /// Most batches in flight to one peer; 0: batching is off.
    in_flight: usize,
    queues: Mutex<HashMap<NodeId, PeerQueue>>,
}

impl std::fmt::Debug for ReadBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBatcher")
            .field("timeout", &self.shared.timeout)
            .field("in_flight", &self.shared.in_flight)
            .finish_non_exhaustive()
    }
}

impl ReadBatcher {
    /// Batches sent with `sender`, at most `in_flight` to a peer at once
    /// (0: no batches, each ask alone); every ask is bounded by `timeout`.
    pub fn new(sender: Arc<dyn SendBatch>, timeout: Duration, in_flight: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                sender,
                timeout,
                in_flight,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Closes the connections kept idle for later batches (the node stops).
    pub fn close(&self) {
        self.shared.sender.close();
    }

    /// Asks `to` for its copy of `query.key`, in the next batch to it (or
    /// alone, at once, when batching is off). Cancel-safe: dropping the
    /// future only withdraws the ask.
    ///
    /// # Errors
    /// The batch's failure, [`TransportError::Decode`] for an answer that
    /// does not match its asks, or [`TransportError::Unreachable`] when no
    /// answer came within the timeout or too many asks wait for the peer.
    pub async fn ask(
        &self,
        to: NodeId,
        query: InternalReadQuery,
    ) -> Result<InternalReadResponse, TransportError> {
        if self.shared.in_flight == 0 {
            // A task of its own, as before batching existed: measured, that
            // answers sooner than the request polled by the read's task.
            let one = self.shared.sender.send_one(to, query, self.shared.timeout);
            let mut task = AbortOnDrop(tokio::spawn(one));
            return (&mut task.0).await.unwrap_or_else(|e| {
                Err(TransportError::Unreachable(format!("the ask ended: {e}")))
            });
        }
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queues = self.shared.lock();
            let q = queues.entry(to).or_default();
            if q.waiting.len() >= QUEUE_CAPACITY {
                return Err(TransportError::Unreachable(format!(
                    "{QUEUE_CAPACITY} reads already wait for node {to}"
                )));
            }
            q.waiting.push(Ask { query, reply });
            let start = !q.starting && q.senders < self.shared.in_flight;
            if start {
                q.starting = true;
                q.senders += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.shared.clone().send_batches(to));
        }
        let timeout = self.shared.timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Unreachable("the read queue stopped".into())),
            Err(_) => Err(TransportError::Unreachable(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, PeerQueue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The asks waiting for `to` that a read still waits for, at most a
    /// batch of them; `None` (and this sender counted out) when none is left.
    fn take(&self, to: NodeId, first: bool) -> Option<Vec<Ask>> {
        let mut queues = self.lock();
        let q = queues.entry(to).or_default();
        if first {
            q.starting = false;
        }
        q.waiting.retain(|a| !a.reply.is_closed());
        if q.waiting.is_empty() {
            q.senders -= 1;
            return None;
        }
        let n = q.waiting.len().min(MAX_READ_BATCH_KEYS as usize);
        Some(q.waiting.drain(..n).collect())
    }

    /// A sender task: sends what waits for `to`, batch after batch, until
    /// nothing does.
    async fn send_batches(self: Arc<Self>, to: NodeId) {
        let mut first = true;
        while let Some(asks) = self.take(to, std::mem::take(&mut first)) {
            let req = InternalReadsRequest {
                asks: asks.iter().map(|a| a.query.clone()).collect(),
            };
            let result = self.sender.send(to, req, self.timeout).await;
            deliver(asks, result);
        }
    }
}

/// A task stopped when the ask that awaits it is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hands each ask its answer, or the batch's failure.
fn deliver(asks: Vec<Ask>, result: Result<InternalReadsResponse, TransportError>) {
    let result = result.and_then(|resp| {
        if resp.answers.len() == asks.len() {
            Ok(resp.answers)
        } else {
            Err(TransportError::Decode(format!(
                "{} answers to {} asks",
                resp.answers.len(),
                asks.len()
            )))
        }
    });
    match result {
        Ok(answers) => {
            for (ask, answer) in asks.into_iter().zip(answers) {
                let _ = ask.reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for ask in asks {
                let _ = ask.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::replication::ReadCopy;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// A peer that answers each key with its length as the version, holds
    /// every batch until released, and records the batches it got.
    #[derive(Default)]
    struct FakePeer {
        batches: Mutex<Vec<Vec<String>>>,
        release: Notify,
        hold: std::sync::atomic::AtomicBool,
        /// Answers one copy fewer than asked.
        short: std::sync::atomic::AtomicBool,
        fail: std::sync::atomic::AtomicBool,
        sent: AtomicUsize,
        /// Of the requests sent, those of one ask alone.
        alone: AtomicUsize,
    }

    struct Stand(Arc<FakePeer>);

    impl SendBatch for Stand {
        fn send_one(&self, to: NodeId, query: InternalReadQuery, t: Duration) -> OneAnswer {
            let batch = self.send(to, InternalReadsRequest { asks: vec![query] }, t);
            let peer = self.0.clone();
            Box::pin(async move {
                peer.alone.fetch_add(1, Ordering::SeqCst);
                let mut answers = batch.await?.answers;
                answers
                    .pop()
                    .ok_or(TransportError::Decode("no answer".into()))
            })
        }

        fn send(&self, to: NodeId, req: InternalReadsRequest, _: Duration) -> BatchAnswer {
            let peer = self.0.clone();
            Box::pin(async move {
                let keys: Vec<String> = req.asks.iter().map(|a| a.key.clone()).collect();
                peer.batches.lock().unwrap().push(keys.clone());
                peer.sent.fetch_add(1, Ordering::SeqCst);
                if peer.hold.load(Ordering::SeqCst) {
                    peer.release.notified().await;
                }
                if peer.fail.load(Ordering::SeqCst) {
                    return Err(TransportError::Refused("refused".into()));
                }
                let mut answers: Vec<InternalReadResponse> = keys
                    .iter()
                    .map(|k| InternalReadResponse {
                        node_id: to,
                        found: Some(ReadCopy {
                            version: k.len() as u64,
                            value: Some(k.to_uppercase()),
                        }),
                        current: true,
                        term: None,
                        leader_read: None,
                    })
                    .collect();
                if peer.short.load(Ordering::SeqCst) {
                    answers.pop();
                }
                Ok(InternalReadsResponse { answers })
            })
        }
    }

    fn query(key: &str) -> InternalReadQuery {
        InternalReadQuery {
            key: key.to_owned(),
            digest: false,
        }
    }

    /// Most batches in flight in these tests (but the one of batching off).
    const BATCHES_IN_FLIGHT: usize = 2;

    fn batcher(peer: &Arc<FakePeer>, timeout: Duration, in_flight: usize) -> Arc<ReadBatcher> {
        Arc::new(ReadBatcher::new(
            Arc::new(Stand(peer.clone())),
            timeout,
            in_flight,
        ))
    }

    /// The reads of a test: each answers its index and what its ask got.
    type Reads = tokio::task::JoinSet<(usize, Result<InternalReadResponse, TransportError>)>;

    /// A peer that holds every batch until let go, a batcher to it, and the
    /// reads that ask it.
    struct Held {
        peer: Arc<FakePeer>,
        b: Arc<ReadBatcher>,
        reads: Reads,
        /// The asks made. On the tests' single-threaded runtime an ask is
        /// queued in the same poll that counts it (the queue has room), so
        /// this counts queued asks.
        started: Arc<AtomicUsize>,
    }

    impl Held {
        fn new(timeout: Duration, in_flight: usize) -> Self {
            let peer = Arc::new(FakePeer::default());
            peer.hold.store(true, Ordering::SeqCst);
            Self {
                b: batcher(&peer, timeout, in_flight),
                peer,
                reads: Reads::new(),
                started: Arc::new(AtomicUsize::new(0)),
            }
        }

        /// Asks each key from a read of its own.
        fn spawn_asks(&mut self, keys: impl IntoIterator<Item = (usize, String)>) {
            for (i, key) in keys {
                let (b, started) = (self.b.clone(), self.started.clone());
                self.reads.spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    (i, b.ask(2, query(&key)).await)
                });
            }
        }

        /// Asks `n` keys one after another, each once the batch before it
        /// left: every ask travels alone.
        async fn one_batch_each(&mut self, n: usize, key: impl Fn(usize) -> String) {
            for i in 0..n {
                self.spawn_asks([(i, key(i))]);
                sent(&self.peer, i + 1).await;
            }
        }

        /// Asks these keys at once and waits (bounded) until all are queued.
        async fn queue(&mut self, keys: impl ExactSizeIterator<Item = (usize, String)>) {
            let total = self.started.load(Ordering::SeqCst) + keys.len();
            self.spawn_asks(keys);
            reached(&self.started, total).await;
        }

        /// Asks these keys one after another, each once the one before is
        /// queued and the tasks it woke (a sender it started) had their turn.
        async fn queue_one_by_one(&mut self, keys: impl Iterator<Item = (usize, String)>) {
            for key in keys {
                self.queue([key].into_iter()).await;
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
        }

        /// Lets the held batches and every later one go.
        fn let_go(&self) {
            self.peer.hold.store(false, Ordering::SeqCst);
            self.peer.release.notify_waiters();
        }

        /// Every read's answer, by index, once all ended.
        async fn answers(&mut self) -> Vec<(usize, Result<InternalReadResponse, TransportError>)> {
            let mut all = Vec::new();
            while let Some(r) = self.reads.join_next().await {
                all.push(r.unwrap());
            }
            all
        }

        /// The keys of every batch the peer got, in order.
        fn batches(&self) -> Vec<Vec<String>> {
            self.peer.batches.lock().unwrap().clone()
        }
    }

    /// Waits (bounded) until `counter` reaches `n`.
    async fn reached(counter: &AtomicUsize, n: usize) {
        for _ in 0..500 {
            if counter.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("{} of {n}", counter.load(Ordering::SeqCst));
    }

    /// Waits (bounded) until the peer got `n` batches.
    async fn sent(peer: &FakePeer, n: usize) {
        reached(&peer.sent, n).await;
    }

    #[tokio::test]
    async fn asks_made_while_batches_travel_leave_together_and_each_gets_its_own_copy() {
        let mut h = Held::new(Duration::from_secs(10), BATCHES_IN_FLIGHT);
        // The first BATCHES_IN_FLIGHT asks leave alone, at once.
        h.one_batch_each(BATCHES_IN_FLIGHT, |i| "k".repeat(i + 1))
            .await;
        // These, made one by one, wait for a batch to come back, then leave
        // as one.
        let more = 40;
        h.queue_one_by_one(
            (BATCHES_IN_FLIGHT..BATCHES_IN_FLIGHT + more).map(|i| (i, "k".repeat(i + 1))),
        )
        .await;
        h.let_go();
        let answers = h.answers().await;
        assert_eq!(answers.len(), BATCHES_IN_FLIGHT + more);
        for (i, answer) in answers {
            let copy = answer.unwrap().found.unwrap();
            assert_eq!(copy.version, i as u64 + 1, "ask {i} got another key's copy");
            assert_eq!(copy.value.unwrap(), "K".repeat(i + 1));
        }
        let batches = h.batches();
        assert_eq!(batches.len(), BATCHES_IN_FLIGHT + 1, "{batches:?}");
        assert_eq!(batches[BATCHES_IN_FLIGHT].len(), more);
    }

    #[tokio::test]
    async fn with_batching_off_each_ask_leaves_alone_at_once() {
        let mut h = Held::new(Duration::from_secs(10), 0);
        // Every ask leaves while the ones before it are still held.
        h.one_batch_each(5, |i| "k".repeat(i + 1)).await;
        h.queue((5..10).map(|i| (i, "k".repeat(i + 1)))).await;
        sent(&h.peer, 10).await;
        h.let_go();
        for (i, answer) in h.answers().await {
            assert_eq!(answer.unwrap().found.unwrap().version, i as u64 + 1);
        }
        assert_eq!(h.batches().len(), 10);
        assert_eq!(h.peer.alone.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_batch_never_carries_more_than_the_limit() {
        let mut h = Held::new(Duration::from_secs(10), BATCHES_IN_FLIGHT);
        h.one_batch_each(BATCHES_IN_FLIGHT, |i| format!("k{i}"))
            .await;
        let queued = MAX_READ_BATCH_KEYS as usize + 10;
        h.queue((0..queued).map(|i| (i, format!("q{i}")))).await;
        h.let_go();
        let answers = h.answers().await;
        assert_eq!(answers.len(), BATCHES_IN_FLIGHT + queued);
        assert!(answers.iter().all(|(_, a)| a.is_ok()));
        let sizes: Vec<usize> = h.batches().iter().map(Vec::len).collect();
        assert!(
            sizes.iter().all(|&n| n <= MAX_READ_BATCH_KEYS as usize),
            "{sizes:?}"
        );
        assert_eq!(sizes.iter().sum::<usize>(), BATCHES_IN_FLIGHT + queued);
        assert!(sizes.contains(&(MAX_READ_BATCH_KEYS as usize)), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_batch_or_a_miscounted_answer_fails_every_ask_in_it() {
        let peer = Arc::new(FakePeer::default());
        let b = batcher(&peer, Duration::from_secs(10), BATCHES_IN_FLIGHT);
        peer.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            b.ask(3, query("a")).await,
            Err(TransportError::Refused(_))
        ));
        peer.fail.store(false, Ordering::SeqCst);
        peer.short.store(true, Ordering::SeqCst);
        assert!(matches!(
            b.ask(3, query("a")).await,
            Err(TransportError::Decode(_))
        ));
        peer.short.store(false, Ordering::SeqCst);
        assert_eq!(
            b.ask(3, query("abc")).await.unwrap().found.unwrap().version,
            3
        );
    }

    #[tokio::test]
    async fn an_ask_is_bounded_by_the_timeout_and_one_nobody_waits_for_is_not_sent() {
        let mut h = Held::new(Duration::from_millis(100), BATCHES_IN_FLIGHT);
        // Both batches in flight are held; the third ask waits in the queue
        // and times out there.
        h.one_batch_each(BATCHES_IN_FLIGHT, |i| format!("held{i}"))
            .await;
        let late = h.b.ask(2, query("late")).await;
        assert!(
            matches!(late, Err(TransportError::Unreachable(_))),
            "{late:?}"
        );
        for (_, answer) in h.answers().await {
            assert!(matches!(answer, Err(TransportError::Unreachable(_))));
        }
        h.let_go();
        // The next ask leaves alone: the one that timed out is not sent.
        assert!(h.b.ask(2, query("next")).await.is_ok());
        let batches = h.batches();
        assert_eq!(
            batches.last().unwrap(),
            &vec!["next".to_owned()],
            "{batches:?}"
        );
        assert!(
            !batches.iter().flatten().any(|k| k == "late"),
            "{batches:?}"
        );
    }
}
