//! The policy change feed (Server-Sent Events on `GET /api/v1/imagepolicies?watch=true`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_common::{client, policy, start};
use api_types::http_api::{ApiError, ImagePolicyInfo, List, PolicyEvent, PolicyEventType};
use image_reflector::metrics::Metrics;
use image_reflector::state::ApiState;
use image_reflector::store::MemoryTagStore;

/// Reads `data:` events from an SSE response.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(url: &str) -> Self {
        let response = client_without_timeout().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's (event name, data), within `within`.
    async fn next_raw(&mut self, within: Duration) -> (Option<String>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_string());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, data.join("\n"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn next(&mut self, within: Duration) -> PolicyEvent {
        let (name, data) = self.next_raw(within).await;
        assert_eq!(name, None, "unexpected event {data}");
        serde_json::from_str(&data).unwrap()
    }

    /// Asserts that nothing but keep-alives arrive for `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        let got = tokio::time::timeout(quiet, self.next_raw(quiet * 2)).await;
        assert!(got.is_err(), "unexpected event: {got:?}");
    }
}

fn client_without_timeout() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

fn tag(event: &PolicyEvent) -> &str {
    &event.policy.latest_ref.as_ref().unwrap().tag
}

#[tokio::test]
async fn list_then_watch_delivers_a_new_result_within_a_second() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    state.upsert_policy(policy("apps", "web", "1.0.0", &[]));
    let base = start(state.clone(), Metrics::new().unwrap()).await;

    let list: List<ImagePolicyInfo> = client()
        .get(format!("{base}/api/v1/imagepolicies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv = list.resource_version.unwrap();
    let mut events = Events::open(&format!(
        "{base}/api/v1/imagepolicies?watch=true&resourceVersion={rv}"
    ))
    .await;

    let writer = state.clone();
    let started = Instant::now();
    writer.upsert_policy(policy("apps", "web", "1.1.0", &[]));
    let event = events.next(Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(event.event_type, PolicyEventType::Upserted);
    assert_eq!(tag(&event), "1.1.0");
    assert!(event.resource_version.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());

    // An unchanged document is not an event; a deletion is.
    writer.upsert_policy(policy("apps", "web", "1.1.0", &[]));
    writer.remove_policy("apps", "web");
    let event = events.next(Duration::from_secs(1)).await;
    assert_eq!(event.event_type, PolicyEventType::Deleted);
    assert_eq!(event.policy.name, "web");
    events.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn watch_resumes_after_a_resource_version_and_filters() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    let base = start(state.clone(), Metrics::new().unwrap()).await;
    state.upsert_policy(policy("apps", "a", "1", &[("team", "x")]));
    let after_first = state.resource_version();
    state.upsert_policy(policy("apps", "b", "1", &[("team", "y")]));
    state.upsert_policy(policy("other", "c", "1", &[("team", "x")]));
    state.upsert_policy(policy("apps", "a", "2", &[("team", "x")]));

    // Resuming gets exactly the events after the version, in order.
    let mut events = Events::open(&format!(
        "{base}/api/v1/imagepolicies?watch=true&resourceVersion={after_first}"
    ))
    .await;
    let names: Vec<String> = [
        events.next(Duration::from_secs(1)).await,
        events.next(Duration::from_secs(1)).await,
        events.next(Duration::from_secs(1)).await,
    ]
    .iter()
    .map(|e| format!("{}:{}", e.policy.name, tag(e)))
    .collect();
    assert_eq!(names, ["b:1", "c:1", "a:2"]);
    events.assert_quiet(Duration::from_millis(200)).await;

    // Filters apply to the feed as to the list.
    let mut filtered = Events::open(&format!(
        "{base}/api/v1/imagepolicies?watch=true&resourceVersion={after_first}&namespace=apps&labelSelector=team%3Dx"
    ))
    .await;
    let only = filtered.next(Duration::from_secs(1)).await;
    assert_eq!((only.policy.name.as_str(), tag(&only)), ("a", "2"));
    state.upsert_policy(policy("apps", "b", "2", &[("team", "y")]));
    state.upsert_policy(policy("apps", "a", "3", &[("team", "x")]));
    let next = filtered.next(Duration::from_secs(1)).await;
    assert_eq!((next.policy.name.as_str(), tag(&next)), ("a", "3"));

    // Without a version the current state comes first, then changes; the `id:` of each
    // event is its resource version (so an EventSource resumes with Last-Event-ID).
    let mut fresh = Events::open(&format!("{base}/api/v1/imagepolicies?watch=true")).await;
    let mut initial = Vec::new();
    for _ in 0..3 {
        initial.push(fresh.next(Duration::from_secs(1)).await.policy.name);
    }
    initial.sort();
    assert_eq!(initial, ["a", "b", "c"]);
    let last_id = state.resource_version();
    state.upsert_policy(policy("apps", "d", "1", &[]));
    assert_eq!(fresh.next(Duration::from_secs(1)).await.policy.name, "d");

    let resumed = client_without_timeout()
        .get(format!("{base}/api/v1/imagepolicies?watch=true"))
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .await
        .unwrap();
    let mut resumed = Events {
        response: resumed,
        buffer: String::new(),
    };
    assert_eq!(resumed.next(Duration::from_secs(1)).await.policy.name, "d");
}

#[tokio::test]
async fn too_old_or_foreign_resource_version_is_gone() {
    let state = ApiState::with_history(Arc::new(MemoryTagStore::new()), 4);
    let base = start(state.clone(), Metrics::new().unwrap()).await;
    let start_version = state.resource_version();
    for i in 0..10 {
        state.upsert_policy(policy("apps", "web", &format!("1.0.{i}"), &[]));
    }
    for rv in [
        start_version.to_string(),
        "1".to_string(),
        (state.resource_version() + 5).to_string(),
    ] {
        let response = client()
            .get(format!(
                "{base}/api/v1/imagepolicies?watch=true&resourceVersion={rv}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 410, "rv {rv}");
        let err: ApiError = response.json().await.unwrap();
        assert_eq!(err.reason, "Expired");
        assert!(err.message.contains("list again"), "{}", err.message);
    }
    // The oldest version still in the history works.
    let oldest = state.resource_version() - 4;
    let mut events = Events::open(&format!(
        "{base}/api/v1/imagepolicies?watch=true&resourceVersion={oldest}"
    ))
    .await;
    assert_eq!(tag(&events.next(Duration::from_secs(1)).await), "1.0.6");

    let response = client()
        .get(format!(
            "{base}/api/v1/imagepolicies?watch=true&resourceVersion=abc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_to_relist() {
    let state = ApiState::with_history(Arc::new(MemoryTagStore::new()), 4);
    let base = start(state.clone(), Metrics::new().unwrap()).await;
    let mut events = Events::open(&format!("{base}/api/v1/imagepolicies?watch=true")).await;
    // More changes than the history holds before the watcher reads any: the broadcast
    // channel overflows for it.
    for i in 0..50 {
        state.upsert_policy(policy("apps", "web", &format!("1.0.{i}"), &[]));
    }
    let mut saw_error = false;
    for _ in 0..10 {
        let (name, data) = events.next_raw(Duration::from_secs(1)).await;
        if name.as_deref() == Some("error") {
            let err: ApiError = serde_json::from_str(&data).unwrap();
            assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
            saw_error = true;
            break;
        }
    }
    assert!(saw_error, "no error event after overflowing the feed");
}

#[tokio::test]
async fn closing_feeds_ends_open_streams() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    let base = start(state.clone(), Metrics::new().unwrap()).await;
    let mut events = Events::open(&format!("{base}/api/v1/imagepolicies?watch=true")).await;
    state.close_feeds();
    let end = tokio::time::timeout(Duration::from_secs(2), events.response.chunk())
        .await
        .expect("stream still open");
    assert!(matches!(end, Ok(None)), "{end:?}");
}
