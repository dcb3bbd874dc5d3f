//! The translate page: the input, one run or two side by side (compare), presets that set
//! up a comparison in one click, and the shareable URL.

use attnscope_protocol::ModelInfo;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::compare::token_diff;
use crate::components::lessons::Lessons;
use crate::components::playback_bar::PlaybackBar;
use crate::components::run_panel::{PANEL_A, PANEL_B, RunPanel};
use crate::components::view_toolbar::ViewToolbar;
use crate::models::{default_name, url_model};
use crate::playback::Playback;
use crate::query::Query;
use crate::run::{Phase, Run, RunConfig};
use crate::tokens::Hover;
use crate::view::ViewSettings;

/// Sentences offered as one-click examples.
pub const EXAMPLES: [&str; 4] = [
    "I am cold.",
    "Where is the train station?",
    "She reads a book every evening.",
    "We will go to the beach tomorrow if it does not rain.",
];

/// A one-click comparison: two run configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    pub label: &'static str,
    /// `data-testid` of its button.
    pub testid: &'static str,
    pub a: RunConfig,
    pub b: RunConfig,
}

fn config(model: Option<&str>, mode: Option<&str>) -> RunConfig {
    RunConfig {
        model: model.map(str::to_owned),
        mode: mode.map(str::to_owned),
        beam: None,
        show: None,
    }
}

/// The comparisons the loaded models allow: soft vs hard attention on `current` (the first
/// run's model, or the default), and, when the models exist, soft- vs hard-trained,
/// additive vs multiplicative, French vs German, and RNN vs Transformer.
pub fn presets(models: &[ModelInfo], current: Option<&str>) -> Vec<Preset> {
    let has = |name: &str| models.iter().any(|m| m.name == name && m.error.is_none());
    let current = current.or_else(|| default_name(models));
    let mut out = vec![
        Preset {
            label: "Soft vs hard attention",
            testid: "preset-soft-hard",
            a: config(current, Some("soft")),
            b: config(current, Some("hard")),
        },
        Preset {
            label: "Attention vs attribution",
            testid: "preset-attribution",
            a: config(current, None),
            b: RunConfig {
                show: Some("integrated_gradients".to_owned()),
                ..config(current, None)
            },
        },
    ];
    if has("bahdanau") && has("hard") {
        out.push(Preset {
            label: "Soft- vs hard-trained",
            testid: "preset-trained",
            a: config(Some("bahdanau"), None),
            b: config(Some("hard"), None),
        });
    }
    if has("bahdanau") && has("luong") {
        out.push(Preset {
            label: "Additive vs multiplicative",
            testid: "preset-scorers",
            a: config(Some("bahdanau"), None),
            b: config(Some("luong"), None),
        });
    }
    if has("bahdanau") && has("bahdanau-de") {
        out.push(Preset {
            label: "French vs German",
            testid: "preset-languages",
            a: config(Some("bahdanau"), None),
            b: config(Some("bahdanau-de"), None),
        });
    }
    if has("bahdanau") && has("transformer") {
        out.push(Preset {
            label: "RNN vs Transformer",
            testid: "preset-transformer",
            a: config(Some("bahdanau"), None),
            b: config(Some("transformer"), None),
        });
    }
    out
}

/// The English name of a language code, for headings (the code itself when unknown).
pub fn language_name(code: &str) -> &str {
    match code {
        "fr" => "French",
        "de" => "German",
        "es" => "Spanish",
        "en" => "English",
        other => other,
    }
}

/// The reactive state of the page.
#[derive(Clone, Copy)]
struct State {
    text: RwSignal<String>,
    models: RwSignal<Vec<ModelInfo>>,
    models_error: RwSignal<Option<String>>,
    compare: RwSignal<bool>,
    /// Segmentation off: translate the whole text as one sequence.
    whole: RwSignal<bool>,
    a: Run,
    b: Run,
    hover: RwSignal<Hover>,
    view: RwSignal<ViewSettings>,
    playback: Playback,
}

impl State {
    fn new(query: &Query) -> Self {
        let a = Run::new(RunConfig {
            beam: query.beam,
            show: query.show.clone(),
            ..config(query.model.as_deref(), query.mode.as_deref())
        });
        a.scores.set(query.inside);
        Self {
            text: RwSignal::new(query.text.clone().unwrap_or_default()),
            models: RwSignal::new(Vec::new()),
            models_error: RwSignal::new(None),
            compare: RwSignal::new(query.compare),
            whole: RwSignal::new(query.whole),
            a,
            // Both runs ask for scores, or neither (`inside=` in the permalink).
            b: Run::new(RunConfig {
                beam: query.beam2,
                show: query.show2.clone(),
                ..config(query.model2.as_deref(), query.mode2.as_deref())
            })
            .sharing_scores(a),
            hover: RwSignal::new(Hover::default()),
            view: RwSignal::new(query.view),
            playback: Playback::new(query.step),
        }
    }

    /// Translates the text in the box with the first run, and the second when comparing,
    /// streaming every step live.
    fn submit(self) {
        self.playback.playing.set(false);
        self.playback.step.set(None);
        self.translate();
    }

    /// [`Self::submit`] keeping the player's step (a permalink with `step=`).
    fn translate(self) {
        let text = self.text.get_untracked();
        let whole = self.whole.get_untracked();
        self.hover.set(Hover::default());
        self.a.submit(text.clone(), whole, move || self.share());
        if self.compare.get_untracked() {
            self.b.submit(text, whole, move || self.share());
        }
    }

    /// Sets both runs as `preset` says, turns comparing on and translates.
    fn apply_preset(self, preset: &Preset) {
        self.compare.set(true);
        for (run, c) in [(self.a, &preset.a), (self.b, &preset.b)] {
            run.model.set(c.model.clone());
            run.mode.set(c.mode.clone());
            run.beam.set(c.beam);
            run.show.set(c.show.clone());
        }
        if self.text.with_untracked(|t| t.trim().is_empty()) {
            self.text.set(EXAMPLES[0].to_owned());
        }
        self.submit();
    }

    /// Puts the page's state in the address bar.
    fn share(self) {
        let models = self.models.get_untracked();
        let a = self.a.config();
        let b = self.b.config();
        replace_url(&Query {
            text: Some(self.text.get_untracked()),
            model: url_model(a.model.as_deref(), &models),
            mode: a.mode,
            compare: self.compare.get_untracked(),
            model2: url_model(b.model.as_deref(), &models),
            mode2: b.mode,
            beam: a.beam.filter(|b| *b > 1),
            beam2: b.beam.filter(|b| *b > 1),
            whole: self.whole.get_untracked(),
            show: a.show,
            show2: b.show,
            step: self.playback.step.get_untracked(),
            inside: self.a.scores.get_untracked(),
            view: self.view.get_untracked(),
        });
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
    let query = initial_query();
    let state = State::new(&query);
    provide_context(state.playback);
    // The permalink follows the player (once there is a translation to link to).
    Effect::new(move |first: Option<()>| {
        state.playback.step.track();
        if first.is_some() && state.a.phase.get_untracked() == Phase::Done {
            state.share();
        }
    });
    // The score view turned on: decode again, asking for the scores.
    Effect::new(move |first: Option<()>| {
        let on = state.a.scores.get();
        if first.is_none() || state.a.phase.get_untracked() == Phase::Idle {
            return;
        }
        if on {
            state.a.rerun();
            if state.compare.get_untracked() {
                state.b.rerun();
            }
        } else {
            state.share();
        }
    });

    spawn_local(async move {
        match api::models().await {
            Ok(models) => state.models.set(models),
            Err(e) => state.models_error.set(Some(e.message)),
        }
    });
    if query.text.is_some() {
        state.translate();
    }

    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            state.submit();
        }
    };
    let phase = move || {
        let (a, b) = (state.a.phase.get(), state.b.phase.get());
        let both = state.compare.get();
        if a == Phase::Streaming || (both && b == Phase::Streaming) {
            Phase::Streaming
        } else if a == Phase::Error || (both && b == Phase::Error) {
            Phase::Error
        } else {
            a
        }
    };
    // Token-by-token diff of the two translations, while comparing.
    let diffs = Memo::new(move |_| {
        if !state.compare.get() {
            return (Vec::new(), Vec::new());
        }
        let (a, b) = (state.a.target_tokens(), state.b.target_tokens());
        if a.is_empty() || b.is_empty() {
            return (Vec::new(), Vec::new());
        }
        token_diff(&a, &b)
    });
    let changed_a = Signal::derive(move || diffs.get().0);
    let changed_b = Signal::derive(move || diffs.get().1);
    let title = move |run: Run, fallback: &'static str| {
        Signal::derive(move || {
            let model = run
                .model
                .get()
                .or_else(|| state.models.with(|m| default_name(m).map(str::to_owned)))
                .unwrap_or_else(|| fallback.to_owned());
            if !state.compare.get() {
                let lang = state.models.with(|ms| {
                    ms.iter()
                        .find(|m| m.name == model)
                        .map(|m| language_name(&m.target_lang).to_owned())
                });
                return lang.unwrap_or_else(|| "Translation".to_owned());
            }
            match run.mode.get() {
                Some(mode) => format!("{model} \u{b7} {mode}"),
                None => model,
            }
        })
    };
    let presets_now = move || {
        state
            .models
            .with(|m| presets(m, state.a.model.get().as_deref()))
    };

    view! {
        <main
            class="page"
            data-testid="app"
            data-state=move || phase().as_str()
            data-compare=move || state.compare.get().to_string()
            aria-busy=move || (phase() == Phase::Streaming).to_string()
        >
            <section class="panel input-panel">
                <form on:submit=move |ev| {
                    ev.prevent_default();
                    state.submit();
                }>
                    <label for="source-input" class="field-label">
                        "English text"
                    </label>
                    <textarea
                        id="source-input"
                        data-testid="source-input"
                        rows="3"
                        placeholder="Type or paste English, one sentence or several, then press Enter"
                        prop:value=move || state.text.get()
                        on:input=move |ev| state.text.set(event_target_value(&ev))
                        on:keydown=on_keydown
                    ></textarea>
                    <div class="controls">
                        <label class="toggle">
                            <input
                                type="checkbox"
                                data-testid="compare-toggle"
                                prop:checked=move || state.compare.get()
                                on:change=move |ev| {
                                    state.compare.set(event_target_checked(&ev));
                                }
                            />
                            "Compare two runs side by side"
                        </label>
                        <label class="toggle" title="Translate each sentence on its own (the models are trained on sentences); off: the whole text as one sequence">
                            <input
                                type="checkbox"
                                data-testid="segment-toggle"
                                prop:checked=move || !state.whole.get()
                                on:change=move |ev| {
                                    state.whole.set(!event_target_checked(&ev));
                                }
                            />
                            "Split into sentences"
                        </label>
                        <button type="submit" class="primary" data-testid="translate-button">
                            "Translate"
                        </button>
                    </div>
                </form>
                <div class="examples presets">
                    <span class="examples-label">"Compare:"</span>
                    <For
                        each=presets_now
                        key=|p| (p.testid, p.a.clone(), p.b.clone())
                        children=move |p| {
                            let (label, testid) = (p.label, p.testid);
                            view! {
                                <button
                                    type="button"
                                    class="example preset"
                                    data-testid=testid
                                    on:click=move |_| state.apply_preset(&p)
                                >
                                    {label}
                                </button>
                            }
                        }
                    />
                </div>
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

            <ViewToolbar view=state.view />
            <PlaybackBar
                total=Signal::derive(move || {
                    let a = state.a.rows.with(Vec::len);
                    let b = if state.compare.get() { state.b.rows.with(Vec::len) } else { 0 };
                    a.max(b)
                })
                ready=Signal::derive(move || phase() == Phase::Done)
            />

            <div class="runs" class:two=move || state.compare.get()>
                <RunPanel
                    run=state.a
                    ids=PANEL_A
                    title=title(state.a, "first run")
                    models=state.models
                    models_error=state.models_error
                    hover=state.hover
                    changed=changed_a
                    view=state.view.into()
                />
                <Show when=move || state.compare.get()>
                    <RunPanel
                        run=state.b
                        ids=PANEL_B
                        title=title(state.b, "second run")
                        models=state.models
                        models_error=state.models_error
                        hover=state.hover
                        changed=changed_b
                        view=state.view.into()
                    />
                </Show>
            </div>

            <section class="panel about-panel">
                <p class="hint">
                    "Each heatmap row is one French token as it was produced; each column is an English token. "
                    "A cell shows how much the decoder looked at that English token when producing that French token; "
                    "the last column gives the step's entropy (0 when it looked at one token) and its largest weight."
                </p>
                <Lessons
                    available=Signal::derive(move || {
                        presets_now().iter().map(|p| p.testid).collect::<Vec<_>>()
                    })
                    on_preset=Callback::new(move |testid: &'static str| {
                        if let Some(p) = presets_now().iter().find(|p| p.testid == testid) {
                            state.apply_preset(p);
                        }
                    })
                />
                <p class="caveat">
                    <strong>"A caveat: "</strong>
                    "attention weights show where the decoder looked, not why it chose a word. "
                    "They are one signal among many in the network and are not a full explanation of the model's decision."
                </p>
            </section>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, default: bool) -> ModelInfo {
        ModelInfo {
            name: name.into(),
            architecture: "gru".into(),
            attention: "additive".into(),
            attention_training: "soft".into(),
            default_mode: "soft".into(),
            modes: vec!["soft".into(), "hard".into()],
            layers: 0,
            heads: 0,
            context_dim: 0,
            source_lang: "en".into(),
            target_lang: "fr".into(),
            default,
            parameters: 1,
            bleu: None,
            chrf: None,
            aer: None,
            alignment_method: None,
            error: None,
        }
    }

    #[test]
    fn language_names() {
        assert_eq!(language_name("de"), "German");
        assert_eq!(language_name("xx"), "xx");
    }

    #[test]
    fn presets_follow_the_loaded_models() {
        let only = [model("bahdanau", true)];
        let p = presets(&only, None);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].a, config(Some("bahdanau"), Some("soft")));
        assert_eq!(p[0].b, config(Some("bahdanau"), Some("hard")));
        assert_eq!(p[1].a, config(Some("bahdanau"), None));
        assert_eq!(p[1].b.show.as_deref(), Some("integrated_gradients"));
        assert_eq!(
            presets(&only, Some("x"))[0].b,
            config(Some("x"), Some("hard"))
        );

        let zoo = [
            model("bahdanau", true),
            model("hard", false),
            model("luong", false),
            model("transformer", false),
        ];
        let ids: Vec<&str> = presets(&zoo, None).iter().map(|p| p.testid).collect();
        assert_eq!(
            ids,
            [
                "preset-soft-hard",
                "preset-attribution",
                "preset-trained",
                "preset-scorers",
                "preset-transformer"
            ]
        );
    }
}
