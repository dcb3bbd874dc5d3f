//! The player: first, back, play or pause, forward and every-step buttons, a slider over the
//! steps, a speed picker and the keyboard shortcuts (← →, Space, Home, End) that step the
//! decoding shown by every run at once.

use std::time::Duration;

use leptos::leptos_dom::helpers::{
    IntervalHandle, set_interval_with_handle, window_event_listener,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::playback::{Action, Playback, SPEEDS};

/// Whether a key pressed in `target` belongs to it rather than to the player: typing, the
/// heatmap's own arrow keys, a control that Space would press.
fn key_is_taken(target: Option<web_sys::EventTarget>, key: &str) -> bool {
    let Some(el) = target.and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else {
        return false;
    };
    let own = "input, textarea, select, [role=grid], [contenteditable]";
    let pressable = "button, a, summary, label";
    let inside = |sel: &str| el.closest(sel).ok().flatten().is_some();
    inside(own) || (key == " " && inside(pressable))
}

/// The player over decodings of `total` steps (the longest shown run), usable once `ready`.
#[component]
pub fn PlaybackBar(
    #[prop(into)] total: Signal<usize>,
    #[prop(into)] ready: Signal<bool>,
) -> impl IntoView {
    let playback = Playback::from_context();
    let act = move |a: Action| playback.apply(a, total.get_untracked());

    // The timer runs while playing, at the chosen speed.
    let timer = StoredValue::new_local(None::<IntervalHandle>);
    Effect::new(move |_| {
        let playing = playback.playing.get();
        let speed = playback.speed.get();
        if let Some(h) = timer.get_value() {
            h.clear();
            timer.set_value(None);
        }
        if playing {
            let every = Duration::from_secs_f64(1.0 / speed.max(0.1));
            if let Ok(h) = set_interval_with_handle(move || act(Action::Tick), every) {
                timer.set_value(Some(h));
            }
        }
    });
    on_cleanup(move || {
        if let Some(h) = timer.get_value() {
            h.clear();
        }
    });
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.ctrl_key() || ev.meta_key() || ev.alt_key() || !ready.get_untracked() {
            return;
        }
        let key = ev.key();
        if let Some(a) = Action::of_key(&key)
            && !key_is_taken(ev.target(), &key)
        {
            ev.prevent_default();
            act(a);
        }
    });
    on_cleanup(move || keys.remove());

    let position = move || match (playback.step.get(), total.get()) {
        (_, 0) => "no steps yet".to_owned(),
        (None, n) => format!("all {n} steps"),
        (Some(k), n) => format!("step {} of {n}", k.min(n - 1) + 1),
    };
    let button =
        move |label: &'static str, title: &'static str, testid: &'static str, a: Action| {
            view! {
                <button
                    type="button"
                    class="example"
                    title=title
                    aria-label=title
                    data-testid=testid
                    disabled=move || !ready.get()
                    on:click=move |_| act(a)
                >
                    {label}
                </button>
            }
        };
    view! {
        <section class="panel playback" data-testid="playback" aria-label="Step through the decoding">
            {button("|\u{25c0}", "First step (Home)", "play-first", Action::First)}
            {button("\u{25c0}", "Step back (\u{2190})", "play-back", Action::Back)}
            <button
                type="button"
                class="primary play"
                data-testid="play-toggle"
                aria-pressed=move || playback.playing.get().to_string()
                title="Play or pause (Space)"
                disabled=move || !ready.get()
                on:click=move |_| act(Action::Toggle)
            >
                {move || if playback.playing.get() { "\u{2016} Pause" } else { "\u{25b6} Play" }}
            </button>
            {button("\u{25b6}", "Step forward (\u{2192})", "play-forward", Action::Forward)}
            {button("\u{25b6}|", "Every step (End)", "play-all", Action::All)}
            <input
                type="range"
                min="1"
                data-testid="play-slider"
                aria-label="Step"
                prop:max=move || total.get().max(1).to_string()
                prop:value=move || {
                    playback.step.get().map_or(total.get(), |k| k + 1).to_string()
                }
                disabled=move || !ready.get()
                on:input=move |ev| {
                    if let Ok(n) = event_target_value(&ev).parse::<usize>() {
                        act(Action::Goto(n.saturating_sub(1)));
                    }
                }
            />
            <span class="play-pos" data-testid="play-position" role="status">{position}</span>
            <label class="play-speed">
                "Speed "
                <select
                    data-testid="play-speed"
                    on:change=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                            playback.speed.set(v);
                        }
                    }
                >
                    {SPEEDS
                        .iter()
                        .map(|&s| {
                            view! {
                                <option
                                    value=s.to_string()
                                    prop:selected=move || (playback.speed.get() - s).abs() < 1e-9
                                >
                                    {format!("{s} steps/s")}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
        </section>
    }
}
