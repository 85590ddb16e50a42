//! The dashboard's state, the actions that change it, and the pure reducer.
//!
//! Nothing here touches the browser: time comes in with the actions
//! (`Tick(now)`, `Event { received_at, .. }`), so the whole module is
//! unit-tested natively (`cargo test -p kv-web-ui`).
//!
//! Two clocks meet here. The cluster stamps its events with its wall clock
//! (`at_ms`, `sent_at_ms`, …); the browser has its own. [`ClockSync`] keeps the
//! smallest `browser − cluster` difference seen on arrival (network delay only
//! ever adds to it), which maps cluster time onto browser time. Animations are
//! played [`PLAYBACK_DELAY_MS`] behind real time so that the events describing
//! a moment have arrived before that moment is drawn.

use crate::api::{FetchState, OpOutcome};
use kv_shared::cluster::ClusterConfig;
use kv_shared::events::{
    ClusterEvent, ClusterView, NodeEvent, NodeEventKind, ReplicaTrace, ReplicaView, WriteTrace,
};
use kv_shared::{HealthResponse, NodeId, Role, Version};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use yew::Reducible;

/// How much history the lag charts keep, in ms of cluster time.
pub const LAG_WINDOW_MS: u64 = 60_000;
/// How far behind real time write animations are played, in ms.
pub const PLAYBACK_DELAY_MS: f64 = 250.0;
/// Drawn flight time of a message whose acknowledgement has not come back yet.
pub const OUT_TRAVEL_MS: f64 = 150.0;
/// How long a finished write stays in the "recent writes" list, in ms.
pub const TRACE_KEEP_MS: u64 = 30_000;
/// How many writes the "recent writes" list keeps at most.
pub const MAX_TRACES: usize = 40;
/// How long a write's commit is highlighted on the coordinator, in ms.
pub const COMMIT_FLASH_MS: f64 = 500.0;
/// After this long without an event the live feed is shown as lost, in ms.
pub const STALE_AFTER_MS: f64 = 2_500.0;
/// How many arrival samples the clock offset estimate keeps.
const CLOCK_SAMPLES: usize = 32;
/// How many replication events (elections, votes, rollbacks…) are kept.
pub const MAX_NODE_EVENTS: usize = 60;
/// How long a granted vote is drawn from the voter to the candidate, in ms.
pub const VOTE_SHOW_MS: f64 = 2_000.0;

/// State of the live feed (`/events`).
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Not connected yet.
    Connecting,
    /// Events arrive.
    Live,
    /// No event for [`STALE_AFTER_MS`]: the node is down or unreachable; the
    /// browser keeps retrying.
    Stale,
    /// The browser gave up on the stream; the message says why.
    Closed(String),
}

/// Maps cluster wall-clock time onto browser time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClockSync {
    samples: VecDeque<f64>,
}

impl ClockSync {
    /// Records that an event stamped `cluster_ms` arrived at `browser_ms`.
    pub fn observe(&mut self, browser_ms: f64, cluster_ms: u64) {
        if self.samples.len() == CLOCK_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(browser_ms - cluster_ms as f64);
    }

    /// `browser − cluster` in ms: the smallest difference seen recently.
    pub fn offset(&self) -> Option<f64> {
        self.samples.iter().copied().reduce(f64::min)
    }

    /// The cluster time that corresponds to `browser_ms`.
    pub fn to_cluster(&self, browser_ms: f64) -> Option<f64> {
        self.offset().map(|o| browser_ms - o)
    }
}

/// One point of a replica's lag history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    /// When the snapshot was taken (cluster ms).
    pub at_ms: u64,
    /// Entries behind the leader.
    pub entries: u64,
    /// Age of the oldest unacknowledged entry, in ms.
    pub ms: u64,
    /// Whether the replica answered.
    pub up: bool,
}

/// Where a replication message is drawn at a given moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flight {
    /// On its way from the coordinator to the replica; 0.0 = at the
    /// coordinator, 1.0 = at the replica.
    Out(f64),
    /// Delivered; the acknowledgement has not come back yet.
    Waiting,
    /// The acknowledgement on its way back; 0.0 = at the replica, 1.0 = at
    /// the coordinator.
    Back(f64),
}

/// A message to draw: which write, between which nodes, and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dot {
    /// The coordinator of the write.
    pub from: NodeId,
    /// The replica the message goes to.
    pub to: NodeId,
    /// The write's id at its coordinator.
    pub trace_id: u64,
    /// Where the message is.
    pub flight: Flight,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The browser time of the last tick or event, in ms.
    pub now: f64,
    /// `/health` of the node that served the page.
    pub health: FetchState<HealthResponse>,
    /// State of the live feed.
    pub link: Link,
    /// Browser time of the last event received.
    pub last_event_at: Option<f64>,
    /// The last cluster snapshot received.
    pub view: Option<ClusterView>,
    /// Cluster-to-browser clock mapping.
    pub clock: ClockSync,
    /// Recent writes, oldest first.
    pub traces: Vec<WriteTrace>,
    /// Lag history per replica (last [`LAG_WINDOW_MS`]).
    pub lag: BTreeMap<NodeId, VecDeque<LagSample>>,
    /// The last operation of the operations panel.
    pub op: Option<FetchState<OpOutcome>>,
    /// The last configuration change: the new configuration or the error.
    pub config_change: Option<FetchState<ClusterConfig>>,
    /// Replication events (elections, votes, step-downs, rollbacks), oldest first.
    pub node_events: VecDeque<NodeEvent>,
    /// Writes some node rolled back: (key, version).
    pub rolled_back: BTreeSet<(String, Version)>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            now: 0.0,
            health: FetchState::Loading,
            link: Link::Connecting,
            last_event_at: None,
            view: None,
            clock: ClockSync::default(),
            traces: Vec::new(),
            lag: BTreeMap::new(),
            op: None,
            config_change: None,
            node_events: VecDeque::new(),
            rolled_back: BTreeSet::new(),
        }
    }
}

/// A granted vote to draw: from the voter to the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// The voter.
    pub voter: NodeId,
    /// The candidate.
    pub candidate: NodeId,
    /// The term.
    pub term: kv_shared::Term,
}

/// What can happen to the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Time passed (browser ms): moves animations, detects a silent feed.
    Tick(f64),
    /// `/health` answered (or failed).
    Health(FetchState<HealthResponse>),
    /// An event of the live feed arrived at browser time `received_at`.
    Event {
        /// The event.
        event: ClusterEvent,
        /// Browser time of arrival, in ms.
        received_at: f64,
    },
    /// The browser closed the live feed for good.
    LinkClosed(String),
    /// The operations panel sent a request.
    OpStarted,
    /// The operations panel's request finished.
    OpFinished(OpOutcome),
    /// The controls sent a configuration change.
    ConfigStarted,
    /// The configuration change finished.
    ConfigFinished(FetchState<ClusterConfig>),
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        if let Action::Tick(now) = action {
            return self.tick(now);
        }
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

impl State {
    /// A tick re-renders only when something on screen moves or changes.
    fn tick(self: Rc<Self>, now: f64) -> Rc<Self> {
        let mut next = (*self).clone();
        next.now = now;
        next.update_link();
        if next.link == self.link && !self.is_animating() && !next.is_animating() {
            return self;
        }
        Rc::new(next)
    }

    /// Applies every action but `Tick`.
    fn apply(&mut self, action: Action) {
        match action {
            Action::Tick(now) => {
                self.now = now;
                self.update_link();
            }
            Action::Health(h) => self.health = h,
            Action::Event { event, received_at } => {
                self.now = self.now.max(received_at);
                self.last_event_at = Some(received_at);
                self.link = Link::Live;
                self.on_event(event, received_at);
            }
            Action::LinkClosed(why) => self.link = Link::Closed(why),
            Action::OpStarted => self.op = Some(FetchState::Loading),
            Action::OpFinished(outcome) => self.op = Some(FetchState::Ready(outcome)),
            Action::ConfigStarted => self.config_change = Some(FetchState::Loading),
            Action::ConfigFinished(result) => {
                if let (FetchState::Ready(c), Some(view)) = (&result, self.view.as_mut()) {
                    view.config = *c;
                }
                self.config_change = Some(result);
            }
        }
    }

    fn update_link(&mut self) {
        if let (Link::Live, Some(last)) = (&self.link, self.last_event_at) {
            if self.now - last > STALE_AFTER_MS {
                self.link = Link::Stale;
            }
        }
    }

    fn on_event(&mut self, event: ClusterEvent, received_at: f64) {
        match event {
            ClusterEvent::Status(view) => {
                self.clock.observe(received_at, view.at_ms);
                self.record_lag(&view);
                self.view = Some(view);
            }
            ClusterEvent::Trace(trace) => {
                self.clock.observe(received_at, trace.at_ms);
                self.merge_trace(trace);
            }
            ClusterEvent::Node(e) => {
                self.clock.observe(received_at, e.at_ms);
                self.record_node_event(e);
            }
        }
    }

    /// Keeps the event (once: relayed copies of an event arrive too) and
    /// remembers rolled-back writes.
    fn record_node_event(&mut self, e: NodeEvent) {
        if self.node_events.contains(&e) {
            return;
        }
        if let NodeEventKind::RolledBack { key, version, .. } = &e.kind {
            self.rolled_back.insert((key.clone(), *version));
        }
        let at = self
            .node_events
            .partition_point(|x| (x.at_ms, x.node) <= (e.at_ms, e.node));
        self.node_events.insert(at, e);
        while self.node_events.len() > MAX_NODE_EVENTS {
            self.node_events.pop_front();
        }
    }

    /// Votes granted within the last [`VOTE_SHOW_MS`] of playback time.
    pub fn votes(&self) -> Vec<Vote> {
        let Some(t) = self.playback_ms() else {
            return Vec::new();
        };
        self.node_events
            .iter()
            .filter(|e| (e.at_ms as f64) <= t && t < e.at_ms as f64 + VOTE_SHOW_MS)
            .filter_map(|e| match e.kind {
                NodeEventKind::Voted { candidate } => Some(Vote {
                    voter: e.node,
                    candidate,
                    term: e.term,
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether some node rolled back this write.
    pub fn is_rolled_back(&self, t: &WriteTrace) -> bool {
        self.rolled_back.contains(&(t.key.clone(), t.version))
    }

    /// Appends one lag sample per replica and forgets samples older than the window.
    fn record_lag(&mut self, view: &ClusterView) {
        for r in &view.replicas {
            let (entries, ms) = replica_lag(view, r);
            let samples = self.lag.entry(r.id).or_default();
            samples.push_back(LagSample {
                at_ms: view.at_ms,
                entries,
                ms,
                up: r.up,
            });
            while samples
                .front()
                .is_some_and(|s| s.at_ms + LAG_WINDOW_MS < view.at_ms)
            {
                samples.pop_front();
            }
        }
        self.lag
            .retain(|id, _| view.replicas.iter().any(|r| r.id == *id));
    }

    /// Replaces the earlier copy of the same write, or adds it; forgets old writes.
    fn merge_trace(&mut self, trace: WriteTrace) {
        let same = |t: &WriteTrace| t.coordinator == trace.coordinator && t.id == trace.id;
        let horizon = trace.at_ms.saturating_sub(TRACE_KEEP_MS);
        match self.traces.iter_mut().find(|t| same(t)) {
            Some(t) => *t = merge(t, trace),
            None => self.traces.push(trace),
        }
        self.traces
            .sort_by_key(|t| (t.started_at_ms, t.coordinator, t.id));
        self.traces
            .retain(|t| t.at_ms >= horizon || !t.fully_acked());
        let excess = self.traces.len().saturating_sub(MAX_TRACES);
        self.traces.drain(..excess);
    }

    /// The cluster time being drawn: real time minus [`PLAYBACK_DELAY_MS`].
    pub fn playback_ms(&self) -> Option<f64> {
        self.clock
            .to_cluster(self.now)
            .map(|t| t - PLAYBACK_DELAY_MS)
    }

    /// The messages in flight at the playback time.
    pub fn dots(&self) -> Vec<Dot> {
        let Some(t) = self.playback_ms() else {
            return Vec::new();
        };
        self.traces
            .iter()
            .flat_map(|trace| {
                trace.replicas.iter().filter_map(move |r| {
                    flight(r, t).map(|flight| Dot {
                        from: trace.coordinator,
                        to: r.id,
                        trace_id: trace.id,
                        flight,
                    })
                })
            })
            .collect()
    }

    /// The coordinators whose write was answered within the last
    /// [`COMMIT_FLASH_MS`] of playback time.
    pub fn flashing(&self) -> Vec<NodeId> {
        let Some(t) = self.playback_ms() else {
            return Vec::new();
        };
        let mut ids: Vec<NodeId> = self
            .traces
            .iter()
            .filter(|tr| {
                tr.committed_at_ms
                    .is_some_and(|c| (c as f64) <= t && t < c as f64 + COMMIT_FLASH_MS)
            })
            .map(|tr| tr.coordinator)
            .collect();
        ids.dedup();
        ids
    }

    /// Whether a tick would move something on screen.
    pub fn is_animating(&self) -> bool {
        !self.dots().is_empty() || !self.flashing().is_empty() || !self.votes().is_empty()
    }

    /// The latest lag sample of a replica.
    pub fn current_lag(&self, id: NodeId) -> Option<LagSample> {
        self.lag.get(&id).and_then(|s| s.back().copied())
    }

    /// The replicas the last snapshot shows down.
    pub fn down_replicas(&self) -> Vec<NodeId> {
        self.view
            .iter()
            .flat_map(|v| v.replicas.iter().filter(|r| !r.up).map(|r| r.id))
            .collect()
    }
}

/// Two copies of one trace, merged: a timestamp once known stays (copies may
/// arrive out of order, or twice when relayed).
pub fn merge(old: &WriteTrace, new: WriteTrace) -> WriteTrace {
    let replicas = new
        .replicas
        .iter()
        .map(|r| match old.replicas.iter().find(|o| o.id == r.id) {
            Some(o) => ReplicaTrace {
                id: r.id,
                sent_at_ms: o.sent_at_ms.or(r.sent_at_ms),
                acked_at_ms: o.acked_at_ms.or(r.acked_at_ms),
            },
            None => *r,
        })
        .collect();
    WriteTrace {
        committed_at_ms: old.committed_at_ms.or(new.committed_at_ms),
        at_ms: old.at_ms.max(new.at_ms),
        replicas,
        ..new
    }
}

/// Where the message of one write to one replica is at cluster time `t`.
pub fn flight(r: &ReplicaTrace, t: f64) -> Option<Flight> {
    let sent = r.sent_at_ms? as f64;
    if t < sent {
        return None;
    }
    match r.acked_at_ms.map(|a| a as f64) {
        Some(acked) if t >= acked => None,
        Some(acked) => {
            let mid = (sent + acked) / 2.0;
            if t < mid {
                Some(Flight::Out((t - sent) / (mid - sent)))
            } else {
                Some(Flight::Back(((t - mid) / (acked - mid)).min(1.0)))
            }
        }
        None if t - sent < OUT_TRAVEL_MS => Some(Flight::Out((t - sent) / OUT_TRAVEL_MS)),
        None => Some(Flight::Waiting),
    }
}

/// A replica's lag: what the leader reports, else the difference between the
/// leader's applied position and the replica's. Zero for the leader itself,
/// for leaderless peers, and for replicas that report nothing.
pub fn replica_lag(view: &ClusterView, r: &ReplicaView) -> (u64, u64) {
    if r.role == Role::Leader {
        return (0, 0);
    }
    let leader_seq = view
        .leader
        .and_then(|l| view.replicas.iter().find(|x| x.id == l))
        .and_then(|l| l.applied_seq);
    let entries = r.lag_entries.or_else(|| {
        leader_seq
            .zip(r.applied_seq)
            .map(|(l, s)| l.saturating_sub(s))
    });
    (entries.unwrap_or(0), r.lag_ms.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OpAnswer, OpKind, OpRequest};
    use kv_shared::cluster::DelayProfile;
    use kv_shared::Mode;

    fn replica(id: NodeId, role: Role, seq: u64, up: bool) -> ReplicaView {
        ReplicaView {
            id,
            url: format!("http://127.0.0.1:{}", 8080 + id),
            role,
            up,
            applied_seq: up.then_some(seq),
            keys: up.then_some(seq),
            term: None,
            commit_seq: None,
            catching_up: false,
            rolled_back: None,
            lag_entries: None,
            lag_ms: None,
            pending_hints: None,
            config: None,
            error: (!up).then(|| "connection refused".into()),
            faults: Vec::new(),
        }
    }

    fn view(at_ms: u64, follower_seqs: &[(NodeId, u64, bool)]) -> ClusterView {
        let mut replicas = vec![replica(1, Role::Leader, 10, true)];
        replicas.extend(
            follower_seqs
                .iter()
                .map(|&(id, seq, up)| replica(id, Role::Follower, seq, up)),
        );
        ClusterView {
            at_ms,
            observer: 1,
            mode: Mode::LeaderFollower,
            leader: Some(1),
            config: ClusterConfig::new(5, 3, 3, DelayProfile::OFF).unwrap(),
            replicas,
        }
    }

    fn trace(id: u64, started: u64, replicas: &[(NodeId, Option<u64>, Option<u64>)]) -> WriteTrace {
        WriteTrace {
            id,
            seq: Some(id),
            key: format!("k{id}"),
            version: 1,
            coordinator: 1,
            w: 1,
            started_at_ms: started,
            committed_at_ms: Some(started),
            replicas: replicas
                .iter()
                .map(|&(id, sent_at_ms, acked_at_ms)| ReplicaTrace {
                    id,
                    sent_at_ms,
                    acked_at_ms,
                })
                .collect(),
            at_ms: started,
        }
    }

    fn reduce(state: Rc<State>, action: Action) -> Rc<State> {
        state.reduce(action)
    }

    fn event(state: Rc<State>, event: ClusterEvent, received_at: f64) -> Rc<State> {
        reduce(state, Action::Event { event, received_at })
    }

    #[test]
    fn clock_offset_is_the_smallest_difference_seen() {
        let mut c = ClockSync::default();
        assert_eq!(c.to_cluster(5.0), None);
        c.observe(1_050.0, 1_000);
        c.observe(2_020.0, 2_000);
        c.observe(3_090.0, 3_000);
        assert_eq!(c.offset(), Some(20.0));
        assert_eq!(c.to_cluster(4_020.0), Some(4_000.0));
    }

    #[test]
    fn a_message_goes_out_half_way_then_its_ack_comes_back() {
        let r = ReplicaTrace {
            id: 2,
            sent_at_ms: Some(1_000),
            acked_at_ms: Some(1_400),
        };
        assert_eq!(flight(&r, 999.0), None);
        assert_eq!(flight(&r, 1_100.0), Some(Flight::Out(0.5)));
        assert_eq!(flight(&r, 1_300.0), Some(Flight::Back(0.5)));
        assert_eq!(flight(&r, 1_400.0), None);
        let pending = ReplicaTrace {
            acked_at_ms: None,
            ..r
        };
        assert_eq!(flight(&pending, 1_075.0), Some(Flight::Out(0.5)));
        assert_eq!(flight(&pending, 9_000.0), Some(Flight::Waiting));
        let unsent = ReplicaTrace {
            sent_at_ms: None,
            ..pending
        };
        assert_eq!(flight(&unsent, 9_000.0), None);
    }

    #[test]
    fn dots_are_played_behind_real_time_on_the_cluster_clock() {
        // The browser clock is 10 s ahead of the cluster's.
        let s = Rc::new(State::default());
        let s = event(
            s,
            ClusterEvent::Status(view(1_000, &[(2, 10, true)])),
            11_000.0,
        );
        let t = trace(1, 1_000, &[(2, Some(1_000), Some(1_200))]);
        let s = event(s, ClusterEvent::Trace(t), 11_001.0);
        // Playback at cluster time 1_050: the message is a quarter of the way out.
        let s = reduce(s, Action::Tick(11_000.0 + 50.0 + PLAYBACK_DELAY_MS));
        let dots = s.dots();
        assert_eq!(dots.len(), 1);
        assert_eq!((dots[0].from, dots[0].to), (1, 2));
        assert_eq!(dots[0].flight, Flight::Out(0.5));
        assert_eq!(s.flashing(), vec![1], "the write was answered 50 ms ago");
    }

    #[test]
    fn ticks_without_animation_do_not_re_render() {
        let s = Rc::new(State::default());
        let s = event(
            s,
            ClusterEvent::Status(view(1_000, &[(2, 10, true)])),
            1_000.0,
        );
        let same = reduce(s.clone(), Action::Tick(1_100.0));
        assert!(Rc::ptr_eq(&s, &same));
        // …until the feed has been silent long enough to be called lost.
        let stale = reduce(s.clone(), Action::Tick(1_000.0 + STALE_AFTER_MS + 1.0));
        assert!(!Rc::ptr_eq(&s, &stale));
        assert_eq!(stale.link, Link::Stale);
        let live = event(stale, ClusterEvent::Status(view(5_000, &[])), 5_000.0);
        assert_eq!(live.link, Link::Live);
    }

    #[test]
    fn a_newer_copy_of_a_trace_replaces_the_older() {
        let s = Rc::new(State::default());
        let s = event(
            s,
            ClusterEvent::Trace(trace(1, 1_000, &[(2, Some(1_001), None)])),
            0.0,
        );
        let s = event(
            s,
            ClusterEvent::Trace(trace(2, 1_010, &[(2, None, None)])),
            0.0,
        );
        let mut newer = trace(1, 1_000, &[(2, Some(1_001), Some(1_100))]);
        newer.at_ms = 1_100;
        let s = event(s, ClusterEvent::Trace(newer.clone()), 0.0);
        assert_eq!(s.traces.len(), 2);
        assert_eq!(s.traces[0], newer);
        // An older copy arriving late takes nothing away.
        let s = event(
            s,
            ClusterEvent::Trace(trace(1, 1_000, &[(2, Some(1_001), None)])),
            0.0,
        );
        assert_eq!(s.traces[0], newer);
    }

    #[test]
    fn old_fully_acked_traces_are_forgotten() {
        let mut s = Rc::new(State::default());
        for i in 0..(MAX_TRACES as u64 + 5) {
            let t = trace(i, 1_000 + i, &[(2, Some(1_000 + i), Some(1_001 + i))]);
            s = event(s, ClusterEvent::Trace(t), 0.0);
        }
        assert_eq!(s.traces.len(), MAX_TRACES);
        assert_eq!(s.traces[0].id, 5);
        let late = trace(99, 1_000 + TRACE_KEEP_MS + 100, &[(2, None, None)]);
        let s = event(s, ClusterEvent::Trace(late), 0.0);
        assert_eq!(s.traces.len(), 1, "acked writes older than the horizon go");
    }

    #[test]
    fn lag_is_what_the_leader_reports_or_the_seq_difference() {
        let mut v = view(1_000, &[(2, 7, true), (3, 10, true)]);
        assert_eq!(replica_lag(&v, &v.replicas[0]), (0, 0));
        assert_eq!(replica_lag(&v, &v.replicas[1]), (3, 0));
        v.replicas[2].lag_entries = Some(2);
        v.replicas[2].lag_ms = Some(450);
        assert_eq!(replica_lag(&v, &v.replicas[2]), (2, 450));
    }

    #[test]
    fn lag_history_keeps_one_minute_and_marks_down_replicas() {
        let mut s = Rc::new(State::default());
        for i in 0..=130u64 {
            let behind = if i < 120 { 5 } else { 10 };
            let v = view(i * 1_000, &[(2, behind, true), (3, 10, i < 125)]);
            s = event(s, ClusterEvent::Status(v), i as f64 * 1_000.0);
        }
        let lag2 = &s.lag[&2];
        assert_eq!(lag2.len(), 61);
        assert_eq!(lag2.front().unwrap().at_ms, 70_000);
        assert_eq!(s.current_lag(2).unwrap().entries, 0, "caught up");
        assert_eq!(lag2[40].entries, 5, "was behind");
        assert!(!s.current_lag(3).unwrap().up);
        assert_eq!(s.down_replicas(), vec![3]);
    }

    #[test]
    fn results_of_operations_and_config_changes_are_kept() {
        let s = Rc::new(State::default());
        let s = event(s, ClusterEvent::Status(view(1_000, &[])), 0.0);
        let s = reduce(s, Action::OpStarted);
        assert_eq!(s.op, Some(FetchState::Loading));
        let outcome = OpOutcome {
            request: OpRequest {
                kind: OpKind::Get,
                node: 2,
                key: "k".into(),
                value: String::new(),
            },
            status: Some(404),
            latency_ms: 1.5,
            answer: OpAnswer::Refused(kv_shared::ErrorBody::new("key not found: k")),
        };
        let s = reduce(s, Action::OpFinished(outcome.clone()));
        assert_eq!(s.op, Some(FetchState::Ready(outcome)));
        let c = ClusterConfig::new(5, 1, 5, DelayProfile::ASSIGNMENT).unwrap();
        let s = reduce(s, Action::ConfigFinished(FetchState::Ready(c)));
        assert_eq!(s.view.as_ref().unwrap().config, c);
        let s = reduce(
            s,
            Action::ConfigFinished(FetchState::Failed("w must be…".into())),
        );
        assert_eq!(
            s.view.as_ref().unwrap().config,
            c,
            "a refused change changes nothing"
        );
    }

    #[test]
    fn votes_show_for_a_while_and_rollbacks_mark_their_writes() {
        // A vote is drawn from the voter to the candidate for VOTE_SHOW_MS of
        // playback time; a relayed copy of an event is kept once; a rolled-back
        // write is marked by (key, version).
        let s = Rc::new(State::default());
        let s = event(s, ClusterEvent::Status(view(10_000, &[])), 10_000.0);
        let voted = NodeEvent {
            node: 3,
            at_ms: 10_100,
            term: 7,
            kind: NodeEventKind::Voted { candidate: 2 },
        };
        let s = event(s, ClusterEvent::Node(voted.clone()), 10_100.0);
        let s = event(s, ClusterEvent::Node(voted), 10_120.0);
        assert_eq!(s.node_events.len(), 1, "a relayed copy is not kept twice");
        let s = reduce(s, Action::Tick(10_100.0 + PLAYBACK_DELAY_MS + 10.0));
        assert_eq!(
            s.votes(),
            vec![Vote {
                voter: 3,
                candidate: 2,
                term: 7
            }]
        );
        let s = reduce(
            s,
            Action::Tick(10_100.0 + PLAYBACK_DELAY_MS + VOTE_SHOW_MS + 1.0),
        );
        assert!(s.votes().is_empty());
        let rolled = NodeEvent {
            node: 1,
            at_ms: 10_200,
            term: 7,
            kind: NodeEventKind::RolledBack {
                key: "k5".into(),
                version: 1,
                index: 5,
                acknowledged: true,
            },
        };
        let s = event(s, ClusterEvent::Trace(trace(5, 9_990, &[])), 10_190.0);
        let s = event(s, ClusterEvent::Node(rolled), 10_200.0);
        assert!(s.is_rolled_back(&s.traces[0]));
    }
}
