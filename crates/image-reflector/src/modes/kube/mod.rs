//! Kubernetes mode: the shared reconcilers driven by kube-runtime controllers.
//!
//! - Every replica mirrors the watched ImageRepositories and ImagePolicies (their status as
//!   written by the leader) into [`ApiState`], so the HTTP API answers the same on all
//!   replicas; `/readyz` turns ready after the first list of both kinds.
//! - Only the leader (a Lease held through `kube_support::leader`, or always with
//!   `--enable-leader-election=false`) runs the two controllers. The holder identity is
//!   `<hostname>_<random>@<advertise URL>`, so followers know where to forward `/tags`.
//! - Each controller adds the `finalizers.fluxcd.io` finalizer first; on deletion a
//!   repository's stored tags are deleted, the object leaves the API and the metrics, then
//!   the finalizer is removed.
//! - Status is written with server-side apply under the field manager
//!   `image-reflector-controller`, only when it differs from the object's status, and once
//!   more before a scan that runs (Reconciling "scanning: <reason>", as Flux does); events
//!   (events.k8s.io/v1) only when the core returns one; only identical events are folded
//!   into one series (`kube_support::events`).
//! - A reconcile runs when the object's generation or `reconcile.fluxcd.io/requestedAt`
//!   changes, when its time comes (the core's `next()`, with per-object backoff from
//!   `--min-retry-delay` (750 ms) to `--max-retry-delay` (15 min)), and, for policies, when
//!   their repository's `lastScanResult.revision` (or generation) changes. Our own status
//!   writes do not cause a reconcile.
//! - On losing leadership the controllers stop, the schedule is forgotten and the
//!   per-object metric series are dropped (the new leader exports them).

mod objects;
use objects::*;
mod progress;
use progress::*;
mod mirror;
use mirror::*;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_types::{ImagePolicy, ImageRepository, ImageRepositoryStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use kube::{Api, Client, Resource};
use kube_support::driver::{self, Reconcile, key_of};
use kube_support::objects::KubeServiceAccounts;
use kube_support::objects::{Fingerprint, fingerprint, watcher_config};
use kube_support::schedule::{Handled, RetryDelays};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::reconcile::{
    BoxFuture, Deps, Event, EventType, Lookup, ObjectSource, RegistryPool, ScanProgress,
    SourceError, name_of, namespace_of, policy_info, reconcile_policy, reconcile_repository_with,
    repository_info, repository_ref,
};
use crate::registry::{ClientSettings, SecretData};
use crate::state::{ApiState, LeaderInfo};

/// The Lease name (suffixed with a hash of the label selector when one is set) and the
/// one field manager of every status write.
pub const SERVICE: driver::ServiceLease = driver::ServiceLease {
    name: "image-reflector-controller-leader-election",
    field_manager: "image-reflector-controller",
};

use super::{Kind, REPOSITORY};

/// Kubernetes-mode settings (from the `serve` flags).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub controllers: driver::ControllerSettings,
    /// Where the other replicas reach this one's API.
    pub advertise_url: String,
    pub registry: ClientSettings,
}

pub type KubeModeError = driver::StartError;

/// Why a reconcile failed (the controller retries it with the object's backoff).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
}

pub type ReconcileError = driver::ReconcileError<ApplyError>;

/// The leader's API URL from a Lease holder identity (`<host>_<random>@<url>`).
pub fn leader_url_of(holder: &str) -> Option<String> {
    holder
        .split_once('@')
        .map(|(_, url)| url.to_string())
        .filter(|u| !u.is_empty())
}

// ---------------------------------------------------------------------------------------
// The reconcilers

type Key = (String, String);

struct Schedule {
    handled: Handled<(Kind, Key)>,
    /// Policies to reconcile even though they did not change (their repository did).
    forced: HashSet<Key>,
    /// The last seen (revision, generation) of each repository, for the policy trigger.
    repositories: HashMap<Key, (Option<String>, Option<i64>)>,
    /// When each policy's selected image last changed (for the stuck-policy metric).
    latest_changed: HashMap<Key, (String, f64)>,
}

struct Ctx {
    kit: driver::Context<Schedule>,
    deps: Deps,
    state: ApiState,
    metrics: Metrics,
}

impl driver::Scheduled for Schedule {
    type Key = (Kind, Key);
    fn handled(&mut self) -> &mut Handled<(Kind, Key)> {
        &mut self.handled
    }
}

impl Schedule {
    /// Empty, with the backoff of `--min-retry-delay` and `--max-retry-delay`.
    fn new(options: &crate::reconcile::Options) -> Self {
        Self {
            handled: Handled::new(RetryDelays {
                min: options.min_retry_delay,
                max: options.max_retry_delay,
            }),
            forced: HashSet::new(),
            repositories: HashMap::new(),
            latest_changed: HashMap::new(),
        }
    }
}

impl Ctx {
    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.kit.schedule()
    }

    /// `Some(action)` when the object has nothing new to reconcile yet (a watch event
    /// caused by our own status write, or by a label change).
    fn skip(&self, kind: Kind, key: &Key, print: &Fingerprint) -> Option<Action> {
        if kind == Kind::Policy && self.schedule().forced.remove(key) {
            return None;
        }
        self.kit.skip(&(kind, key.clone()), print)
    }

    /// Forgets a deleted object: in the API, the metrics, the schedule and the events.
    fn forget<K: Resource<DynamicType = ()>>(&self, kind: Kind, key: &Key, obj: &K) {
        match kind {
            Kind::Repository => self.state.remove_repository(&key.0, &key.1),
            Kind::Policy => self.state.remove_policy(&key.0, &key.1),
        }
        self.metrics.delete_object(kind.as_str(), &key.0, &key.1);
        let mut schedule = self.schedule();
        schedule.handled.forget(&(kind, key.clone()));
        schedule.forced.remove(key);
        if kind == Kind::Policy {
            schedule.latest_changed.remove(key);
        }
        drop(schedule);
        self.kit.events.forget(&obj.object_ref(&()));
    }

    /// Records a reconcile that started at `started` in the metrics.
    fn record(
        &self,
        kind: Kind,
        key: &Key,
        conditions: &[Condition],
        suspended: bool,
        started: Instant,
    ) {
        let (ns, name, kind) = (key.0.as_str(), key.1.as_str(), kind.as_str());
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.gotk.observe_reconcile(kind, ns, name, elapsed);
        self.metrics.gotk.set_suspended(kind, ns, name, suspended);
        self.metrics.gotk.set_conditions(kind, ns, name, conditions);
    }

    async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, event: Option<&Event>) {
        let Some(event) = event else { return };
        let type_ = match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        self.kit
            .publish(obj, Some(type_), &event.reason, &event.message)
            .await;
    }

    /// The `error_policy` of both controllers.
    fn failed<K: Resource>(&self, kind: Kind, obj: &K, error: &ReconcileError) -> Action {
        let key = key_of(obj);
        self.kit
            .failed(&(kind, key.clone()), (kind.as_str(), &key), error)
    }
}

type Applied<'a> = driver::Applied<'a, ApplyError>;

impl Reconcile<ImageRepository> for Ctx {
    type Error = ApplyError;

    fn apply(&self, api: Api<ImageRepository>, repo: Arc<ImageRepository>) -> Applied<'_> {
        Box::pin(async move { apply_repository(&api, repo, self).await })
    }

    fn cleanup(&self, key: &Key, repo: &ImageRepository) {
        let stored = crate::store::RepoKey::new(key.0.as_str(), key.1.as_str());
        if let Err(error) = self.deps.store.delete(&stored) {
            tracing::warn!(namespace = key.0, name = key.1, %error, "cannot delete stored tags");
        }
        self.forget(Kind::Repository, key, repo);
        tracing::info!(
            namespace = key.0,
            name = key.1,
            "ImageRepository deleted; stored tags removed"
        );
    }

    fn failed(&self, repo: &ImageRepository, error: &ReconcileError) -> Action {
        Ctx::failed(self, Kind::Repository, repo, error)
    }
}

impl Reconcile<ImagePolicy> for Ctx {
    type Error = ApplyError;

    fn apply(&self, api: Api<ImagePolicy>, policy: Arc<ImagePolicy>) -> Applied<'_> {
        Box::pin(async move { apply_policy(&api, policy, self).await })
    }

    fn cleanup(&self, key: &Key, policy: &ImagePolicy) {
        self.forget(Kind::Policy, key, policy);
        tracing::info!(namespace = key.0, name = key.1, "ImagePolicy deleted");
    }

    fn failed(&self, policy: &ImagePolicy, error: &ReconcileError) -> Action {
        Ctx::failed(self, Kind::Policy, policy, error)
    }
}

async fn apply_repository(
    api: &Api<ImageRepository>,
    repo: Arc<ImageRepository>,
    ctx: &Ctx,
) -> Result<Action, ApplyError> {
    let key = key_of(repo.as_ref());
    let print = fingerprint(repo.as_ref());
    if let Some(action) = ctx.skip(Kind::Repository, &key, &print) {
        return Ok(action);
    }
    let started = Instant::now();
    let progress = StatusProgress {
        api,
        repo: repo.as_ref(),
        ctx,
        written: Mutex::new(None),
    };
    let outcome =
        reconcile_repository_with(&repo, &ctx.deps, SystemTime::now(), Some(&progress)).await;
    if let Some(scan) = &outcome.scan {
        ctx.metrics.observe_scan(
            &key.0,
            &key.1,
            scan.duration.as_secs_f64(),
            scan.tags,
            scan.ok,
        );
    }
    let conditions = &outcome.status.conditions;
    ctx.kit
        .write_status(api, &key.1, progress.current().as_ref(), &outcome.status)
        .await
        .map_err(ApplyError::Status)?;
    ctx.record(
        Kind::Repository,
        &key,
        conditions,
        outcome.suspended,
        started,
    );
    ctx.publish(repo.as_ref(), outcome.event.as_ref()).await;
    let retry_after = outcome.error.as_ref().and_then(|e| e.retry_after());
    let next = outcome.next();
    let mut updated = (*repo).clone();
    updated.status = Some(outcome.status);
    ctx.state.upsert_repository(repository_info(&updated));
    Ok(ctx
        .kit
        .action(&(Kind::Repository, key), print, next, retry_after))
}

async fn apply_policy(
    api: &Api<ImagePolicy>,
    policy: Arc<ImagePolicy>,
    ctx: &Ctx,
) -> Result<Action, ApplyError> {
    let started = Instant::now();
    let key = key_of(policy.as_ref());
    let print = fingerprint(policy.as_ref());
    if let Some(action) = ctx.skip(Kind::Policy, &key, &print) {
        return Ok(action);
    }
    let outcome = reconcile_policy(&policy, &ctx.deps, SystemTime::now()).await;
    let conditions = &outcome.status.conditions;
    ctx.kit
        .write_status(api, &key.1, policy.status.as_ref(), &outcome.status)
        .await
        .map_err(ApplyError::Status)?;
    ctx.record(Kind::Policy, &key, conditions, outcome.suspended, started);
    if let Some(latest) = &outcome.status.latest_ref {
        let image = latest.to_string();
        let changed_at = {
            let mut schedule = ctx.schedule();
            let changed_at = match schedule.latest_changed.get(&key) {
                Some((previous, at)) if *previous == image => *at,
                _ => unix_now(),
            };
            schedule
                .latest_changed
                .insert(key.clone(), (image, changed_at));
            changed_at
        };
        ctx.metrics
            .set_policy_latest(&key.0, &key.1, &latest.name, &latest.tag, changed_at);
    }
    ctx.publish(policy.as_ref(), outcome.event.as_ref()).await;
    let next = outcome.next();
    let mut updated = (*policy).clone();
    updated.status = Some(outcome.status);
    ctx.state.upsert_policy(policy_info(&updated));
    Ok(ctx.kit.action(&(Kind::Policy, key), print, next, None))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How often the tag store is checked for a replacement ([`store_losses`]).
const STORE_CHECK: Duration = Duration::from_secs(2);

/// Yields each time the tag store lost its contents (a damaged file replaced by an empty
/// one), after forgetting which repositories were handled, so every ImageRepository is
/// reconciled again and rescanned (its tags are no longer stored).
fn store_losses(ctx: Arc<Ctx>) -> impl futures::Stream<Item = ()> + Send + Sync + 'static {
    let seen = ctx.deps.store.generation();
    futures::stream::unfold((ctx, seen), |(ctx, seen)| async move {
        loop {
            tokio::time::sleep(STORE_CHECK).await;
            let generation = ctx.deps.store.generation();
            if generation != seen {
                ctx.schedule()
                    .handled
                    .unhandle_where(|(kind, _)| *kind == Kind::Repository);
                tracing::info!("the tag store was replaced; rescanning every ImageRepository");
                return Some(((), (ctx, generation)));
            }
        }
    })
}

/// Runs both controllers until `stop` completes.
async fn run_controllers(
    ctx: Arc<Ctx>,
    settings: &KubeSettings,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let wait = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let client = &ctx.kit.client;
    let settings = &settings.controllers;
    let repositories = driver::run_controller(
        settings
            .controller::<ImageRepository>(client)
            .reconcile_all_on(store_losses(ctx.clone())),
        client,
        ctx.clone(),
        wait(&stop_tx),
    );

    let policies = settings.controller::<ImagePolicy>(client);
    let store = policies.store();
    let trigger_ctx = ctx.clone();
    let policies = policies.watches(
        Api::<ImageRepository>::all(client.clone()),
        watcher_config(&settings.label_selector),
        move |repo: ImageRepository| {
            let key = key_of(&repo);
            let seen = (
                repo.status
                    .as_ref()
                    .and_then(|s| s.last_scan_result.as_ref())
                    .map(|s| s.revision.clone()),
                repo.metadata.generation,
            );
            let mut schedule = trigger_ctx.schedule();
            if schedule.repositories.insert(key.clone(), seen.clone()) == Some(seen) {
                return Vec::new();
            }
            let refs: Vec<ObjectRef<ImagePolicy>> = store
                .state()
                .iter()
                .filter(|p| repository_ref(p) == key)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect();
            for r in &refs {
                schedule
                    .forced
                    .insert((r.namespace.clone().unwrap_or_default(), r.name.clone()));
            }
            refs
        },
    );
    let policies = driver::run_controller(policies, client, ctx.clone(), wait(&stop_tx));

    tracing::info!("controllers started");
    let stopper = async move {
        stop.await;
        let _ = stop_tx.send(());
    };
    tokio::join!(repositories, policies, stopper);
    tracing::info!("controllers stopped");
}

// ---------------------------------------------------------------------------------------
// Entry point

/// Runs the Kubernetes mode until `shutdown` turns true.
pub async fn run(
    settings: KubeSettings,
    store: Arc<dyn crate::store::TagStore>,
    state: ApiState,
    metrics: Metrics,
    options: crate::reconcile::Options,
    shutdown: watch::Receiver<bool>,
) -> Result<(), KubeModeError> {
    let client = driver::connect().await?;
    let pool = Arc::new(RegistryPool::new(
        settings.registry.clone(),
        Some(metrics.request_observer()),
    ));
    let deps = Deps {
        objects: Arc::new(KubeObjects {
            client: client.clone(),
            service_accounts: KubeServiceAccounts(client.clone()),
        }),
        tags: pool.clone(),
        digests: pool,
        store,
        options,
        cloud: crate::reconcile::cloud::controller_credentials_or_log(
            options.token_cache,
            metrics.token_cache(),
        ),
    };
    let schedule = Schedule::new(&deps.options);
    let ctx = Arc::new(Ctx {
        kit: driver::Context::new(client.clone(), SERVICE.field_manager, schedule),
        deps,
        state: state.clone(),
        metrics,
    });

    // The API mirror, on every replica.
    let wc = watcher_config(&settings.controllers.label_selector);
    let (repos_synced_tx, mut repos_synced) = watch::channel(false);
    let (policies_synced_tx, mut policies_synced) = watch::channel(false);
    let (s1, s2) = (state.clone(), state.clone());
    let (r1, r2) = (state.clone(), state.clone());
    let mirror_repos = tokio::spawn(mirror(
        Api::<ImageRepository>::all(client.clone()),
        wc.clone(),
        move |repo: &ImageRepository| s1.upsert_repository(repository_info(repo)),
        move |ns: &str, name: &str| r1.remove_repository(ns, name),
        repos_synced_tx,
        shutdown.clone(),
    ));
    let mirror_policies = tokio::spawn(mirror(
        Api::<ImagePolicy>::all(client.clone()),
        wc,
        move |policy: &ImagePolicy| s2.upsert_policy(policy_info(policy)),
        move |ns: &str, name: &str| r2.remove_policy(ns, name),
        policies_synced_tx,
        shutdown.clone(),
    ));
    let ready_state = state.clone();
    let readiness = tokio::spawn(async move {
        if repos_synced.wait_for(|s| *s).await.is_ok()
            && policies_synced.wait_for(|s| *s).await.is_ok()
        {
            tracing::info!("watches synced; ready");
            ready_state.set_ready(true);
        }
    });

    let (leading, leader_task) =
        leadership(client.clone(), &settings, state.clone(), shutdown.clone()).await?;
    let controllers = driver::lead(
        leading,
        leader_task,
        &shutdown,
        |until| async {
            run_controllers(ctx.clone(), &settings, until).await;
            Ok::<(), std::convert::Infallible>(())
        },
        || {
            // The next leader starts from the objects' status: forget our schedule, and
            // stop exporting per-object series the new leader now owns (they would go
            // stale here).
            *ctx.schedule() = Schedule::new(&ctx.deps.options);
            ctx.metrics.clear_objects();
        },
    )
    .await;
    if let Err(never) = controllers {
        match never {}
    }
    state.set_ready(false);
    readiness.abort();
    let _ = mirror_repos.await;
    let _ = mirror_policies.await;
    Ok(())
}

#[cfg(test)]
mod tests;
