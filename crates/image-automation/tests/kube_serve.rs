#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! `image-automation serve` in Kubernetes mode against the testbed's real kube-apiserver, a
//! real registry (htpasswd), the smart-HTTP git server (basic auth) and a real
//! `image-reflector serve` in Kubernetes mode. Both controllers run as the NON-ADMIN user,
//! with only the RBAC their charts ship: both charts are installed with real Helm
//! (`e2e/helm/render.py`, helm-sdkpy) with that user added through `rbac.extraSubjects`.
//!
//! Needs `HELM_PYTHON` (from `bash e2e/setup.sh --print-env`) or the venv at
//! `$IMAGE_AUTOMATION_CACHE/helm-venv`; fails, never skips, without it.
//!
//! The image-reflector binary comes from the shared target directory, as in
//! `standalone_serve.rs` (built into a separate target directory when missing).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
use testbed::process::{Process, free_port};
use testbed::registry::{Registry, RegistryOptions};

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "flux-system";
const AUTOMATION: &str = "flux-image-updates";
const CHECKOUT: &str = "clusters/prod/checkout.yaml";
const LEASE: &str = "image-automation-controller-leader-election";

fn reflector_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/image-reflector
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let shared = profile_dir.join("image-reflector");
    if shared.is_file() {
        return shared;
    }
    let target = profile_dir.join("reflector-for-tests");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "image-reflector", "--bin", "image-reflector"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building image-reflector failed");
    let built = target.join("debug").join("image-reflector");
    assert!(built.is_file(), "{} missing", built.display());
    built
}

/// A `serve` process in Kubernetes mode as the non-admin user; killed on drop.
struct Serve {
    process: Process,
    base: String,
}

impl Serve {
    fn start(
        component: &'static str,
        mut command: Command,
        server: &KubeApiServer,
        log_dir: &Path,
    ) -> Self {
        let port = free_port().unwrap();
        command
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--log-level", "debug", "--log-encoding", "console"])
            .env("KUBECONFIG", server.user_kubeconfig())
            .env("RUNTIME_NAMESPACE", NS)
            .env_remove("POD_IP");
        let log = log_dir.join(format!("{component}.log"));
        Self {
            process: Process::spawn(component, command, &log).unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn reflector(server: &KubeApiServer, storage: &Path, log_dir: &Path) -> Self {
        let mut command = Command::new(reflector_binary());
        command.arg("serve").arg("--storage-path").arg(storage);
        Self::start("image-reflector", command, server, log_dir)
    }

    fn automation(
        server: &KubeApiServer,
        storage: &Path,
        reflector_url: &str,
        log_dir: &Path,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_image-automation"));
        command
            .arg("serve")
            .arg("--storage-path")
            .arg(storage)
            .args(["--reflector-url", reflector_url])
            // The chart's form of the flag (leader election is on by default anyway).
            .arg("--enable-leader-election")
            // Failures retry fast here.
            .args(["--min-retry-delay", "1s", "--max-retry-delay", "5s"]);
        Self::start("image-automation", command, server, log_dir)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let readyz = format!("{}/readyz", self.base);
        self.process
            .wait_ready(WAIT, || http_ok(&readyz))
            .await
            .unwrap_or_else(|err| panic!("never ready: {err}"));
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn http_ok(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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

fn get(server: &KubeApiServer, kind: &str, name: &str) -> Value {
    serde_json::from_str(&kubectl(
        server,
        &["get", kind, name, "-n", NS, "-o", "json"],
    ))
    .unwrap()
}

fn automation(server: &KubeApiServer) -> Value {
    get(server, "imageupdateautomation", AUTOMATION)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The events about the automation, as `kubectl get events` shows them.
fn events(server: &KubeApiServer) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&kubectl(server, &["get", "events", "-n", NS, "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "ImageUpdateAutomation"
                && e["involvedObject"]["name"] == AUTOMATION
        })
        .cloned()
        .collect()
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
            NS,
            kind,
            name,
            &format!("reconcile.fluxcd.io/requestedAt={requested}"),
        ],
    );
    requested
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

/// Installs `chart` (defaults: leader election on, so the Lease Role too) into flux-system
/// with real Helm, binding its roles to the non-admin user as well.
fn install_chart_rbac(server: &KubeApiServer, chart: &str) {
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
            chart,
            "--namespace",
            NS,
            "--release",
            chart,
            "--values",
        ])
        .arg(values.to_string())
        .output()
        .expect("start render.py");
    assert!(
        output.status.success(),
        "helm install of {chart} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = String::from_utf8_lossy(&output.stdout);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            manifest.contains(&format!("kind: {kind}\n")),
            "{chart} rendered no {kind}:\n{manifest}"
        );
    }
    assert!(manifest.contains(NON_ADMIN_USER), "{manifest}");
}

/// The GitRepository and its Secret, and the seed's v1beta1 ImageUpdateAutomation exactly
/// as the seed writes it (the seed's obfuscated e-mail address replaced by a real one).
fn apply_automation(server: &KubeApiServer, git: &GitHttpServer, repo: &str) {
    server
        .apply(&format!(
            r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  url: {url}
  ref:
    branch: main
  secretRef:
    name: flux-system
---
apiVersion: v1
kind: Secret
metadata:
  name: flux-system
  namespace: flux-system
stringData:
  username: {user}
  password: {password}
"#,
            url = git.url(repo),
            user = git.username(),
            password = git.password()
        ))
        .unwrap();
    server
        .apply(
            r#"
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
"#,
        )
        .unwrap();
}

/// The seed's registry Secret, ImageRepository and semver ImagePolicy.
fn apply_reflector_objects(server: &KubeApiServer, registry: &Registry) {
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
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: checkout, namespace: flux-system}}
spec:
  image: {image}
  interval: 5m
  secretRef: {{name: registry-pull}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {{name: checkout, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: checkout}}
  policy:
    semver: {{range: ">=1.0.0 <2.0.0"}}
"#,
            image = registry.image("team/checkout")
        ))
        .unwrap();
}

async fn wait_policy_tag(server: &KubeApiServer, reflector: &Serve, tag: &str) {
    wait_for(
        &format!("ImagePolicy checkout latestRef.tag == {tag}"),
        WAIT,
        || {
            format!(
                "policy: {}\nreflector log:\n{}",
                get(server, "imagepolicy", "checkout"),
                reflector.log_text()
            )
        },
        || async {
            (get(server, "imagepolicy", "checkout")["status"]["latestRef"]["tag"] == tag)
                .then_some(())
        },
    )
    .await;
}

/// Waits until the automation's status satisfies `check`.
async fn wait_automation(
    server: &KubeApiServer,
    serve: &Serve,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(
        what,
        WAIT,
        || {
            format!(
                "automation: {:#}\nlog:\n{}",
                automation(server),
                serve.log_text()
            )
        },
        || async {
            let a = automation(server);
            check(&a).then_some(a)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_automation_in_kubernetes_mode() {
    let (server, registry, git) = tokio::join!(
        KubeApiServer::start(),
        Registry::start(RegistryOptions::htpasswd()),
        GitHttpServer::start(GitHttpServerOptions::default())
    );
    let (server, registry, git) = (server.unwrap(), registry.unwrap(), git.unwrap());
    install_chart_rbac(&server, "image-reflector-controller");
    install_chart_rbac(&server, "image-automation-controller");
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    let repos = git.repos();
    let seeded = repos
        .create("fleet", &seed_manifests(&registry.host()))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    apply_reflector_objects(&server, &registry);
    let mut reflector = Serve::reflector(&server, &tmp.path().join("tags"), tmp.path());
    reflector.wait_ready().await;
    wait_policy_tag(&server, &reflector, "1.2.3").await;

    apply_automation(&server, &git, "fleet");
    let mut serve = Serve::automation(
        &server,
        &tmp.path().join("data"),
        &reflector.base,
        tmp.path(),
    );
    serve.wait_ready().await;

    // 1. The first run: 1.2.3 is what the repository has; nothing pushed.
    let a = wait_automation(&server, &serve, "the first run Ready=True", |a| {
        condition(a, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(
        a["metadata"]["finalizers"],
        json!(["finalizers.fluxcd.io"]),
        "{a:#}"
    );
    assert_eq!(a["status"]["observedGeneration"], 1, "{a:#}");
    assert!(a["status"]["lastPushCommit"].is_null(), "{a:#}");
    assert!(a["status"]["lastAutomationRunTime"].is_string(), "{a:#}");
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );
    let lease = get(&server, "lease", LEASE);
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease:#}"
    );

    // 2. The seed's tags: the range blocks the major, the pre-release is ignored. The
    // interval is 1m: only the reflector's change feed can start the run this soon.
    registry
        .push_tags("team/checkout", &["1.3.0", "2.0.0", "1.2.4-rc.1"])
        .await
        .unwrap();
    request_reconcile(&server, "imagerepository", "checkout");
    wait_policy_tag(&server, &reflector, "1.3.0").await;
    let seen = Instant::now();
    let head = wait_for(
        "a commit on main",
        Duration::from_secs(20),
        || serve.log_text(),
        || async {
            repos
                .head_commit("fleet", "main")
                .unwrap()
                .filter(|h| *h != seeded)
        },
    )
    .await;
    let policy_to_push = seen.elapsed();
    eprintln!("policy result seen on the API server -> pushed commit: {policy_to_push:?}");
    assert!(
        policy_to_push < Duration::from_secs(10),
        "{policy_to_push:?}"
    );

    // Exactly one commit, changing only the tag, with the seed's template over `.Updated`.
    assert_eq!(
        repos.commit_parents("fleet", &head).unwrap(),
        vec![seeded.clone()]
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    let image = registry.image("team/checkout");
    let before = repos.file_at("fleet", &seeded, CHECKOUT).unwrap().unwrap();
    let after = repos.file_at("fleet", &head, CHECKOUT).unwrap().unwrap();
    assert!(before.contains(&format!("{image}:1.2.3 #")));
    assert_eq!(
        after,
        before.replace(&format!("{image}:1.2.3 #"), &format!("{image}:1.3.0 #"))
    );
    let files = repos.files_at("fleet", &head).unwrap();
    assert_eq!(files, repos.files_at("fleet", &seeded).unwrap());
    for f in files.iter().filter(|f| f.as_str() != CHECKOUT) {
        assert_eq!(
            repos.file_at("fleet", &head, f).unwrap(),
            repos.file_at("fleet", &seeded, f).unwrap(),
            "{f} changed"
        );
    }
    let message = repos.commit_message("fleet", &head).unwrap();
    assert_eq!(
        message.trim_end(),
        format!("Auto-update images\n\n- {image}:1.3.0"),
        "{message:?}"
    );
    assert_eq!(
        repos.commit_author("fleet", &head).unwrap(),
        "fluxcdbot <fluxcdbot@users.noreply.github.com>"
    );

    // The status, read back with kubectl.
    let a = wait_automation(&server, &serve, "lastPushCommit == the new head", |a| {
        a["status"]["lastPushCommit"] == head.as_str()
    })
    .await;
    let status = &a["status"];
    assert!(status["lastPushTime"].is_string(), "{a:#}");
    assert!(status["lastAutomationRunTime"].is_string(), "{a:#}");
    assert_eq!(
        status["observedPolicies"],
        json!({"checkout": {"name": image, "tag": "1.3.0"}}),
        "{a:#}"
    );
    assert_eq!(
        status["observedSourceRevision"],
        format!("main@sha1:{head}"),
        "{a:#}"
    );
    let ready = condition(&a, "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"], &ready["message"]),
        (
            &json!("True"),
            &json!("Succeeded"),
            &json!("repository up-to-date")
        ),
        "{a:#}"
    );
    assert!(condition(&a, "Reconciling").is_none(), "{a:#}");
    assert!(condition(&a, "Stalled").is_none(), "{a:#}");

    // A Normal event with the commit and the message; the seed's other markers (policies
    // that do not exist here) in our MarkersNotApplied event.
    let push_note = format!(
        "pushed commit '{}' to branch 'main'\nAuto-update images",
        &head[..7]
    );
    let pushed = wait_for(
        "the push event",
        WAIT,
        || format!("{:#?}\nlog:\n{}", events(&server), serve.log_text()),
        || async {
            events(&server).into_iter().find(|e| {
                e["type"] == "Normal"
                    && e["reason"] == "Succeeded"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&push_note))
            })
        },
    )
    .await;
    assert!(
        pushed["message"]
            .as_str()
            .unwrap()
            .contains(&format!("- {image}:1.3.0")),
        "{pushed:#}"
    );
    assert!(
        events(&server)
            .iter()
            .any(|e| e["reason"] == "MarkersNotApplied"
                && e["message"].as_str().is_some_and(|m| m.contains("sidecar"))),
        "{:#?}",
        events(&server)
    );

    // Metrics of the run.
    let metrics = serve.metrics().await;
    for line in [
        r#"image_automation_pushes_total{name="flux-image-updates",namespace="flux-system"} 1"#,
        r#"image_automation_policy_to_push_seconds_count{name="flux-image-updates",namespace="flux-system"} 1"#,
        r#"gotk_reconcile_condition{kind="ImageUpdateAutomation",name="flux-image-updates",namespace="flux-system",status="True",type="Ready"} 1"#,
        r#"gotk_suspend_status{kind="ImageUpdateAutomation",name="flux-image-updates",namespace="flux-system"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    assert!(
        !metrics.contains("image_automation_push_failures_total{"),
        "{metrics}"
    );

    // 3. The reconcile annotation: a run that sets lastHandledReconcileAt, pushes nothing
    // and records no event (a no-op success).
    let events_before: Vec<Value> = events(&server);
    let requested = request_reconcile(&server, "imageupdateautomation", AUTOMATION);
    let a = wait_automation(&server, &serve, "lastHandledReconcileAt", |a| {
        a["status"]["lastHandledReconcileAt"] == requested.as_str()
    })
    .await;
    assert_eq!(a["status"]["lastPushCommit"], head.as_str(), "{a:#}");
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(head.clone())
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let summary = |list: &[Value]| -> Vec<(String, String, Value)> {
        list.iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                    e["count"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&events(&server)), summary(&events_before));

    // A new generation of the GitRepository starts a run (Flux's GitRepository watch); the
    // interval (1m) cannot explain it. Run times have second precision: start a new second.
    let last_run = a["status"]["lastAutomationRunTime"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kubectl(
        &server,
        &[
            "patch",
            "gitrepository",
            "flux-system",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"interval":"2m"}}"#,
        ],
    );
    wait_for(
        "a run after the GitRepository changed",
        Duration::from_secs(10),
        || format!("{:#}\n{}", automation(&server), serve.log_text()),
        || async {
            let a = automation(&server);
            (a["status"]["lastAutomationRunTime"] != last_run).then_some(())
        },
    )
    .await;
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(head.clone())
    );

    // 4. Suspended: a new policy result is not pushed.
    kubectl(
        &server,
        &[
            "patch",
            "imageupdateautomation",
            AUTOMATION,
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    wait_for(
        "gotk_suspend_status 1",
        WAIT,
        || serve.log_text(),
        || async {
            serve.metrics().await.contains(
                r#"gotk_suspend_status{kind="ImageUpdateAutomation",name="flux-image-updates",namespace="flux-system"} 1"#,
            ).then_some(())
        },
    )
    .await;
    registry
        .push_tags("team/checkout", &["1.4.0"])
        .await
        .unwrap();
    request_reconcile(&server, "imagerepository", "checkout");
    wait_policy_tag(&server, &reflector, "1.4.0").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(head.clone())
    );

    // 5. Deleted: the controller removes its finalizer and the object goes.
    kubectl(
        &server,
        &[
            "delete",
            "imageupdateautomation",
            AUTOMATION,
            "-n",
            NS,
            "--timeout=30s",
        ],
    );
    let left = kubectl(
        &server,
        &["get", "imageupdateautomations", "-n", NS, "-o", "name"],
    );
    assert!(left.trim().is_empty(), "{left}");
    assert!(
        !serve.log_text().contains(git.password()),
        "git password logged"
    );

    // SIGTERM: a clean exit (the Lease released).
    let status = serve
        .process
        .terminate(Duration::from_secs(15))
        .expect("no exit after SIGTERM");
    assert!(status.success(), "{status}\n{}", serve.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_reflector_is_dependency_not_ready_and_pushes_nothing() {
    let (server, git) = tokio::join!(
        KubeApiServer::start(),
        GitHttpServer::start(GitHttpServerOptions::default())
    );
    let (server, git) = (server.unwrap(), git.unwrap());
    install_chart_rbac(&server, "image-automation-controller");
    let seeded = git
        .repos()
        .create("fleet", &seed_manifests("127.0.0.1:5000"))
        .unwrap();
    apply_automation(&server, &git, "fleet");
    let tmp = tempfile::tempdir().unwrap();
    let nobody = format!("http://127.0.0.1:{}", free_port().unwrap());
    let mut serve = Serve::automation(&server, &tmp.path().join("data"), &nobody, tmp.path());
    serve.wait_ready().await;

    let a = wait_automation(&server, &serve, "Ready=False DependencyNotReady", |a| {
        condition(a, "Ready")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "DependencyNotReady")
    })
    .await;
    let reconciling = condition(&a, "Reconciling").unwrap();
    assert_eq!(
        (&reconciling["status"], &reconciling["reason"]),
        (&json!("True"), &json!("ProgressingWithRetry")),
        "{a:#}"
    );
    assert!(condition(&a, "Stalled").is_none(), "{a:#}");
    // Not Ready and not Stalled: observedGeneration is not recorded (Flux's rule).
    assert!(
        a["status"]["observedGeneration"].is_null() || a["status"]["observedGeneration"] == -1,
        "{a:#}"
    );
    // Retried with backoff: a Warning event per attempt, and failures counted by reason.
    wait_for(
        "a second failed attempt",
        Duration::from_secs(20),
        || serve.log_text(),
        || async {
            serve
                .metrics()
                .await
                .lines()
                .find(|l| {
                    l.starts_with(
                        r#"image_automation_push_failures_total{name="flux-image-updates",namespace="flux-system",reason="DependencyNotReady"}"#,
                    )
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .filter(|n| *n >= 2)
        },
    )
    .await;
    assert!(
        events(&server)
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "DependencyNotReady"),
        "{:#?}",
        events(&server)
    );
    assert_eq!(
        git.repos().head_commit("fleet", "main").unwrap(),
        Some(seeded)
    );
}
