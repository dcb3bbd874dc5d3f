//! Short explanations of each kind of attention the model zoo covers (additive vs
//! multiplicative scores, soft vs hard vs sparse weights, a Transformer's heads and masks),
//! each with a button that opens the comparison showing it.

use leptos::prelude::*;

/// One explanation and the preset (its `data-testid`) that shows it.
pub struct Lesson {
    pub title: &'static str,
    pub text: &'static str,
    pub preset: &'static str,
}

/// Every explanation, in reading order.
pub const LESSONS: [Lesson; 4] = [
    Lesson {
        title: "Additive vs multiplicative scores",
        text: "Before it can attend, the decoder gives every source token a score. Bahdanau's additive score runs the decoder state and the token's encoder state through a small tanh layer; Luong's multiplicative scores compare them by a dot product, directly or through one matrix. The two models compared here were trained alike (same data, steps and seed), so what differs comes from the score: Luong's weights come out nearly one-hot. Open a step's \u{201c}Inside the score\u{201d} to see the numbers.",
        preset: "preset-scorers",
    },
    Lesson {
        title: "Soft, hard and sparse attention",
        text: "Soft attention turns the scores into weights with a softmax, so every token gets some weight; hard attention puts all of it on the best-scoring token; sparsemax, in the mode picker, gives exactly zero to tokens that score far below the best. A model trained with hard attention learns to choose one token per step.",
        preset: "preset-soft-hard",
    },
    Lesson {
        title: "Trained soft vs trained hard",
        text: "Switching a soft model to hard attention at run time is not the same as training with it: the hard-trained model chose one token per step all through training and copes with it; the soft one was never asked to. The two models compared here were trained alike (same data, steps and seed), so what differs comes from how they attended while learning.",
        preset: "preset-trained",
    },
    Lesson {
        title: "Heads and masks in a Transformer",
        text: "A Transformer attends many times per step: each layer has several heads, each scoring the source with a scaled dot product of its own. The decoder also attends to its own earlier output through a causal mask that hides the tokens it has not produced yet; the layer \u{d7} head grid under the heatmap shows all of them.",
        preset: "preset-transformer",
    },
];

/// The explanations; a button opens the comparison of each whose preset is `available`.
#[component]
pub fn Lessons(
    #[prop(into)] available: Signal<Vec<&'static str>>,
    on_preset: Callback<&'static str>,
) -> impl IntoView {
    let items = LESSONS
        .iter()
        .map(|l| {
            let preset = l.preset;
            view! {
                <li data-lesson=preset>
                    <strong>{l.title}</strong>
                    ". "
                    {l.text}
                    " "
                    <Show when=move || available.with(|a| a.contains(&preset))>
                        <button
                            type="button"
                            class="example"
                            data-testid=format!("lesson-{preset}")
                            on:click=move |_| on_preset.run(preset)
                        >
                            "Show me"
                        </button>
                    </Show>
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="lessons" data-testid="lessons">
            <h3>"Kinds of attention, explained"</h3>
            <ul>{items}</ul>
        </div>
    }
}
