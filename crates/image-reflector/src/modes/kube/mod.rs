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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_types::{ImagePolicy, ImageRepository, ImageRepositoryStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use kube::{Api, Client, Resource};
use kube_support::events::{self, EventPublisher};
use kube_support::objects::{
    Fingerprint, action_after, fingerprint, skip_action, watcher_config, write_status,
};
use kube_support::schedule::{Handled, RetryDelays};
use kube_support::{driver, leader};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::reconcile::{
    BoxFuture, Deps, Event, EventType, Next, ObjectSource, RegistryPool, ScanProgress, SourceError,
    name_of, namespace_of, policy_info, reconcile_policy, reconcile_repository_with,
    repository_info, repository_ref,
};
use crate::registry::{ClientSettings, SecretData};
use crate::state::{ApiState, LeaderInfo};

/// The one field manager of every status write.
pub const FIELD_MANAGER: &str = "image-reflector-controller";
/// Flux's finalizer.
pub const FINALIZER: &str = "finalizers.fluxcd.io";
/// The annotation that requests a reconcile.
pub const RECONCILE_REQUEST_ANNOTATION: &str = api_types::meta::RECONCILE_REQUEST_ANNOTATION;
/// The Lease name (suffixed with a hash of the label selector when one is set).
pub const LEASE_NAME: &str = "image-reflector-controller-leader-election";
const LEASE: driver::ServiceLease = driver::ServiceLease {
    name: LEASE_NAME,
    field_manager: FIELD_MANAGER,
};
/// The default Lease duration (controller-runtime's).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(35);

const REPOSITORY: &str = "ImageRepository";
const POLICY: &str = "ImagePolicy";

/// Kubernetes-mode settings (from the `serve` flags).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Reconciles running at once, per controller.
    pub concurrent: u16,
    /// `--watch-label-selector` as given (empty: every object).
    pub label_selector: String,
    pub leader_election: driver::LeaderElectionSettings,
    /// Where the other replicas reach this one's API.
    pub advertise_url: String,
    pub registry: ClientSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeModeError {
    #[error("Kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Lease(#[from] leader::LeaderError),
}

/// Why a reconcile failed (the controller retries it with the object's backoff).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
}

pub type ReconcileError = driver::ReconcileError<ApplyError>;

/// The Lease name for a label selector (one Lease per shard).
pub fn lease_name(label_selector: &str) -> String {
    leader::lease_name(LEASE_NAME, label_selector)
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Repository,
    Policy,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Repository => REPOSITORY,
            Self::Policy => POLICY,
        }
    }
}

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
    client: Client,
    deps: Deps,
    state: ApiState,
    metrics: Metrics,
    /// Folds only identical events: a later scan with another message stays visible.
    events: EventPublisher,
    schedule: Mutex<Schedule>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
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
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(action)` when the object has nothing new to reconcile yet (a watch event
    /// caused by our own status write, or by a label change).
    fn skip(&self, kind: Kind, key: &Key, print: &Fingerprint) -> Option<Action> {
        let mut schedule = self.schedule();
        if kind == Kind::Policy && schedule.forced.remove(key) {
            return None;
        }
        skip_action(
            schedule
                .handled
                .skip(&(kind, key.clone()), print, Instant::now()),
        )
    }

    /// The action for the core's `next()`, recording when the next run is due.
    fn action(
        &self,
        kind: Kind,
        key: &Key,
        print: Fingerprint,
        next: Next,
        retry_after: Option<Duration>,
    ) -> Action {
        let delay = self.schedule().handled.record(
            &(kind, key.clone()),
            print,
            next,
            retry_after,
            Instant::now(),
        );
        action_after(delay)
    }

    fn forget(&self, kind: Kind, key: &Key) {
        let mut schedule = self.schedule();
        let k = (kind, key.clone());
        schedule.handled.forget(&k);
        schedule.forced.remove(key);
        if kind == Kind::Policy {
            schedule.latest_changed.remove(key);
        }
    }

    fn record(
        &self,
        kind: Kind,
        key: &Key,
        conditions: &[Condition],
        suspended: bool,
        elapsed: Duration,
    ) {
        let (ns, name, kind) = (key.0.as_str(), key.1.as_str(), kind.as_str());
        self.metrics
            .observe_reconcile(kind, ns, name, elapsed.as_secs_f64());
        self.metrics.set_suspended(kind, ns, name, suspended);
        self.metrics.set_conditions(kind, ns, name, conditions);
    }

    async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, event: Option<&Event>) {
        let Some(event) = event else { return };
        let type_ = match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        self.events
            .record(obj, type_, &event.reason, &event.message)
            .await;
    }
}

use kube_support::driver::key_of;

async fn reconcile_repository_object(
    repo: Arc<ImageRepository>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    let ctx = &ctx;
    driver::reconcile_finalized(
        &ctx.client,
        repo,
        |api, repo| async move { apply_repository(&api, repo, ctx).await },
        |key, repo| {
            let stored = crate::store::RepoKey::new(key.0.as_str(), key.1.as_str());
            if let Err(error) = ctx.deps.store.delete(&stored) {
                tracing::warn!(namespace = key.0, name = key.1, %error, "cannot delete stored tags");
            }
            ctx.state.remove_repository(&key.0, &key.1);
            ctx.metrics.delete_object(REPOSITORY, &key.0, &key.1);
            ctx.forget(Kind::Repository, key);
            ctx.events.forget(&repo.object_ref(&()));
            tracing::info!(namespace = key.0, name = key.1, "ImageRepository deleted; stored tags removed");
        },
    )
    .await
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
    let started = std::time::Instant::now();
    let progress = StatusProgress {
        api,
        repo: repo.as_ref(),
        state: &ctx.state,
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
    write_status(
        api,
        FIELD_MANAGER,
        &key.1,
        progress.current().as_ref(),
        &outcome.status,
    )
    .await
    .map_err(ApplyError::Status)?;
    ctx.record(
        Kind::Repository,
        &key,
        &outcome.status.conditions,
        outcome.suspended,
        started.elapsed(),
    );
    ctx.publish(repo.as_ref(), outcome.event.as_ref()).await;
    let retry_after = outcome.error.as_ref().and_then(|e| e.retry_after());
    let next = outcome.next();
    let mut updated = (*repo).clone();
    updated.status = Some(outcome.status);
    ctx.state.upsert_repository(repository_info(&updated));
    Ok(ctx.action(Kind::Repository, &key, print, next, retry_after))
}

async fn reconcile_policy_object(
    policy: Arc<ImagePolicy>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    let ctx = &ctx;
    driver::reconcile_finalized(
        &ctx.client,
        policy,
        |api, policy| async move { apply_policy(&api, policy, ctx).await },
        |key, policy| {
            ctx.state.remove_policy(&key.0, &key.1);
            ctx.metrics.delete_object(POLICY, &key.0, &key.1);
            ctx.forget(Kind::Policy, key);
            ctx.events.forget(&policy.object_ref(&()));
            tracing::info!(namespace = key.0, name = key.1, "ImagePolicy deleted");
        },
    )
    .await
}

async fn apply_policy(
    api: &Api<ImagePolicy>,
    policy: Arc<ImagePolicy>,
    ctx: &Ctx,
) -> Result<Action, ApplyError> {
    let key = key_of(policy.as_ref());
    let print = fingerprint(policy.as_ref());
    if let Some(action) = ctx.skip(Kind::Policy, &key, &print) {
        return Ok(action);
    }
    let started = std::time::Instant::now();
    let outcome = reconcile_policy(&policy, &ctx.deps, SystemTime::now()).await;
    write_status(
        api,
        FIELD_MANAGER,
        &key.1,
        policy.status.as_ref(),
        &outcome.status,
    )
    .await
    .map_err(ApplyError::Status)?;
    ctx.record(
        Kind::Policy,
        &key,
        &outcome.status.conditions,
        outcome.suspended,
        started.elapsed(),
    );
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
    Ok(ctx.action(Kind::Policy, &key, print, next, None))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Ctx>,
) -> Action {
    let key = key_of(obj.as_ref());
    let kind = if K::kind(&()) == REPOSITORY {
        Kind::Repository
    } else {
        Kind::Policy
    };
    let handled = &mut ctx.schedule().handled;
    driver::retry_after_failure(handled, &(kind, key.clone()), (kind.as_str(), &key), error)
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
    let config = controller::Config::default().concurrency(settings.concurrent.max(1));
    let wc = watcher_config(&settings.label_selector);

    let repositories = Controller::new(Api::<ImageRepository>::all(ctx.client.clone()), wc.clone())
        .with_config(config.clone())
        .reconcile_all_on(store_losses(ctx.clone()))
        .graceful_shutdown_on(wait(&stop_tx))
        .run(reconcile_repository_object, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "ImageRepository controller");
            }
        });

    let policies = Controller::new(Api::<ImagePolicy>::all(ctx.client.clone()), wc.clone())
        .with_config(config);
    let store = policies.store();
    let trigger_ctx = ctx.clone();
    let policies = policies
        .watches(
            Api::<ImageRepository>::all(ctx.client.clone()),
            wc,
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
        )
        .graceful_shutdown_on(wait(&stop_tx))
        .run(reconcile_policy_object, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "ImagePolicy controller");
            }
        });

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
    let config = kube::Config::infer().await?;
    let client = Client::try_from(config).map_err(KubeModeError::Client)?;

    let pool = Arc::new(RegistryPool::new(
        settings.registry.clone(),
        Some(metrics.request_observer()),
    ));
    let deps = Deps {
        objects: Arc::new(KubeObjects {
            client: client.clone(),
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
        client: client.clone(),
        deps,
        state: state.clone(),
        metrics,
        events: EventPublisher::new(client.clone(), events::reporter(FIELD_MANAGER)),
        schedule: Mutex::new(schedule),
    });

    // The API mirror, on every replica.
    let wc = watcher_config(&settings.label_selector);
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
    let controllers = driver::while_leading(
        leading,
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
    let _ = leader_task.await;
    Ok(())
}

#[cfg(test)]
mod tests;
