//! Membership and failure detection: who the other nodes are, and whether
//! they answered lately.
//!
//! Membership is static: the `--peers` list given at start. Every contact with
//! a peer — a request this node sent, or a request the peer sent to this node —
//! updates that peer's [`Health`]; the prober in [`crate::transport`] asks
//! `/health` of peers nobody heard from lately. `up` therefore means "answered
//! within the last few heartbeats", not more.
//!
//! Both replication modes use this module: leader-follower to know the leader
//! and the followers' state, leaderless to pick replicas and route hints.

use crate::config::FlagError;
use kv_shared::{NodeId, Role};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One peer as given by `--peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: NodeId,
    /// Its base URL, without a trailing slash.
    pub url: String,
}

/// Parses `--peers`: `id=url` pairs separated by commas. The entry with this
/// node's own id is dropped; the result is sorted by id.
///
/// # Errors
/// A message naming the bad entry.
pub fn parse_peers(spec: &str, self_id: NodeId) -> Result<Vec<PeerInfo>, FlagError> {
    let mut peers: BTreeMap<NodeId, String> = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, url) = item
            .split_once('=')
            .ok_or_else(|| format!("--peers: `{item}` is not of the form id=url"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers: `{id}` in `{item}` is not a node id"))?;
        let url = url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("--peers: `{url}` must start with http:// or https://").into());
        }
        if let Some(old) = peers.insert(id, url.clone()) {
            if old != url {
                return Err(format!("--peers: node {id} is listed twice ({old}, {url})").into());
            }
        }
    }
    peers.remove(&self_id);
    Ok(peers
        .into_iter()
        .map(|(id, url)| PeerInfo { id, url })
        .collect())
}

/// What this node knows of one peer's health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether the last contact succeeded (false until the first one).
    pub up: bool,
    /// When the last successful contact happened.
    pub last_ok: Option<Instant>,
    /// The error of the last failed contact, if the last contact failed.
    pub last_error: Option<String>,
    /// The role the peer reported in `/health`, if any.
    pub role: Option<Role>,
}

/// The static peer list plus live health: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    self_id: NodeId,
    list: Vec<PeerInfo>,
    /// Locked only to read or update one map entry; never held across `.await`.
    health: Mutex<BTreeMap<NodeId, Health>>,
    /// The leader's id in leader-follower mode, as the replication core
    /// last reported it; 0 while unknown.
    leader: AtomicU32,
}

impl Peers {
    /// The peers of node `self_id` (which must not be in `list`).
    pub fn new(self_id: NodeId, list: Vec<PeerInfo>) -> Self {
        let health = list.iter().map(|p| (p.id, Health::default())).collect();
        Self {
            inner: Arc::new(Inner {
                self_id,
                list,
                health: Mutex::new(health),
                leader: AtomicU32::new(0),
            }),
        }
    }

    /// This node's id.
    pub fn self_id(&self) -> NodeId {
        self.inner.self_id
    }

    /// The other nodes, sorted by id.
    pub fn list(&self) -> &[PeerInfo] {
        &self.inner.list
    }

    /// The ids of the other nodes, sorted.
    pub fn ids(&self) -> Vec<NodeId> {
        self.inner.list.iter().map(|p| p.id).collect()
    }

    /// The base URL of a peer.
    pub fn url(&self, id: NodeId) -> Option<&str> {
        self.inner
            .list
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.url.as_str())
    }

    fn with_health<T>(&self, id: NodeId, f: impl FnOnce(&mut Health) -> T) -> Option<T> {
        let mut map = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(&id).map(f)
    }

    /// Records a successful contact with `id`.
    pub fn mark_up(&self, id: NodeId) {
        self.with_health(id, |h| {
            h.up = true;
            h.last_ok = Some(Instant::now());
            h.last_error = None;
        });
    }

    /// Records a failed contact with `id`.
    pub fn mark_down(&self, id: NodeId, error: impl Into<String>) {
        let error = error.into();
        let was_up = self.with_health(id, |h| {
            let was = h.up;
            h.up = false;
            h.last_error = Some(error.clone());
            was
        });
        if was_up == Some(true) {
            tracing::info!(peer = id, %error, "peer is down");
        }
    }

    /// Records the role a peer reported.
    pub fn set_role(&self, id: NodeId, role: Role) {
        self.with_health(id, |h| h.role = Some(role));
    }

    /// Whether the last contact with `id` succeeded.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.with_health(id, |h| h.up).unwrap_or(false)
    }

    /// A copy of one peer's health.
    pub fn health(&self, id: NodeId) -> Option<Health> {
        self.with_health(id, |h| h.clone())
    }

    /// The leader's id, once known (leader-follower mode).
    pub fn leader(&self) -> Option<NodeId> {
        match self.inner.leader.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Records which node leads.
    pub fn set_leader(&self, id: NodeId) {
        self.inner.leader.store(id, Ordering::Relaxed);
    }

    /// Records that no leader is known (an election is under way).
    pub fn clear_leader(&self) {
        self.inner.leader.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_sorted_and_self_is_dropped() {
        let p = parse_peers(" 3=http://h:3/, 1=http://h:1,2=http://h:2 ,", 2).unwrap();
        assert_eq!(
            p,
            vec![
                PeerInfo {
                    id: 1,
                    url: "http://h:1".into()
                },
                PeerInfo {
                    id: 3,
                    url: "http://h:3".into()
                }
            ]
        );
        assert!(parse_peers("", 1).unwrap().is_empty());
    }

    #[test]
    fn bad_peer_entries_are_named() {
        assert!(parse_peers("1http://h", 1)
            .unwrap_err()
            .0
            .contains("1http://h"));
        assert!(parse_peers("x=http://h", 1).unwrap_err().0.contains("`x`"));
        assert!(parse_peers("1=h:1", 2).unwrap_err().0.contains("http://"));
        assert!(parse_peers("1=http://a,1=http://b", 2)
            .unwrap_err()
            .0
            .contains("twice"));
    }

    #[test]
    fn health_follows_the_last_contact() {
        let p = Peers::new(1, parse_peers("2=http://h:2", 1).unwrap());
        assert!(!p.is_up(2));
        p.mark_up(2);
        assert!(p.is_up(2));
        p.mark_down(2, "refused");
        assert_eq!(p.health(2).unwrap().last_error.as_deref(), Some("refused"));
        p.set_role(2, Role::Leader);
        assert_eq!(p.health(2).unwrap().role, Some(Role::Leader));
        p.set_leader(2);
        assert_eq!(p.leader(), Some(2));
        p.clear_leader();
        assert_eq!(p.leader(), None);
    }
}
