//! Events against the testbed's real kube-apiserver: two events with the same type and
//! reason but different notes are both visible (kube-runtime's plain `Recorder` folds the
//! second into the first), and identical events are folded into one series.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use kube_support::events::{EventPublisher, NOTE_MAX};
use testbed::kube_apiserver::KubeApiServer;

const NAMESPACE: &str = "events-test";

fn reporter() -> Reporter {
    Reporter {
        controller: "events-test-controller".into(),
        instance: Some("replica-0".into()),
    }
}

async fn config_map(client: &Client, name: &str) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

/// (note, series count) of the events about `name`, sorted by note.
async fn events_of(client: &Client, name: &str) -> Vec<(String, i32)> {
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), NAMESPACE);
    let mut out: Vec<(String, i32)> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_notes_stay_apart_and_identical_ones_fold() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE},
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // The publisher: "a", "b", "b", "a", "a" → series a(1), b(2), a(2).
    let object = config_map(&client, "published").await.object_ref(&());
    let other = config_map(&client, "other").await.object_ref(&());
    let publisher = EventPublisher::new(client.clone(), reporter());
    for note in [
        "scan found 3 tags",
        "scan found 4 tags",
        "scan found 4 tags",
    ] {
        publisher
            .publish(&object, EventType::Normal, "Succeeded", note, "Reconcile")
            .await
            .unwrap();
    }
    // Same reason, another type and another object: separate series.
    publisher
        .publish(&object, EventType::Warning, "Succeeded", "odd", "Reconcile")
        .await
        .unwrap();
    publisher
        .publish(
            &other,
            EventType::Normal,
            "Succeeded",
            "scan found 4 tags",
            "Reconcile",
        )
        .await
        .unwrap();
    // A note beyond the API's limit is cut rather than rejected.
    let long = "é".repeat(NOTE_MAX);
    publisher
        .publish(&other, EventType::Normal, "Long", &long, "Reconcile")
        .await
        .unwrap();

    assert_eq!(
        events_of(&client, "published").await,
        vec![
            ("odd".to_string(), 1),
            ("scan found 3 tags".to_string(), 1),
            ("scan found 4 tags".to_string(), 2),
        ]
    );
    let other_events = events_of(&client, "other").await;
    assert_eq!(other_events.len(), 2, "{other_events:?}");
    assert!(other_events.contains(&("scan found 4 tags".to_string(), 1)));
    let cut = other_events
        .iter()
        .find(|(n, _)| n.starts_with('é'))
        .unwrap();
    assert_eq!(cut.0.len(), NOTE_MAX);

    // Why the publisher exists: kube-runtime's Recorder alone folds the second note into
    // the first event (if this starts failing, kube fixed it and the workaround can go).
    let plain = config_map(&client, "plain").await.object_ref(&());
    let recorder = Recorder::new(client.clone(), reporter());
    for note in ["first", "second"] {
        let event = Event {
            type_: EventType::Normal,
            reason: "Succeeded".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        recorder.publish(&event, &plain).await.unwrap();
    }
    assert_eq!(
        events_of(&client, "plain").await,
        vec![("first".to_string(), 2)]
    );
}
