#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The seed procedure without Kubernetes: the REAL testbed registry (htpasswd), the REAL
//! `image-reflector serve --manifests` process, the testbed's smart-HTTP git server (basic
//! auth), and `image-automation serve --manifests ... --reflector-url ...` as a process.
//!
//! The image-reflector binary: `cargo test` builds only this package's binaries, so the
//! reflector is taken from the shared target directory (`target/<profile>/image-reflector`,
//! next to this test's `deps/`), as `cargo test --workspace` or `cargo build` leave it. When
//! it is missing it is built with `cargo build -p image-reflector` into a separate target
//! directory (the outer cargo holds the lock on the shared one while tests run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use api_types::http_api::ImagePolicyInfo;
use base64::Engine as _;
use serde_json::Value;
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::process::{Process, free_port};
use testbed::registry::{Registry, RegistryOptions};

const WAIT: Duration = Duration::from_secs(60);
const CHECKOUT: &str = "clusters/prod/checkout.yaml";

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

/// A running `image-reflector serve --manifests`; killed on drop.
struct Reflector {
    process: Process,
    base: String,
}

impl Reflector {
    async fn start(manifests: &Path, storage: &Path, log_dir: &Path) -> Self {
        let port = free_port().unwrap();
        let log = log_dir.join("reflector.log");
        let mut command = Command::new(reflector_binary());
        command
            .arg("serve")
            .arg("--manifests")
            .arg(manifests)
            .arg("--storage-path")
            .arg(storage)
            .args(["--http-addr", &format!("127.0.0.1:{port}")]);
        let mut process = Process::spawn("image-reflector", command, &log).unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let healthz = format!("{base}/healthz");
        process
            .wait_ready(WAIT, || http_ok(&healthz))
            .await
            .unwrap_or_else(|err| panic!("reflector never answered: {err}"));
        Self { process, base }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    async fn wait_tag(&self, tag: &str) {
        let url = format!(
            "{}/api/v1/namespaces/flux-system/imagepolicies/checkout",
            self.base
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let current = match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => r.json::<ImagePolicyInfo>().await.ok(),
                _ => None,
            };
            if current
                .as_ref()
                .and_then(|p| p.latest_ref.as_ref())
                .is_some_and(|r| r.tag == tag)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "policy never resolved to {tag}; last {current:?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// True when `GET url` answers with a success status.
async fn http_ok(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The reflector's manifests: the seed's Secret, ImageRepository and semver ImagePolicy.
fn write_reflector_manifests(dir: &Path, registry: &Registry, requested_at: Option<&str>) {
    let config = base64::engine::general_purpose::STANDARD.encode(registry.docker_config_json());
    let annotations = requested_at
        .map(|t| format!("  annotations:\n    reconcile.fluxcd.io/requestedAt: \"{t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("image.yaml"),
        format!(
            "apiVersion: v1
kind: Secret
metadata:
  name: registry-pull
  namespace: flux-system
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {config}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: checkout
  namespace: flux-system
{annotations}spec:
  image: {image}
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
  imageRepositoryRef:
    name: checkout
  policy:
    semver:
      range: '>=1.0.0 <2.0.0'
",
            image = registry.image("team/checkout")
        ),
    )
    .unwrap();
}

/// The automation's manifests: GitRepository + Secret + the seed's v1beta1
/// ImageUpdateAutomation, pushing to `push_branch`.
fn write_automation_manifests(dir: &Path, git: &GitHttpServer, repo: &str, push_branch: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("source.yaml"),
        format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
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
",
            url = git.url(repo),
            user = git.username(),
            password = git.password()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("automation.yaml"),
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta1
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
      ref: {{ branch: main }}
    commit:
      author:
        name: fluxcdbot
        email: fluxcdbot@users.noreply.github.com
      messageTemplate: |
        Auto-update images
        {{{{ range .Updated.Images }}}}
        - {{{{.}}}}
        {{{{ end }}}}
    push:
      branch: {push_branch}
  update:
    path: ./clusters/prod
    strategy: Setters
"
        ),
    )
    .unwrap();
}

fn automation_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_image-automation"))
}

/// `image-automation serve --once`: (exit success, summary, stderr).
fn run_once(manifests: &Path, storage: &Path, reflector_url: &str) -> (bool, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = automation_bin()
        .arg("serve")
        .arg("--manifests")
        .arg(manifests)
        .arg("--storage-path")
        .arg(storage)
        .args(["--reflector-url", reflector_url, "--once"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let summary: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}\n{stderr}"));
    (status.success(), summary, stderr)
}

fn only(summary: &Value) -> &Value {
    let list = summary["automations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{summary:#}");
    &list[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_procedure_one_commit_templated_then_noop_and_pr_branch() {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = git.repos();
    let seeded = repos
        .create("fleet", &seed_manifests(&registry.host()))
        .unwrap();
    repos
        .create("fleet-pr", &seed_manifests(&registry.host()))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let reflector_dir = tmp.path().join("reflector");
    std::fs::create_dir_all(&reflector_dir).unwrap();
    write_reflector_manifests(&reflector_dir, &registry, None);
    let reflector = Reflector::start(&reflector_dir, &tmp.path().join("tags"), tmp.path()).await;
    reflector.wait_tag("1.2.3").await;

    let manifests = tmp.path().join("automation");
    write_automation_manifests(&manifests, &git, "fleet", "main");
    let storage = tmp.path().join("data");

    // 1.2.3 is what the repository has: nothing to do.
    let (ok, summary, log) = run_once(&manifests, &storage, &reflector.base);
    let a = only(&summary);
    assert!(ok, "{summary:#}\n{log}");
    assert_eq!(a["ready"], true);
    assert_eq!(a["reason"], "Succeeded");
    assert_eq!(a["message"], "repository up-to-date");
    assert_eq!(a["changes"], 0);
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );

    // The seed's tags: the range blocks the major, the pre-release is ignored.
    registry
        .push_tags("team/checkout", &["1.3.0", "2.0.0", "1.2.4-rc.1"])
        .await
        .unwrap();
    write_reflector_manifests(&reflector_dir, &registry, Some("2026-01-01T00:00:00Z"));
    reflector.wait_tag("1.3.0").await;

    let (ok, summary, log) = run_once(&manifests, &storage, &reflector.base);
    let a = only(&summary);
    assert!(ok, "{summary:#}\n{log}");
    assert_eq!(a["namespace"], "flux-system");
    assert_eq!(a["name"], "flux-image-updates");
    assert_eq!(a["changes"], 1, "{summary:#}");
    assert_eq!(a["pushed"], true);
    let changed: Vec<&str> = a["changedFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].ends_with("checkout.yaml"), "{changed:?}");
    // The fixture's other markers name policies that do not exist here: reported with
    // their place; the unmarked ConfigMap appears nowhere.
    let unmatched = a["unmatched"].as_array().unwrap();
    assert!(
        unmatched
            .iter()
            .any(|u| u["setter"] == "flux-system:sidecar" && u["line"].as_u64().is_some()),
        "{summary:#}"
    );
    assert!(!summary.to_string().contains("configmap"), "{summary:#}");

    // Exactly one new commit on main, changing only the tag.
    let head = repos.head_commit("fleet", "main").unwrap().unwrap();
    assert_eq!(a["lastPushCommit"], head.as_str());
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
    assert_ne!(after, before);
    let files = repos.files_at("fleet", &head).unwrap();
    assert_eq!(files, repos.files_at("fleet", &seeded).unwrap());
    for f in files.iter().filter(|f| f.as_str() != CHECKOUT) {
        assert_eq!(
            repos.file_at("fleet", &head, f).unwrap(),
            repos.file_at("fleet", &seeded, f).unwrap(),
            "{f} changed"
        );
    }
    // The seed's template over `.Updated`.
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
    // No credential in the logs.
    assert!(!log.contains(git.password()), "git password logged");
    assert!(
        !log.contains(registry.password().unwrap()),
        "registry password logged"
    );

    // A second run pushes nothing.
    let (ok, summary, log) = run_once(&manifests, &storage, &reflector.base);
    let a = only(&summary);
    assert!(ok, "{summary:#}\n{log}");
    assert_eq!(a["pushed"], false);
    assert_eq!(a["changes"], 0);
    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(head));

    // The PR-gated path: push.branch flux-image-updates leaves main untouched.
    let pr = tmp.path().join("automation-pr");
    write_automation_manifests(&pr, &git, "fleet-pr", "flux-image-updates");
    let main_before = repos.head_commit("fleet-pr", "main").unwrap();
    let (ok, summary, log) = run_once(&pr, &storage, &reflector.base);
    assert!(ok, "{summary:#}\n{log}");
    assert_eq!(only(&summary)["pushed"], true);
    assert_eq!(repos.head_commit("fleet-pr", "main").unwrap(), main_before);
    let branch = repos
        .head_commit("fleet-pr", "flux-image-updates")
        .unwrap()
        .unwrap();
    assert_eq!(
        repos.commit_parents("fleet-pr", &branch).unwrap(),
        vec![main_before.unwrap()]
    );
    assert!(
        repos
            .file_at("fleet-pr", &branch, CHECKOUT)
            .unwrap()
            .unwrap()
            .contains(&format!("{image}:1.3.0 #"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_reflector_is_dependency_not_ready_and_pushes_nothing() {
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let seeded = git
        .repos()
        .create("fleet", &seed_manifests("127.0.0.1:5000"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("automation");
    write_automation_manifests(&manifests, &git, "fleet", "main");
    let port = free_port().unwrap();
    let (ok, summary, log) = run_once(
        &manifests,
        &tmp.path().join("data"),
        &format!("http://127.0.0.1:{port}"),
    );
    assert!(!ok, "{summary:#}");
    let a = only(&summary);
    assert_eq!(a["ready"], false);
    assert_eq!(a["reason"], "DependencyNotReady", "{summary:#}\n{log}");
    assert_eq!(
        git.repos().head_commit("fleet", "main").unwrap(),
        Some(seeded)
    );
}

/// A running `image-automation serve` (long-running); killed on drop.
struct Automation {
    process: Process,
    base: String,
}

impl Automation {
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn long_running_mode_reacts_to_a_new_tag_through_the_feed() {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = git.repos();
    let seeded = repos
        .create("fleet", &seed_manifests(&registry.host()))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let reflector_dir = tmp.path().join("reflector");
    std::fs::create_dir_all(&reflector_dir).unwrap();
    write_reflector_manifests(&reflector_dir, &registry, None);
    let reflector = Reflector::start(&reflector_dir, &tmp.path().join("tags"), tmp.path()).await;
    reflector.wait_tag("1.2.3").await;

    let manifests = tmp.path().join("automation");
    write_automation_manifests(&manifests, &git, "fleet", "main");
    let port = free_port().unwrap();
    let log = tmp.path().join("automation.log");
    let mut command = automation_bin();
    command
        .arg("serve")
        .arg("--manifests")
        .arg(&manifests)
        .arg("--storage-path")
        .arg(tmp.path().join("data"))
        .args(["--reflector-url", &reflector.base])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug");
    let mut automation = Automation {
        process: Process::spawn("image-automation serve", command, &log).unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    // Ready after the first run of every automation (which finds nothing to do).
    let readyz = format!("{}/readyz", automation.base);
    automation
        .process
        .wait_ready(WAIT, || http_ok(&readyz))
        .await
        .unwrap_or_else(|err| panic!("never ready: {err}"));
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );

    // A new tag: the interval is 1m, so only the change feed can start a run in time.
    registry
        .push_tags("team/checkout", &["1.3.0"])
        .await
        .unwrap();
    write_reflector_manifests(&reflector_dir, &registry, Some("2026-01-01T00:00:00Z"));
    reflector.wait_tag("1.3.0").await;
    let seen = Instant::now();
    let head = loop {
        let head = repos.head_commit("fleet", "main").unwrap();
        if head.as_deref() != Some(seeded.as_str()) {
            break head.unwrap();
        }
        assert!(
            seen.elapsed() < Duration::from_secs(10),
            "no commit within 10s of the policy change:\n{}",
            automation.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        seen.elapsed() < Duration::from_secs(5),
        "{:?}",
        seen.elapsed()
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    assert!(
        repos
            .file_at("fleet", &head, CHECKOUT)
            .unwrap()
            .unwrap()
            .contains(":1.3.0 #")
    );

    // The run records its metrics when it returns, just after the push: poll briefly.
    let pushed =
        "image_automation_pushes_total{name=\"flux-image-updates\",namespace=\"flux-system\"} 1";
    let polled = Instant::now();
    let metrics = loop {
        let metrics = reqwest::get(format!("{}/metrics", automation.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(pushed) || polled.elapsed() > Duration::from_secs(10) {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains(pushed), "{metrics}");
    assert!(metrics.contains("gotk_reconcile_duration_seconds"));
    assert!(!automation.log_text().contains(git.password()));

    // SIGTERM: a clean exit.
    let status = automation
        .process
        .terminate(Duration::from_secs(15))
        .expect("no exit after SIGTERM");
    assert!(status.success(), "{status}\n{}", automation.log_text());
}
