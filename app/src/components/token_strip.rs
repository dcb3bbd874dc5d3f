//! A row of token chips, linked to the heatmap through the shared hover state.

use leptos::prelude::*;

use crate::components::token::TokenText;
use crate::tokens::Hover;

/// Which side of the translation a strip shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Source pieces: heatmap columns.
    Source,
    /// Target pieces: heatmap rows.
    Target,
}

/// The pieces of one side as chips; hovering a chip highlights its row or column, and the
/// chip of the hovered row or column is highlighted.
#[component]
pub fn TokenStrip(
    /// The pieces, in order.
    tokens: Signal<Vec<String>>,
    /// Whether these are source or target pieces.
    axis: Axis,
    /// Shared hover state.
    hover: RwSignal<Hover>,
    /// Accessible name of the strip.
    label: &'static str,
) -> impl IntoView {
    let position = move |h: Hover| match axis {
        Axis::Source => h.src,
        Axis::Target => h.tgt,
    };
    view! {
        <ol class="strip" aria-label=label>
            <For
                each=move || tokens.get().into_iter().enumerate()
                key=|(i, piece)| (*i, piece.clone())
                children=move |(i, piece)| {
                    let enter = move |_| {
                        hover
                            .set(match axis {
                                Axis::Source => Hover { tgt: None, src: Some(i) },
                                Axis::Target => Hover { tgt: Some(i), src: None },
                            })
                    };
                    view! {
                        <li
                            class="chip"
                            class:hl=move || position(hover.get()) == Some(i)
                            on:mouseenter=enter
                            on:mouseleave=move |_| hover.set(Hover::default())
                        >
                            <TokenText piece=piece />
                        </li>
                    }
                }
            />
        </ol>
    }
}
