//! HTTP calls to the attnscope server (same origin), with `fetch` from `web-sys`.
//!
//! [`translate`] streams: it POSTs the request asking for `text/event-stream`, reads the
//! response body chunk by chunk with a `ReadableStreamDefaultReader` and a streaming
//! `TextDecoder`, feeds the text to [`SseParser`], and hands each decoded [`StreamEvent`] to
//! a callback as soon as it is complete (`EventSource` cannot POST).

use std::fmt;

use attnscope_protocol::{ErrorBody, ModelInfo, RenderRequest, TranslateRequest};
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, ReadableStreamDefaultReader, ReadableStreamReadResult, RequestInit, Response,
    TextDecodeOptions, TextDecoder,
};

use crate::events::StreamEvent;
use crate::sse::SseParser;

/// Path of the model list.
pub const MODELS_PATH: &str = "/api/models";
/// Path of the translation endpoint.
pub const TRANSLATE_PATH: &str = "/api/translate";
/// Path of the export endpoint (`?format=png|svg|json|csv`).
pub const RENDER_PATH: &str = "/api/render";

/// A failed call, as a message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong, readable by the user.
    pub message: String,
    /// Whether the request was cancelled on purpose (a newer one replaced it).
    pub aborted: bool,
}

impl ApiError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            aborted: false,
        }
    }

    /// Turns a rejected promise or thrown exception into a message.
    fn from_js(value: JsValue) -> Self {
        if let Some(err) = value.dyn_ref::<js_sys::Error>() {
            let name = String::from(err.name());
            let message = String::from(err.message());
            if name == "AbortError" {
                return Self {
                    message: "The request was cancelled.".into(),
                    aborted: true,
                };
            }
            if name == "TypeError" {
                return Self::new(format!(
                    "Could not reach the attnscope server ({message}). Is it running?"
                ));
            }
            return Self::new(format!("{name}: {message}"));
        }
        Self::new(
            value
                .as_string()
                .unwrap_or_else(|| format!("Unexpected browser error: {value:?}")),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<JsValue> for ApiError {
    fn from(value: JsValue) -> Self {
        Self::from_js(value)
    }
}

async fn fetch(path: &str, init: &RequestInit) -> Result<Response, ApiError> {
    let window = web_sys::window().ok_or_else(|| ApiError::new("No browser window."))?;
    let response = JsFuture::from(window.fetch_with_str_and_init(path, init)).await?;
    let response: Response = response
        .dyn_into()
        .map_err(|_| ApiError::new("fetch did not return a Response."))?;
    if response.ok() {
        Ok(response)
    } else {
        Err(error_from_response(&response).await)
    }
}

async fn response_text(response: &Response) -> Result<String, ApiError> {
    let text = JsFuture::from(response.text()?).await?;
    Ok(text.as_string().unwrap_or_default())
}

/// The message of a non-2xx answer: the `message` of its [`ErrorBody`] when it has one.
async fn error_from_response(response: &Response) -> ApiError {
    let status = response.status();
    let body = response_text(response).await.unwrap_or_default();
    ApiError::new(describe_error(status, &response.status_text(), &body))
}

/// The message shown for an error answer with this status and body.
pub fn describe_error(status: u16, status_text: &str, body: &str) -> String {
    if let Ok(err) = serde_json::from_str::<ErrorBody>(body) {
        return err.message;
    }
    let body = body.trim();
    let mut message = format!("The server answered {status} {status_text}")
        .trim_end()
        .to_owned();
    if !body.is_empty() && body.len() <= 200 && !body.starts_with('<') {
        message.push_str(": ");
        message.push_str(body);
    } else {
        message.push('.');
    }
    message
}

/// `GET /api/models`.
pub async fn models() -> Result<Vec<ModelInfo>, ApiError> {
    let init = RequestInit::new();
    init.set_method("GET");
    let headers = web_sys::Headers::new()?;
    headers.set("Accept", "application/json")?;
    init.set_headers_headers(&headers);
    let response = fetch(MODELS_PATH, &init).await?;
    let text = response_text(&response).await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::new(format!("The model list is malformed: {e}")))
}

/// `POST /api/render?format=<format>`: the server draws (PNG, SVG) or writes out (JSON, CSV)
/// the attention, and the browser saves the answer as `attention.<format>`.
pub async fn export(request: &RenderRequest, format: &str) -> Result<(), ApiError> {
    let body = serde_json::to_string(request)
        .map_err(|e| ApiError::new(format!("Could not encode the export: {e}")))?;
    let init = RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    init.set_headers_headers(&headers);
    init.set_body(&JsValue::from_str(&body));
    let response = fetch(&format!("{RENDER_PATH}?format={format}"), &init).await?;
    let blob: web_sys::Blob = JsFuture::from(response.blob()?)
        .await?
        .dyn_into()
        .map_err(|_| ApiError::new("The export is not a file."))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| ApiError::new("No document to download into."))?;
    let a: web_sys::HtmlAnchorElement = document
        .create_element("a")?
        .dyn_into()
        .map_err(|_| ApiError::new("Could not create a download link."))?;
    a.set_href(&url);
    a.set_download(&format!("attention.{format}"));
    a.click();
    web_sys::Url::revoke_object_url(&url)?;
    Ok(())
}

/// `POST /api/translate` as a stream: calls `on_event` for every event as it arrives and
/// returns once `done` arrived. An `error` event is passed to `on_event` and also returned as
/// the error; a stream that ends before `done` is an error too.
pub async fn translate(
    request: &TranslateRequest,
    signal: Option<&AbortSignal>,
    mut on_event: impl FnMut(StreamEvent),
) -> Result<(), ApiError> {
    let body = serde_json::to_string(request)
        .map_err(|e| ApiError::new(format!("Could not encode the request: {e}")))?;
    let init = RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Accept", "text/event-stream")?;
    init.set_headers_headers(&headers);
    init.set_body(&JsValue::from_str(&body));
    init.set_signal(signal);
    let response = fetch(TRANSLATE_PATH, &init).await?;

    let mut parser = SseParser::new();
    let mut handle = |chunk: &str| -> Result<bool, ApiError> {
        for sse in parser.feed(chunk) {
            let Some(event) = StreamEvent::decode(&sse).map_err(ApiError::new)? else {
                continue;
            };
            let error = match &event {
                StreamEvent::Error(e) => Some(ApiError::new(e.message.clone())),
                _ => None,
            };
            let last = event.is_last();
            on_event(event);
            if let Some(error) = error {
                return Err(error);
            }
            if last {
                return Ok(true);
            }
        }
        Ok(false)
    };

    let Some(stream) = response.body() else {
        // No streaming body (very old browser): read it whole.
        let text = response_text(&response).await?;
        return if handle(&text)? {
            Ok(())
        } else {
            Err(ended_early())
        };
    };
    let reader: ReadableStreamDefaultReader = stream
        .get_reader()
        .dyn_into()
        .map_err(|_| ApiError::new("Could not read the response stream."))?;
    let decoder = TextDecoder::new_with_label("utf-8")?;
    let options = TextDecodeOptions::new();
    options.set_stream(true);
    loop {
        let result: ReadableStreamReadResult =
            JsFuture::from(reader.read()).await?.unchecked_into();
        if result.get_done().unwrap_or(false) {
            let tail = decoder.decode()?;
            return if handle(&tail)? {
                Ok(())
            } else {
                Err(ended_early())
            };
        }
        let value = result.get_value();
        let Some(bytes) = value.dyn_ref::<Uint8Array>() else {
            continue;
        };
        let text = decoder.decode_with_js_u8_array_and_options(bytes, &options)?;
        if handle(&text)? {
            // Done: let the server close its side; nothing more is needed.
            let _ = reader.cancel();
            return Ok(());
        }
    }
}

fn ended_early() -> ApiError {
    ApiError::new("The translation stream ended before it was done. Please try again.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_prefer_the_error_body() {
        assert_eq!(
            describe_error(
                404,
                "Not Found",
                r#"{"error":"unknown_model","message":"No model named x."}"#
            ),
            "No model named x."
        );
        assert_eq!(
            describe_error(502, "Bad Gateway", "upstream down"),
            "The server answered 502 Bad Gateway: upstream down"
        );
        assert_eq!(
            describe_error(500, "", "<html>…</html>"),
            "The server answered 500."
        );
    }
}
