//! The dashboard's state, the actions that change it, and the pure reducer.
//!
//! Nothing here touches the browser: time comes in with the actions
//! (`Tick(now)`, `Event { received_at, .. }`), so the whole module is
//! unit-tested natively (`cargo test -p kv-web-ui`).
//!
//! Two clocks meet here. The cluster stamps its events with its wall clock
//! (`at_ms`, `sent_at_ms`, …); the browser has its own. [`ClockSync`] keeps the
//! smallest `browser − cluster` difference seen on arrival (network delay only
//! ever adds to it), which maps cluster time onto browser time.
//!
//! One instant is drawn at a time: [`State::display_ms`], on the cluster's
//! clock. Live, it is real time minus [`PLAYBACK_DELAY_MS`] (so that the
//! events describing a moment have arrived before the moment is drawn); the
//! time controls pause it, slow it down or move it back over the recorded
//! history ([`TimeMode`]). Boxes (the snapshot in force at that instant, from
//! [`State::history`]), moving dots and the timeline all read this one
//! instant, so they always agree.
//!
//! History is the page's own: the first snapshot of a connection may be the
//! serving node's cached one, so it is shown but not recorded; only newer
//! snapshots become history. The page's start ([`State::page_start_ms`]) is
//! the browser time of its first event, on the cluster's clock. Traces of writes that began before it, that
//! failed (503) or that stopped getting acknowledgements are shown as ended
//! ([`State::trace_end`]). Every buffer is bounded (`MAX_*`).

use crate::api::{FetchState, OpOutcome};
use kv_shared::cluster::ClusterConfig;
use kv_shared::events::{
    ClusterEvent, ClusterView, NodeEvent, NodeEventKind, ReadAnswer, ReadTrace, ReplicaTrace,
    ReplicaView, TraceOutcome, WriteTrace,
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
pub const TRACE_KEEP_MS: u64 = HISTORY_MS;
/// How many writes the "recent writes" list keeps at most.
pub const MAX_TRACES: usize = 200;
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
/// How much recorded history the time slider reaches back, in ms.
pub const HISTORY_MS: u64 = 180_000;
/// How many snapshots are kept at most (one per 300 ms over [`HISTORY_MS`]).
pub const MAX_SNAPSHOTS: usize = 700;
/// How many reads are kept at most.
pub const MAX_READS: usize = 120;
/// How many entries the event log keeps at most.
pub const MAX_LOG: usize = 200;
/// A write still missing acknowledgements this long after it started is
/// given up on (the node forgets it after 30 s too), in ms.
pub const GIVE_UP_MS: u64 = 30_000;
/// Drawn flight time of a read-repair message, in ms.
pub const REPAIR_TRAVEL_MS: f64 = 150.0;
/// How long an anti-entropy exchange or a hint hand-off is drawn, in ms.
pub const EXCHANGE_SHOW_MS: f64 = 1_500.0;
/// The slow-motion speeds the time controls offer.
pub const SPEEDS: [f64; 3] = [1.0, 0.25, 0.1];

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

/// What a drawn message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotKind {
    /// A write and its acknowledgement.
    Write,
    /// A read request and its answer.
    Read,
    /// A read repair (the newest copy sent to a replica that was behind).
    Repair,
}

/// A message to draw: which write or read, between which nodes, and where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dot {
    /// The coordinator of the write or read.
    pub from: NodeId,
    /// The replica the message goes to.
    pub to: NodeId,
    /// The trace's id at its coordinator.
    pub trace_id: u64,
    /// Where the message is.
    pub flight: Flight,
    /// What it carries.
    pub kind: DotKind,
}

/// Which instant the page draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeMode {
    /// Real time, [`PLAYBACK_DELAY_MS`] behind.
    Live,
    /// Frozen at a cluster time.
    Paused {
        /// The cluster time shown.
        at: f64,
    },
    /// Replaying recorded history at `speed` from cluster time `from`,
    /// which was shown at browser time `since`; back to live once it
    /// catches up.
    Playing {
        /// Cluster time at `since`.
        from: f64,
        /// Browser time when the replay (re)started.
        since: f64,
    },
}

/// How a write's trace ended, as far as the page knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEnd {
    /// Still in flight (or answered and all acknowledged).
    Open,
    /// Answered 503 or abandoned.
    Failed(TraceOutcome),
    /// It began before this page opened: its beginning was not seen.
    BeforePage,
    /// Acknowledgements stopped coming for [`GIVE_UP_MS`].
    GaveUp,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When (cluster ms).
    pub at_ms: u64,
    /// The node it is about, if one.
    pub node: Option<NodeId>,
    /// Its kind, as the page's `data-kind` names it.
    pub kind: String,
    /// Its term, when a node reported one.
    pub term: Option<kv_shared::Term>,
    /// In words.
    pub text: String,
}

/// A replica-to-replica exchange to draw for a moment (anti-entropy, hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The node that reported it.
    pub from: NodeId,
    /// The other node.
    pub to: NodeId,
    /// Whether it is an anti-entropy round (else a hint hand-off).
    pub anti_entropy: bool,
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
    /// Snapshots received since the page opened, oldest first (last
    /// [`HISTORY_MS`], at most [`MAX_SNAPSHOTS`]). Shared between the
    /// states the reducer makes, so that a tick does not copy it.
    pub history: Rc<VecDeque<ClusterView>>,
    /// Browser time at which the page received its first event.
    pub opened_at: Option<f64>,
    /// Recent coordinated reads, oldest first (at most [`MAX_READS`]).
    pub reads: VecDeque<ReadTrace>,
    /// The event log, oldest first (at most [`MAX_LOG`]).
    pub log: VecDeque<LogEntry>,
    /// Which instant is drawn.
    pub time: TimeMode,
    /// Replay speed (1.0 = real time).
    pub speed: f64,
    /// Events received since the page opened.
    pub received: u64,
    /// Whether the next snapshot is the first of a connection (possibly the
    /// serving node's cached one: shown, not recorded).
    pub awaiting_first_status: bool,
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
            history: Rc::default(),
            opened_at: None,
            reads: VecDeque::new(),
            log: VecDeque::new(),
            time: TimeMode::Live,
            speed: 1.0,
            received: 0,
            awaiting_first_status: true,
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
    /// The feed (re)opened: its first snapshot may be a cached one.
    FeedOpened,
    /// A time control was used at browser time `.1` (ms).
    Time(TimeControl, f64),
}

/// What the time controls ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeControl {
    /// Freeze the drawn instant.
    Pause,
    /// Go on from the drawn instant at the chosen speed.
    Resume,
    /// Back to real time.
    GoLive,
    /// Replay speed (one of [`SPEEDS`]).
    Speed(f64),
    /// Show this cluster time (the slider); pauses.
    Seek(f64),
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
        next.catch_up_with_live();
        let moving = !matches!(next.time, TimeMode::Paused { .. });
        if next.link == self.link
            && next.time == self.time
            && (!moving || (!self.is_animating() && !next.is_animating()))
        {
            return self;
        }
        Rc::new(next)
    }

    /// A replay that reached real time becomes live.
    fn catch_up_with_live(&mut self) {
        if let (TimeMode::Playing { .. }, Some(live)) = (self.time, self.live_ms()) {
            if self.display_ms().is_some_and(|t| t >= live) {
                self.time = TimeMode::Live;
            }
        }
    }

    /// The live instant: real time on the cluster clock, minus the delay.
    pub fn live_ms(&self) -> Option<f64> {
        self.clock
            .to_cluster(self.now)
            .map(|t| t - PLAYBACK_DELAY_MS)
    }

    /// The cluster time being drawn (see [`TimeMode`]).
    pub fn display_ms(&self) -> Option<f64> {
        match self.time {
            TimeMode::Live => self.live_ms(),
            TimeMode::Paused { at } => Some(at),
            TimeMode::Playing { from, since } => {
                let t = from + (self.now - since).max(0.0) * self.speed;
                Some(self.live_ms().map_or(t, |l| t.min(l)))
            }
        }
    }

    /// The oldest instant the slider reaches.
    pub fn history_start_ms(&self) -> Option<u64> {
        self.history
            .front()
            .map(|v| v.at_ms)
            .or(self.page_start_ms())
    }

    /// When the page opened, on the cluster's clock (once the clock is known).
    pub fn page_start_ms(&self) -> Option<u64> {
        self.opened_at
            .and_then(|b| self.clock.to_cluster(b))
            .map(|t| t.max(0.0) as u64)
    }

    /// The snapshot in force at the drawn instant (the last one before it;
    /// the oldest one if the instant precedes them all).
    pub fn shown_view(&self) -> Option<&ClusterView> {
        let Some(t) = self.display_ms() else {
            return self.view.as_ref();
        };
        if self.history.is_empty() {
            return self.view.as_ref();
        }
        let i = self.history.partition_point(|v| v.at_ms as f64 <= t);
        self.history.get(i.saturating_sub(1))
    }

    fn set_time(&mut self, control: TimeControl) {
        let shown = self.display_ms();
        match control {
            TimeControl::Pause => {
                if let Some(at) = shown {
                    self.time = TimeMode::Paused { at };
                }
            }
            TimeControl::Resume => {
                if let Some(from) = shown {
                    self.time = TimeMode::Playing {
                        from,
                        since: self.now,
                    };
                    self.catch_up_with_live();
                }
            }
            TimeControl::GoLive => self.time = TimeMode::Live,
            TimeControl::Speed(speed) => {
                self.speed = speed.clamp(0.01, 1.0);
                if let (TimeMode::Live | TimeMode::Playing { .. }, Some(from)) = (self.time, shown)
                {
                    self.time = if self.speed >= 1.0 && self.time == TimeMode::Live {
                        TimeMode::Live
                    } else {
                        TimeMode::Playing {
                            from,
                            since: self.now,
                        }
                    };
                }
            }
            TimeControl::Seek(at) => {
                let lo = self.history_start_ms().map_or(at, |s| s as f64);
                let hi = self.live_ms().unwrap_or(at);
                self.time = TimeMode::Paused {
                    at: at.clamp(lo.min(hi), hi),
                };
            }
        }
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
                self.received += 1;
                self.opened_at.get_or_insert(received_at);
                self.on_event(event, received_at);
            }
            Action::FeedOpened => self.awaiting_first_status = true,
            Action::Time(control, now) => {
                self.now = self.now.max(now);
                self.set_time(control);
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
                let first = std::mem::replace(&mut self.awaiting_first_status, false);
                let newer = self.history.back().is_none_or(|v| view.at_ms > v.at_ms);
                // The first snapshot of a connection may be the node's cached
                // one, seconds old: shown, but neither history nor a clock sample.
                if !first && newer {
                    self.clock.observe(received_at, view.at_ms);
                    self.observe_changes(&view);
                    self.record_lag(&view);
                    self.record_snapshot(&view);
                }
                if newer || self.view.is_none() {
                    self.view = Some(view);
                }
            }
            ClusterEvent::Trace(trace) => {
                self.clock.observe(received_at, trace.at_ms);
                if let Some(o) = trace.outcome {
                    let known = self.traces.iter().any(|t| {
                        t.coordinator == trace.coordinator
                            && t.id == trace.id
                            && t.outcome.is_some()
                    });
                    if !known {
                        self.push_log(LogEntry {
                            at_ms: trace.at_ms,
                            node: Some(trace.coordinator),
                            kind: "write-failed".into(),
                            term: None,
                            text: format!(
                                "503: the write of {} {} at node {} {}",
                                trace.key,
                                crate::lab::version_label(trace.version),
                                trace.coordinator,
                                outcome_words(o)
                            ),
                        });
                    }
                }
                self.merge_trace(trace);
            }
            ClusterEvent::Read(read) => {
                self.clock.observe(received_at, read.at_ms);
                self.record_read(read);
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
            while self.rolled_back.len() > MAX_LOG {
                self.rolled_back.pop_first();
            }
        }
        if !matches!(e.kind, NodeEventKind::PreVote) {
            self.push_log(LogEntry {
                at_ms: e.at_ms,
                node: Some(e.node),
                kind: crate::components::events::kind_name(&e.kind).into(),
                term: (e.term > 0).then_some(e.term),
                text: crate::components::events::describe(&e),
            });
        }
        let at = self
            .node_events
            .partition_point(|x| (x.at_ms, x.node) <= (e.at_ms, e.node));
        self.node_events.insert(at, e);
        while self.node_events.len() > MAX_NODE_EVENTS {
            self.node_events.pop_front();
        }
    }

    /// Adds a line to the event log, in time order, bounded.
    fn push_log(&mut self, entry: LogEntry) {
        let at = self.log.partition_point(|x| x.at_ms <= entry.at_ms);
        self.log.insert(at, entry);
        while self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
    }

    /// Logs what changed since the previous snapshot: replicas down or up
    /// again, the configuration.
    fn observe_changes(&mut self, view: &ClusterView) {
        let Some(prev) = self.history.back().cloned() else {
            for r in view.replicas.iter().filter(|r| !r.up) {
                self.push_log(LogEntry {
                    at_ms: view.at_ms,
                    node: Some(r.id),
                    kind: "down".into(),
                    term: None,
                    text: format!(
                        "node {} is down when the page opens ({})",
                        r.id,
                        r.error.as_deref().unwrap_or("no answer")
                    ),
                });
            }
            return;
        };
        for r in &view.replicas {
            let was = prev.replicas.iter().find(|p| p.id == r.id).map(|p| p.up);
            let (kind, text) = match (was, r.up) {
                (Some(true), false) => (
                    "down",
                    format!(
                        "node {} stopped answering ({})",
                        r.id,
                        r.error.as_deref().unwrap_or("no answer")
                    ),
                ),
                (Some(false), true) => ("up", format!("node {} answers again", r.id)),
                _ => continue,
            };
            self.push_log(LogEntry {
                at_ms: view.at_ms,
                node: Some(r.id),
                kind: kind.into(),
                term: None,
                text,
            });
        }
        if prev.config.w != view.config.w || prev.config.r != view.config.r {
            self.push_log(LogEntry {
                at_ms: view.at_ms,
                node: Some(view.observer),
                kind: "config-change".into(),
                term: None,
                text: format!(
                    "W/R changed from W={} R={} to W={} R={}",
                    prev.config.w, prev.config.r, view.config.w, view.config.r
                ),
            });
        } else if prev.config.delay_profile != view.config.delay_profile {
            self.push_log(LogEntry {
                at_ms: view.at_ms,
                node: Some(view.observer),
                kind: "config-change".into(),
                term: None,
                text: format!(
                    "delay profile now send {} ms, ack {} ms",
                    view.config.delay_profile.send_ms, view.config.delay_profile.ack_ms
                ),
            });
        }
    }

    /// Keeps the snapshot for the time slider (bounded).
    fn record_snapshot(&mut self, view: &ClusterView) {
        let history = Rc::make_mut(&mut self.history);
        history.push_back(view.clone());
        while history.len() > MAX_SNAPSHOTS
            || history
                .front()
                .is_some_and(|v| v.at_ms + HISTORY_MS < view.at_ms)
        {
            history.pop_front();
        }
    }

    /// Keeps a read (once), logs it if it failed.
    fn record_read(&mut self, read: ReadTrace) {
        let same = |r: &ReadTrace| r.coordinator == read.coordinator && r.id == read.id;
        if self.reads.iter().any(same) {
            return;
        }
        if let Some(o) = read.outcome {
            self.push_log(LogEntry {
                at_ms: read.finished_at_ms,
                node: Some(read.coordinator),
                kind: "read-failed".into(),
                term: None,
                text: format!(
                    "503: the read of {} at node {} {}",
                    read.key,
                    read.coordinator,
                    outcome_words(o)
                ),
            });
        }
        let at = self
            .reads
            .partition_point(|r| r.started_at_ms <= read.started_at_ms);
        self.reads.insert(at, read);
        while self.reads.len() > MAX_READS {
            self.reads.pop_front();
        }
    }

    /// How `t` ended, as known at cluster time `at`.
    pub fn trace_end(&self, t: &WriteTrace, at: f64) -> TraceEnd {
        match t.outcome {
            Some(o) if at >= t.at_ms as f64 => return TraceEnd::Failed(o),
            _ => {}
        }
        if self.page_start_ms().is_some_and(|p| t.started_at_ms < p) {
            return TraceEnd::BeforePage;
        }
        let unacked = !t.settled();
        if unacked && at - t.started_at_ms as f64 > GIVE_UP_MS as f64 {
            return TraceEnd::GaveUp;
        }
        TraceEnd::Open
    }

    /// The writes as known at the drawn instant, oldest first: those that
    /// had started, with only the stamps reached by then, and how each ended.
    pub fn timeline(&self) -> Vec<(WriteTrace, TraceEnd)> {
        let Some(t) = self.display_ms() else {
            return Vec::new();
        };
        self.traces
            .iter()
            .filter(|tr| tr.started_at_ms as f64 <= t)
            .map(|tr| (as_of(tr, t), self.trace_end(tr, t)))
            .collect()
    }

    /// The reads that had ended by the drawn instant, oldest first.
    pub fn reads_shown(&self) -> Vec<&ReadTrace> {
        let Some(t) = self.display_ms() else {
            return Vec::new();
        };
        self.reads
            .iter()
            .filter(|r| r.finished_at_ms as f64 <= t)
            .collect()
    }

    /// Anti-entropy rounds and hint hand-offs within the last
    /// [`EXCHANGE_SHOW_MS`] of the drawn instant.
    pub fn exchanges(&self) -> Vec<Exchange> {
        let Some(t) = self.display_ms() else {
            return Vec::new();
        };
        self.node_events
            .iter()
            .filter(|e| (e.at_ms as f64) <= t && t < e.at_ms as f64 + EXCHANGE_SHOW_MS)
            .filter_map(|e| match e.kind {
                NodeEventKind::AntiEntropy { peer, .. } => Some(Exchange {
                    from: e.node,
                    to: peer,
                    anti_entropy: true,
                }),
                NodeEventKind::HintsDelivered { to, .. } => Some(Exchange {
                    from: e.node,
                    to,
                    anti_entropy: false,
                }),
                _ => None,
            })
            .collect()
    }

    /// Votes granted within the last [`VOTE_SHOW_MS`] of playback time.
    pub fn votes(&self) -> Vec<Vote> {
        let Some(t) = self.display_ms() else {
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
        self.traces.retain(|t| t.at_ms >= horizon || !t.settled());
        let excess = self.traces.len().saturating_sub(MAX_TRACES);
        self.traces.drain(..excess);
    }

    /// The messages in flight at the drawn instant: writes and their acks
    /// (a write that ended stops waiting for the missing ones), reads and
    /// their answers, read repairs.
    pub fn dots(&self) -> Vec<Dot> {
        let Some(t) = self.display_ms() else {
            return Vec::new();
        };
        let mut dots: Vec<Dot> = self
            .traces
            .iter()
            .filter(|tr| tr.started_at_ms as f64 <= t)
            .flat_map(|trace| {
                let open = self.trace_end(trace, t) == TraceEnd::Open;
                trace
                    .replicas
                    .iter()
                    .filter(move |r| open || r.acked_at_ms.is_some())
                    .filter_map(move |r| {
                        flight(r, t).map(|flight| Dot {
                            from: trace.coordinator,
                            to: r.id,
                            trace_id: trace.id,
                            flight,
                            kind: DotKind::Write,
                        })
                    })
            })
            .collect();
        for read in &self.reads {
            dots.extend(read_dots(read, t));
        }
        dots
    }

    /// The coordinators whose write was answered within the last
    /// [`COMMIT_FLASH_MS`] of playback time.
    pub fn flashing(&self) -> Vec<NodeId> {
        let Some(t) = self.display_ms() else {
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
        matches!(self.time, TimeMode::Playing { .. })
            || !self.dots().is_empty()
            || !self.flashing().is_empty()
            || !self.votes().is_empty()
            || !self.exchanges().is_empty()
    }

    /// The latest lag sample of a replica.
    pub fn current_lag(&self, id: NodeId) -> Option<LagSample> {
        self.lag.get(&id).and_then(|s| s.back().copied())
    }

    /// The replicas the drawn snapshot shows down.
    pub fn down_replicas(&self) -> Vec<NodeId> {
        self.shown_view()
            .iter()
            .flat_map(|v| v.replicas.iter().filter(|r| !r.up).map(|r| r.id))
            .collect()
    }
}

/// What a trace's outcome says, in words.
pub fn outcome_words(o: TraceOutcome) -> String {
    match o {
        TraceOutcome::Failed { acked, required } => {
            format!("failed: {acked} of {required} replicas in time")
        }
        TraceOutcome::Abandoned => "failed: the leader stepped down first".to_owned(),
        TraceOutcome::NoLeader => "failed: no current leader among the answers".to_owned(),
    }
}

/// A trace as known at cluster time `at`: the stamps after it removed.
pub fn as_of(t: &WriteTrace, at: f64) -> WriteTrace {
    let by = |s: Option<u64>| s.filter(|&s| s as f64 <= at);
    WriteTrace {
        committed_at_ms: by(t.committed_at_ms),
        replicas: t
            .replicas
            .iter()
            .map(|r| ReplicaTrace {
                id: r.id,
                sent_at_ms: by(r.sent_at_ms),
                acked_at_ms: by(r.acked_at_ms).filter(|_| by(r.sent_at_ms).is_some()),
                failed_at_ms: by(r.failed_at_ms),
            })
            .collect(),
        outcome: t.outcome.filter(|_| t.at_ms as f64 <= at),
        ..t.clone()
    }
}

/// The messages of one read at cluster time `t`: each request out and its
/// answer back (half way each), then the repairs.
pub fn read_dots(read: &ReadTrace, t: f64) -> Vec<Dot> {
    let mut dots = Vec::new();
    let me = read.coordinator;
    for r in read.replicas.iter().filter(|r| r.id != me) {
        let answered = match r.answer {
            ReadAnswer::Failed => None,
            ReadAnswer::NotNeeded => Some(read.finished_at_ms),
            _ => r.answered_at_ms,
        };
        let as_write = ReplicaTrace {
            id: r.id,
            sent_at_ms: Some(r.asked_at_ms),
            acked_at_ms: answered.or(Some(read.finished_at_ms.max(r.asked_at_ms + 1))),
            failed_at_ms: None,
        };
        if let Some(flight) = flight(&as_write, t) {
            dots.push(Dot {
                from: me,
                to: r.id,
                trace_id: read.id,
                flight,
                kind: DotKind::Read,
            });
        }
    }
    let done = read.finished_at_ms as f64;
    if t >= done && t < done + REPAIR_TRAVEL_MS {
        for &to in read.repaired.iter().filter(|&&id| id != me) {
            dots.push(Dot {
                from: me,
                to,
                trace_id: read.id,
                flight: Flight::Out((t - done) / REPAIR_TRAVEL_MS),
                kind: DotKind::Repair,
            });
        }
    }
    dots
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
                failed_at_ms: o.failed_at_ms.or(r.failed_at_ms),
            },
            None => *r,
        })
        .collect();
    WriteTrace {
        committed_at_ms: old.committed_at_ms.or(new.committed_at_ms),
        outcome: new.outcome.or(old.outcome),
        at_ms: old.at_ms.max(new.at_ms),
        replicas,
        ..new
    }
}

/// Where the message of one write to one replica is at cluster time `t`.
pub fn flight(r: &ReplicaTrace, t: f64) -> Option<Flight> {
    let sent = r.sent_at_ms? as f64;
    if t < sent || r.failed_at_ms.is_some_and(|f| t >= f as f64) {
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
    let entries = r.progress.lag_entries.or_else(|| {
        leader_seq
            .zip(r.applied_seq)
            .map(|(l, s)| l.saturating_sub(s))
    });
    (entries.unwrap_or(0), r.progress.lag_ms.unwrap_or(0))
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
            progress: Default::default(),
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
                    failed_at_ms: None,
                })
                .collect(),
            outcome: None,
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
            failed_at_ms: None,
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
        // A send given up on (leaderless: a hint kept instead) stops waiting.
        let failed = ReplicaTrace {
            failed_at_ms: Some(2_000),
            ..pending
        };
        assert_eq!(flight(&failed, 1_500.0), Some(Flight::Waiting));
        assert_eq!(flight(&failed, 2_000.0), None);
    }

    #[test]
    fn dots_are_played_behind_real_time_on_the_cluster_clock() {
        // The browser clock is 10 s ahead of the cluster's.
        let s = Rc::new(State::default());
        // The first snapshot of a connection may be a cached one: no clock sample.
        let s = event(
            s,
            ClusterEvent::Status(view(500, &[(2, 10, true)])),
            11_000.0,
        );
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
        let late = trace(
            99,
            1_000 + MAX_TRACES as u64 + TRACE_KEEP_MS + 100,
            &[(2, None, None)],
        );
        let s = event(s, ClusterEvent::Trace(late), 0.0);
        assert_eq!(s.traces.len(), 1, "acked writes older than the horizon go");
    }

    #[test]
    fn lag_is_what_the_leader_reports_or_the_seq_difference() {
        let mut v = view(1_000, &[(2, 7, true), (3, 10, true)]);
        assert_eq!(replica_lag(&v, &v.replicas[0]), (0, 0));
        assert_eq!(replica_lag(&v, &v.replicas[1]), (3, 0));
        v.replicas[2].progress.lag_entries = Some(2);
        v.replicas[2].progress.lag_ms = Some(450);
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

    /// Two snapshots: the first (cached) one is shown but not recorded.
    fn opened(at_ms: u64, follower_seqs: &[(NodeId, u64, bool)]) -> Rc<State> {
        let s = Rc::new(State::default());
        let s = event(
            s,
            ClusterEvent::Status(view(at_ms.saturating_sub(30_000), follower_seqs)),
            at_ms as f64,
        );
        event(
            s,
            ClusterEvent::Status(view(at_ms, follower_seqs)),
            at_ms as f64,
        )
    }

    #[test]
    fn a_pages_history_starts_at_its_first_live_sample() {
        // The node's cached snapshot, 30 s old, showed node 2 behind and node 3 down.
        let s = Rc::new(State::default());
        let stale = view(0, &[(2, 2, true), (3, 0, false)]);
        let s = event(s, ClusterEvent::Status(stale), 30_000.0);
        assert!(s.view.is_some(), "shown at once");
        assert!(s.lag.is_empty() && s.history.is_empty(), "but not history");
        assert_eq!(s.page_start_ms(), None, "no clock sample yet");
        assert_eq!(s.clock.offset(), None, "nor a clock sample");
        let s = event(
            s,
            ClusterEvent::Status(view(30_000, &[(2, 10, true), (3, 10, true)])),
            30_010.0,
        );
        assert_eq!(
            s.page_start_ms(),
            Some(29_990),
            "its first event, on the cluster clock"
        );
        assert_eq!(s.lag[&2].len(), 1);
        assert!(s
            .lag
            .values()
            .all(|l| l.iter().all(|x| x.entries == 0 && x.up)));
        assert!(s.log.is_empty(), "no outage this page saw");
        // A cached snapshot sent again after a reconnection is not history either.
        let s = reduce(s, Action::FeedOpened);
        let s = event(
            s,
            ClusterEvent::Status(view(29_000, &[(3, 0, false)])),
            31_000.0,
        );
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.view.as_ref().unwrap().at_ms, 30_000);
    }

    #[test]
    fn writes_that_will_not_complete_end_as_such() {
        let s = opened(10_000, &[(2, 10, true), (3, 10, true)]);
        // Began before the page: its ack from node 3 will never be seen.
        let before = trace(
            1,
            9_000,
            &[(2, Some(9_001), Some(9_002)), (3, Some(9_001), None)],
        );
        // Answered 503 with 1 of 3.
        let mut failed = trace(
            2,
            10_100,
            &[(2, Some(10_101), None), (3, Some(10_101), None)],
        );
        failed.committed_at_ms = None;
        failed.w = 3;
        failed.outcome = Some(TraceOutcome::Failed {
            acked: 1,
            required: 3,
        });
        failed.at_ms = 12_100;
        let open = trace(3, 10_200, &[(2, Some(10_201), None)]);
        let mut s = event(s, ClusterEvent::Trace(before), 10_000.0);
        for t in [open, failed] {
            let at = t.at_ms as f64;
            s = event(s, ClusterEvent::Trace(t), at);
        }
        let s = reduce(s, Action::Tick(12_500.0 + PLAYBACK_DELAY_MS));
        let ends: Vec<TraceEnd> = s.timeline().into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            ends,
            vec![
                TraceEnd::BeforePage,
                TraceEnd::Failed(TraceOutcome::Failed {
                    acked: 1,
                    required: 3
                }),
                TraceEnd::Open
            ]
        );
        let waiting: Vec<u64> = s.dots().iter().map(|d| d.trace_id).collect();
        assert_eq!(waiting, vec![3], "only the open write still waits for acks");
        assert_eq!(s.log.back().unwrap().kind, "write-failed");
        // 30 s later nobody expects node 2's ack for write 3 any more.
        let s = reduce(
            s,
            Action::Tick(10_200.0 + GIVE_UP_MS as f64 + PLAYBACK_DELAY_MS + 1.0),
        );
        assert_eq!(s.timeline()[2].1, TraceEnd::GaveUp);
    }

    #[test]
    fn pause_freezes_the_instant_and_resume_goes_on_slowly() {
        let s = opened(10_000, &[(2, 10, true)]);
        let s = reduce(s, Action::Time(TimeControl::Pause, 11_000.0));
        let t0 = s.display_ms().unwrap();
        assert_eq!(t0, 11_000.0 - PLAYBACK_DELAY_MS);
        // Time passes and a newer snapshot arrives: the picture stays.
        let s = event(
            s,
            ClusterEvent::Status(view(11_500, &[(2, 12, true)])),
            11_500.0,
        );
        let s = reduce(s, Action::Tick(13_000.0));
        assert_eq!(s.display_ms(), Some(t0));
        assert_eq!(s.shown_view().unwrap().at_ms, 10_000);
        let same = reduce(s.clone(), Action::Tick(13_040.0));
        assert!(
            Rc::ptr_eq(&s, &same),
            "a paused page does not re-render on ticks"
        );
        // Resume at 1/4 speed: 400 ms of real time show 100 ms of history.
        let s = reduce(s, Action::Time(TimeControl::Speed(0.25), 13_000.0));
        let s = reduce(s, Action::Time(TimeControl::Resume, 13_000.0));
        let s = reduce(s, Action::Tick(13_400.0));
        assert_eq!(s.display_ms(), Some(t0 + 100.0));
        assert!(matches!(s.time, TimeMode::Playing { .. }));
        // At 1x it reaches the newer snapshot, and catches up with live.
        let s = reduce(s, Action::Time(TimeControl::Speed(1.0), 13_400.0));
        let s = reduce(s, Action::Tick(13_400.0 + 800.0));
        assert_eq!(s.shown_view().unwrap().at_ms, 11_500);
        let s = reduce(s, Action::Time(TimeControl::GoLive, 14_200.0));
        assert_eq!(s.time, TimeMode::Live);
    }

    #[test]
    fn the_slider_shows_a_recorded_instant_and_its_messages() {
        let s = opened(10_000, &[(2, 10, true)]);
        let s = event(
            s,
            ClusterEvent::Status(view(10_300, &[(2, 11, true)])),
            10_300.0,
        );
        let t = trace(7, 10_100, &[(2, Some(10_100), Some(10_300))]);
        let s = event(s, ClusterEvent::Trace(t), 10_300.0);
        let s = reduce(s, Action::Tick(20_000.0));
        assert!(s.dots().is_empty(), "live: long delivered");
        let s = reduce(s, Action::Time(TimeControl::Seek(10_150.0), 20_000.0));
        assert_eq!(s.display_ms(), Some(10_150.0));
        assert_eq!(s.shown_view().unwrap().at_ms, 10_000);
        let dots = s.dots();
        assert_eq!((dots.len(), dots[0].flight), (1, Flight::Out(0.5)));
        let (row, _) = &s.timeline()[0];
        assert_eq!(
            row.replicas[0].acked_at_ms, None,
            "the ack had not come back yet"
        );
        // Before the recorded history: clamped to its start.
        let s = reduce(s, Action::Time(TimeControl::Seek(0.0), 20_000.0));
        assert_eq!(s.display_ms(), Some(10_000.0));
    }

    #[test]
    fn a_read_is_drawn_to_its_replicas_and_back_then_its_repair() {
        use kv_shared::events::ReadReplicaTrace;
        let answer = |id, answered: Option<u64>, answer| ReadReplicaTrace {
            id,
            asked_at_ms: 1_000,
            answered_at_ms: answered,
            answer,
        };
        let read = ReadTrace {
            id: 1,
            key: "k".into(),
            coordinator: 1,
            r: 3,
            started_at_ms: 1_000,
            finished_at_ms: 1_100,
            replicas: vec![
                answer(1, Some(1_000), ReadAnswer::Version { version: 5 }),
                answer(2, Some(1_100), ReadAnswer::Version { version: 5 }),
                answer(3, Some(1_040), ReadAnswer::Missing),
            ],
            winner: Some(5),
            repaired: vec![3],
            outcome: None,
            at_ms: 1_100,
        };
        let kinds = |t: f64| {
            read_dots(&read, t)
                .iter()
                .map(|d| (d.to, d.kind, d.flight))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(1_025.0),
            vec![
                (2, DotKind::Read, Flight::Out(0.5)),
                (3, DotKind::Read, Flight::Back(0.25))
            ]
        );
        assert_eq!(kinds(1_175.0), vec![(3, DotKind::Repair, Flight::Out(0.5))]);
        assert!(kinds(1_300.0).is_empty());
    }
}
