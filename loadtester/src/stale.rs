//! The stale-read tracker.
//!
//! The client remembers, per key, the highest version that a *completed*
//! write was acknowledged with. When a read is sent, the tracker takes a
//! snapshot of that version ([`StaleTracker::begin_read`]); when the answer
//! arrives, [`judge`] compares:
//!
//! - the read returned a version lower than the snapshot → **stale**: the
//!   cluster acknowledged a newer write before the read began, yet served an
//!   older one;
//! - the read returned 404 although the snapshot holds a version → **stale**
//!   (the write is not visible at all);
//! - otherwise fresh. A version *higher* than the snapshot is fresh: a
//!   concurrent or unacknowledged write may legitimately be visible.
//!
//! Only writes acknowledged before the read was *sent* count, so a read that
//! overlaps a write is never called stale: this is the client-side check of
//! "a read started after a write's acknowledgement sees that write", which
//! R + W > N promises and R + W ≤ N does not.
//!
//! The tracker also measures the read-after-write interval: the time from a
//! write's acknowledgement to the start of the next read of the same key
//! (only the first read after each write counts).
//!
//! Time is passed in (`now`), so the tracker is tested without a clock.
//! The lock is a plain mutex held for a hash-map lookup, never across `.await`.

use kv_shared::Version;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the client knows about one key.
#[derive(Debug, Clone)]
struct KeyState {
    /// Highest acknowledged version.
    version: Version,
    /// The value written with that version.
    value: String,
    /// When the latest acknowledged write (of any version) completed, if no read started since.
    unread_write_at: Option<Instant>,
}

/// Snapshot taken when a read is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTicket {
    /// Highest version acknowledged before the read started (0: none).
    pub known: Version,
    /// Time since the previous write of the key was acknowledged, when this
    /// is the first read after that write.
    pub since_write: Option<Duration>,
}

/// What a read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAnswer {
    /// 200 with this version.
    Found(Version),
    /// 404.
    NotFound,
}

/// The verdict on one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No write of the key was acknowledged before the read: nothing to check.
    Unchecked,
    /// The read saw the latest acknowledged version or a newer one.
    Fresh,
    /// The read returned an older version, `behind` versions behind.
    StaleVersion {
        /// Acknowledged version minus returned version.
        behind: u64,
    },
    /// The read returned 404 after a write was acknowledged.
    StaleMissing,
}

impl Freshness {
    /// Whether the read was stale.
    pub fn is_stale(self) -> bool {
        matches!(
            self,
            Freshness::StaleVersion { .. } | Freshness::StaleMissing
        )
    }
}

/// Judges a read against the snapshot taken when it was sent.
pub fn judge(ticket: ReadTicket, answer: ReadAnswer) -> Freshness {
    match (ticket.known, answer) {
        (0, _) => Freshness::Unchecked,
        (_, ReadAnswer::NotFound) => Freshness::StaleMissing,
        (known, ReadAnswer::Found(v)) if v < known => Freshness::StaleVersion { behind: known - v },
        _ => Freshness::Fresh,
    }
}

/// One acknowledged write, for the final verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Key index.
    pub key: u64,
    /// Highest acknowledged version.
    pub version: Version,
    /// The value written with it.
    pub value: String,
}

/// Per-key highest acknowledged versions, shared by every request task.
#[derive(Debug, Default)]
pub struct StaleTracker {
    keys: Mutex<HashMap<u64, KeyState>>,
}

impl StaleTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a write of `key` was acknowledged at `now` with `version`.
    pub fn write_acked(&self, key: u64, version: Version, value: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = keys.entry(key).or_insert_with(|| KeyState {
            version: 0,
            value: String::new(),
            unread_write_at: None,
        });
        if version > state.version {
            state.version = version;
            // Reuses the buffer of the previous value.
            state.value.clear();
            state.value.push_str(value);
        }
        state.unread_write_at = Some(now);
    }

    /// Snapshot for a read of `key` sent at `now`.
    pub fn begin_read(&self, key: u64, now: Instant) -> ReadTicket {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get_mut(&key) {
            Some(state) => ReadTicket {
                known: state.version,
                since_write: state
                    .unread_write_at
                    .take()
                    .map(|t| now.saturating_duration_since(t)),
            },
            None => ReadTicket {
                known: 0,
                since_write: None,
            },
        }
    }

    /// Every key with an acknowledged write, sorted by key.
    pub fn acked(&self) -> Vec<Acked> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Acked> = keys
            .iter()
            .map(|(k, s)| Acked {
                key: *k,
                version: s.version,
                value: s.value.clone(),
            })
            .collect();
        out.sort_by_key(|a| a.key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_stale_only_against_writes_acknowledged_before_it_started() {
        let t = StaleTracker::new();
        let t0 = Instant::now();
        // Nothing written: a 404 or any version is unchecked.
        let r0 = t.begin_read(1, t0);
        assert_eq!(judge(r0, ReadAnswer::NotFound), Freshness::Unchecked);
        t.write_acked(1, 1, "a", t0);
        // A read that started before the second ack may return version 1.
        let overlapping = t.begin_read(1, t0 + Duration::from_millis(5));
        t.write_acked(1, 2, "b", t0 + Duration::from_millis(10));
        assert_eq!(judge(overlapping, ReadAnswer::Found(1)), Freshness::Fresh);
        // A read that started after it may not.
        let after = t.begin_read(1, t0 + Duration::from_millis(20));
        assert_eq!(
            judge(after, ReadAnswer::Found(1)),
            Freshness::StaleVersion { behind: 1 }
        );
        assert_eq!(judge(after, ReadAnswer::NotFound), Freshness::StaleMissing);
        assert_eq!(judge(after, ReadAnswer::Found(2)), Freshness::Fresh);
        assert_eq!(judge(after, ReadAnswer::Found(3)), Freshness::Fresh);
    }

    #[test]
    fn acknowledgements_arriving_out_of_order_keep_the_highest_version() {
        let t = StaleTracker::new();
        let now = Instant::now();
        t.write_acked(7, 5, "five", now);
        t.write_acked(7, 4, "four", now);
        assert_eq!(
            t.acked(),
            [Acked {
                key: 7,
                version: 5,
                value: "five".into()
            }]
        );
        assert_eq!(t.begin_read(7, now).known, 5);
    }

    #[test]
    fn only_the_first_read_after_a_write_measures_the_interval() {
        let t = StaleTracker::new();
        let t0 = Instant::now();
        t.write_acked(3, 1, "v", t0);
        let first = t.begin_read(3, t0 + Duration::from_millis(40));
        let second = t.begin_read(3, t0 + Duration::from_millis(50));
        assert_eq!(first.since_write, Some(Duration::from_millis(40)));
        assert_eq!(second.since_write, None);
        t.write_acked(3, 2, "w", t0 + Duration::from_millis(60));
        assert_eq!(
            t.begin_read(3, t0 + Duration::from_millis(61)).since_write,
            Some(Duration::from_millis(1))
        );
    }
}
