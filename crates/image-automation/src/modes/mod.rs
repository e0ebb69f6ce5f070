//! What both modes of `image-automation serve` share: the options, the error, the
//! reconciler, the admin server, the run logs and the shutdown grace. The modes:
//! [`standalone`] (`--manifests DIR`, with `--once`) and [`kube`] (against a cluster).
//!
//! Statuses live in memory in standalone mode. Logs name objects, reasons and messages,
//! never secret data.

pub mod kube;
pub mod standalone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use api_types::ImageUpdateAutomation;
use api_types::duration::parse_duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;

use crate::git::GitCache;
use crate::message::RemovedFields;
use crate::metrics::Metrics;
use crate::reconcile::{EventType, Reconciler, ReconcilerOptions, RunReport};
use crate::reflector_client::{ReflectorClient, ReflectorError};
use kube_support::selector::LabelSelector;
use standalone::manifests::{Key, ManifestError};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// The retry delays after failed runs (Flux's, shared with the reflector).
pub use kube_support::schedule::RetryDelays;

pub use kube_support::process::{LogEncoding, LogLevel, init_logging};

/// The options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifests: PathBuf,
    pub reflector_url: String,
    pub storage_path: PathBuf,
    pub http_addr: SocketAddr,
    pub once: bool,
    pub no_cross_namespace_refs: bool,
    pub backoff: RetryDelays,
    /// `--concurrent`: runs in flight at most (at least 1).
    pub concurrent: usize,
    /// `--watch-label-selector`: only matching automations run; `None` when empty.
    pub selector: Option<LabelSelector>,
    /// `--removed-template-fields`.
    pub removed_template_fields: RemovedFields,
    /// `--feature-gates=GitSparseCheckout=true`.
    pub sparse_checkout: bool,
}

/// The options of `serve` in Kubernetes mode.
#[derive(Debug, Clone)]
pub struct KubeServeOptions {
    pub reflector_url: String,
    pub storage_path: PathBuf,
    pub http_addr: SocketAddr,
    pub no_cross_namespace_refs: bool,
    pub backoff: RetryDelays,
    pub controllers: kube_support::driver::ControllerSettings,
    /// `--removed-template-fields`.
    pub removed_template_fields: RemovedFields,
    /// `--feature-gates=GitSparseCheckout=true`.
    pub sparse_checkout: bool,
}

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    #[error("--manifests {path}: {source}")]
    ManifestDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Reflector(#[from] ReflectorError),
    #[error("creating storage path {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("logging: {0}")]
    Logging(#[from] kube_support::process::LoggingError),
    #[error(transparent)]
    Kubernetes(#[from] kube::KubeModeError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

pub use kube_support::process::kubernetes_config_exists;

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub fn log_report(key: &Key, report: &RunReport, elapsed: Duration) {
    let (ns, name) = (key.0.as_str(), key.1.as_str());
    for event in &report.events {
        match event.type_ {
            EventType::Warning => tracing::warn!(
                namespace = ns, name, reason = %event.reason, elapsed = ?elapsed,
                "{}", event.message
            ),
            EventType::Normal => tracing::info!(
                namespace = ns, name, reason = %event.reason, elapsed = ?elapsed,
                "{}", event.message
            ),
            EventType::Trace => tracing::debug!(
                namespace = ns, name, reason = %event.reason, elapsed = ?elapsed,
                "{}", event.message
            ),
        }
    }
}

/// A warning log line per deprecation of the spec (see [`RunReport::deprecations`]).
pub fn log_deprecations(key: &Key, report: &RunReport) {
    for d in &report.deprecations {
        tracing::warn!(namespace = %key.0, name = %key.1, reason = %d.reason, "{}", d.message);
    }
}

pub fn interval_of(obj: &ImageUpdateAutomation) -> Duration {
    parse_duration(&obj.spec.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

pub(crate) fn reconciler(
    reflector_url: &str,
    storage_path: &std::path::Path,
    no_cross_namespace_refs: bool,
    removed_template_fields: RemovedFields,
    sparse_checkout: bool,
) -> Result<Reconciler<ReflectorClient>, ServeError> {
    std::fs::create_dir_all(storage_path).map_err(|source| ServeError::Storage {
        path: storage_path.display().to_string(),
        source,
    })?;
    Ok(Reconciler {
        policies: ReflectorClient::new(reflector_url)?,
        git: Arc::new(GitCache::new(storage_path)),
        options: ReconcilerOptions {
            no_cross_namespace_refs,
            removed_template_fields,
            sparse_checkout,
            ..ReconcilerOptions::default()
        },
    })
}

/// Starts the one admin server (`/healthz`, `/readyz`, `/metrics`) on `addr`.
pub(crate) async fn start_http(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
) -> Result<(tokio::task::JoinHandle<std::io::Result<()>>, Arc<Notify>), ServeError> {
    let server = kube_support::admin::start(addr, ready, move || metrics.render())
        .await
        .map_err(|e| ServeError::Listen {
            addr: e.addr,
            source: e.source,
        })?;
    Ok((server.task, server.shutdown))
}

/// How long shutdown waits for runs in flight once git I/O is cancelled: a fetch stops at
/// its next read and a push is killed at once, so only a connection that hangs before its
/// first byte (which gix cannot interrupt) takes this long. Well below the charts' 10 s
/// `terminationGracePeriodSeconds`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
