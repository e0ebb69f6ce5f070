//! The testbed's API server is real: our generated CRDs are accepted, manifests of every
//! Flux era apply, kube-rs can create, watch and server-side-apply status, and RBAC holds
//! the non-admin token back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::time::Duration;

use api_types::{ImagePolicy, ImagePolicyStatus, ImageRef};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};

const SEED_MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: flux-system
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: checkout
  namespace: flux-system
spec:
  image: registry.example.com/team/checkout
  interval: 5m
  secretRef:
    name: registry-pull
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: checkout
  namespace: flux-system
spec:
  imageRepositoryRef: { name: checkout }
  policy:
    semver:
      range: '>=1.0.0 <2.0.0'
---
apiVersion: image.toolkit.fluxcd.io/v1beta1
kind: ImageUpdateAutomation
metadata:
  name: flux-image-updates
  namespace: flux-system
spec:
  interval: 1m
  sourceRef:
    kind: GitRepository
    name: flux-system
  git:
    checkout:
      ref: { branch: main }
    commit:
      author:
        name: fluxcdbot
        email: fluxcdbot@users.noreply.github.com
      messageTemplate: |
        Auto-update images
        {{ range .Updated.Images }}
        - {{.}}
        {{ end }}
    push:
      branch: main
  update:
    path: ./clusters/prod
    strategy: Setters
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  url: ssh://git@example.com/gitops
  ref: { branch: main }
  ignore: "/*\n!/clusters"
"#;

fn kubectl_stdout(server: &KubeApiServer, args: &[&str]) -> String {
    let output = server.kubectl().unwrap().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_accepts_our_crds_and_every_era_of_manifest() {
    let server = KubeApiServer::start()
        .await
        .expect("start the testbed API server");

    let applied = server.apply(SEED_MANIFESTS).unwrap();
    assert!(
        applied.contains("imagepolicy.image.toolkit.fluxcd.io/checkout created"),
        "{applied}"
    );

    // The seed's v1beta2 policy is served under every version.
    for version in ["v1", "v1beta2", "v1beta1"] {
        let names = kubectl_stdout(
            &server,
            &[
                "-n",
                "flux-system",
                "get",
                &format!("imagepolicies.{version}.image.toolkit.fluxcd.io"),
                "-o",
                "name",
            ],
        );
        assert_eq!(
            names.trim(),
            "imagepolicy.image.toolkit.fluxcd.io/checkout",
            "{version}"
        );
    }
    // Short names and categories work as in Flux.
    let by_category = kubectl_stdout(
        &server,
        &["-n", "flux-system", "get", "fluxcd-images", "-o", "name"],
    );
    for name in [
        "imagerepository.image.toolkit.fluxcd.io/checkout",
        "imagepolicy.image.toolkit.fluxcd.io/checkout",
        "imageupdateautomation.image.toolkit.fluxcd.io/flux-image-updates",
    ] {
        assert!(
            by_category.contains(name),
            "{name} missing from {by_category}"
        );
    }
    let short = kubectl_stdout(
        &server,
        &[
            "-n",
            "flux-system",
            "get",
            "imgrepo",
            "-o",
            "jsonpath={.items[0].spec}",
        ],
    );
    let spec: serde_json::Value = serde_json::from_str(&short).unwrap();
    // Defaults come from the schema: the exclusion list and provider.
    assert_eq!(spec["exclusionList"], serde_json::json!(["^.*\\.sig$"]));
    assert_eq!(spec["provider"], "generic");
    // The GitRepository stand-in keeps fields it does not type.
    let ignore = kubectl_stdout(
        &server,
        &[
            "-n",
            "flux-system",
            "get",
            "gitrepo",
            "flux-system",
            "-o",
            "jsonpath={.spec.ignore}",
        ],
    );
    assert_eq!(ignore, "/*\n!/clusters");
    // A v1beta1 automation with `update.strategy: Setters` reads back through v1 unchanged.
    let automation = kubectl_stdout(
        &server,
        &[
            "-n",
            "flux-system",
            "get",
            "imageupdateautomations.v1.image.toolkit.fluxcd.io",
            "flux-image-updates",
            "-o",
            "json",
        ],
    );
    let automation: api_types::ImageUpdateAutomation = serde_json::from_str(&automation).unwrap();
    assert_eq!(
        automation.spec.update.unwrap().path.as_deref(),
        Some("./clusters/prod")
    );

    // The schema rejects what Flux's rejects.
    let bad = server.apply(
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: bad, namespace: flux-system}\n\
         spec: {imageRepositoryRef: {name: checkout}, policy: {alphabetical: {order: sideways}}}\n",
    );
    let message = bad.unwrap_err().to_string();
    assert!(
        message.contains("Unsupported value: \"sideways\""),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_creates_watches_and_applies_status() {
    let server = KubeApiServer::start()
        .await
        .expect("start the testbed API server");
    server
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n")
        .unwrap();
    let client = server.admin_client().await.unwrap();
    let policies: Api<ImagePolicy> = Api::namespaced(client, "apps");

    let mut events = watcher(policies.clone(), watcher::Config::default()).boxed();
    let policy: ImagePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": "1.x"}}}
    }))
    .unwrap();
    let created = policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    // The schema's status default marks a new object as never observed.
    assert_eq!(
        created.status.as_ref().and_then(|s| s.observed_generation),
        Some(-1)
    );

    let mut status = ImagePolicyStatus::default();
    status.record_latest(ImageRef {
        name: "ghcr.io/apps/web".into(),
        tag: "1.4.0".into(),
        digest: None,
    });
    let patch = serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "status": status,
    });
    policies
        .patch_status(
            "web",
            &PatchParams::apply("testbed").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();

    // The watch sees the object, then the status the apply wrote.
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.next().await {
            let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event
            else {
                continue;
            };
            if object
                .status
                .as_ref()
                .and_then(|s| s.latest_image.as_deref())
                == Some("ghcr.io/apps/web:1.4.0")
            {
                return object;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("the watch delivered the status update");
    assert_eq!(seen.status.unwrap().latest_ref.unwrap().tag, "1.4.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_admin_token_needs_rbac() {
    let server = KubeApiServer::start()
        .await
        .expect("start the testbed API server");
    server
        .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n")
        .unwrap();
    let policies: Api<ImagePolicy> = Api::namespaced(server.user_client().await.unwrap(), "apps");
    let denied = policies.list(&Default::default()).await.unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");

    server
        .apply(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: policy-reader, namespace: apps}}\n\
             rules:\n- apiGroups: [image.toolkit.fluxcd.io]\n  resources: [imagepolicies]\n  verbs: [get, list, watch]\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: policy-reader, namespace: apps}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: policy-reader}}\n\
             subjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {NON_ADMIN_USER}}}\n"
        ))
        .unwrap();
    let listed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(list) = policies.list(&Default::default()).await {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the role binding takes effect");
    assert!(listed.items.is_empty());
    // Reading is all the role allows.
    let policy: ImagePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
        "metadata": {"name": "web"},
        "spec": {"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": "1.x"}}}
    }))
    .unwrap();
    let denied = policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("forbidden"), "{denied}");
}

/// `kubectl get -o wide` prints, for each served version, the columns Flux printed for it:
/// v1 as Flux 1.x; v1beta2 and v1beta1 as in the Flux releases where they were the storage
/// version.
#[tokio::test(flavor = "multi_thread")]
async fn each_served_version_prints_flux_columns() {
    let server = KubeApiServer::start()
        .await
        .expect("start the testbed API server");
    server.apply(SEED_MANIFESTS).unwrap();
    // Status as the controllers write it, so the columns' JSON paths have something to show.
    let client = server.admin_client().await.unwrap();
    let policies: Api<ImagePolicy> = Api::namespaced(client.clone(), "flux-system");
    let status = serde_json::json!({"status": {
        "latestImage": "registry.example.com/team/checkout:1.4.2",
        "latestRef": {"name": "registry.example.com/team/checkout", "tag": "1.4.2"},
    }});
    policies
        .patch_status("checkout", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let repositories: Api<api_types::ImageRepository> = Api::namespaced(client, "flux-system");
    let status = serde_json::json!({"status": {
        "lastScanResult": {"tagCount": 17, "scanTime": "2026-01-02T03:04:05Z"},
    }});
    repositories
        .patch_status("checkout", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let expected: [(&str, &str, &str); 9] = [
        (
            "imagerepositories",
            "v1",
            "NAME IMAGE TAGS READY STATUS LAST SCAN AGE",
        ),
        ("imagerepositories", "v1beta2", "NAME LAST SCAN TAGS"),
        ("imagerepositories", "v1beta1", "NAME LAST SCAN TAGS"),
        ("imagepolicies", "v1", "NAME IMAGE TAG READY STATUS AGE"),
        ("imagepolicies", "v1beta2", "NAME LATESTIMAGE"),
        ("imagepolicies", "v1beta1", "NAME LATESTIMAGE"),
        (
            "imageupdateautomations",
            "v1",
            "NAME READY STATUS LAST RUN AGE",
        ),
        ("imageupdateautomations", "v1beta2", "NAME LAST RUN"),
        ("imageupdateautomations", "v1beta1", "NAME LAST RUN"),
    ];
    for (plural, version, columns) in expected {
        let table = kubectl_stdout(
            &server,
            &[
                "-n",
                "flux-system",
                "get",
                &format!("{plural}.{version}.image.toolkit.fluxcd.io"),
                "-o",
                "wide",
            ],
        );
        let header = table.lines().next().unwrap_or_default();
        let header: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(header.join(" "), columns, "{plural}.{version}:\n{table}");
        let row = table.lines().nth(1).unwrap_or_default();
        let shown = match plural {
            "imagepolicies" if version == "v1" => "1.4.2",
            "imagepolicies" => "registry.example.com/team/checkout:1.4.2",
            "imagerepositories" => "17",
            _ => "flux-image-updates",
        };
        assert!(
            row.split_whitespace().any(|cell| cell == shown),
            "{plural}.{version} shows no {shown}:\n{table}"
        );
    }
}
