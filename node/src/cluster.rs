//! The cluster a node belongs to: its identity, its peers, the transport to
//! them, and the live configuration (W, R, delay profile).
//!
//! Both replication modes share this context. The configuration is a
//! [`ConfigEnvelope`]: `POST /config` on any node stamps a change with the
//! next epoch, applies it and pushes it to every peer (`POST
//! /internal/config`); a node keeps the greatest envelope it has seen. A peer
//! that was down during a change learns it later, because the leader attaches
//! its envelope to every replication message (leaderless nodes can do the same
//! with theirs).

use crate::config::{ClusterSpec, Config};
use crate::events::EventHub;
use crate::faults::Faults;
use crate::peers::Peers;
use crate::reads::batch::{PeerReads, ReadBatcher};
use crate::transport::{SendPacer, Transport};
use kv_shared::cluster::{
    ClusterConfig, ConfigError, ConfigUpdate, DelayProfile, PeerStatus, Progress,
};
use kv_shared::replication::ConfigEnvelope;
use kv_shared::{Mode, NodeId, Role};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// A cheap, cloneable handle to the node's cluster context.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: ClusterSpec,
    peers: Peers,
    transport: Transport,
    pacer: SendPacer,
    /// Read or replaced whole; never held across `.await`.
    settings: RwLock<ConfigEnvelope>,
    peer_timeout: Duration,
    write_timeout: Duration,
    heartbeat: Duration,
    /// The dashboard's live feed (write traces, cluster snapshots).
    events: EventHub,
    /// Faults injected into this node's transport.
    faults: Faults,
    /// The queues of coordinated reads' asks to peers.
    reads: ReadBatcher,
    /// Set, and its waiters woken, when the node stops.
    stopped: AtomicBool,
    halt: Notify,
}

impl Cluster {
    /// The context of a node started with `config`.
    ///
    /// # Errors
    /// When the flags do not describe a valid cluster (see [`Config::cluster_spec`]).
    pub fn from_config(
        config: &Config,
        secret: Option<crate::security::Secret>,
    ) -> Result<Self, crate::config::FlagError> {
        let spec = config.cluster_spec()?;
        let peers = Peers::new(spec.node_id, spec.peers.clone());
        let faults = Faults::default();
        let envelope = ConfigEnvelope {
            config: spec.config,
            epoch: 0,
            origin: 0,
        };
        let transport = Transport::new(peers.clone(), faults.clone(), secret);
        Ok(Self {
            inner: Arc::new(Inner {
                reads: ReadBatcher::new(
                    Arc::new(PeerReads::new(
                        transport.clone(),
                        &peers.ids(),
                        config.read_batches_in_flight as usize,
                    )),
                    config.peer_timeout(),
                    config.read_batches_in_flight as usize,
                ),
                stopped: AtomicBool::new(false),
                halt: Notify::new(),
                transport,
                faults,
                peers,
                pacer: SendPacer::default(),
                settings: RwLock::new(envelope),
                peer_timeout: config.peer_timeout(),
                write_timeout: config.write_timeout(),
                heartbeat: config.heartbeat(),
                events: EventHub::new(config.max_event_streams as usize),
                spec,
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.spec.node_id
    }

    /// How peers reach this node.
    pub fn self_url(&self) -> &str {
        &self.inner.spec.self_url
    }

    /// How the cluster replicates.
    pub fn mode(&self) -> Mode {
        self.inner.spec.mode
    }

    /// The role the flags give this node: in leader-follower mode only a
    /// hint for the first term (`--role leader` campaigns first); the role
    /// in force is the replication runtime's.
    pub fn role(&self) -> Role {
        self.inner.spec.role
    }

    /// The faults injected into this node's transport.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The other nodes and their health.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// The client to the other nodes.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The queues that batch coordinated reads' asks to peers.
    pub fn read_batcher(&self) -> &ReadBatcher {
        &self.inner.reads
    }

    /// Ends what serves peers beyond the server's own requests (the peer
    /// streams it serves, of every kind, see [`crate::peer_stream`]) and
    /// closes this node's idle reads streams to them: the node stops.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.halt.notify_waiters();
        self.inner.reads.close();
    }

    /// Completes once [`Cluster::stop`] was called.
    pub async fn stopped(&self) {
        let halt = self.inner.halt.notified();
        tokio::pin!(halt);
        halt.as_mut().enable();
        if !self.inner.stopped.load(Ordering::Relaxed) {
            halt.await;
        }
    }

    /// The pacer of replication sends (delay profile).
    pub fn pacer(&self) -> &SendPacer {
        &self.inner.pacer
    }

    /// Timeout of one call to a peer.
    pub fn peer_timeout(&self) -> Duration {
        self.inner.peer_timeout
    }

    /// How long a write waits for its quorum.
    pub fn write_timeout(&self) -> Duration {
        self.inner.write_timeout
    }

    /// Heartbeat and probe interval.
    pub fn heartbeat(&self) -> Duration {
        self.inner.heartbeat
    }

    /// The dashboard's live feed, where replication reports its writes.
    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    /// The configuration in force with its stamp.
    pub fn envelope(&self) -> ConfigEnvelope {
        *self
            .inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration in force.
    pub fn config(&self) -> ClusterConfig {
        self.envelope().config
    }

    /// The delay profile in force.
    pub fn delays(&self) -> DelayProfile {
        self.config().delay_profile
    }

    /// Keeps `incoming` if it supersedes the current envelope (a change made
    /// elsewhere). Returns the envelope in force afterwards.
    pub fn merge_envelope(&self, incoming: ConfigEnvelope) -> ConfigEnvelope {
        let mut cur = self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if incoming.is_newer_than(&cur) && incoming.config.n == cur.config.n {
            tracing::info!(
                w = incoming.config.w,
                r = incoming.config.r,
                epoch = incoming.epoch,
                origin = incoming.origin,
                "configuration changed"
            );
            *cur = incoming;
        }
        *cur
    }

    /// Replaces the configuration in force, keeping its stamp (leader-follower
    /// mode, where the replicated log orders changes and this is only what
    /// the rest of the node reads).
    pub fn set_config(&self, config: ClusterConfig) {
        let mut cur = self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        cur.config = config;
    }

    /// Applies a change made on this node, stamped with the next epoch.
    ///
    /// # Errors
    /// When the result would be invalid (W or R outside 1..=N); nothing changes then.
    pub fn apply_update(&self, update: &ConfigUpdate) -> Result<ConfigEnvelope, ConfigError> {
        let mut cur = self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let config = cur.config.with(update)?;
        *cur = ConfigEnvelope {
            config,
            epoch: cur.epoch + 1,
            origin: self.node_id(),
        };
        Ok(*cur)
    }

    /// Pushes `envelope` to every peer and waits (bounded by the peer
    /// timeout) for their answers. Returns the ids that did not take it;
    /// they will learn it later (see the module docs).
    pub async fn broadcast_config(&self, envelope: ConfigEnvelope) -> Vec<NodeId> {
        let mut set = tokio::task::JoinSet::new();
        for id in self.peers().ids() {
            let t = self.transport().clone();
            let timeout = self.peer_timeout();
            set.spawn(async move {
                let r: Result<ConfigEnvelope, _> = t
                    .post(
                        id,
                        kv_shared::replication::INTERNAL_CONFIG_PATH,
                        &envelope,
                        timeout,
                    )
                    .await;
                (id, r.is_ok())
            });
        }
        let mut missed = Vec::new();
        while let Some(Ok((id, ok))) = set.join_next().await {
            if !ok {
                missed.push(id);
            }
        }
        missed.sort_unstable();
        missed
    }

    /// The role a peer plays, as far as this node knows.
    pub fn peer_role(&self, id: NodeId) -> Role {
        match self.mode() {
            Mode::Standalone => Role::Standalone,
            Mode::Leaderless => Role::Peer,
            Mode::LeaderFollower if self.peers().leader() == Some(id) => Role::Leader,
            Mode::LeaderFollower => Role::Follower,
        }
    }

    /// The `/status` line of every peer, sorted by id, with the
    /// mode-specific fields empty (the replication module fills them).
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers()
            .list()
            .iter()
            .map(|p| PeerStatus {
                id: p.id,
                url: p.url.clone(),
                role: self.peer_role(p.id),
                up: self.peers().is_up(p.id),
                acked_seq: None,
                progress: Progress::default(),
            })
            .collect()
    }
}
