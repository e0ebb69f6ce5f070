//! The Kubernetes front end both services share around their reconcile cores: object keys,
//! the finalizer wrapper, the controller action after a run or a failure, leader election
//! and the leader-gated run loop, and readiness after the first complete list.
//!
//! What differs per service stays with it: which objects it watches, its extra triggers
//! (the reflector's repository → policy trigger, the automation's change feed), and what a
//! reconcile does (`modes/kube` in each crate).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::leader;
use crate::manifests::Key;
use crate::schedule::Handled;

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

/// A service's Lease: its name (without the selector hash) and the service's field
/// manager (the Lease is written as `<it>-lease`).
#[derive(Debug, Clone, Copy)]
pub struct ServiceLease {
    pub name: &'static str,
    pub field_manager: &'static str,
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
