//! The pure assembly of the cluster snapshot from the nodes' `/status`.

use kv_shared::cluster::{Progress, StatusResponse};
use kv_shared::events::{ClusterView, ReplicaView, WallMs};
use kv_shared::{NodeId, Role};
use std::collections::BTreeMap;

/// The faults in force that `status` lists.
pub(super) fn active_faults(status: &StatusResponse) -> Vec<kv_shared::admin::ActiveFault> {
    status
        .faults
        .as_ref()
        .map(|f| f.active.clone())
        .unwrap_or_default()
}

/// Merges this node's status with its peers' answers (pure, for tests).
pub fn assemble(
    own: &StatusResponse,
    answers: BTreeMap<NodeId, Result<StatusResponse, String>>,
    at_ms: WallMs,
) -> ClusterView {
    // The leader's /status carries every follower's lag.
    let leader_status = match own.leader {
        Some(l) if l == own.node_id => Some(own),
        Some(l) => answers.get(&l).and_then(|a| a.as_ref().ok()),
        None => None,
    };
    let lag_of = |id: NodeId| leader_status.and_then(|s| s.peers.iter().find(|p| p.id == id));
    let lf = |s: &StatusResponse| s.leader_follower.clone();
    // Hints every node that answered holds for `id` (leaderless).
    let hints_for = |id: NodeId| {
        std::iter::once(own)
            .chain(answers.values().filter_map(|a| a.as_ref().ok()))
            .flat_map(|s| s.peers.iter().filter(|p| p.id == id))
            .filter_map(|p| p.progress.pending_hints)
            .reduce(|a, b| a + b)
    };
    // The leader's lag figures for `id` and the hints held for it.
    let progress_of = |id: NodeId| Progress {
        pending_hints: hints_for(id),
        ..lag_of(id).map(|p| p.progress).unwrap_or_default()
    };
    let mut replicas = vec![ReplicaView {
        id: own.node_id,
        url: own.url.clone(),
        role: own.role,
        up: true,
        applied_seq: Some(own.applied_seq),
        keys: Some(own.keys),
        term: lf(own).map(|l| l.term),
        commit_seq: lf(own).map(|l| l.commit_seq),
        catching_up: lf(own).is_some_and(|l| l.catching_up),
        rolled_back: lf(own).map(|l| l.rolled_back),
        progress: progress_of(own.node_id),
        config: None,
        error: None,
        faults: active_faults(own),
    }];
    for p in &own.peers {
        let answer = answers.get(&p.id);
        let theirs = answer.and_then(|a| a.as_ref().ok());
        replicas.push(ReplicaView {
            id: p.id,
            url: p.url.clone(),
            role: theirs.map_or(p.role, |s| s.role),
            up: theirs.is_some(),
            applied_seq: theirs.map(|s| s.applied_seq),
            keys: theirs.map(|s| s.keys),
            term: theirs.and_then(lf).map(|l| l.term),
            commit_seq: theirs.and_then(lf).map(|l| l.commit_seq),
            catching_up: theirs.and_then(lf).is_some_and(|l| l.catching_up),
            rolled_back: theirs.and_then(lf).map(|l| l.rolled_back),
            progress: progress_of(p.id),
            config: theirs.map(|s| s.config).filter(|c| *c != own.config),
            error: match answer {
                Some(Err(e)) => Some(e.clone()),
                None => Some("not asked".into()),
                Some(Ok(_)) => None,
            },
            faults: theirs.map(active_faults).unwrap_or_default(),
        });
    }
    replicas.sort_by_key(|r| r.id);
    ClusterView {
        at_ms,
        observer: own.node_id,
        mode: own.mode,
        leader: own.leader.or_else(|| {
            replicas
                .iter()
                .find(|r| r.role == Role::Leader)
                .map(|r| r.id)
        }),
        config: own.config,
        replicas,
    }
}
