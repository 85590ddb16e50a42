//! Read-your-writes and monotonic reads, per session and key.
//!
//! A session's operations never overlap, so one pass over them in
//! invocation order carries what the next read owes: the highest version
//! the session's own `Ok` writes got (read-your-writes), and the highest
//! version its `Ok` reads returned (monotonic reads). A read of nothing
//! counts as version 0. Each read below its floor is one violation, with the
//! operation that set the floor as the other half of the evidence.

use super::{describe, Check, Violation};
use crate::history::{HistoryOp, Outcome};
use crate::workload::OpKind;
use kv_shared::Version;
use std::collections::BTreeMap;

/// One session's `Ok` operations on one key, in invocation order.
pub(super) type Lane<'a> = Vec<&'a HistoryOp>;

/// Every read that returned an older version than the session's own
/// earlier acknowledged write of the key.
pub(super) fn read_your_writes(lanes: &[(&str, Lane<'_>)]) -> Vec<Violation> {
    let mut found = Vec::new();
    for &(key, ref lane) in lanes {
        let mut floor: Option<(&HistoryOp, Version)> = None;
        for &op in lane {
            match op.kind {
                OpKind::Write => {
                    if let Some(v) = op.version {
                        if floor.is_none_or(|(_, f)| v > f) {
                            floor = Some((op, v));
                        }
                    }
                }
                OpKind::Read => {
                    let Some((write, f)) = floor else { continue };
                    let got = op.version.unwrap_or(0);
                    if got < f && op.invoke_us >= write.complete_us {
                        found.push(Violation {
                            key: key.to_string(),
                            check: Check::ReadYourWrites,
                            op_ids: vec![write.id, op.id],
                            explanation: format!(
                                "session {} wrote version {f} and then read version {got}: \
                                 {}, then {}",
                                op.session,
                                describe::op(write),
                                describe::op(op)
                            ),
                        });
                    }
                }
            }
        }
    }
    found
}

/// Every read that returned an older version than an earlier read of the
/// key by the same session.
pub(super) fn monotonic_reads(lanes: &[(&str, Lane<'_>)]) -> Vec<Violation> {
    let mut found = Vec::new();
    for &(key, ref lane) in lanes {
        let mut floor: Option<(&HistoryOp, Version)> = None;
        for &op in lane.iter().filter(|op| op.kind == OpKind::Read) {
            let got = op.version.unwrap_or(0);
            match floor {
                Some((earlier, f)) if got < f && op.invoke_us >= earlier.complete_us => {
                    found.push(Violation {
                        key: key.to_string(),
                        check: Check::MonotonicReads,
                        op_ids: vec![earlier.id, op.id],
                        explanation: format!(
                            "session {} read version {f} and later version {got}: {}, then {}",
                            op.session,
                            describe::op(earlier),
                            describe::op(op)
                        ),
                    });
                }
                Some((_, f)) if got <= f => {}
                _ => floor = Some((op, got)),
            }
        }
    }
    found
}

/// The `Ok` operations of each (key, session), in key, session and
/// invocation order: one sort per key.
pub(super) fn lanes<'a>(
    by_key: &BTreeMap<&'a str, Vec<&'a HistoryOp>>,
) -> Vec<(&'a str, Lane<'a>)> {
    let mut out = Vec::new();
    for (key, ops) in by_key {
        let mut sorted: Vec<&'a HistoryOp> = ops
            .iter()
            .copied()
            .filter(|op| op.outcome == Outcome::Ok)
            .collect();
        sorted.sort_unstable_by_key(|op| (op.session, op.invoke_us, op.id));
        for lane in sorted.chunk_by(|a, b| a.session == b.session) {
            out.push((*key, lane.to_vec()));
        }
    }
    out
}
