//! The fault panel: injects a fault into one node through its
//! `/admin/faults` (pause, crash, restart empty, a partition from chosen
//! peers — one way or both —, message delay or loss, and in leaderless mode
//! a clock skew), heals
//! one node or every node, and lists each node's faults in force as the live
//! feed reports them. Every call needs the admin token, typed once and kept
//! for the tab's session.
//!
//! A crashed node's process is gone, and only what started it can start it
//! again (`scripts/deploy.sh` re-deploys a node that does not answer); a
//! restart is a fault of its own: the node re-executes itself, empty.

use crate::api::{FaultOutcome, FetchState};
use kv_shared::admin::{Direction, FaultRequest, MAX_FAULT_MS, MAX_SKEW_MS};
use kv_shared::events::ReplicaView;
use kv_shared::NodeId;
use std::collections::BTreeSet;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

/// A fault request the user asked for, for some nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultOrder {
    /// The nodes to send it to.
    pub nodes: Vec<NodeId>,
    /// The request.
    pub request: FaultRequest,
    /// The admin token.
    pub token: String,
}

/// A kind of fault the panel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stop answering and sending for a while.
    Pause,
    /// Exit the process.
    Crash,
    /// Start again at once, empty (the process re-executes itself).
    Restart,
    /// Lose every message to and/or from the chosen peers.
    Cut,
    /// Delay the messages with the chosen peers.
    Delay,
    /// Lose a share of the messages with the chosen peers.
    Drop,
    /// Run the node's clock ahead or behind (leaderless only).
    Skew,
}

impl Kind {
    /// Every kind, in the order the panel offers them.
    pub const ALL: [Kind; 7] = [
        Kind::Pause,
        Kind::Crash,
        Kind::Restart,
        Kind::Cut,
        Kind::Delay,
        Kind::Drop,
        Kind::Skew,
    ];

    /// The value of its option (the API's `kind`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pause => "pause",
            Kind::Crash => "crash",
            Kind::Restart => "restart",
            Kind::Cut => "cut",
            Kind::Delay => "delay",
            Kind::Drop => "drop",
            Kind::Skew => "skew",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Pause => "pause",
            Kind::Crash => "crash (exit)",
            Kind::Restart => "restart (empty)",
            Kind::Cut => "partition (cut)",
            Kind::Delay => "message delay",
            Kind::Drop => "message loss",
            Kind::Skew => "clock skew",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether it hits the messages with chosen peers.
    pub fn has_peers(self) -> bool {
        matches!(self, Kind::Cut | Kind::Delay | Kind::Drop)
    }

    /// The label and default of its millisecond field, if it has one.
    fn ms_field(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::Pause => Some(("for (ms)", "5000")),
            Kind::Delay => Some(("delay (ms)", "300")),
            Kind::Skew => Some(("skew (ms, ±)", "5000")),
            _ => None,
        }
    }
}

/// What the form holds, as typed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Form {
    /// The milliseconds field (pause, delay, skew).
    pub ms: String,
    /// The loss field, in percent.
    pub percent: String,
    /// The peers ticked.
    pub peers: BTreeSet<NodeId>,
    /// Which messages.
    pub direction: Direction,
}

/// The request `kind` with `form` makes for node `node`, or why it cannot
/// be sent (checked here against the API's limits; the node checks again).
///
/// # Errors
/// A number that does not parse or is out of range; no peer ticked.
pub fn request(kind: Kind, node: NodeId, form: &Form) -> Result<FaultRequest, String> {
    let peers: Vec<NodeId> = form.peers.iter().copied().filter(|&p| p != node).collect();
    if kind.has_peers() && peers.is_empty() {
        return Err("tick at least one peer".into());
    }
    let ms = || -> Result<i64, String> {
        form.ms
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("`{}` is not a number of ms", form.ms.trim()))
    };
    let within = |v: i64, lo: i64, hi: i64| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} is outside {lo}..={hi}"))
        }
    };
    let max = i64::try_from(MAX_FAULT_MS).unwrap_or(i64::MAX);
    let direction = form.direction;
    Ok(match kind {
        Kind::Pause => FaultRequest::Pause {
            duration_ms: within(ms()?, 1, max)?.unsigned_abs(),
        },
        Kind::Crash => FaultRequest::Crash,
        Kind::Restart => FaultRequest::Restart,
        Kind::Cut => FaultRequest::Cut { peers, direction },
        Kind::Delay => FaultRequest::Delay {
            peers,
            ms: within(ms()?, 0, max)?.unsigned_abs(),
            direction,
        },
        Kind::Drop => {
            let pct = form
                .percent
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| format!("`{}` is not a percentage", form.percent.trim()))?;
            FaultRequest::Drop {
                peers,
                probability: pct / 100.0,
                direction,
            }
        }
        Kind::Skew => FaultRequest::Skew {
            ms: within(ms()?, -MAX_SKEW_MS, MAX_SKEW_MS)?,
        },
    })
}

/// Props of [`Faults`].
#[derive(Properties, PartialEq)]
pub struct FaultsProps {
    /// The replicas, with the faults the feed lists for each.
    pub replicas: Vec<ReplicaView>,
    /// Leaderless mode (the only one a clock skew affects).
    pub leaderless: bool,
    /// The answers to the last order, per node.
    pub outcome: Option<FetchState<Vec<FaultOutcome>>>,
    /// The admin token typed so far (shared with the controls; kept for
    /// the tab's session).
    pub token: String,
    /// Called with the token as the user types it.
    pub on_token: Callback<String>,
    /// Called with each order.
    pub on_order: Callback<FaultOrder>,
}

fn value_of_select(e: &Event) -> String {
    e.target_unchecked_into::<HtmlSelectElement>().value()
}

fn value_of_input(e: &InputEvent) -> String {
    e.target_unchecked_into::<HtmlInputElement>().value()
}

/// The fault panel.
#[function_component(Faults)]
pub fn faults(props: &FaultsProps) -> Html {
    let node = use_state(|| None::<NodeId>);
    let kind = use_state(|| Kind::Pause);
    let form = use_state(|| Form {
        ms: "5000".into(),
        percent: "50".into(),
        ..Form::default()
    });
    let invalid = use_state(|| None::<String>);
    let ids: Vec<NodeId> = props.replicas.iter().map(|r| r.id).collect();
    let Some(&first) = ids.first() else {
        return html! {
            <section class="card faults" id="faults"><h2>{ "Faults" }</h2><p class="muted">{ "…" }</p></section>
        };
    };
    let target = (*node).filter(|n| ids.contains(n)).unwrap_or(first);
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Skew || props.leaderless)
        .collect();
    let cur = if kinds.contains(&kind) {
        *kind
    } else {
        Kind::Pause
    };

    let order = {
        let token = props.token.clone();
        move |nodes: Vec<NodeId>, request: FaultRequest| FaultOrder {
            nodes,
            request,
            token: token.clone(),
        }
    };
    let inject = {
        let (on_order, form, invalid) = (props.on_order.clone(), form.clone(), invalid.clone());
        let order = order.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            match request(cur, target, &form) {
                Ok(req) => {
                    invalid.set(None);
                    on_order.emit(order(vec![target], req));
                }
                Err(why) => invalid.set(Some(why)),
            }
        })
    };
    let heal = |nodes: Vec<NodeId>| {
        let on_order = props.on_order.clone();
        let order = order.clone();
        Callback::from(move |_: MouseEvent| on_order.emit(order(nodes.clone(), FaultRequest::Heal)))
    };
    let on_node = {
        let node = node.clone();
        Callback::from(move |e: Event| node.set(value_of_select(&e).parse().ok()))
    };
    let on_kind = {
        let (kind, form) = (kind.clone(), form.clone());
        Callback::from(move |e: Event| {
            let k = Kind::parse(&value_of_select(&e)).unwrap_or(Kind::Pause);
            if let Some((_, default)) = k.ms_field() {
                form.set(Form {
                    ms: default.into(),
                    ..(*form).clone()
                });
            }
            kind.set(k);
        })
    };
    let edit = |f: fn(&mut Form, String)| {
        let form = form.clone();
        Callback::from(move |e: InputEvent| {
            let mut next = (*form).clone();
            f(&mut next, value_of_input(&e));
            form.set(next);
        })
    };
    let on_direction = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let direction = match value_of_select(&e).as_str() {
                "outgoing" => Direction::Outgoing,
                "incoming" => Direction::Incoming,
                _ => Direction::Both,
            };
            form.set(Form {
                direction,
                ..(*form).clone()
            });
        })
    };
    let on_token = {
        let on_token = props.on_token.clone();
        Callback::from(move |e: InputEvent| on_token.emit(value_of_input(&e)))
    };
    let peer_boxes = ids.iter().filter(|&&p| p != target).map(|&p| {
        let form = form.clone();
        let ticked = form.peers.contains(&p);
        let toggle = Callback::from(move |_: Event| {
            let mut next = (*form).clone();
            if !next.peers.remove(&p) {
                next.peers.insert(p);
            }
            form.set(next);
        });
        html! {
            <label class="check">
                <input type="checkbox" id={format!("fault-peer-{p}")} checked={ticked} onchange={toggle} />
                { format!("node {p}") }
            </label>
        }
    });
    let kind_options = kinds.iter().map(|k| {
        html! { <option value={k.name()} selected={*k == cur}>{ k.label() }</option> }
    });
    let node_options = props.replicas.iter().map(|r| {
        let text = if r.up {
            format!("node {}", r.id)
        } else {
            format!("node {} (down)", r.id)
        };
        html! { <option value={r.id.to_string()} selected={r.id == target}>{ text }</option> }
    });
    let dir = form.direction;
    html! {
        <section class="card faults" id="faults">
            <h2>{ "Faults" }<span class="muted small">{ " · injected into a node's own transport (/admin/faults)" }</span></h2>
            <div class="row">
                <label class="grow">{ "admin token" }
                    <input id="fault-token" type="password" value={props.token.clone()} oninput={on_token}
                        placeholder="printed by scripts/deploy.sh; kept for this tab" autocomplete="off" />
                </label>
            </div>
            <form class="row" onsubmit={inject}>
                <label>{ "node" }<select id="fault-node" onchange={on_node}>{ for node_options }</select></label>
                <label>{ "fault" }<select id="fault-kind" onchange={on_kind}>{ for kind_options }</select></label>
                if let Some((label, _)) = cur.ms_field() {
                    <label>{ label }
                        <input id="fault-ms" type="number" class="num" value={form.ms.clone()}
                            oninput={edit(|f, v| f.ms = v)} />
                    </label>
                }
                if cur == Kind::Drop {
                    <label>{ "loss (%)" }
                        <input id="fault-percent" type="number" class="num" min="0" max="100" value={form.percent.clone()}
                            oninput={edit(|f, v| f.percent = v)} />
                    </label>
                }
                if cur.has_peers() {
                    <fieldset class="peers"><legend>{ "with peers" }</legend>{ for peer_boxes }</fieldset>
                    <label>{ "messages" }
                        <select id="fault-direction" onchange={on_direction}>
                            <option value="both" selected={dir == Direction::Both}>{ "both ways" }</option>
                            <option value="outgoing" selected={dir == Direction::Outgoing}>{ "outgoing only" }</option>
                            <option value="incoming" selected={dir == Direction::Incoming}>{ "incoming only" }</option>
                        </select>
                    </label>
                }
                <button id="fault-inject" type="submit" class="danger">{ format!("inject into node {target}") }</button>
            </form>
            <div class="row">
                <button id="fault-heal" type="button" class="secondary" onclick={heal(vec![target])}>
                    { format!("heal node {target}") }
                </button>
                <button id="fault-heal-all" type="button" onclick={heal(ids.clone())}>{ "heal all" }</button>
            </div>
            { active_view(&props.replicas) }
            if let Some(why) = (*invalid).clone() {
                <p id="fault-result" class="small bad" data-ok="false">{ why }</p>
            } else {
                { outcome_view(props.outcome.as_ref()) }
            }
            <p class="muted small">{ "A crashed node stays down until what started it starts it again \
                (scripts/deploy.sh re-deploys a node that does not answer); \"restart\" makes a node start again at once, empty." }</p>
        </section>
    }
}

/// Each node's faults in force, as the feed lists them.
fn active_view(replicas: &[ReplicaView]) -> Html {
    let rows = replicas.iter().filter(|r| !r.faults.is_empty()).map(|r| {
        html! {
            <li id={format!("fault-active-{}", r.id)} data-count={r.faults.len().to_string()}>
                <b>{ format!("node {}", r.id) }</b>{ ": " }
                { r.faults.iter().map(|f| f.description.clone()).collect::<Vec<_>>().join("; ") }
            </li>
        }
    });
    let count: usize = replicas.iter().map(|r| r.faults.len()).sum();
    html! {
        <ul class="fault-list" id="fault-active" data-count={count.to_string()}>
            if count == 0 { <li class="muted">{ "no fault in force" }</li> }
            { for rows }
        </ul>
    }
}

/// The answers to the last order.
fn outcome_view(outcome: Option<&FetchState<Vec<FaultOutcome>>>) -> Html {
    match outcome {
        None => html! {},
        Some(FetchState::Loading) => {
            html! { <p id="fault-result" class="muted small">{ "sending…" }</p> }
        }
        Some(FetchState::Failed(e)) => {
            html! { <p id="fault-result" class="small bad" data-ok="false">{ e }</p> }
        }
        Some(FetchState::Ready(answers)) => {
            let ok = |want: bool| {
                answers
                    .iter()
                    .filter(|a| a.result.is_ok() == want)
                    .map(|a| a.node.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let all_ok = answers.iter().all(|a| a.result.is_ok());
            let lines = answers.iter().map(|a| match &a.result {
                Ok(s) => html! { <li class="good">{ format!("node {}: done · {} in force", a.node, s.active.len()) }</li> },
                Err(e) => html! { <li class="bad">{ format!("node {}: ", a.node) }<code>{ e }</code></li> },
            });
            html! {
                <div id="fault-result" class="small" data-ok={all_ok.to_string()} data-done={ok(true)} data-failed={ok(false)}>
                    <ul class="fault-answers">{ for lines }</ul>
                </div>
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(ms: &str, pct: &str, peers: &[NodeId], direction: Direction) -> Form {
        Form {
            ms: ms.into(),
            percent: pct.into(),
            peers: peers.iter().copied().collect(),
            direction,
        }
    }

    #[test]
    fn the_form_makes_the_requests_the_api_takes() {
        let f = form("300", "25", &[1, 3], Direction::Outgoing);
        assert_eq!(
            request(Kind::Cut, 2, &f),
            Ok(FaultRequest::Cut {
                peers: vec![1, 3],
                direction: Direction::Outgoing
            })
        );
        assert_eq!(
            request(Kind::Delay, 3, &f),
            Ok(FaultRequest::Delay {
                peers: vec![1],
                ms: 300,
                direction: Direction::Outgoing
            }),
            "the node itself is never its own peer"
        );
        assert_eq!(
            request(Kind::Drop, 2, &f),
            Ok(FaultRequest::Drop {
                peers: vec![1, 3],
                probability: 0.25,
                direction: Direction::Outgoing
            })
        );
        assert_eq!(
            request(Kind::Pause, 2, &f),
            Ok(FaultRequest::Pause { duration_ms: 300 })
        );
        assert_eq!(
            request(Kind::Skew, 2, &form("-300", "", &[], Direction::Both)),
            Ok(FaultRequest::Skew { ms: -300 })
        );
        assert_eq!(request(Kind::Crash, 2, &f), Ok(FaultRequest::Crash));
        assert_eq!(request(Kind::Restart, 2, &f), Ok(FaultRequest::Restart));
    }

    #[test]
    fn the_form_refuses_what_the_api_would() {
        let none = form("10", "10", &[], Direction::Both);
        assert!(request(Kind::Cut, 1, &none).is_err(), "no peer");
        assert!(
            request(Kind::Cut, 1, &form("", "", &[1], Direction::Both)).is_err(),
            "only itself"
        );
        assert!(request(Kind::Pause, 1, &form("0", "", &[], Direction::Both)).is_err());
        assert!(request(Kind::Pause, 1, &form("600001", "", &[], Direction::Both)).is_err());
        assert!(request(Kind::Pause, 1, &form("soon", "", &[], Direction::Both)).is_err());
        assert!(request(Kind::Skew, 1, &form("60001", "", &[], Direction::Both)).is_err());
        assert!(request(Kind::Drop, 1, &form("", "101", &[2], Direction::Both)).is_err());
        assert!(request(Kind::Drop, 1, &form("", "half", &[2], Direction::Both)).is_err());
    }
}
