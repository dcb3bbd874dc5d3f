//! The model and attention-mode selectors of a run.

use attnscope_protocol::ModelInfo;
use leptos::prelude::*;

use crate::models::{default_name, describe};

/// A `<select data-testid="model-select">` over the server's models. `selected` is `None`
/// while the user keeps the server's default. A failure to load the list is shown next to it
/// (translations then use the server's default model).
#[component]
pub fn ModelPicker(
    /// The `id` of the `<select>` (unique on the page).
    id: &'static str,
    /// The models from `GET /api/models`.
    models: RwSignal<Vec<ModelInfo>>,
    /// The chosen model, `None` for the server's default.
    selected: RwSignal<Option<String>>,
    /// Why the model list could not be loaded, if it could not.
    load_error: RwSignal<Option<String>>,
) -> impl IntoView {
    let current = move || {
        selected
            .get()
            .or_else(|| models.with(|m| default_name(m).map(str::to_owned)))
    };
    let info = move || {
        let name = current()?;
        models.with(|m| m.iter().find(|m| m.name == name).map(describe))
    };
    view! {
        <div class="model-picker">
            <label for=id>"Model"</label>
            <select
                id=id
                data-testid="model-select"
                prop:disabled=move || models.with(Vec::is_empty)
                on:change=move |ev| selected.set(Some(event_target_value(&ev)))
            >
                <Show when=move || models.with(Vec::is_empty)>
                    <option value="">
                        {move || {
                            if load_error.with(Option::is_some) { "default" } else { "loading\u{2026}" }
                        }}
                    </option>
                </Show>
                <For
                    each=move || models.get()
                    key=|m| m.name.clone()
                    children=move |m| {
                        let name = m.name.clone();
                        let is_current = {
                            let name = name.clone();
                            move || current().as_deref() == Some(name.as_str())
                        };
                        let broken = m.error.clone();
                        view! {
                            <option
                                value=name.clone()
                                prop:selected=is_current
                                disabled=broken.is_some()
                                title=broken.clone().unwrap_or_default()
                            >
                                {name.clone()}
                                {m.default.then_some(" (default)")}
                                {broken.is_some().then_some(" (cannot be loaded)")}
                            </option>
                        }
                    }
                />
            </select>
            <span class="model-info">{info}</span>
            {move || {
                load_error
                    .get()
                    .map(|e| {
                        view! {
                            <span class="models-error" role="status">
                                {format!("Could not load the model list: {e}")}
                            </span>
                        }
                    })
            }}
        </div>
    }
}

/// A `<select data-testid="mode-select">` over the attention modes of the run's model
/// (`soft`, `hard`, `sampled`, `sparsemax`, `uniform`, `shuffled`); the first option keeps
/// the model's own default.
#[component]
pub fn ModePicker(
    /// The `id` of the `<select>` (unique on the page).
    id: &'static str,
    /// The models from `GET /api/models`.
    models: RwSignal<Vec<ModelInfo>>,
    /// The run's model, `None` for the server's default.
    model: RwSignal<Option<String>>,
    /// The chosen mode, `None` for the model's default.
    mode: RwSignal<Option<String>>,
) -> impl IntoView {
    let info = move || {
        let name = model
            .get()
            .or_else(|| models.with(|m| default_name(m).map(str::to_owned)))?;
        models.with(|m| m.iter().find(|m| m.name == name).cloned())
    };
    let modes = move || info().map(|m| m.modes).unwrap_or_default();
    let default_label = move || match info() {
        Some(m) if !m.default_mode.is_empty() => format!("model default ({})", m.default_mode),
        _ => "model default".to_owned(),
    };
    view! {
        <div class="mode-picker">
            <label for=id>"Attention"</label>
            <select
                id=id
                data-testid="mode-select"
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    mode.set((!v.is_empty()).then_some(v));
                }
            >
                <option value="" prop:selected=move || mode.with(Option::is_none)>
                    {default_label}
                </option>
                <For
                    each=modes
                    key=|m| m.clone()
                    children=move |m| {
                        let is_current = {
                            let m = m.clone();
                            move || mode.get().as_deref() == Some(m.as_str())
                        };
                        view! {
                            <option value=m.clone() prop:selected=is_current>
                                {m.clone()}
                            </option>
                        }
                    }
                />
            </select>
        </div>
    }
}

/// What attention shows, in the words of the "Heatmap shows" picker.
pub const ATTENTION_ABOUT: &str = "The weights the decoder used to mix the source states at this step: where the model looked. Looking is not the same as deciding, so compare it with an attribution.";

/// A `<select data-testid="show-select">`: what the run's heatmap shows, the attention or
/// one of the attribution methods, with two sentences on what it measures below it.
/// Choosing translates the run again (attributions are computed with the translation).
#[component]
pub fn ShowPicker(
    /// The `id` of the `<select>` (unique on the page).
    id: &'static str,
    /// The shown method, `None` for the attention.
    show: RwSignal<Option<String>>,
    /// Called after a change.
    on_change: Callback<()>,
) -> impl IntoView {
    let about = move || {
        show.with(
            |s| match s.as_deref().and_then(attnscope_protocol::explain_method) {
                Some(m) => m.about,
                None => ATTENTION_ABOUT,
            },
        )
    };
    view! {
        <div class="show-picker">
            <label for=id>"Heatmap shows"</label>
            <select
                id=id
                data-testid="show-select"
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    show.set((!v.is_empty()).then_some(v));
                    on_change.run(());
                }
            >
                <option value="" prop:selected=move || show.with(Option::is_none)>
                    "attention"
                </option>
                {attnscope_protocol::EXPLAIN_METHODS
                    .iter()
                    .map(|m| {
                        view! {
                            <option
                                value=m.name
                                prop:selected=move || show.get().as_deref() == Some(m.name)
                            >
                                {m.label}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
            <p class="hint show-about" data-testid="show-about">{about}</p>
        </div>
    }
}
