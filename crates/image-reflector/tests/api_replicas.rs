//! Two replicas (the leader scans and has the tags; a follower forwards `/tags` to it),
//! and the API answering while a tag-store read is slow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api_common::{client, policy, repository, start, store_with};
use api_types::http_api::{ApiError, ImagePolicyInfo, List, TagPage};
use image_reflector::api::FORWARDED_HEADER;
use image_reflector::metrics::Metrics;
use image_reflector::registry::ScanResult;
use image_reflector::state::{ApiState, LeaderInfo};
use image_reflector::store::{
    MemoryTagStore, RepoKey, StoreError, TagMeta, TagPage as StorePage, TagStore,
};

#[tokio::test]
async fn follower_forwards_tags_to_the_leader_and_answers_the_same() {
    let tags = ["1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest"];
    // The leader scanned: its store has the tags.
    let leader_state = ApiState::new(store_with("apps", "web", &tags));
    // The follower's store is empty (it never scans).
    let follower_state = ApiState::new(Arc::new(MemoryTagStore::new()));
    // Both fill their documents from the watched objects' status.
    for state in [&leader_state, &follower_state] {
        state.upsert_repository(repository("apps", "web"));
        state.upsert_policy(policy("apps", "web", "1.2.0", &[]));
        state.set_ready(true);
    }
    let leader = start(leader_state.clone(), Metrics::new().unwrap()).await;
    let follower = start(follower_state.clone(), Metrics::new().unwrap()).await;

    // Leader unknown yet: a clear 503.
    follower_state.set_leader(LeaderInfo::follower(None));
    let response = client()
        .get(format!(
            "{follower}/api/v1/namespaces/apps/imagerepositories/web/tags"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let err: ApiError = response.json().await.unwrap();
    assert_eq!(err.reason, "LeaderUnknown");

    follower_state.set_leader(LeaderInfo::follower(Some(format!("{leader}/"))));
    let c = client();
    for path in [
        "/api/v1/namespaces/apps/imagerepositories/web/tags?limit=2",
        "/api/v1/namespaces/apps/imagerepositories/web/tags",
        "/api/v1/namespaces/apps/imagerepositories/none/tags",
        "/api/v1/namespaces/apps/imagerepositories/web/tags?continue=bad",
        "/api/v1/namespaces/apps/imagerepositories/web",
        "/api/v1/namespaces/apps/imagepolicies/web",
    ] {
        let a = c.get(format!("{leader}{path}")).send().await.unwrap();
        let b = c.get(format!("{follower}{path}")).send().await.unwrap();
        assert_eq!(a.status(), b.status(), "{path}");
        let (a, b): (serde_json::Value, serde_json::Value) =
            (a.json().await.unwrap(), b.json().await.unwrap());
        assert_eq!(a, b, "{path}");
    }

    // Paging through the follower with the leader's continue tokens.
    let mut seen = Vec::new();
    let mut url = format!("{follower}/api/v1/namespaces/apps/imagerepositories/web/tags?limit=2");
    loop {
        let page: TagPage = c.get(&url).send().await.unwrap().json().await.unwrap();
        seen.extend(page.tags);
        match page.continue_token {
            Some(token) => {
                url = format!(
                    "{follower}/api/v1/namespaces/apps/imagerepositories/web/tags?limit=2&continue={token}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), tags.len());

    // A forwarded request reaching a non-leader is not forwarded again (no loops).
    let response = c
        .get(format!(
            "{follower}/api/v1/namespaces/apps/imagerepositories/web/tags"
        ))
        .header(FORWARDED_HEADER, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    // The leader is gone: 502 with the reason, quickly.
    follower_state.set_leader(LeaderInfo::follower(Some("http://127.0.0.1:9".into())));
    let response = c
        .get(format!(
            "{follower}/api/v1/namespaces/apps/imagerepositories/web/tags"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let err: ApiError = response.json().await.unwrap();
    assert_eq!(err.reason, "LeaderUnreachable");

    // Policy results are served locally by both.
    let list: List<ImagePolicyInfo> = c
        .get(format!("{follower}/api/v1/imagepolicies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
}

/// A store whose page reads take `delay` (like a large redb read under I/O load).
struct SlowStore {
    inner: MemoryTagStore,
    delay: Duration,
    reads_started: AtomicUsize,
}

impl TagStore for SlowStore {
    fn put(&self, key: &RepoKey, scan: &ScanResult) -> Result<(), StoreError> {
        self.inner.put(key, scan)
    }
    fn get_tags(&self, key: &RepoKey) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.get_tags(key)
    }
    fn get_page(
        &self,
        key: &RepoKey,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Option<StorePage>, StoreError> {
        self.reads_started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inner.get_page(key, continue_token, limit)
    }
    fn meta(&self, key: &RepoKey) -> Result<Option<TagMeta>, StoreError> {
        self.inner.meta(key)
    }
    fn delete(&self, key: &RepoKey) -> Result<bool, StoreError> {
        self.inner.delete(key)
    }
    fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        self.inner.keys()
    }
}

// current_thread on purpose: a blocking store read on the async worker would stall
// every other request of this runtime.
#[tokio::test(flavor = "current_thread")]
async fn api_answers_while_a_tag_read_is_slow() {
    let memory = MemoryTagStore::new();
    let scan = ScanResult::new(
        "registry.example.com/web",
        vec!["1.0.0".into()],
        &Default::default(),
        std::time::SystemTime::now(),
    );
    memory.put(&RepoKey::new("apps", "web"), &scan).unwrap();
    let store = Arc::new(SlowStore {
        inner: memory,
        delay: Duration::from_secs(2),
        reads_started: AtomicUsize::new(0),
    });
    let state = ApiState::new(store.clone());
    state.upsert_policy(policy("apps", "web", "1.0.0", &[]));
    state.set_ready(true);
    let base = start(state.clone(), Metrics::new().unwrap()).await;

    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        let url = format!("{base}/api/v1/namespaces/apps/imagerepositories/web/tags");
        async move { c.get(url).send().await.unwrap().status() }
    });
    while store.reads_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The slow read is in progress: other requests and state writes still go through.
    let started = Instant::now();
    for path in [
        "/api/v1/imagepolicies",
        "/readyz",
        "/metrics",
        "/api/v1/imagerepositories",
    ] {
        let response = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    state.upsert_policy(policy("apps", "web", "1.1.0", &[]));
    let one: ImagePolicyInfo = c
        .get(format!("{base}/api/v1/namespaces/apps/imagepolicies/web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one.latest_ref.unwrap().tag, "1.1.0");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "requests waited for the slow read: {:?}",
        started.elapsed()
    );
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap(), 200);
}
