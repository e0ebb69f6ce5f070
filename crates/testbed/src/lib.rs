//! Real components for integration and end-to-end tests.
//!
//! Users meet real registries, real git servers and a real Kubernetes API server, so our
//! tests do too. Every component starts on free loopback ports, in a temporary directory,
//! and stops when its handle is dropped. Binaries come from `e2e/setup.sh` (run by
//! `make setup` and `make test`); a component that cannot start fails the test with a
//! message saying what is missing, never a silent skip.
//!
//! - [`kube_apiserver::KubeApiServer`]: etcd + kube-apiserver with token auth and our CRDs.
//! - [`registry::Registry`]: `docker-registry` anonymous, htpasswd, or Bearer-token auth,
//!   optionally over TLS, with helpers to push and delete tags.
//! - [`git::GitHttpServer`] and [`git::GitSshServer`]: smart HTTP and SSH git remotes.
//! - [`fault_proxy::FaultProxy`]: a loopback HTTP proxy with switchable faults (delay, hang,
//!   reset, truncate, 429/5xx, echoed headers, huge bodies) for the registry or git server.
//! - [`socks5::Socks5Proxy`]: a loopback SOCKS5 proxy with username/password auth that
//!   records what it relays.
//! - [`prometheus::Prometheus`]: a Prometheus server scraping given targets.
//! - [`controllers`] and [`wait`]: test helpers that start our controllers against these
//!   and poll until a condition holds.

pub mod azure;
pub mod controllers;
pub mod error;
pub mod fault_proxy;
pub mod git;
pub mod github_app;
pub mod kube_apiserver;
pub mod leaks;
pub mod mapping_proxy;
pub mod moto;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod seed;
pub mod slow_client;
pub mod socks5;
pub mod tls;
pub mod tools;
pub mod wait;

pub use error::{Error, Result};

/// The repository root, for fixtures and generated CRDs.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
