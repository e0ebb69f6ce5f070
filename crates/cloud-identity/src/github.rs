//! github: in progress.
