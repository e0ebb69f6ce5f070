//! Errors name the component and say what to do.

use std::path::PathBuf;

/// Why a component could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{component}: binary not found ({hint}); run `make setup` (e2e/setup.sh) to install it"
    )]
    Missing {
        component: &'static str,
        hint: String,
    },
    #[error("{component} did not become ready within {seconds}s; last log lines:\n{log_tail}")]
    NotReady {
        component: &'static str,
        seconds: u64,
        log_tail: String,
    },
    #[error("{component} exited early ({status}); last log lines:\n{log_tail}")]
    Exited {
        component: &'static str,
        status: String,
        log_tail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {message}")]
    Command { context: String, message: String },
    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("kubernetes: {0}")]
    Kube(String),
    #[error("{0}: {1}")]
    Path(PathBuf, String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to I/O errors.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

pub(crate) fn http_error(url: &str, err: impl std::fmt::Display) -> Error {
    Error::Http {
        url: url.to_string(),
        message: err.to_string(),
    }
}
