//! Standalone mode: `image-reflector serve --manifests DIR`, without a cluster.
//!
//! - Reads ImageRepository and ImagePolicy (`image.toolkit.fluxcd.io`, any version),
//!   Secret, ServiceAccount and Namespace (`v1`) manifests from the YAML/JSON files under
//!   DIR (recursively, multi-document; dot-files skipped; other kinds ignored).
//! - Polls the files' modification times and sizes every second; changed files are parsed
//!   again. A file that fails to parse keeps its previous objects (an editor's half-written
//!   save must not delete a repository and its stored tags); deleted objects are removed
//!   from the API, the metrics and the tag store.
//! - Runs the shared reconcilers with per-object next-run times and at most `--concurrent`
//!   reconciles at once; statuses live in memory and are served by the HTTP API. A policy
//!   is re-evaluated when its repository's revision changes (and when either changes).
//! - Restart: statuses are lost, but the tag store is not. Every policy is evaluated from
//!   the stored tags first, before any repository is scanned, so policies are Ready at once;
//!   each repository then scans (its status has no `lastScanResult`, which is a first scan
//!   for the schedule).
//!
//! `metadata.generation` is kept here: 1 when first read, incremented when the spec changes.

mod snapshot;
mod tracked;
use snapshot::*;
pub use snapshot::{Snapshot, load_manifests};
use tracked::{Trackable, Tracked};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_types::meta::{condition_type, find_condition};
use api_types::{GROUP, ImagePolicy, ImageRepository};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube_support::manifests;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::selector::LabelSelector;
use crate::metrics::Metrics;
use crate::reconcile::{
    Backoff, BoxFuture, Deps, EventType, Lookup, Next, ObjectSource, Options, PolicyOutcome,
    RegistryPool, RepositoryOutcome, ScanProgress, name_of, namespace_of, policy_info,
    reconcile_policy, reconcile_repository_with, repository_info,
};
use crate::registry::{ClientSettings, SecretData};
use crate::state::ApiState;
use crate::store::{RepoKey, TagStore};
use kube_support::schedule::Schedule;

/// How often the manifest directory is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

use super::{Kind, POLICY, REPOSITORY};

/// `(namespace, name)`.
pub type Key = (String, String);

/// Standalone settings.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub manifests: PathBuf,
    /// Reconciles running at once (at least 1).
    pub concurrent: usize,
    pub options: Options,
    /// Only objects whose labels match are reconciled (`--watch-label-selector`).
    pub selector: Option<LabelSelector>,
    pub poll_interval: Duration,
    pub registry: ClientSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("--manifests {path}: {source}")]
    Manifests {
        path: PathBuf,
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------
// The engine

/// Publishes a repository's in-progress status ("scanning: <reason>") in the API while
/// its scan runs.
struct ApiProgress {
    state: ApiState,
    repo: ImageRepository,
}

impl ScanProgress for ApiProgress {
    fn scanning<'a>(&'a self, status: &'a api_types::ImageRepositoryStatus) -> BoxFuture<'a, ()> {
        let mut repo = self.repo.clone();
        repo.status = Some(status.clone());
        self.state.upsert_repository(repository_info(&repo));
        Box::pin(async {})
    }
}

enum Done {
    Repository(Key, Box<RepositoryOutcome>, Duration),
    Policy(Key, Box<PolicyOutcome>, Duration),
}

struct Engine {
    config: StandaloneConfig,
    deps: Deps,
    objects: Objects,
    manifests: ManifestDir,
    repositories: Schedule<Key, Tracked<ImageRepository>>,
    policies: Schedule<Key, Tracked<ImagePolicy>>,
    backoff: Backoff<(Kind, Key)>,
    /// When each policy's selected tag last changed (for the stuck-policy metric).
    latest_changed: BTreeMap<Key, (String, f64)>,
    state: ApiState,
    metrics: Metrics,
    /// The tag store's [`TagStore::generation`] last seen: a change means it lost its
    /// contents, and every repository is rescanned.
    store_generation: u64,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("repositories", &self.repositories.len())
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

/// Whether `policy` refers to the repository `key` (without allocating: it runs for every
/// policy after every scan).
fn refers_to(policy: &ImagePolicy, key: &Key) -> bool {
    crate::reconcile::repository_ref_str(policy) == (key.0.as_str(), key.1.as_str())
}

/// What [`merge_object`] did.
enum Merged<'a, O: Trackable> {
    /// New, at generation 1 (the object as scheduled).
    Added(&'a Tracked<O>),
    /// Spec, labels or annotations changed: it runs again, with its status.
    Changed,
    Same,
}

/// Merges a re-read object into `schedule`: a new one starts at generation 1; a changed
/// one keeps its status, takes its next generation ([`Tracked::update`]) and is due now.
fn merge_object<'s, O: Trackable>(
    schedule: &'s mut Schedule<Key, Tracked<O>>,
    key: &Key,
    obj: &Arc<O>,
    now: Instant,
) -> Merged<'s, O> {
    let Some(old) = schedule.get_mut(key) else {
        schedule.insert(key.clone(), Tracked::new(obj.clone()), now);
        return schedule.get(key).map_or(Merged::Same, Merged::Added);
    };
    if !old.update(obj) {
        return Merged::Same;
    }
    schedule.trigger(key, now);
    Merged::Changed
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Engine {
    /// Applies a new snapshot: adds, updates and removes objects.
    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let now = Instant::now();
        let changed_repos = self.apply_repositories(&snapshot, now);
        self.apply_policies(&snapshot, now);
        // A policy follows its repository's spec (its image, its accessFrom).
        self.policies.trigger_where(now, |key, policy| {
            let follows = changed_repos.contains(&crate::reconcile::repository_ref(&policy.object));
            if follows {
                tracing::debug!(
                    namespace = key.0,
                    name = key.1,
                    "repository changed; re-evaluating"
                );
            }
            follows
        });
        self.objects.replace(snapshot);
    }

    fn apply_repositories(&mut self, snapshot: &Snapshot, now: Instant) -> BTreeSet<Key> {
        let mut changed = BTreeSet::new();
        let removed = self
            .repositories
            .keys_not_in(|k| snapshot.repositories.contains_key(k));
        for key in removed {
            self.repositories.remove(&key);
            self.backoff.reset(&(Kind::Repository, key.clone()));
            self.state.remove_repository(&key.0, &key.1);
            self.metrics.delete_object(REPOSITORY, &key.0, &key.1);
            self.delete_tags(&key);
            tracing::info!(namespace = key.0, name = key.1, "ImageRepository removed");
            changed.insert(key);
        }
        for (key, repo) in &snapshot.repositories {
            match merge_object(&mut self.repositories, key, repo, now) {
                Merged::Added(repo) => self.state.upsert_repository(repository_info(&repo.full())),
                Merged::Changed => self.backoff.reset(&(Kind::Repository, key.clone())),
                Merged::Same => continue,
            }
            changed.insert(key.clone());
        }
        changed
    }

    fn apply_policies(&mut self, snapshot: &Snapshot, now: Instant) {
        let removed = self
            .policies
            .keys_not_in(|k| snapshot.policies.contains_key(k));
        for key in removed {
            self.policies.remove(&key);
            self.latest_changed.remove(&key);
            self.backoff.reset(&(Kind::Policy, key.clone()));
            self.state.remove_policy(&key.0, &key.1);
            self.metrics.delete_object(POLICY, &key.0, &key.1);
            tracing::info!(namespace = key.0, name = key.1, "ImagePolicy removed");
        }
        for (key, policy) in &snapshot.policies {
            match merge_object(&mut self.policies, key, policy, now) {
                Merged::Added(policy) => self.state.upsert_policy(policy_info(&policy.full())),
                Merged::Changed => self.backoff.reset(&(Kind::Policy, key.clone())),
                Merged::Same => {}
            }
        }
    }

    fn delete_tags(&self, key: &Key) {
        if let Err(error) = self
            .deps
            .store
            .delete(&RepoKey::new(key.0.as_str(), key.1.as_str()))
        {
            tracing::warn!(namespace = key.0, name = key.1, %error, "cannot delete stored tags");
        }
    }

    /// Starts due reconciles, policies first (they only read the store, and after a
    /// restart they make the API useful before any scan finishes).
    fn launch(&mut self, tasks: &mut JoinSet<Done>) {
        let now = Instant::now();
        let limit = self.config.concurrent.max(1);
        for key in self
            .policies
            .take_due(now, limit.saturating_sub(tasks.len()))
        {
            let Some(policy) = self.policies.get(&key).map(Tracked::full) else {
                continue;
            };
            let deps = self.deps.clone();
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let outcome = reconcile_policy(&policy, &deps, SystemTime::now()).await;
                Done::Policy(key, Box::new(outcome), started.elapsed())
            });
        }
        let room = limit.saturating_sub(tasks.len());
        for key in self.repositories.take_due(now, room) {
            let Some(repo) = self.repositories.get(&key).map(Tracked::full) else {
                continue;
            };
            let deps = self.deps.clone();
            let progress = ApiProgress {
                state: self.state.clone(),
                repo: repo.clone(),
            };
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let outcome =
                    reconcile_repository_with(&repo, &deps, SystemTime::now(), Some(&progress))
                        .await;
                Done::Repository(key, Box::new(outcome), started.elapsed())
            });
        }
    }

    /// The earliest next run of an object not running.
    fn next_due(&self) -> Option<Instant> {
        [self.policies.next_due(), self.repositories.next_due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// How long until the next run for `next` (`None`: on change), with the backoff.
    fn delay(
        &mut self,
        kind: Kind,
        key: &Key,
        next: Next,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        self.backoff
            .delay_for(&(kind, key.clone()), next, retry_after)
    }

    fn finish(&mut self, done: Done) {
        match done {
            Done::Repository(key, outcome, elapsed) => {
                self.finish_repository(&key, *outcome, elapsed)
            }
            Done::Policy(key, outcome, elapsed) => self.finish_policy(&key, *outcome, elapsed),
        }
    }

    fn record(
        &self,
        kind: Kind,
        key: &Key,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        suspended: bool,
        elapsed: Duration,
    ) {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let kind = kind.as_str();
        self.metrics
            .gotk
            .observe_reconcile(kind, ns, name, elapsed.as_secs_f64());
        self.metrics.gotk.set_suspended(kind, ns, name, suspended);
        for type_ in [
            condition_type::READY,
            condition_type::STALLED,
            condition_type::RECONCILING,
        ] {
            let status = find_condition(conditions, type_).map_or("Deleted", |c| c.status.as_str());
            self.metrics
                .gotk
                .set_condition(kind, ns, name, type_, status);
        }
    }

    fn log_event(kind: Kind, key: &Key, event: Option<&crate::reconcile::Event>) {
        let Some(event) = event else { return };
        let (namespace, name, kind) = (key.0.as_str(), key.1.as_str(), kind.as_str());
        let (reason, message) = (event.reason.as_str(), event.message.as_str());
        match event.type_ {
            EventType::Normal => tracing::info!(kind, namespace, name, reason, "{message}"),
            EventType::Warning => tracing::warn!(kind, namespace, name, reason, "{message}"),
        }
    }

    fn finish_repository(&mut self, key: &Key, outcome: RepositoryOutcome, elapsed: Duration) {
        if !self.repositories.contains(key) {
            // Deleted while scanning: the scan may have stored tags, and published its
            // progress in the API, after the deletion.
            self.delete_tags(key);
            self.state.remove_repository(&key.0, &key.1);
            return;
        }
        if let Some(scan) = outcome.scan {
            self.metrics.observe_scan(
                &key.0,
                &key.1,
                scan.duration.as_secs_f64(),
                scan.tags,
                scan.ok,
            );
        }
        self.record(
            Kind::Repository,
            key,
            &outcome.status.conditions,
            outcome.suspended,
            elapsed,
        );
        Self::log_event(Kind::Repository, key, outcome.event.as_ref());
        let retry_after = outcome.error.as_ref().and_then(|e| e.retry_after());
        let next = self.delay(Kind::Repository, key, outcome.next(), retry_after);
        let Some(repo) = self.repositories.get_mut(key) else {
            return;
        };
        let old_revision = repo
            .status
            .as_ref()
            .and_then(|s| s.last_scan_result.as_ref())
            .map(|s| s.revision.clone());
        let revision_changed = outcome.revision().map(str::to_string) != old_revision;
        repo.status = Some(outcome.status);
        self.state.upsert_repository(repository_info(&repo.full()));
        let now = Instant::now();
        self.repositories.finished(key, next, now);
        if revision_changed {
            self.policies
                .trigger_where(now, |_, policy| refers_to(&policy.object, key));
        }
    }

    fn finish_policy(&mut self, key: &Key, outcome: PolicyOutcome, elapsed: Duration) {
        if !self.policies.contains(key) {
            return;
        }
        self.record(
            Kind::Policy,
            key,
            &outcome.status.conditions,
            outcome.suspended,
            elapsed,
        );
        Self::log_event(Kind::Policy, key, outcome.event.as_ref());
        if let Some(latest) = &outcome.status.latest_ref {
            let image = latest.to_string();
            let changed_at = match self.latest_changed.get(key) {
                Some((previous, at)) if *previous == image => *at,
                _ => unix_now(),
            };
            self.latest_changed.insert(key.clone(), (image, changed_at));
            self.metrics
                .set_policy_latest(&key.0, &key.1, &latest.name, &latest.tag, changed_at);
        }
        let next = self.delay(Kind::Policy, key, outcome.next(), None);
        let Some(policy) = self.policies.get_mut(key) else {
            return;
        };
        policy.status = Some(outcome.status);
        self.state.upsert_policy(policy_info(&policy.full()));
        self.policies.finished(key, next, Instant::now());
    }

    /// Ready once every policy has been evaluated once (from the store after a restart).
    fn first_sync_done(&self) -> bool {
        self.policies.all_ran(|_| true)
    }

    fn refresh(&mut self) {
        let generation = self.deps.store.generation();
        if generation != self.store_generation {
            self.store_generation = generation;
            tracing::info!("the tag store was replaced; rescanning every ImageRepository");
            let now = Instant::now();
            self.repositories.trigger_where(now, |_, _| true);
        }
        match self.manifests.refresh(&self.config.manifests) {
            Ok(true) => {
                let snapshot = self.manifests.snapshot(self.config.selector.as_ref());
                self.apply_snapshot(snapshot);
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(path = %self.config.manifests.display(), %error, "cannot read the manifest directory");
            }
        }
    }
}

/// Runs standalone mode until `shutdown` completes.
pub async fn run(
    config: StandaloneConfig,
    store: Arc<dyn TagStore>,
    state: ApiState,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StandaloneError> {
    let objects = Objects::default();
    let pool = Arc::new(RegistryPool::new(
        config.registry.clone(),
        Some(metrics.request_observer()),
    ));
    let deps = Deps {
        objects: Arc::new(objects.clone()),
        tags: pool.clone(),
        digests: pool,
        store,
        options: config.options,
        cloud: crate::reconcile::cloud::controller_credentials_or_log(
            config.options.token_cache,
            metrics.token_cache(),
        ),
    };
    let deps_generation = deps.store.generation();
    let mut manifests = ManifestDir::default();
    manifests
        .refresh(&config.manifests)
        .map_err(|source| StandaloneError::Manifests {
            path: config.manifests.clone(),
            source,
        })?;
    let mut engine = Engine {
        deps,
        objects,
        manifests,
        repositories: Schedule::default(),
        policies: Schedule::default(),
        backoff: Backoff::new(
            config.options.min_retry_delay,
            config.options.max_retry_delay,
        ),
        latest_changed: BTreeMap::new(),
        state,
        metrics,
        store_generation: deps_generation,
        config,
    };
    let snapshot = engine.manifests.snapshot(engine.config.selector.as_ref());
    engine.apply_snapshot(snapshot);
    tracing::info!(
        path = %engine.config.manifests.display(),
        repositories = engine.repositories.len(),
        policies = engine.policies.len(),
        "standalone mode started"
    );

    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut poll = tokio::time::interval(engine.config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut ready = false;
    loop {
        engine.launch(&mut tasks);
        if !ready && engine.first_sync_done() {
            ready = true;
            engine.state.set_ready(true);
        }
        let wake = engine.next_due();
        tokio::select! {
            () = &mut shutdown => break,
            _ = poll.tick() => engine.refresh(),
            Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                Ok(done) => engine.finish(done),
                Err(error) => tracing::error!(%error, "a reconcile task failed"),
            },
            () = sleep_until(wake) => {}
        }
    }
    tracing::info!("standalone mode stopping");
    engine.state.set_ready(false);
    tasks.shutdown().await;
    Ok(())
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
