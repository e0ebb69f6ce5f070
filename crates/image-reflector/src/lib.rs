//! image-reflector: registry scanning, the tag store and policy evaluation.
//!
//! - [`reference`]: image names parsed as Flux parses them.
//! - [`registry`]: the Docker v2 / OCI client (auth, pagination, retries, digests) and the scan.
//! - [`store`]: the per-repository tag store.
//! - [`schedule`]: when a repository is scanned (pure).
//! - [`policy`]: which tag is latest, and digest reflection (pure).
//! - [`cli`]: the commands: [`cli::select`] (offline) and [`cli::serve`] (mode selection,
//!   flags, shutdown).
//! - [`modes`]: `serve` on the controller kit: [`modes::kube`] (kube-runtime controllers,
//!   leader election) and [`modes::standalone`] (`--manifests DIR`, without a cluster).
//! - [`reconcile`]: the ImageRepository and ImagePolicy reconcilers (no Kubernetes client).
//! - [`api`], [`state`], [`metrics`]: the HTTP API, what it serves, and the Prometheus metrics.

pub mod api;
pub mod cli;
pub mod metrics;
pub mod modes;
pub mod policy;
pub mod reconcile;
pub mod reference;
pub mod registry;
pub mod schedule;
pub mod state;
pub mod store;
