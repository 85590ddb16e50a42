//! The root component: owns the state (a reducer), the live feed and the
//! animation clock, runs the API calls the panels ask for, and lays the
//! panels out.

use crate::api::{self, EventFeed, FaultOutcome, FetchState, OpRequest};
use crate::components::controls::{ConfigRequest, Controls};
use crate::components::events::Events;
use crate::components::faults::{FaultOrder, Faults};
use crate::components::header::Header;
use crate::components::lag::{FaultMark, Lag};
use crate::components::ops::{Ops, Target};
use crate::components::reads::Reads;
use crate::components::time::TimeControls;
use crate::components::topology::Topology;
use crate::components::writes::Writes;
use crate::state::{Action, Link, State, TimeControl};
use gloo_timers::callback::{Interval, Timeout};
use kv_shared::events::NodeEventKind;
use kv_shared::Mode;
use std::collections::BTreeMap;
use yew::prelude::*;

/// Animation frame interval, in ms.
const FRAME_MS: u32 = 40;
/// How often the serving node's `/health` is asked again, in ms.
const HEALTH_EVERY_MS: u32 = 5_000;
/// Wait before reopening a feed the browser closed, in ms.
const REOPEN_AFTER_MS: u32 = 2_000;

/// Root of the dashboard.
#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(State::default);
    // Bumped to reopen the live feed after the browser closed it.
    let feed_generation = use_state(|| 0u32);

    use_first_render_mark();
    use_health(state.dispatcher());
    use_clock(state.dispatcher());
    use_feed(state.dispatcher(), feed_generation);

    let on_run = {
        let dispatch = state.dispatcher();
        let view = state.view.clone();
        Callback::from(move |req: OpRequest| {
            let base = api::base_url(view.as_ref(), req.node);
            let dispatch = dispatch.clone();
            dispatch.dispatch(Action::OpStarted);
            wasm_bindgen_futures::spawn_local(async move {
                dispatch.dispatch(Action::OpFinished(api::run_op(&base, req).await));
            });
        })
    };
    let on_config = {
        let dispatch = state.dispatcher();
        Callback::from(move |req: ConfigRequest| {
            let dispatch = dispatch.clone();
            dispatch.dispatch(Action::ConfigStarted);
            wasm_bindgen_futures::spawn_local(async move {
                let result = api::change_config(req.update, req.token).await;
                dispatch.dispatch(Action::ConfigFinished(result));
            });
        })
    };

    // Every fault injected or healed, on the slider and the lag charts.
    let fault_marks: Vec<FaultMark> = state
        .node_events
        .iter()
        .filter_map(|e| match &e.kind {
            NodeEventKind::Fault { description } => Some(FaultMark {
                node: e.node,
                at_ms: e.at_ms,
                description: description.clone(),
            }),
            _ => None,
        })
        .collect();
    let time = {
        let control = |f: fn(f64) -> TimeControl| {
            let d = state.dispatcher();
            Callback::from(move |x: f64| d.dispatch(Action::Time(f(x), api::now_ms())))
        };
        let fixed = |c: TimeControl| {
            let d = state.dispatcher();
            Callback::from(move |_: ()| d.dispatch(Action::Time(c, api::now_ms())))
        };
        html! {
            <TimeControls mode={state.time} speed={state.speed} display={state.display_ms()}
                live={state.live_ms()} start={state.history_start_ms()} received={state.received}
                on_pause={fixed(TimeControl::Pause)} on_resume={fixed(TimeControl::Resume)}
                on_live={fixed(TimeControl::GoLive)} on_speed={control(TimeControl::Speed)}
                on_seek={control(TimeControl::Seek)} faults={fault_marks.clone()} />
        }
    };
    // The live view for the forms; the drawn instant's for the pictures.
    let view = state.view.clone();
    let shown = state.shown_view().cloned();
    // The admin token: typed once (in either panel), kept for the tab's session.
    let token = use_state(api::session_token);
    let on_token = {
        let token = token.clone();
        Callback::from(move |t: String| {
            api::keep_session_token(t.trim());
            token.set(t);
        })
    };
    let fault_outcome = use_state(|| None::<FetchState<Vec<FaultOutcome>>>);
    let on_fault = use_fault_orders(state.view.clone(), fault_outcome.clone());

    let targets: Vec<Target> = view
        .iter()
        .flat_map(|v| v.replicas.iter())
        .map(|r| Target {
            id: r.id,
            role: r.role,
            up: r.up,
        })
        .collect();
    let shown_at = shown.as_ref().map_or(0, |v| v.at_ms);
    let current_lag: BTreeMap<_, _> = state
        .lag
        .iter()
        .filter_map(|(&id, samples)| {
            let i = samples.partition_point(|s| s.at_ms <= shown_at);
            samples.get(i.saturating_sub(1)).map(|l| (id, *l))
        })
        .collect();
    // The lag charts end at the drawn instant too.
    let lag_until: BTreeMap<_, _> = state
        .lag
        .iter()
        .map(|(&id, samples)| {
            let upto: std::collections::VecDeque<_> = samples
                .iter()
                .filter(|s| s.at_ms <= shown_at)
                .copied()
                .collect();
            (id, upto)
        })
        .collect();
    let reads: Vec<_> = state.reads_shown().into_iter().cloned().collect();
    let replica_ids: Vec<_> = targets.iter().map(|t| t.id).collect();
    let stale = !matches!(state.link, Link::Live);
    html! {
        <>
        <Header health={state.health.clone()} link={state.link.clone()} view={shown.clone()} />
        <main class="grid">
            <div class="col wide">
                { time }
                <Topology view={shown.clone()} dots={state.dots()} flashing={state.flashing()}
                    votes={state.votes()} exchanges={state.exchanges()} lag={current_lag} stale={stale} />
                <Writes traces={state.timeline()} playback={state.display_ms()}
                    rolled_back={state.rolled_back.clone()} />
                <Events log={state.log.clone()} until={state.display_ms()} />
            </div>
            <div class="col">
                <Ops targets={targets.clone()} default_node={view.as_ref().map(|v| v.observer)}
                    result={state.op.clone()} on_run={on_run}>
                    <Reads reads={reads} traces={state.traces.clone()} replicas={replica_ids} />
                </Ops>
                <Controls config={view.as_ref().map(|v| v.config)} change={state.config_change.clone()}
                    on_change={on_config} token={(*token).clone()} on_token={on_token.clone()} />
                <Faults replicas={view.as_ref().map(|v| v.replicas.clone()).unwrap_or_default()}
                    leaderless={view.as_ref().is_some_and(|v| v.mode == Mode::Leaderless)}
                    outcome={(*fault_outcome).clone()} token={(*token).clone()} on_token={on_token}
                    on_order={on_fault} />
                <Lag lag={lag_until}
                    faults={fault_marks.into_iter().filter(|m| m.at_ms <= shown_at).collect::<Vec<_>>()}
                    replicas={targets.iter().map(|t| (t.id, t.role)).collect::<Vec<_>>()} />
            </div>
        </main>
        <footer class="muted small">
            { "Live data: the serving node's /events stream (Server-Sent Events); it gathers its peers' /status server-side. \
               Boxes, messages and timelines show one instant on the cluster's recorded clock: live, " }
            { crate::state::PLAYBACK_DELAY_MS as u32 }{ " ms behind real time; or wherever the time controls put it." }
        </footer>
        </>
    }
}

/// Sends each fault order to its nodes at once (each at the URL the
/// cluster snapshot gives for it) and shows every node's answer.
#[hook]
fn use_fault_orders(
    view: Option<kv_shared::events::ClusterView>,
    outcome: UseStateHandle<Option<FetchState<Vec<FaultOutcome>>>>,
) -> Callback<FaultOrder> {
    Callback::from(move |order: FaultOrder| {
        outcome.set(Some(FetchState::Loading));
        let bases: Vec<_> = order
            .nodes
            .iter()
            .map(|&n| (n, api::base_url(view.as_ref(), n)))
            .collect();
        let outcome = outcome.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let calls = bases
                .iter()
                .map(|(n, base)| api::post_fault(base, *n, &order.token, &order.request));
            let answers = futures_util::future::join_all(calls).await;
            outcome.set(Some(FetchState::Ready(answers)));
        });
    })
}

/// Marks the first render in the browser's performance timeline
/// (`dashboard-rendered`), so that tests and people can read the time from
/// navigation to a drawn page.
#[hook]
fn use_first_render_mark() {
    use_effect_with((), |_| {
        if let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark("dashboard-rendered");
        }
    });
}

/// Asks `/health` now and every [`HEALTH_EVERY_MS`].
#[hook]
fn use_health(dispatch: UseReducerDispatcher<State>) {
    use_effect_with((), move |_| {
        let fetch = move || {
            let dispatch = dispatch.clone();
            wasm_bindgen_futures::spawn_local(async move {
                dispatch.dispatch(Action::Health(api::health().await));
            });
        };
        fetch();
        let interval = Interval::new(HEALTH_EVERY_MS, fetch);
        move || drop(interval)
    });
}

/// Ticks the animation clock every [`FRAME_MS`].
#[hook]
fn use_clock(dispatch: UseReducerDispatcher<State>) {
    use_effect_with((), move |_| {
        let interval = Interval::new(FRAME_MS, move || {
            dispatch.dispatch(Action::Tick(api::now_ms()))
        });
        move || drop(interval)
    });
}

/// Keeps the `/events` feed open; reopens it when the browser closes it.
#[hook]
fn use_feed(dispatch: UseReducerDispatcher<State>, generation: UseStateHandle<u32>) {
    let deps = *generation;
    use_effect_with(deps, move |_| {
        let on_event = {
            let dispatch = dispatch.clone();
            Callback::from(move |(event, received_at)| {
                dispatch.dispatch(Action::Event { event, received_at })
            })
        };
        let reopen = {
            let generation = generation.clone();
            move || {
                let generation = generation.clone();
                Timeout::new(REOPEN_AFTER_MS, move || {
                    generation.set(deps.wrapping_add(1))
                })
                .forget();
            }
        };
        let on_closed = {
            let dispatch = dispatch.clone();
            let reopen = reopen.clone();
            Callback::from(move |why: String| {
                dispatch.dispatch(Action::LinkClosed(why));
                reopen();
            })
        };
        dispatch.dispatch(Action::FeedOpened);
        let feed = match EventFeed::open(on_event, on_closed) {
            Ok(feed) => Some(feed),
            Err(why) => {
                dispatch.dispatch(Action::LinkClosed(why));
                reopen();
                None
            }
        };
        move || drop(feed)
    });
}
