//! `image-reflector serve` in Kubernetes mode against the testbed's real kube-apiserver and
//! a real registry with htpasswd auth, running as the non-admin user with only the RBAC
//! the chart ships: `charts/image-reflector-controller` installed by real Helm
//! (`e2e/helm/render.py`, helm-sdkpy) with the user added through `rbac.extraSubjects`.
//!
//! Needs `HELM_PYTHON` (from `bash e2e/setup.sh --print-env`) or the venv at
//! `$IMAGE_AUTOMATION_CACHE/helm-venv`; fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use api_types::{ImageRepository, ImageRepositoryStatus};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
use testbed::process::free_port;
use testbed::prometheus::{Prometheus, ScrapeTarget};
use testbed::registry::{Registry, RegistryOptions};

const WAIT: Duration = Duration::from_secs(60);
const LEASE: &str = "image-reflector-controller-leader-election";

/// One `image-reflector serve` process; killed on drop.
struct Serve {
    child: Child,
    port: u16,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Serve {
    fn start(server: &KubeApiServer, storage: &Path, extra: &[&str]) -> Self {
        Self::start_on(server, storage, free_port().unwrap(), extra)
    }

    fn start_on(server: &KubeApiServer, storage: &Path, port: u16, extra: &[&str]) -> Self {
        let log = server.dir().join(format!("serve-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_image-reflector"))
            .arg("serve")
            .arg("--storage-path")
            .arg(storage)
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--log-level", "debug", "--log-encoding", "console"])
            .args(extra)
            .env("KUBECONFIG", server.user_kubeconfig())
            .env("RUNTIME_NAMESPACE", "flux-system")
            .env(
                "RUST_LOG",
                "info,image_reflector=debug,kube_lease_manager=info",
            )
            .env_remove("POD_IP")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("serve exited with {status}:\n{}", self.log_text());
        }
    }

    async fn get_json(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn status(&self, path: &str) -> Option<u16> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

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

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.alive();
            if self.status("/readyz").await == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve never became ready:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` and `context()`.
async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    check: F,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
    let output = server.kubectl().unwrap().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn get(server: &KubeApiServer, kind: &str, ns: &str, name: &str) -> Value {
    serde_json::from_str(&kubectl(
        server,
        &["get", kind, name, "-n", ns, "-o", "json"],
    ))
    .unwrap()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn helm_python() -> PathBuf {
    let path = match std::env::var_os("HELM_PYTHON").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => testbed::tools::cache_dir().join("helm-venv/bin/python"),
    };
    assert!(
        path.is_file(),
        "no Python with helm-sdkpy at {} ($HELM_PYTHON or $IMAGE_AUTOMATION_CACHE/helm-venv): \
         run `bash e2e/setup.sh`, then `eval \"$(bash e2e/setup.sh --print-env)\"`",
        path.display()
    );
    path
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
    let output = Command::new(helm_python())
        .arg(testbed::repo_root().join("e2e/helm/render.py"))
        .arg("install")
        .arg("--kubeconfig")
        .arg(server.admin_kubeconfig())
        .args([
            "--chart",
            "image-reflector-controller",
            "--namespace",
            "flux-system",
            "--release",
            "image-reflector-controller",
            "--values",
            &values.to_string(),
        ])
        .output()
        .expect("start render.py");
    assert!(
        output.status.success(),
        "helm install of the chart failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = String::from_utf8_lossy(&output.stdout);
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

async fn wait_policy_tag(
    server: &KubeApiServer,
    serve: &Serve,
    ns: &str,
    name: &str,
    tag: &str,
) -> Value {
    wait_for(
        &format!("ImagePolicy {ns}/{name} latestRef.tag == {tag}"),
        WAIT,
        || {
            format!(
                "policy: {}\nlog:\n{}",
                get(server, "imagepolicy", ns, name),
                serve.log_text()
            )
        },
        || async {
            let p = get(server, "imagepolicy", ns, name);
            (p["status"]["latestRef"]["tag"] == tag).then_some(p)
        },
    )
    .await
}

async fn wait_ready_false(server: &KubeApiServer, serve: &Serve, ns: &str, name: &str) -> Value {
    wait_for(
        &format!("ImagePolicy {ns}/{name} Ready=False"),
        WAIT,
        || {
            format!(
                "policy: {}\nlog:\n{}",
                get(server, "imagepolicy", ns, name),
                serve.log_text()
            )
        },
        || async {
            let p = get(server, "imagepolicy", ns, name);
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
    serve: &Serve,
    (ns, kind, name): (&str, &str, &str),
    (type_, reason): (&str, &str),
) -> Value {
    wait_for(
        &format!("a {type_} {reason} event about {kind} {ns}/{name}"),
        WAIT,
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

fn request_reconcile(server: &KubeApiServer, kind: &str, name: &str) -> String {
    let requested = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    kubectl(
        server,
        &[
            "annotate",
            "--overwrite",
            "-n",
            "flux-system",
            kind,
            name,
            &format!("reconcile.fluxcd.io/requestedAt={requested}"),
        ],
    );
    requested
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
    let mut serve = Serve::start(&server, storage.path(), &[]);
    serve.wait_ready().await;

    // 1. First scan and policy, then new tags and a reconcile request.
    wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.2.3").await;
    let repo = get(&server, "imagerepository", "flux-system", "checkout");
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
    wait_for(
        "the identical rescan's final status",
        WAIT,
        || serve.log_text(),
        || async {
            let repo = get(&server, "imagerepository", "flux-system", "checkout");
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
    let repo = get(&server, "imagerepository", "flux-system", "checkout");
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
    let unreachable = get(&server, "imagerepository", "flux-system", "unreachable");
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
    let scan_time = get(&server, "imagerepository", "flux-system", "checkout")["status"]
        ["lastScanResult"]["scanTime"]
        .clone();
    serve.kill();
    let mut serve = Serve::start(&server, storage.path(), &[]);
    serve.wait_ready().await;
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
    let repo = get(&server, "imagerepository", "flux-system", "checkout");
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
        &format!("127.0.0.1:{}", serve.port),
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
    serve.alive();
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
    let repo = get(&server, "imagerepository", "flux-system", "checkout");
    assert!(
        repo["spec"]["accessFrom"].is_object(),
        "accessFrom set: {repo}"
    );
    let mut serve = Serve::start(&server, storage.path(), &["--no-cross-namespace-refs"]);
    serve.wait_ready().await;
    wait_policy_tag(&server, &serve, "flux-system", "checkout", "1.2.3").await;
    let cross = wait_ready_false(&server, &serve, "apps", "cross").await;
    assert_eq!(
        condition(&cross, "Ready").unwrap()["reason"],
        "AccessDenied",
        "{cross}"
    );
    serve.alive();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_one_leader() {
    let (server, registry, storage) = setup().await;
    registry
        .push_tags("team/checkout", &["1.2.3", "1.4.0"])
        .await
        .unwrap();
    apply_checkout(&server, &registry);
    let start = |dir: &str| {
        let path = storage.path().join(dir);
        let port = free_port().unwrap();
        // The advertised URL must match the port serve listens on: pick it up front.
        Serve::start_on(
            &server,
            &path,
            port,
            &[
                "--enable-leader-election",
                "--leader-election-lease-duration",
                "6s",
                "--advertise-url",
                &format!("http://127.0.0.1:{port}"),
            ],
        )
    };
    // Both replicas start in the same instant: the Lease's compare-and-swap lets only one lead.
    let mut a = start("a");
    let mut b = start("b");
    a.wait_ready().await;
    b.wait_ready().await;
    wait_policy_tag(&server, &a, "flux-system", "checkout", "1.4.0").await;

    let holder = wait_for("a Lease holder", WAIT, String::new, || async {
        lease_holder(&server)
    })
    .await;
    let (mut leader, follower) = if holder.ends_with(&a.base) {
        (a, b)
    } else {
        assert!(
            holder.ends_with(&b.base),
            "holder {holder} is neither {} nor {}",
            a.base,
            b.base
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
    leader.kill();
    wait_for(
        "the follower to take the Lease",
        Duration::from_secs(30),
        || follower.log_text(),
        || async { lease_holder(&server).filter(|h| h.ends_with(&follower.base)) },
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
