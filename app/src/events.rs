//! Typed events of a streamed translation, decoded from SSE events into the protocol
//! crate's types. Pure Rust, unit-tested natively.

use attnscope_protocol::{DoneEvent, ErrorBody, StartEvent, StepEvent, event};

use crate::sse::SseEvent;

/// One event of `POST /api/translate` as `text/event-stream`.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The tokenized source.
    Start(StartEvent),
    /// One decoding step.
    Step(StepEvent),
    /// The whole translation; the stream is over.
    Done(DoneEvent),
    /// Decoding failed; the stream is over.
    Error(ErrorBody),
}

impl StreamEvent {
    /// Decodes one SSE event; `Ok(None)` for event names this client does not know (ignored,
    /// so the server may add events), `Err` with a readable message for malformed data.
    pub fn decode(sse: &SseEvent) -> Result<Option<Self>, String> {
        fn parse<T: serde::de::DeserializeOwned>(sse: &SseEvent) -> Result<T, String> {
            serde_json::from_str(&sse.data)
                .map_err(|e| format!("The server sent a malformed `{}` event: {e}", sse.event))
        }
        Ok(Some(match sse.event.as_str() {
            event::START => Self::Start(parse(sse)?),
            event::STEP => Self::Step(parse(sse)?),
            event::DONE => Self::Done(parse(sse)?),
            event::ERROR => Self::Error(parse(sse)?),
            _ => return Ok(None),
        }))
    }

    /// Whether this event ends the stream.
    pub fn is_last(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Error(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    #[test]
    fn decodes_a_whole_stream() {
        let stream = concat!(
            "event: start\ndata: {\"model\":\"m\",\"source_tokens\":[\"\u{2581}cold\",\"</s>\"]}\n\n",
            "event: step\ndata: {\"index\":0,\"token\":\"\u{2581}froid\",\"attention\":[0.9,0.1]}\n\n",
            "event: ping\ndata: {}\n\n",
            "event: done\ndata: {\"translation\":\"froid\",\"target_tokens\":[\"\u{2581}froid\",\"</s>\"],\"elapsed_ms\":1.5}\n\n",
        );
        let mut p = SseParser::new();
        let events: Vec<StreamEvent> = p
            .feed(stream)
            .iter()
            .filter_map(|e| StreamEvent::decode(e).ok().flatten())
            .collect();
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], StreamEvent::Start(s) if s.source_tokens.len() == 2));
        assert!(matches!(&events[1], StreamEvent::Step(s) if s.token == "\u{2581}froid"));
        assert!(matches!(&events[2], StreamEvent::Done(d) if d.translation == "froid"));
        assert!(events[2].is_last() && !events[1].is_last());
    }

    #[test]
    fn error_events_and_malformed_data() {
        let err = SseEvent {
            event: "error".into(),
            data: "{\"error\":\"internal\",\"message\":\"boom\"}".into(),
        };
        assert!(matches!(
            StreamEvent::decode(&err),
            Ok(Some(StreamEvent::Error(ErrorBody { message, .. }))) if message == "boom"
        ));
        let bad = SseEvent {
            event: "step".into(),
            data: "{\"index\":".into(),
        };
        let msg = StreamEvent::decode(&bad).err().unwrap_or_default();
        assert!(msg.contains("malformed `step` event"), "{msg}");
    }
}
