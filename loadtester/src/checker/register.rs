//! One key's operations as the linearizability search sees them: values
//! interned to small integers, failed operations left out, indeterminate
//! writes that no read returned dropped (they can change nothing), and
//! reads of values that no write could have written set aside, since they
//! are violations by themselves.

use super::{describe, Check, Violation};
use crate::history::{HistoryOp, Micros, Outcome};
use crate::workload::OpKind;
use std::collections::{HashMap, HashSet};

/// The register's state before any write, and the value of a read of nothing.
pub(super) const ABSENT: u32 = 0;

/// Most operations spelled out in a linearizability explanation.
const EXPLAINED_OPS: usize = 12;

/// One operation of the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RegOp {
    /// A write (else a read).
    pub write: bool,
    /// The value written or read, interned ([`ABSENT`]: none).
    pub value: u32,
    /// When it was invoked.
    pub invoke: Micros,
    /// When it completed; `None` for an indeterminate write (+∞: it may
    /// take effect at any time after `invoke`, or never).
    pub ret: Option<Micros>,
}

/// A key's operations, ready for the search.
#[derive(Debug)]
pub(super) struct KeyOps<'a> {
    /// The operations, in invocation order.
    pub ops: Vec<RegOp>,
    /// The history operation behind each of `ops`.
    sources: Vec<&'a HistoryOp>,
    /// `Ok` reads of a value that no `Ok` or indeterminate write wrote, in
    /// invocation order.
    unwritten: Vec<&'a HistoryOp>,
    /// The failed writes, by value (a read of one is a violation).
    failed_writes: HashMap<&'a str, &'a HistoryOp>,
}

impl<'a> KeyOps<'a> {
    /// Prepares one key's operations (`ops` all have the same key).
    pub fn prepare(ops: &[&'a HistoryOp]) -> Self {
        let mut sorted: Vec<&'a HistoryOp> = ops.to_vec();
        sorted.sort_by_key(|op| (op.invoke_us, op.id));

        let mut ids: HashMap<&'a str, u32> = HashMap::new();
        let mut failed_writes = HashMap::new();
        for op in sorted.iter().filter(|op| op.kind == OpKind::Write) {
            let Some(v) = op.value.as_deref() else {
                continue;
            };
            if op.outcome == Outcome::Failed {
                failed_writes.insert(v, *op);
            } else {
                let next = ids.len() as u32 + 1;
                ids.entry(v).or_insert(next);
            }
        }
        let read: HashSet<&str> = sorted
            .iter()
            .filter(|op| op.kind == OpKind::Read && op.outcome == Outcome::Ok)
            .filter_map(|op| op.value.as_deref())
            .collect();

        let mut prepared = KeyOps {
            ops: Vec::with_capacity(sorted.len()),
            sources: Vec::with_capacity(sorted.len()),
            unwritten: Vec::new(),
            failed_writes,
        };
        // A write without a value (never expected) gets a value of its own.
        let mut spare = ids.len() as u32 + 1;
        for op in sorted {
            let value = match (op.kind, op.value.as_deref()) {
                (OpKind::Read, None) => ABSENT,
                (_, Some(v)) => match ids.get(v) {
                    Some(&id) => id,
                    None if op.kind == OpKind::Read && op.outcome == Outcome::Ok => {
                        prepared.unwritten.push(op);
                        continue;
                    }
                    None => continue,
                },
                (OpKind::Write, None) => {
                    spare += 1;
                    spare - 1
                }
            };
            let ret = match (op.kind, op.outcome) {
                (_, Outcome::Ok) => Some(op.complete_us.max(op.invoke_us)),
                (OpKind::Write, Outcome::Indeterminate)
                    if op.value.as_deref().is_some_and(|v| read.contains(v)) =>
                {
                    None
                }
                _ => continue,
            };
            prepared.ops.push(RegOp {
                write: op.kind == OpKind::Write,
                value,
                invoke: op.invoke_us,
                ret,
            });
            prepared.sources.push(op);
        }
        prepared
    }

    /// The violation of the first read of a value that no write could have
    /// written, if there is one.
    pub fn unwritten_read(&self, key: &str) -> Option<Violation> {
        let read = *self.unwritten.first()?;
        let v = read.value.as_deref().unwrap_or_default();
        let more = match self.unwritten.len() - 1 {
            0 => String::new(),
            n => format!(" ({n} more such reads of the key)"),
        };
        let (op_ids, why) = match self.failed_writes.get(v) {
            Some(w) => (
                order_ids(&[*w, read]),
                format!("only the failed write {} wrote it", describe::op(w)),
            ),
            None => (vec![read.id], "no write of the key wrote it".to_string()),
        };
        Some(Violation {
            key: key.to_string(),
            check: Check::Linearizable,
            op_ids,
            explanation: format!(
                "{} returned a value that was never written: {why}{more}",
                describe::op(read)
            ),
        })
    }

    /// The violation shown by `evidence` (indices into [`KeyOps::ops`]).
    pub fn violation(&self, key: &str, evidence: &[usize]) -> Violation {
        let mut shown: Vec<&HistoryOp> = evidence.iter().map(|&i| self.sources[i]).collect();
        shown.sort_by_key(|op| (op.invoke_us, op.id));
        let mut listed: Vec<String> = shown
            .iter()
            .take(EXPLAINED_OPS)
            .map(|op| describe::op(op))
            .collect();
        if shown.len() > EXPLAINED_OPS {
            listed.push(format!("… {} more", shown.len() - EXPLAINED_OPS));
        }
        Violation {
            key: key.to_string(),
            check: Check::Linearizable,
            op_ids: shown.iter().map(|op| op.id).collect(),
            explanation: format!(
                "no order of these {} operations agrees with their times and with \
                 a register that starts absent: {}",
                shown.len(),
                listed.join("; ")
            ),
        }
    }
}

/// The ids of `ops` in invocation order.
fn order_ids(ops: &[&HistoryOp]) -> Vec<u64> {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|op| (op.invoke_us, op.id));
    ops.iter().map(|op| op.id).collect()
}
