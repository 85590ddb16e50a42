//! Faults injected into this node (the nemesis): pauses, cut, delayed or
//! dropped messages to and from chosen peers (one way or both), and a
//! skewed clock. `POST /admin/faults` sets them (see [`kv_shared::admin`]),
//! behind the admin token; the load tester's `--nemesis` and the dashboard
//! drive it.
//!
//! Everything happens where the node sends and receives, not in the kernel,
//! so it works for nodes that share one loopback address:
//! - **outgoing** (this node's requests to a peer, in [`crate::transport`],
//!   and its answers to a peer's requests, in
//!   [`crate::internal::refuse_cut_peers`]): a cut fails the call at once as
//!   if the peer were unreachable, a drop loses it with the given
//!   probability, a delay holds it first;
//! - **incoming** (a peer's requests, which name their sender in the signed
//!   [`FROM_HEADER`]): a cut or drop refuses them as if they never arrived,
//!   a delay holds them before they are handled;
//! - a **pause** holds every request the node receives (but
//!   `/admin/faults`), every message it sends and its replication ticks
//!   until the pause ends or is healed — what a stopped process looks like
//!   from outside;
//! - a **skew** shifts the clock that leaderless versions and clock checks
//!   read.
//!
//! Every change is logged, shown on the dashboard as a node event, and
//! listed in `/status` (`faults`).

use kv_shared::admin::{ActiveFault, Direction, FaultRequest, MAX_FAULT_MS, MAX_SKEW_MS};
use kv_shared::NodeId;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Header every node-to-node request carries: the sending node's id.
pub use kv_shared::replication::FROM_HEADER;

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// It goes through, after `Duration` (zero: at once).
    Pass(Duration),
    /// It is cut (a partition).
    Cut,
    /// It is lost (a drop fault struck).
    Dropped,
}

/// The faults on messages with one peer, in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Link {
    cut: bool,
    delay_ms: u64,
    drop: f64,
}

impl Link {
    fn fate(&self) -> Fate {
        if self.cut {
            Fate::Cut
        } else if self.drop > 0.0 && rand::rng().random_bool(self.drop.clamp(0.0, 1.0)) {
            Fate::Dropped
        } else {
            Fate::Pass(Duration::from_millis(self.delay_ms))
        }
    }

    fn is_clear(&self) -> bool {
        *self == Link::default()
    }
}

#[derive(Debug, Default)]
struct Links {
    to: BTreeMap<NodeId, Link>,
    from: BTreeMap<NodeId, Link>,
}

impl Links {
    fn edit(&mut self, peers: &[NodeId], direction: Direction, f: impl Fn(&mut Link)) {
        for &p in peers {
            if direction.outgoing() {
                f(self.to.entry(p).or_default());
            }
            if direction.incoming() {
                f(self.from.entry(p).or_default());
            }
        }
        self.to.retain(|_, l| !l.is_clear());
        self.from.retain(|_, l| !l.is_clear());
    }
}

#[derive(Debug)]
struct Inner {
    /// Locked for microseconds; never held across `.await`.
    links: Mutex<Links>,
    /// When the pause in force ends (`None`: not paused). Waiters watch it.
    paused_until: watch::Sender<Option<Instant>>,
    skew_ms: AtomicI64,
    injected: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            links: Mutex::default(),
            paused_until: watch::channel(None).0,
            skew_ms: AtomicI64::new(0),
            injected: AtomicU64::new(0),
        }
    }
}

/// The faults in force on this node: a cheap, cloneable handle.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

/// Why a fault request was refused (the caller answers 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError(pub String);

impl Faults {
    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.inner.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `req` (all but `crash` and `restart`, which the caller carries out) and
    /// returns a description of it, for the log and the dashboard.
    /// `peers` are the node's peers; `skew_allowed` whether this mode reads
    /// the skewed clock.
    ///
    /// # Errors
    /// An unknown peer, a duration, delay, probability or skew out of range,
    /// a skew in a mode that has no use for it.
    pub fn apply(
        &self,
        req: &FaultRequest,
        peers: &[NodeId],
        skew_allowed: bool,
    ) -> Result<String, FaultError> {
        let bad = |m: String| Err(FaultError(m));
        let check_peers = |list: &[NodeId]| {
            if list.is_empty() {
                return Err(FaultError("name at least one peer".into()));
            }
            match list.iter().find(|p| !peers.contains(p)) {
                Some(p) => Err(FaultError(format!("node {p} is not a peer of this node"))),
                None => Ok(()),
            }
        };
        let description = match req {
            FaultRequest::Pause { duration_ms } => {
                if *duration_ms == 0 || *duration_ms > MAX_FAULT_MS {
                    return bad(format!("a pause lasts 1..={MAX_FAULT_MS} ms"));
                }
                let until = Instant::now() + Duration::from_millis(*duration_ms);
                self.inner.paused_until.send_replace(Some(until));
                format!("paused for {duration_ms} ms")
            }
            FaultRequest::Crash => "crashing".to_owned(),
            FaultRequest::Restart => "restarting empty".to_owned(),
            FaultRequest::Cut {
                peers: p,
                direction,
            } => {
                check_peers(p)?;
                self.links().edit(p, *direction, |l| l.cut = true);
                format!("cut from {} ({})", list(p), way(*direction))
            }
            FaultRequest::Delay {
                peers: p,
                ms,
                direction,
            } => {
                check_peers(p)?;
                if *ms > MAX_FAULT_MS {
                    return bad(format!("a delay is at most {MAX_FAULT_MS} ms"));
                }
                self.links().edit(p, *direction, |l| l.delay_ms = *ms);
                format!(
                    "messages with {} delayed {ms} ms ({})",
                    list(p),
                    way(*direction)
                )
            }
            FaultRequest::Drop {
                peers: p,
                probability,
                direction,
            } => {
                check_peers(p)?;
                if !(0.0..=1.0).contains(probability) {
                    return bad("a drop probability is within 0..=1".into());
                }
                self.links().edit(p, *direction, |l| l.drop = *probability);
                format!(
                    "messages with {} dropped with probability {probability} ({})",
                    list(p),
                    way(*direction)
                )
            }
            FaultRequest::Skew { ms } => {
                if !skew_allowed {
                    return bad("a clock skew only affects leaderless mode".into());
                }
                // `unsigned_abs`: `abs` overflows on i64::MIN.
                if ms.unsigned_abs() > MAX_SKEW_MS.unsigned_abs() {
                    return bad(format!("a skew is at most {MAX_SKEW_MS} ms either way"));
                }
                self.inner.skew_ms.store(*ms, Ordering::Relaxed);
                format!("clock skewed {ms:+} ms")
            }
            FaultRequest::Heal => {
                self.heal();
                return Ok("healed".to_owned());
            }
        };
        self.inner.injected.fetch_add(1, Ordering::Relaxed);
        Ok(description)
    }

    /// Cuts messages to `peers` (`outgoing`) and from them (`incoming`).
    pub fn cut(&self, peers: &[NodeId], outgoing: bool, incoming: bool) {
        let direction = match (outgoing, incoming) {
            (true, true) => Direction::Both,
            (true, false) => Direction::Outgoing,
            (false, true) => Direction::Incoming,
            (false, false) => return,
        };
        self.links().edit(peers, direction, |l| l.cut = true);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut l = self.links();
        l.to.clear();
        l.from.clear();
        drop(l);
        self.inner.paused_until.send_replace(None);
        self.inner.skew_ms.store(0, Ordering::Relaxed);
    }

    /// What happens to a message this node sends to `peer` now.
    pub fn outgoing(&self, peer: NodeId) -> Fate {
        self.links()
            .to
            .get(&peer)
            .map_or(Fate::Pass(Duration::ZERO), Link::fate)
    }

    /// What happens to a message this node receives from `peer` now.
    pub fn incoming(&self, peer: NodeId) -> Fate {
        self.links()
            .from
            .get(&peer)
            .map_or(Fate::Pass(Duration::ZERO), Link::fate)
    }

    /// Whether messages to `peer` are cut.
    pub fn cuts_to(&self, peer: NodeId) -> bool {
        self.links().to.get(&peer).is_some_and(|l| l.cut)
    }

    /// Whether messages from `peer` are cut.
    pub fn cuts_from(&self, peer: NodeId) -> bool {
        self.links().from.get(&peer).is_some_and(|l| l.cut)
    }

    /// The peers cut in each direction: (outgoing, incoming).
    pub fn cuts(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let l = self.links();
        let cut =
            |m: &BTreeMap<NodeId, Link>| m.iter().filter(|(_, l)| l.cut).map(|(p, _)| *p).collect();
        (cut(&l.to), cut(&l.from))
    }

    /// Waits while the node is paused (returns at once when it is not).
    pub async fn wait_unpaused(&self) {
        let mut rx = self.inner.paused_until.subscribe();
        // Bounded: each turn waits for the pause to end or to change.
        for _ in 0..1_000 {
            let Some(until) = *rx.borrow_and_update() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Whether the node is paused now.
    pub fn is_paused(&self) -> bool {
        self.inner
            .paused_until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// This node's clock, skewed: ms since the Unix epoch.
    pub fn wall_ms(&self) -> u64 {
        let wall = crate::events::wall_ms();
        let skew = self.inner.skew_ms.load(Ordering::Relaxed);
        wall.saturating_add_signed(skew)
    }

    /// Faults injected since start (heals not counted).
    pub fn injected(&self) -> u64 {
        self.inner.injected.load(Ordering::Relaxed)
    }

    /// Every fault in force.
    pub fn active(&self) -> Vec<ActiveFault> {
        let mut out = Vec::new();
        if let Some(until) = *self.inner.paused_until.borrow() {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                out.push(ActiveFault {
                    kind: "pause".into(),
                    peers: Vec::new(),
                    direction: None,
                    ms: Some(i64::try_from(left.as_millis()).unwrap_or(i64::MAX)),
                    percent: None,
                    description: format!("paused, {} ms left", left.as_millis()),
                });
            }
        }
        let skew = self.inner.skew_ms.load(Ordering::Relaxed);
        if skew != 0 {
            out.push(ActiveFault {
                kind: "skew".into(),
                peers: Vec::new(),
                direction: None,
                ms: Some(skew),
                percent: None,
                description: format!("clock skewed {skew:+} ms"),
            });
        }
        let links = self.links();
        for (dir, map) in [
            (Direction::Outgoing, &links.to),
            (Direction::Incoming, &links.from),
        ] {
            for (&p, l) in map {
                let mut push = |kind: &str, ms: Option<i64>, percent: Option<u32>, what: String| {
                    out.push(ActiveFault {
                        kind: kind.into(),
                        peers: vec![p],
                        direction: Some(dir),
                        ms,
                        percent,
                        description: what,
                    });
                };
                let way = way(dir);
                if l.cut {
                    push("cut", None, None, format!("cut from {p} ({way})"));
                }
                if l.delay_ms > 0 {
                    let ms = i64::try_from(l.delay_ms).unwrap_or(i64::MAX);
                    push(
                        "delay",
                        Some(ms),
                        None,
                        format!("messages with {p} delayed {ms} ms ({way})"),
                    );
                }
                if l.drop > 0.0 {
                    let percent = (l.drop * 100.0).round() as u32;
                    push(
                        "drop",
                        None,
                        Some(percent),
                        format!(
                            "messages with {p} dropped with probability {} ({way})",
                            l.drop
                        ),
                    );
                }
            }
        }
        out
    }
}

fn list(peers: &[NodeId]) -> String {
    peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn way(d: Direction) -> &'static str {
    match d {
        Direction::Both => "both ways",
        Direction::Outgoing => "what this node sends",
        Direction::Incoming => "what this node receives",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_one_way_or_both_and_heal_clears_them() {
        let f = Faults::default();
        f.cut(&[2], true, false);
        f.cut(&[3], true, true);
        assert!(f.cuts_to(2) && !f.cuts_from(2));
        assert!(f.cuts_to(3) && f.cuts_from(3));
        assert_eq!(f.cuts(), (vec![2, 3], vec![3]));
        assert_eq!(f.outgoing(3), Fate::Cut);
        assert_eq!(f.incoming(2), Fate::Pass(Duration::ZERO));
        f.heal();
        assert!(!f.cuts_to(3) && !f.cuts_from(3));
        assert!(f.active().is_empty());
    }

    #[test]
    fn requests_are_checked_and_listed() {
        let f = Faults::default();
        let peers = [2, 3];
        let cut = FaultRequest::Cut {
            peers: vec![9],
            direction: Direction::Both,
        };
        assert!(f.apply(&cut, &peers, false).is_err(), "unknown peer");
        let empty = FaultRequest::Cut {
            peers: vec![],
            direction: Direction::Both,
        };
        assert!(f.apply(&empty, &peers, false).is_err(), "no peer");
        let long = FaultRequest::Pause {
            duration_ms: MAX_FAULT_MS + 1,
        };
        assert!(f.apply(&long, &peers, false).is_err());
        let skew = FaultRequest::Skew { ms: 300 };
        assert!(
            f.apply(&skew, &peers, false).is_err(),
            "skew outside leaderless"
        );
        assert!(f
            .apply(
                &FaultRequest::Skew {
                    ms: MAX_SKEW_MS + 1
                },
                &peers,
                true
            )
            .is_err());
        let most_negative = FaultRequest::Skew { ms: i64::MIN };
        assert!(
            f.apply(&most_negative, &peers, true).is_err(),
            "no overflow"
        );
        let odd = FaultRequest::Drop {
            peers: vec![2],
            probability: 1.5,
            direction: Direction::Both,
        };
        assert!(f.apply(&odd, &peers, false).is_err());
        assert_eq!(f.injected(), 0, "refused requests are not counted");

        f.apply(&skew, &peers, true).unwrap();
        let delay = FaultRequest::Delay {
            peers: vec![3],
            ms: 40,
            direction: Direction::Incoming,
        };
        f.apply(&delay, &peers, false).unwrap();
        let drop_all = FaultRequest::Drop {
            peers: vec![2],
            probability: 1.0,
            direction: Direction::Outgoing,
        };
        f.apply(&drop_all, &peers, false).unwrap();
        assert_eq!(f.incoming(3), Fate::Pass(Duration::from_millis(40)));
        assert_eq!(f.outgoing(3), Fate::Pass(Duration::ZERO));
        assert_eq!(f.outgoing(2), Fate::Dropped);
        let kinds: Vec<String> = f.active().into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["skew", "drop", "delay"]);
        assert!(f.wall_ms() >= crate::events::wall_ms() + 290);
        assert_eq!(f.injected(), 3);
        assert_eq!(
            f.apply(&FaultRequest::Heal, &peers, true).unwrap(),
            "healed"
        );
        assert!(f.active().is_empty());
        assert_eq!(f.outgoing(2), Fate::Pass(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_pause_holds_waiters_until_it_ends_or_heals() {
        let f = Faults::default();
        f.wait_unpaused().await; // not paused: at once
        f.apply(
            &FaultRequest::Pause {
                duration_ms: 60_000,
            },
            &[],
            false,
        )
        .unwrap();
        assert!(f.is_paused());
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_unpaused().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "held while paused");
        f.heal();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released by the heal")
            .unwrap();
        f.apply(&FaultRequest::Pause { duration_ms: 30 }, &[], false)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), f.wait_unpaused())
            .await
            .expect("released when the pause ends");
    }
}
