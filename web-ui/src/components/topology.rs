//! The cluster as a diagram: the leader on top and its followers fanned out
//! below (leaderless: a ring), each replica with its role, health, applied
//! position, key count and lag; replication messages (writes, reads, read
//! repairs) drawn in flight; anti-entropy rounds and hint hand-offs drawn
//! for a moment between the two replicas.

use crate::state::{Dot, DotKind, Exchange, Flight, LagSample, Vote};
use kv_shared::events::{ClusterView, ReplicaView};
use kv_shared::{Mode, NodeId, Role};
use std::collections::BTreeMap;
use yew::prelude::*;

/// Width of the drawing, in SVG units.
const WIDTH: f64 = 640.0;
/// Height of the drawing, in SVG units.
const HEIGHT: f64 = 370.0;
/// Half the width of a replica's box.
const HALF_W: f64 = 70.0;
/// Half the height of a replica's box.
const HALF_H: f64 = 40.0;

/// Props of [`Topology`].
#[derive(Properties, PartialEq)]
pub struct TopologyProps {
    /// The last cluster snapshot, if any.
    pub view: Option<ClusterView>,
    /// Messages in flight.
    pub dots: Vec<Dot>,
    /// Votes just granted (drawn from the voter to the candidate).
    #[prop_or_default]
    pub votes: Vec<Vote>,
    /// Anti-entropy rounds and hint hand-offs just reported.
    #[prop_or_default]
    pub exchanges: Vec<Exchange>,
    /// Coordinators that just answered a write.
    pub flashing: Vec<NodeId>,
    /// Each replica's latest lag sample.
    pub lag: BTreeMap<NodeId, LagSample>,
    /// Whether the snapshot is out of date (feed lost).
    pub stale: bool,
}

/// Where each replica's box is centred.
pub fn layout(view: &ClusterView) -> BTreeMap<NodeId, (f64, f64)> {
    let ids: Vec<NodeId> = view.replicas.iter().map(|r| r.id).collect();
    let hub = match view.mode {
        Mode::LeaderFollower => view.leader.filter(|l| ids.contains(l)),
        _ => None,
    };
    let mut at = BTreeMap::new();
    if ids.len() == 1 {
        at.insert(ids[0], (WIDTH / 2.0, HEIGHT / 2.0));
        return at;
    }
    match hub {
        Some(leader) => {
            at.insert(leader, (WIDTH / 2.0, 62.0));
            let rest: Vec<NodeId> = ids.into_iter().filter(|&i| i != leader).collect();
            // A fan below the leader: angles from 150° to 30° around a point above it.
            let k = rest.len();
            for (i, id) in rest.into_iter().enumerate() {
                let frac = if k == 1 {
                    0.5
                } else {
                    i as f64 / (k - 1) as f64
                };
                let a = (150.0 - 120.0 * frac).to_radians();
                at.insert(id, (WIDTH / 2.0 + 250.0 * a.cos(), 20.0 + 285.0 * a.sin()));
            }
        }
        None => {
            let k = ids.len() as f64;
            for (i, id) in ids.into_iter().enumerate() {
                let a = (-90.0 + 360.0 * i as f64 / k).to_radians();
                at.insert(
                    id,
                    (
                        WIDTH / 2.0 + 235.0 * a.cos(),
                        HEIGHT / 2.0 + 130.0 * a.sin(),
                    ),
                );
            }
        }
    }
    at
}

/// The point where the segment from the centre of box `a` towards the
/// centre of box `b` leaves box `a`.
fn box_exit(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = dx.hypot(dy).max(1e-9);
    let (ux, uy) = (dx / len, dy / len);
    let t = (HALF_W / ux.abs().max(1e-9)).min(HALF_H / uy.abs().max(1e-9)) + 4.0;
    (a.0 + ux * t, a.1 + uy * t)
}

/// The visible segment between two boxes (from `a`'s border to `b`'s).
fn segment(a: (f64, f64), b: (f64, f64)) -> ((f64, f64), (f64, f64)) {
    (box_exit(a, b), box_exit(b, a))
}

fn lerp(p: (f64, f64), q: (f64, f64), t: f64) -> (f64, f64) {
    let t = t.clamp(0.0, 1.0);
    (p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t)
}

/// The replicas as a diagram.
#[function_component(Topology)]
pub fn topology(props: &TopologyProps) -> Html {
    let Some(view) = &props.view else {
        return html! {
            <section class="card topology">
                <h2>{ "Topology" }</h2>
                <p class="muted">{ "Waiting for the first cluster snapshot…" }</p>
            </section>
        };
    };
    let at = layout(view);
    let edges = edges(view, &at);
    let dots = props.dots.iter().filter_map(|d| dot_view(d, &at));
    let votes = props.votes.iter().filter_map(|v| vote_view(v, &at));
    let exchanges = props.exchanges.iter().filter_map(|x| exchange_view(x, &at));
    let nodes = view.replicas.iter().map(|r| {
        let lag = props.lag.get(&r.id).copied();
        replica_view(r, at[&r.id], lag, props.flashing.contains(&r.id))
    });
    let class = classes!("card", "topology", props.stale.then_some("stale"));
    html! {
        <section class={class}>
            <h2>
                { "Topology" }
                <span class="muted small">{ format!(" · {} · {} replicas", view.mode, view.replicas.len()) }</span>
            </h2>
            <svg id="topology" viewBox={format!("0 0 {WIDTH} {HEIGHT}")} role="img"
                 aria-label="replicas of the cluster">
                <g class="edges">{ for edges }</g>
                <g class="votes">{ for votes }</g>
                <g class="exchanges">{ for exchanges }</g>
                <g class="nodes">{ for nodes }</g>
                <g class="dots">{ for dots }</g>
            </svg>
            <div class="legend">
                <span><i class="swatch out"></i>{ "write sent" }</span>
                <span><i class="swatch ack"></i>{ "ack returning" }</span>
                <span><i class="swatch wait"></i>{ "delivered, ack pending" }</span>
                <span><i class="swatch flash"></i>{ "client answered" }</span>
                <span><i class="swatch vote"></i>{ "vote granted" }</span>
                <span><i class="swatch read"></i>{ "read / answer" }</span>
                <span><i class="swatch repair"></i>{ "read repair" }</span>
                <span><i class="swatch exchange"></i>{ "anti-entropy / hints" }</span>
            </div>
        </section>
    }
}

/// Leader → follower links (leader-follower) or the ring (leaderless).
fn edges(view: &ClusterView, at: &BTreeMap<NodeId, (f64, f64)>) -> Vec<Html> {
    let line = |a: NodeId, b: NodeId, up: bool| {
        let (p, q) = segment(at[&a], at[&b]);
        html! {
            <line class={classes!("edge", (!up).then_some("down"))}
                x1={p.0.to_string()} y1={p.1.to_string()} x2={q.0.to_string()} y2={q.1.to_string()} />
        }
    };
    let up = |id: NodeId| view.replicas.iter().any(|r| r.id == id && r.up);
    match view.leader.filter(|l| at.contains_key(l)) {
        Some(l) if view.mode == Mode::LeaderFollower => at
            .keys()
            .filter(|&&id| id != l)
            .map(|&id| line(l, id, up(id) && up(l)))
            .collect(),
        _ => {
            let ids: Vec<NodeId> = at.keys().copied().collect();
            if ids.len() < 2 {
                return Vec::new();
            }
            (0..ids.len())
                .map(|i| {
                    let (a, b) = (ids[i], ids[(i + 1) % ids.len()]);
                    line(a, b, up(a) && up(b))
                })
                .collect()
        }
    }
}

fn dot_view(d: &Dot, at: &BTreeMap<NodeId, (f64, f64)>) -> Option<Html> {
    let (from, to) = (*at.get(&d.from)?, *at.get(&d.to)?);
    let (p, q) = segment(from, to);
    let (pos, class) = match (d.kind, d.flight) {
        (DotKind::Write, Flight::Out(t)) => (lerp(p, q, t), "dot out"),
        (DotKind::Write, Flight::Waiting) => (lerp(p, q, 1.0), "dot wait"),
        (DotKind::Write, Flight::Back(t)) => (lerp(q, p, t), "dot ack"),
        (DotKind::Read, Flight::Out(t)) => (lerp(p, q, t), "dot read read-out"),
        (DotKind::Read, Flight::Waiting) => (lerp(p, q, 1.0), "dot read read-wait"),
        (DotKind::Read, Flight::Back(t)) => (lerp(q, p, t), "dot read read-back"),
        (DotKind::Repair, Flight::Out(t) | Flight::Back(t)) => (lerp(p, q, t), "dot repair"),
        (DotKind::Repair, Flight::Waiting) => (lerp(p, q, 1.0), "dot repair"),
    };
    let kind = match d.kind {
        DotKind::Write => "write",
        DotKind::Read => "read",
        DotKind::Repair => "repair",
    };
    let r = if d.kind == DotKind::Write { "6" } else { "5" };
    Some(html! {
        <circle class={class} cx={format!("{:.1}", pos.0)} cy={format!("{:.1}", pos.1)} r={r}
            data-to={d.to.to_string()} data-from={d.from.to_string()} data-kind={kind}
            data-trace={d.trace_id.to_string()} />
    })
}

/// An anti-entropy round or a hint hand-off: a dotted line between the two.
fn exchange_view(x: &Exchange, at: &BTreeMap<NodeId, (f64, f64)>) -> Option<Html> {
    let (from, to) = (*at.get(&x.from)?, *at.get(&x.to)?);
    let (p, q) = segment(from, to);
    let kind = if x.anti_entropy {
        "anti-entropy"
    } else {
        "hints"
    };
    Some(html! {
        <line class={classes!("exchange", kind)} x1={format!("{:.1}", p.0)} y1={format!("{:.1}", p.1)}
            x2={format!("{:.1}", q.0)} y2={format!("{:.1}", q.1)}
            data-from={x.from.to_string()} data-to={x.to.to_string()} data-kind={kind} />
    })
}

/// A granted vote: a dashed arrow from the voter to the candidate.
fn vote_view(v: &Vote, at: &BTreeMap<NodeId, (f64, f64)>) -> Option<Html> {
    let (from, to) = (*at.get(&v.voter)?, *at.get(&v.candidate)?);
    let (p, q) = segment(from, to);
    Some(html! {
        <line class="vote" x1={format!("{:.1}", p.0)} y1={format!("{:.1}", p.1)}
            x2={format!("{:.1}", q.0)} y2={format!("{:.1}", q.1)}
            data-voter={v.voter.to_string()} data-candidate={v.candidate.to_string()}
            data-term={v.term.to_string()} />
    })
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Peer => "peer",
        Role::Standalone => "standalone",
    }
}

fn replica_view(r: &ReplicaView, (x, y): (f64, f64), lag: Option<LagSample>, flash: bool) -> Html {
    let behind = lag.is_some_and(|l| l.entries > 0);
    let class = classes!(
        "replica",
        role_label(r.role),
        if r.up { "up" } else { "down" },
        behind.then_some("behind"),
        flash.then_some("flash"),
    );
    let seq = r.applied_seq.map_or("—".to_owned(), |s| s.to_string());
    let keys = r.keys.map_or("—".to_owned(), |k| k.to_string());
    let (state_text, state_class) = if !r.up {
        ("down".to_owned(), "state bad")
    } else if r.role == Role::Candidate {
        ("asking for votes".to_owned(), "state warn")
    } else if r.catching_up {
        ("catching up · not counted for R".to_owned(), "state warn")
    } else if r.role == Role::Leader {
        ("accepting writes".to_owned(), "state good")
    } else if let Some(l) = lag.filter(|l| l.entries > 0) {
        (format!("behind {} · {} ms", l.entries, l.ms), "state warn")
    } else if let Some(h) = r.progress.pending_hints.filter(|&h| h > 0) {
        (format!("{h} hints held for it"), "state warn")
    } else {
        ("in sync".to_owned(), "state good")
    };
    // Leaderless replicas have no log position: their key count says more.
    let stats = match (r.role, r.term) {
        (Role::Peer, _) => format!("{keys} keys"),
        (_, Some(term)) => format!("term {term} · seq {seq} · {keys} keys"),
        (_, None) => format!("seq {seq} · {keys} keys"),
    };
    let rolled = r
        .rolled_back
        .filter(|&n| n > 0)
        .map(|n| html! { <text class="state bad small" x={(2.0 * HALF_W - 10.0).to_string()} y="35" text-anchor="end">{ format!("↶{n}") }<title>{ format!("{n} writes rolled back here") }</title></text> });
    // Faults in force (from the replica's /status): a count, described on hover.
    let faults = (!r.faults.is_empty()).then(|| {
        let what: Vec<&str> = r.faults.iter().map(|f| f.description.as_str()).collect();
        html! {
            <text class="state bad small fault-badge" x={(2.0 * HALF_W - 22.0).to_string()} y="18" text-anchor="end">
                { format!("⚡{}", r.faults.len()) }<title>{ what.join("; ") }</title>
            </text>
        }
    });
    let title = r.error.clone().unwrap_or_else(|| r.url.clone());
    html! {
        <g id={format!("replica-{}", r.id)} class={class} data-role={role_label(r.role)}
           data-up={r.up.to_string()} data-seq={seq.clone()} data-behind={behind.to_string()}
           data-term={r.term.map(|t| t.to_string()).unwrap_or_default()}
           data-catching-up={r.catching_up.to_string()} data-faults={r.faults.len().to_string()}
           data-hints={r.progress.pending_hints.unwrap_or(0).to_string()}
           transform={format!("translate({:.1},{:.1})", x - HALF_W, y - HALF_H)}>
            <title>{ title }</title>
            <rect class="box" width={(2.0 * HALF_W).to_string()} height={(2.0 * HALF_H).to_string()} rx="10" />
            <circle class="health-dot" cx={(2.0 * HALF_W - 12.0).to_string()} cy="13" r="5" />
            <text class="name" x="10" y="19">{ format!("node {}", r.id) }</text>
            <text class="role" x="10" y="35">{ role_label(r.role) }</text>
            <text class="stats" x="10" y="52">{ stats }</text>
            <text class={state_class} x="10" y="69">{ state_text }</text>
            { for rolled }
            { for faults }
        </g>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::{ClusterConfig, DelayProfile};

    fn view(mode: Mode, n: u32) -> ClusterView {
        ClusterView {
            at_ms: 0,
            observer: 1,
            mode,
            leader: (mode == Mode::LeaderFollower).then_some(1),
            config: ClusterConfig::new(n, 1, 1, DelayProfile::OFF).unwrap(),
            replicas: (1..=n)
                .map(|id| ReplicaView {
                    id,
                    url: String::new(),
                    role: if id == 1 && mode == Mode::LeaderFollower {
                        Role::Leader
                    } else {
                        Role::Follower
                    },
                    up: true,
                    applied_seq: None,
                    keys: None,
                    term: None,
                    commit_seq: None,
                    catching_up: false,
                    rolled_back: None,
                    progress: Default::default(),
                    config: None,
                    error: None,
                    faults: Vec::new(),
                })
                .collect(),
        }
    }

    fn inside(p: (f64, f64)) -> bool {
        p.0 - HALF_W >= 0.0
            && p.0 + HALF_W <= WIDTH
            && p.1 - HALF_H >= 0.0
            && p.1 + HALF_H <= HEIGHT
    }

    #[test]
    fn the_leader_is_on_top_and_every_box_fits() {
        let at = layout(&view(Mode::LeaderFollower, 5));
        assert_eq!(at.len(), 5);
        assert!(at.values().all(|&p| inside(p)), "{at:?}");
        assert!(at
            .iter()
            .filter(|(&id, _)| id != 1)
            .all(|(_, p)| p.1 > at[&1].1 + 2.0 * HALF_H));
        let ring = layout(&view(Mode::Leaderless, 5));
        assert!(ring.values().all(|&p| inside(p)), "{ring:?}");
    }

    #[test]
    fn messages_travel_between_box_borders() {
        let (p, q) = segment((100.0, 100.0), (400.0, 100.0));
        assert_eq!(p, (100.0 + HALF_W + 4.0, 100.0));
        assert_eq!(q, (400.0 - HALF_W - 4.0, 100.0));
        assert_eq!(lerp(p, q, 2.0), q);
    }
}
