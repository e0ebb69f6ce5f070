//! Kubernetes plumbing shared by image-reflector and image-automation.
//!
//! - [`leader`]: leader election on a `coordination.k8s.io/v1` Lease with compare-and-swap
//!   writes, so two replicas never lead at once, even when they start in the same instant.
//! - [`args`]: the `serve` flag groups both binaries flatten (logging, leader election,
//!   backoff, watch selector, concurrency, HTTP) with Flux's defaults.
//! - [`admin`]: the `/healthz`, `/readyz` and `/metrics` server.
//! - [`driver`]: the Kubernetes front end around both services' cores: the shared context
//!   (client, events, SSA status, schedule), the `Reconcile` trait and controller loop, keys,
//!   the finalizer wrapper, `error_policy`, leader election and the leader-gated loop,
//!   first-sync readiness.
//! - [`events`]: events.k8s.io/v1 events that fold only identical events (working around
//!   kube-runtime's `Recorder`, which folds every event with the same reason).
//! - [`gotk`]: Flux's `gotk_*` reconcile metrics, kept compactly per object ([`series`]).
//! - [`series`]: per-object metric families written straight to the text format.
//! - [`objects`]: the label-selector watcher config, the trigger fingerprint, `ErrorCategory`,
//!   the ServiceAccounts of object-level workload identity.
//! - [`redact`]: scrubs the credentials sent to a remote out of text the remote sent back.
//! - [`http`]: the HTTP/1.1 server with header-read, idle and connection limits.
//! - [`manifests`]: the directory front end of the standalone modes (polling, keep-last-good
//!   per file, `List` flattening, default namespace, the one Secret decoder).
//! - [`selector`]: Kubernetes label selectors (`--watch-label-selector`, `?labelSelector=`).
//! - [`schedule`]: one `Next`, one retry backoff (Flux's 750ms to 15m) and one `Schedule` of
//!   due times for both services.
//! - [`process`]: the stderr logger, the termination signal, whether a kubeconfig exists.

pub mod admin;
pub mod args;
pub mod driver;
pub mod events;
pub mod gotk;
pub mod http;
pub mod leader;
pub mod manifests;
pub mod objects;
pub mod process;
pub mod redact;
pub mod schedule;
pub mod selector;
pub mod series;
