//! Fakes for the reconciler unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use api_types::meta::RECONCILE_REQUEST_ANNOTATION;
use api_types::{
    ImagePolicy, ImagePolicyChoice, ImagePolicySpec, ImageRepository, ImageRepositorySpec,
    LocalObjectReference, NamespacedObjectReference, SemVerPolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{BoxFuture, Deps, DigestSource, Lookup, ObjectSource, Options, ScanSource};
use crate::reference::ImageReference;
use crate::registry::{RegistryAccess, RegistryError, ScanResult, SecretData};
use crate::store::{MemoryTagStore, RepoKey, StoreError, TagMeta, TagPage, TagStore};

pub fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("flux-system".into()),
        generation: Some(1),
        ..Default::default()
    }
}

/// A repository in `flux-system` scanned every 5m with the `registry-pull` secret.
pub fn repository(name: &str, image: &str) -> ImageRepository {
    let mut repo = ImageRepository::new(
        name,
        ImageRepositorySpec {
            image: image.into(),
            interval: "5m".into(),
            secret_ref: Some(LocalObjectReference {
                name: "registry-pull".into(),
            }),
            exclusion_list: vec![api_types::image_repository::DEFAULT_EXCLUSION_LIST.into()],
            ..Default::default()
        },
    );
    repo.metadata = meta(name);
    repo
}

pub fn semver_policy(name: &str, repo: &str, range: &str) -> ImagePolicy {
    let mut policy = ImagePolicy::new(
        name,
        ImagePolicySpec {
            image_repository_ref: NamespacedObjectReference {
                name: repo.into(),
                namespace: None,
            },
            policy: ImagePolicyChoice {
                semver: Some(SemVerPolicy {
                    range: range.into(),
                }),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    policy.metadata = meta(name);
    policy
}

pub fn request_reconcile(meta: &mut ObjectMeta, token: &str) {
    meta.annotations
        .get_or_insert_default()
        .insert(RECONCILE_REQUEST_ANNOTATION.into(), token.into());
}

#[derive(Default)]
pub struct FakeObjects {
    secrets: Mutex<BTreeMap<(String, String), SecretData>>,
    service_accounts: Mutex<BTreeMap<(String, String), Vec<String>>>,
    namespaces: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    repositories: Mutex<BTreeMap<(String, String), ImageRepository>>,
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

impl ObjectSource for FakeObjects {
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> Lookup<'a, SecretData> {
        let found = self
            .secrets
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn service_account_pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, Vec<String>> {
        let found = self
            .service_accounts
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn namespace_labels<'a>(&'a self, namespace: &'a str) -> Lookup<'a, BTreeMap<String, String>> {
        let found = self.namespaces.lock().unwrap().get(namespace).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn image_repository<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Lookup<'a, ImageRepository> {
        let found = self
            .repositories
            .lock()
            .unwrap()
            .get(&key(namespace, name))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}

#[derive(Default)]
struct RegistryState {
    tags: Vec<String>,
    fail_status: Option<u16>,
    delay: Duration,
    calls: usize,
    last_username: Option<String>,
    last_timeout: Option<Duration>,
    digests: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct FakeRegistry {
    state: Mutex<RegistryState>,
}

impl FakeRegistry {
    pub fn set_tags(&self, tags: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.tags = tags.iter().map(|t| (*t).to_string()).collect();
        s.fail_status = None;
    }

    pub fn fail_with_status(&self, status: u16) {
        self.state.lock().unwrap().fail_status = Some(status);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn set_digest(&self, tag: &str, digest: &str) {
        self.state
            .lock()
            .unwrap()
            .digests
            .insert(tag.into(), digest.into());
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn last_username(&self) -> Option<String> {
        self.state.lock().unwrap().last_username.clone()
    }

    pub fn last_timeout(&self) -> Option<Duration> {
        self.state.lock().unwrap().last_timeout
    }
}

impl ScanSource for FakeRegistry {
    fn list_tags<'a>(
        &'a self,
        image: &'a ImageReference,
        access: &'a RegistryAccess,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, RegistryError>> {
        Box::pin(async move {
            let (delay, result) = {
                let mut s = self.state.lock().unwrap();
                s.calls += 1;
                s.last_username = access.credentials.as_ref().map(|c| c.username.clone());
                s.last_timeout = Some(timeout);
                let result = match s.fail_status {
                    Some(status) => Err(RegistryError::Status {
                        method: "GET".into(),
                        url: format!(
                            "https://{}/v2/{}/tags/list",
                            image.registry(),
                            image.repository()
                        ),
                        status,
                        detail: String::new(),
                    }),
                    None => Ok(s.tags.clone()),
                };
                (s.delay, result)
            };
            if delay > timeout {
                tokio::time::sleep(timeout).await;
                return Err(RegistryError::Timeout {
                    registry: image.registry().into(),
                    timeout,
                });
            }
            tokio::time::sleep(delay).await;
            result
        })
    }
}

impl DigestSource for FakeRegistry {
    fn manifest_digest<'a>(
        &'a self,
        image: &'a ImageReference,
        tag: &'a str,
        _access: &'a RegistryAccess,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        let found = self.state.lock().unwrap().digests.get(tag).cloned();
        Box::pin(async move {
            found.ok_or_else(|| RegistryError::NotFound {
                registry: image.registry().into(),
                what: format!("manifest {}:{tag}", image.repository()),
                detail: String::new(),
            })
        })
    }
}

/// A store whose every operation fails.
#[derive(Debug, Default)]
pub struct BrokenStore;

fn broken() -> StoreError {
    StoreError::Corrupt {
        key: "x".into(),
        detail: "broken on purpose",
    }
}

impl TagStore for BrokenStore {
    fn put(&self, _: &RepoKey, _: &ScanResult) -> Result<(), StoreError> {
        Err(broken())
    }
    fn get_tags(&self, _: &RepoKey) -> Result<Option<Vec<String>>, StoreError> {
        Err(broken())
    }
    fn get_page(
        &self,
        _: &RepoKey,
        _: Option<&str>,
        _: usize,
    ) -> Result<Option<TagPage>, StoreError> {
        Err(broken())
    }
    fn meta(&self, _: &RepoKey) -> Result<Option<TagMeta>, StoreError> {
        Err(broken())
    }
    fn delete(&self, _: &RepoKey) -> Result<bool, StoreError> {
        Err(broken())
    }
    fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        Err(broken())
    }
}

pub struct Fixture {
    pub objects: Arc<FakeObjects>,
    pub registry: Arc<FakeRegistry>,
    pub store: Arc<dyn TagStore>,
    options: Mutex<Options>,
}

impl Fixture {
    /// Objects: the `registry-pull` secret for `registry.local:5000` (user `user`).
    pub fn new() -> Self {
        Self::with_store(Arc::new(MemoryTagStore::new()))
    }

    pub fn with_broken_store() -> Self {
        Self::with_store(Arc::new(BrokenStore))
    }

    fn with_store(store: Arc<dyn TagStore>) -> Self {
        let objects = FakeObjects::default();
        objects.secrets.lock().unwrap().insert(
            key("flux-system", "registry-pull"),
            SecretData::docker_config_json(
                "registry-pull",
                r#"{"auths":{"registry.local:5000":{"username":"user","password":"pass"}}}"#,
            ),
        );
        Self {
            objects: Arc::new(objects),
            registry: Arc::new(FakeRegistry::default()),
            store,
            options: Mutex::new(Options::default()),
        }
    }

    pub fn deps(&self) -> Deps {
        Deps {
            objects: self.objects.clone(),
            tags: self.registry.clone(),
            digests: self.registry.clone(),
            store: self.store.clone(),
            options: *self.options.lock().unwrap(),
            cloud: None,
        }
    }

    pub fn no_cross_namespace_refs(&self, on: bool) {
        self.options.lock().unwrap().no_cross_namespace_refs = on;
    }

    pub fn add_repository(&self, repo: ImageRepository) {
        let k = key(
            repo.metadata.namespace.as_deref().unwrap(),
            repo.metadata.name.as_deref().unwrap(),
        );
        self.objects.repositories.lock().unwrap().insert(k, repo);
    }

    pub fn add_namespace(&self, name: &str, labels: BTreeMap<String, String>) {
        self.objects
            .namespaces
            .lock()
            .unwrap()
            .insert(name.into(), labels);
    }

    pub fn store_tags(&self, namespace: &str, name: &str, tags: &[&str]) {
        let result = ScanResult::new(
            "x",
            tags.iter().map(|t| (*t).to_string()).collect(),
            &Default::default(),
            at(1),
        );
        self.store
            .put(&RepoKey::new(namespace, name), &result)
            .unwrap();
    }
}
