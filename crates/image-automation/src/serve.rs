//! `image-automation serve`: the controller process.
//!
//! Mode: `--manifests DIR` runs the standalone mode below; otherwise the Kubernetes mode
//! ([`crate::kube_mode`]) runs when a kubeconfig (`$KUBECONFIG`, `~/.kube/config`) or the
//! in-cluster configuration exists (the reflector's rule). Both serve `/healthz`, `/readyz`
//! and `/metrics` on `--http-addr` and share [`Metrics`] and the retry backoff shape.
//!
//! Standalone mode:
//! - `--once`: every automation runs once (sorted by namespace/name); a JSON summary goes to
//!   stdout; the exit status says whether all ended Ready.
//! - Otherwise: the manifest directory is re-read every second; each automation runs when
//!   first seen, when its manifest changes, at its `interval` after a success, with
//!   exponential backoff after a failure (a stalled one waits for a manifest change), and
//!   within a second of the reflector's change feed reporting a policy change in its
//!   namespace. `/healthz`, `/readyz` (after every automation ran once) and `/metrics` are
//!   served on `--http-addr`. SIGTERM or Ctrl-C stops it after the runs in flight.
//!
//! Statuses live in memory. Logs name objects, reasons and messages, never secret data.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use api_types::ImageUpdateAutomation;
use api_types::duration::parse_duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::controller::{
    EventType, Reconciler, ReconcilerOptions, RunOutcome, RunReport, describe_unmatched,
};
use crate::git::GitCache;
use crate::message::RemovedFields;
use crate::metrics::Metrics;
use crate::reflector_client::{FeedEvent, ReflectorClient, ReflectorError};
use crate::setters::Unmatched;
use crate::standalone::{Key, ManifestError, ManifestSource, Manifests};
use kube_support::schedule::{Backoff, Next, Schedule};
use kube_support::selector::LabelSelector;

const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
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
    pub concurrent: u16,
    pub watch_label_selector: String,
    pub enable_leader_election: bool,
    pub leader_election_lease_duration: Duration,
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
    Kubernetes(#[from] crate::kube_mode::KubeModeError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

pub use kube_support::process::kubernetes_config_exists;

/// One automation in the `--once` summary.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutomationSummary {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_push_commit: Option<String>,
    /// Whether this run pushed a commit.
    pub pushed: bool,
    /// Values changed by this run.
    pub changes: usize,
    /// Files changed by this run.
    pub changed_files: Vec<String>,
    /// Markers that were not applied, and why.
    pub unmatched: Vec<Unmatched>,
}

/// The `--once` summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub automations: Vec<AutomationSummary>,
}

impl AutomationSummary {
    fn new(key: &Key, report: &RunReport) -> Self {
        let (reason, message) = report.outcome.reason_and_message();
        // The Ready condition's message says more than the outcome (unparseable files).
        let message = report
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map_or(message, |c| c.message.as_str());
        Self {
            namespace: key.0.clone(),
            name: key.1.clone(),
            ready: report.outcome.is_ready(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_push_commit: report.pushed.as_ref().map(|p| p.commit.clone()),
            pushed: report.pushed.is_some(),
            changes: report.result.change_count(),
            changed_files: report.result.files.iter().map(|f| f.path.clone()).collect(),
            unmatched: report.result.unmatched.clone(),
        }
    }
}

pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub(crate) fn log_report(key: &Key, report: &RunReport, elapsed: Duration) {
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
pub(crate) fn log_deprecations(key: &Key, report: &RunReport) {
    for d in &report.deprecations {
        tracing::warn!(namespace = %key.0, name = %key.1, reason = %d.reason, "{}", d.message);
    }
}

fn reconciler(
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

/// `--once`: runs every automation once and prints the summary. Returns whether all are
/// Ready.
pub async fn run_once(opts: &ServeOptions, out: &mut dyn Write) -> Result<bool, ServeError> {
    let manifests = Manifests::load(&opts.manifests, opts.selector.as_ref())?;
    let reconciler = reconciler(
        &opts.reflector_url,
        &opts.storage_path,
        opts.no_cross_namespace_refs,
        opts.removed_template_fields,
        opts.sparse_checkout,
    )?;
    let mut summary = Summary {
        automations: Vec::new(),
    };
    for (key, obj) in &manifests.automations {
        if obj.spec.suspend {
            tracing::info!(namespace = %key.0, name = %key.1, "suspended; skipped");
            continue;
        }
        let started = std::time::Instant::now();
        let report = reconciler.reconcile(obj, &manifests, now()).await;
        log_report(key, &report, started.elapsed());
        log_deprecations(key, &report);
        summary
            .automations
            .push(AutomationSummary::new(key, &report));
    }
    serde_json::to_writer_pretty(&mut *out, &summary).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(summary.automations.iter().all(|a| a.ready))
}

/// Starts the one admin server (`/healthz`, `/readyz`, `/metrics`) on `addr`.
async fn start_http(
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

/// Namespaces with changed policies and when the first change was seen (`""`: all).
type ChangedNamespaces = BTreeMap<String, Option<Instant>>;

/// One automation of the standalone schedule.
#[derive(Debug)]
struct Automation {
    obj: ImageUpdateAutomation,
    /// The spec and metadata last read, to notice manifest edits.
    fingerprint: String,
    /// When the feed first reported a policy change that this automation has not run for.
    change_seen: Option<Instant>,
    /// The generation whose deprecation warnings were logged.
    warned_generation: Option<Option<i64>>,
}

fn fingerprint(obj: &ImageUpdateAutomation) -> String {
    serde_json::to_string(&(&obj.spec, &obj.metadata.annotations, &obj.metadata.labels))
        .unwrap_or_default()
}

pub(crate) fn interval_of(obj: &ImageUpdateAutomation) -> Duration {
    parse_duration(&obj.spec.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

type RunResult = (Key, RunReport, Duration, Option<Instant>);

/// The long-running standalone controller.
pub async fn run(opts: ServeOptions) -> Result<(), ServeError> {
    let mut source = ManifestSource::default();
    source
        .refresh(&opts.manifests)
        .map_err(|source| ServeError::ManifestDir {
            path: opts.manifests.display().to_string(),
            source,
        })?;
    let mut manifests = Arc::new(source.snapshot(opts.selector.as_ref()));
    let reconciler = Arc::new(reconciler(
        &opts.reflector_url,
        &opts.storage_path,
        opts.no_cross_namespace_refs,
        opts.removed_template_fields,
        opts.sparse_checkout,
    )?);
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let (http, http_shutdown) = start_http(opts.http_addr, ready.clone(), metrics.clone()).await?;
    tracing::info!(addr = %opts.http_addr, manifests = %opts.manifests.display(),
        reflector = %opts.reflector_url, "serving");

    // The change feed: namespaces with changed policies and when the first change was seen
    // (`""` meaning all, after a resync).
    let triggered: Arc<Mutex<Option<ChangedNamespaces>>> = Arc::new(Mutex::new(None));
    let wake = Arc::new(Notify::new());
    let feed = {
        let client = ReflectorClient::new(&opts.reflector_url)?;
        let (triggered, wake) = (triggered.clone(), wake.clone());
        tokio::spawn(async move {
            client
                .follow(
                    None,
                    |event| {
                        let mut t = triggered.lock().unwrap_or_else(PoisonError::into_inner);
                        let set = t.get_or_insert_with(BTreeMap::new);
                        match event {
                            FeedEvent::Changed(e) => {
                                tracing::debug!(namespace = %e.policy.namespace,
                                    policy = %e.policy.name, "policy changed");
                                set.entry(e.policy.namespace.clone())
                                    .or_insert_with(|| Some(Instant::now()));
                            }
                            FeedEvent::Resync => {
                                set.entry(String::new()).or_insert(None);
                            }
                        }
                        wake.notify_one();
                    },
                    |err| tracing::warn!("reflector change feed: {err}"),
                )
                .await;
        })
    };

    let mut schedule: Schedule<Key, Automation> = Schedule::default();
    let mut backoff: Backoff<Key> = Backoff::with_delays(opts.backoff);
    merge(&mut schedule, &mut backoff, &manifests);
    let mut tasks: JoinSet<RunResult> = JoinSet::new();
    let shutdown = kube_support::process::termination();
    tokio::pin!(shutdown);
    let mut reload_at = Instant::now() + RELOAD_INTERVAL;
    let concurrent = opts.concurrent.max(1);
    loop {
        if Instant::now() >= reload_at {
            reload_at = Instant::now() + RELOAD_INTERVAL;
            match source.refresh(&opts.manifests) {
                Ok(true) => {
                    let m = source.snapshot(opts.selector.as_ref());
                    merge(&mut schedule, &mut backoff, &m);
                    manifests = Arc::new(m);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(path = %opts.manifests.display(),
                    "cannot read the manifest directory: {e}"),
            }
        }
        let changed = triggered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(namespaces) = changed {
            let now_i = Instant::now();
            let all = namespaces.contains_key("");
            schedule.trigger_where(now_i, |key, _| all || namespaces.contains_key(&key.0));
            for (key, automation) in schedule.iter_mut() {
                if let Some(Some(seen)) = namespaces.get(&key.0) {
                    automation.change_seen =
                        Some(automation.change_seen.map_or(*seen, |t| t.min(*seen)));
                }
            }
        }
        let now_i = Instant::now();
        for key in schedule.take_due(now_i, concurrent.saturating_sub(tasks.len())) {
            let Some(automation) = schedule.get_mut(&key) else {
                continue;
            };
            if automation.obj.spec.suspend {
                metrics.set_suspended(&key.0, &key.1, true);
                schedule.finished(&key, None, now_i);
                continue;
            }
            let obj = automation.obj.clone();
            let change_seen = automation.change_seen.take();
            let (reconciler, manifests) = (reconciler.clone(), manifests.clone());
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let report = reconciler.reconcile(&obj, &*manifests, now()).await;
                (key, report, started.elapsed(), change_seen)
            });
        }
        if !ready.load(Ordering::SeqCst) && schedule.all_ran(|a| !a.obj.spec.suspend) {
            ready.store(true, Ordering::SeqCst);
        }
        let next_due = schedule.next_due().unwrap_or(reload_at).min(reload_at);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(next_due) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                match done {
                    Ok((key, report, elapsed, change_seen)) => {
                        log_report(&key, &report, elapsed);
                        let since_change = change_seen.map(|t| t.elapsed());
                        metrics.record_run(&key.0, &key.1, &report, elapsed, since_change);
                        finish(&mut schedule, &mut backoff, &key, report);
                    }
                    Err(e) => tracing::error!("reconcile task failed: {e}"),
                }
            }
        }
    }
    tracing::info!("shutting down");
    feed.abort();
    finish_runs_at_shutdown(&reconciler, &mut tasks, schedule.running(), &metrics).await;
    http_shutdown.notify_waiters();
    let _ = http.await;
    Ok(())
}

/// How long shutdown waits for runs in flight once git I/O is cancelled: a fetch stops at
/// its next read and a push is killed at once, so only a connection that hangs before its
/// first byte (which gix cannot interrupt) takes this long. Well below the charts' 10 s
/// `terminationGracePeriodSeconds`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Shutdown: cancels git I/O, then logs every run that still ends (a push that completed
/// is logged with its commit, a cancelled one as cancelled) and names those that did not
/// end within [`SHUTDOWN_GRACE`] (stuck before any push could start).
async fn finish_runs_at_shutdown(
    reconciler: &Reconciler<ReflectorClient>,
    tasks: &mut JoinSet<(Key, RunReport, Duration, Option<Instant>)>,
    mut running: Vec<Key>,
    metrics: &Metrics,
) {
    reconciler.git.cancel();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok((key, report, elapsed, change_seen)))) => {
                running.retain(|k| *k != key);
                log_report(&key, &report, elapsed);
                let since_change = change_seen.map(|t| t.elapsed());
                metrics.record_run(&key.0, &key.1, &report, elapsed, since_change);
            }
            Ok(Some(Err(e))) => tracing::error!("reconcile task failed: {e}"),
            Ok(None) => break,
            Err(_) => {
                for (namespace, name) in &running {
                    tracing::warn!(
                        namespace = %namespace, name = %name, grace = ?SHUTDOWN_GRACE,
                        "shutdown: run abandoned while still waiting on network I/O; no push was in progress (pushes are killed at once and logged)"
                    );
                }
                tasks.abort_all();
                break;
            }
        }
    }
}

/// The Kubernetes mode: `/healthz`, `/readyz` (after the first sync of the watch) and
/// `/metrics` on `--http-addr`, and [`crate::kube_mode::run`] until SIGTERM or Ctrl-C.
pub async fn run_kubernetes(opts: KubeServeOptions) -> Result<(), ServeError> {
    let reconciler = Arc::new(reconciler(
        &opts.reflector_url,
        &opts.storage_path,
        opts.no_cross_namespace_refs,
        opts.removed_template_fields,
        opts.sparse_checkout,
    )?);
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let (http, http_shutdown) = start_http(opts.http_addr, ready.clone(), metrics.clone()).await?;
    tracing::info!(addr = %opts.http_addr, reflector = %opts.reflector_url,
        "serving (Kubernetes mode)");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let git = reconciler.git.clone();
    let signals = tokio::spawn(async move {
        kube_support::process::termination().await;
        tracing::info!("termination signal received; shutting down");
        // Runs in flight end quickly (fetches interrupted, pushes killed) and report
        // what they did through their status and events.
        git.cancel();
        let _ = stop_tx.send(true);
    });
    let settings = crate::kube_mode::KubeSettings {
        concurrent: opts.concurrent,
        label_selector: opts.watch_label_selector.trim().to_owned(),
        enable_leader_election: opts.enable_leader_election,
        lease_duration: opts.leader_election_lease_duration,
        lease_namespace: kube_support::leader::lease_namespace(),
        reflector_url: opts.reflector_url.clone(),
        no_cross_namespace_refs: opts.no_cross_namespace_refs,
        backoff: opts.backoff,
    };
    let mut stopping = stop_rx.clone();
    let run = crate::kube_mode::run(settings, reconciler, metrics, ready, stop_rx);
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        () = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE,
                "shutdown: reconciles still waiting on network I/O were abandoned; no push was in progress (pushes are killed at once and reported)");
            Ok(())
        }
    };
    signals.abort();
    // Wakes the server whether or not it is already waiting.
    http_shutdown.notify_one();
    let http_result = http.await;
    result?;
    match http_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}

/// Merges freshly read manifests into the schedule.
fn merge(
    schedule: &mut Schedule<Key, Automation>,
    backoff: &mut Backoff<Key>,
    manifests: &Manifests,
) {
    for key in schedule.keys_not_in(|k| manifests.automations.contains_key(k)) {
        schedule.remove(&key);
        backoff.reset(&key);
    }
    let now_i = Instant::now();
    for (key, obj) in &manifests.automations {
        let fp = fingerprint(obj);
        match schedule.get_mut(key) {
            Some(automation) if automation.fingerprint == fp => {}
            Some(automation) => {
                let status = automation.obj.status.take();
                let generation = automation.obj.metadata.generation.unwrap_or(1);
                let spec_changed = automation.obj.spec != obj.spec;
                automation.obj = obj.clone();
                automation.obj.status = status;
                automation.obj.metadata.generation = Some(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
                automation.fingerprint = fp;
                backoff.reset(key);
                schedule.trigger(key, now_i);
            }
            None => {
                let automation = Automation {
                    obj: obj.clone(),
                    fingerprint: fp,
                    change_seen: None,
                    warned_generation: None,
                };
                schedule.insert(key.clone(), automation, now_i);
            }
        }
    }
}

/// Records a finished run and schedules the next.
fn finish(
    schedule: &mut Schedule<Key, Automation>,
    backoff: &mut Backoff<Key>,
    key: &Key,
    report: RunReport,
) {
    let Some(automation) = schedule.get_mut(key) else {
        return;
    };
    // Deprecations hold until the spec changes: logged once per generation.
    let generation = automation.obj.metadata.generation;
    if report.deprecations.is_empty() {
        automation.warned_generation = None;
    } else if automation.warned_generation != Some(generation) {
        log_deprecations(key, &report);
        automation.warned_generation = Some(generation);
    }
    let next = match &report.outcome {
        RunOutcome::Ready => Next::After(interval_of(&automation.obj)),
        RunOutcome::Retry { .. } => Next::Backoff,
        RunOutcome::Stalled { .. } => Next::OnChange,
    };
    if !report.result.unmatched.is_empty() {
        tracing::debug!(
            unmatched = ?report.result.unmatched.iter().map(describe_unmatched).collect::<Vec<_>>(),
            "markers not applied"
        );
    }
    automation.obj.status = Some(report.status);
    let delay = backoff.delay_for(key, next, None);
    schedule.finished(key, delay, Instant::now());
}
