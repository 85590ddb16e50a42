//! The controls: N, W, R and the delay profile in force, a form to change W
//! and R (`POST /config`; with the admin token when the node has one) and a
//! switch for the assignment's delay profile (needs the admin token).

use crate::api::FetchState;
use kv_shared::cluster::{ClusterConfig, ConfigUpdate, DelayProfile};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

/// A change the user asked for, and the admin token to send with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRequest {
    /// The fields to change.
    pub update: ConfigUpdate,
    /// The admin token typed by the user, if any.
    pub token: Option<String>,
}

/// Props of [`Controls`].
#[derive(Properties, PartialEq)]
pub struct ControlsProps {
    /// The configuration in force, once known.
    pub config: Option<ClusterConfig>,
    /// The result of the last change.
    pub change: Option<FetchState<ClusterConfig>>,
    /// Called when the user asks for a change.
    pub on_change: Callback<ConfigRequest>,
    /// The admin token typed so far (shared with the fault panel).
    pub token: String,
    /// Called with the token as the user types it.
    pub on_token: Callback<String>,
}

/// The W/R and delay-profile controls.
#[function_component(Controls)]
pub fn controls(props: &ControlsProps) -> Html {
    let w = use_state(|| None::<u32>);
    let r = use_state(|| None::<u32>);
    let Some(config) = props.config else {
        return html! {
            <section class="card"><h2>{ "Quorums & delays" }</h2><p class="muted">{ "…" }</p></section>
        };
    };
    let (cur_w, cur_r) = ((*w).unwrap_or(config.w), (*r).unwrap_or(config.r));
    let pick = |state: UseStateHandle<Option<u32>>| {
        Callback::from(move |e: Event| {
            state.set(
                e.target_unchecked_into::<HtmlSelectElement>()
                    .value()
                    .parse()
                    .ok(),
            )
        })
    };
    let options = |selected: u32| {
        (1..=config.n)
            .map(
                |i| html! { <option value={i.to_string()} selected={i == selected}>{ i }</option> },
            )
            .collect::<Html>()
    };
    let token = props.token.clone();
    let apply = {
        let (on_change, w, r, token) =
            (props.on_change.clone(), w.clone(), r.clone(), token.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            on_change.emit(ConfigRequest {
                update: ConfigUpdate {
                    w: Some(cur_w),
                    r: Some(cur_r),
                    delay_profile: None,
                },
                token: Some(token.clone()),
            });
            w.set(None);
            r.set(None);
        })
    };
    let delays_on = config.delay_profile.is_on();
    let toggle = {
        let (on_change, token) = (props.on_change.clone(), token.clone());
        Callback::from(move |_| {
            on_change.emit(ConfigRequest {
                update: ConfigUpdate {
                    delay_profile: Some(if delays_on {
                        DelayProfile::OFF
                    } else {
                        DelayProfile::ASSIGNMENT
                    }),
                    ..Default::default()
                },
                token: Some(token.clone()),
            })
        })
    };
    let on_token = {
        let on_token = props.on_token.clone();
        Callback::from(move |e: InputEvent| {
            on_token.emit(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };
    let d = config.delay_profile;
    let strong = config.is_strong();
    html! {
        <section class="card controls">
            <h2>{ "Quorums & delays" }</h2>
            <div class="quorum" id="quorum" data-n={config.n.to_string()} data-w={config.w.to_string()} data-r={config.r.to_string()}>
                <span class="big">{ format!("N{} W{} R{}", config.n, config.w, config.r) }</span>
                <span class={classes!("pill", if strong { "good" } else { "warn" })}>
                    { if strong { format!("R+W={} > N: reads see acknowledged writes", config.r + config.w) }
                      else { format!("R+W={} ≤ N: reads may be stale", config.r + config.w) } }
                </span>
            </div>
            <form class="row" onsubmit={apply}>
                <label>{ "W" }<select id="cfg-w" key={format!("w{cur_w}")} onchange={pick(w.clone())}>{ options(cur_w) }</select></label>
                <label>{ "R" }<select id="cfg-r" key={format!("r{cur_r}")} onchange={pick(r.clone())}>{ options(cur_r) }</select></label>
                <button id="cfg-apply" type="submit">{ "apply W/R" }</button>
            </form>
            <div class="row delays">
                <span id="delay-profile" data-on={delays_on.to_string()}>
                    { if delays_on {
                        format!("delay profile on: {} ms after each send, {} ms before each ack, {} ms before a remote read",
                            d.send_ms, d.ack_ms, d.remote_read_ms)
                      } else { "delay profile off".to_owned() } }
                </span>
            </div>
            <div class="row">
                <label class="grow">{ "admin token" }
                    <input id="cfg-token" type="password" value={token.clone()} oninput={on_token}
                        placeholder="for the delay profile (and W/R if the node has one)" autocomplete="off" />
                </label>
                <button id="cfg-delays" type="button" onclick={toggle}>
                    { if delays_on { "turn delays off" } else { "turn assignment delays on" } }
                </button>
            </div>
            { change_view(props.change.as_ref()) }
        </section>
    }
}

fn change_view(change: Option<&FetchState<ClusterConfig>>) -> Html {
    match change {
        None => html! {},
        Some(FetchState::Loading) => {
            html! { <p id="cfg-result" class="muted small">{ "applying…" }</p> }
        }
        Some(FetchState::Ready(c)) => html! {
            <p id="cfg-result" class="small good" data-ok="true">
                { format!("applied: N{} W{} R{}, delays {}", c.n, c.w, c.r, if c.delay_profile.is_on() { "on" } else { "off" }) }
            </p>
        },
        Some(FetchState::Failed(e)) => html! {
            <p id="cfg-result" class="small bad" data-ok="false"><code>{ e }</code></p>
        },
    }
}
