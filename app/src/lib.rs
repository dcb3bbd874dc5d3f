//! The attnscope browser app, as a library so that its pure parts ([`sse`], [`events`],
//! [`tokens`], [`query`], [`models`], [`compare`], [`heads`], [`mod@view`], [`playback`],
//! [`inside`]) are unit-tested natively with
//! `cargo test -p attnscope-app`. The `attnscope-app` binary mounts [`App`].

pub mod api;
pub mod compare;
pub mod components;
pub mod events;
pub mod heads;
pub mod inside;
pub mod models;
pub mod pages;
pub mod playback;
pub mod query;
pub mod run;
pub mod sse;
pub mod tokens;
pub mod view;

use leptos::prelude::*;

/// The whole app: header, the translate page, footer.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <header class="site-header">
            <h1>"attnscope"</h1>
            <p class="tagline">
                "Watch a neural translator attend, token by token."
            </p>
        </header>
        <pages::translate::TranslatePage />
        <footer class="site-footer">
            <p>
                "Model trained on Tatoeba (" <a href="https://tatoeba.org">"tatoeba.org"</a>
                ") sentence pairs via " <a href="https://www.manythings.org/anki/">"manythings.org/anki"</a>
                ", " <a href="https://creativecommons.org/licenses/by/2.0/fr/">"CC BY 2.0 FR"</a> "."
            </p>
        </footer>
    }
}
