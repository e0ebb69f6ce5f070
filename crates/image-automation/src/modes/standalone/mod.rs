//! Standalone mode: `image-automation serve --manifests DIR`.
//!
//! - `--once`: every automation runs once (sorted by namespace/name); a JSON summary goes to
//!   stdout; the exit status says whether all ended Ready.
//! - Otherwise: the manifest directory is re-read every second (a file that fails to parse
//!   keeps its last good objects); each automation runs when first seen, when its manifest
//!   changes, at its `interval` after a success, with exponential backoff after a failure
//!   (a stalled one waits for a manifest change), and within a second of the reflector's
//!   change feed reporting a policy change in its namespace; at most `--concurrent` run at
//!   once, and `--watch-label-selector` picks the automations. `/readyz` turns ready after
//!   every automation ran once. SIGTERM or Ctrl-C stops it after the runs in flight.

pub mod manifests;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use api_types::ImageUpdateAutomation;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    SHUTDOWN_GRACE, ServeError, ServeOptions, Started, interval_of, log_deprecations, log_report,
    now, reconciler, start,
};
use crate::metrics::Metrics;
use crate::reconcile::{Reconciler, RunOutcome, RunReport, describe_unmatched};
use crate::reflector_client::{FeedEvent, ReflectorClient};
use crate::setters::Unmatched;
use kube_support::schedule::{Backoff, Next, Schedule};
use manifests::{Key, ManifestSource, Manifests};

const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

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

/// `--once`: runs every automation once and prints the summary. Returns whether all are
/// Ready.
pub async fn run_once(opts: &ServeOptions, out: &mut dyn Write) -> Result<bool, ServeError> {
    let manifests = Manifests::load(&opts.manifests, opts.selector.as_ref())?;
    let reconciler = reconciler(&opts.service)?;
    let mut summary = Summary {
        automations: Vec::new(),
    };
    for (key, obj) in &manifests.automations {
        if obj.spec.suspend {
            tracing::info!(namespace = %key.0, name = %key.1, "suspended; skipped");
            continue;
        }
        let started = std::time::Instant::now();
        let report = reconciler.reconcile(obj, &manifests.objects, now()).await;
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
    let Started {
        reconciler,
        metrics,
        ready,
        admin,
    } = start(&opts.service).await?;
    tracing::info!(addr = %opts.service.http_addr, manifests = %opts.manifests.display(),
        reflector = %opts.service.reflector_url, "serving");

    // The change feed: namespaces with changed policies and when the first change was seen
    // (`""` meaning all, after a resync).
    let triggered: Arc<Mutex<Option<ChangedNamespaces>>> = Arc::new(Mutex::new(None));
    let wake = Arc::new(Notify::new());
    let feed = {
        let client = ReflectorClient::new(&opts.service.reflector_url)?;
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
    let mut backoff: Backoff<Key> = Backoff::with_delays(opts.service.backoff);
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
                let report = reconciler.reconcile(&obj, &manifests.objects, now()).await;
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
    let _ = admin.stop().await;
    Ok(())
}

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
