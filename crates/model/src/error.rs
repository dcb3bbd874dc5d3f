use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("the input is empty: type a sentence to translate")]
    EmptyInput,
    /// An input, option or file the caller can fix; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// A fault of this program, not of its input (a shape that cannot happen, a poisoned
    /// lock): the server answers 500 and logs it.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
