#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The seed procedure without Kubernetes: the REAL testbed registry (htpasswd), the REAL
//! `image-reflector serve --manifests` process, the testbed's smart-HTTP git server (basic
//! auth), and `image-automation serve --manifests ... --reflector-url ...` as a process.
//!
//! The image-reflector binary: `cargo test` builds only this package's binaries, so the
//! reflector is taken from the shared target directory (`target/<profile>/image-reflector`,
//! next to this test's `deps/`), as `cargo test --workspace` or `cargo build` leave it. When
//! it is missing it is built with `cargo build -p image-reflector` into a separate target
//! directory (the outer cargo holds the lock on the shared one while tests run); see
//! `testbed::controllers::reflector_binary`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use api_types::http_api::ImagePolicyInfo;
use serde_json::Value;
use testbed::controllers::{reflector_binary, serve_manifests_command, start_serving};
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::process::{Process, free_port};
use testbed::registry::{Registry, RegistryOptions};
use testbed::seed;

const WAIT: Duration = Duration::from_secs(60);
const CHECKOUT: &str = "clusters/prod/checkout.yaml";

/// A running `image-reflector serve --manifests`; killed on drop.
struct Reflector {
    process: Process,
    base: String,
}

impl Reflector {
    async fn start(manifests: &Path, storage: &Path, log_dir: &Path) -> Self {
        let port = free_port().unwrap();
        let command = serve_manifests_command(&reflector_binary(), manifests, storage, port);
        let log = log_dir.join("reflector.log");
        let (process, base) =
            start_serving("image-reflector", command, port, &log, "/healthz", WAIT).await;
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

/// Writes the reflector's manifests to `tmp/reflector`, starts the reflector on them and
/// waits until the policy selects 1.2.3; returns the manifests' directory and the process.
async fn start_seeded_reflector(tmp: &Path, registry: &Registry) -> (PathBuf, Reflector) {
    let reflector_dir = tmp.join("reflector");
    std::fs::create_dir_all(&reflector_dir).unwrap();
    write_reflector_manifests(&reflector_dir, registry, None);
    let reflector = Reflector::start(&reflector_dir, &tmp.join("tags"), tmp).await;
    reflector.wait_tag("1.2.3").await;
    (reflector_dir, reflector)
}

/// The reflector's manifests: the seed's Secret, ImageRepository and semver ImagePolicy.
fn write_reflector_manifests(dir: &Path, registry: &Registry, requested_at: Option<&str>) {
    let mut repository = seed::image_repository(&registry.host(), "5m");
    if let Some(t) = requested_at {
        let namespace = format!("  namespace: {}\n", seed::NAMESPACE);
        repository = repository.replacen(
            &namespace,
            &format!("{namespace}  annotations:\n    reconcile.fluxcd.io/requestedAt: \"{t}\"\n"),
            1,
        );
        assert!(repository.contains(t), "{repository}");
    }
    std::fs::write(
        dir.join("image.yaml"),
        [
            seed::registry_pull_secret(&registry.docker_config_json()),
            repository,
            seed::semver_policy(),
        ]
        .join("---\n"),
    )
    .unwrap();
}

/// The automation's manifests: GitRepository + Secret + the seed's v1beta1
/// ImageUpdateAutomation, pushing to `push_branch`.
fn write_automation_manifests(dir: &Path, git: &GitHttpServer, repo: &str, push_branch: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("source.yaml"),
        [
            seed::git_repository("flux-system", &git.url(repo), "flux-system"),
            seed::git_credentials_secret("flux-system", git.username(), git.password()),
        ]
        .join("---\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("automation.yaml"),
        seed::image_update_automation("flux-image-updates", "flux-system", push_branch),
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

/// The registry (htpasswd) with the seed's first tag, 1.2.3, and the git server with the
/// seed's repository `fleet` (image lines at 1.2.3); returns them and `fleet`'s head.
async fn seeded_fleet() -> (Registry, GitHttpServer, String) {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("team/checkout", &["1.2.3"])
        .await
        .unwrap();
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let seeded = git
        .repos()
        .create("fleet", &seed_manifests(&registry.host()))
        .unwrap();
    (registry, git, seeded)
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_procedure_one_commit_templated_then_noop_and_pr_branch() {
    let (registry, git, seeded) = seeded_fleet().await;
    let repos = git.repos();
    repos
        .create("fleet-pr", &seed_manifests(&registry.host()))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (reflector_dir, reflector) = start_seeded_reflector(tmp.path(), &registry).await;

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
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    let image = registry.image("team/checkout");
    // The seed's template over `.Updated`, the seed's author.
    seed::assert_one_tag_update(
        repos,
        "fleet",
        &seeded,
        &head,
        CHECKOUT,
        &image,
        ("1.2.3", "1.3.0"),
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
    let (registry, git, seeded) = seeded_fleet().await;
    let repos = git.repos();
    let tmp = tempfile::tempdir().unwrap();
    let (reflector_dir, reflector) = start_seeded_reflector(tmp.path(), &registry).await;

    let manifests = tmp.path().join("automation");
    write_automation_manifests(&manifests, &git, "fleet", "main");
    let port = free_port().unwrap();
    let log = tmp.path().join("automation.log");
    let program = Path::new(env!("CARGO_BIN_EXE_image-automation"));
    let mut command = serve_manifests_command(program, &manifests, &tmp.path().join("data"), port);
    command
        .args(["--reflector-url", &reflector.base])
        .env("RUST_LOG", "debug");
    // Ready after the first run of every automation (which finds nothing to do).
    let (process, base) = start_serving(
        "image-automation serve",
        command,
        port,
        &log,
        "/readyz",
        WAIT,
    )
    .await;
    let mut automation = Automation { process, base };
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
