//! An incremental Server-Sent-Events parser.
//!
//! [`SseParser::feed`] takes text in whatever chunks the network delivers (split anywhere,
//! even between `\r` and `\n`) and returns the events completed by that chunk. It follows the
//! [HTML event-stream rules](https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
//! lines end with `\n`, `\r\n` or `\r`; a blank line dispatches the event; `data:` lines are
//! joined with `\n`; lines starting with `:` are comments; one space after the colon is
//! dropped; an event without data is not dispatched; an event without an `event:` field is
//! named `message`; a trailing event not closed by a blank line is discarded at the end of
//! the stream. `id:` and `retry:` are accepted and ignored (nothing reconnects here).
//!
//! Pure Rust, no browser APIs: unit-tested natively.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `message` when there was none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds on text chunks and yields complete events; see the module docs.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Text of the current line not yet terminated.
    line: String,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    /// Whether the first character of the stream (a possible BOM) has been seen.
    started: bool,
    /// `event:` of the event being built.
    event: String,
    /// `data:` lines of the event being built, each followed by `\n`.
    data: String,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes one chunk of the stream and returns the events it completes, in order.
    pub fn feed(&mut self, chunk: &str) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if !self.started && !rest.is_empty() {
            self.started = true;
            rest = rest.strip_prefix('\u{feff}').unwrap_or(rest);
        }
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        while let Some(pos) = rest.find(['\r', '\n']) {
            self.line.push_str(&rest[..pos]);
            let terminator = rest.as_bytes()[pos];
            rest = &rest[pos + 1..];
            if terminator == b'\r' {
                if rest.is_empty() {
                    self.after_cr = true;
                } else {
                    rest = rest.strip_prefix('\n').unwrap_or(rest);
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process_line(&line) {
                out.push(event);
            }
        }
        self.line.push_str(rest);
        out
    }

    /// Ends the stream: whatever event was not closed by a blank line is discarded, as the
    /// specification requires, and the parser is ready for a new stream.
    pub fn finish(&mut self) {
        *self = Self::default();
    }

    fn process_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id`, `retry` and unknown fields: ignored.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        let event = if event.is_empty() {
            "message".to_owned()
        } else {
            event
        };
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    fn feed_all(chunks: &[&str]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.feed(c)).collect()
    }

    const STREAM: &str = "event: start\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: step\ndata: x\n\nevent: done\ndata: y\n\n";

    #[test]
    fn parses_whole_stream() {
        assert_eq!(
            feed_all(&[STREAM]),
            vec![ev("start", "{\"a\":1}"), ev("step", "x"), ev("done", "y")]
        );
    }

    #[test]
    fn same_events_however_the_stream_is_split() {
        let whole = feed_all(&[STREAM]);
        let chars: Vec<char> = STREAM.chars().collect();
        for cut in 0..=chars.len() {
            let a: String = chars[..cut].iter().collect();
            let b: String = chars[cut..].iter().collect();
            assert_eq!(feed_all(&[&a, &b]), whole, "cut at {cut}");
        }
        let singles: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
        assert_eq!(feed_all(&refs), whole);
    }

    #[test]
    fn crlf_and_cr_line_endings_even_split_between_cr_and_lf() {
        let crlf = STREAM.replace('\n', "\r\n");
        let whole = feed_all(&[&crlf]);
        assert_eq!(whole, feed_all(&[STREAM]));
        for cut in 0..=crlf.len() {
            if crlf.is_char_boundary(cut) {
                assert_eq!(feed_all(&[&crlf[..cut], &crlf[cut..]]), whole, "cut {cut}");
            }
        }
        let cr = STREAM.replace('\n', "\r");
        assert_eq!(feed_all(&[&cr]), whole);
        assert_eq!(
            feed_all(&["data: a\r", "\r", "data: b\r\n\r\n"]),
            vec![ev("message", "a"), ev("message", "b")]
        );
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        assert_eq!(
            feed_all(&["data: one\ndata:two\ndata:  three\ndata\n\n"]),
            vec![ev("message", "one\ntwo\n three\n")]
        );
    }

    #[test]
    fn comments_ids_retry_and_empty_events_are_skipped() {
        assert_eq!(
            feed_all(&[":comment\nid: 7\nretry: 1000\n\nevent: lonely\n\ndata: z\n\n"]),
            vec![ev("message", "z")]
        );
    }

    #[test]
    fn event_name_does_not_leak_into_the_next_event() {
        assert_eq!(
            feed_all(&["event: step\ndata: 1\n\ndata: 2\n\n"]),
            vec![ev("step", "1"), ev("message", "2")]
        );
    }

    #[test]
    fn unterminated_event_is_held_then_discarded_on_finish() {
        let mut p = SseParser::new();
        assert!(p.feed("event: done\ndata: partial").is_empty());
        assert!(p.feed("\n").is_empty());
        p.finish();
        assert!(p.feed("\n").is_empty());
        assert_eq!(p.feed("data: fresh\n\n"), vec![ev("message", "fresh")]);
    }

    #[test]
    fn leading_bom_and_unicode_payloads() {
        assert_eq!(
            feed_all(&["\u{feff}event: step\ndata: {\"token\":\"\u{2581}froid\"}\n\n"]),
            vec![ev("step", "{\"token\":\"\u{2581}froid\"}")]
        );
    }
}
