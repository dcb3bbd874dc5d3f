//! The model selector.

use attnscope_protocol::ModelInfo;
use leptos::prelude::*;

use crate::models::{default_name, describe};

/// A `<select data-testid="model-select">` over the server's models. `selected` is `None`
/// while the user keeps the server's default. A failure to load the list is shown next to it
/// (translations then use the server's default model).
#[component]
pub fn ModelPicker(
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
            <label for="model-select">"Model"</label>
            <select
                id="model-select"
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
                        view! {
                            <option value=name.clone() prop:selected=is_current>
                                {name.clone()}
                                {m.default.then_some(" (default)")}
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
