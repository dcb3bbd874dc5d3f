//! The shareable URL: `/?text=<sentence>&model=<name>&mode=<mode>`, plus
//! `&compare=1&model2=<name>&mode2=<mode>` for a side-by-side comparison. Pure Rust,
//! unit-tested natively. The view settings add `layout=lines`, `words=1`, `scale=log`,
//! `palette=<name>` and `threshold=<weight>` when they differ from the defaults; `seg=0`
//! turns sentence segmentation off; `show=<method>` (and `show2`) makes a heatmap show an
//! attribution instead of the attention; `step=<n>` shows the decoding up to its n-th step
//! (1-based), and `inside=1` opens every step view's score breakdown.

use crate::view::{Layout, Palette, Scale, ViewSettings};

/// The query parameters the page understands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// `text`: the sentence to translate at once.
    pub text: Option<String>,
    /// `model`: the model to use, when not the default one.
    pub model: Option<String>,
    /// `mode`: the attention mode, when not the model's default.
    pub mode: Option<String>,
    /// `compare=1`: show a second run beside the first.
    pub compare: bool,
    /// `model2`: the second run's model, when not the default one.
    pub model2: Option<String>,
    /// `mode2`: the second run's attention mode, when not its model's default.
    pub mode2: Option<String>,
    /// `beam`: the first run's beam width, when searching.
    pub beam: Option<usize>,
    /// `beam2`: the second run's beam width, when searching.
    pub beam2: Option<usize>,
    /// `seg=0`: translate the whole text as one sequence, not sentence by sentence.
    pub whole: bool,
    /// `show`: the attribution method the first heatmap shows instead of the attention.
    pub show: Option<String>,
    /// `show2`: the same for the second run.
    pub show2: Option<String>,
    /// `step`: the last step shown, 0-based here (the URL counts from 1); every step when
    /// absent.
    pub step: Option<usize>,
    /// `inside=1`: ask for the attention scores and show how each weight is computed.
    pub inside: bool,
    /// How the heatmaps are drawn.
    pub view: ViewSettings,
}

impl Query {
    /// Parses a `location.search` string (with or without the leading `?`); later
    /// duplicates of a parameter are ignored, empty values count as absent.
    pub fn parse(search: &str) -> Self {
        let mut q = Self::default();
        let search = search.strip_prefix('?').unwrap_or(search);
        for pair in search.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            let slot = match decode(key).as_str() {
                "text" => &mut q.text,
                "model" => &mut q.model,
                "mode" => &mut q.mode,
                "model2" => &mut q.model2,
                "mode2" => &mut q.mode2,
                "show" | "show2" => {
                    let slot = if key.ends_with('2') {
                        &mut q.show2
                    } else {
                        &mut q.show
                    };
                    if slot.is_none() && attnscope_protocol::explain_method(&value).is_some() {
                        *slot = Some(value);
                    }
                    continue;
                }
                "beam" | "beam2" => {
                    let width = value.parse().ok().filter(|w| (2..=16).contains(w));
                    let slot = if key.ends_with('2') {
                        &mut q.beam2
                    } else {
                        &mut q.beam
                    };
                    if slot.is_none() {
                        *slot = width;
                    }
                    continue;
                }
                "layout" => {
                    q.view.layout = if value == "lines" {
                        Layout::Lines
                    } else {
                        Layout::Matrix
                    };
                    continue;
                }
                "words" => {
                    q.view.words = value == "1";
                    continue;
                }
                "scale" => {
                    q.view.scale = value.parse().unwrap_or_default();
                    continue;
                }
                "palette" => {
                    q.view.palette = value.parse().unwrap_or_default();
                    continue;
                }
                "threshold" => {
                    if let Ok(t) = value.parse::<f32>() {
                        q.view.threshold = t.clamp(0.0, 1.0);
                    }
                    continue;
                }
                "compare" => {
                    q.compare = matches!(value.as_str(), "1" | "true" | "yes");
                    continue;
                }
                "seg" => {
                    q.whole = matches!(value.as_str(), "0" | "false" | "no");
                    continue;
                }
                "step" => {
                    if q.step.is_none() {
                        q.step = value
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n >= 1)
                            .map(|n| n - 1);
                    }
                    continue;
                }
                "inside" => {
                    q.inside = matches!(value.as_str(), "1" | "true" | "yes");
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value);
            }
        }
        q
    }

    /// The URL to put in the address bar: `path?text=…[&model=…][&mode=…][&compare=1…]`.
    pub fn to_url(&self, path: &str) -> String {
        let mut parts = Vec::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                parts.push(format!("{key}={}", encode(v)));
            }
        };
        put("text", &self.text);
        put("model", &self.model);
        put("mode", &self.mode);
        put("beam", &self.beam.map(|b| b.to_string()));
        put("show", &self.show);
        put("seg", &self.whole.then(|| "0".to_owned()));
        put("step", &self.step.map(|k| (k + 1).to_string()));
        put("inside", &self.inside.then(|| "1".to_owned()));
        if self.compare {
            put("compare", &Some("1".into()));
            put("model2", &self.model2);
            put("mode2", &self.mode2);
            put("beam2", &self.beam2.map(|b| b.to_string()));
            put("show2", &self.show2);
        }
        let v = &self.view;
        put(
            "layout",
            &(v.layout == Layout::Lines).then(|| "lines".to_owned()),
        );
        put("words", &v.words.then(|| "1".to_owned()));
        let differs =
            |name: &'static str, default: &'static str| (name != default).then(|| name.to_owned());
        put("scale", &differs(v.scale.name(), Scale::default().name()));
        put(
            "palette",
            &differs(v.palette.name(), Palette::default().name()),
        );
        put(
            "threshold",
            &(v.threshold > 0.0).then(|| format!("{:.2}", v.threshold)),
        );
        if parts.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (space becomes `%20`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; malformed
/// escapes are kept as they are and invalid UTF-8 is replaced.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_text() {
        for text in [
            "I am cold.",
            "a+b=c & d?",
            "Où est la gare ? 100% sûr",
            "#hash/slash",
        ] {
            let q = Query {
                text: Some(text.into()),
                model: Some("gru-luong".into()),
                ..Query::default()
            };
            let url = q.to_url("/");
            let search = url.strip_prefix('/').unwrap_or(&url);
            assert_eq!(Query::parse(search), q, "{url}");
        }
    }

    #[test]
    fn builds_urls() {
        let q = Query {
            text: Some("I am cold.".into()),
            ..Query::default()
        };
        assert_eq!(q.to_url("/"), "/?text=I%20am%20cold.");
        assert_eq!(Query::default().to_url("/"), "/");
    }

    #[test]
    fn a_comparison_round_trips() {
        let q = Query {
            text: Some("I am cold.".into()),
            mode: Some("soft".into()),
            compare: true,
            mode2: Some("hard".into()),
            model2: Some("hard".into()),
            ..Query::default()
        };
        let url = q.to_url("/");
        assert_eq!(
            url,
            "/?text=I%20am%20cold.&mode=soft&compare=1&model2=hard&mode2=hard"
        );
        assert_eq!(Query::parse(url.strip_prefix('/').unwrap()), q);
        // Without compare=1 the second run's fields are not written.
        let single = Query {
            compare: false,
            ..q
        };
        assert_eq!(single.to_url("/"), "/?text=I%20am%20cold.&mode=soft");
        assert!(!Query::parse("?compare=0").compare);
        let whole = Query::parse("?text=a&seg=0");
        assert!(whole.whole);
        assert_eq!(whole.to_url("/"), "/?text=a&seg=0");
        assert!(!Query::parse("?text=a&seg=1").whole);
        let beams = Query::parse("?text=a&beam=4&compare=1&beam2=99");
        assert_eq!((beams.beam, beams.beam2), (Some(4), None));
        assert_eq!(beams.to_url("/"), "/?text=a&beam=4&compare=1");
        let shown = Query::parse("?text=a&show=erasure&compare=1&show2=integrated_gradients");
        assert_eq!(shown.show.as_deref(), Some("erasure"));
        assert_eq!(shown.show2.as_deref(), Some("integrated_gradients"));
        assert_eq!(
            shown.to_url("/"),
            "/?text=a&show=erasure&compare=1&show2=integrated_gradients"
        );
        assert_eq!(Query::parse("?text=a&show=saliency").show, None);
        let stepped = Query::parse("?text=a&step=3&inside=1");
        assert_eq!((stepped.step, stepped.inside), (Some(2), true));
        assert_eq!(stepped.to_url("/"), "/?text=a&step=3&inside=1");
        assert_eq!(Query::parse("?text=a&step=0").step, None);
        assert_eq!(Query::parse("?text=a&step=x").step, None);
        let view =
            Query::parse("?text=a&layout=lines&words=1&scale=log&palette=greys&threshold=0.25");
        assert_eq!(
            view.view,
            ViewSettings {
                layout: Layout::Lines,
                words: true,
                scale: Scale::log(),
                palette: Palette::Greys,
                threshold: 0.25
            }
        );
        assert_eq!(
            view.to_url("/"),
            "/?text=a&layout=lines&words=1&scale=log&palette=greys&threshold=0.25"
        );
    }

    #[test]
    fn parses_browser_style_queries() {
        let q = Query::parse("?text=Where+is+the+train%20station%3F&model=luong&x=1");
        assert_eq!(q.text.as_deref(), Some("Where is the train station?"));
        assert_eq!(q.model.as_deref(), Some("luong"));
        assert_eq!(Query::parse(""), Query::default());
        assert_eq!(Query::parse("?text=&model"), Query::default());
        assert_eq!(Query::parse("text=a&text=b").text.as_deref(), Some("a"));
    }

    #[test]
    fn tolerates_malformed_escapes() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9"), "\u{e9}");
        assert_eq!(decode("%FF"), "\u{fffd}");
    }
}
