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
use kube_support::admin::AdminServer;

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

/// The options of `serve` both modes take.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub reflector_url: String,
    pub storage_path: PathBuf,
    pub http_addr: SocketAddr,
    pub no_cross_namespace_refs: bool,
    pub backoff: RetryDelays,
    /// `--removed-template-fields`.
    pub removed_template_fields: RemovedFields,
    /// `--feature-gates=GitSparseCheckout=true`.
    pub sparse_checkout: bool,
}

/// The options of `serve` with `--manifests`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifests: PathBuf,
    pub once: bool,
    /// `--concurrent`: runs in flight at most (at least 1).
    pub concurrent: usize,
    /// `--watch-label-selector`: only matching automations run; `None` when empty.
    pub selector: Option<LabelSelector>,
    pub service: ServiceOptions,
}

/// The options of `serve` in Kubernetes mode.
#[derive(Debug, Clone)]
pub struct KubeServeOptions {
    pub controllers: kube_support::driver::ControllerSettings,
    pub service: ServiceOptions,
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

pub(crate) fn reconciler(opts: &ServiceOptions) -> Result<Reconciler<ReflectorClient>, ServeError> {
    let storage_path = &opts.storage_path;
    std::fs::create_dir_all(storage_path).map_err(|source| ServeError::Storage {
        path: storage_path.display().to_string(),
        source,
    })?;
    Ok(Reconciler {
        policies: ReflectorClient::new(&opts.reflector_url)?,
        git: Arc::new(GitCache::new(storage_path)),
        options: ReconcilerOptions {
            no_cross_namespace_refs: opts.no_cross_namespace_refs,
            removed_template_fields: opts.removed_template_fields,
            sparse_checkout: opts.sparse_checkout,
            ..ReconcilerOptions::default()
        },
    })
}

/// What both long-running modes start with: the reconciler, the metrics, readiness (false
/// until the mode's first pass or sync) and the one admin server (`/healthz`, `/readyz`,
/// `/metrics`) on `--http-addr`.
pub(crate) struct Started {
    pub reconciler: Arc<Reconciler<ReflectorClient>>,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub admin: AdminServer,
}

pub(crate) async fn start(opts: &ServiceOptions) -> Result<Started, ServeError> {
    let reconciler = Arc::new(reconciler(opts)?);
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let render = metrics.clone();
    let admin = kube_support::admin::start(opts.http_addr, ready.clone(), move || render.render())
        .await
        .map_err(|e| ServeError::Listen {
            addr: e.addr,
            source: e.source,
        })?;
    Ok(Started {
        reconciler,
        metrics,
        ready,
        admin,
    })
}

/// How long shutdown waits for runs in flight once git I/O is cancelled: a fetch stops at
/// its next read and a push is killed at once, so only a connection that hangs before its
/// first byte (which gix cannot interrupt) takes this long. Well below the charts' 10 s
/// `terminationGracePeriodSeconds`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
