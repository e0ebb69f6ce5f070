//! image-reflector: registry scanning, the tag store and policy evaluation.
//!
//! - [`reference`]: image names parsed as Flux parses them.
//! - [`registry`]: the Docker v2 / OCI client (auth, pagination, retries, digests) and the scan.
//! - [`store`]: the per-repository tag store.
//! - [`schedule`]: when a repository is scanned (pure).
//! - [`policy`]: which tag is latest, and digest reflection (pure).
//! - [`select`]: the offline `image-reflector select` command.
//! - [`serve`]: the `image-reflector serve` command (mode selection, flags, shutdown).
//! - [`kube_mode`]: the Kubernetes mode of `serve` (kube-runtime controllers, leader election).
//! - [`standalone`]: `serve --manifests DIR`, the reconcilers without a cluster.
//! - [`controller`]: the ImageRepository and ImagePolicy reconcilers (no Kubernetes client).
//! - [`api`], [`state`], [`metrics`]: the HTTP API, what it serves, and the Prometheus metrics.

pub mod api;
pub mod controller;
pub mod kube_mode;
pub mod metrics;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod schedule;
pub mod select;
pub mod serve;
pub mod standalone;
pub mod state;
pub mod store;
