//! attnscope-app is the browser frontend of attnscope, an explorer of how neural translation
//! models attend. The user types an English sentence; the app POSTs it to the attnscope
//! server, reads the Server-Sent-Events answer as it streams, and shows the French
//! translation token by token next to a heatmap (rows = target tokens, columns = source
//! tokens) that fills row by row with the attention weights of each decoding step. It is a
//! client-side-rendered Leptos app built to WebAssembly by Trunk; the wire types come from
//! the `attnscope-protocol` crate.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(attnscope_app::App);
}
