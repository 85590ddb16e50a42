//! The history of a run: every operation with its invocation and
//! completion times, what it wrote or read and how it ended, plus the
//! faults injected meanwhile. The checker ([`crate::checker`]:
//! linearizability, read-your-writes, monotonic reads) and the staleness
//! measures ([`crate::pbs`]: t-visibility, k-staleness, the inconsistency
//! window) read it; a run writes it to `history.jsonl`, one JSON object per
//! line (operations first, then faults).
//!
//! Times are µs since the start of the run, on the load tester's clock:
//! `invoke_us` is when the request was sent, `complete_us` when its answer
//! (or its error) arrived. An operation whose effect is unknown — a write
//! that timed out or answered 503 — is [`Outcome::Indeterminate`]: it may
//! have taken effect at any time after `invoke_us`, or never.

use crate::error::{Error, Result};
use crate::workload::{OpKind, Sample};
use kv_shared::{NodeId, Version};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// µs since the start of the run.
pub type Micros = u64;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A write's 201 (with the version it got) or a read's 200 (value and
    /// version) or 404 (no value: `value` and `version` are `None`).
    Ok,
    /// Certainly without effect: a 4xx, a refused connection, any failed read.
    Failed,
    /// A write that may or may not have taken effect (timeout, 503, a
    /// connection lost after sending).
    Indeterminate,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryOp {
    /// Unique in the history (the workload's sequence number).
    pub id: u64,
    /// The client session that issued it; a session's operations never
    /// overlap in time (read-your-writes and monotonic reads are per session).
    pub session: u32,
    /// Read or write.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// The node that answered (`served_by`), else the node asked.
    pub node: Option<NodeId>,
    /// When the request was sent.
    pub invoke_us: Micros,
    /// When the answer or the error arrived (for an indeterminate write: when
    /// the client gave up; the write may still take effect later).
    pub complete_us: Micros,
    /// How it ended.
    pub outcome: Outcome,
    /// A write: the value written (unique per write). A read that is
    /// [`Outcome::Ok`]: the value read, `None` when the key was not found.
    pub value: Option<String>,
    /// A write that is [`Outcome::Ok`]: the version it got. A read that is
    /// [`Outcome::Ok`]: the version read.
    pub version: Option<Version>,
}

/// A fault injected during the run (by the nemesis), and its heal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When it started.
    pub at_us: Micros,
    /// When it was healed, if it was.
    pub until_us: Option<Micros>,
    /// `pause`, `crash`, `restart`, `partition`, `delay`, `drop`, `skew`, `heal`…
    pub kind: String,
    /// The nodes it hit.
    pub nodes: Vec<NodeId>,
    /// What exactly, for people (e.g. `node 1 cut off from 2,3 (one-way)`).
    pub detail: String,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// An operation.
    Op(HistoryOp),
    /// A fault.
    Fault(FaultRecord),
}

/// Everything recorded in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Every operation, in the order of `id`.
    pub ops: Vec<HistoryOp>,
    /// Every fault, in the order they started.
    pub faults: Vec<FaultRecord>,
}

/// How a request's outcome (a [`Sample::outcome`]) ends its operation.
///
/// Writes: `ok` is [`Outcome::Ok`]; a refusal (any 4xx but 408, and a
/// connection that could not be opened) is [`Outcome::Failed`]; a 503 or
/// other 5xx, a 408, a timeout, a connection lost after sending, or a 2xx
/// whose body did not decode is [`Outcome::Indeterminate`] — the write may
/// have been applied. Reads: `ok` and `not_found` are `Ok`, the rest `Failed`.
pub fn outcome_of(kind: OpKind, outcome: &str) -> Outcome {
    match (kind, outcome) {
        (_, "ok") | (OpKind::Read, "not_found") => Outcome::Ok,
        (OpKind::Read, _) => Outcome::Failed,
        (OpKind::Write, "connect") => Outcome::Failed,
        (OpKind::Write, "http_408") => Outcome::Indeterminate,
        (OpKind::Write, o) if o.starts_with("http_4") => Outcome::Failed,
        (OpKind::Write, _) => Outcome::Indeterminate,
    }
}

impl HistoryOp {
    /// The operation a sample measured: invoked at the actual send
    /// (`intended_us + queue_us`), completed `service_us` later.
    pub fn from_sample(s: &Sample) -> Self {
        let outcome = outcome_of(s.kind, &s.outcome);
        let invoke_us = s.intended_us.saturating_add(s.queue_us);
        let ok = outcome == Outcome::Ok;
        HistoryOp {
            id: s.seq,
            session: s.session,
            kind: s.kind,
            key: s.key.clone(),
            node: s.node_id,
            invoke_us,
            complete_us: invoke_us.saturating_add(s.service_us),
            outcome,
            value: match s.kind {
                OpKind::Write => s.value.clone(),
                OpKind::Read if ok => s.value.clone(),
                OpKind::Read => None,
            },
            version: if ok { s.version } else { None },
        }
    }
}

impl History {
    /// Writes the history as JSON lines.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_jsonl(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let lines = self
            .ops
            .iter()
            .cloned()
            .map(Line::Op)
            .chain(self.faults.iter().cloned().map(Line::Fault));
        for line in lines {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        out.flush().map_err(|e| Error::io(path, e))
    }

    /// Reads a history written by [`History::write_jsonl`].
    ///
    /// # Errors
    /// The file cannot be read, or a line is not a history line.
    pub fn read_jsonl(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut h = History::default();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Op(op)) => h.ops.push(op),
                Ok(Line::Fault(f)) => h.faults.push(f),
                Err(e) => {
                    return Err(Error::Config(format!(
                        "{} line {}: not a history line: {e}",
                        path.display(),
                        i + 1
                    )))
                }
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_split_into_done_refused_and_unknown() {
        use Outcome::*;
        for (kind, o, want) in [
            (OpKind::Write, "ok", Ok),
            (OpKind::Write, "http_503", Indeterminate),
            (OpKind::Write, "http_500", Indeterminate),
            (OpKind::Write, "timeout", Indeterminate),
            (OpKind::Write, "transport", Indeterminate),
            (OpKind::Write, "decode", Indeterminate),
            (OpKind::Write, "http_408", Indeterminate),
            (OpKind::Write, "http_400", Failed),
            (OpKind::Write, "http_413", Failed),
            (OpKind::Write, "connect", Failed),
            (OpKind::Read, "ok", Ok),
            (OpKind::Read, "not_found", Ok),
            (OpKind::Read, "http_503", Failed),
            (OpKind::Read, "timeout", Failed),
        ] {
            assert_eq!(outcome_of(kind, o), want, "{kind:?} {o}");
        }
    }

    #[test]
    fn a_history_survives_its_file() {
        let h = History {
            ops: vec![
                HistoryOp {
                    id: 0,
                    session: 1,
                    kind: OpKind::Write,
                    key: "k".into(),
                    node: Some(1),
                    invoke_us: 10,
                    complete_us: 20,
                    outcome: Outcome::Ok,
                    value: Some("v0".into()),
                    version: Some(1),
                },
                HistoryOp {
                    id: 1,
                    session: 2,
                    kind: OpKind::Read,
                    key: "k".into(),
                    node: None,
                    invoke_us: 15,
                    complete_us: 30,
                    outcome: Outcome::Ok,
                    value: None,
                    version: None,
                },
            ],
            faults: vec![FaultRecord {
                at_us: 12,
                until_us: Some(40),
                kind: "pause".into(),
                nodes: vec![2],
                detail: "node 2 paused".into(),
            }],
        };
        let dir = std::env::temp_dir().join(format!("kv-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        h.write_jsonl(&path).unwrap();
        assert_eq!(History::read_jsonl(&path).unwrap(), h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
