//! gcp: in progress.
