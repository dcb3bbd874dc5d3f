//! One subword piece as text.

use leptos::prelude::*;

use crate::tokens::TokenLabel;

/// A piece shown as its label: continuation pieces (no `▁`) get the class `cont` (a subtle
/// marker is drawn before them by CSS), `</s>` gets the class `eos`; the raw piece is the
/// tooltip.
#[component]
pub fn TokenText(piece: String) -> impl IntoView {
    let label = TokenLabel::new(&piece);
    view! {
        <span class="tok" class:cont=label.continuation class:eos=label.eos title=piece>
            {label.text}
        </span>
    }
}
