//! A damaged tag store is a cache miss, not a crash loop: `image-reflector serve
//! --manifests DIR` as a real process against the REAL testbed registry, started on a
//! store file that was truncated, overwritten with garbage, emptied, had bytes flipped in
//! the middle, or was being written when the process got SIGKILL. Each time the service
//! must come up, rescan, report the policy Ready, and keep a damaged file aside.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod serve_common;

use api_types::http_api::ImagePolicyInfo;
use serve_common::Serve;
use testbed::registry::{Registry, RegistryOptions};
use testbed::wait::wait_for;

const WAIT: Duration = Duration::from_secs(60);
const STORE_FILE: &str = "tags.redb";
const QUARANTINE_METRIC: &str = "image_reflector_store_quarantined_total";

/// What these tests read from a running reflector.
impl Serve {
    async fn policy(&self, name: &str) -> Option<ImagePolicyInfo> {
        let url = format!(
            "{}/api/v1/namespaces/flux-system/imagepolicies/{name}",
            self.base
        );
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Waits for `policy` to be Ready with `tag`; panics with the log otherwise.
    async fn wait_ready_policy(&mut self, name: &str, tag: &str) {
        wait_for(
            &format!("policy {name} Ready with {tag}"),
            WAIT,
            || self.log_text(),
            || async {
                self.policy(name).await.filter(|p| {
                    p.readiness.ready && p.latest_ref.as_ref().is_some_and(|r| r.tag == tag)
                })
            },
        )
        .await;
        self.process.check_running().unwrap();
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    fn kill9(mut self) {
        self.process.stop();
    }
}

/// One ImageRepository per name in `repositories`, all of `image`, scanned every
/// `interval`, and the semver policy `app` on the first one.
fn write_manifests(dir: &Path, image: &str, repositories: &[String], interval: &str) {
    let mut text = String::new();
    for name in repositories {
        text.push_str(&format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: {name}, namespace: flux-system}}
spec: {{image: {image}, interval: {interval}}}
---
"
        ));
    }
    text.push_str(&format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {{name: app, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: {}}}
  policy: {{semver: {{range: '>=1.0.0'}}}}
",
        repositories[0]
    ));
    std::fs::write(dir.join("objects.yaml"), text).unwrap();
}

/// The files beside the store that hold a quarantined copy.
fn quarantined(storage: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(storage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{STORE_FILE}.corrupt-")))
        })
        .collect();
    found.sort();
    found
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncated,
    Garbage,
    ZeroLength,
    FlippedMiddle,
}

impl Damage {
    fn apply(self, good: &[u8]) -> Vec<u8> {
        match self {
            Self::Truncated => good[..good.len() / 3].to_vec(),
            // Deterministic "random" bytes: a small xorshift.
            Self::Garbage => pseudo_random(good.len().max(4096), 0x9e37_79b9),
            Self::ZeroLength => Vec::new(),
            Self::FlippedMiddle => {
                let mut bytes = good.to_vec();
                let middle = bytes.len() / 2;
                let noise = pseudo_random(4096, 0x1234_5678);
                let end = (middle + noise.len()).min(bytes.len());
                for (b, n) in bytes[middle..end].iter_mut().zip(&noise) {
                    *b ^= n | 1;
                }
                bytes
            }
        }
    }
}

fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_store_is_set_aside_and_rebuilt_by_rescanning() {
    let registry = Registry::start(RegistryOptions::anonymous().with_disk_storage())
        .await
        .unwrap();
    // Enough tags for several chunks and pages in the store file.
    let mut tags: Vec<String> = (0..3000).map(|i| format!("0.{i}.0")).collect();
    tags.push("1.4.2".into());
    registry.seed_tags("team/app", &tags).await.unwrap();
    let image = registry.image("team/app");
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let repositories: Vec<String> = (0..4).map(|i| format!("app-{i}")).collect();
    write_manifests(&manifests, &image, &repositories, "5m");

    // A healthy store with every repository's tags in it.
    let healthy_dir = tmp.path().join("healthy");
    let mut serve = Serve::start_with(&manifests, &healthy_dir, tmp.path(), &[]).await;
    serve.wait_ready_policy("app", "1.4.2").await;
    let status = serve.process.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let good = std::fs::read(healthy_dir.join(STORE_FILE)).unwrap();
    assert!(good.len() > 64 * 1024, "store only {} bytes", good.len());

    for damage in [
        Damage::Truncated,
        Damage::Garbage,
        Damage::ZeroLength,
        Damage::FlippedMiddle,
    ] {
        let storage = tmp.path().join(format!("{damage:?}"));
        std::fs::create_dir_all(&storage).unwrap();
        let damaged = damage.apply(&good);
        std::fs::write(storage.join(STORE_FILE), &damaged).unwrap();

        let mut serve = Serve::start_with(&manifests, &storage, tmp.path(), &[]).await;
        serve.wait_ready_policy("app", "1.4.2").await;
        let aside = quarantined(&storage);
        let count = serve.metric(QUARANTINE_METRIC).await;
        eprintln!("{damage:?}: set aside {aside:?}, {QUARANTINE_METRIC} {count:?}");
        match damage {
            // Empty is a new store to redb: nothing to keep, nothing lost.
            Damage::ZeroLength => assert!(aside.is_empty(), "{damage:?}: {aside:?}"),
            // Unreadable at open: the whole file is kept aside, byte for byte.
            Damage::Truncated | Damage::Garbage => {
                assert_eq!(
                    aside.len(),
                    1,
                    "{damage:?}: {aside:?}\n{}",
                    serve.log_text()
                );
                assert_eq!(std::fs::read(&aside[0]).unwrap(), damaged, "{damage:?}");
                assert_eq!(count, Some(1.0), "{damage:?}");
                assert!(
                    serve.log_text().contains("quarantined"),
                    "{damage:?}: no log line\n{}",
                    serve.log_text()
                );
            }
            // Damage in the middle may be met at open or only on a read: either way the
            // policy above came back Ready, and a file set aside is the damaged one.
            Damage::FlippedMiddle => {
                for path in &aside {
                    assert_eq!(std::fs::read(path).unwrap(), damaged, "{damage:?}");
                }
                assert_eq!(count.unwrap_or(0.0), aside.len() as f64, "{damage:?}");
            }
        }
        // Every repository's tags come back in full (rescanned, not read from the damage).
        for name in &repositories {
            let url = format!(
                "{}/api/v1/namespaces/flux-system/imagerepositories/{name}/tags?limit=1",
                serve.base
            );
            wait_for(
                &format!("{damage:?}: all tags of {name}"),
                WAIT,
                || serve.log_text(),
                || async {
                    let response = serve.http.get(&url).send().await.ok()?;
                    let page: serde_json::Value = response.json().await.ok()?;
                    (page["total"] == tags.len()).then_some(())
                },
            )
            .await;
        }
        let status = serve.process.terminate(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "{damage:?}: {status:?}"
        );
    }
}

/// SIGKILL while many large scans are being written, then a restart on the same files:
/// the store opens (redb recovers the last committed state) and the policy is Ready.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_store_writes_recovers_without_a_human() {
    let registry = Registry::start(RegistryOptions::anonymous().with_disk_storage())
        .await
        .unwrap();
    let mut tags: Vec<String> = (0..20_000).map(|i| format!("0.{i}.0")).collect();
    tags.push("2.0.0".into());
    registry.seed_tags("team/big", &tags).await.unwrap();
    let image = registry.image("team/big");
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let repositories: Vec<String> = (0..16).map(|i| format!("big-{i}")).collect();
    // Short intervals keep the store busy writing 20,000-tag entries.
    write_manifests(&manifests, &image, &repositories, "1s");
    let storage = tmp.path().join("data");

    // Kill at different points of the write stream: the first writes, then later ones.
    for round in 0..4u64 {
        let serve = Serve::start_with(&manifests, &storage, tmp.path(), &[]).await;
        let store = storage.join(STORE_FILE);
        wait_for(
            "the store to be written",
            WAIT,
            || serve.log_text(),
            || async {
                let len = std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
                (len > 256 * 1024).then_some(len)
            },
        )
        .await;
        // Not a timing assertion: only varies where in the write stream the kill lands.
        tokio::time::sleep(Duration::from_millis(150 * round)).await;
        serve.kill9();
    }

    let mut serve = Serve::start_with(&manifests, &storage, tmp.path(), &[]).await;
    serve.wait_ready_policy("app", "2.0.0").await;
    assert!(serve.process.check_running().is_ok());
    // redb's commits are atomic: a kill leaves the last committed state, nothing to set
    // aside. (Were it otherwise, the quarantine would still recover; this records which.)
    let quarantined = serve.metric(QUARANTINE_METRIC).await;
    eprintln!("after 4 kills: {QUARANTINE_METRIC} {quarantined:?}");
    assert_eq!(quarantined, Some(0.0), "{}", serve.log_text());
    let status = serve.process.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
