//! Errors, worded like Go's `text/template`.

/// A template error. `Display` prints Go's message, e.g.
/// `template: commit message:3: function "nosuchfn" not defined` (parse) or
/// `template: commit message:1:2: executing "commit message" at <.Updated>: can't evaluate field
/// Updated in type source.TemplateData` (execution).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The template text is invalid (Go's `Parse` error).
    #[error("{0}")]
    Parse(String),
    /// Rendering failed (Go's `Execute` error).
    #[error("{0}")]
    Exec(String),
    /// A [`crate::Limits`] budget ran out. The message says where, like an execution error
    /// (`template: commit message:1:3: executing "commit message" at <repeat 2000000000 "x">:
    /// value size limit exceeded: ...`).
    #[error("{message}")]
    Limit {
        exceeded: crate::LimitExceeded,
        message: String,
    },
}

impl Error {
    /// The full Go-style message.
    pub fn message(&self) -> &str {
        match self {
            Error::Parse(m) | Error::Exec(m) | Error::Limit { message: m, .. } => m,
        }
    }

    /// The limit that stopped execution, if one did.
    pub fn limit_exceeded(&self) -> Option<crate::LimitExceeded> {
        match self {
            Error::Limit { exceeded, .. } => Some(*exceeded),
            Error::Parse(_) | Error::Exec(_) => None,
        }
    }
}
