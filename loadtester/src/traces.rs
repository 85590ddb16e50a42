//! The write traces the nodes publish while a run goes on: the WARS
//! predictor's W and A legs (see [`crate::pbs::write_legs_from_traces`]).
//!
//! [`TraceCollector::start`] follows every node's
//! `GET /events?only=own-traces` (the writes that node coordinated, no
//! snapshots) for as long as the run lasts. A trace is sent again each time
//! one of its timestamps is filled in; the collector keeps the latest copy
//! per (coordinator, id) while it is in flight and moves it to the finished
//! ones once the client was answered and every replica acknowledged.
//! A node traces at most a few dozen writes at a time while it is watched,
//! so the traces are a sample of the run's writes, not all of them.
//!
//! Memory is bounded: at most [`MAX_IN_FLIGHT`] traces in flight (the
//! oldest is dropped beyond) and [`MAX_FINISHED`] finished ones (later ones
//! are counted, not kept). A node that does not answer is retried every
//! [`RETRY`] until the run ends.

use kv_shared::events::{ClusterEvent, SseReader, WriteTrace, EVENTS_PATH, OWN_TRACES_QUERY};
use kv_shared::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Most traces kept in flight, over all nodes.
pub const MAX_IN_FLIGHT: usize = 4096;
/// Most finished traces kept.
pub const MAX_FINISHED: usize = 50_000;
/// Wait before reconnecting to a node's stream.
pub const RETRY: Duration = Duration::from_millis(250);

/// What the collector gathered.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Finished traces: answered, and acknowledged by every replica.
    pub finished: Vec<WriteTrace>,
    /// Finished traces not kept (beyond [`MAX_FINISHED`]).
    pub not_kept: u64,
    /// Traces still in flight when the run ended (never acknowledged by
    /// every replica, e.g. because one was cut off).
    pub unfinished: u64,
    /// Writes whose trace ended with a 503 (not used for the legs).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Book {
    /// In flight, by (coordinator, id), with the order they arrived in.
    in_flight: BTreeMap<(NodeId, u64), (u64, WriteTrace)>,
    arrivals: u64,
    done: Collected,
}

impl Book {
    fn add(&mut self, t: WriteTrace) {
        let key = (t.coordinator, t.id);
        if t.outcome.is_some() {
            // Answered 503: never a complete trace, nothing more to wait for.
            self.in_flight.remove(&key);
            self.done.failed += 1;
            return;
        }
        if t.committed_at_ms.is_some() && t.fully_acked() {
            self.in_flight.remove(&key);
            if self.done.finished.len() < MAX_FINISHED {
                self.done.finished.push(t);
            } else {
                self.done.not_kept += 1;
            }
            return;
        }
        self.arrivals += 1;
        self.in_flight.insert(key, (self.arrivals, t));
        if self.in_flight.len() > MAX_IN_FLIGHT {
            let oldest = self
                .in_flight
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.in_flight.remove(&k);
            }
        }
    }
}

/// Follows the nodes' trace streams until [`TraceCollector::finish`].
#[derive(Debug)]
pub struct TraceCollector {
    book: Arc<Mutex<Book>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TraceCollector {
    /// Starts following `urls` (node base URLs, without a trailing slash).
    pub fn start(client: &reqwest::Client, urls: &[String]) -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let tasks = urls
            .iter()
            .map(|url| {
                let url = format!("{url}{EVENTS_PATH}?{OWN_TRACES_QUERY}");
                tokio::spawn(follow(client.clone(), url, book.clone()))
            })
            .collect();
        TraceCollector { book, tasks }
    }

    /// Stops following and returns what was gathered.
    pub fn finish(self) -> Collected {
        for t in &self.tasks {
            t.abort();
        }
        let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = std::mem::take(&mut book.done);
        done.unfinished = book.in_flight.len() as u64;
        done
    }
}

/// Follows one node's stream, reconnecting after [`RETRY`], until aborted.
async fn follow(client: reqwest::Client, url: String, book: Arc<Mutex<Book>>) {
    loop {
        if let Ok(mut resp) = client.get(&url).send().await {
            if resp.status().is_success() {
                let mut reader = SseReader::default();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let traces = reader.push(&chunk).into_iter().filter_map(|e| match e {
                        ClusterEvent::Trace(t) => Some(t),
                        ClusterEvent::Status(_) | ClusterEvent::Node(_) | ClusterEvent::Read(_) => {
                            None
                        }
                    });
                    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
                    traces.for_each(|t| b.add(t));
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::events::ReplicaTrace;

    fn trace(coordinator: NodeId, id: u64, acked: bool, committed: bool) -> WriteTrace {
        WriteTrace {
            id,
            seq: Some(id),
            key: "k".into(),
            version: id,
            coordinator,
            w: 1,
            started_at_ms: 10,
            committed_at_ms: committed.then_some(12),
            replicas: vec![ReplicaTrace {
                id: coordinator + 1,
                sent_at_ms: Some(11),
                acked_at_ms: acked.then_some(13),
                failed_at_ms: None,
            }],
            outcome: None,
            at_ms: 13,
        }
    }

    #[test]
    fn a_trace_is_finished_once_answered_and_acknowledged_by_all() {
        let mut b = Book::default();
        b.add(trace(1, 7, false, false));
        b.add(trace(1, 7, false, true));
        assert!(b.done.finished.is_empty());
        b.add(trace(2, 7, false, false));
        b.add(trace(1, 7, true, true));
        assert_eq!(b.done.finished, vec![trace(1, 7, true, true)]);
        assert_eq!(b.in_flight.len(), 1, "node 2's write 7 is another write");
    }

    #[test]
    fn a_trace_that_answered_503_is_dropped_and_counted() {
        let mut b = Book::default();
        b.add(trace(1, 7, false, false));
        let mut failed = trace(1, 7, false, false);
        failed.outcome = Some(kv_shared::events::TraceOutcome::Failed {
            acked: 1,
            required: 3,
        });
        b.add(failed);
        assert!(b.in_flight.is_empty() && b.done.finished.is_empty());
        assert_eq!(b.done.failed, 1);
    }

    #[test]
    fn the_book_stays_bounded() {
        let mut b = Book::default();
        for id in 0..(MAX_IN_FLIGHT as u64 + 10) {
            b.add(trace(1, id, false, false));
        }
        assert_eq!(b.in_flight.len(), MAX_IN_FLIGHT);
        assert!(!b.in_flight.contains_key(&(1, 0)), "the oldest went first");
        for id in 0..(MAX_FINISHED as u64 + 3) {
            b.add(trace(3, id, true, true));
        }
        assert_eq!(b.done.finished.len(), MAX_FINISHED);
        assert_eq!(b.done.not_kept, 3);
    }
}
