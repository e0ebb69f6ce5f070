//! The Kubernetes front end both services share around their reconcile cores: object keys,
//! the finalizer wrapper, the controller action after a run or a failure, leader election
//! and the leader-gated run loop, and readiness after the first complete list.
//!
//! What differs per service stays with it: which objects it watches, its extra triggers
//! (the reflector's repository → policy trigger, the automation's change feed), and what a
//! reconcile does (`modes/kube` in each crate).

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::events::{self, EventPublisher};
use crate::leader;
use crate::manifests::Key;
use crate::objects::{Fingerprint, action_after, skip_action, watcher_config};
use crate::schedule::{Handled, Next};

/// `(namespace, name)` of an object (`default` when the namespace is missing).
pub fn key_of<K: Resource>(obj: &K) -> Key {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A reconcile that failed around the core (finalizer or status write).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReconcileError<E: std::error::Error + 'static>(#[from] Box<FinalizerError<E>>);

/// Runs `apply` for a live object and `cleanup` for one being deleted, under Flux's
/// finalizer (`finalizers.fluxcd.io`), which is added before the first apply and removed
/// after the cleanup.
pub async fn with_finalizer<K, E, A, AF, C, CF>(
    api: &Api<K>,
    obj: Arc<K>,
    apply: A,
    cleanup: C,
) -> Result<Action, ReconcileError<E>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    E: std::error::Error + Send + 'static,
    A: FnOnce(Arc<K>) -> AF,
    AF: Future<Output = Result<Action, E>>,
    C: FnOnce(Arc<K>) -> CF,
    CF: Future<Output = Result<Action, E>>,
{
    finalizer(api, api_types::meta::FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj).await,
        }
    })
    .await
    .map_err(|e| ReconcileError(Box::new(e)))
}

/// The reconcile of a namespaced object: [`with_finalizer`] over the object's namespace,
/// `apply` for a live object, and `cleanup` (then wait for nothing more) for a deleted one.
pub async fn reconcile_finalized<K, E, A, AF>(
    client: &Client,
    obj: Arc<K>,
    apply: A,
    cleanup: impl FnOnce(&Key, &K),
) -> Result<Action, ReconcileError<E>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    E: std::error::Error + Send + 'static,
    A: FnOnce(Api<K>, Arc<K>) -> AF,
    AF: Future<Output = Result<Action, E>>,
{
    let key = key_of(obj.as_ref());
    let api: Api<K> = Api::namespaced(client.clone(), &key.0);
    let for_apply = api.clone();
    with_finalizer(
        &api,
        obj,
        |obj| apply(for_apply, obj),
        |obj| {
            cleanup(&key, obj.as_ref());
            std::future::ready(Ok(Action::await_change()))
        },
    )
    .await
}

/// The `error_policy` of both controllers: counts a failure of `key`, the schedule key of
/// object `kind` `namespace/name` (the next attempt runs even though the object did not
/// change), and requeues after its backoff delay.
pub fn retry_after_failure<K: std::hash::Hash + Eq + Clone>(
    handled: &mut Handled<K>,
    key: &K,
    (kind, object): (&str, &Key),
    error: &dyn std::error::Error,
) -> Action {
    let delay = handled.failed(key);
    tracing::warn!(kind, namespace = object.0, name = object.1, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `--enable-leader-election`, `--leader-election-lease-duration` and where the Lease
/// lives: what both services' settings carry (from [`crate::args::LeaderElectionArgs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionSettings {
    pub enabled: bool,
    pub lease_duration: Duration,
    pub lease_namespace: String,
}

/// A service's names: its Lease (without the selector hash) and the field manager of its
/// status writes (the Lease is written as `<it>-lease`).
#[derive(Debug, Clone, Copy)]
pub struct ServiceLease {
    pub name: &'static str,
    pub field_manager: &'static str,
}

impl ServiceLease {
    /// The Lease name for a label selector (one Lease per shard).
    pub fn lease_name(&self, label_selector: &str) -> String {
        leader::lease_name(self.name, label_selector)
    }
}

/// Takes part in the election (or always leads when it is disabled) until `stop`: one
/// Lease per `--watch-label-selector` shard; `identity_suffix` is appended to the holder
/// identity (the reflector's advertised URL; empty otherwise).
pub async fn leadership(
    client: Client,
    settings: &LeaderElectionSettings,
    lease: ServiceLease,
    label_selector: &str,
    identity_suffix: &str,
    stop: watch::Receiver<bool>,
) -> Result<leader::Leadership, leader::LeaderError> {
    if !settings.enabled {
        return Ok(leader::always_leading(stop));
    }
    leader::elect(
        client,
        leader::LeaderSettings {
            lease_name: leader::lease_name(lease.name, label_selector),
            lease_namespace: settings.lease_namespace.clone(),
            identity: leader::holder_identity(identity_suffix),
            lease_duration: settings.lease_duration.max(Duration::from_secs(2)),
            field_manager: format!("{}-lease", lease.field_manager),
        },
        stop,
    )
    .await
}

/// Runs the controllers only while this replica leads: `run(until)` starts them and returns
/// when `until` completes (leadership lost or shutdown); after a loss `lost()` forgets what
/// the next leader will redo, and this replica follows again. Ends at shutdown or on the
/// first error of `run`.
pub async fn while_leading<E, R, RF>(
    mut leading: watch::Receiver<bool>,
    shutdown: &watch::Receiver<bool>,
    mut run: R,
    mut lost: impl FnMut(),
) -> Result<(), E>
where
    R: FnMut(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> RF,
    RF: Future<Output = Result<(), E>>,
{
    let mut stop = shutdown.clone();
    loop {
        if !leader::wait_to_lead(&mut leading, &mut stop).await {
            return Ok(());
        }
        tracing::info!("leading: starting the controllers");
        run(Box::pin(leader::until_lost_or_stopped(&leading, shutdown))).await?;
        if *stop.borrow() {
            return Ok(());
        }
        tracing::warn!("lost leadership: controllers stopped, following");
        lost();
    }
}

/// Returns after the first complete list of `api` under `config` (readiness after the first
/// sync, on every replica), retrying a failing watch.
pub async fn first_sync<K>(api: Api<K>, config: watcher::Config)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(WatchEvent::InitDone) => return,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "watch failed; retrying"),
        }
    }
}

/// Why a Kubernetes mode could not start (either service).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Lease(#[from] leader::LeaderError),
}

/// A client from the inferred configuration (kubeconfig or in-cluster).
pub async fn connect() -> Result<Client, StartError> {
    let config = kube::Config::infer().await?;
    Client::try_from(config).map_err(StartError::Client)
}

/// What both services' Kubernetes modes are given by their flags: `--concurrent`,
/// `--watch-label-selector` and the leader election.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Reconciles running at once, per controller.
    pub concurrent: u16,
    /// `--watch-label-selector` as given (empty: every object).
    pub label_selector: String,
    pub leader_election: LeaderElectionSettings,
}

impl ControllerSettings {
    /// A controller over every namespace's `K` matching the label selector, running at most
    /// `--concurrent` reconciles at once.
    pub fn controller<K>(&self, client: &Client) -> Controller<K>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        Controller::new(
            Api::all(client.clone()),
            watcher_config(&self.label_selector),
        )
        .with_config(controller::Config::default().concurrency(self.concurrent.max(1)))
    }

    /// Takes part in the election for `lease` (see [`leadership`]).
    pub async fn leadership(
        &self,
        client: Client,
        lease: ServiceLease,
        identity_suffix: &str,
        stop: watch::Receiver<bool>,
    ) -> Result<leader::Leadership, leader::LeaderError> {
        leadership(
            client,
            &self.leader_election,
            lease,
            &self.label_selector,
            identity_suffix,
            stop,
        )
        .await
    }
}

/// The part of a service's schedule the kit drives: the per-object [`Handled`].
pub trait Scheduled {
    type Key: Hash + Eq + Clone;
    fn handled(&mut self) -> &mut Handled<Self::Key>;
}

/// What every reconcile of a service shares: the client, the event publisher, the field
/// manager of its status writes, and its schedule `S` (behind a lock: the reconciles of
/// `--concurrent` objects run at once).
pub struct Context<S> {
    pub client: Client,
    /// Folds only identical events: a later event with another message stays visible.
    pub events: EventPublisher,
    field_manager: &'static str,
    schedule: Mutex<S>,
}

impl<S> fmt::Debug for Context<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl<S> Context<S> {
    pub fn new(client: Client, field_manager: &'static str, schedule: S) -> Self {
        Self {
            events: EventPublisher::new(client.clone(), events::reporter(field_manager)),
            client,
            field_manager,
            schedule: Mutex::new(schedule),
        }
    }

    pub fn schedule(&self) -> MutexGuard<'_, S> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `status` with a forced server-side apply under the service's field manager
    /// when it differs from `current`; `Ok(false)` when nothing was written.
    pub async fn write_status<K, T>(
        &self,
        api: &Api<K>,
        name: &str,
        current: Option<&T>,
        status: &T,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
        T: Serialize + PartialEq,
    {
        if current == Some(status) {
            return Ok(false);
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let params = PatchParams::apply(self.field_manager).force();
        api.patch_status(name, &params, &Patch::Apply(&patch))
            .await?;
        Ok(true)
    }

    /// Publishes a core's event on `obj` (`None`: only logged by the core).
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: Option<EventType>,
        reason: &str,
        message: &str,
    ) {
        if let Some(type_) = type_ {
            self.events.record(obj, type_, reason, message).await;
        }
    }
}

impl<S: Scheduled> Context<S> {
    /// `Some(action)` when the object has nothing new to reconcile yet (a watch event
    /// caused by our own status write, the finalizer or a label change).
    pub fn skip(&self, key: &S::Key, print: &Fingerprint) -> Option<Action> {
        let now = tokio::time::Instant::now();
        skip_action(self.schedule().handled().skip(key, print, now))
    }

    /// The action for the core's `next`, recording when the next run is due.
    pub fn action(
        &self,
        key: &S::Key,
        print: Fingerprint,
        next: Next,
        retry_after: Option<Duration>,
    ) -> Action {
        let now = tokio::time::Instant::now();
        let delay = self
            .schedule()
            .handled()
            .record(key, print, next, retry_after, now);
        action_after(delay)
    }

    /// The `error_policy`: [`retry_after_failure`] on this schedule.
    pub fn failed(
        &self,
        key: &S::Key,
        object: (&str, &Key),
        error: &dyn std::error::Error,
    ) -> Action {
        retry_after_failure(self.schedule().handled(), key, object, error)
    }
}

/// One service's reconcile of the namespaced kind `K`, run by [`run_controller`] under the
/// finalizer.
pub trait Reconcile<K>: Send + Sync + 'static {
    type Error: std::error::Error + Send + 'static;

    /// Reconciles a live object through `api` (its namespace).
    fn apply(&self, api: Api<K>, obj: Arc<K>) -> Applied<'_, Self::Error>;

    /// Forgets an object being deleted (before its finalizer is removed).
    fn cleanup(&self, key: &Key, obj: &K);

    /// The `error_policy`: the action after a failed reconcile.
    fn failed(&self, obj: &K, error: &ReconcileError<Self::Error>) -> Action;
}

/// The future of [`Reconcile::apply`].
pub type Applied<'a, E> = BoxFuture<'a, Result<Action, E>>;

/// Runs `controller` with `reconciler` until `stop` completes (the reconciles in flight
/// finish first).
pub async fn run_controller<K, R>(
    controller: Controller<K>,
    client: &Client,
    reconciler: Arc<R>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + fmt::Debug
        + Send
        + Sync
        + 'static,
    R: Reconcile<K>,
{
    let kind = K::kind(&());
    controller
        .graceful_shutdown_on(stop)
        .run(
            |obj: Arc<K>, reconciler: Arc<R>| {
                let client = client.clone();
                async move {
                    let reconciler = reconciler.as_ref();
                    reconcile_finalized(
                        &client,
                        obj,
                        |api, obj| reconciler.apply(api, obj),
                        |key, obj| reconciler.cleanup(key, obj),
                    )
                    .await
                }
            },
            |obj, error, reconciler| reconciler.failed(obj.as_ref(), error),
            reconciler,
        )
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, kind = kind.as_ref(), "controller");
            }
            std::future::ready(())
        })
        .await;
}

/// Runs the controllers while this replica leads (see [`while_leading`]) until shutdown,
/// then waits for the election task to end.
pub async fn lead<E, R, RF>(
    leading: watch::Receiver<bool>,
    election: tokio::task::JoinHandle<()>,
    shutdown: &watch::Receiver<bool>,
    run: R,
    lost: impl FnMut(),
) -> Result<(), E>
where
    R: FnMut(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> RF,
    RF: Future<Output = Result<(), E>>,
{
    let result = while_leading(leading, shutdown, run, lost).await;
    if let Err(error) = election.await {
        tracing::warn!(%error, "leader election task failed");
    }
    result
}
