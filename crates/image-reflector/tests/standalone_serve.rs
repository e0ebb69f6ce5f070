//! `image-reflector serve --manifests DIR` as a real process against the REAL testbed
//! registry (htpasswd auth, credentials from a dockerconfigjson Secret manifest), observed
//! through the HTTP API only: the seed's ImageRepository and ImagePolicies, edits to the
//! manifest files, a bad range, deletion, and a restart on the same store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod serve_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo};
use serde::de::DeserializeOwned;
use serve_common::Serve;
use testbed::registry::{Registry, RegistryOptions};
use testbed::wait::{wait_for, wait_for_every};

const WAIT: Duration = Duration::from_secs(60);

impl Serve {
    async fn start(manifests: &Path, storage: &Path, log_dir: &Path) -> Self {
        Self::start_with(manifests, storage, log_dir, &[]).await
    }

    /// The `/metrics` text.
    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// How many times the `checkout` ImageRepository was reconciled, from `/metrics`.
    async fn repository_reconciles(&self) -> u64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| {
                line.strip_prefix(
                    r#"gotk_reconcile_duration_seconds_count{kind="ImageRepository",name="checkout",namespace="flux-system"} "#,
                )
            })
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// `GET path` as JSON; `None` on 404.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self.send(path).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        Some(response.json().await.unwrap())
    }

    async fn policy(&self, name: &str) -> Option<ImagePolicyInfo> {
        self.get(&format!(
            "/api/v1/namespaces/flux-system/imagepolicies/{name}"
        ))
        .await
    }

    async fn repository(&self, name: &str) -> Option<ImageRepositoryInfo> {
        self.get(&format!(
            "/api/v1/namespaces/flux-system/imagerepositories/{name}"
        ))
        .await
    }

    /// Polls `policy(name)` until `check` holds; panics with the last document and the log.
    async fn wait_policy(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ImagePolicyInfo) -> bool,
    ) -> ImagePolicyInfo {
        let what = format!("policy {name}: {what}");
        self.wait_document(&what, WAIT, || self.policy(name), check)
            .await
    }

    /// SIGTERM, then the exit status (graceful shutdown).
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = self.process.terminate(Duration::from_secs(15));
        status.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", self.log_text()))
    }
}

fn tag_of(p: &ImagePolicyInfo) -> Option<&str> {
    p.latest_ref.as_ref().map(|r| r.tag.as_str())
}

/// The seed's objects (`/work/shared/seeds/000_*`): the Secret `registry-pull`, the
/// v1beta2 ImageRepository `checkout` and the semver ImagePolicy `checkout`, plus the
/// timestamp filterTags policy (`checkout-builds`), each in its own file.
fn write_seed(dir: &Path, registry: &Registry, range: &str) {
    std::fs::write(
        dir.join("secret.yaml"),
        testbed::seed::registry_pull_secret(&registry.docker_config_json()),
    )
    .unwrap();
    write_repository(dir, registry, None);
    std::fs::write(
        dir.join("policies.yaml"),
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: checkout
  namespace: flux-system
spec:
  imageRepositoryRef: {{ name: checkout }}
  policy:
    semver:
      range: '{range}'
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: checkout-builds
  namespace: flux-system
spec:
  imageRepositoryRef: {{ name: checkout }}
  filterTags:
    pattern: '^(?P<timestamp>[0-9]{{4}}\\.[0-9]{{2}}\\.[0-9]{{2}})-[a-f0-9]+$'
    extract: '$timestamp'
  policy:
    alphabetical:
      order: asc
"
        ),
    )
    .unwrap();
}

/// The seed's ImageRepository, optionally with a reconcile request annotation.
fn write_repository(dir: &Path, registry: &Registry, requested_at: Option<&str>) {
    let annotations = requested_at
        .map(|t| format!("  annotations:\n    reconcile.fluxcd.io/requestedAt: \"{t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("repository.yaml"),
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: checkout
  namespace: flux-system
{annotations}spec:
  image: {}
  interval: 5m
  secretRef:
    name: registry-pull
",
            registry.image("team/checkout")
        ),
    )
    .unwrap();
}

/// A temporary directory holding the seed (semver `range`) in `manifests/`, and the path
/// of the store beside it, `data/`.
fn seeded_dir(registry: &Registry, range: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_seed(&manifests, registry, range);
    (tmp, manifests, storage)
}

async fn htpasswd_registry() -> Registry {
    Registry::start(RegistryOptions::htpasswd()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_manifests_select_through_the_api_and_edits_are_noticed() {
    let registry = htpasswd_registry().await;
    registry
        .push_tags(
            "team/checkout",
            &[
                "1.2.3",
                "2026.06.01-abc1234",
                "2026.06.03-def5678",
                "2026.05.30-0123abc",
            ],
        )
        .await
        .unwrap();
    let (tmp, manifests, storage) = seeded_dir(&registry, ">=1.0.0 <2.0.0");
    let serve = Serve::start(&manifests, &storage, tmp.path()).await;

    let p = serve
        .wait_policy("checkout", "1.2.3", |p| tag_of(p) == Some("1.2.3"))
        .await;
    assert!(p.readiness.ready);
    assert_eq!(p.readiness.reason, "Succeeded");
    let image = registry.image("team/checkout");
    assert_eq!(
        p.latest_ref.as_ref().unwrap().name,
        image,
        "spec.image verbatim"
    );
    assert_eq!(
        p.readiness.message,
        format!("Latest image tag for {image} resolved to 1.2.3")
    );
    assert_eq!(p.readiness.observed_generation, Some(1));
    assert_eq!(p.image_repository_ref.name, "checkout");
    let builds = serve
        .wait_policy("checkout-builds", "newest build", |p| tag_of(p).is_some())
        .await;
    assert_eq!(
        tag_of(&builds),
        Some("2026.06.03-def5678"),
        "the original tag, not the extract"
    );

    let repo = serve.repository("checkout").await.unwrap();
    assert!(repo.readiness.ready, "{repo:?}");
    assert_eq!(repo.tag_count, 4);
    assert_eq!(repo.canonical_image_name.as_deref(), Some(image.as_str()));
    let revision = repo.revision.clone().unwrap();
    assert_eq!(
        repo.readiness.message,
        format!("successful scan: found 4 tags with checksum {revision}")
    );

    // New tags are not seen before the next scan (interval 5m) ...
    registry
        .push_tags("team/checkout", &["1.3.0", "2.0.0", "1.2.4-rc.1"])
        .await
        .unwrap();
    // ... and a reconcile request written into the manifest triggers one.
    write_repository(&manifests, &registry, Some("2026-01-01T00:00:00Z"));
    let p = serve
        .wait_policy("checkout", "1.3.0", |p| tag_of(p) == Some("1.3.0"))
        .await;
    assert_eq!(
        p.readiness.message,
        format!("Latest image tag for {image} resolved to 1.3.0 (previously {image}:1.2.3)")
    );
    assert_eq!(p.observed_previous_ref.as_ref().unwrap().tag, "1.2.3");
    let repo = serve.repository("checkout").await.unwrap();
    assert_eq!(repo.tag_count, 7);
    assert_ne!(repo.revision.as_deref(), Some(revision.as_str()));

    // Deleting a policy's manifest removes it from the API.
    std::fs::write(
        manifests.join("policies.yaml"),
        std::fs::read_to_string(manifests.join("policies.yaml"))
            .unwrap()
            .split("---")
            .next()
            .unwrap(),
    )
    .unwrap();
    wait_for(
        "checkout-builds to go away",
        WAIT,
        || serve.log_text(),
        || async {
            serve
                .policy("checkout-builds")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(serve.policy("checkout").await.is_some());

    // The metrics carry the new series.
    let metrics = serve.metrics().await;
    assert!(
        metrics.contains("gotk_reconcile_duration_seconds"),
        "{metrics}"
    );

    // No credential in the logs.
    let log = serve.log_text();
    assert!(
        !log.contains(registry.password().unwrap()),
        "password logged"
    );
    let status = serve.terminate();
    assert!(status.success(), "graceful shutdown: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_range_stalls_naming_the_field_until_fixed() {
    let registry = htpasswd_registry().await;
    registry
        .push_tags("team/checkout", &["1.2.3", "1.3.0"])
        .await
        .unwrap();
    let (tmp, manifests, storage) = seeded_dir(&registry, ">=1.0.0 <<2.0.0");
    let serve = Serve::start(&manifests, &storage, tmp.path()).await;

    let p = serve
        .wait_policy("checkout", "InvalidPolicy", |p| {
            p.readiness.reason == "InvalidPolicy"
        })
        .await;
    assert!(!p.readiness.ready);
    assert!(
        p.readiness.message.starts_with("spec.policy.semver.range"),
        "{}",
        p.readiness.message
    );
    assert!(
        p.readiness.message.contains(">=1.0.0 <<2.0.0"),
        "{}",
        p.readiness.message
    );
    assert_eq!(p.latest_ref, None);
    // Stalled objects record the generation they gave up on.
    assert_eq!(p.readiness.observed_generation, Some(1));

    // Fixing the file is noticed: a new generation, and Ready.
    write_seed(&manifests, &registry, ">=1.0.0 <2.0.0");
    let p = serve
        .wait_policy("checkout", "ready", |p| p.readiness.ready)
        .await;
    assert_eq!(tag_of(&p), Some("1.3.0"));
    assert_eq!(p.readiness.observed_generation, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_on_the_same_store_is_ready_before_any_scan() {
    let registry = htpasswd_registry().await;
    registry
        .push_tags("team/checkout", &["1.2.3", "1.3.0", "2.0.0", "1.2.4-rc.1"])
        .await
        .unwrap();
    let (tmp, manifests, storage) = seeded_dir(&registry, ">=1.0.0 <2.0.0");
    let serve = Serve::start(&manifests, &storage, tmp.path()).await;
    serve
        .wait_policy("checkout", "1.3.0", |p| tag_of(p) == Some("1.3.0"))
        .await;
    assert!(serve.terminate().success());

    // The registry is gone: any scan now fails, so a Ready policy can only come from the
    // stored tags.
    drop(registry);
    let started = Instant::now();
    let serve = Serve::start(&manifests, &storage, tmp.path()).await;
    let p = serve
        .wait_policy("checkout", "ready from the store", |p| p.readiness.ready)
        .await;
    assert_eq!(tag_of(&p), Some("1.3.0"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let repo = serve.repository("checkout").await.unwrap();
    assert!(
        !repo.readiness.ready || repo.revision.is_none(),
        "no scan can succeed: {repo:?}"
    );
    // /readyz answers once the first sync (every policy evaluated) is done.
    let readyz = serve
        .http
        .get(format!("{}/readyz", serve.base))
        .send()
        .await
        .unwrap();
    assert!(readyz.status().is_success());
}

/// `--min-retry-delay` and `--max-retry-delay` set the failure backoff: a repository whose
/// pull secret is missing fails on every reconcile and is retried every 50-150 ms, where
/// the defaults (750 ms, doubling) would retry it about 3 times in the same 3 seconds.
#[tokio::test(flavor = "multi_thread")]
async fn retry_delay_flags_set_the_failure_backoff() {
    let registry = htpasswd_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    // No Secret manifest: `registry-pull` is missing, a retryable failure.
    write_repository(&manifests, &registry, None);
    let serve = Serve::start_with(
        &manifests,
        &dir.path().join("storage"),
        dir.path(),
        &["--min-retry-delay=50ms", "--max-retry-delay", "150ms"],
    )
    .await;

    wait_for_every(
        "a reconcile",
        WAIT,
        Duration::from_millis(50),
        || serve.log_text(),
        || async { (serve.repository_reconciles().await > 0).then_some(()) },
    )
    .await;
    let repo = serve.repository("checkout").await.unwrap();
    assert!(!repo.readiness.ready);
    assert!(repo.readiness.message.contains("registry-pull"), "{repo:?}");

    let before = serve.repository_reconciles().await;
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let retries = serve.repository_reconciles().await - before;
    // 150 ms apart at most: about 20 in 3 s; the defaults give 2 or 3.
    assert!(
        retries >= 10,
        "only {retries} retries in {window:?}:\n{}",
        serve.log_text()
    );
    assert!(serve.terminate().success());
}
