//! Shared helpers of the `api_*` integration tests: start the router on 127.0.0.1:0
//! and build documents.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use api_types::ImageRef;
use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo, Readiness};
use api_types::meta::NamespacedObjectReference;
use image_reflector::api;
use image_reflector::metrics::Metrics;
use image_reflector::registry::{ExclusionList, ScanResult};
use image_reflector::state::ApiState;
use image_reflector::store::{MemoryTagStore, RepoKey, TagStore};

/// Serves `state` on a fresh loopback port; returns the base URL.
pub async fn start(state: ApiState, metrics: Metrics) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(listener, state, metrics, std::future::pending()));
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A store holding `tags` for `ns/name`.
pub fn store_with(ns: &str, name: &str, tags: &[&str]) -> Arc<MemoryTagStore> {
    let store = Arc::new(MemoryTagStore::new());
    let scan = ScanResult::new(
        format!("registry.example.com/{name}"),
        tags.iter().map(|t| t.to_string()).collect(),
        &ExclusionList::default(),
        SystemTime::now(),
    );
    store.put(&RepoKey::new(ns, name), &scan).unwrap();
    store
}

pub fn repository(ns: &str, name: &str) -> ImageRepositoryInfo {
    ImageRepositoryInfo {
        namespace: ns.into(),
        name: name.into(),
        image: format!("registry.example.com/{name}"),
        canonical_image_name: Some(format!("registry.example.com/{name}")),
        tag_count: 3,
        revision: Some("sha256:abc".into()),
        readiness: Readiness {
            ready: true,
            reason: "Succeeded".into(),
            message: "successful scan: found 3 tags".into(),
            observed_generation: Some(1),
        },
        ..Default::default()
    }
}

pub fn policy(ns: &str, name: &str, tag: &str, labels: &[(&str, &str)]) -> ImagePolicyInfo {
    ImagePolicyInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        image_repository_ref: NamespacedObjectReference {
            name: name.into(),
            namespace: None,
        },
        latest_ref: Some(ImageRef {
            name: format!("registry.example.com/{name}"),
            tag: tag.into(),
            digest: None,
        }),
        observed_previous_ref: None,
        readiness: Readiness {
            ready: true,
            reason: "Succeeded".into(),
            message: format!("Latest image tag for {name} resolved to {tag}"),
            observed_generation: Some(1),
        },
    }
}
