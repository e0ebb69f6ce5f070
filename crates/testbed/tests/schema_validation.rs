//! The real API server rejects what Flux's CRDs reject and accepts what they accept, on both
//! sides of each rule and for every served version: metav1.Condition's markers and the
//! required `lastScanResult.tagCount`, and `spec` itself optional.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use testbed::kube_apiserver::KubeApiServer;

const VERSIONS: [&str; 3] = ["v1", "v1beta2", "v1beta1"];

fn api(client: &kube::Client, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("image.toolkit.fluxcd.io", version, kind);
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn object(version: &str, kind: &str, name: &str, spec: Option<Value>) -> DynamicObject {
    let mut value = json!({
        "apiVersion": format!("image.toolkit.fluxcd.io/{version}"),
        "kind": kind,
        "metadata": {"name": name},
    });
    if let Some(spec) = spec {
        value["spec"] = spec;
    }
    serde_json::from_value(value).unwrap()
}

fn condition() -> Value {
    json!({
        "type": "Ready",
        "status": "True",
        "reason": "Succeeded",
        "message": "fine",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    })
}

/// Patches `status` and says whether the server accepted it; a rejection must be the
/// server's validation (422 Invalid), not some other failure.
async fn status_accepted(api: &Api<DynamicObject>, name: &str, status: Value) -> bool {
    let patch = Patch::Merge(json!({ "status": status }));
    match api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(response)) if response.code == 422 => {
            eprintln!("{name}: rejected: {}", response.message);
            false
        }
        Err(other) => panic!("{name}: unexpected error {other}"),
    }
}

#[tokio::test]
async fn conditions_validate_as_metav1_condition_in_every_version() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    let with = |field: &str, value: Value| {
        let mut c = condition();
        c[field] = value;
        c
    };
    // (condition, what Flux's CRDs answer)
    let cases = [
        (condition(), true),
        (with("type", json!("example.com/Ready")), true),
        (with("type", json!("not a type")), false),
        (with("type", json!("A".repeat(316))), true),
        (with("type", json!("A".repeat(317))), false),
        (with("reason", json!("")), false),
        (with("reason", json!("Bad-Reason")), false),
        (with("reason", json!("Ok_Reason,With:Parts")), true),
        (with("reason", json!("R".repeat(1024))), true),
        (with("reason", json!("R".repeat(1025))), false),
        // Not `""`: Kubernetes 1.20 reads an empty string in a merge patch as null.
        (with("message", json!("m")), true),
        (with("message", json!("m".repeat(32768))), true),
        (with("message", json!("m".repeat(32769))), false),
        (with("status", json!("Unknown")), true),
        (with("status", json!("Maybe")), false),
        (with("observedGeneration", json!(0)), true),
        (with("observedGeneration", json!(-1)), false),
        (with("lastTransitionTime", json!("yesterday")), false),
    ];
    for version in VERSIONS {
        let name = format!("cond-{version}");
        let repos = api(&client, version, "ImageRepository", "imagerepositories");
        repos
            .create(
                &PostParams::default(),
                &object(
                    version,
                    "ImageRepository",
                    &name,
                    Some(json!({"image": "registry.example.com/app", "interval": "5m"})),
                ),
            )
            .await
            .unwrap();
        for (condition, accepted) in &cases {
            let got = status_accepted(&repos, &name, json!({ "conditions": [condition] })).await;
            assert_eq!(got, *accepted, "{version}: {condition}");
        }
    }
}

#[tokio::test]
async fn last_scan_result_requires_tag_count() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    for version in VERSIONS {
        let name = format!("scan-{version}");
        let repos = api(&client, version, "ImageRepository", "imagerepositories");
        repos
            .create(
                &PostParams::default(),
                &object(
                    version,
                    "ImageRepository",
                    &name,
                    Some(json!({"image": "registry.example.com/app", "interval": "5m"})),
                ),
            )
            .await
            .unwrap();
        let without = json!({"lastScanResult": {"revision": "abc"}});
        assert!(!status_accepted(&repos, &name, without).await, "{version}");
        let with = json!({"lastScanResult": {"tagCount": 0}});
        assert!(status_accepted(&repos, &name, with).await, "{version}");
    }
}

/// `policySelector` is atomic as metav1.LabelSelector declares it: server-side apply by a
/// second manager replaces the selector whole instead of merging both managers' labels and
/// expressions into one selector that neither asked for.
#[tokio::test]
async fn policy_selector_is_replaced_whole_by_server_side_apply() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    for version in VERSIONS {
        let name = format!("selector-{version}");
        let automations = api(
            &client,
            version,
            "ImageUpdateAutomation",
            "imageupdateautomations",
        );
        let apply = |selector: Value| {
            object(
                version,
                "ImageUpdateAutomation",
                &name,
                Some(json!({
                    "interval": "5m",
                    "sourceRef": {"kind": "GitRepository", "name": "app"},
                    "policySelector": selector,
                })),
            )
        };
        let first = apply(json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}],
        }));
        automations
            .patch(
                &name,
                &PatchParams::apply("first").force(),
                &Patch::Apply(&first),
            )
            .await
            .unwrap();
        let second = apply(json!({
            "matchLabels": {"env": "prod"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
        }));
        let got = automations
            .patch(
                &name,
                &PatchParams::apply("second").force(),
                &Patch::Apply(&second),
            )
            .await
            .unwrap();
        assert_eq!(
            got.data["spec"]["policySelector"],
            json!({
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
            }),
            "{version}"
        );
    }
}

/// Kubernetes 1.20 has no CEL: it serves the ImagePolicy CRD that carries Flux's rules,
/// drops the rules, and accepts a policy breaking them, which the reflector then stalls
/// (see the image-reflector's policy controller tests).
#[tokio::test]
async fn kubernetes_1_20_ignores_the_image_policy_cel_rules() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored = crds
        .get("imagepolicies.image.toolkit.fluxcd.io")
        .await
        .unwrap();
    // kubectl's last-applied annotation still has them; the served schema does not.
    let text = serde_json::to_string(&stored.spec).unwrap();
    assert!(text.contains("digestReflectionPolicy"), "{text}");
    assert!(!text.contains("x-kubernetes-validations"), "{text}");
    let generated = api_types::crd::reflector_crds();
    assert!(
        serde_json::to_string(&generated)
            .unwrap()
            .contains("x-kubernetes-validations")
    );
    for version in VERSIONS {
        let policies = api(&client, version, "ImagePolicy", "imagepolicies");
        for (name, extra) in [
            (
                format!("interval-only-{version}"),
                json!({"interval": "5m"}),
            ),
            (
                format!("always-only-{version}"),
                json!({"digestReflectionPolicy": "Always"}),
            ),
        ] {
            let mut spec = json!({
                "imageRepositoryRef": {"name": "app"},
                "policy": {"semver": {"range": "1.x"}},
            });
            for (key, value) in extra.as_object().unwrap() {
                spec[key] = value.clone();
            }
            policies
                .create(
                    &PostParams::default(),
                    &object(version, "ImagePolicy", &name, Some(spec)),
                )
                .await
                .unwrap_or_else(|e| panic!("{version} {name}: {e}"));
        }
    }
}

/// `spec` is optional, as in Flux's CRDs: an object without one is stored, in every served
/// version. The other side: a `spec` that is there must still carry its required fields.
#[tokio::test]
async fn spec_is_optional_but_its_required_fields_are_not() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.admin_client().await.unwrap();
    let kinds = [
        ("ImageRepository", "imagerepositories"),
        ("ImagePolicy", "imagepolicies"),
        ("ImageUpdateAutomation", "imageupdateautomations"),
    ];
    for version in VERSIONS {
        for (kind, plural) in kinds {
            let objects = api(&client, version, kind, plural);
            let name = format!("{}-{version}", kind.to_lowercase());
            let created = objects
                .create(&PostParams::default(), &object(version, kind, &name, None))
                .await
                .unwrap_or_else(|e| panic!("{version} {kind} without spec: {e}"));
            assert!(created.data.get("spec").is_none(), "{created:?}");
            let empty = object(version, kind, &format!("{name}-empty"), Some(json!({})));
            match objects.create(&PostParams::default(), &empty).await {
                Err(kube::Error::Api(response)) if response.code == 422 => {
                    assert!(response.message.contains("Required value"), "{response:?}");
                }
                other => panic!("{version} {kind} with an empty spec: {other:?}"),
            }
        }
    }
}
