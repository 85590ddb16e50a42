//! What the page works out from the writes and reads it saw: versions in
//! words, the quorum picture of a read, and the staleness curve
//! (t-visibility). Pure functions, unit-tested natively.

use kv_shared::events::{ReadAnswer, ReadTrace, WriteTrace};
use kv_shared::leaderless::hlc;
use kv_shared::{NodeId, Version};
use std::collections::BTreeSet;

/// A version as a person reads it: leader-follower counters as they are
/// (`v7`); leaderless clock readings as UTC time, counter and node
/// (`12:04:31.250 #0 n2`). The full number belongs in a tooltip.
pub fn version_label(v: Version) -> String {
    if !hlc::is_clock_reading(v) {
        return format!("v{v}");
    }
    let (unix_ms, counter, node) = hlc::parts(v);
    let day_ms = unix_ms % 86_400_000;
    let (h, m, s, ms) = (
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1_000 % 60,
        day_ms % 1_000,
    );
    format!("{h:02}:{m:02}:{s:02}.{ms:03} #{counter} n{node}")
}

/// The tooltip of a version: its exact value and, for a clock reading, what
/// its fields mean.
pub fn version_title(v: Version) -> String {
    if hlc::is_clock_reading(v) {
        let (unix_ms, counter, node) = hlc::parts(v);
        format!(
            "version {v}: hybrid logical clock — {unix_ms} ms since the Unix epoch (UTC), counter {counter}, node {node}"
        )
    } else {
        format!("version {v}")
    }
}

/// Which replicas a write reached and a read asked, side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPicture {
    /// The key.
    pub key: String,
    /// The W replicas that acknowledged the last write of the key before
    /// the read (the coordinator first), if the page saw that write.
    pub write_set: Option<BTreeSet<NodeId>>,
    /// W of that write.
    pub w: u32,
    /// The replicas whose answers the read counted.
    pub read_set: BTreeSet<NodeId>,
    /// R of the read.
    pub r: u32,
}

impl QuorumPicture {
    /// Replicas in both sets (R + W > N guarantees at least one).
    pub fn overlap(&self) -> BTreeSet<NodeId> {
        self.write_set
            .as_ref()
            .map(|w| w.intersection(&self.read_set).copied().collect())
            .unwrap_or_default()
    }
}

/// The last write of `key` answered before `before_ms` (cluster time).
pub fn last_acked_write<'a>(
    traces: &'a [WriteTrace],
    key: &str,
    before_ms: u64,
) -> Option<&'a WriteTrace> {
    traces
        .iter()
        .filter(|t| t.key == key && t.committed_at_ms.is_some_and(|c| c <= before_ms))
        .max_by_key(|t| (t.committed_at_ms, t.version))
}

/// The W replicas that made up a write's quorum: its coordinator and the
/// first W − 1 acknowledgements.
pub fn write_quorum(t: &WriteTrace) -> BTreeSet<NodeId> {
    let mut acks: Vec<_> = t
        .replicas
        .iter()
        .filter_map(|r| r.acked_at_ms.map(|a| (a, r.id)))
        .collect();
    acks.sort_unstable();
    std::iter::once(t.coordinator)
        .chain(
            acks.into_iter()
                .map(|(_, id)| id)
                .take(t.w.saturating_sub(1) as usize),
        )
        .collect()
}

/// The quorum picture of `read` against the writes the page saw.
pub fn quorum_picture(traces: &[WriteTrace], read: &ReadTrace) -> QuorumPicture {
    let write = last_acked_write(traces, &read.key, read.started_at_ms);
    QuorumPicture {
        key: read.key.clone(),
        write_set: write.map(write_quorum),
        w: write.map_or(0, |w| w.w),
        read_set: read.counted().map(|r| r.id).collect(),
        r: read.r,
    }
}

/// Bounds of the staleness curve's bins, in ms since the write's ack.
pub const STALENESS_BINS: [u64; 6] = [0, 50, 100, 250, 500, 1_000];

/// One bin of the staleness curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StalenessBin {
    /// Lower bound, in ms since the ack (the upper one is the next bin's).
    pub from_ms: u64,
    /// Reads that returned the latest acknowledged write or newer.
    pub fresh_reads: u32,
    /// Reads in the bin.
    pub reads: u32,
    /// Replica answers that held it or newer.
    pub fresh_answers: u32,
    /// Replica answers in the bin.
    pub answers: u32,
}

/// P(a read returns the latest acknowledged write) against the time since
/// that acknowledgement, from what the page saw: per read (the version it
/// returned) and per replica answer (the copy each replica held). A read
/// counts if the page saw a write of its key answered before it started.
pub fn staleness(traces: &[WriteTrace], reads: &[&ReadTrace]) -> Vec<StalenessBin> {
    let mut bins: Vec<StalenessBin> = STALENESS_BINS
        .iter()
        .map(|&from_ms| StalenessBin {
            from_ms,
            ..StalenessBin::default()
        })
        .collect();
    for read in reads.iter().filter(|r| r.outcome.is_none()) {
        let Some(w) = last_acked_write(traces, &read.key, read.started_at_ms) else {
            continue;
        };
        let since = read.started_at_ms - w.committed_at_ms.unwrap_or(0);
        let i = STALENESS_BINS.partition_point(|&b| b <= since) - 1;
        let bin = &mut bins[i];
        bin.reads += 1;
        if read.winner.is_some_and(|v| v >= w.version) {
            bin.fresh_reads += 1;
        }
        for a in read.counted() {
            bin.answers += 1;
            if matches!(a.answer, ReadAnswer::Version { version } if version >= w.version) {
                bin.fresh_answers += 1;
            }
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::events::{ReadReplicaTrace, ReplicaTrace};

    fn write(key: &str, version: Version, committed: u64, acks: &[(NodeId, u64)]) -> WriteTrace {
        WriteTrace {
            id: version,
            seq: None,
            key: key.into(),
            version,
            coordinator: 1,
            w: 2,
            started_at_ms: committed - 1,
            committed_at_ms: Some(committed),
            replicas: acks
                .iter()
                .map(|&(id, a)| ReplicaTrace {
                    id,
                    sent_at_ms: Some(committed - 1),
                    acked_at_ms: Some(a),
                    failed_at_ms: None,
                })
                .collect(),
            outcome: None,
            at_ms: committed,
        }
    }

    fn read(key: &str, started: u64, answers: &[(NodeId, Option<Version>)]) -> ReadTrace {
        let replicas: Vec<_> = answers
            .iter()
            .map(|&(id, v)| ReadReplicaTrace {
                id,
                asked_at_ms: started,
                answered_at_ms: Some(started + 1),
                answer: v.map_or(ReadAnswer::Missing, |version| ReadAnswer::Version {
                    version,
                }),
            })
            .collect();
        ReadTrace {
            id: started,
            key: key.into(),
            coordinator: answers[0].0,
            r: answers.len() as u32,
            started_at_ms: started,
            finished_at_ms: started + 2,
            winner: answers.iter().filter_map(|a| a.1).max(),
            replicas,
            repaired: vec![],
            outcome: None,
            at_ms: started + 2,
        }
    }

    #[test]
    fn clock_versions_read_as_time_counter_and_node() {
        assert_eq!(version_label(7), "v7");
        // 2026-01-01T12:04:31.250Z, counter 3, node 2.
        let unix_ms = 1_767_269_071_250u64;
        let v = ((unix_ms - hlc::EPOCH_UNIX_MS) << 22) | (3 << 8) | 2;
        assert_eq!(version_label(v), "12:04:31.250 #3 n2");
        assert!(version_title(v).contains(&v.to_string()));
    }

    #[test]
    fn the_quorum_picture_overlaps_where_the_write_and_the_read_met() {
        let traces = vec![
            write("k", 1, 100, &[(2, 101), (3, 150)]),
            write("k", 2, 200, &[(3, 201), (2, 260), (4, 300)]),
            write("other", 9, 250, &[(5, 251)]),
        ];
        let r = read("k", 400, &[(4, Some(2)), (5, None), (3, Some(2))]);
        let q = quorum_picture(&traces, &r);
        assert_eq!(q.write_set, Some(BTreeSet::from([1, 3])), "W=2: first ack");
        assert_eq!(q.read_set, BTreeSet::from([3, 4, 5]));
        assert_eq!(q.overlap(), BTreeSet::from([3]));
        let early = read("k", 150, &[(4, None)]);
        assert_eq!(
            quorum_picture(&traces, &early).write_set,
            Some(BTreeSet::from([1, 2]))
        );
        assert_eq!(
            quorum_picture(&traces, &read("new", 400, &[(1, None)])).write_set,
            None
        );
    }

    #[test]
    fn staleness_counts_reads_and_answers_by_time_since_the_ack() {
        let traces = vec![write("k", 5, 1_000, &[(2, 1_001)])];
        let reads = [
            read("k", 1_010, &[(1, Some(5)), (3, Some(4))]), // 10 ms: fresh read, one stale answer
            read("k", 1_020, &[(3, Some(4)), (4, None)]),    // 20 ms: stale
            read("k", 1_700, &[(3, Some(5)), (4, Some(5))]), // 700 ms: fresh
            read("k", 900, &[(3, Some(4))]),                 // before the ack: not counted
        ];
        let refs: Vec<&ReadTrace> = reads.iter().collect();
        let bins = staleness(&traces, &refs);
        assert_eq!(bins.len(), STALENESS_BINS.len());
        assert_eq!(
            (
                bins[0].reads,
                bins[0].fresh_reads,
                bins[0].answers,
                bins[0].fresh_answers
            ),
            (2, 1, 4, 1)
        );
        assert_eq!((bins[4].reads, bins[4].fresh_reads), (1, 1));
        assert_eq!(bins.iter().map(|b| b.reads).sum::<u32>(), 3);
    }
}
