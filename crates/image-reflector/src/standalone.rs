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
use crate::controller::{
    Backoff, BoxFuture, Deps, EventType, Next, ObjectSource, Options, PolicyOutcome, RegistryPool,
    RepositoryOutcome, ScanProgress, SourceError, name_of, namespace_of, policy_info,
    reconcile_policy, reconcile_repository_with, repository_info,
};
use crate::metrics::Metrics;
use crate::registry::{ClientSettings, SecretData};
use crate::state::ApiState;
use crate::store::{RepoKey, TagStore};
use kube_support::schedule::Schedule;

/// How often the manifest directory is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

const REPOSITORY: &str = "ImageRepository";
const POLICY: &str = "ImagePolicy";

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
// Manifests

/// One object read from a manifest file.
#[derive(Debug, Clone)]
enum Object {
    Repository(Box<ImageRepository>),
    Policy(Box<ImagePolicy>),
    Secret(Key, SecretData),
    ServiceAccount(Key, Vec<String>),
    Namespace(String, BTreeMap<String, String>),
}

/// Everything read from the directory.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub repositories: BTreeMap<Key, ImageRepository>,
    pub policies: BTreeMap<Key, ImagePolicy>,
    pub secrets: BTreeMap<Key, SecretData>,
    pub service_accounts: BTreeMap<Key, Vec<String>>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (namespace_of(meta).to_string(), name_of(meta).to_string())
}

/// Parses one document; `Ok(None)` for kinds we do not read.
fn parse_object(doc: Value) -> Result<Option<Object>, String> {
    let (group, api_version, kind) = manifests::type_of(&doc);
    let object = match (group, api_version, kind) {
        (GROUP, _, REPOSITORY) => {
            let mut repo: ImageRepository =
                serde_json::from_value(doc).map_err(|e| e.to_string())?;
            // Status comes from our reconciles, never from a file.
            repo.status = None;
            Object::Repository(Box::new(repo))
        }
        (GROUP, _, POLICY) => {
            let mut policy: ImagePolicy = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            policy.status = None;
            Object::Policy(Box::new(policy))
        }
        (_, "v1", "Secret") => {
            let secret = manifests::decode_secret(doc)?;
            let data = SecretData {
                name: secret.key.1.clone(),
                type_: secret.type_,
                data: secret.data,
            };
            Object::Secret(secret.key, data)
        }
        (_, "v1", "ServiceAccount") => {
            let sa: ServiceAccount = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            let names = sa
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect();
            Object::ServiceAccount(key_of(&sa.metadata), names)
        }
        (_, "v1", "Namespace") => {
            let ns: Namespace = serde_json::from_value(doc).map_err(|e| e.to_string())?;
            Object::Namespace(
                ns.metadata.name.unwrap_or_default(),
                ns.metadata.labels.unwrap_or_default(),
            )
        }
        _ => {
            tracing::debug!(api_version, kind, "ignoring manifest of another kind");
            return Ok(None);
        }
    };
    Ok(Some(object))
}

/// The manifest files and their last good objects ([`kube_support::manifests`]).
#[derive(Debug, Default)]
struct ManifestDir(manifests::ManifestDir<Object>);

impl ManifestDir {
    /// Re-reads changed files; returns whether anything changed.
    fn refresh(&mut self, dir: &Path) -> std::io::Result<bool> {
        self.0.refresh(dir, parse_object)
    }

    fn snapshot(&self, selector: Option<&LabelSelector>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let empty = BTreeMap::new();
        let selected = |labels: Option<&BTreeMap<String, String>>| {
            selector.is_none_or(|s| s.matches(labels.unwrap_or(&empty)))
        };
        for (path, object) in self.0.objects() {
            {
                let duplicate = match object.clone() {
                    Object::Repository(repo) => {
                        if !selected(repo.metadata.labels.as_ref()) {
                            continue;
                        }
                        snapshot
                            .repositories
                            .insert(key_of(&repo.metadata), *repo)
                            .is_some()
                    }
                    Object::Policy(policy) => {
                        if !selected(policy.metadata.labels.as_ref()) {
                            continue;
                        }
                        snapshot
                            .policies
                            .insert(key_of(&policy.metadata), *policy)
                            .is_some()
                    }
                    Object::Secret(key, secret) => snapshot.secrets.insert(key, secret).is_some(),
                    Object::ServiceAccount(key, names) => {
                        snapshot.service_accounts.insert(key, names).is_some()
                    }
                    Object::Namespace(name, labels) => {
                        snapshot.namespaces.insert(name, labels).is_some()
                    }
                };
                if duplicate {
                    tracing::warn!(path = %path.display(), "an object is defined twice; the last file (by path) wins");
                }
            }
        }
        snapshot
    }
}

/// Reads every manifest under `dir` once (for tools and tests).
pub fn load_manifests(dir: &Path) -> std::io::Result<Snapshot> {
    let mut manifests = ManifestDir::default();
    manifests.refresh(dir)?;
    Ok(manifests.snapshot(None))
}

// ---------------------------------------------------------------------------------------
// The ObjectSource over the manifests

#[derive(Debug, Default, Clone)]
struct Objects(Arc<RwLock<Snapshot>>);

impl Objects {
    fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, snapshot: Snapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl ObjectSource for Objects {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretData>, SourceError>> {
        let found = self.read(|s| s.secrets.get(&key(namespace, name)).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, SourceError>> {
        let found = self.read(|s| s.service_accounts.get(&key(namespace, name)).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn namespace_labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, SourceError>> {
        let found = self.read(|s| s.namespaces.get(namespace).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn image_repository<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ImageRepository>, SourceError>> {
        let found = self.read(|s| s.repositories.get(&key(namespace, name)).cloned());
        Box::pin(async move { Ok(found) })
    }
}

// ---------------------------------------------------------------------------------------
// The engine

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
    repositories: Schedule<Key, ImageRepository>,
    policies: Schedule<Key, ImagePolicy>,
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

/// The generation of an updated object, or `None` when it does not differ in what a
/// reconcile reads (spec, labels, annotations). Only a spec change bumps the generation.
fn changed_generation<S: PartialEq>(
    old_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    old_spec: &S,
    new_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    new_spec: &S,
) -> Option<i64> {
    let spec = old_spec != new_spec;
    let meta = old_meta.annotations != new_meta.annotations || old_meta.labels != new_meta.labels;
    if !spec && !meta {
        return None;
    }
    let generation = old_meta.generation.unwrap_or(1);
    Some(if spec { generation + 1 } else { generation })
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
            let follows = changed_repos.contains(&crate::controller::repository_ref(policy));
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
            let mut repo = repo.clone();
            match self.repositories.get_mut(key) {
                None => {
                    repo.metadata.generation = Some(1);
                    self.state.upsert_repository(repository_info(&repo));
                    self.repositories.insert(key.clone(), repo, now);
                    changed.insert(key.clone());
                }
                Some(old) => {
                    let Some(generation) =
                        changed_generation(&old.metadata, &old.spec, &repo.metadata, &repo.spec)
                    else {
                        continue;
                    };
                    repo.metadata.generation = Some(generation);
                    repo.status = old.status.clone();
                    *old = repo;
                    self.repositories.trigger(key, now);
                    self.backoff.reset(&(Kind::Repository, key.clone()));
                    changed.insert(key.clone());
                }
            }
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
            let mut policy = policy.clone();
            match self.policies.get_mut(key) {
                None => {
                    policy.metadata.generation = Some(1);
                    self.state.upsert_policy(policy_info(&policy));
                    self.policies.insert(key.clone(), policy, now);
                }
                Some(old) => {
                    let Some(generation) = changed_generation(
                        &old.metadata,
                        &old.spec,
                        &policy.metadata,
                        &policy.spec,
                    ) else {
                        continue;
                    };
                    policy.metadata.generation = Some(generation);
                    policy.status = old.status.clone();
                    *old = policy;
                    self.policies.trigger(key, now);
                    self.backoff.reset(&(Kind::Policy, key.clone()));
                }
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
            let Some(policy) = self.policies.get(&key).cloned() else {
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
            let Some(repo) = self.repositories.get(&key).cloned() else {
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
            .observe_reconcile(kind, ns, name, elapsed.as_secs_f64());
        self.metrics.set_suspended(kind, ns, name, suspended);
        for type_ in [
            condition_type::READY,
            condition_type::STALLED,
            condition_type::RECONCILING,
        ] {
            let status = find_condition(conditions, type_).map_or("Deleted", |c| c.status.as_str());
            self.metrics.set_condition(kind, ns, name, type_, status);
        }
    }

    fn log_event(kind: Kind, key: &Key, event: Option<&crate::controller::Event>) {
        let Some(event) = event else { return };
        let (namespace, name, kind) = (key.0.as_str(), key.1.as_str(), kind.as_str());
        match event.type_ {
            EventType::Normal => {
                tracing::info!(
                    kind,
                    namespace,
                    name,
                    reason = event.reason,
                    "{}",
                    event.message
                );
            }
            EventType::Warning => {
                tracing::warn!(
                    kind,
                    namespace,
                    name,
                    reason = event.reason,
                    "{}",
                    event.message
                );
            }
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
        self.state.upsert_repository(repository_info(repo));
        let now = Instant::now();
        self.repositories.finished(key, next, now);
        if revision_changed {
            self.policies.trigger_where(now, |_, policy| {
                crate::controller::repository_ref(policy) == *key
            });
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
        self.state.upsert_policy(policy_info(policy));
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reads_every_kind_and_ignores_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        std::fs::write(
            dir.path().join("nested/all.yaml"),
            r#"
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: checkout, namespace: flux-system}
spec: {image: registry.example.com/team/checkout, interval: 5m, secretRef: {name: registry-pull}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: checkout, namespace: flux-system}
spec:
  imageRepositoryRef: {name: checkout}
  policy: {semver: {range: '>=1.0.0 <2.0.0'}}
---
apiVersion: v1
kind: Secret
metadata: {name: registry-pull, namespace: flux-system}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: eyJhdXRocyI6e319}
stringData: {extra: plain}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: puller}
imagePullSecrets: [{name: registry-pull}]
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
"#,
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let s = load_manifests(dir.path()).unwrap();
        let key = ("flux-system".to_string(), "checkout".to_string());
        assert_eq!(
            s.repositories[&key].spec.image,
            "registry.example.com/team/checkout"
        );
        assert_eq!(
            s.policies[&key].spec.policy.semver.as_ref().unwrap().range,
            ">=1.0.0 <2.0.0"
        );
        let secret = &s.secrets[&("flux-system".to_string(), "registry-pull".to_string())];
        assert_eq!(secret.type_, "kubernetes.io/dockerconfigjson");
        assert_eq!(secret.data[".dockerconfigjson"], br#"{"auths":{}}"#);
        assert_eq!(secret.data["extra"], b"plain");
        assert_eq!(
            s.service_accounts[&("default".to_string(), "puller".to_string())],
            ["registry-pull"]
        );
        assert_eq!(s.namespaces["apps"]["team"], "a");
    }

    #[test]
    fn a_broken_edit_keeps_the_previous_objects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repo.yaml");
        let repo = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: a}\nspec: {image: r.example.com/a, interval: 1m}\n";
        std::fs::write(&file, repo).unwrap();
        let mut manifests = ManifestDir::default();
        assert!(manifests.refresh(dir.path()).unwrap());
        assert!(!manifests.refresh(dir.path()).unwrap(), "unchanged");
        std::fs::write(&file, "kind: [broken").unwrap();
        assert!(manifests.refresh(dir.path()).unwrap());
        assert_eq!(manifests.snapshot(None).repositories.len(), 1);
        std::fs::remove_file(&file).unwrap();
        assert!(manifests.refresh(dir.path()).unwrap());
        assert!(manifests.snapshot(None).repositories.is_empty());
    }

    #[test]
    fn selector_filters_reconciled_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("repos.yaml"),
            "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: a, labels: {shard: one}}\nspec: {image: r.example.com/a, interval: 1m}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: b}\nspec: {image: r.example.com/b, interval: 1m}\n",
        )
        .unwrap();
        let mut manifests = ManifestDir::default();
        manifests.refresh(dir.path()).unwrap();
        let selector: LabelSelector = "shard=one".parse().unwrap();
        let s = manifests.snapshot(Some(&selector));
        assert_eq!(s.repositories.len(), 1);
        assert!(
            s.repositories
                .contains_key(&("default".to_string(), "a".to_string()))
        );
    }

    /// While a (slow) scan runs, the API shows Flux's progress status; then the result.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_api_shows_the_scanning_status_while_a_scan_runs() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let registry = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&registry)
            .await;
        Mock::given(method("GET"))
            .and(path("/v2/team/app/tags/list"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"name": "team/app", "tags": ["1.0.0"]}))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&registry)
            .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("repo.yaml"),
            format!(
                "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: app, namespace: apps}}
spec:
  image: {}/team/app
  insecure: true
  interval: 1h
",
                registry.address()
            ),
        )
        .unwrap();
        let store: Arc<dyn TagStore> = Arc::new(crate::store::MemoryTagStore::new());
        let state = ApiState::new(store.clone());
        let config = StandaloneConfig {
            manifests: dir.path().to_path_buf(),
            concurrent: 2,
            options: Options::default(),
            selector: None,
            poll_interval: POLL_INTERVAL,
            registry: ClientSettings::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let engine = tokio::spawn(run(
            config,
            store,
            state.clone(),
            Metrics::new().unwrap(),
            async move {
                let _ = stopped.await;
            },
        ));
        // Polls the API state until `check` holds for the repository's document.
        let wait = async |check: fn(&api_types::http_api::ImageRepositoryInfo) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let info = state.repository("apps", "app");
                if let Some(info) = info.as_ref().filter(|r| check(r)) {
                    return info.clone();
                }
                assert!(Instant::now() < deadline, "last: {info:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let scanning = wait(|r| r.readiness.reason == "Progressing").await;
        assert_eq!(scanning.readiness.message, "scanning: first scan");
        assert!(!scanning.readiness.ready);
        let done = wait(|r| r.readiness.ready).await;
        assert_eq!(done.tag_count, 1);
        assert!(
            done.readiness
                .message
                .starts_with("successful scan: found 1 tags")
        );
        stop.send(()).unwrap();
        engine.await.unwrap().unwrap();
    }

    /// A store that can lose its contents, as a damaged redb file replaced at run time does.
    #[derive(Debug, Default)]
    struct LosableStore {
        inner: std::sync::Mutex<crate::store::MemoryTagStore>,
        generation: std::sync::atomic::AtomicU64,
    }

    impl LosableStore {
        fn lose_everything(&self) {
            *self.inner.lock().unwrap() = crate::store::MemoryTagStore::new();
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl TagStore for LosableStore {
        fn put(
            &self,
            key: &crate::store::RepoKey,
            scan: &crate::registry::ScanResult,
        ) -> Result<(), crate::store::StoreError> {
            self.inner.lock().unwrap().put(key, scan)
        }
        fn get_tags(
            &self,
            key: &crate::store::RepoKey,
        ) -> Result<Option<Vec<String>>, crate::store::StoreError> {
            self.inner.lock().unwrap().get_tags(key)
        }
        fn get_page(
            &self,
            key: &crate::store::RepoKey,
            token: Option<&str>,
            limit: usize,
        ) -> Result<Option<crate::store::TagPage>, crate::store::StoreError> {
            self.inner.lock().unwrap().get_page(key, token, limit)
        }
        fn meta(
            &self,
            key: &crate::store::RepoKey,
        ) -> Result<Option<crate::store::TagMeta>, crate::store::StoreError> {
            self.inner.lock().unwrap().meta(key)
        }
        fn delete(&self, key: &crate::store::RepoKey) -> Result<bool, crate::store::StoreError> {
            self.inner.lock().unwrap().delete(key)
        }
        fn keys(&self) -> Result<Vec<crate::store::RepoKey>, crate::store::StoreError> {
            self.inner.lock().unwrap().keys()
        }
        fn generation(&self) -> u64 {
            self.generation.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A store that lost its contents at run time (a damaged file replaced by an empty
    /// one) gets every repository rescanned at once, not at the next interval (1h here).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_store_that_lost_its_contents_is_refilled_at_once() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let registry = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&registry)
            .await;
        Mock::given(method("GET"))
            .and(path("/v2/team/app/tags/list"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"name": "team/app", "tags": ["1.0.0"]})),
            )
            .mount(&registry)
            .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("repo.yaml"),
            format!(
                "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: app, namespace: apps}}
spec: {{image: {}/team/app, insecure: true, interval: 1h}}
",
                registry.address()
            ),
        )
        .unwrap();
        let losable = Arc::new(LosableStore::default());
        let store: Arc<dyn TagStore> = losable.clone();
        let state = ApiState::new(store.clone());
        let config = StandaloneConfig {
            manifests: dir.path().to_path_buf(),
            concurrent: 2,
            options: Options::default(),
            selector: None,
            poll_interval: Duration::from_millis(100),
            registry: ClientSettings::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let engine = tokio::spawn(run(
            config,
            store.clone(),
            state.clone(),
            Metrics::new().unwrap(),
            async move {
                let _ = stopped.await;
            },
        ));
        let key = crate::store::RepoKey::new("apps", "app");
        let wait_stored = async || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.get_tags(&key).unwrap().is_none() {
                assert!(Instant::now() < deadline, "never (re)scanned");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        wait_stored().await;
        let scans = || async {
            registry
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.url.path().ends_with("/tags/list"))
                .count()
        };
        assert_eq!(scans().await, 1);
        losable.lose_everything();
        wait_stored().await;
        assert_eq!(scans().await, 2);
        stop.send(()).unwrap();
        engine.await.unwrap().unwrap();
    }
}
