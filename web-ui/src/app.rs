//! The root component: the health of the node that served the page.

use crate::api::{self, FetchState};
use kv_shared::HealthResponse;
use yew::prelude::*;

/// Root of the dashboard.
#[function_component(App)]
pub fn app() -> Html {
    let health = use_state(|| FetchState::<HealthResponse>::Loading);
    {
        let health = health.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                health.set(api::health().await);
            });
        });
    }
    html! {
        <main class="card">
            <h1>{ "kv-store node" }</h1>
            { health_view(&health) }
        </main>
    }
}

fn health_view(state: &FetchState<HealthResponse>) -> Html {
    match state {
        FetchState::Loading => html! { <p id="health-status" data-status="loading">{ "Loading…" }</p> },
        FetchState::Failed(e) => html! {
            <p id="health-status" class="status-error" data-status="error">{ e.clone() }</p>
        },
        FetchState::Ready(h) => html! {
            <dl>
                <dt>{ "Status" }</dt>
                <dd id="health-status" class="status-healthy" data-status={h.status.clone()}>{ &h.status }</dd>
                <dt>{ "Node" }</dt><dd id="health-node">{ h.node_id }</dd>
                <dt>{ "Mode" }</dt><dd id="health-mode">{ h.mode.to_string() }</dd>
                <dt>{ "Role" }</dt><dd id="health-role">{ h.role.to_string() }</dd>
                <dt>{ "Keys" }</dt><dd id="health-keys">{ h.keys }</dd>
                <dt>{ "Time" }</dt><dd>{ &h.time }</dd>
            </dl>
        },
    }
}
