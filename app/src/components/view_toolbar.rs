//! The view controls shared by every heatmap on the page: layout (matrix or lines), pieces
//! or words, colour scale, palette and threshold.

use leptos::prelude::*;

use crate::view::{Layout, Palette, Scale, ViewSettings};

/// A `<select>` bound to one field of the view settings.
fn choice<T: Copy + PartialEq + Send + Sync + 'static>(
    label: &'static str,
    testid: &'static str,
    options: &'static [(&'static str, &'static str, T)],
    view: RwSignal<ViewSettings>,
    get: fn(&ViewSettings) -> T,
    set: fn(&mut ViewSettings, T),
) -> impl IntoView {
    view! {
        <label class="view-choice">
            <span>{label}</span>
            <select
                data-testid=testid
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    if let Some((_, _, x)) = options.iter().find(|(key, _, _)| *key == v) {
                        view.update(|s| set(s, *x));
                    }
                }
            >
                {options
                    .iter()
                    .map(|&(key, text, x)| {
                        view! {
                            <option value=key prop:selected=move || view.with(|s| get(s) == x)>
                                {text}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
        </label>
    }
}

const LAYOUTS: &[(&str, &str, Layout)] = &[
    ("matrix", "matrix", Layout::Matrix),
    ("lines", "alignment lines", Layout::Lines),
];
const UNITS: &[(&str, &str, bool)] = &[
    ("pieces", "subword pieces", false),
    ("words", "words", true),
];
const SCALES: &[(&str, &str, Scale)] = &[
    (Scale::ALL[0].name(), Scale::ALL[0].label(), Scale::ALL[0]),
    (Scale::ALL[1].name(), Scale::ALL[1].label(), Scale::ALL[1]),
];
const PALETTES: &[(&str, &str, Palette)] = &[
    (
        Palette::ALL[0].name(),
        Palette::ALL[0].name(),
        Palette::ALL[0],
    ),
    (
        Palette::ALL[1].name(),
        Palette::ALL[1].name(),
        Palette::ALL[1],
    ),
    (
        Palette::ALL[2].name(),
        Palette::ALL[2].name(),
        Palette::ALL[2],
    ),
];

/// The toolbar.
#[component]
pub fn ViewToolbar(view: RwSignal<ViewSettings>) -> impl IntoView {
    view! {
        <div class="view-toolbar" role="group" aria-label="How to draw the attention">
            <span class="examples-label">"View:"</span>
            {choice("Layout", "view-layout", LAYOUTS, view, |s| s.layout, |s, x| s.layout = x)}
            {choice("Units", "view-units", UNITS, view, |s| s.words, |s, x| s.words = x)}
            {choice("Colour scale", "view-scale", SCALES, view, |s| s.scale, |s, x| s.scale = x)}
            {choice("Palette", "view-palette", PALETTES, view, |s| s.palette, |s, x| s.palette = x)}
            <label class="view-choice">
                <span>"Hide weights below"</span>
                <input
                    type="range"
                    data-testid="view-threshold"
                    min="0"
                    max="0.5"
                    step="0.01"
                    prop:value=move || view.with(|s| s.threshold.to_string())
                    on:input=move |ev| {
                        if let Ok(t) = event_target_value(&ev).parse::<f32>() {
                            view.update(|s| s.threshold = t);
                        }
                    }
                />
                <output>{move || format!("{:.2}", view.with(|s| s.threshold))}</output>
            </label>
        </div>
    }
}
