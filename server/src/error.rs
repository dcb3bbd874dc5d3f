//! The one error type of the HTTP layer, rendered as `{"error": code, "message": text}`.

use attnscope_protocol::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    InvalidJson(String),
    #[error("the text is empty: type a sentence to translate")]
    EmptyText,
    #[error("the text has {0} characters; at most {max} are accepted", max = crate::MAX_TEXT_CHARS)]
    TextTooLong(usize),
    #[error("there is no model named {name:?}; available: {}", available.join(", "))]
    UnknownModel {
        name: String,
        available: Vec<String>,
    },
    #[error("the model {name:?} could not be loaded when the server started: {why}")]
    ModelUnavailable { name: String, why: String },
    #[error("{0}")]
    UnknownMode(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("{0}")]
    InvalidRender(String),
    #[error("there is no export format {0:?}: use png, svg, json or csv")]
    UnknownFormat(String),
    #[error("there is no colour scale {0:?}: use linear or log")]
    UnknownScale(String),
    #[error("there is no palette {0:?}: use viridis, cividis or greys")]
    UnknownPalette(String),
    #[error("the request body is larger than {limit} bytes, the limit of this endpoint")]
    BodyTooLarge { limit: usize },
    #[error("rendering failed: {0}")]
    RenderFailed(String),
    #[error("the server is shutting down")]
    Unavailable,
    #[error("the server is busy ({waiting} translations are waiting); retry in a second")]
    Busy { waiting: usize },
    /// A connection refused at accept (over a connection cap), answered `busy`.
    #[error("{0}")]
    TooManyConnections(&'static str),
    #[error("translation failed: {0}")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::InvalidJson(_)
            | AppError::EmptyText
            | AppError::UnknownMode(_)
            | AppError::InvalidOption(_)
            | AppError::InvalidRender(_)
            | AppError::UnknownFormat(_)
            | AppError::UnknownScale(_)
            | AppError::UnknownPalette(_) => StatusCode::BAD_REQUEST,
            AppError::TextTooLong(_) | AppError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AppError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            AppError::Unavailable
            | AppError::Busy { .. }
            | AppError::TooManyConnections(_)
            | AppError::ModelUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) | AppError::RenderFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidJson(_) => "invalid_json",
            AppError::EmptyText => "empty_text",
            AppError::TextTooLong(_) => "text_too_long",
            AppError::UnknownModel { .. } => "unknown_model",
            AppError::ModelUnavailable { .. } => "model_unavailable",
            AppError::UnknownMode(_) => "unknown_mode",
            AppError::InvalidOption(_) => "invalid_option",
            AppError::InvalidRender(_) => "invalid_render",
            AppError::UnknownFormat(_) => "unknown_format",
            AppError::UnknownScale(_) => "unknown_scale",
            AppError::UnknownPalette(_) => "unknown_palette",
            AppError::BodyTooLarge { .. } => "body_too_large",
            AppError::RenderFailed(_) => "render_failed",
            AppError::Unavailable => "unavailable",
            AppError::Busy { .. } | AppError::TooManyConnections(_) => "busy",
            AppError::Internal(_) => "internal",
        }
    }

    /// The error for a body that could not be read: too large for `limit`, or unreadable.
    pub fn from_body(e: axum::extract::rejection::BytesRejection, limit: usize) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::BodyTooLarge { limit }
        } else {
            AppError::InvalidJson(e.body_text())
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

impl From<attnscope_model::Error> for AppError {
    fn from(e: attnscope_model::Error) -> Self {
        match e {
            attnscope_model::Error::EmptyInput => AppError::EmptyText,
            attnscope_model::Error::Invalid(m) => AppError::InvalidOption(m),
            attnscope_model::Error::Internal(m) => AppError::Internal(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<attnscope_protocol::PackError> for AppError {
    fn from(e: attnscope_protocol::PackError) -> Self {
        AppError::Internal(format!("cannot pack attention weights: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        } else if self.status().is_server_error() {
            tracing::warn!(error = %self, "request refused");
        }
        let mut res = (self.status(), Json(self.body())).into_response();
        if matches!(self, AppError::Busy { .. }) {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_answer_by_kind() {
        use attnscope_model::Error;
        let status = |e: Error| {
            let a = AppError::from(e);
            (a.status(), a.code())
        };
        assert_eq!(
            status(Error::Invalid("beam 0".into())),
            (StatusCode::BAD_REQUEST, "invalid_option")
        );
        assert_eq!(status(Error::EmptyInput).0, StatusCode::BAD_REQUEST);
        assert_eq!(
            status(Error::Internal("poisoned variable map".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }
}
