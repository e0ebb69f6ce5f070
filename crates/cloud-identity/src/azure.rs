//! azure: in progress.
