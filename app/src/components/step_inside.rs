//! The step view of a run: for the step in focus (the clicked cell's row, else the player's
//! step, else the last), what the decoder emitted, the other tokens it weighed with their
//! probabilities (choosing one decodes again with it forced), and, once asked for, how the
//! attention weight of a cell came about: the scorer's formula, the step's scores and the
//! distribution that turned them into weights, with this step's numbers.

use attnscope_protocol::{ModelInfo, scorer};
use leptos::prelude::*;

use crate::components::token::TokenText;
use crate::inside::{cell_math, mean_rows, percent};
use crate::playback::Playback;
use crate::run::{Phase, Run, StepDetail};
use crate::tokens::TokenLabel;

/// The step view. `selected` is the clicked cell `(row, column)` of the heatmap, if any.
#[component]
pub fn StepInside(
    run: Run,
    selected: RwSignal<Option<(usize, usize)>>,
    models: RwSignal<Vec<ModelInfo>>,
) -> impl IntoView {
    let playback = Playback::from_context();
    // The player moving takes the focus back from a clicked cell.
    Effect::new(move |_| {
        playback.step.track();
        selected.set(None);
    });
    let focus = Memo::new(move |_| {
        let n = run.details.with(Vec::len);
        if n == 0 || run.chosen.get() != 0 {
            return None;
        }
        let t = selected
            .get()
            .map(|(t, _)| t)
            .or_else(|| playback.step.get())
            .unwrap_or(n - 1);
        Some(t.min(n - 1))
    });
    let model = Memo::new(move |_| {
        let name = run.used_model.get()?;
        models.with(|ms| ms.iter().find(|m| m.name == name).cloned())
    });
    let body = move || {
        let t = focus.get()?;
        let detail = run.details.with(|d| d.get(t).cloned())?;
        let token = run.rows.with(|r| r.get(t).map(|r| r.token.clone()))?;
        let total = run.details.with(Vec::len);
        let p = detail.log_prob.exp();
        let how = if detail.forced {
            " (given, not chosen: a forced target or prefix, or the </s> an imported model's length limit forces)"
        } else {
            ""
        };
        Some(view! {
            <h3>{format!("Step {} of {total}", t + 1)}</h3>
            <p class="step-emitted">
                "The decoder emitted "
                <span class="chip"><TokenText piece=token.clone() /></span>
                {format!(" with probability {}{how}.", percent(p))}
            </p>
            {candidates(run, t, &token, &detail)}
            {score_view(run, t, &detail, selected, model.get())}
        })
    };
    view! {
        <Show when=move || run.phase.get() == Phase::Done && focus.get().is_some()>
            <section class="step-inside" data-testid="step-inside" data-step=move || focus.get().map(|t| t.to_string())>
                {body}
                <label class="toggle">
                    <input
                        type="checkbox"
                        data-testid="scores-toggle"
                        prop:checked=move || run.scores.get()
                        on:change=move |ev| run.scores.set(event_target_checked(&ev))
                    />
                    "Inside the score: show how each attention weight is computed"
                </label>
            </section>
        </Show>
    }
}

/// The tokens the decoder weighed at step `t`, with a button to decode again with each.
fn candidates(run: Run, t: usize, emitted: &str, detail: &StepDetail) -> impl IntoView + use<> {
    if detail.candidates.is_empty() {
        return None;
    }
    let best = detail
        .candidates
        .first()
        .map_or(1.0, |c| c.log_prob.exp())
        .max(f32::MIN_POSITIVE);
    let items = detail
        .candidates
        .iter()
        .map(|c| {
            let p = c.log_prob.exp();
            let chosen = c.token == emitted;
            let piece = c.token.clone();
            view! {
                <li class="candidate" class:chosen=chosen data-token=c.token.clone() data-prob=p.to_string()>
                    <span class="chip"><TokenText piece=c.token.clone() /></span>
                    <span class="cand-bar" aria-hidden="true">
                        <span style=format!("width:{:.1}%", 100.0 * p / best)></span>
                    </span>
                    <span class="cand-prob">{percent(p)}</span>
                    <button
                        type="button"
                        class="example"
                        data-testid="candidate-choose"
                        disabled=chosen
                        title="Decode again with this token at this step"
                        on:click=move |_| run.choose_candidate(t, &piece)
                    >
                        {if chosen { "chosen" } else { "use this" }}
                    </button>
                </li>
            }
        })
        .collect_view();
    Some(view! {
        <div class="candidates">
            <h4>"What else it considered"</h4>
            <ol data-testid="candidates">{items}</ol>
            <p class="hint">
                "The most likely next tokens at this step. \u{201c}Use this\u{201d} keeps the translation up to here, forces that token at this step and lets the decoder go on from it."
            </p>
        </div>
    })
}

/// How the weights of step `t` came from its scores, for the selected column (else the
/// row's largest weight).
fn score_view(
    run: Run,
    t: usize,
    detail: &StepDetail,
    selected: RwSignal<Option<(usize, usize)>>,
    model: Option<ModelInfo>,
) -> impl IntoView + use<> {
    let scores = detail.scores.clone()?;
    let model = model?;
    let mode = run.used_mode.get_untracked().unwrap_or_default();
    let heads = scores.values.last().cloned().unwrap_or_default();
    let width = heads.first().map_or(0, Vec::len);
    if width == 0 {
        return None;
    }
    let first = scores.first;
    let source = run.source.get_untracked();
    let column = selected
        .get()
        .filter(|(row, _)| *row == t)
        .map(|(_, s)| s)
        .filter(|s| (first..first + width).contains(s))
        .unwrap_or_else(|| {
            let own = &detail.attention[first.min(detail.attention.len())..];
            first + attnscope_protocol::argmax(&own[..width.min(own.len())])
        });
    let j = column - first;
    let label = |s: usize| {
        source
            .get(s)
            .map_or_else(|| "?".to_owned(), |p| TokenLabel::new(p).plain())
    };
    let info = scorer(&model.attention);
    let maths: Vec<_> = heads.iter().map(|h| cell_math(h, j, &mode)).collect();
    let shown = mean_rows(
        &maths
            .iter()
            .filter_map(|m| m.weights.clone())
            .collect::<Vec<_>>(),
    );
    let several = heads.len() > 1;
    let per_head = maths
        .iter()
        .enumerate()
        .map(|(h, m)| {
            let name = if several {
                format!("Head {}: ", h + 1)
            } else {
                String::new()
            };
            view! {
                <p class="score-formula" data-testid="score-formula">
                    {format!("{name}e = {:.3}. {}", m.scores[j], m.formula)}
                </p>
            }
        })
        .collect_view();
    let table_rows = (0..width)
        .map(|k| {
            let s = first + k;
            let e: Vec<String> = heads.iter().map(|h| format!("{:.2}", h[k])).collect();
            let w = shown.get(k).copied();
            let used = detail.attention.get(s).copied().unwrap_or(0.0);
            view! {
                <tr
                    data-testid="score-row"
                    class:sel=k == j
                    data-col=s.to_string()
                    data-score=heads.first().map(|h| h[k].to_string()).unwrap_or_default()
                    data-weight=w.map(|w| w.to_string()).unwrap_or_default()
                    data-used=used.to_string()
                    on:click=move |_| selected.set(Some((t, s)))
                >
                    <td>{label(s)}</td>
                    <td class="num">{e.join(" / ")}</td>
                    <td class="num">{w.map_or_else(|| "\u{2013}".to_owned(), |w| format!("{w:.3}"))}</td>
                    <td class="num">{format!("{used:.3}")}</td>
                </tr>
            }
        })
        .collect_view();
    let context = if several {
        format!(
            "Each head's context is \u{3a3} w\u{2c7c} v\u{2c7c}, a weighted sum of the {width} source value vectors of {} numbers; the {} heads' contexts are joined into {} numbers. The heatmap row is the mean of the last layer's {} heads.",
            model.context_dim / heads.len().max(1),
            heads.len(),
            model.context_dim,
            heads.len()
        )
    } else {
        format!(
            "The context vector c = \u{3a3} w\u{2c7c} h\u{2c7c} is a weighted sum of the {width} encoder states, each of {} numbers; the decoder reads it with its own state to choose the next token.",
            model.context_dim
        )
    };
    Some(view! {
        <div class="score-view" data-testid="score-view" data-col=column.to_string()>
            <h4>
                {format!("Inside the score of \u{201c}{}\u{201d}", label(column))}
            </h4>
            {info.map(|i| view! {
                <p class="scorer">
                    <strong>{i.label}</strong>
                    ": " <code>{i.formula}</code> ". " {i.about}
                </p>
            })}
            {detail.intervened.then(|| view! {
                <p class="caveat">"A what-if forced this step's attention onto one token: the weights below are what the scores would have given."</p>
            })}
            {per_head}
            <table class="score-table">
                <thead>
                    <tr>
                        <th>"source"</th>
                        <th>{if several { "score e per head" } else { "score e" }}</th>
                        <th>{if several { "mean weight" } else { "weight" }}</th>
                        <th>"used"</th>
                    </tr>
                </thead>
                <tbody>{table_rows}</tbody>
            </table>
            <p class="hint">{context} " Click a row (or a heatmap cell) to see its weight made."</p>
        </div>
    })
}
