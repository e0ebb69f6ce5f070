//! `image-reflector serve` in Kubernetes mode against the testbed's real kube-apiserver and
//! a real registry with htpasswd auth, running as the non-admin user with only the RBAC
//! the chart ships: `charts/image-reflector-controller` installed by real Helm
//! (`e2e/helm/render.py`, helm-sdkpy) with the user added through `rbac.extraSubjects`.
//!
//! Needs `HELM_PYTHON` (from `bash e2e/setup.sh --print-env`) or the venv at
//! `$IMAGE_AUTOMATION_CACHE/helm-venv`; fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use api_types::{ImageRepository, ImageRepositoryStatus};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use testbed::controllers::{
    Controller, condition, get_in, helm_install, kubectl, request_reconcile,
};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
use testbed::process::free_port;
use testbed::prometheus::{Prometheus, ScrapeTarget};
use testbed::registry::{Registry, RegistryOptions};
use testbed::wait::{wait_for, wait_for_every};

const WAIT: Duration = Duration::from_secs(60);
const LEASE: &str = "image-reflector-controller-leader-election";
/// How often checks that start a kubectl process poll: spares the busy machine.
const KUBECTL_POLL: Duration = Duration::from_millis(250);

/// Starts `image-reflector serve` as the non-admin user on a free port and waits until it
/// is ready; killed on drop.
async fn start(server: &KubeApiServer, storage: &Path, extra: &[&str]) -> Controller {
    start_on(server, storage, free_port().unwrap(), extra).await
}

async fn start_on(server: &KubeApiServer, storage: &Path, port: u16, extra: &[&str]) -> Controller {
    let mut command = Command::new(env!("CARGO_BIN_EXE_image-reflector"));
    command
        .arg("serve")
        .arg("--storage-path")
        .arg(storage)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "debug", "--log-encoding", "console"])
        .args(extra)
        .env(
            "RUST_LOG",
            "info,image_reflector=debug,kube_lease_manager=info",
        );
    let log = server.dir().join(format!("serve-{port}.log"));
    Controller::start(
        "image-reflector serve",
        command,
        server.user_kubeconfig(),
        port,
        &log,
        WAIT,
    )
    .await
}

/// Installs the chart (defaults: leader election on, so the Lease Role too) into
/// flux-system with real Helm, binding its roles to the non-admin user as well.
fn install_chart_rbac(server: &KubeApiServer) {
    let values = json!({
        "rbac": {
            "extraSubjects": [{
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": NON_ADMIN_USER,
            }],
        },
    });
    let manifest = helm_install(server, "image-reflector-controller", &values);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            manifest.contains(&format!("kind: {kind}\n")),
            "the chart rendered no {kind}:\n{manifest}"
        );
    }
    assert!(manifest.contains(NON_ADMIN_USER), "{manifest}");
}

async fn setup() -> (KubeApiServer, Registry, tempfile::TempDir) {
    let (server, registry) = tokio::join!(
        KubeApiServer::start(),
        Registry::start(RegistryOptions::htpasswd())
    );
    let (server, registry) = (server.unwrap(), registry.unwrap());
    install_chart_rbac(&server);
    use base64::Engine as _;
    let config = base64::engine::general_purpose::STANDARD.encode(registry.docker_config_json());
    server
        .apply(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: registry-pull, namespace: flux-system}}
type: kubernetes.io/dockerconfigjson
data: {{.dockerconfigjson: {config}}}
"#
        ))
        .unwrap();
    (server, registry, tempfile::tempdir().unwrap())
}

fn apply_checkout(server: &KubeApiServer, registry: &Registry) {
    apply_checkout_with(server, registry, "");
}

/// The seed's repository (plus `extra_spec` lines) and policy.
fn apply_checkout_with(server: &KubeApiServer, registry: &Registry, extra_spec: &str) {
    let image = registry.image("team/checkout");
    server
        .apply(&format!(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: checkout, namespace: flux-system}}
spec:
  image: {image}
  interval: 5m
  secretRef: {{name: registry-pull}}
{extra_spec}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {{name: checkout, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: checkout}}
  policy:
    semver: {{range: ">=1.0.0 <2.0.0"}}
"#
        ))
        .unwrap();
}

/// The namespace `apps` and its ImagePolicy `cross`, which selects from flux-system's
/// `checkout`.
fn apply_cross_policy(server: &KubeApiServer) {
    server
        .apply(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: cross, namespace: apps}
spec:
  imageRepositoryRef: {name: checkout, namespace: flux-system}
  policy: {semver: {range: ">=1.0.0"}}
"#,
        )
        .unwrap();
}

async fn wait_policy_tag(
    server: &KubeApiServer,
    serve: &Controller,
    ns: &str,
    name: &str,
    tag: &str,
) -> Value {
    wait_for_every(
        &format!("ImagePolicy {ns}/{name} latestRef.tag == {tag}"),
        WAIT,
        KUBECTL_POLL,
        || {
            format!(
                "policy: {}\nlog:\n{}",
                get_in(server, "imagepolicy", ns, name),
                serve.log_text()
            )
        },
        || async {
            let p = get_in(server, "imagepolicy", ns, name);
            (p["status"]["latestRef"]["tag"] == tag).then_some(p)
        },
    )
    .await
}

async fn wait_ready_false(
    server: &KubeApiServer,
    serve: &Controller,
    ns: &str,
    name: &str,
) -> Value {
    wait_for_every(
        &format!("ImagePolicy {ns}/{name} Ready=False"),
        WAIT,
        KUBECTL_POLL,
        || {
            format!(
                "policy: {}\nlog:\n{}",
                get_in(server, "imagepolicy", ns, name),
                serve.log_text()
            )
        },
        || async {
            let p = get_in(server, "imagepolicy", ns, name);
            condition(&p, "Ready")
                .is_some_and(|c| c["status"] == "False")
                .then_some(p)
        },
    )
    .await
}

type Statuses = Arc<Mutex<Vec<ImageRepositoryStatus>>>;

/// Collects every status of ImageRepository flux-system/`name` a watch sees, from the
/// moment this returns (the watch's first list is done).
async fn watch_statuses(server: &KubeApiServer, name: &str) -> Statuses {
    let client = server.admin_client().await.unwrap();
    let api: Api<ImageRepository> = Api::namespaced(client, "flux-system");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let seen: Statuses = Arc::default();
    let sink = seen.clone();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // With backoff: once the test drops the API server, an unbacked watcher retries in a
        // busy loop that never yields, and the runtime's shutdown waits on it forever.
        let stream = watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        let mut listed = Some(listed_tx);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    sink.lock().unwrap().extend(obj.status);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(WAIT, listed_rx)
        .await
        .expect("the watch lists within the wait")
        .unwrap();
    seen
}

/// Waits until `statuses` holds Flux's in-progress status for `reason`: Reconciling=True
/// `Progressing` "scanning: <reason>", with Ready's status `ready`.
async fn wait_scanning_status(statuses: &Statuses, reason: &str, ready: &str) {
    let message = format!("scanning: {reason}");
    let all = || format!("{:#?}", statuses.lock().unwrap());
    let found = wait_for(
        &format!("a status with Reconciling {message:?}"),
        Duration::from_secs(10),
        all,
        || async {
            statuses.lock().unwrap().iter().find_map(|s| {
                let reconciling = s.conditions.iter().find(|c| c.type_ == "Reconciling")?;
                (reconciling.message == message).then(|| (reconciling.clone(), s.clone()))
            })
        },
    )
    .await;
    let (reconciling, status) = found;
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "Progressing"),
        "{status:#?}"
    );
    let ready_condition = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(
        ready_condition.map(|c| c.status.as_str()),
        Some(ready),
        "Ready while scanning: {status:#?}"
    );
    if ready == "Unknown" {
        assert_eq!(ready_condition.unwrap().message, message, "{status:#?}");
    }
}

/// The events about `kind` `ns/name`, as `kubectl get events` shows them (events.k8s.io
/// events appear there too, with `count` from their series).
fn events(server: &KubeApiServer, ns: &str, kind: &str, name: &str) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&kubectl(server, &["get", "events", "-n", ns, "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
        .cloned()
        .collect()
}

async fn wait_event(
    server: &KubeApiServer,
    serve: &Controller,
    (ns, kind, name): (&str, &str, &str),
    (type_, reason): (&str, &str),
) -> Value {
    wait_for_every(
        &format!("a {type_} {reason} event about {kind} {ns}/{name}"),
        WAIT,
        KUBECTL_POLL,
        || {
            format!(
                "events: {:#?}\nlog:\n{}",
                events(server, ns, kind, name),
                serve.log_text()
            )
        },
        || async {
            events(server, ns, kind, name)
                .into_iter()
                .find(|e| e["type"] == type_ && e["reason"] == reason)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_mode_end_to_end() {
    let (server, registry, storage) = setup().await;
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    apply_checkout(&server, &registry);
    let statuses = watch_statuses(&server, "checkout").await;
    let serve = start(&server, storage.path(), &[]).await;

    // 1. First scan and policy, then new tags and a reconcile request.
    wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.2.3").await;
    let repo = get_in(&server, "imagerepository", "flux-system", "checkout");
    assert_eq!(
        repo["metadata"]["finalizers"],
        serde_json::json!(["finalizers.fluxcd.io"]),
        "finalizer: {repo}"
    );
    // Flux's progress status was written before the scan, then replaced by the result.
    wait_scanning_status(&statuses, "first scan", "Unknown").await;
    assert!(condition(&repo, "Reconciling").is_none(), "{repo}");
    assert_eq!(
        condition(&repo, "Ready").unwrap()["status"],
        "True",
        "{repo}"
    );

    // The first success is one Normal event; an identical rescan adds none (not even a
    // repeat of the same event).
    let repo_events = ("flux-system", "ImageRepository", "checkout");
    let first = wait_event(&server, &serve, repo_events, ("Normal", "Succeeded")).await;
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("successful scan: found 1 tags"),
        "{first}"
    );
    let before = events(&server, repo_events.0, repo_events.1, repo_events.2);
    assert_eq!(before.len(), 1, "{before:#?}");
    let identical = request_reconcile(&server, "imagerepository", "checkout");
    wait_for_every(
        "the identical rescan's final status",
        WAIT,
        KUBECTL_POLL,
        || serve.log_text(),
        || async {
            let repo = get_in(&server, "imagerepository", "flux-system", "checkout");
            (repo["status"]["lastHandledReconcileAt"] == identical.as_str()
                && condition(&repo, "Reconciling").is_none())
            .then_some(repo)
        },
    )
    .await;
    wait_scanning_status(&statuses, "reconcile requested", "True").await;
    // Events are published right after the status write: give a stray one time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        events(&server, repo_events.0, repo_events.1, repo_events.2),
        before,
        "an identical success must not emit (or repeat) an event"
    );

    registry
        .push_tags("team/checkout", &["1.3.0", "2.0.0", "1.2.4-rc.1"])
        .await
        .unwrap();
    let requested = request_reconcile(&server, "imagerepository", "checkout");
    let policy = wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.3.0").await;
    let image = registry.image("team/checkout");
    assert_eq!(
        policy["status"]["latestImage"],
        format!("{image}:1.3.0"),
        "{policy}"
    );
    let ready = condition(&policy, "Ready").expect("Ready condition");
    assert_eq!(ready["status"], "True", "{policy}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Latest image tag for {image} resolved to 1.3.0")),
        "Flux's message: {policy}"
    );
    let repo = get_in(&server, "imagerepository", "flux-system", "checkout");
    assert_eq!(
        repo["status"]["lastHandledReconcileAt"],
        requested.as_str(),
        "{repo}"
    );
    assert_eq!(repo["status"]["lastScanResult"]["tagCount"], 4, "{repo}");
    let repo: Value = serde_json::from_str(&kubectl(
        &server,
        &[
            "get",
            "imagerepository",
            "checkout",
            "-n",
            "flux-system",
            "--show-managed-fields",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let managers: Vec<String> = repo["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        // API server 1.20 has no managedFields.subresource: the status writers are the
        // server-side appliers owning status fields.
        .filter(|m| m["operation"] == "Apply" && m["fieldsV1"]["f:status"].is_object())
        .map(|m| m["manager"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        managers,
        ["image-reflector-controller"],
        "status field managers: {repo}"
    );
    let doc = wait_for(
        "the HTTP API to show 1.3.0",
        WAIT,
        || serve.log_text(),
        || async {
            let doc = serve
                .get_json("/api/v1/namespaces/flux-system/imagepolicies/checkout")
                .await?;
            (doc["latestRef"]["tag"] == "1.3.0").then_some(doc)
        },
    )
    .await;
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["latestRef"]["name"], image.as_str(), "{doc}");
    let tags = serve
        .get_json("/api/v1/namespaces/flux-system/imagerepositories/checkout/tags")
        .await
        .expect("tags");
    assert!(tags.to_string().contains("1.2.4-rc.1"), "{tags}");

    // 2. A bad range stalls. (Not `>= x`: Masterminds/semver, and so Flux, reads `x` as a
    // wildcard and accepts it.)
    server
        .apply(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: bad, namespace: flux-system}
spec:
  imageRepositoryRef: {name: checkout}
  policy: {semver: {range: "not a range!"}}
"#,
        )
        .unwrap();
    let bad = wait_ready_false(&server, &serve, "flux-system", "bad").await;
    let ready = condition(&bad, "Ready").unwrap();
    assert_eq!(ready["reason"], "InvalidPolicy", "{bad}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.policy.semver.range"),
        "{bad}"
    );
    let stalled = condition(&bad, "Stalled").expect("Stalled condition");
    assert_eq!(stalled["status"], "True", "{bad}");
    let warning = wait_event(
        &server,
        &serve,
        ("flux-system", "ImagePolicy", "bad"),
        ("Warning", "InvalidPolicy"),
    )
    .await;
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("spec.policy.semver.range"),
        "{warning}"
    );

    // A registry nobody listens on: the scan fails with a Warning event.
    let closed = free_port().unwrap();
    server
        .apply(&format!(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: unreachable, namespace: flux-system}}
spec:
  image: 127.0.0.1:{closed}/team/none
  insecure: true
  interval: 5m
  timeout: 3s
"#
        ))
        .unwrap();
    let warning = wait_event(
        &server,
        &serve,
        ("flux-system", "ImageRepository", "unreachable"),
        ("Warning", "ReadOperationFailed"),
    )
    .await;
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with("scan failed: "),
        "{warning}"
    );
    let unreachable = get_in(&server, "imagerepository", "flux-system", "unreachable");
    let ready = condition(&unreachable, "Ready").expect("Ready condition");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("ReadOperationFailed")),
        "{unreachable}"
    );
    assert_eq!(
        condition(&unreachable, "Reconciling").unwrap()["reason"],
        "ProgressingWithRetry",
        "{unreachable}"
    );
    // Gone before the restart below, which must not scan.
    kubectl(
        &server,
        &[
            "delete",
            "-n",
            "flux-system",
            "imagerepository",
            "unreachable",
            "--timeout=30s",
        ],
    );

    // 3. Cross-namespace reference without accessFrom.
    apply_cross_policy(&server);
    let cross = wait_ready_false(&server, &serve, "apps", "cross").await;
    assert_eq!(
        condition(&cross, "Ready").unwrap()["reason"],
        "AccessDenied",
        "{cross}"
    );

    // Deleting the bad policy removes it from the API (finalizer removed by us).
    kubectl(
        &server,
        &[
            "delete",
            "-n",
            "flux-system",
            "imagepolicy",
            "bad",
            "--timeout=30s",
        ],
    );
    wait_for(
        "the deleted policy to leave the API",
        WAIT,
        || serve.log_text(),
        || async {
            (serve
                .status("/api/v1/namespaces/flux-system/imagepolicies/bad")
                .await
                == Some(404))
            .then_some(())
        },
    )
    .await;

    // 4. Restart with the same store: Ready at once, no rescan.
    let scan_time = get_in(&server, "imagerepository", "flux-system", "checkout")["status"]
        ["lastScanResult"]["scanTime"]
        .clone();
    drop(serve);
    let mut serve = start(&server, storage.path(), &[]).await;
    let doc = serve
        .get_json("/api/v1/namespaces/flux-system/imagepolicies/checkout")
        .await
        .expect("policy document after restart");
    assert_eq!(
        doc["ready"], true,
        "policy Ready right after restart: {doc}"
    );
    assert_eq!(doc["latestRef"]["tag"], "1.3.0", "{doc}");
    // Let the new process reconcile everything once.
    wait_for(
        "the restarted process to reconcile the policy",
        WAIT,
        || serve.log_text(),
        || async {
            serve
                .metrics()
                .await
                .contains(r#"gotk_reconcile_duration_seconds_count{kind="ImageRepository""#)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let repo = get_in(&server, "imagerepository", "flux-system", "checkout");
    assert_eq!(
        repo["status"]["lastScanResult"]["scanTime"], scan_time,
        "no rescan after restart: {repo}"
    );
    assert!(
        !serve
            .metrics()
            .await
            .contains("image_reflector_scans_total{"),
        "the restarted process scanned:\n{}",
        serve.metrics().await
    );

    // 5. Prometheus scrapes /metrics.
    let prometheus = Prometheus::start(&[ScrapeTarget::new(
        "image-reflector",
        &format!("127.0.0.1:{}", serve.port()),
    )])
    .await
    .unwrap();
    let samples = prometheus
        .wait_for(
            r#"gotk_reconcile_duration_seconds_count{kind="ImagePolicy"}"#,
            WAIT,
        )
        .await
        .unwrap();
    assert!(!samples.is_empty());
    let samples = prometheus
        .wait_for(
            r#"image_reflector_policy_latest_info{name="checkout"}"#,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        samples[0].labels.get("tag").map(String::as_str),
        Some("1.3.0"),
        "{samples:?}"
    );
    serve.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_cross_namespace_refs_denies_even_with_access_from() {
    let (server, registry, storage) = setup().await;
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    apply_checkout_with(
        &server,
        &registry,
        "  accessFrom:\n    namespaceSelectors: [{matchLabels: {}}]",
    );
    apply_cross_policy(&server);
    let repo = get_in(&server, "imagerepository", "flux-system", "checkout");
    assert!(
        repo["spec"]["accessFrom"].is_object(),
        "accessFrom set: {repo}"
    );
    let mut serve = start(&server, storage.path(), &["--no-cross-namespace-refs"]).await;
    wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.2.3").await;
    let cross = wait_ready_false(&server, &serve, "apps", "cross").await;
    assert_eq!(
        condition(&cross, "Ready").unwrap()["reason"],
        "AccessDenied",
        "{cross}"
    );
    serve.assert_alive();
}

fn lease_holder(server: &KubeApiServer) -> Option<String> {
    let output = server
        .kubectl()
        .unwrap()
        .args([
            "get",
            "lease",
            LEASE,
            "-n",
            "flux-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .output()
        .unwrap();
    let holder = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !holder.is_empty()).then_some(holder)
}

/// A replica with leader election and its own store under `storage/dir`.
async fn start_replica(server: &KubeApiServer, storage: &Path, dir: &str) -> Controller {
    let port = free_port().unwrap();
    // The advertised URL must match the port serve listens on: pick it up front.
    let advertise = format!("http://127.0.0.1:{port}");
    start_on(
        server,
        &storage.join(dir),
        port,
        &[
            "--enable-leader-election",
            "--leader-election-lease-duration",
            "6s",
            "--advertise-url",
            &advertise,
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_one_leader() {
    let (server, registry, storage) = setup().await;
    registry
        .push_tags("team/checkout", &["1.2.3", "1.4.0"])
        .await
        .unwrap();
    apply_checkout(&server, &registry);
    // Both replicas start in the same instant: the Lease's compare-and-swap lets only one lead.
    let (a, b) = tokio::join!(
        start_replica(&server, storage.path(), "a"),
        start_replica(&server, storage.path(), "b"),
    );
    wait_policy_tag(&server, &a, "flux-system", "checkout", "1.4.0").await;

    let holder = wait_for_every(
        "a Lease holder",
        WAIT,
        KUBECTL_POLL,
        String::new,
        || async { lease_holder(&server) },
    )
    .await;
    let (leader, follower) = if holder.ends_with(a.base()) {
        (a, b)
    } else {
        assert!(
            holder.ends_with(b.base()),
            "holder {holder} is neither {} nor {}",
            a.base(),
            b.base()
        );
        (b, a)
    };
    let scans = |text: &str| text.contains("image_reflector_scans_total{");
    assert!(
        scans(&leader.metrics().await),
        "the leader scanned:\n{}",
        leader.log_text()
    );
    assert!(
        !scans(&follower.metrics().await),
        "the follower scanned too:\n{}",
        follower.log_text()
    );

    // Both answer the same, and the follower forwards /tags to the leader.
    let (l, f) = wait_for(
        "both replicas to list the same policies",
        WAIT,
        || {
            format!(
                "leader log:\n{}\nfollower log:\n{}",
                leader.log_text(),
                follower.log_text()
            )
        },
        || async {
            // The resourceVersion is each replica's own feed position; the items must match.
            let l = leader.get_json("/api/v1/imagepolicies").await?["items"].clone();
            let f = follower.get_json("/api/v1/imagepolicies").await?["items"].clone();
            (l == f && l.to_string().contains("1.4.0")).then_some((l, f))
        },
    )
    .await;
    assert_eq!(l, f);
    let path = "/api/v1/namespaces/flux-system/imagerepositories/checkout/tags";
    let leader_tags = leader.get_json(path).await.expect("leader tags");
    let follower_tags = wait_for(
        "the follower to forward /tags to the leader",
        Duration::from_secs(20),
        || follower.log_text(),
        || async { follower.get_json(path).await },
    )
    .await;
    assert_eq!(leader_tags, follower_tags);
    assert!(
        follower_tags.to_string().contains("1.4.0"),
        "{follower_tags}"
    );

    // Hand the Lease to another holder for a minute: the leader loses leadership, stops its
    // controllers and, still running as a follower, drops its per-object series (they would
    // otherwise stay and could fire alerts), keeping its per-host registry counters.
    let series = leader.metrics().await;
    assert!(
        series.contains(r#"gotk_reconcile_condition{kind="ImageRepository",name="checkout""#),
        "{series}"
    );
    let intruder = serde_json::json!({"spec": {
        "holderIdentity": "intruder_0@http://127.0.0.1:1",
        "leaseDurationSeconds": 60,
    }});
    kubectl(
        &server,
        &[
            "patch",
            "lease",
            LEASE,
            "-n",
            "flux-system",
            "--type=merge",
            "-p",
            &intruder.to_string(),
        ],
    );
    let cleared = wait_for(
        "the old leader to drop its per-object series",
        Duration::from_secs(30),
        || leader.log_text(),
        || async {
            let text = leader.metrics().await;
            (!text.contains(r#"name="checkout""#)).then_some(text)
        },
    )
    .await;
    assert!(
        cleared.contains("image_reflector_registry_requests_total{"),
        "{cleared}"
    );
    assert!(
        leader.get_json("/api/v1/imagepolicies").await.is_some(),
        "the old leader still serves the API:\n{}",
        leader.log_text()
    );
    // Free the Lease again: either replica takes it; the old leader is killed next anyway.
    kubectl(&server, &["delete", "lease", LEASE, "-n", "flux-system"]);

    // Kill the leader: the follower takes over within the lease duration (plus margin).
    let killed_at = Instant::now();
    drop(leader);
    wait_for_every(
        "the follower to take the Lease",
        Duration::from_secs(30),
        KUBECTL_POLL,
        || follower.log_text(),
        || async { lease_holder(&server).filter(|h| h.ends_with(follower.base())) },
    )
    .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(20), "takeover took {took:?}");
    // The new leader scans (its store is empty).
    wait_for(
        "the new leader to scan",
        WAIT,
        || follower.log_text(),
        || async { scans(&follower.metrics().await).then_some(()) },
    )
    .await;
}

/// Flux's CRDs leave `spec` optional, so the API server stores objects without one. Each
/// stalls with a message naming the missing field, and the other objects of its kind are
/// reconciled as usual (before, one such object failed every list of the kind).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_without_spec_stall_and_the_others_reconcile() {
    let (server, registry, storage) = setup().await;
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    server
        .apply(
            r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: no-spec, namespace: flux-system}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: no-spec, namespace: flux-system}
"#,
        )
        .unwrap();
    apply_checkout(&server, &registry);
    let serve = start(&server, storage.path(), &[]).await;

    wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.2.3").await;
    let policy = wait_ready_false(&server, &serve, "flux-system", "no-spec").await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(
        ready["message"],
        "the object has no spec: spec.imageRepositoryRef and spec.policy are required",
        "{policy}"
    );
    assert_eq!(ready["reason"], "InvalidPolicy", "{policy}");
    assert_eq!(
        condition(&policy, "Stalled").unwrap()["status"],
        "True",
        "{policy}"
    );
    let repo = wait_for_every(
        "ImageRepository flux-system/no-spec Ready=False",
        WAIT,
        KUBECTL_POLL,
        || serve.log_text(),
        || async {
            let repo = get_in(&server, "imagerepository", "flux-system", "no-spec");
            condition(&repo, "Ready")
                .is_some_and(|c| c["status"] == "False")
                .then_some(repo)
        },
    )
    .await;
    let ready = condition(&repo, "Ready").unwrap();
    assert_eq!(
        ready["message"], "the object has no spec: spec.image and spec.interval are required",
        "{repo}"
    );
    assert_eq!(
        condition(&repo, "Stalled").unwrap()["status"],
        "True",
        "{repo}"
    );
}
