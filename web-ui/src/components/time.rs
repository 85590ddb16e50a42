//! The time controls: pause, resume, slow motion (1×, ¼×, ⅒×), back to live,
//! and a slider over the recorded history (as RaftScope's). Everything on the
//! page is drawn at the instant these controls choose, on the cluster's
//! recorded timestamps.

use crate::state::{TimeMode, SPEEDS};
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// Props of [`TimeControls`].
#[derive(Properties, PartialEq)]
pub struct TimeProps {
    /// Live, paused or replaying.
    pub mode: TimeMode,
    /// Replay speed.
    pub speed: f64,
    /// The drawn instant (cluster ms).
    pub display: Option<f64>,
    /// The live instant (cluster ms).
    pub live: Option<f64>,
    /// The oldest recorded instant (cluster ms).
    pub start: Option<u64>,
    /// Events received since the page opened.
    pub received: u64,
    /// Pause.
    pub on_pause: Callback<()>,
    /// Resume from the drawn instant.
    pub on_resume: Callback<()>,
    /// Back to live.
    pub on_live: Callback<()>,
    /// Choose a speed.
    pub on_speed: Callback<f64>,
    /// Show a recorded instant.
    pub on_seek: Callback<f64>,
}

fn mode_name(m: TimeMode) -> &'static str {
    match m {
        TimeMode::Live => "live",
        TimeMode::Paused { .. } => "paused",
        TimeMode::Playing { .. } => "playing",
    }
}

fn speed_label(s: f64) -> String {
    if s >= 1.0 {
        "1×".to_owned()
    } else {
        format!("1/{}×", (1.0 / s).round())
    }
}

/// The time controls.
#[function_component(TimeControls)]
pub fn time_controls(p: &TimeProps) -> Html {
    let (Some(display), Some(live)) = (p.display, p.live) else {
        return html! {
            <section id="time-controls" class="card time" data-mode="connecting" data-events={p.received.to_string()}>
                <p class="muted small">{ "Time controls: waiting for the first live snapshot…" }</p>
            </section>
        };
    };
    let start = p.start.map_or(display, |s| s as f64).min(display);
    let behind_s = ((live - display) / 1_000.0).max(0.0);
    let paused = matches!(p.mode, TimeMode::Paused { .. });
    let on_input = {
        let on_seek = p.on_seek.clone();
        Callback::from(move |e: InputEvent| {
            let v = e.target_unchecked_into::<HtmlInputElement>().value();
            if let Ok(v) = v.parse::<f64>() {
                on_seek.emit(v);
            }
        })
    };
    let play = if paused {
        let cb = p.on_resume.clone();
        html! { <button id="time-play" onclick={move |_| cb.emit(())} title="go on from here">{ "▶ resume" }</button> }
    } else {
        let cb = p.on_pause.clone();
        html! { <button id="time-pause" onclick={move |_| cb.emit(())} title="freeze the picture">{ "❚❚ pause" }</button> }
    };
    let speeds = SPEEDS.iter().map(|&s| {
        let cb = p.on_speed.clone();
        let id = format!("speed-{}", (1.0 / s).round());
        let on = (p.speed - s).abs() < 1e-9;
        html! {
            <button id={id} class={classes!("speed", on.then_some("on"))} onclick={move |_| cb.emit(s)}>
                { speed_label(s) }
            </button>
        }
    });
    let go_live = {
        let cb = p.on_live.clone();
        html! {
            <button id="time-live" class={classes!((p.mode == TimeMode::Live).then_some("on"))}
                onclick={move |_| cb.emit(())}>{ "● live" }</button>
        }
    };
    html! {
        <section id="time-controls" class="card time" data-mode={mode_name(p.mode)}
            data-display-ms={format!("{display:.0}")} data-events={p.received.to_string()}>
            <div class="row">
                { play }
                { for speeds }
                { go_live }
                <span id="time-behind" class="muted small">{
                    if p.mode == TimeMode::Live { "live (drawn 250 ms behind real time)".to_owned() }
                    else { format!("{behind_s:.1} s behind live · {}", speed_label(p.speed)) }
                }</span>
            </div>
            <input id="time-slider" type="range" min={format!("{start:.0}")} max={format!("{live:.0}")}
                step="10" value={format!("{display:.0}")} oninput={on_input}
                title="move through the recorded history" />
            <div class="row muted small">
                <span>{ format!("{:.0} s ago", (live - start) / 1_000.0) }</span>
                <span class="grow"></span>
                <span>{ "now" }</span>
            </div>
        </section>
    }
}
