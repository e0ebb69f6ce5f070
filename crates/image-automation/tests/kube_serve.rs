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
//! The image-reflector binary comes from the shared target directory (built into a separate
//! target directory when missing): `testbed::controllers::reflector_binary`.

mod serve_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::controllers::{
    Controller, condition, get, helm_install, kubectl, reflector_binary, request_reconcile,
    start_kube_testbed,
};
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
use testbed::process::free_port;
use testbed::registry::Registry;
use testbed::seed;
use testbed::wait::wait_for;

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = seed::NAMESPACE;
const AUTOMATION: &str = "flux-image-updates";
const CHECKOUT: &str = "clusters/prod/checkout.yaml";
const LEASE: &str = "image-automation-controller-leader-election";

/// Starts a `serve` process in Kubernetes mode as the non-admin user and waits until it
/// is ready; killed on drop.
async fn start_serve(
    component: &'static str,
    mut command: Command,
    server: &KubeApiServer,
    log_dir: &Path,
) -> Controller {
    let port = free_port().unwrap();
    command
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "debug", "--log-encoding", "console"]);
    let log = log_dir.join(format!("{component}.log"));
    Controller::start(
        component,
        command,
        server.user_kubeconfig(),
        port,
        &log,
        WAIT,
    )
    .await
}

async fn start_reflector(server: &KubeApiServer, storage: &Path, log_dir: &Path) -> Controller {
    let mut command = Command::new(reflector_binary());
    command.arg("serve").arg("--storage-path").arg(storage);
    start_serve("image-reflector", command, server, log_dir).await
}

async fn start_automation(
    server: &KubeApiServer,
    storage: &Path,
    reflector_url: &str,
    log_dir: &Path,
) -> Controller {
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
    start_serve("image-automation", command, server, log_dir).await
}

fn automation(server: &KubeApiServer) -> Value {
    get(server, "imageupdateautomation", AUTOMATION)
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
    let manifest = helm_install(server, chart, &values);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            manifest.contains(&format!("kind: {kind}\n")),
            "{chart} rendered no {kind}:\n{manifest}"
        );
    }
    assert!(manifest.contains(NON_ADMIN_USER), "{manifest}");
}

/// The GitRepository and its Secret, and the seed's v1beta1 ImageUpdateAutomation.
fn apply_automation(server: &KubeApiServer, git: &GitHttpServer, repo: &str) {
    server
        .apply(&seed::git_credentials_secret(
            "flux-system",
            git.username(),
            git.password(),
        ))
        .unwrap();
    server
        .apply(&seed::git_repository(
            "flux-system",
            &git.url(repo),
            "flux-system",
        ))
        .unwrap();
    server
        .apply(&seed::image_update_automation(
            AUTOMATION,
            "flux-system",
            "main",
        ))
        .unwrap();
}

/// The seed's registry Secret, ImageRepository and semver ImagePolicy.
fn apply_reflector_objects(server: &KubeApiServer, registry: &Registry) {
    server
        .apply(&seed::registry_pull_secret(&registry.docker_config_json()))
        .unwrap();
    server
        .apply(&seed::image_repository(&registry.host(), "5m"))
        .unwrap();
    server.apply(&seed::semver_policy()).unwrap();
}

async fn wait_policy_tag(server: &KubeApiServer, reflector: &Controller, tag: &str) {
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
    serve: &Controller,
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

/// Pushes `tags`, has the reflector scan again (what `flux reconcile` does) and waits
/// until the policy selects `latest`.
async fn publish(
    server: &KubeApiServer,
    registry: &Registry,
    reflector: &Controller,
    tags: &[&str],
    latest: &str,
) {
    registry.push_tags("team/checkout", tags).await.unwrap();
    request_reconcile(server, "imagerepository", "checkout");
    wait_policy_tag(server, reflector, latest).await;
}

/// Applies the seed's automation for `fleet`, starts the automation controller and waits
/// for its first run to end Ready=True; returns the controller and the automation then.
async fn first_run(
    server: &KubeApiServer,
    git: &GitHttpServer,
    reflector: &Controller,
    storage: &Path,
    log_dir: &Path,
) -> (Controller, Value) {
    apply_automation(server, git, "fleet");
    let serve = start_automation(server, storage, reflector.base(), log_dir).await;
    let a = wait_automation(server, &serve, "the first run Ready=True", |a| {
        condition(a, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    (serve, a)
}

/// Waits up to `limit` for `fleet`'s main to move off `seeded`; returns the new head.
async fn wait_new_head(
    git: &GitHttpServer,
    seeded: &str,
    serve: &Controller,
    limit: Duration,
) -> String {
    wait_for(
        "a commit on main",
        limit,
        || serve.log_text(),
        || async {
            git.repos()
                .head_commit("fleet", "main")
                .unwrap()
                .filter(|h| h != seeded)
        },
    )
    .await
}

/// The testbed with both charts' RBAC, the seed's tag 1.2.3 in the registry, the seed's
/// `fleet` repository and the reflector (Kubernetes mode, storage and log in `tmp`)
/// selecting 1.2.3.
struct KubeFleet {
    server: KubeApiServer,
    registry: Registry,
    git: GitHttpServer,
    /// `fleet`'s head as seeded.
    seeded: String,
    reflector: Controller,
    tmp: tempfile::TempDir,
}

impl KubeFleet {
    async fn start() -> Self {
        let (server, registry, git) = start_kube_testbed().await;
        install_chart_rbac(&server, "image-reflector-controller");
        install_chart_rbac(&server, "image-automation-controller");
        registry
            .push_tags("team/checkout", &["1.2.3"])
            .await
            .unwrap();
        let seeded = git
            .repos()
            .create("fleet", &seed_manifests(&registry.host()))
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        apply_reflector_objects(&server, &registry);
        let reflector = start_reflector(&server, &tmp.path().join("tags"), tmp.path()).await;
        wait_policy_tag(&server, &reflector, "1.2.3").await;
        Self {
            server,
            registry,
            git,
            seeded,
            reflector,
            tmp,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_automation_in_kubernetes_mode() {
    let KubeFleet {
        server,
        registry,
        git,
        seeded,
        reflector,
        tmp,
    } = KubeFleet::start().await;
    let repos = git.repos();

    // 1. The first run: 1.2.3 is what the repository has; nothing pushed.
    let storage = tmp.path().join("data");
    let (mut serve, a) = first_run(&server, &git, &reflector, &storage, tmp.path()).await;
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
    publish(
        &server,
        &registry,
        &reflector,
        &["1.3.0", "2.0.0", "1.2.4-rc.1"],
        "1.3.0",
    )
    .await;
    let seen = Instant::now();
    let head = wait_new_head(&git, &seeded, &serve, Duration::from_secs(20)).await;
    let policy_to_push = seen.elapsed();
    eprintln!("policy result seen on the API server -> pushed commit: {policy_to_push:?}");
    assert!(
        policy_to_push < Duration::from_secs(10),
        "{policy_to_push:?}"
    );

    // Exactly one commit, changing only the tag, with the seed's template over `.Updated`.
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    let image = registry.image("team/checkout");
    seed::assert_one_tag_update(
        repos,
        "fleet",
        &seeded,
        &head,
        CHECKOUT,
        &image,
        ("1.2.3", "1.3.0"),
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
    // The seed's template reads `.Updated`, which Flux v1 removed: rendered, and one
    // Warning for this generation (step 3 checks that later runs publish it no more).
    let deprecations: Vec<Value> = events(&server)
        .into_iter()
        .filter(|e| e["reason"] == "DeprecatedTemplateField")
        .collect();
    let [deprecation] = deprecations.as_slice() else {
        panic!("{deprecations:#?}");
    };
    assert_eq!(deprecation["type"], "Warning", "{deprecation:#}");
    let text = deprecation["message"].as_str().unwrap_or_default();
    for part in [
        "spec.git.commit.messageTemplate",
        "'.Updated'",
        "'.Changed'",
    ] {
        assert!(text.contains(part), "{deprecation:#}");
    }

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
    // Three runs saw the `.Updated` template of generation 1: one deprecation published
    // (each is logged as it is published).
    assert_eq!(
        serve.log_text().matches("DeprecatedTemplateField").count(),
        1,
        "{}",
        serve.log_text()
    );

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
    publish(&server, &registry, &reflector, &["1.4.0"], "1.4.0").await;
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
        .process_mut()
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
    let serve = start_automation(&server, &tmp.path().join("data"), &nobody, tmp.path()).await;

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

/// Issue 12, problem 4 in Kubernetes mode: a damaged git cache (garbled refs and packs) is
/// quarantined and cloned again in the same run, with a Warning event on the automation
/// and the recovery counted in `/metrics`; the push is exactly the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_git_cache_is_quarantined_with_a_warning_event() {
    let KubeFleet {
        server,
        registry,
        git,
        seeded,
        reflector,
        tmp,
    } = KubeFleet::start().await;
    let repos = git.repos();
    let storage = tmp.path().join("data");
    let (serve, _) = first_run(&server, &git, &reflector, &storage, tmp.path()).await;

    // Damage the cache behind the controller's back: every ref and every pack.
    let cache = std::fs::read_dir(storage.join("git"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("objects").is_dir())
        .expect("a cached repository");
    let mut damaged = 0;
    let mut dirs = vec![cache.join("refs"), cache.join("objects/pack")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let len = std::fs::metadata(&path).unwrap().len() as usize;
                std::fs::write(&path, vec![b'#'; len.max(1)]).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 1, "nothing damaged in {}", cache.display());

    publish(&server, &registry, &reflector, &["1.3.0"], "1.3.0").await;
    let head = wait_new_head(&git, &seeded, &serve, WAIT).await;
    seed::assert_one_tag_update(
        repos,
        "fleet",
        &seeded,
        &head,
        CHECKOUT,
        &registry.image("team/checkout"),
        ("1.2.3", "1.3.0"),
    );
    let warning = wait_for(
        "the GitCacheRecovered event",
        WAIT,
        || format!("{:#?}\nlog:\n{}", events(&server), serve.log_text()),
        || async {
            events(&server)
                .into_iter()
                .find(|e| e["type"] == "Warning" && e["reason"] == "GitCacheRecovered")
        },
    )
    .await;
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("damaged") && message.contains("cloning again"),
        "{message}"
    );
    assert!(!message.contains(git.password()), "{message}");
    let metrics = serve.metrics().await;
    assert!(
        metrics.contains(r#"image_automation_git_cache_recoveries_total{kind="quarantined"} 1"#),
        "{metrics}"
    );
}

/// Issue 12, problem 7 in Kubernetes mode: SIGTERM while the git server hangs (accepts,
/// never answers; the GitRepository timeout is Flux's default minute) ends the process well
/// within the chart's 10 s grace period, and the log says what was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_hanging_git_server_ends_within_seconds() {
    let KubeFleet {
        server,
        git,
        reflector,
        tmp,
        ..
    } = KubeFleet::start().await;
    let proxy = serve_common::SlowProxy::start(git.port()).await;
    proxy.set(serve_common::HANG);
    server
        .apply(&seed::git_credentials_secret(
            "flux-system",
            git.username(),
            git.password(),
        ))
        .unwrap();
    let source = seed::git_repository("flux-system", &proxy.url(&git, "fleet"), "flux-system")
        .replacen("  interval: 1m\n", "  interval: 1m\n  timeout: 60s\n", 1);
    server.apply(&source).unwrap();
    server
        .apply(&seed::image_update_automation(
            AUTOMATION,
            "flux-system",
            "main",
        ))
        .unwrap();
    let mut serve = start_automation(
        &server,
        &tmp.path().join("data"),
        reflector.base(),
        tmp.path(),
    )
    .await;
    let connected = serve_common::eventually(Duration::from_secs(30), || {
        proxy.accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    assert!(connected, "{}", serve.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    let status = serve.process_mut().terminate(Duration::from_secs(5));
    let took = sent.elapsed();
    let log = serve.log_text();
    assert!(
        status.is_some(),
        "still running {took:?} after SIGTERM with a hanging git server:\n{log}"
    );
    eprintln!("Kubernetes mode: exit {took:?} after SIGTERM with a hanging git server");
    assert!(
        log.contains("abandoned") || log.contains("cancelled"),
        "the log does not say what was stopped:\n{log}"
    );
}
