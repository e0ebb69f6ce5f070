//! Kubernetes mode: the shared reconcile core ([`crate::reconcile`]) driven by a kube-runtime
//! controller on `ImageUpdateAutomation` (storage version v1; v1beta1 and v1beta2 objects are
//! the same objects, served from one schema).
//!
//! - Every replica watches the automations (with `--watch-label-selector`); `/readyz` turns
//!   ready after that watch's first complete list, whether or not the replica leads.
//! - Only the leader (a Lease held through `kube_support::leader`, or always with
//!   `--enable-leader-election=false`) runs the controller.
//! - The `finalizers.fluxcd.io` finalizer is added first (as Flux does); on deletion the
//!   object leaves the metrics and the schedule, then the finalizer is removed. No git
//!   clean-up: the cache is shared by URL.
//! - A suspended automation does not run: no status write, no event.
//! - The GitRepository (`source.toolkit.fluxcd.io/v1`) and the Secrets a run needs are read
//!   with a direct GET before each run (Flux does not cache Secrets either).
//! - Status is written with server-side apply under the field manager
//!   `image-automation-controller`, only when it differs from the object's status: once
//!   before a run started by a new generation or a reconcile request (Flux's Reconciling
//!   "processing object: new generation A -> B"), and with the run's result. Events
//!   (events.k8s.io/v1) are the core's Normal and Warning events (its Trace event of a no-op
//!   success is only logged); identical events are folded into one series.
//! - A run starts when the object's generation or `reconcile.fluxcd.io/requestedAt` changes,
//!   at the interval after a success, with per-object exponential backoff after a failure
//!   (a stalled object waits for a change), when the reflector's change feed reports a
//!   policy change in its namespace, and when its GitRepository's generation changes. Our own
//!   status writes do not start a run.

mod objects;
pub mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use api_types::{GitRepository, ImageUpdateAutomation, ImageUpdateAutomationStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use kube_support::driver::{self, Reconcile, key_of};
use kube_support::leader;
use kube_support::objects::{fingerprint, watcher_config};
use kube_support::schedule::{Handled, Next};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{KIND, Metrics};
use crate::modes::{RetryDelays, interval_of, log_deprecations, log_report, now};
use crate::reconcile::{EventType, ObjectMap, Reconciler, RunOutcome};
use crate::reflector_client::{FeedEvent, ReflectorClient};
use objects::read_objects;

/// The Lease name (suffixed with a hash of the label selector when one is set) and the
/// one field manager of every status write.
pub const SERVICE: driver::ServiceLease = driver::ServiceLease {
    name: "image-automation-controller-leader-election",
    field_manager: "image-automation-controller",
};
/// Kubernetes-mode settings (from the `serve` flags).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub controllers: driver::ControllerSettings,
    /// `--reflector-url`, for the change feed.
    pub reflector_url: String,
    /// `--no-cross-namespace-refs`: cross-namespace GitRepositories are not even read.
    pub no_cross_namespace_refs: bool,
    pub backoff: RetryDelays,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeModeError {
    #[error(transparent)]
    Start(#[from] driver::StartError),
    #[error(transparent)]
    Lease(#[from] leader::LeaderError),
    #[error(transparent)]
    Reflector(#[from] crate::reflector_client::ReflectorError),
}

/// Why a reconcile failed before or after the core ran (retried with the object's
/// backoff; the status is left as it is).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("reading {what} {namespace}/{name}: {source}")]
    Read {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
}

pub type ReconcileError = driver::ReconcileError<ApplyError>;

type Key = (String, String);

// ---------------------------------------------------------------------------------------
// The schedule

#[derive(Debug)]
struct Schedule {
    handled: Handled<Key>,
    /// Automations to run even though they did not change, with when the policy change
    /// that asks for it was seen (`None`: unknown, e.g. a feed resync).
    forced: HashMap<Key, Option<Instant>>,
    /// The last status written per object, in case the watch has not delivered it yet
    /// when the next run starts.
    written: HashMap<Key, ImageUpdateAutomationStatus>,
    /// The last seen generation of each GitRepository, for the GitRepository trigger.
    repositories: HashMap<Key, Option<i64>>,
    /// The generation whose deprecation warnings were published, per automation: they
    /// hold until the spec changes, so one event per generation.
    warned: HashMap<Key, Option<i64>>,
}

impl Schedule {
    fn new(delays: RetryDelays) -> Self {
        Self {
            handled: Handled::new(delays),
            forced: HashMap::new(),
            written: HashMap::new(),
            repositories: HashMap::new(),
            warned: HashMap::new(),
        }
    }

    fn force(&mut self, key: Key, seen: Option<Instant>) {
        let entry = self.forced.entry(key).or_insert(seen);
        // Keep the earliest known change: that is the one waiting longest for a push.
        *entry = match (*entry, seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

struct Ctx {
    reconciler: Arc<Reconciler<ReflectorClient>>,
    metrics: Metrics,
    backoff: RetryDelays,
    no_cross_namespace_refs: bool,
    kit: driver::Context<Schedule>,
}

impl driver::Scheduled for Schedule {
    type Key = Key;
    fn handled(&mut self) -> &mut Handled<Key> {
        &mut self.handled
    }
}

impl Ctx {
    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.kit.schedule()
    }

    async fn publish(&self, obj: &ImageUpdateAutomation, event: &crate::reconcile::Event) {
        let type_ = match event.type_ {
            EventType::Normal => Some(KubeEventType::Normal),
            EventType::Warning => Some(KubeEventType::Warning),
            // Flux's Trace events (a no-op success) are logged only.
            EventType::Trace => None,
        };
        self.kit
            .publish(obj, type_, &event.reason, &event.message)
            .await;
    }
}

/// The status a run starts from: the object's, unless the status we wrote last is newer
/// (the watch may not have delivered our write yet).
fn current_status(
    obj: &ImageUpdateAutomation,
    written: Option<ImageUpdateAutomationStatus>,
) -> Option<ImageUpdateAutomationStatus> {
    let Some(written) = written else {
        return obj.status.clone();
    };
    let run_time =
        |s: &ImageUpdateAutomationStatus| s.last_automation_run_time.as_ref().map(|t| t.0);
    match &obj.status {
        Some(status) if run_time(status) >= run_time(&written) => Some(status.clone()),
        _ => Some(written),
    }
}

/// Flux's in-progress status, written before a run that a new generation or a reconcile
/// request started: Reconciling=True `Progressing` ("processing object: new generation
/// A -> B", else "reconciliation in progress"), Ready=Unknown when it was absent or
/// Unknown, and the run's start time. `None` for other runs (interval, feed, retry).
fn progress_status(obj: &ImageUpdateAutomation, now: &Time) -> Option<ImageUpdateAutomationStatus> {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    let requested = api_types::meta::pending_reconcile_request(
        obj.metadata.annotations.as_ref(),
        status.last_handled_reconcile_at.as_deref(),
    )
    .is_some();
    let message = if generation != observed {
        format!("processing object: new generation {observed} -> {generation}")
    } else if requested {
        "reconciliation in progress".to_owned()
    } else {
        return None;
    };
    status.last_automation_run_time = Some(now.clone());
    let generation = obj.metadata.generation;
    api_types::meta::mark_progressing(&mut status.conditions, &message, false, generation, now);
    Some(status)
}

// ---------------------------------------------------------------------------------------
// The reconciler

impl Reconcile<ImageUpdateAutomation> for Ctx {
    type Error = ApplyError;

    fn apply(
        &self,
        api: Api<ImageUpdateAutomation>,
        obj: Arc<ImageUpdateAutomation>,
    ) -> driver::Applied<'_, ApplyError> {
        Box::pin(async move { apply(self, &api, obj).await })
    }

    fn cleanup(&self, key: &Key, obj: &ImageUpdateAutomation) {
        self.metrics.delete_object(&key.0, &key.1);
        let mut schedule = self.schedule();
        schedule.handled.forget(key);
        schedule.forced.remove(key);
        schedule.written.remove(key);
        schedule.warned.remove(key);
        drop(schedule);
        self.kit.events.forget(&obj.object_ref(&()));
        tracing::info!(
            namespace = key.0,
            name = key.1,
            "ImageUpdateAutomation deleted"
        );
    }

    fn failed(&self, obj: &ImageUpdateAutomation, error: &ReconcileError) -> Action {
        let key = key_of(obj);
        self.kit.failed(&key, (KIND, &key), error)
    }
}

async fn apply(
    ctx: &Ctx,
    api: &Api<ImageUpdateAutomation>,
    obj: Arc<ImageUpdateAutomation>,
) -> Result<Action, ApplyError> {
    let key = key_of(obj.as_ref());
    let print = fingerprint(obj.as_ref());
    let forced = ctx.schedule().forced.remove(&key);
    // Not skipped: a trigger meant for this automation (the feed, its GitRepository).
    if forced.is_none()
        && let Some(action) = ctx.kit.skip(&key, &print)
    {
        return Ok(action);
    }
    let started = std::time::Instant::now();
    if obj.spec.suspend {
        ctx.metrics
            .record_suspended(&key.0, &key.1, started.elapsed());
        tracing::info!(namespace = key.0, name = key.1, "suspended; not run");
        return Ok(ctx.kit.action(&key, print, Next::OnChange, None));
    }
    let mut obj = (*obj).clone();
    obj.status = current_status(&obj, ctx.schedule().written.get(&key).cloned());

    let started_at = now();
    if let Some(progress) = progress_status(&obj, &started_at) {
        ctx.kit
            .write_status(api, &key.1, obj.status.as_ref(), &progress)
            .await
            .map_err(ApplyError::Status)?;
        obj.status = Some(progress);
    }
    let objects = read_objects(&ctx.kit.client, &obj, ctx.no_cross_namespace_refs).await?;
    let report = ctx.reconciler.reconcile(&obj, &objects, started_at).await;
    let elapsed = started.elapsed();
    ctx.kit
        .write_status(api, &key.1, obj.status.as_ref(), &report.status)
        .await
        .map_err(ApplyError::Status)?;
    ctx.schedule()
        .written
        .insert(key.clone(), report.status.clone());
    log_report(&key, &report, elapsed);
    ctx.metrics.record_run(
        &key.0,
        &key.1,
        &report,
        elapsed,
        forced.flatten().map(|seen| seen.elapsed()),
    );
    for event in &report.events {
        ctx.publish(&obj, event).await;
    }
    let first_warning = {
        let mut schedule = ctx.schedule();
        if report.deprecations.is_empty() {
            schedule.warned.remove(&key);
            false
        } else {
            let generation = obj.metadata.generation;
            schedule.warned.insert(key.clone(), generation) != Some(generation)
        }
    };
    if first_warning {
        log_deprecations(&key, &report);
        for event in &report.deprecations {
            ctx.publish(&obj, event).await;
        }
    }
    let next = match report.outcome {
        RunOutcome::Ready => Next::After(interval_of(&obj)),
        RunOutcome::Retry { .. } => Next::Backoff,
        RunOutcome::Stalled { .. } => Next::OnChange,
    };
    Ok(ctx.kit.action(&key, print, next, None))
}

/// Follows the reflector's change feed: marks the automations of a namespace with a changed
/// policy (every automation already run, after a resync) as forced and wakes the controller.
async fn follow_feed(
    client: ReflectorClient,
    store: kube::runtime::reflector::Store<ImageUpdateAutomation>,
    ctx: Arc<Ctx>,
    wake: tokio::sync::mpsc::UnboundedSender<()>,
) {
    client
        .follow(
            None,
            |event| {
                let seen = Instant::now();
                let mut schedule = ctx.schedule();
                let keys: Vec<Key> = match &event {
                    FeedEvent::Changed(e) => {
                        tracing::debug!(namespace = %e.policy.namespace,
                            policy = %e.policy.name, "policy changed");
                        store
                            .state()
                            .iter()
                            .map(|a| key_of(a.as_ref()))
                            .filter(|k| k.0 == e.policy.namespace)
                            .collect()
                    }
                    // Changes may have been missed; automations never run yet run anyway.
                    FeedEvent::Resync => schedule.handled.keys().cloned().collect(),
                };
                if keys.is_empty() {
                    return;
                }
                let seen = matches!(event, FeedEvent::Changed(_)).then_some(seen);
                for key in keys {
                    schedule.force(key, seen);
                }
                drop(schedule);
                let _ = wake.send(());
            },
            |err| tracing::warn!("reflector change feed: {err}"),
        )
        .await;
}

/// Runs the controller until `stop` completes.
async fn run_controller(
    ctx: Arc<Ctx>,
    settings: &KubeSettings,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), KubeModeError> {
    let client = &ctx.kit.client;
    let automations = settings
        .controllers
        .controller::<ImageUpdateAutomation>(client);
    let store = automations.store();

    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let triggers = futures::stream::unfold(wake_rx, |mut rx| async move {
        rx.recv().await.map(|()| ((), rx))
    });
    let feed = tokio::spawn(follow_feed(
        ReflectorClient::new(&settings.reflector_url)?,
        store.clone(),
        ctx.clone(),
        wake_tx,
    ));

    let trigger_ctx = ctx.clone();
    let repo_store = store.clone();
    let controller = automations
        .reconcile_all_on(triggers)
        // Flux runs the automations of a GitRepository whose generation changed.
        .watches(
            Api::<GitRepository>::all(client.clone()),
            watcher::Config::default(),
            move |repo: GitRepository| {
                let key = key_of(&repo);
                let mut schedule = trigger_ctx.schedule();
                let previous = schedule
                    .repositories
                    .insert(key.clone(), repo.metadata.generation);
                if previous.is_none_or(|g| g == repo.metadata.generation) {
                    return Vec::new();
                }
                let refs: Vec<ObjectRef<ImageUpdateAutomation>> = repo_store
                    .state()
                    .iter()
                    .filter(|a| {
                        let (ns, _) = key_of(a.as_ref());
                        let repo_ns = a
                            .spec
                            .source_ref
                            .namespace
                            .clone()
                            .filter(|n| !n.is_empty())
                            .unwrap_or(ns);
                        repo_ns == key.0 && a.spec.source_ref.name == key.1
                    })
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
                    .collect();
                for r in &refs {
                    schedule.force(
                        (r.namespace.clone().unwrap_or_default(), r.name.clone()),
                        None,
                    );
                }
                refs
            },
        );
    tracing::info!("controller started");
    driver::run_controller(controller, client, ctx.clone(), stop).await;
    feed.abort();
    tracing::info!("controller stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Entry point

/// Runs the Kubernetes mode until `shutdown` turns true.
pub async fn run(
    settings: KubeSettings,
    reconciler: Arc<Reconciler<ReflectorClient>>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), KubeModeError> {
    let client = driver::connect().await?;
    let ctx = Arc::new(Ctx {
        kit: driver::Context::new(
            client.clone(),
            SERVICE.field_manager,
            Schedule::new(settings.backoff),
        ),
        reconciler,
        metrics,
        backoff: settings.backoff,
        no_cross_namespace_refs: settings.no_cross_namespace_refs,
    });

    // Ready after the first complete list of the watched automations (every replica).
    let synced = ready.clone();
    let readiness = tokio::spawn(driver::first_sync(
        Api::<ImageUpdateAutomation>::all(client.clone()),
        watcher_config(&settings.controllers.label_selector),
    ));
    let readiness = tokio::spawn(async move {
        if readiness.await.is_ok() {
            tracing::info!("watch synced; ready");
            synced.store(true, Ordering::SeqCst);
        }
    });

    let election = settings
        .controllers
        .leadership(client, SERVICE, "", shutdown.clone())
        .await?;
    let result = driver::lead(
        election.leading,
        election.task,
        &shutdown,
        |until| run_controller(ctx.clone(), &settings, until),
        // The next leader starts from the objects' status: forget our schedule.
        || *ctx.schedule() = Schedule::new(ctx.backoff),
    )
    .await;
    ready.store(false, Ordering::SeqCst);
    readiness.abort();
    result
}

#[cfg(test)]
mod tests;
