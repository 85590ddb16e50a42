//! The nemesis: faults injected on a schedule while the load runs, through
//! each node's fault API (`POST /admin/faults`, behind the admin token;
//! see [`kv_shared::admin`]) — and, for clusters the load tester started
//! itself ([`crate::cluster::LocalCluster`]), real `SIGKILL`s and restarts.
//!
//! # Schedule
//! `--nemesis` takes a comma-separated list of faults, each
//! `FAULT@START[+DURATION]`:
//!
//! | fault | effect on the target node | undone after DURATION (default 5 s) by |
//! | --- | --- | --- |
//! | `partition:ID` | cut from every peer, both ways (clients still reach it) | `heal` on the node |
//! | `oneway:ID` | its messages to every peer are lost; theirs still arrive | `heal` |
//! | `pause:ID` | stops answering anything (clients and peers) | the node itself, at the end of the pause |
//! | `kill:ID` | crashes (`SIGKILL` when the tester started it, else the fault API's `crash`) | a restart (empty) — only for nodes the tester started |
//! | `delay:ID=MS` | every message to and from its peers waits MS ms (e.g. `delay:2=300ms`) | `heal` |
//! | `drop:ID=P` | each message to and from its peers is lost with probability P (`drop:3=0.3`) | `heal` |
//! | `skew:ID=±MS` | its clock runs MS ms ahead (or behind); leaderless only | `heal` |
//! | `heal` | every fault of every node is healed (killed nodes the tester started are restarted) | — |
//!
//! `ID` is a node id or `leader` (the node the nodes' `/status` names
//! leader of the highest term when the fault starts); `partition-leader`,
//! `pause-leader` and `kill-leader` are short for `…:leader`. Times take
//! `ms` or `s` (`5s`, `1.5s`, `800ms`). Example:
//! `partition-leader@5s+8s,kill:2@15s,skew:3=+300ms@20s`.
//!
//! `random` (or `random:SEED`) draws a schedule instead: from 2 s into the
//! run until 2 s before its end, one fault at a time, 1–4 s long, with 1–3 s
//! of calm between faults; kinds fitting the mode (skew in leaderless mode,
//! kill only for clusters the tester started). The same seed and duration
//! give the same schedule, printed before the run.
//!
//! At the end of the load every fault still active is undone and every
//! killed node the tester started is restarted, so that the read-back sees
//! the whole cluster. Every fault lands in the run's history
//! ([`FaultRecord`], from injection to undo) and on the report's time axis.

use crate::cluster::LocalCluster;
use crate::error::{Error, Result};
use crate::history::{FaultRecord, Micros};
use crate::targets::{choose_leader, probe_statuses, Node};
use kv_shared::admin::{Direction, FaultRequest, FAULTS_PATH};
use kv_shared::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A cluster the load tester started and may kill and restart, shared with the nemesis.
pub type SharedCluster = Arc<tokio::sync::Mutex<LocalCluster>>;

/// Default duration of a fault without `+DURATION`.
pub const DEFAULT_FAULT: Duration = Duration::from_secs(5);
/// How long one fault API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The leader when the fault starts.
    Leader,
    /// This node.
    Node(NodeId),
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Cut from every peer, both ways.
    Partition,
    /// Its outgoing messages to every peer are lost.
    OneWay,
    /// Stops answering.
    Pause,
    /// Crashes.
    Kill,
    /// Messages to and from peers wait this many ms.
    Delay(u64),
    /// Messages to and from peers are lost with this probability.
    Drop(f64),
    /// Its clock is this many ms ahead (negative: behind).
    Skew(i64),
    /// Heals every node.
    Heal,
}

impl Action {
    /// The name in schedules and in the history.
    pub fn name(self) -> &'static str {
        match self {
            Action::Partition => "partition",
            Action::OneWay => "oneway",
            Action::Pause => "pause",
            Action::Kill => "kill",
            Action::Delay(_) => "delay",
            Action::Drop(_) => "drop",
            Action::Skew(_) => "skew",
            Action::Heal => "heal",
        }
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When it starts, after the start of the load.
    pub at: Duration,
    /// What it does.
    pub action: Action,
    /// Whom it hits (ignored by [`Action::Heal`]).
    pub target: Target,
    /// How long it lasts.
    pub duration: Duration,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target {
            Target::Leader => "leader".to_string(),
            Target::Node(id) => id.to_string(),
        };
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        match self.action {
            Action::Heal => return write!(f, "heal@{}", ms(self.at)),
            Action::Delay(d) => write!(f, "delay:{target}={d}ms")?,
            Action::Drop(p) => write!(f, "drop:{target}={p}")?,
            Action::Skew(s) => write!(f, "skew:{target}={s:+}ms")?,
            a => write!(f, "{}:{target}", a.name())?,
        }
        write!(f, "@{}+{}", ms(self.at), ms(self.duration))
    }
}

/// A list of faults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    /// The faults, by start time.
    pub steps: Vec<Step>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.steps.iter().map(Step::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// What `--nemesis` said: a schedule, or a seed to draw one from.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// These faults.
    Fixed(Schedule),
    /// A random schedule from this seed.
    Random(u64),
}

/// Parses `--nemesis` (see the module docs).
///
/// # Errors
/// A message naming the part that does not parse.
pub fn parse(spec: &str) -> std::result::Result<Spec, String> {
    let spec = spec.trim();
    if spec == "random" {
        return Ok(Spec::Random(1));
    }
    if let Some(seed) = spec.strip_prefix("random:") {
        return seed
            .parse()
            .map(Spec::Random)
            .map_err(|_| format!("`{seed}` is not a seed (a whole number)"));
    }
    let mut steps = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        steps.push(parse_step(item).map_err(|e| format!("`{item}`: {e}"))?);
    }
    if steps.is_empty() {
        return Err("no fault given (e.g. partition-leader@5s+8s)".into());
    }
    steps.sort_by_key(|s| s.at);
    Ok(Spec::Fixed(Schedule { steps }))
}

fn parse_step(item: &str) -> std::result::Result<Step, String> {
    let (fault, when) = item
        .split_once('@')
        .ok_or("no start time (write FAULT@START, e.g. kill:2@15s)")?;
    let (at, duration) = match when.split_once('+') {
        Some((at, d)) => (parse_time(at)?, Some(parse_time(d)?)),
        None => (parse_time(when)?, None),
    };
    let (name, arg) = match fault.split_once('=') {
        Some((n, a)) => (n, Some(a)),
        None => (fault, None),
    };
    let (kind, target) = match name {
        "partition-leader" | "pause-leader" | "kill-leader" => {
            (name.trim_end_matches("-leader"), Some("leader"))
        }
        _ => match name.split_once(':') {
            Some((k, t)) => (k, Some(t)),
            None => (name, None),
        },
    };
    let target = match (kind, target) {
        ("heal", None) => Target::Leader,
        ("heal", Some(_)) => return Err("heal takes no node: it heals every node".into()),
        (_, None) => return Err(format!("`{kind}` needs a node: {kind}:ID or {kind}:leader")),
        (_, Some("leader")) => Target::Leader,
        (_, Some(id)) => match id.parse::<NodeId>() {
            Ok(id) if id >= 1 => Target::Node(id),
            _ => return Err(format!("`{id}` is not a node id or `leader`")),
        },
    };
    let need = |what: &str| arg.ok_or_else(|| format!("`{kind}` needs {what}"));
    let no_arg = |a: Action| match arg {
        Some(_) => Err(format!("`{kind}` takes no `=` argument")),
        None => Ok(a),
    };
    let action = match kind {
        "partition" => no_arg(Action::Partition)?,
        "oneway" => no_arg(Action::OneWay)?,
        "pause" => no_arg(Action::Pause)?,
        "kill" => no_arg(Action::Kill)?,
        "heal" => no_arg(Action::Heal)?,
        "delay" => Action::Delay(parse_time(need("=MS (e.g. delay:2=300ms)")?)?.as_millis() as u64),
        "drop" => {
            let p = need("=P (a probability, e.g. drop:2=0.3)")?;
            match p.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Action::Drop(p),
                _ => return Err(format!("`{p}` is not a probability between 0 and 1")),
            }
        }
        "skew" => {
            let s = need("=±MS (e.g. skew:3=+300ms)")?;
            let (sign, rest) = match s.as_bytes().first() {
                Some(b'-') => (-1, &s[1..]),
                Some(b'+') => (1, &s[1..]),
                _ => (1, s),
            };
            let ms = i64::try_from(parse_time(rest)?.as_millis()).map_err(|_| "skew too large")?;
            Action::Skew(sign * ms)
        }
        other => {
            return Err(format!(
                "unknown fault `{other}` (partition, oneway, pause, kill, delay, drop, skew, heal)"
            ))
        }
    };
    Ok(Step {
        at,
        action,
        target,
        duration: duration.unwrap_or(DEFAULT_FAULT),
    })
}

/// `5s`, `1.5s`, `800ms` (a bare number is seconds).
fn parse_time(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale <= 86_400.0 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!("`{s}` is not a time (e.g. 5s or 800ms)")),
    }
}

/// What a random schedule may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomScope {
    /// Node ids, 1..=n.
    pub n: u32,
    /// Leaderless mode: clock skew is possible, there is no leader to aim at.
    pub leaderless: bool,
    /// The tester started the nodes: kill (and restart) is possible.
    pub can_restart: bool,
}

/// A random schedule over a load of `duration` (see the module docs).
pub fn random_schedule(seed: u64, duration: Duration, scope: RandomScope) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut at = Duration::from_secs(2);
    let end = duration.saturating_sub(Duration::from_secs(2));
    let n = scope.n.max(1);
    // Bounded: every step advances `at` by at least 2 s.
    while at + Duration::from_secs(1) <= end && steps.len() < 10_000 {
        let length = Duration::from_millis(rng.random_range(1000..=4000)).min(end - at);
        let mut kinds = vec!["partition", "oneway", "pause", "delay", "drop"];
        if scope.leaderless {
            kinds.push("skew");
        }
        if scope.can_restart {
            kinds.push("kill");
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let target = if !scope.leaderless && rng.random_bool(0.5) {
            Target::Leader
        } else {
            Target::Node(rng.random_range(1..=n))
        };
        let action = match kind {
            "partition" => Action::Partition,
            "oneway" => Action::OneWay,
            "pause" => Action::Pause,
            "kill" => Action::Kill,
            "delay" => Action::Delay(rng.random_range(50..=500)),
            "drop" => Action::Drop(rng.random_range(2..=8) as f64 / 10.0),
            _ => Action::Skew(rng.random_range(-500..=500)),
        };
        steps.push(Step {
            at,
            action,
            target,
            duration: length,
        });
        at += length + Duration::from_millis(rng.random_range(1000..=3000));
    }
    Schedule { steps }
}

/// Injects faults into one cluster.
#[derive(Clone)]
pub struct Nemesis {
    client: reqwest::Client,
    /// Every node: id and URL.
    nodes: Vec<(NodeId, String)>,
    token: Option<String>,
    cluster: Option<SharedCluster>,
    started: Instant,
    records: Arc<Mutex<Vec<FaultRecord>>>,
}

/// A fault in force, to undo.
struct Injected {
    record: usize,
    node: NodeId,
    action: Action,
}

impl Nemesis {
    /// A nemesis for `nodes` (each must have an id: nodes found from
    /// `/status`), calling the fault API with `token`; `cluster`, when the
    /// tester started the nodes, kills and restarts them for real. Fault
    /// times count from `started` (the start of the load).
    ///
    /// # Errors
    /// A node without an id.
    pub fn new(
        client: reqwest::Client,
        nodes: &[Node],
        token: Option<String>,
        cluster: Option<SharedCluster>,
        started: Instant,
    ) -> Result<Self> {
        let nodes = nodes
            .iter()
            .map(|n| {
                n.id.map(|id| (id, n.url.clone())).ok_or_else(|| {
                    Error::Config(format!(
                        "--nemesis needs node ids from /status; {} did not say its id",
                        n.url
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Nemesis {
            client,
            nodes,
            token,
            cluster,
            started,
            records: Arc::default(),
        })
    }

    /// Checks that the schedule fits the cluster: node ids exist, and a
    /// token is there when the fault API is needed.
    ///
    /// # Errors
    /// What does not fit.
    pub fn check(&self, schedule: &Schedule) -> Result<()> {
        for step in &schedule.steps {
            if let Target::Node(id) = step.target {
                if step.action != Action::Heal && !self.nodes.iter().any(|(n, _)| *n == id) {
                    return Err(Error::Config(format!(
                        "--nemesis names node {id}, which is not in the cluster"
                    )));
                }
            }
            let api = !(step.action == Action::Kill && self.cluster.is_some());
            if api && self.token.is_none() {
                return Err(Error::Config(format!(
                    "--nemesis `{step}` needs the fault API: pass --admin-token (or ADMIN_TOKEN) \
                     with the nodes' admin token"
                )));
            }
        }
        Ok(())
    }

    fn now_us(&self) -> Micros {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs `schedule` until every fault was injected and undone, or until
    /// `stop` fires (the load ended): then every active fault is undone at
    /// once. Returns the faults, by start time.
    pub async fn run(
        self,
        schedule: Schedule,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<FaultRecord> {
        let mut tasks = JoinSet::new();
        for step in schedule.steps {
            let (me, mut stop) = (self.clone(), stop.clone());
            tasks.spawn(async move {
                let start = me.started + step.at;
                tokio::select! {
                    _ = tokio::time::sleep_until(start) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Some(injected) = me.inject(&step).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(start + step.duration) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                me.undo(injected).await;
            });
        }
        // Bounded: each task ends at its fault's end or at `stop`.
        while tasks.join_next().await.is_some() {}
        let _ = stop.wait_for(|s| *s).await;
        let mut records =
            std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()));
        records.sort_by_key(|r| r.at_us);
        records
    }

    fn record(&self, kind: &str, nodes: Vec<NodeId>, detail: String) -> usize {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.push(FaultRecord {
            at_us: self.now_us(),
            until_us: None,
            kind: kind.into(),
            nodes,
            detail,
        });
        records.len() - 1
    }

    fn close(&self, record: usize, note: Option<&str>) {
        let now = self.now_us();
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = records.get_mut(record) {
            r.until_us = Some(now);
            if let Some(note) = note {
                r.detail = format!("{} ({note})", r.detail);
            }
        }
    }

    /// The leader of the highest term the nodes name, if any.
    async fn leader(&self) -> Option<NodeId> {
        let urls: Vec<String> = self.nodes.iter().map(|(_, u)| u.clone()).collect();
        let probes = probe_statuses(&self.client, &urls, Duration::from_millis(500)).await;
        let nodes: Vec<Node> = self
            .nodes
            .iter()
            .map(|(id, url)| Node {
                id: Some(*id),
                url: url.clone(),
                role: None,
            })
            .collect();
        let choice = choose_leader(&nodes, &probes)?;
        self.nodes.get(choice.index).map(|(id, _)| *id)
    }

    /// The leader, asked every 100 ms for up to 3 s (an election may be on).
    async fn wait_for_leader(&self) -> Option<NodeId> {
        for _ in 0..30 {
            if let Some(id) = self.leader().await {
                return Some(id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn url(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, u)| u.as_str())
    }

    fn peers_of(&self, id: NodeId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != id)
            .collect()
    }

    /// `POST /admin/faults` on node `id`.
    async fn call(&self, id: NodeId, req: &FaultRequest) -> std::result::Result<(), String> {
        let url = self.url(id).ok_or_else(|| format!("no node {id}"))?;
        let mut call = self
            .client
            .post(format!("{url}{FAULTS_PATH}"))
            .json(req)
            .timeout(CALL_TIMEOUT);
        if let Some(t) = &self.token {
            call = call.bearer_auth(t);
        }
        match call.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn inject(&self, step: &Step) -> Option<Injected> {
        if step.action == Action::Heal {
            let at = self.record(
                "heal",
                self.nodes.iter().map(|(n, _)| *n).collect(),
                "heal every node".into(),
            );
            self.heal_all().await;
            self.close(at, None);
            return None;
        }
        let id = match step.target {
            Target::Node(id) => id,
            Target::Leader => match self.wait_for_leader().await {
                Some(id) => id,
                None => {
                    let r = self.record(
                        step.action.name(),
                        Vec::new(),
                        format!("{step}: no leader to aim at, skipped"),
                    );
                    self.close(r, None);
                    return None;
                }
            },
        };
        let peers = self.peers_of(id);
        let ms = step.duration.as_millis() as u64;
        let (req, detail) = match step.action {
            Action::Partition => (
                FaultRequest::Cut {
                    peers,
                    direction: Direction::Both,
                },
                format!("node {id} cut from every peer"),
            ),
            Action::OneWay => (
                FaultRequest::Cut {
                    peers,
                    direction: Direction::Outgoing,
                },
                format!("node {id}'s messages to its peers lost (one-way)"),
            ),
            Action::Pause => (
                FaultRequest::Pause {
                    duration_ms: ms.max(1),
                },
                format!("node {id} paused for {ms} ms"),
            ),
            Action::Kill => (FaultRequest::Crash, format!("node {id} killed")),
            Action::Delay(d) => (
                FaultRequest::Delay {
                    peers,
                    ms: d,
                    direction: Direction::Both,
                },
                format!("node {id}'s messages delayed {d} ms"),
            ),
            Action::Drop(p) => (
                FaultRequest::Drop {
                    peers,
                    probability: p,
                    direction: Direction::Both,
                },
                format!("node {id} drops {:.0} % of its messages", p * 100.0),
            ),
            Action::Skew(s) => (
                FaultRequest::Skew { ms: s },
                format!("node {id}'s clock {s:+} ms"),
            ),
            Action::Heal => unreachable!("handled above"),
        };
        let record = self.record(step.action.name(), vec![id], detail);
        let result = match (step.action, &self.cluster) {
            (Action::Kill, Some(cluster)) => cluster
                .lock()
                .await
                .kill(id)
                .await
                .map_err(|e| e.to_string()),
            _ => self.call(id, &req).await,
        };
        if let Err(e) = result {
            self.close(record, Some(&format!("failed: {e}")));
            eprintln!("nemesis: {step} on node {id} failed: {e}");
            return None;
        }
        Some(Injected {
            record,
            node: id,
            action: step.action,
        })
    }

    async fn undo(&self, f: Injected) {
        let note = match f.action {
            // The node ends its pause itself.
            Action::Pause => None,
            Action::Kill => match &self.cluster {
                Some(cluster) => match cluster.lock().await.restart(f.node).await {
                    Ok(()) => Some("restarted empty".to_string()),
                    Err(e) => Some(format!("restart failed: {e}")),
                },
                None => Some("not restarted: the load tester did not start it".to_string()),
            },
            _ => self
                .call(f.node, &FaultRequest::Heal)
                .await
                .err()
                .map(|e| format!("heal failed: {e}")),
        };
        self.close(f.record, note.as_deref());
    }

    /// Heals every node, and restarts every killed node the tester started.
    pub async fn heal_all(&self) {
        if let Some(cluster) = &self.cluster {
            let mut c = cluster.lock().await;
            for (id, _) in &self.nodes {
                if c.pid(*id).is_none() {
                    if let Err(e) = c.restart(*id).await {
                        eprintln!("nemesis: restarting node {id} failed: {e}");
                    }
                }
            }
        }
        if self.token.is_some() {
            for (id, _) in &self.nodes {
                let _ = self.call(*id, &FaultRequest::Heal).await;
            }
        }
    }
}

/// The schedule `spec` stands for in a load of `duration`.
pub fn schedule_of(spec: &Spec, duration: Duration, scope: RandomScope) -> Schedule {
    match spec {
        Spec::Fixed(s) => s.clone(),
        Spec::Random(seed) => random_schedule(*seed, duration, scope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_schedule_parses() {
        let Spec::Fixed(s) = parse("partition-leader@5s+8s,kill:2@15s,skew:3=+300ms@20s").unwrap()
        else {
            panic!("not fixed")
        };
        assert_eq!(
            s.steps,
            vec![
                Step {
                    at: Duration::from_secs(5),
                    action: Action::Partition,
                    target: Target::Leader,
                    duration: Duration::from_secs(8)
                },
                Step {
                    at: Duration::from_secs(15),
                    action: Action::Kill,
                    target: Target::Node(2),
                    duration: DEFAULT_FAULT
                },
                Step {
                    at: Duration::from_secs(20),
                    action: Action::Skew(300),
                    target: Target::Node(3),
                    duration: DEFAULT_FAULT
                },
            ]
        );
        // Printing and parsing again gives the same schedule.
        assert_eq!(parse(&s.to_string()).unwrap(), Spec::Fixed(s));
    }

    #[test]
    fn every_fault_kind_parses_and_bad_ones_say_why() {
        let Spec::Fixed(s) = parse(
            "oneway:1@1s+2s, pause:leader@800ms, delay:2=300ms@3s, drop:4=0.25@4s, skew:5=-1.5s@5s, heal@6s",
        )
        .unwrap() else {
            panic!()
        };
        let actions: Vec<Action> = s.steps.iter().map(|s| s.action).collect();
        assert_eq!(
            actions,
            vec![
                Action::Pause,
                Action::OneWay,
                Action::Delay(300),
                Action::Drop(0.25),
                Action::Skew(-1500),
                Action::Heal
            ]
        );
        assert_eq!(parse("random:42").unwrap(), Spec::Random(42));
        for (bad, says) in [
            ("kill:2", "no start time"),
            ("kill@2s", "needs a node"),
            ("kill:x@2s", "not a node id"),
            ("drop:2=1.5@1s", "probability"),
            ("delay:2@1s", "needs =MS"),
            ("explode:1@1s", "unknown fault"),
            ("pause:1=3@1s", "takes no"),
            ("kill:1@soon", "not a time"),
            ("heal:1@1s", "takes no node"),
            ("", "no fault"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn random_schedules_are_seeded_bounded_and_fit_the_mode() {
        let scope = RandomScope {
            n: 5,
            leaderless: false,
            can_restart: false,
        };
        let d = Duration::from_secs(60);
        let a = random_schedule(7, d, scope);
        assert_eq!(a, random_schedule(7, d, scope));
        assert_ne!(a, random_schedule(8, d, scope));
        assert!(a.steps.len() >= 5, "{a}");
        let mut end = Duration::ZERO;
        for s in &a.steps {
            assert!(s.at >= end, "faults overlap: {a}");
            end = s.at + s.duration;
            assert!(end <= d - Duration::from_secs(2), "{a}");
            assert!(!matches!(s.action, Action::Kill | Action::Skew(_)), "{a}");
            if let Target::Node(id) = s.target {
                assert!((1..=5).contains(&id));
            }
        }
        let ll = random_schedule(
            7,
            d,
            RandomScope {
                leaderless: true,
                can_restart: true,
                ..scope
            },
        );
        assert!(ll.steps.iter().all(|s| s.target != Target::Leader));
        assert!(random_schedule(1, Duration::from_secs(3), scope)
            .steps
            .is_empty());
    }
}
