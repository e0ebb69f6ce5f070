//! Unit tests of this mode.

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

/// The allocation-free `refers_to` (run for every policy after every scan) agrees with
/// `repository_ref` on an explicit, an empty and a missing reference namespace.
#[test]
fn refers_to_agrees_with_repository_ref() {
    let policy = |namespace: Option<&str>, reference: &str| -> ImagePolicy {
        let mut doc = serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImagePolicy",
            "metadata": {"name": "p"},
            "spec": {"imageRepositoryRef": serde_json::from_str::<Value>(reference).unwrap(),
                     "policy": {"semver": {"range": ">=1.0.0"}}}
        });
        if let Some(namespace) = namespace {
            doc["metadata"]["namespace"] = namespace.into();
        }
        serde_json::from_value(doc).unwrap()
    };
    let keys = [
        key("apps", "r"),
        key("other", "r"),
        key("default", "r"),
        key("apps", "s"),
    ];
    for policy in [
        policy(Some("apps"), r#"{"name": "r"}"#),
        policy(Some("apps"), r#"{"name": "r", "namespace": ""}"#),
        policy(Some("apps"), r#"{"name": "r", "namespace": "other"}"#),
        policy(None, r#"{"name": "r"}"#),
    ] {
        for k in &keys {
            assert_eq!(
                refers_to(&policy, k),
                crate::reconcile::repository_ref(&policy) == *k,
                "{k:?} {:?}",
                policy.spec.image_repository_ref
            );
        }
    }
}
