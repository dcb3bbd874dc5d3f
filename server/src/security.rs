//! The Content-Security-Policy of the served app.
//!
//! Trunk writes one inline `<script type="module">` into `index.html` that loads the wasm
//! module. Rather than allowing every inline script, the policy lists the SHA-256 of each
//! inline script found in the built `index.html` at startup, so only those run. WebAssembly
//! compilation needs `'wasm-unsafe-eval'`; the app sets colours through `style` attributes,
//! so styles allow `'unsafe-inline'` (styles cannot run code). Everything else comes from the
//! same origin, and the page cannot be framed.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Contents of every inline `<script>` element (no `src` attribute) of an HTML page.
pub fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body_start = &after[tag_end + 1..];
        let Some(close) = body_start.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") && !tag.contains(" src =") {
            out.push(&body_start[..close]);
        }
        rest = &body_start[close + "</script>".len()..];
    }
    out
}

/// The policy for a page whose `index.html` is `html` (empty when there is none).
pub fn content_security_policy(html: &str) -> String {
    let hashes: Vec<String> = inline_scripts(html)
        .into_iter()
        .map(|s| {
            let digest = Sha256::digest(s.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect();
    let mut script_src = vec!["'self'".to_string(), "'wasm-unsafe-eval'".to_string()];
    script_src.extend(hashes);
    format!(
        "default-src 'self'; script-src {}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        script_src.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inline_scripts_are_hashed() {
        let html = r#"<head><script type="module">
import init from '/app.js';
</script><script src="/x.js"></script><script>a()</script></head>"#;
        let scripts = inline_scripts(html);
        assert_eq!(scripts, vec!["\nimport init from '/app.js';\n", "a()"]);
        let csp = content_security_policy(html);
        // sha256("a()") in base64.
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"a()"));
        assert!(csp.contains(&format!("'sha256-{expected}'")), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 2);
        assert!(csp.contains("'wasm-unsafe-eval'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));
    }
}
