//! The page header: which node serves the page, its health, the state of the
//! live feed, and a banner when part of the cluster is down.

use crate::api::FetchState;
use crate::state::Link;
use kv_shared::events::ClusterView;
use kv_shared::HealthResponse;
use yew::prelude::*;

/// Props of [`Header`].
#[derive(Properties, PartialEq)]
pub struct HeaderProps {
    /// `/health` of the serving node.
    pub health: FetchState<HealthResponse>,
    /// State of the live feed.
    pub link: Link,
    /// The last cluster snapshot, if any.
    pub view: Option<ClusterView>,
}

/// The header and the outage banner.
#[function_component(Header)]
pub fn header(props: &HeaderProps) -> Html {
    html! {
        <>
        <header class="topbar">
            <div class="brand">
                <span class="logo">{ "kv" }</span>
                <h1>{ "Replicated key-value store" }</h1>
            </div>
            { health_view(&props.health, &props.link) }
            { link_badge(&props.link) }
        </header>
        { banner(&props.link, props.view.as_ref()) }
        </>
    }
}

fn health_view(health: &FetchState<HealthResponse>, link: &Link) -> Html {
    // A silent feed outranks a `/health` answer that may be seconds old.
    if let (Link::Stale | Link::Closed(_), FetchState::Ready(h)) = (link, health) {
        return html! {
            <div class="health">
                { "served by node " }<b id="health-node">{ h.node_id }</b>
                <span class="sep">{ "·" }</span>
                <span id="health-mode">{ h.mode.to_string() }</span>
                <span class="sep">{ "·" }</span>
                <span id="health-status" class="bad" data-status="unreachable">{ "not answering" }</span>
            </div>
        };
    }
    match health {
        FetchState::Loading => html! {
            <div class="health"><span id="health-status" data-status="loading">{ "…" }</span></div>
        },
        FetchState::Failed(e) => html! {
            <div class="health">
                <span id="health-status" class="bad" data-status="unreachable" title={e.clone()}>{ "not answering" }</span>
            </div>
        },
        FetchState::Ready(h) => html! {
            <div class="health">
                { "served by node " }<b id="health-node">{ h.node_id }</b>
                <span class="sep">{ "·" }</span>
                <span id="health-mode">{ h.mode.to_string() }</span>
                <span class="sep">{ "·" }</span>
                <span id="health-role">{ h.role.to_string() }</span>
                <span class="sep">{ "·" }</span>
                <span id="health-status" class="good" data-status={h.status.clone()}>{ &h.status }</span>
            </div>
        },
    }
}

fn link_badge(link: &Link) -> Html {
    let (class, text, state) = match link {
        Link::Connecting => ("badge wait", "connecting…", "connecting"),
        Link::Live => ("badge live", "live", "live"),
        Link::Stale => ("badge bad", "feed lost — retrying", "stale"),
        Link::Closed(_) => ("badge bad", "feed closed — retrying", "closed"),
    };
    html! { <span id="feed-status" class={class} data-state={state}>{ text }</span> }
}

fn banner(link: &Link, view: Option<&ClusterView>) -> Html {
    let lost = match link {
        Link::Stale => Some(
            "No news from the node serving this page for a few seconds: it may be down. \
            The last known state is shown greyed; the page reconnects by itself."
                .to_owned(),
        ),
        Link::Closed(why) => Some(format!("The live feed closed ({why}); reconnecting…")),
        _ => None,
    };
    if let Some(msg) = lost {
        return html! { <div id="banner" class="banner bad">{ msg }</div> };
    }
    let down: Vec<String> = view
        .iter()
        .flat_map(|v| v.replicas.iter().filter(|r| !r.up))
        .map(|r| match &r.error {
            Some(e) => format!("node {} ({e})", r.id),
            None => format!("node {}", r.id),
        })
        .collect();
    if down.is_empty() {
        return html! {};
    }
    html! {
        <div id="banner" class="banner warn">
            { format!("{} down: {}. The rest of the cluster keeps serving; this page keeps updating.",
                if down.len() == 1 { "1 replica is".to_owned() } else { format!("{} replicas are", down.len()) },
                down.join(", ")) }
        </div>
    }
}
