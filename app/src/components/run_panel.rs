//! One run's panel: its model and attention-mode pickers, the streamed translation (with the
//! tokens that differ from the other run marked, when comparing), its token strips, its
//! heatmap, a summary line (model, mode, sizes, time, mean entropy and peak weight) and the
//! step view. The translation, the strips and the heatmap show the steps up to the player's
//! ([`crate::playback`]).

use attnscope_protocol::ModelInfo;
use leptos::prelude::*;

use crate::compare::{entropy, max_weight, mean_of, token_diff};
use crate::components::export_bar::ExportBar;
use crate::components::heads_grid::HeadsGrid;
use crate::components::heatmap::Heatmap;
use crate::components::lines::Lines;
use crate::components::model_picker::{ModePicker, ModelPicker, ShowPicker};
use crate::components::step_inside::StepInside;
use crate::components::token::TokenText;
use crate::components::token_strip::{Axis, TokenStrip};
use crate::playback::{Playback, shown_len};
use crate::run::{Phase, Run};
use crate::tokens::{Hover, Row, detokenize, piece_blocks};
use crate::view::{
    Layout, ViewSettings, merge_words, shown_positions, span_middle, word_groups, word_label,
};

/// Element ids and test ids of one panel, distinct for the first and the second run.
#[derive(Clone, Copy)]
pub struct PanelIds {
    /// `data-testid` of the panel (`run-a`, `run-b`).
    pub panel: &'static str,
    pub model_select: &'static str,
    pub mode_select: &'static str,
    pub beam_select: &'static str,
    pub show_select: &'static str,
    /// `data-testid` of the lines view.
    pub lines: &'static str,
    /// `data-testid` of the word alignment's caption under the lines view.
    pub alignment: &'static str,
    /// `data-testid` of the heatmap grid.
    pub heatmap: &'static str,
}

/// The ids of the first run's panel (the only one outside a comparison).
pub const PANEL_A: PanelIds = PanelIds {
    panel: "run-a",
    model_select: "model-select",
    mode_select: "mode-select",
    beam_select: "beam-select",
    show_select: "show-select",
    lines: "lines",
    alignment: "alignment-caption",
    heatmap: "heatmap",
};

/// The ids of the second run's panel.
pub const PANEL_B: PanelIds = PanelIds {
    panel: "run-b",
    model_select: "model-select-b",
    mode_select: "mode-select-b",
    beam_select: "beam-select-b",
    show_select: "show-select-b",
    lines: "lines-b",
    alignment: "alignment-caption-b",
    heatmap: "heatmap-b",
};

/// Target pieces as chips, the changed ones marked (class `changed`).
fn diff_tokens(tokens: Vec<String>, changed: Vec<bool>) -> impl IntoView {
    tokens
        .into_iter()
        .zip(changed)
        .map(|(piece, changed)| {
            view! {
                <span class="diff-token" class:changed=changed>
                    <TokenText piece=piece />
                </span>
            }
        })
        .collect_view()
}

/// A run's panel. `changed` marks the target tokens that the other run does not share
/// (empty outside a comparison).
#[component]
pub fn RunPanel(
    run: Run,
    ids: PanelIds,
    /// Heading of the panel.
    title: Signal<String>,
    models: RwSignal<Vec<ModelInfo>>,
    models_error: RwSignal<Option<String>>,
    /// Shared by both panels: pointing at a cell highlights the same step and source
    /// position in the other.
    hover: RwSignal<Hover>,
    /// For each target token, whether it differs from the other run's translation.
    changed: Signal<Vec<bool>>,
    /// How to draw the attention (shared by both runs).
    view: Signal<ViewSettings>,
) -> impl IntoView {
    let playback = Playback::from_context();
    // The rows up to the player's step (every row while it shows every step).
    let rows_now = Memo::new(move |_| {
        let step = playback.step.get();
        run.rows.with(|r| r[..shown_len(step, r.len())].to_vec())
    });
    // The heatmap cell clicked for the step view (outside what-if picking).
    let selected = RwSignal::new(None::<(usize, usize)>);
    // What the heatmap shows: pieces as streamed, or merged to words. Memos, so the merge
    // runs once per step however many parts of the view read it.
    let shown_source = Memo::new(move |_| {
        let source = run.source.get();
        if !view.get().words {
            return source;
        }
        word_groups(&source)
            .iter()
            .map(|g| word_label(&source, g))
            .collect()
    });
    // The word alignment's links in the shown coordinates (pieces or words, fractional
    // positions at a word's middle), for the steps shown so far of the streamed translation.
    let shown_links = Memo::new(move |_| {
        let Some(al) = run.alignment.get() else {
            return Vec::new();
        };
        if run.chosen.get() != 0 {
            return Vec::new();
        }
        let shown = rows_now.with(Vec::len);
        let words = view.get().words;
        let source = run.source.get();
        let targets = run.target_tokens();
        let (src_at, tgt_at) = (
            shown_positions(&source, words),
            shown_positions(&targets, words),
        );
        al.links
            .iter()
            .filter(|l| l.target[1] <= shown)
            .map(|l| {
                (
                    span_middle(&src_at, l.source),
                    span_middle(&tgt_at, l.target),
                )
            })
            .collect::<Vec<(f32, f32)>>()
    });
    let alignment_caption = move || {
        run.alignment.get().filter(|_| run.chosen.get() == 0).map(|al| {
            view! {
                <p class="hint alignment-caption" data-testid=ids.alignment>
                    {format!(
                        "Dark lines: the word alignment by {} (AER {:.1} % on the {} gold test set, the best of the methods tried on its trial sentences). Coloured lines: the attention weights.",
                        al.method,
                        al.aer,
                        al.gold,
                    )}
                </p>
            }
        })
    };
    let shown_rows = Memo::new(move |_| {
        if !view.get().words {
            return rows_now.get();
        }
        let source = run.source.get();
        let rows = rows_now.get();
        let tokens: Vec<&str> = rows.iter().map(|r| r.token.as_str()).collect();
        let tgroups = word_groups(&tokens);
        let weights: Vec<Vec<f32>> = rows.iter().map(|r| r.weights.clone()).collect();
        let merged = merge_words(&weights, &word_groups(&source), &tgroups);
        let run_id = rows.first().map_or(0, |r| r.run);
        tgroups
            .iter()
            .zip(merged)
            .enumerate()
            .map(|(index, (g, weights))| Row {
                run: run_id,
                index,
                token: word_label(&tokens, g),
                weights,
                forced: g.iter().any(|&t| rows[t].forced),
                intervened: g.iter().any(|&t| rows[t].intervened),
                rev: g.len(),
                sentence: g.first().map_or(0, |&t| rows[t].sentence),
                // τ is a property of a piece's row; merged words have none.
                tau: None,
            })
            .collect()
    });
    // The sentences' column ranges as shown (pieces, or the words that hold them).
    let shown_blocks = Memo::new(move |_| {
        let blocks = run.sentences.with(|s| piece_blocks(s));
        if !view.get().words || blocks.is_empty() {
            return blocks;
        }
        let groups = run.source.with(|s| word_groups(s));
        let word_of = |piece: usize| {
            groups
                .iter()
                .position(|g| g.contains(&piece))
                .unwrap_or(groups.len())
        };
        blocks
            .iter()
            .map(|&(a, b)| (word_of(a), word_of(b.saturating_sub(1)) + 1))
            .collect()
    });
    // Each sentence with its translation so far (a segmented input only).
    let sentence_list = move || {
        let sentences = run.sentences.get();
        if sentences.len() < 2 {
            return None;
        }
        let rows = run.rows.get();
        let items = sentences
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                let pieces: Vec<&str> = rows
                    .iter()
                    .filter(|r| r.sentence == k)
                    .map(|r| r.token.as_str())
                    .collect();
                let translation = s.translation.clone().unwrap_or_else(|| detokenize(&pieces));
                view! {
                    <li data-sentence=k.to_string() data-source=format!("{}-{}", s.source[0], s.source[1])>
                        <span class="sent-src">{s.text}</span>
                        <span class="sent-arrow" aria-hidden="true">" \u{2192} "</span>
                        <span class="sent-tgt" data-testid="sentence-translation">{translation}</span>
                    </li>
                }
            })
            .collect_view();
        Some(view! {
            <div class="sentences">
                <h3>"Sentence by sentence"</h3>
                <p class="hint">
                    "The text was split into sentences and each was translated on its own: a row attends only to its own sentence (the hatched cells are outside it). Turn off \u{201c}Split into sentences\u{201d} to see the model read the whole text at once."
                </p>
                <ol data-testid="sentences">{items}</ol>
            </div>
        })
    };
    let streaming = move || run.phase.get() == Phase::Streaming;
    let target_tokens =
        Signal::derive(move || rows_now.with(|r| r.iter().map(|r| r.token.clone()).collect()));
    let source_tokens = Signal::derive(move || run.source.get());
    let meta = move || {
        let model = run.used_model.get()?;
        let (t, s) = (run.rows.with(Vec::len), run.source.with(Vec::len));
        let mut parts = vec![model];
        if let Some(mode) = run.used_mode.get() {
            parts.push(format!("{mode} attention"));
        }
        parts.push(format!("{t} target \u{d7} {s} source tokens"));
        if let Some(ms) = run.elapsed_ms.get() {
            parts.push(format!("{ms:.0} ms"));
        }
        if t > 0 {
            let rows: Vec<Vec<f32>> = run
                .rows
                .with(|r| r.iter().map(|r| r.weights.clone()).collect());
            parts.push(format!(
                "mean entropy {:.2} nats, mean peak {:.2}",
                mean_of(&rows, entropy),
                mean_of(&rows, max_weight)
            ));
        }
        if let (Some(a), Some(m)) = (
            run.agreement.get(),
            run.show
                .get()
                .as_deref()
                .and_then(attnscope_protocol::explain_method),
        ) {
            let tau = a
                .mean_tau
                .map_or_else(|| "undefined".to_owned(), |t| format!("{t:.2}"));
            parts.push(format!(
                "{} vs attention: mean \u{3c4} {tau}, same top token at {:.0}% of steps",
                m.label,
                100.0 * a.argmax_agreement
            ));
        }
        Some(parts.join(" \u{b7} "))
    };
    let picking = RwSignal::new(false);
    let prefix_text = RwSignal::new(String::new());
    let on_pick = Callback::new(move |(t, s): (usize, usize)| {
        // Picks are piece positions: not in the word view.
        if view.get_untracked().words || run.phase.get_untracked() == Phase::Streaming {
            return;
        }
        if picking.get_untracked() {
            run.force(t, s);
        } else {
            selected.set(Some((t, s)));
        }
    });
    let what_if_line = move || {
        let w = run.what_if.get();
        if !w.is_active() {
            return None;
        }
        let source = run.source.get();
        let mut parts: Vec<String> = w
            .interventions
            .iter()
            .map(|i| {
                let piece = source.get(i.source).map_or("?".to_owned(), |p| {
                    crate::tokens::TokenLabel::new(p).plain()
                });
                format!("step {} looks only at \u{201c}{piece}\u{201d}", i.step + 1)
            })
            .collect();
        if !w.prefix.trim().is_empty() {
            parts.push(format!(
                "target starts with \u{201c}{}\u{201d}",
                w.prefix.trim()
            ));
        }
        let tokens = run.target_tokens();
        let (_, changed) = token_diff(&w.baseline, &tokens);
        let count = changed.iter().filter(|c| **c).count();
        Some(view! {
            <div class="what-if" data-testid="whatif" data-changed=count.to_string()>
                <p>
                    <strong>"What-if: "</strong>
                    {parts.join("; ")}
                    " "
                    <button
                        type="button"
                        class="example"
                        data-testid="whatif-reset"
                        on:click=move |_| {
                            prefix_text.set(String::new());
                            run.reset_what_if();
                        }
                    >
                        "Undo"
                    </button>
                </p>
                <p class="diff" data-testid="whatif-diff">
                    <span class="diff-label">"Before: "</span>
                    <span>{crate::tokens::detokenize(&w.baseline)}</span>
                    <span class="diff-label">" \u{2192} now:"</span>
                    {diff_tokens(tokens, changed)}
                </p>
            </div>
        })
    };
    let diff = move || {
        let flags = changed.get();
        if flags.is_empty() {
            return None;
        }
        let tokens = run.target_tokens();
        let count = flags.iter().filter(|c| **c).count();
        Some(view! {
            <p class="diff" data-testid="diff" data-changed=count.to_string()>
                <span class="diff-label">
                    {if count == 0 {
                        "Same tokens as the other run".to_owned()
                    } else {
                        format!("{count} token(s) differ from the other run:")
                    }}
                </span>
                {diff_tokens(tokens, flags)}
            </p>
        })
    };

    view! {
        <section
            class="panel run-panel"
            data-testid=ids.panel
            data-state=move || run.phase.get().as_str()
            data-mode=move || run.used_mode.get().unwrap_or_default()
            aria-busy=move || streaming().to_string()
        >
            <div class="output-head">
                <h2>{move || title.get()}</h2>
                <Show when=streaming>
                    <span class="loading" data-testid="loading" role="status">
                        <span class="spinner" aria-hidden="true"></span>
                        "Translating\u{2026}"
                    </span>
                </Show>
            </div>
            <div class="controls run-controls">
                <ModelPicker
                    id=ids.model_select
                    models=models
                    selected=run.model
                    load_error=models_error
                />
                <ModePicker id=ids.mode_select models=models model=run.model mode=run.mode />
                <ShowPicker
                    id=ids.show_select
                    show=run.show
                    on_change=Callback::new(move |()| run.rerun())
                />
                <div class="beam-picker">
                    <label for=ids.beam_select>"Decoding"</label>
                    <select
                        id=ids.beam_select
                        data-testid="beam-select"
                        on:change=move |ev| {
                            run.beam.set(event_target_value(&ev).parse().ok().filter(|b: &usize| *b > 1));
                        }
                    >
                        {[1usize, 2, 4, 8]
                            .into_iter()
                            .map(|b| {
                                view! {
                                    <option
                                        value=b.to_string()
                                        prop:selected=move || run.beam.get().unwrap_or(1) == b
                                    >
                                        {if b == 1 { "greedy".to_owned() } else { format!("beam search, width {b}") }}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </div>
            </div>
            {move || {
                run.error
                    .get()
                    .map(|message| {
                        view! {
                            <div class="error" data-testid="error" role="alert">
                                {message}
                            </div>
                        }
                    })
            }}
            <p class="translation" data-testid="translation" aria-live="polite">
                {move || match playback.step.get() {
                    None => run.translation.get(),
                    Some(_) => rows_now.with(|r| {
                        detokenize(&r.iter().map(|r| r.token.as_str()).collect::<Vec<_>>())
                    }),
                }}
            </p>
            {diff}
            {sentence_list}
            <Show when=move || run.hypotheses.with(|h| h.len() > 1)>
                <div class="hypotheses">
                    <h3>"Beam hypotheses"</h3>
                    <p class="hint">
                        "Ranked by log-probability per token. Choose one to see its attention."
                    </p>
                    <ol data-testid="hypotheses">
                        {move || {
                            run.hypotheses
                                .get()
                                .into_iter()
                                .enumerate()
                                .map(|(i, h)| {
                                    view! {
                                        <li>
                                            <button
                                                type="button"
                                                class="hypothesis"
                                                data-testid="hypothesis"
                                                data-score=h.score.to_string()
                                                aria-pressed=move || (run.chosen.get() == i).to_string()
                                                on:click=move |_| run.choose(i)
                                            >
                                                <span class="hyp-text">{h.translation.clone()}</span>
                                                <span class="hyp-score">
                                                    {format!(
                                                        "{:.3} per token \u{b7} log p {:.2}",
                                                        h.score,
                                                        h.log_prob,
                                                    )}
                                                </span>
                                            </button>
                                        </li>
                                    }
                                })
                                .collect_view()
                        }}
                    </ol>
                </div>
            </Show>
            // Long sources skip the chip strips: the heatmap labels the same pieces, and
            // drawing hundreds of chips at the start of a stream costs frames.
            <Show when=move || {
                let n = run.source.with(Vec::len);
                n > 0 && n < crate::components::heatmap_canvas::CANVAS_MIN_COLS
            }>
                <div class="strips">
                    <div class="strip-line">
                        <span class="strip-label">"Source pieces"</span>
                        <TokenStrip
                            tokens=source_tokens
                            axis=Axis::Source
                            hover=hover
                            label="Source pieces"
                        />
                    </div>
                    <div class="strip-line">
                        <span class="strip-label">"Target pieces"</span>
                        <TokenStrip
                            tokens=target_tokens
                            axis=Axis::Target
                            hover=hover
                            label="Target pieces"
                        />
                    </div>
                </div>
            </Show>
            <p class="meta" data-testid="meta">{meta}</p>
            <Show when=move || run.phase.get() == Phase::Done>
                <ExportBar run=run source=shown_source rows=shown_rows view=view />
            </Show>
            <div class="what-if-controls">
                <label class="toggle">
                    <input
                        type="checkbox"
                        data-testid="whatif-toggle"
                        prop:checked=move || picking.get()
                        on:change=move |ev| picking.set(event_target_checked(&ev))
                    />
                    "What-if: click a cell to force the attention there and decode again"
                </label>
                <form
                    class="prefix-form"
                    on:submit=move |ev| {
                        ev.prevent_default();
                        run.set_prefix(prefix_text.get_untracked());
                    }
                >
                    <input
                        type="text"
                        data-testid="prefix-input"
                        placeholder="Target prefix, e.g. Il fait"
                        aria-label="Target prefix"
                        prop:value=move || prefix_text.get()
                        on:input=move |ev| prefix_text.set(event_target_value(&ev))
                    />
                    <button type="submit" class="example" data-testid="prefix-button">
                        "Decode from this prefix"
                    </button>
                </form>
            </div>
            {what_if_line}
            <Show when=move || run.source.with(Vec::is_empty) && !streaming()>
                <p class="empty">"Translate a sentence to see its attention map."</p>
            </Show>
            <Show
                when=move || view.get().layout == Layout::Matrix
                fallback=move || {
                    view! {
                        <Lines
                            source=shown_source
                            rows=shown_rows
                            view=view
                            links=shown_links
                            testid=ids.lines
                        />
                        {alignment_caption}
                    }
                }
            >
                <Heatmap
                    source=shown_source
                    rows=shown_rows
                    hover=hover
                    testid=ids.heatmap
                    on_pick=on_pick
                    view=view
                    blocks=shown_blocks
                />
            </Show>
            <StepInside run=run selected=selected models=models />
            <HeadsGrid
                heads=run.heads
                source=run.source
                target=Signal::derive(move || run.target_tokens())
            />
        </section>
    }
}
