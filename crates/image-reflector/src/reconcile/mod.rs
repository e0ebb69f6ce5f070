//! The reconcilers of ImageRepository and ImagePolicy, shared by the standalone and the
//! Kubernetes modes.
//!
//! They are async functions over plain data: the object (with its current status), a
//! [`Deps`] bundle of small traits (objects it refers to, the registry, the tag store) and
//! the clock. They return the new status, when to run again and the event to emit; the
//! caller writes the status (API state, or the Kubernetes status subresource), emits the
//! event and schedules the next run, backing off with [`Backoff`] on retryable errors.
//! Nothing here talks to Kubernetes.
//!
//! - [`reconcile_repository`]: Flux's ImageRepository flow (reference §5.2).
//! - [`reconcile_policy`]: Flux's ImagePolicy flow (reference §5.3).
//! - [`decide_event`]: which event a status change deserves (§5.5, minus the success noise).
//! - [`repository_info`] / [`policy_info`]: the HTTP API documents.

mod access;
pub mod cloud;
mod events;
mod info;
mod policy;
mod registry;
mod repository;

#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api_types::ImageRepository;
use api_types::meta::{
    Outcome, apply_outcome, condition_type, find_condition, pending_reconcile_request,
    should_record_observed_generation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use cloud_identity::workload_identity::ServiceAccounts;

use crate::reference::ImageReference;
use crate::registry::{RegistryAccess, RegistryError, SecretData};
use crate::store::TagStore;

pub use access::{AccessSetupError, registry_access};
pub use events::{Event, EventType, decide_event};
pub use info::{policy_info, readiness, repository_info};
pub use kube_support::schedule::{Backoff, MAX_RETRY_DELAY, MIN_RETRY_DELAY};
pub use policy::{
    PolicyOutcome, PolicyReconcileError, ready_message, reconcile_policy, repository_ref,
    repository_ref_str,
};
pub use registry::{RegistryPool, RequestObserver};
pub use repository::{
    RepositoryError, RepositoryOutcome, ScanError, ScanProgress, ScanReport, reconcile_repository,
    reconcile_repository_with, scanning_status,
};

/// A boxed future, so the traits below can be used as `dyn` objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The namespace objects without one live in (as `kubectl apply` would put them).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The default `--requeue-dependency`: how soon a policy whose repository has no tags yet
/// is evaluated again.
pub const DEFAULT_REQUEUE_DEPENDENCY: Duration = Duration::from_secs(30);

/// Reading an object failed for a reason other than "it does not exist" (which is `None`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading {kind} {namespace}/{name}: {detail}")]
pub struct SourceError {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// For metric labels and logs.
    pub category: kube_support::objects::ErrorCategory,
    /// The client's message.
    pub detail: String,
}

/// What an [`ObjectSource`] lookup answers: `Ok(None)` when the object does not exist.
pub type Lookup<'a, T> = BoxFuture<'a, Result<Option<T>, SourceError>>;

/// The objects the reconcilers read besides the one they reconcile. Every method returns
/// `Ok(None)` when the object does not exist.
pub trait ObjectSource: Send + Sync {
    /// A Secret's type and decoded data.
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> Lookup<'a, SecretData>;

    /// The names in a ServiceAccount's `imagePullSecrets`.
    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, Vec<String>>;

    /// ServiceAccounts and their tokens, for object-level workload identity (Kubernetes mode
    /// only: `None` elsewhere).
    fn service_accounts(&self) -> Option<&dyn ServiceAccounts> {
        None
    }

    /// A Namespace's labels (for `accessFrom`).
    fn namespace_labels<'a>(&'a self, namespace: &'a str) -> Lookup<'a, BTreeMap<String, String>>;

    /// An ImageRepository (spec and status), for ImagePolicies.
    fn image_repository<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, ImageRepository>;
}

/// Where the repository reconciler lists tags: the registry client pool, or a fake.
pub trait ScanSource: Send + Sync {
    /// Every tag of `image`, in registry order, within `timeout`.
    fn list_tags<'a>(
        &'a self,
        image: &'a ImageReference,
        access: &'a RegistryAccess,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, RegistryError>>;
}

/// Where the policy reconciler looks up digests (`HEAD` on the manifest), or a fake.
pub trait DigestSource: Send + Sync {
    /// The digest `image:tag` points to, within `timeout`.
    fn manifest_digest<'a>(
        &'a self,
        image: &'a ImageReference,
        tag: &'a str,
        access: &'a RegistryAccess,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;
}

/// Controller-wide settings (flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `--no-cross-namespace-refs`: policies may only use repositories of their namespace.
    pub no_cross_namespace_refs: bool,
    /// `--requeue-dependency`: retry period of a policy whose repository has no tags.
    pub requeue_dependency: Duration,
    /// `--min-retry-delay`: the first backoff delay after a transient failure.
    pub min_retry_delay: Duration,
    /// `--max-retry-delay`: the longest backoff delay.
    pub max_retry_delay: Duration,
    /// `--feature-gates=ObjectLevelWorkloadIdentity` and `--default-service-account`.
    pub workload_identity: cloud::WorkloadIdentity,
    /// `--token-cache-max-size` and `--token-cache-max-duration`.
    pub token_cache: cloud::TokenCacheSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            no_cross_namespace_refs: false,
            requeue_dependency: DEFAULT_REQUEUE_DEPENDENCY,
            min_retry_delay: MIN_RETRY_DELAY,
            max_retry_delay: MAX_RETRY_DELAY,
            workload_identity: cloud::WorkloadIdentity::default(),
            token_cache: cloud::TokenCacheSettings::default(),
        }
    }
}

/// What the reconcilers use. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub objects: Arc<dyn ObjectSource>,
    pub tags: Arc<dyn ScanSource>,
    pub digests: Arc<dyn DigestSource>,
    pub store: Arc<dyn TagStore>,
    pub options: Options,
    /// The controller's cloud registry logins (`None`: its environment was invalid).
    pub cloud: Option<Arc<cloud_identity::RegistryCredentials>>,
}

impl fmt::Debug for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deps")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// When the caller should run the reconciler for this object again (the kit's one `Next`).
pub use kube_support::schedule::Next;

/// Records a pending `reconcile.fluxcd.io/requestedAt` token as handled (Flux does so
/// whatever the result).
fn record_reconcile_request(meta: &ObjectMeta, last_handled: &mut Option<String>) {
    if let Some(token) =
        pending_reconcile_request(meta.annotations.as_ref(), last_handled.as_deref())
    {
        *last_handled = Some(token.to_string());
    }
}

/// Writes the end of a reconcile into the conditions: Ready with `message`, or for a
/// `failure` (its reason, and whether it stalls) Stalled or Retrying with `message`.
/// Records `generation` as observed when due and returns the event the Ready change
/// deserves (against `before`, the Ready condition the reconcile started with).
fn finish_reconcile(
    conditions: &mut Vec<Condition>,
    observed_generation: &mut Option<i64>,
    before: Option<&Condition>,
    message: &str,
    failure: Option<(&'static str, bool)>,
    generation: Option<i64>,
    now: SystemTime,
) -> Option<Event> {
    let outcome = match failure {
        None => Outcome::Ready { message },
        Some((reason, true)) => Outcome::Stalled { reason, message },
        Some((reason, false)) => Outcome::Retrying { reason, message },
    };
    apply_outcome(conditions, outcome, generation, &to_time(now));
    if should_record_observed_generation(conditions) {
        *observed_generation = generation;
    }
    decide_event(before, find_condition(conditions, condition_type::READY))
}

/// The end of a reconcile at `(generation, now)` whose core answered `result`
/// (`Ok((Ready message, requeue))`, or the error, whose `failure` is its reason and whether
/// it stalls): [`finish_reconcile`] on `status` (conditions, observed generation). Returns
/// the requeue, the event and the error.
fn conclude<E: std::fmt::Display>(
    (conditions, observed_generation): (&mut Vec<Condition>, &mut Option<i64>),
    before: Option<&Condition>,
    result: Result<(String, Option<Duration>), E>,
    failure: impl Fn(&E) -> (&'static str, bool),
    (generation, now): (Option<i64>, SystemTime),
) -> (Option<Duration>, Option<Event>, Option<E>) {
    let (message, requeue_after, error) = match result {
        Ok((message, requeue)) => (message, requeue, None),
        Err(e) => (e.to_string(), None, Some(e)),
    };
    let failure = error.as_ref().map(failure);
    let event = finish_reconcile(
        conditions,
        observed_generation,
        before,
        &message,
        failure,
        generation,
        now,
    );
    (requeue_after, event, error)
}

/// `metadata.namespace`, defaulted.
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// `metadata.name` (empty when missing, which no API server allows).
pub fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// A Kubernetes timestamp from the clock (whole seconds are what the API server keeps).
pub fn to_time(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The clock value of a Kubernetes timestamp.
pub fn from_time(t: &Time) -> SystemTime {
    SystemTime::from(t.0)
}

pub use api_types::duration::format_duration as go_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(from_time(&to_time(t)), t);
    }
}
