//! The translate page: input, streamed translation, heatmap.

use attnscope_protocol::{ModelInfo, TranslateRequest};
use leptos::prelude::*;
use leptos::task::spawn_local;
use web_sys::AbortController;

use crate::api;
use crate::components::heatmap::Heatmap;
use crate::components::model_picker::ModelPicker;
use crate::components::token_strip::{Axis, TokenStrip};
use crate::events::StreamEvent;
use crate::models::url_model;
use crate::query::Query;
use crate::tokens::{Hover, Row, detokenize, fit_row};

/// Sentences offered as one-click examples.
pub const EXAMPLES: [&str; 4] = [
    "I am cold.",
    "Where is the train station?",
    "She reads a book every evening.",
    "We will go to the beach tomorrow if it does not rain.",
];

/// Where the current translation stands (`data-state` of the page's `<main>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Nothing requested yet.
    #[default]
    Idle,
    /// Request sent, events arriving.
    Streaming,
    /// `done` received.
    Done,
    /// The request or the decoding failed; the message is shown.
    Error,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Streaming => "streaming",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// The reactive state of one page.
#[derive(Clone, Copy)]
struct State {
    text: RwSignal<String>,
    models: RwSignal<Vec<ModelInfo>>,
    models_error: RwSignal<Option<String>>,
    selected: RwSignal<Option<String>>,
    phase: RwSignal<Phase>,
    error: RwSignal<Option<String>>,
    source: RwSignal<Vec<String>>,
    rows: RwSignal<Vec<Row>>,
    translation: RwSignal<String>,
    used_model: RwSignal<Option<String>>,
    elapsed_ms: RwSignal<Option<f64>>,
    hover: RwSignal<Hover>,
    /// Bumped by every request; events of an older request are dropped.
    run: StoredValue<u64>,
    /// Cancels the request in flight when a new one starts.
    abort: StoredValue<Option<AbortController>, LocalStorage>,
}

impl State {
    fn new() -> Self {
        Self {
            text: RwSignal::new(String::new()),
            models: RwSignal::new(Vec::new()),
            models_error: RwSignal::new(None),
            selected: RwSignal::new(None),
            phase: RwSignal::new(Phase::Idle),
            error: RwSignal::new(None),
            source: RwSignal::new(Vec::new()),
            rows: RwSignal::new(Vec::new()),
            translation: RwSignal::new(String::new()),
            used_model: RwSignal::new(None),
            elapsed_ms: RwSignal::new(None),
            hover: RwSignal::new(Hover::default()),
            run: StoredValue::new(0),
            abort: StoredValue::new_local(None),
        }
    }

    /// Starts translating the text in the box (cancelling any translation in flight).
    fn submit(self) {
        let text = self.text.get_untracked();
        let run = self.run.get_value() + 1;
        self.run.set_value(run);
        if let Some(previous) = self.abort.get_value() {
            previous.abort();
        }
        let controller = AbortController::new().ok();
        let signal = controller.as_ref().map(AbortController::signal);
        self.abort.set_value(controller);

        self.phase.set(Phase::Streaming);
        self.error.set(None);
        self.source.set(Vec::new());
        self.rows.set(Vec::new());
        self.translation.set(String::new());
        self.used_model.set(None);
        self.elapsed_ms.set(None);
        self.hover.set(Hover::default());

        let request = TranslateRequest {
            model: self.selected.get_untracked(),
            ..TranslateRequest::new(text.clone())
        };
        spawn_local(async move {
            let current = move || self.run.get_value() == run;
            let result = api::translate(&request, signal.as_ref(), |event| {
                if current() {
                    self.apply(run, &text, event);
                }
            })
            .await;
            if !current() {
                return;
            }
            if let Err(e) = result {
                self.error.set(Some(e.message));
                self.phase.set(Phase::Error);
            }
        });
    }

    fn apply(self, run: u64, text: &str, event: StreamEvent) {
        match event {
            StreamEvent::Start(start) => {
                self.used_model.set(Some(start.model));
                self.source.set(start.source_tokens);
            }
            StreamEvent::Step(step) => {
                let n = self.source.with_untracked(Vec::len);
                self.rows.update(|rows| {
                    rows.push(Row {
                        run,
                        index: rows.len(),
                        token: step.token,
                        weights: fit_row(step.attention, n),
                    });
                });
                let pieces: Vec<String> = self
                    .rows
                    .with_untracked(|r| r.iter().map(|r| r.token.clone()).collect());
                self.translation.set(detokenize(&pieces));
            }
            StreamEvent::Done(done) => {
                self.translation.set(done.translation);
                self.elapsed_ms.set(Some(done.elapsed_ms));
                self.phase.set(Phase::Done);
                let model = self
                    .models
                    .with_untracked(|m| url_model(self.selected.get_untracked().as_deref(), m));
                replace_url(&Query {
                    text: Some(text.to_owned()),
                    model,
                });
            }
            StreamEvent::Error(err) => {
                self.error.set(Some(err.message));
                self.phase.set(Phase::Error);
            }
        }
    }
}

/// `history.replaceState` to the shareable URL of a translation.
fn replace_url(query: &Query) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let path = window
        .location()
        .pathname()
        .unwrap_or_else(|_| "/".to_owned());
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(
            &wasm_bindgen::JsValue::NULL,
            "",
            Some(&query.to_url(&path)),
        );
    }
}

/// The query string the page was opened with.
fn initial_query() -> Query {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .map(|s| Query::parse(&s))
        .unwrap_or_default()
}

/// The whole page.
#[component]
pub fn TranslatePage() -> impl IntoView {
    let state = State::new();

    spawn_local(async move {
        match api::models().await {
            Ok(models) => state.models.set(models),
            Err(e) => state.models_error.set(Some(e.message)),
        }
    });

    let query = initial_query();
    if let Some(model) = query.model {
        state.selected.set(Some(model));
    }
    if let Some(text) = query.text {
        state.text.set(text);
        state.submit();
    }

    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            state.submit();
        }
    };
    let streaming = move || state.phase.get() == Phase::Streaming;
    let target_tokens = Signal::derive(move || {
        state
            .rows
            .with(|r| r.iter().map(|r| r.token.clone()).collect())
    });
    let source_tokens = Signal::derive(move || state.source.get());
    let meta = move || {
        let model = state.used_model.get()?;
        let (t, s) = (state.rows.with(Vec::len), state.source.with(Vec::len));
        let mut line = format!("{model} \u{b7} {t} target \u{d7} {s} source tokens");
        if let Some(ms) = state.elapsed_ms.get() {
            line.push_str(&format!(" \u{b7} {ms:.0} ms"));
        }
        Some(line)
    };

    view! {
        <main
            class="page"
            data-testid="app"
            data-state=move || state.phase.get().as_str()
            aria-busy=move || streaming().to_string()
        >
            <section class="panel input-panel">
                <form on:submit=move |ev| {
                    ev.prevent_default();
                    state.submit();
                }>
                    <label for="source-input" class="field-label">
                        "English sentence"
                    </label>
                    <textarea
                        id="source-input"
                        data-testid="source-input"
                        rows="2"
                        placeholder="Type an English sentence, then press Enter"
                        prop:value=move || state.text.get()
                        on:input=move |ev| state.text.set(event_target_value(&ev))
                        on:keydown=on_keydown
                    ></textarea>
                    <div class="controls">
                        <ModelPicker
                            models=state.models
                            selected=state.selected
                            load_error=state.models_error
                        />
                        <button type="submit" class="primary" data-testid="translate-button">
                            "Translate"
                        </button>
                    </div>
                </form>
                <div class="examples">
                    <span class="examples-label">"Try:"</span>
                    {EXAMPLES
                        .iter()
                        .map(|&example| {
                            view! {
                                <button
                                    type="button"
                                    class="example"
                                    data-testid="example"
                                    on:click=move |_| {
                                        state.text.set(example.to_owned());
                                        state.submit();
                                    }
                                >
                                    {example}
                                </button>
                            }
                        })
                        .collect_view()}
                </div>
            </section>

            {move || {
                state
                    .error
                    .get()
                    .map(|message| {
                        view! {
                            <div class="error" data-testid="error" role="alert">
                                {message}
                            </div>
                        }
                    })
            }}

            <section class="panel output-panel">
                <div class="output-head">
                    <h2>"French"</h2>
                    <Show when=streaming>
                        <span class="loading" data-testid="loading" role="status">
                            <span class="spinner" aria-hidden="true"></span>
                            "Translating\u{2026}"
                        </span>
                    </Show>
                </div>
                <p class="translation" data-testid="translation" aria-live="polite">
                    {move || state.translation.get()}
                </p>
                <Show when=move || !state.source.with(Vec::is_empty)>
                    <div class="strips">
                        <div class="strip-line">
                            <span class="strip-label">"Source pieces"</span>
                            <TokenStrip
                                tokens=source_tokens
                                axis=Axis::Source
                                hover=state.hover
                                label="Source pieces"
                            />
                        </div>
                        <div class="strip-line">
                            <span class="strip-label">"Target pieces"</span>
                            <TokenStrip
                                tokens=target_tokens
                                axis=Axis::Target
                                hover=state.hover
                                label="Target pieces"
                            />
                        </div>
                    </div>
                </Show>
                <p class="meta" data-testid="meta">{meta}</p>
            </section>

            <section class="panel attention-panel">
                <h2>"Attention"</h2>
                <p class="hint">
                    "Each row is one French token as it was produced; each column is an English token. "
                    "A cell shows how much the decoder looked at that English token when producing that French token."
                </p>
                <Show when=move || {
                    state.source.with(Vec::is_empty) && state.phase.get() != Phase::Streaming
                }>
                    <p class="empty">"Translate a sentence to see its attention map."</p>
                </Show>
                <Heatmap source=state.source rows=state.rows hover=state.hover />
                <p class="caveat">
                    <strong>"A caveat: "</strong>
                    "attention weights show where the decoder looked, not why it chose a word. "
                    "They are one signal among many in the network and are not a full explanation of the model's decision."
                </p>
            </section>
        </main>
    }
}
