//! The time controls: pause, resume, slow motion (1×, ¼×, ⅒×), back to live,
//! and a slider over the recorded history (as RaftScope's). Everything on the
//! page is drawn at the instant these controls choose, on the cluster's
//! recorded timestamps. Every fault injected or healed is a mark on the
//! slider's track; a click on a mark shows that instant.

use crate::components::lag::FaultMark;
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
    /// Faults injected or healed, marked on the slider's track.
    #[prop_or_default]
    pub faults: Vec<FaultMark>,
}

/// Where on the track (0–100 %) `at_ms` lies between `start` and `live`,
/// if within them.
pub fn track_position(at_ms: u64, start: f64, live: f64) -> Option<f64> {
    let at = at_ms as f64;
    (live > start && (start..=live).contains(&at)).then(|| (at - start) / (live - start) * 100.0)
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
            <div id="time-faults" class="fault-track">
                { for p.faults.iter().filter_map(|f| {
                    let left = track_position(f.at_ms, start, live)?;
                    let seek = p.on_seek.clone();
                    let at = f.at_ms as f64;
                    let heal = f.description.starts_with("healed");
                    Some(html! {
                        <span class={classes!("mark", heal.then_some("heal"))}
                            data-node={f.node.to_string()} data-at-ms={f.at_ms.to_string()}
                            style={format!("left: {left:.2}%")}
                            title={format!("node {}: {}", f.node, f.description)}
                            onclick={move |_| seek.emit(at)} />
                    })
                }) }
            </div>
            <div class="row muted small">
                <span>{ format!("{:.0} s ago", (live - start) / 1_000.0) }</span>
                <span class="grow"></span>
                <span>{ "now" }</span>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_sit_where_their_instant_is_on_the_track() {
        assert_eq!(track_position(1_500, 1_000.0, 2_000.0), Some(50.0));
        assert_eq!(track_position(1_000, 1_000.0, 2_000.0), Some(0.0));
        assert_eq!(
            track_position(999, 1_000.0, 2_000.0),
            None,
            "before the history"
        );
        assert_eq!(track_position(2_001, 1_000.0, 2_000.0), None, "after live");
        assert_eq!(
            track_position(1_000, 1_000.0, 1_000.0),
            None,
            "no track yet"
        );
    }
}
