//! Anti-entropy: every period (jittered), compare the store with one random
//! peer's and exchange only the keys whose versions differ.
//!
//! A round, driven by the node that starts it:
//! 1. Build the Merkle tree of the local store ([`MerkleTree`], O(keys)).
//! 2. Descend ([`Descent`]): ask the peer for its root hash
//!    (`POST /internal/ll/digest`), then only for the children of nodes that
//!    differ, level by level. Equal stores cost one request with one hash.
//! 3. For the differing leaf buckets, in chunks, ask for the peer's keys and
//!    versions (`POST /internal/ll/keys`) and [`reconcile`] them with the
//!    local ones.
//! 4. Fetch the records the peer holds newer (`POST /internal/ll/fetch`) and
//!    apply them; push the ones held newer here (`POST /internal/ll/write`,
//!    kind `anti-entropy`).
//!
//! The peer builds its tree once per round: requests carry a session id and
//! the answering node keeps the last tree it built for each asking peer.
//! Stores that change during a round may show differences that the next
//! round resolves; nothing is ever overwritten by an older version, because
//! both sides apply by version.

use super::merkle::{bucket_of_key, reconcile, Descent, DescentStep, Leaves, MerkleTree};
use super::runtime::Leaderless;
use crate::error::Invalid;
use crate::events::wall_ms;
use crate::store::Store;
use crate::transport::TransportError;
use kv_shared::events::NodeEventKind;
use kv_shared::leaderless::{
    AntiEntropyRound, BucketKeysRequest, BucketKeysResponse, DigestRequest, DigestResponse,
    FetchRequest, FetchResponse, KeyVersion, LlWrite, LlWriteAck, TreeShape, WriteKind,
};
use kv_shared::leaderless::{LL_DIGEST_PATH, LL_FETCH_PATH, LL_KEYS_PATH, LL_WRITE_PATH};
use kv_shared::limits::{record_bytes, MAX_BATCH_BYTES};
use kv_shared::replication::Record;
use kv_shared::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Leaf buckets per `keys` request.
const BUCKETS_PER_REQUEST: usize = 512;
/// Keys per `fetch` request and records per pushed `write`.
const KEYS_PER_REQUEST: usize = 1000;
/// Extra time allowed to the bulk requests of a round beyond the peer timeout.
const BULK_GRACE: Duration = Duration::from_secs(10);

/// Counters of the rounds this node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rounds run since start.
    pub rounds: u64,
    /// Keys changed by those rounds, on either side.
    pub keys_repaired: u64,
    /// The last round.
    pub last: Option<AntiEntropyRound>,
}

/// A node's anti-entropy state: its period, counters and the trees it built
/// to answer its peers' rounds.
#[derive(Debug)]
pub struct AntiEntropy {
    period: Duration,
    /// Locked briefly, never across `.await`.
    stats: Mutex<Stats>,
    /// Per asking peer: the session id and the tree built for it.
    trees: Mutex<HashMap<NodeId, (u64, Arc<MerkleTree>)>>,
}

impl AntiEntropy {
    /// State for a node that starts a round every `period` on average
    /// (zero: never; it still answers its peers).
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            stats: Mutex::default(),
            trees: Mutex::default(),
        }
    }

    /// The mean interval between rounds.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, round: AntiEntropyRound) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.rounds += 1;
        s.keys_repaired += round.keys_repaired;
        s.last = Some(round);
    }

    /// The tree of `store` for `from`'s round `session`, built on its first request.
    fn tree_for(&self, from: NodeId, session: u64, store: &Store) -> Arc<MerkleTree> {
        if let Some((s, t)) = self
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&from)
        {
            if *s == session {
                return t.clone();
            }
        }
        let tree = Arc::new(build_tree(store, TreeShape::DEFAULT));
        self.trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(from, (session, tree.clone()));
        tree
    }
}

/// The Merkle tree of a store's current contents.
pub fn build_tree(store: &Store, shape: TreeShape) -> MerkleTree {
    let mut leaves = Leaves::new(shape);
    store.for_each(|k, e| leaves.add(k, e.version));
    leaves.finish()
}

/// The keys and versions the store holds in `buckets`, grouped by bucket.
fn keys_in_buckets(
    store: &Store,
    shape: TreeShape,
    buckets: &[u32],
) -> HashMap<u32, Vec<KeyVersion>> {
    let mut wanted = vec![false; shape.leaves() as usize];
    for b in buckets {
        if let Some(w) = wanted.get_mut(*b as usize) {
            *w = true;
        }
    }
    let mut out: HashMap<u32, Vec<KeyVersion>> = HashMap::new();
    store.for_each(|k, e| {
        let b = bucket_of_key(k, shape);
        if wanted[b as usize] {
            out.entry(b).or_default().push(KeyVersion {
                key: k.to_owned(),
                version: e.version,
            });
        }
    });
    out
}

fn check_shape(shape: TreeShape) -> Result<(), Invalid> {
    if shape == TreeShape::DEFAULT {
        Ok(())
    } else {
        Err(Invalid(format!(
            "tree shape {shape:?} differs from this node's {:?}",
            TreeShape::DEFAULT
        )))
    }
}

/// `POST /internal/ll/digest`: this node's hashes of some tree nodes.
///
/// # Errors
/// 400 for another tree shape or nodes outside the tree.
pub fn on_digest(ll: &Leaderless, req: DigestRequest) -> Result<DigestResponse, Invalid> {
    check_shape(req.shape)?;
    let cluster = ll.cluster();
    cluster.peers().mark_up(req.from);
    if let Some(env) = req.config {
        cluster.merge_envelope(env);
    }
    let tree = ll
        .anti_entropy()
        .tree_for(req.from, req.session, ll.store());
    let hashes = tree
        .hashes(req.level, &req.nodes)
        .ok_or_else(|| Invalid("tree level or node index out of range".into()))?;
    Ok(DigestResponse {
        node_id: cluster.node_id(),
        clock: ll.clock(),
        hashes,
    })
}

/// `POST /internal/ll/keys`: the keys and versions of some leaf buckets.
///
/// # Errors
/// 400 for another tree shape.
pub fn on_keys(ll: &Leaderless, req: BucketKeysRequest) -> Result<BucketKeysResponse, Invalid> {
    check_shape(req.shape)?;
    let entries = keys_in_buckets(ll.store(), req.shape, &req.buckets)
        .into_values()
        .flatten()
        .collect();
    Ok(BucketKeysResponse {
        node_id: ll.cluster().node_id(),
        clock: ll.clock(),
        entries,
    })
}

/// `POST /internal/ll/fetch`: the records of the keys asked for that this node holds.
pub fn on_fetch(ll: &Leaderless, req: FetchRequest) -> FetchResponse {
    let store = ll.store();
    let mut records = Vec::new();
    let mut unsent = Vec::new();
    let mut bytes = 0usize;
    for key in req.keys.into_iter().take(KEYS_PER_REQUEST) {
        if !records.is_empty() && bytes > MAX_BATCH_BYTES as usize {
            unsent.push(key);
            continue;
        }
        if let Some(e) = store.get(&key) {
            bytes += record_bytes(&key, &e.value);
            records.push(Record {
                key,
                value: e.value,
                version: e.version,
            });
        }
    }
    FetchResponse {
        node_id: ll.cluster().node_id(),
        clock: ll.clock(),
        records,
        unsent,
    }
}

/// A small xorshift generator for jitter, peer choice and session ids.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn seeded(node: NodeId) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((t ^ (u64::from(node) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `period` ± 25 %.
    fn jitter(&mut self, period: Duration) -> Duration {
        let base = period.as_millis() as u64;
        let spread = base / 2;
        let offset = if spread == 0 {
            0
        } else {
            self.next() % (spread + 1)
        };
        Duration::from_millis(base - base / 4 + offset)
    }
}

/// The anti-entropy task: one round with a random live peer every period.
pub async fn run(ll: Leaderless) {
    let period = ll.anti_entropy().period();
    if period.is_zero() || ll.cluster().peers().list().is_empty() {
        return;
    }
    let mut rng = Rng::seeded(ll.cluster().node_id());
    while !ll.is_stopped() {
        tokio::time::sleep(rng.jitter(period)).await;
        ll.cluster().faults().wait_unpaused().await;
        let peers = ll.cluster().peers();
        let up: Vec<NodeId> = peers
            .ids()
            .into_iter()
            .filter(|id| peers.is_up(*id))
            .collect();
        if up.is_empty() {
            continue;
        }
        let peer = up[(rng.next() % up.len() as u64) as usize];
        let round = run_round(&ll, peer, rng.next()).await;
        if round.keys_repaired > 0 || !round.completed {
            tracing::info!(
                peer,
                buckets = round.buckets_differing,
                repaired = round.keys_repaired,
                completed = round.completed,
                ms = round.duration_ms,
                "anti-entropy round"
            );
            ll.cluster().events().node_event(
                ll.cluster().node_id(),
                0,
                NodeEventKind::AntiEntropy {
                    peer,
                    buckets: round.buckets_differing,
                    repaired: round.keys_repaired,
                    completed: round.completed,
                },
            );
        }
        ll.anti_entropy().record(round);
    }
}

/// Runs one round with `peer`; never fails (a failed round says so).
pub async fn run_round(ll: &Leaderless, peer: NodeId, session: u64) -> AntiEntropyRound {
    let started = Instant::now();
    let mut round = AntiEntropyRound {
        peer,
        ended_at_ms: 0,
        duration_ms: 0,
        buckets_differing: 0,
        keys_repaired: 0,
        completed: false,
    };
    match compare(ll, peer, session, &mut round).await {
        Ok(()) => round.completed = true,
        Err(e) => tracing::debug!(peer, error = %e, "anti-entropy round failed"),
    }
    round.ended_at_ms = wall_ms();
    round.duration_ms = started.elapsed().as_millis() as u64;
    round
}

async fn compare(
    ll: &Leaderless,
    peer: NodeId,
    session: u64,
    round: &mut AntiEntropyRound,
) -> Result<(), TransportError> {
    let shape = TreeShape::DEFAULT;
    let cluster = ll.cluster().clone();
    let local = build_tree(ll.store(), shape);
    let (mut descent, mut step) = Descent::start();
    let buckets = loop {
        match step {
            DescentStep::InSync => return Ok(()),
            DescentStep::Buckets(b) => break b,
            DescentStep::Ask { level, nodes } => {
                let req = DigestRequest {
                    from: cluster.node_id(),
                    session,
                    shape,
                    level,
                    nodes,
                    config: Some(cluster.envelope()),
                };
                let resp: DigestResponse = cluster
                    .transport()
                    .post(peer, LL_DIGEST_PATH, &req, cluster.peer_timeout())
                    .await?;
                ll.observe(resp.clock);
                step = descent
                    .on_hashes(&local, &resp.hashes)
                    .map_err(TransportError::Decode)?;
            }
        }
    };
    round.buckets_differing = buckets.len() as u32;
    let mut mine = keys_in_buckets(ll.store(), shape, &buckets);
    for chunk in buckets.chunks(BUCKETS_PER_REQUEST) {
        let req = BucketKeysRequest {
            from: cluster.node_id(),
            shape,
            buckets: chunk.to_vec(),
        };
        let timeout = cluster.peer_timeout() + BULK_GRACE;
        let theirs: BucketKeysResponse = cluster
            .transport()
            .post(peer, LL_KEYS_PATH, &req, timeout)
            .await?;
        ll.observe(theirs.clock);
        let local_keys = chunk
            .iter()
            .filter_map(|b| mine.remove(b))
            .flatten()
            .collect();
        let plan = reconcile(local_keys, theirs.entries);
        round.keys_repaired += pull(ll, peer, plan.pull).await?;
        round.keys_repaired += push(ll, peer, plan.push).await?;
    }
    Ok(())
}

/// Fetches `keys` from `peer` and keeps the newer records; returns how many changed.
async fn pull(ll: &Leaderless, peer: NodeId, keys: Vec<String>) -> Result<u64, TransportError> {
    let cluster = ll.cluster();
    let mut changed = 0;
    let (wall, offset) = (ll.wall_ms(), ll.max_clock_offset_ms());
    let mut todo: std::collections::VecDeque<String> = keys.into();
    // Each answer is bounded in bytes; what it left out is asked again
    // (bounded: an answer carries at least one record, or leaves none out).
    while !todo.is_empty() {
        let chunk: Vec<String> = todo.drain(..todo.len().min(KEYS_PER_REQUEST)).collect();
        let req = FetchRequest {
            from: cluster.node_id(),
            keys: chunk,
        };
        let timeout = cluster.peer_timeout() + BULK_GRACE;
        let resp: FetchResponse = cluster
            .transport()
            .post(peer, LL_FETCH_PATH, &req, timeout)
            .await?;
        if resp.records.is_empty() && !resp.unsent.is_empty() {
            break;
        }
        todo.extend(resp.unsent);
        ll.observe(resp.clock);
        for r in resp.records {
            // A peer's answer is checked like its messages.
            if crate::validate::key_value(&r.key, &r.value).is_err()
                || crate::validate::clock("version", r.version, wall, offset).is_err()
            {
                tracing::warn!(peer, key = %r.key, "ignored an invalid record of an anti-entropy answer");
                continue;
            }
            ll.observe(r.version);
            if ll.store().apply(&r.key, r.value, r.version) {
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Sends the local records of `keys` to `peer`; returns how many it changed.
async fn push(ll: &Leaderless, peer: NodeId, keys: Vec<String>) -> Result<u64, TransportError> {
    let cluster = ll.cluster();
    let mut changed = 0;
    let mut all = keys.iter().filter_map(|k| {
        ll.store().get(k).map(|e| Record {
            key: k.clone(),
            value: e.value,
            version: e.version,
        })
    });
    loop {
        // At most KEYS_PER_REQUEST records and about MAX_BATCH_BYTES (at least one).
        let mut records: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        for r in all.by_ref() {
            bytes += record_bytes(&r.key, &r.value);
            records.push(r);
            if records.len() >= KEYS_PER_REQUEST || bytes > MAX_BATCH_BYTES as usize / 2 {
                break;
            }
        }
        if records.is_empty() {
            break;
        }
        let msg = LlWrite {
            from: cluster.node_id(),
            clock: ll.clock(),
            kind: WriteKind::AntiEntropy,
            records,
            config: Some(cluster.envelope()),
        };
        let timeout = cluster.peer_timeout() + BULK_GRACE;
        let ack: LlWriteAck = cluster
            .transport()
            .post(peer, LL_WRITE_PATH, &msg, timeout)
            .await?;
        changed += u64::from(ack.changed);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_of_the_period() {
        let mut rng = Rng(42);
        for _ in 0..1000 {
            let d = rng.jitter(Duration::from_millis(1000)).as_millis();
            assert!((750..=1250).contains(&d), "{d}");
        }
        assert_eq!(rng.jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn store_trees_match_trees_of_the_same_pairs() {
        let s = Store::new();
        s.apply("a", "1".into(), 5);
        s.apply("b", "2".into(), 7);
        let direct = MerkleTree::build(TreeShape::DEFAULT, [("b", 7), ("a", 5)]);
        assert_eq!(build_tree(&s, TreeShape::DEFAULT), direct);
        let by_bucket = keys_in_buckets(
            &s,
            TreeShape::DEFAULT,
            &[bucket_of_key("a", TreeShape::DEFAULT)],
        );
        assert!(by_bucket.values().flatten().any(|kv| kv.key == "a"));
    }
}
