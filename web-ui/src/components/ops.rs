//! The operations panel: set, get or local_read against a chosen replica, and
//! what it answered: value, version, which node served it, the latency — or
//! the error as the API worded it.

use crate::api::{FetchState, OpAnswer, OpKind, OpOutcome, OpRequest};
use kv_shared::{NodeId, Role};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

/// A replica the user can pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Whether it answered the last snapshot.
    pub up: bool,
}

/// Props of [`Ops`].
#[derive(Properties, PartialEq)]
pub struct OpsProps {
    /// The replicas to choose from.
    pub targets: Vec<Target>,
    /// The replica chosen until the user picks another (the serving node).
    pub default_node: Option<NodeId>,
    /// The last operation's result.
    pub result: Option<FetchState<OpOutcome>>,
    /// Called when the user sends an operation.
    pub on_run: Callback<OpRequest>,
    /// Shown below the result (the reads panel).
    #[prop_or_default]
    pub children: Html,
}

/// A version as the result shows it: counters as numbers, leaderless clock
/// readings as time, counter and node (the exact value in the tooltip).
fn version_cell(v: kv_shared::Version) -> Html {
    let text = if kv_shared::leaderless::hlc::is_clock_reading(v) {
        crate::lab::version_label(v)
    } else {
        v.to_string()
    };
    html! { <dd id="op-result-version" title={crate::lab::version_title(v)}>{ text }</dd> }
}

/// The operations panel.
#[function_component(Ops)]
pub fn ops(props: &OpsProps) -> Html {
    let kind = use_state(|| OpKind::Set);
    let node = use_state(|| None::<NodeId>);
    let key = use_state(|| "greeting".to_owned());
    let value = use_state(|| "hello".to_owned());

    let chosen = (*node)
        .or(props.default_node)
        .or_else(|| props.targets.first().map(|t| t.id));
    let on_kind = {
        let kind = kind.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            kind.set(OpKind::parse(&v).unwrap_or(OpKind::Set));
        })
    };
    let on_node = {
        let node = node.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            node.set(v.parse().ok());
        })
    };
    // Inputs are controlled: every render writes the state back into the
    // DOM, so both `input` and `change` (a cleared field) update the state.
    let text_input = |state: UseStateHandle<String>| {
        Callback::from(move |e: InputEvent| {
            state.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let text_change = |state: UseStateHandle<String>| {
        Callback::from(move |e: Event| {
            state.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let on_submit = {
        let (kind, key, value, on_run) = (
            kind.clone(),
            key.clone(),
            value.clone(),
            props.on_run.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(node) = chosen {
                on_run.emit(OpRequest {
                    kind: *kind,
                    node,
                    key: (*key).clone(),
                    value: (*value).clone(),
                });
            }
        })
    };
    let busy = matches!(props.result, Some(FetchState::Loading));
    html! {
        <section class="card ops">
            <h2>{ "Operations" }</h2>
            <form id="op-form" onsubmit={on_submit}>
                <div class="row">
                    <label>{ "operation" }
                        <select id="op-kind" onchange={on_kind}>
                            { for OpKind::ALL.iter().map(|k| html! {
                                <option value={k.to_string()} selected={*k == *kind}>{ k.to_string() }</option>
                            }) }
                        </select>
                    </label>
                    <label>{ "node" }
                        <select id="op-node" onchange={on_node}>
                            { for props.targets.iter().map(|t| html! {
                                <option value={t.id.to_string()} selected={Some(t.id) == chosen}>
                                    { format!("node {} · {}{}", t.id, t.role, if t.up { "" } else { " (down)" }) }
                                </option>
                            }) }
                        </select>
                    </label>
                </div>
                <div class="row">
                    <label class="grow">{ "key" }
                        <input id="op-key" value={(*key).clone()} oninput={text_input(key.clone())}
                            onchange={text_change(key.clone())}
                            autocomplete="off" spellcheck="false" />
                    </label>
                    <label class="grow">{ "value" }
                        <input id="op-value" value={(*value).clone()} oninput={text_input(value.clone())}
                            onchange={text_change(value.clone())}
                            disabled={*kind != OpKind::Set} autocomplete="off" spellcheck="false" />
                    </label>
                </div>
                <button id="op-send" type="submit" disabled={busy || chosen.is_none()}>
                    { if busy { "sending…".to_owned() } else { format!("{} on node {}", *kind, chosen.map_or("?".into(), |c| c.to_string())) } }
                </button>
            </form>
            { result_view(props.result.as_ref()) }
            { props.children.clone() }
        </section>
    }
}

fn result_view(result: Option<&FetchState<OpOutcome>>) -> Html {
    let Some(FetchState::Ready(o)) = result else {
        return html! { <div id="op-result" class="result empty" data-status="none"></div> };
    };
    let status = o.status.map_or("—".to_owned(), |s| s.to_string());
    let ok = o.status.is_some_and(|s| (200..300).contains(&s));
    let head = html! {
        <div class="result-head">
            <span class={classes!("status", if ok { "good" } else { "bad" })} id="op-result-status">
                { match o.status { Some(s) => format!("{s} {}", reason(s)), None => "no answer".into() } }
            </span>
            <span class="muted">{ format!("{} {} on node {}", o.request.kind, o.request.key, o.request.node) }</span>
            <span class="latency" id="op-result-latency">{ format!("{:.1} ms", o.latency_ms) }</span>
        </div>
    };
    let body = match &o.answer {
        OpAnswer::Written(w) => html! {
            <dl>
                <dt>{ "value" }</dt><dd id="op-result-value">{ &w.value }</dd>
                <dt>{ "version" }</dt>{ version_cell(w.version) }
                <dt>{ "status" }</dt><dd>{ format!("{:?}", w.status).to_lowercase() }</dd>
                <dt>{ "served by" }</dt>
                <dd id="op-result-served-by">
                    { w.served_by.map_or("—".into(), |n| format!("node {n}")) }
                    { w.forwarded_by.map(|f| format!(" (forwarded by node {f})")) }
                </dd>
            </dl>
        },
        OpAnswer::Read(r) => html! {
            <dl>
                <dt>{ "value" }</dt><dd id="op-result-value">{ &r.value }</dd>
                <dt>{ "version" }</dt>{ version_cell(r.version) }
                <dt>{ "served by" }</dt>
                <dd id="op-result-served-by">{ r.served_by.map_or("—".into(), |n| format!("node {n}")) }</dd>
            </dl>
        },
        OpAnswer::Refused(e) => {
            let mut details = Vec::new();
            if let (Some(a), Some(r)) = (e.acked, e.required) {
                details.push(format!("{a} of {r} required acks"));
            }
            if let Some(l) = e.leader {
                details.push(format!("leader: node {l}"));
            }
            html! {
                <div class="error-box">
                    <code id="op-result-error">{ &e.error }</code>
                    { (!details.is_empty()).then(|| html! { <div class="muted small">{ details.join(" · ") }</div> }) }
                </div>
            }
        }
        OpAnswer::Unreachable(why) => html! {
            <div class="error-box"><code id="op-result-error">{ why }</code></div>
        },
    };
    html! {
        <div id="op-result" class={classes!("result", if ok { "ok" } else { "err" })} data-status={status}>
            { head }{ body }
        </div>
    }
}

/// The reason phrase of the statuses the API uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
