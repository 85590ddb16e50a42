//! A simulated linearizable store, for the checker's tests and benchmark:
//! seeded histories that must pass, and one injected fault that must not.
//!
//! `clients` sessions each send one operation at a time (a random think
//! time after the previous one completed) to a uniformly chosen key. Every
//! operation that takes effect does so at one random instant inside its
//! interval; applying them in the order of those instants to one register
//! per key gives each read its value and version, so the history is
//! linearizable by construction, and read-your-writes and monotonic reads
//! hold too (versions grow in that order). Some operations fail (no
//! effect); some writes are indeterminate: the client gives up, and the
//! write takes effect at a random instant after its invocation — possibly
//! after the client gave up — or, half of the time, never.

use crate::history::{History, HistoryOp, Micros, Outcome};
use crate::keys::key_name;
use crate::workload::OpKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The shape of a simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Operations in the history.
    pub ops: usize,
    /// Distinct keys (uniformly chosen).
    pub keys: u64,
    /// Concurrent sessions.
    pub clients: u32,
    /// Fraction of operations that are writes.
    pub write_ratio: f64,
    /// Fraction of writes that are indeterminate.
    pub indeterminate_ratio: f64,
    /// Fraction of operations that fail (no effect).
    pub failed_ratio: f64,
    /// Longest latency of an operation, µs (the shortest is 50 µs).
    pub max_latency_us: Micros,
    /// Longest think time of a client between two operations, µs.
    pub max_think_us: Micros,
}

impl Default for SimConfig {
    /// 100 000 operations over 1000 keys from 32 clients, half writes, 2 %
    /// of the writes indeterminate, 1 % of everything failed.
    fn default() -> Self {
        SimConfig {
            seed: 1,
            ops: 100_000,
            keys: 1000,
            clients: 32,
            write_ratio: 0.5,
            indeterminate_ratio: 0.02,
            failed_ratio: 0.01,
            max_latency_us: 2000,
            max_think_us: 200,
        }
    }
}

/// One operation before the register gives it its result.
struct Planned {
    op: HistoryOp,
    /// When it takes effect, if it does.
    effect_at: Option<Micros>,
}

/// A linearizable history shaped by `cfg` (the same for the same `cfg`).
pub fn linearizable_history(cfg: &SimConfig) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut free: BinaryHeap<Reverse<(Micros, u32)>> =
        (0..cfg.clients.max(1)).map(|c| Reverse((0, c))).collect();
    let mut planned = Vec::with_capacity(cfg.ops);
    for id in 0..cfg.ops as u64 {
        let Reverse((ready, session)) = free.pop().expect("at least one client");
        let p = plan(&mut rng, cfg, id, session, ready);
        free.push(Reverse((p.op.complete_us, session)));
        planned.push(p);
    }
    apply(&mut planned);
    History {
        ops: planned.into_iter().map(|p| p.op).collect(),
        faults: Vec::new(),
    }
}

/// Draws one operation of `session`, which is free from `ready` on.
fn plan(rng: &mut ChaCha8Rng, cfg: &SimConfig, id: u64, session: u32, ready: Micros) -> Planned {
    let invoke = ready + rng.random_range(1..=cfg.max_think_us.max(1));
    let latency = rng.random_range(50..=cfg.max_latency_us.max(50));
    let write = rng.random_bool(cfg.write_ratio);
    let key = key_name("key", rng.random_range(0..cfg.keys.max(1)));
    let (outcome, effect_at) = if rng.random_bool(cfg.failed_ratio) {
        (Outcome::Failed, None)
    } else if write && rng.random_bool(cfg.indeterminate_ratio) {
        let effect = rng
            .random_bool(0.5)
            .then(|| invoke + rng.random_range(0..=4 * latency));
        (Outcome::Indeterminate, effect)
    } else {
        (Outcome::Ok, Some(invoke + rng.random_range(0..=latency)))
    };
    Planned {
        op: HistoryOp {
            id,
            session,
            kind: if write { OpKind::Write } else { OpKind::Read },
            key,
            node: Some(1 + (id % 3) as u32),
            invoke_us: invoke,
            complete_us: invoke + latency,
            outcome,
            value: write.then(|| format!("v{id}")),
            version: None,
        },
        effect_at,
    }
}

/// Applies the operations that take effect, in the order of their
/// instants, to one register per key: reads get their value and version,
/// acknowledged writes their version.
fn apply(planned: &mut [Planned]) {
    let mut order: Vec<(Micros, usize)> = planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.effect_at.map(|t| (t, i)))
        .collect();
    order.sort_unstable();
    let mut registers: HashMap<String, (String, u64)> = HashMap::new();
    for (_, i) in order {
        let op = &mut planned[i].op;
        match op.kind {
            OpKind::Write => {
                let version = registers.get(&op.key).map_or(1, |(_, v)| v + 1);
                let value = op.value.clone().unwrap_or_default();
                registers.insert(op.key.clone(), (value, version));
                if op.outcome == Outcome::Ok {
                    op.version = Some(version);
                }
            }
            OpKind::Read => {
                if let Some((value, version)) = registers.get(&op.key) {
                    op.value = Some(value.clone());
                    op.version = Some(*version);
                }
            }
        }
    }
}

/// A stale read put into a history by [`inject_stale_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRead {
    /// The key.
    pub key: String,
    /// The read that now returns an overwritten value.
    pub read: u64,
    /// The write whose value it returns.
    pub old_write: u64,
    /// A write that certainly came after that one and before the read.
    pub newer_write: u64,
}

/// Makes one `Ok` read return an overwritten value: the value (and version)
/// of an acknowledged write that completed before another acknowledged
/// write of the key began, which itself completed before the read began.
/// No order explains that read, so the key is no longer linearizable. The
/// read is chosen by `seed`; `None` if the history has no such read.
pub fn inject_stale_read(history: &mut History, seed: u64) -> Option<StaleRead> {
    let mut writes: HashMap<&str, Vec<&HistoryOp>> = HashMap::new();
    for op in &history.ops {
        if op.kind == OpKind::Write && op.outcome == Outcome::Ok {
            writes.entry(op.key.as_str()).or_default().push(op);
        }
    }
    let mut reads: Vec<usize> = (0..history.ops.len())
        .filter(|&i| {
            let op = &history.ops[i];
            op.kind == OpKind::Read && op.outcome == Outcome::Ok
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Fisher–Yates, so that the choice depends on the seed only.
    for i in (1..reads.len()).rev() {
        reads.swap(i, rng.random_range(0..=i));
    }
    let found = reads.into_iter().find_map(|i| {
        let read = &history.ops[i];
        let ws = writes.get(read.key.as_str())?;
        let newer = ws
            .iter()
            .filter(|w| w.complete_us < read.invoke_us)
            .max_by_key(|w| w.complete_us)?;
        let old = ws
            .iter()
            .filter(|w| w.complete_us < newer.invoke_us)
            .max_by_key(|w| w.complete_us)?;
        Some((i, old.id, newer.id, old.value.clone(), old.version))
    });
    let (i, old_write, newer_write, value, version) = found?;
    let read = &mut history.ops[i];
    read.value = value;
    read.version = version;
    Some(StaleRead {
        key: read.key.clone(),
        read: read.id,
        old_write,
        newer_write,
    })
}
