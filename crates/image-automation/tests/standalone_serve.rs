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

mod serve_common;

use std::path::Path;
use std::time::{Duration, Instant};

use serve_common::{
    CHECKOUT, Reflector, WAIT, automation_program, only, run_once_summary, seeded_fleet,
    write_automation_manifests, write_reflector_manifests,
};
use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::git::{GitHttpServer, GitHttpServerOptions, seed_manifests};
use testbed::process::{Process, free_port};
use testbed::seed;

/// The automation's manifests for the served repository `repo`, pushing to `push_branch`.
fn write_manifests(dir: &Path, git: &GitHttpServer, repo: &str, push_branch: &str) {
    let credentials = (git.username(), git.password());
    write_automation_manifests(dir, &git.url(repo), credentials, None, push_branch);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_procedure_one_commit_templated_then_noop_and_pr_branch() {
    let (registry, git, seeded) = seeded_fleet(&[]).await;
    let repos = git.repos();
    repos
        .create("fleet-pr", &seed_manifests(&registry.host()))
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let reflector = Reflector::start(tmp.path(), &registry, "1.2.3").await;

    let manifests = tmp.path().join("automation");
    write_manifests(&manifests, &git, "fleet", "main");
    let storage = tmp.path().join("data");

    // 1.2.3 is what the repository has: nothing to do.
    let (ok, summary, log) = run_once_summary(&manifests, &storage, &reflector.base);
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
    write_reflector_manifests(&reflector.dir, &registry, Some("2026-01-01T00:00:00Z"));
    reflector.wait_tag("1.3.0").await;

    let (ok, summary, log) = run_once_summary(&manifests, &storage, &reflector.base);
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
    let (ok, summary, log) = run_once_summary(&manifests, &storage, &reflector.base);
    let a = only(&summary);
    assert!(ok, "{summary:#}\n{log}");
    assert_eq!(a["pushed"], false);
    assert_eq!(a["changes"], 0);
    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(head));

    // The PR-gated path: push.branch flux-image-updates leaves main untouched.
    let pr = tmp.path().join("automation-pr");
    write_manifests(&pr, &git, "fleet-pr", "flux-image-updates");
    let main_before = repos.head_commit("fleet-pr", "main").unwrap();
    let (ok, summary, log) = run_once_summary(&pr, &storage, &reflector.base);
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
    write_manifests(&manifests, &git, "fleet", "main");
    let port = free_port().unwrap();
    let (ok, summary, log) = run_once_summary(
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
    let (registry, git, seeded) = seeded_fleet(&[]).await;
    let repos = git.repos();
    let tmp = tempfile::tempdir().unwrap();
    let reflector = Reflector::start(tmp.path(), &registry, "1.2.3").await;

    let manifests = tmp.path().join("automation");
    write_manifests(&manifests, &git, "fleet", "main");
    let port = free_port().unwrap();
    let log = tmp.path().join("automation.log");
    let mut command = serve_manifests_command(
        automation_program(),
        &manifests,
        &tmp.path().join("data"),
        port,
    );
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
    write_reflector_manifests(&reflector.dir, &registry, Some("2026-01-01T00:00:00Z"));
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
