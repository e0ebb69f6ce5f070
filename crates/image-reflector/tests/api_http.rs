//! The HTTP API's endpoints over a running router: shapes, errors, pagination, filters,
//! readiness, metrics and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_common;

use std::sync::Arc;

use api_common::{client, policy, repository, start, store_with};
use api_types::http_api::{ApiError, ImagePolicyInfo, ImageRepositoryInfo, List, TagPage};
use image_reflector::metrics::Metrics;
use image_reflector::state::ApiState;
use image_reflector::store::MemoryTagStore;

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> (u16, T) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{url}: {status} body is not the expected JSON ({e}): {body}"));
    (status, value)
}

async fn error(url: &str) -> ApiError {
    let (status, err): (u16, ApiError) = get_json(url).await;
    assert_eq!(status, err.code, "{url}");
    err
}

#[tokio::test]
async fn repositories_list_and_get() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    state.upsert_repository(repository("team-b", "web"));
    state.upsert_repository(repository("team-a", "api"));
    let base = start(state.clone(), Metrics::new().unwrap()).await;

    let (status, list): (_, List<ImageRepositoryInfo>) =
        get_json(&format!("{base}/api/v1/imagerepositories")).await;
    assert_eq!(status, 200);
    let names: Vec<_> = list.items.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api", "web"], "sorted by namespace/name");
    assert!(list.resource_version.is_some());

    let (status, one): (_, ImageRepositoryInfo) = get_json(&format!(
        "{base}/api/v1/namespaces/team-a/imagerepositories/api"
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(one, repository("team-a", "api"));

    // The raw JSON is the flat camelCase shape the docs show.
    let raw: serde_json::Value = client()
        .get(format!(
            "{base}/api/v1/namespaces/team-a/imagerepositories/api"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["canonicalImageName"], "registry.example.com/api");
    assert_eq!(raw["tagCount"], 3);
    assert_eq!(raw["ready"], true);

    let err = error(&format!(
        "{base}/api/v1/namespaces/team-a/imagerepositories/nope"
    ))
    .await;
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert!(err.message.contains("team-a/nope"), "{}", err.message);

    state.remove_repository("team-a", "api");
    let (status, _): (_, ApiError) = get_json(&format!(
        "{base}/api/v1/namespaces/team-a/imagerepositories/api"
    ))
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn policies_list_get_and_filters() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    state.upsert_policy(policy(
        "apps",
        "web",
        "1.2.0",
        &[("team", "a"), ("env", "prod")],
    ));
    state.upsert_policy(policy(
        "apps",
        "api",
        "2.0.0",
        &[("team", "b"), ("env", "staging")],
    ));
    state.upsert_policy(policy("infra", "proxy", "0.9.1", &[("team", "a")]));
    let base = start(state, Metrics::new().unwrap()).await;
    let names = |list: List<ImagePolicyInfo>| {
        list.items
            .into_iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect::<Vec<_>>()
    };
    let list = |query: &'static str| {
        let url = format!("{base}/api/v1/imagepolicies{query}");
        async move {
            let (status, list): (_, List<ImagePolicyInfo>) = get_json(&url).await;
            assert_eq!(status, 200, "{url}");
            list
        }
    };

    assert_eq!(
        names(list("").await),
        ["apps/api", "apps/web", "infra/proxy"]
    );
    assert_eq!(names(list("?namespace=infra").await), ["infra/proxy"]);
    assert_eq!(
        names(list("?labelSelector=team%3Da").await),
        ["apps/web", "infra/proxy"]
    );
    assert_eq!(
        names(list("?namespace=apps&labelSelector=team%3Da").await),
        ["apps/web"]
    );
    assert_eq!(
        names(list("?labelSelector=env%20in%20(prod,staging),team!%3Db").await),
        ["apps/web"]
    );
    assert_eq!(names(list("?labelSelector=!env").await), ["infra/proxy"]);
    assert!(list("?namespace=none").await.items.is_empty());

    let (status, one): (_, ImagePolicyInfo) =
        get_json(&format!("{base}/api/v1/namespaces/apps/imagepolicies/web")).await;
    assert_eq!(status, 200);
    assert_eq!(one.latest_ref.unwrap().tag, "1.2.0");
    let raw: serde_json::Value = client()
        .get(format!("{base}/api/v1/namespaces/apps/imagepolicies/web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in [
        "namespace",
        "name",
        "imageRepositoryRef",
        "latestRef",
        "ready",
        "reason",
        "message",
        "observedGeneration",
    ] {
        assert!(raw.get(field).is_some(), "missing {field}: {raw}");
    }

    let err = error(&format!("{base}/api/v1/namespaces/apps/imagepolicies/nope")).await;
    assert_eq!(err.code, 404);
    let err = error(&format!(
        "{base}/api/v1/imagepolicies?labelSelector=a%20in%20(b"
    ))
    .await;
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
    assert!(err.message.contains("label selector"), "{}", err.message);
    let err = error(&format!("{base}/api/v1/imagepolicies?watch=maybe")).await;
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn tags_paginate_with_continue_tokens() {
    let tags: Vec<String> = (0..25).map(|i| format!("1.0.{i:02}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let store = store_with("apps", "web", &tag_refs);
    let state = ApiState::new(store.clone());
    let base = start(state, Metrics::new().unwrap()).await;
    let url = format!("{base}/api/v1/namespaces/apps/imagerepositories/web/tags");

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let page_url = match &next {
            Some(token) => format!("{url}?limit=10&continue={token}"),
            None => format!("{url}?limit=10"),
        };
        let (status, page): (_, TagPage) = get_json(&page_url).await;
        assert_eq!(status, 200);
        assert_eq!(
            (page.namespace.as_str(), page.name.as_str()),
            ("apps", "web")
        );
        assert_eq!(page.total, 25);
        assert!(page.tags.len() <= 10);
        seen.extend(page.tags);
        pages += 1;
        match page.continue_token {
            Some(token) => next = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = tags.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "every tag once, descending");

    // Default limit (100) covers everything; 1 to 1000 as documented, beyond is a 400.
    let (_, page): (_, TagPage) = get_json(&url).await;
    assert_eq!(page.tags.len(), 25);
    assert!(page.continue_token.is_none());
    let (status, _): (_, TagPage) = get_json(&format!("{url}?limit=1000")).await;
    assert_eq!(status, 200);
    let err = error(&format!("{url}?limit=1001")).await;
    assert_eq!(err.code, 400);
    assert!(err.message.contains("from 1 to 1000"), "{}", err.message);

    let err = error(&format!("{url}?limit=0")).await;
    assert_eq!(err.code, 400);
    let err = error(&format!("{url}?continue=garbage")).await;
    assert_eq!(err.code, 400);

    // A token from an older revision of the tag list has expired.
    let (_, first): (_, TagPage) = get_json(&format!("{url}?limit=10")).await;
    let token = first.continue_token.unwrap();
    let rescanned = store_with("apps", "web", &["2.0.0", "2.0.1"]);
    use image_reflector::store::{RepoKey, TagStore};
    let tags_now = rescanned
        .get_tags(&RepoKey::new("apps", "web"))
        .unwrap()
        .unwrap();
    let scan = image_reflector::registry::ScanResult::new(
        "registry.example.com/web",
        tags_now,
        &Default::default(),
        std::time::SystemTime::now(),
    );
    store.put(&RepoKey::new("apps", "web"), &scan).unwrap();
    let err = error(&format!("{url}?limit=10&continue={token}")).await;
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));

    let err = error(&format!(
        "{base}/api/v1/namespaces/apps/imagerepositories/none/tags"
    ))
    .await;
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn health_readiness_and_errors() {
    let state = ApiState::new(Arc::new(MemoryTagStore::new()));
    let base = start(state.clone(), Metrics::new().unwrap()).await;
    let c = client();

    let health = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let err = error(&format!("{base}/readyz")).await;
    assert_eq!((err.code, err.reason.as_str()), (503, "NotReady"));
    state.set_ready(true);
    let ready = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    state.set_ready(false);
    assert_eq!(error(&format!("{base}/readyz")).await.code, 503);

    let err = error(&format!("{base}/api/v1/nothing")).await;
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));

    let response = c
        .post(format!("{base}/api/v1/imagepolicies"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let err: ApiError = response.json().await.unwrap();
    assert_eq!(err.reason, "MethodNotAllowed");

    // Bodies over 1 MiB are refused before any handler runs.
    let response = c
        .get(format!("{base}/api/v1/imagepolicies"))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let err: ApiError = response.json().await.unwrap();
    assert_eq!(err.code, 413);
}

#[tokio::test]
async fn metrics_expose_gotk_and_image_reflector_series() {
    let metrics = Metrics::new().unwrap();
    let base = start(
        ApiState::new(Arc::new(MemoryTagStore::new())),
        metrics.clone(),
    )
    .await;
    metrics
        .gotk
        .observe_reconcile("ImageRepository", "apps", "web", 0.25);
    metrics
        .gotk
        .set_condition("ImageRepository", "apps", "web", "Ready", "True");
    metrics
        .gotk
        .set_suspended("ImageRepository", "apps", "web", false);
    metrics.observe_scan("apps", "web", 1.5, 42, true);
    metrics.observe_scan("apps", "web", 0.5, 0, false);
    let observe = metrics.request_observer();
    observe("registry.example.com", 200);
    observe("registry.example.com", 429);
    metrics.set_policy_latest("apps", "web", "registry.example.com/web", "1.2.0", 1.7e9);

    let response = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    for series in [
        r#"gotk_reconcile_duration_seconds_bucket{kind="ImageRepository",name="web",namespace="apps",le="0.01"} 0"#,
        r#"gotk_reconcile_duration_seconds_count{kind="ImageRepository",name="web",namespace="apps"} 1"#,
        r#"gotk_reconcile_condition{kind="ImageRepository",name="web",namespace="apps",status="True",type="Ready"} 1"#,
        r#"gotk_reconcile_condition{kind="ImageRepository",name="web",namespace="apps",status="False",type="Ready"} 0"#,
        r#"gotk_suspend_status{kind="ImageRepository",name="web",namespace="apps"} 0"#,
        r#"image_reflector_scans_total{name="web",namespace="apps",result="success"} 1"#,
        r#"image_reflector_scans_total{name="web",namespace="apps",result="failure"} 1"#,
        r#"image_reflector_scan_duration_seconds_count{name="web",namespace="apps"} 2"#,
        r#"image_reflector_repository_tags{name="web",namespace="apps"} 42"#,
        r#"image_reflector_registry_requests_total{code="429",host="registry.example.com"} 1"#,
        r#"image_reflector_registry_rate_limited_total{host="registry.example.com"} 1"#,
        r#"image_reflector_policy_latest_info{image="registry.example.com/web",name="web",namespace="apps",tag="1.2.0"} 1"#,
        r#"image_reflector_policy_latest_change_timestamp_seconds{name="web",namespace="apps"} 1700000000"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Ten buckets as in Flux (plus +Inf).
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("gotk_reconcile_duration_seconds_bucket{"))
        .count();
    assert_eq!(buckets, 11);

    metrics.delete_object("ImageRepository", "apps", "web");
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(r#"kind="ImageRepository""#), "{text}");
    assert!(!text.contains("image_reflector_scans_total{"), "{text}");
    // The policy of the same name keeps its series until it is deleted too.
    assert!(
        text.contains("image_reflector_policy_latest_info{"),
        "{text}"
    );
    metrics.delete_object("ImagePolicy", "apps", "web");
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(r#"namespace="apps""#), "{text}");
}

#[tokio::test]
async fn openapi_lists_every_path_with_generated_schemas() {
    let base = start(
        ApiState::new(Arc::new(MemoryTagStore::new())),
        Metrics::new().unwrap(),
    )
    .await;
    let (status, doc): (_, serde_json::Value) =
        get_json(&format!("{base}/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in image_reflector::api::openapi::PATHS {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert_eq!(paths.len(), image_reflector::api::openapi::PATHS.len());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ImagePolicyInfo",
        "ImageRepositoryInfo",
        "TagPage",
        "PolicyEvent",
        "ApiError",
    ] {
        assert!(
            schemas.contains_key(name),
            "missing schema {name}: {:?}",
            schemas.keys()
        );
    }
    // The generated schema knows the DTO's fields, e.g. the renamed `continue`.
    assert!(schemas["TagPage"]["properties"].get("continue").is_some());
    assert!(
        schemas["ImagePolicyInfo"]["properties"]
            .get("latestRef")
            .is_some()
    );
    // The optional Reconciling summary of a repository, with its two fields, not required.
    let repo = &schemas["ImageRepositoryInfo"];
    assert!(repo["properties"].get("reconciling").is_some(), "{repo}");
    assert!(
        !repo["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "reconciling")),
        "{repo}"
    );
    let reconciling = &schemas["Reconciling"]["properties"];
    assert!(reconciling.get("reason").is_some() && reconciling.get("message").is_some());
    // Every $ref resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {target}");
    }
}
