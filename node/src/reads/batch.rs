//! Batched remote reads: the asks that concurrent reads send to the same
//! peer share one request (`POST /internal/reads`).
//!
//! Each peer has a queue and a sender task. The task takes the first ask
//! waiting, then everything queued behind it (at most
//! [`MAX_READ_BATCH_KEYS`]), and sends them as one batch. With a limit on
//! the batches in flight to a peer (`--read-batches-in-flight N`), asks
//! that arrive while N batches travel wait for the next one: an idle peer
//! gets an ask the moment it is made, and a busy one gets fewer, larger
//! requests — the batch grows with the load, and no timer waits for it to
//! fill (group commit, applied to reads); the price is that a read may wait
//! for the round trip of the batch ahead of it. Without a limit (the
//! default) an ask never waits for another batch: only asks queued at the
//! same moment share one (under a CPU-bound load, the ones made while the
//! sender task waited for a core). Each ask gets the answer to its own key — the
//! answers come back in the order of the asks, and a batch answered with
//! another count of copies fails every ask in it.
//!
//! What a batch changes for the read ([`super::core`]) is nothing but the
//! transport: an ask still gets a copy, a failure or a timeout. A batch that
//! fails (refused, cut, dropped by a fault, timed out) fails every ask it
//! carried, as the lost requests would have; each read then replaces that
//! peer as it would have. An ask is bounded by the peer timeout from the
//! moment it is made, time queued included; an ask whose read no longer
//! waits for it (the read met its quorum, or was dropped) is left out of
//! the next batch.

use crate::transport::{Transport, TransportError};
use kv_shared::limits::MAX_READ_BATCH_KEYS;
use kv_shared::replication::{
    InternalReadQuery, InternalReadResponse, InternalReadsRequest, InternalReadsResponse,
    INTERNAL_READS_PATH,
};
use kv_shared::NodeId;
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

/// Sends a batch of asks to a peer: the transport, or a stand-in in tests.
pub trait SendBatch: Send + Sync + 'static {
    /// Sends `req` to `to`, bounded by `timeout`.
    fn send(&self, to: NodeId, req: InternalReadsRequest, timeout: Duration) -> BatchAnswer;
}

impl SendBatch for Transport {
    fn send(&self, to: NodeId, req: InternalReadsRequest, timeout: Duration) -> BatchAnswer {
        let t = self.clone();
        Box::pin(async move { t.post(to, INTERNAL_READS_PATH, &req, timeout).await })
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
    /// Most batches in flight to one peer.
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
    /// (0: no limit); every ask is bounded by `timeout`.
    pub fn new(sender: Arc<dyn SendBatch>, timeout: Duration, in_flight: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                sender,
                timeout,
                in_flight: if in_flight == 0 {
                    usize::MAX
                } else {
                    in_flight
                },
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Asks `to` for its copy of `query.key`, in the next batch to it.
    /// Cancel-safe: dropping the future only withdraws the ask.
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
    }

    struct Stand(Arc<FakePeer>);

    impl SendBatch for Stand {
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

    /// Most batches in flight in these tests (but the one of no limit).
    const BATCHES_IN_FLIGHT: usize = 2;

    fn batcher(peer: &Arc<FakePeer>, timeout: Duration) -> Arc<ReadBatcher> {
        Arc::new(ReadBatcher::new(
            Arc::new(Stand(peer.clone())),
            timeout,
            BATCHES_IN_FLIGHT,
        ))
    }

    /// Spawns an ask of each key; `started` counts the asks made. On the
    /// tests' single-threaded runtime an ask is queued in the same poll that
    /// counts it (the queue has room), so `started` counts queued asks.
    fn spawn_asks(
        reads: &mut tokio::task::JoinSet<(usize, Result<InternalReadResponse, TransportError>)>,
        b: &Arc<ReadBatcher>,
        keys: impl IntoIterator<Item = (usize, String)>,
        started: &Arc<AtomicUsize>,
    ) {
        for (i, key) in keys {
            let (b, started) = (b.clone(), started.clone());
            reads.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                (i, b.ask(2, query(&key)).await)
            });
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
        let peer = Arc::new(FakePeer::default());
        peer.hold.store(true, Ordering::SeqCst);
        let b = batcher(&peer, Duration::from_secs(10));
        let mut reads = tokio::task::JoinSet::new();
        let started = Arc::new(AtomicUsize::new(0));
        // The first BATCHES_IN_FLIGHT asks leave alone, at once.
        for i in 0..BATCHES_IN_FLIGHT {
            spawn_asks(&mut reads, &b, [(i, "k".repeat(i + 1))], &started);
            sent(&peer, i + 1).await;
        }
        // These wait for a batch to come back, then leave as one.
        let more = 40;
        let keys = (BATCHES_IN_FLIGHT..BATCHES_IN_FLIGHT + more).map(|i| (i, "k".repeat(i + 1)));
        spawn_asks(&mut reads, &b, keys, &started);
        reached(&started, BATCHES_IN_FLIGHT + more).await;
        peer.hold.store(false, Ordering::SeqCst);
        peer.release.notify_waiters();
        let mut answered = 0;
        while let Some(r) = reads.join_next().await {
            let (i, answer) = r.unwrap();
            let copy = answer.unwrap().found.unwrap();
            assert_eq!(copy.version, i as u64 + 1, "ask {i} got another key's copy");
            assert_eq!(copy.value.unwrap(), "K".repeat(i + 1));
            answered += 1;
        }
        assert_eq!(answered, BATCHES_IN_FLIGHT + more);
        let batches = peer.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), BATCHES_IN_FLIGHT + 1, "{batches:?}");
        assert_eq!(batches[BATCHES_IN_FLIGHT].len(), more);
    }

    #[tokio::test]
    async fn without_a_limit_no_ask_waits_for_a_batch_in_flight() {
        let peer = Arc::new(FakePeer::default());
        peer.hold.store(true, Ordering::SeqCst);
        let b = Arc::new(ReadBatcher::new(
            Arc::new(Stand(peer.clone())),
            Duration::from_secs(10),
            0,
        ));
        let mut reads = tokio::task::JoinSet::new();
        let started = Arc::new(AtomicUsize::new(0));
        // Every ask leaves while the batches before it are still held.
        for i in 0..5 {
            spawn_asks(&mut reads, &b, [(i, "k".repeat(i + 1))], &started);
            sent(&peer, i + 1).await;
        }
        peer.hold.store(false, Ordering::SeqCst);
        peer.release.notify_waiters();
        while let Some(r) = reads.join_next().await {
            let (i, answer) = r.unwrap();
            assert_eq!(answer.unwrap().found.unwrap().version, i as u64 + 1);
        }
        assert_eq!(peer.batches.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_batch_never_carries_more_than_the_limit() {
        let peer = Arc::new(FakePeer::default());
        peer.hold.store(true, Ordering::SeqCst);
        let b = batcher(&peer, Duration::from_secs(10));
        let mut reads = tokio::task::JoinSet::new();
        let started = Arc::new(AtomicUsize::new(0));
        for i in 0..BATCHES_IN_FLIGHT {
            spawn_asks(&mut reads, &b, [(i, format!("k{i}"))], &started);
            sent(&peer, i + 1).await;
        }
        let queued = MAX_READ_BATCH_KEYS as usize + 10;
        spawn_asks(
            &mut reads,
            &b,
            (0..queued).map(|i| (i, format!("q{i}"))),
            &started,
        );
        reached(&started, BATCHES_IN_FLIGHT + queued).await;
        peer.hold.store(false, Ordering::SeqCst);
        peer.release.notify_waiters();
        let mut ok = 0;
        while let Some(r) = reads.join_next().await {
            assert!(r.unwrap().1.is_ok());
            ok += 1;
        }
        assert_eq!(ok, BATCHES_IN_FLIGHT + queued);
        let sizes: Vec<usize> = peer.batches.lock().unwrap().iter().map(Vec::len).collect();
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
        let b = batcher(&peer, Duration::from_secs(10));
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
        let peer = Arc::new(FakePeer::default());
        peer.hold.store(true, Ordering::SeqCst);
        let b = batcher(&peer, Duration::from_millis(100));
        // Both batches in flight are held; the third ask waits in the queue
        // and times out there.
        let mut held = tokio::task::JoinSet::new();
        for i in 0..BATCHES_IN_FLIGHT {
            let b = b.clone();
            held.spawn(async move { b.ask(2, query(&format!("held{i}"))).await });
            sent(&peer, i + 1).await;
        }
        let late = b.ask(2, query("late")).await;
        assert!(
            matches!(late, Err(TransportError::Unreachable(_))),
            "{late:?}"
        );
        while let Some(r) = held.join_next().await {
            assert!(matches!(r.unwrap(), Err(TransportError::Unreachable(_))));
        }
        peer.hold.store(false, Ordering::SeqCst);
        peer.release.notify_waiters();
        // The next ask leaves alone: the one that timed out is not sent.
        assert!(b.ask(2, query("next")).await.is_ok());
        let batches = peer.batches.lock().unwrap().clone();
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
