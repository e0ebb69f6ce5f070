#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The seed procedure (the operator's how-to in /work/shared/seeds) end to end, on the
//! testbed: a real kube-apiserver, a real registry behind htpasswd with the dockerconfigjson
//! Secret `registry-pull`, a real git server (smart HTTP, basic auth), real Prometheus, and
//! both controllers as real processes in Kubernetes mode.
//!
//! The controllers run exactly as their charts run them: both charts are installed with real
//! Helm (helm-sdkpy through `e2e/helm/render.py`, as `crates/testbed/tests/charts.rs` does),
//! each controller authenticates with a token of its chart's ServiceAccount (so it has its
//! chart's RBAC and nothing else) and gets its chart Deployment's arguments, with only the
//! listen address, storage directory and reflector URL pointed at this machine.
//!
//! The user's manifests are the how-to's, from `testbed::seed`, applied with `kubectl` as
//! the admin. Each numbered step prints its name and fails with a message saying what the
//! user would have seen go wrong.
//!
//! Binaries: `cargo test --workspace` builds both controllers' binaries next to this test's
//! `deps/` directory; `make e2e` builds them before running the test. A missing or stale
//! binary fails the test with the command to run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::controllers::{
    self, Controller, condition, get, helm_install, kubectl, request_reconcile, start_kube_testbed,
};
use testbed::git::BareRepos;
use testbed::kube_apiserver::KubeApiServer;
use testbed::process::free_port;
use testbed::prometheus::{Prometheus, ScrapeTarget};
use testbed::seed;
use testbed::wait::wait_for_every;

const WAIT: Duration = Duration::from_secs(60);
const REFLECTOR: &str = "image-reflector-controller";
const AUTOMATION: &str = "image-automation-controller";
/// The how-to's second policy shape (build tags with a timestamp prefix).
const TIMESTAMP_POLICY: &str = "checkout-build";
/// The gitops repository the main automation pushes to, and the one of the PR-gated path.
const REPO: &str = "gitops";
const PR_REPO: &str = "gitops-pr";
/// The how-to's automation (pushes to main) and the PR-gated one.
const AUTOMATION_MAIN: &str = "flux-image-updates";
const AUTOMATION_PR: &str = "flux-image-updates-pr";
const PR_BRANCH: &str = "flux-image-updates";
/// A copy whose marker names a policy that does not exist (a typo): reported, not applied.
const TYPO_FILE: &str = "clusters/prod/checkout-typo.yaml";
const TYPO_POLICY: &str = "flux-system:chekout";
/// The line of the image (and so of the marker) in the seed Deployment.
const IMAGE_LINE: usize = 18;

fn step(number: &str, what: &str, started: Instant) {
    eprintln!(
        "e2e [{:>6.1}s] step {number}: {what}",
        started.elapsed().as_secs_f64()
    );
}

/// `target/<profile>/NAME`, next to this test's `deps/`; fails when it is missing or older
/// than one of the sources it was built from (cargo's dep-info file `NAME.d` lists them).
/// Cargo holds the target directory's lock while tests run, so the test cannot build it.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    let build = "cargo build -p image-reflector -p image-automation --bins` (or `make e2e`";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: run {build}", path.display()));
    let dep_info = std::fs::read_to_string(profile_dir.join(format!("{name}.d")))
        .unwrap_or_else(|e| panic!("{name}.d next to {}: {e}", path.display()));
    let sources = dep_info
        .split_once(": ")
        .map(|(_, deps)| deps)
        .unwrap_or_default();
    for source in sources.split_whitespace().map(Path::new) {
        let changed = std::fs::metadata(source).and_then(|m| m.modified());
        if changed.is_ok_and(|changed| changed > built) {
            panic!(
                "{} is older than {}: run {build} so the test runs the current code",
                path.display(),
                source.display()
            );
        }
    }
    path
}

/// The events about `kind/name` in flux-system, as `(reason, message)`.
fn events(server: &KubeApiServer, kind: &str, name: &str) -> Vec<(String, String)> {
    let list: Value = serde_json::from_str(&kubectl(
        server,
        &[
            "get",
            "events",
            "-n",
            seed::NAMESPACE,
            "--field-selector",
            &format!("involvedObject.kind={kind},involvedObject.name={name}"),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// How much of a controller's log a failure message shows.
const LOG_LINES: usize = 60;
/// How often the waits poll: each check runs `kubectl`, so not too often.
const POLL: Duration = Duration::from_millis(250);

/// `wait_for` at [`POLL`].
async fn wait_for<T, Fut>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    check: impl Fn() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for_every(what, timeout, POLL, context, check).await
}

/// Starts `binary ARGS` with `KUBECONFIG` = `kubeconfig` and waits for `/readyz`.
async fn start_controller(
    component: &'static str,
    binary: &Path,
    args: &[String],
    kubeconfig: &Path,
    port: u16,
    log: &Path,
) -> Controller {
    let mut command = Command::new(binary);
    command.args(args).env_remove("RUST_LOG");
    Controller::start(component, command, kubeconfig, port, log, WAIT).await
}

/// A kubeconfig authenticating as the ServiceAccount `name` of flux-system (a token from
/// the TokenRequest API), so a controller has exactly its chart's RBAC.
fn service_account_kubeconfig(server: &KubeApiServer, name: &str) -> PathBuf {
    let token = kubectl(
        server,
        &[
            "create",
            "token",
            name,
            "-n",
            seed::NAMESPACE,
            "--duration=2h",
        ],
    );
    let token = token.trim();
    assert!(!token.is_empty(), "no token for ServiceAccount {name}");
    let path = server.dir().join(format!("{name}.kubeconfig"));
    let user = format!("system:serviceaccount:{}:{name}", seed::NAMESPACE);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: {user}\n    namespace: {ns}\n\
             current-context: testbed\n",
            url = server.url(),
            ns = seed::NAMESPACE,
        ),
    )
    .unwrap();
    path
}

/// `kubectl auth can-i` with `kubeconfig`'s own identity.
fn can_i(kubeconfig: &Path, check: &str) -> bool {
    let mut kubectl = Command::new(testbed::tools::kubectl().unwrap());
    kubectl.arg("--kubeconfig").arg(kubeconfig);
    controllers::can_i(kubectl, seed::NAMESPACE, check)
}

/// The chart Deployment's container arguments, with `--flag=value` replaced for each
/// `(flag, value)` of `local` (a flag the chart does not set fails the test).
fn chart_args(server: &KubeApiServer, deployment: &str, local: &[(&str, String)]) -> Vec<String> {
    let deploy = get(server, "deployment", deployment);
    let mut args: Vec<String> = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap_or_else(|| panic!("no args in the chart's Deployment: {deploy}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    for (flag, value) in local {
        let prefix = format!("{flag}=");
        let arg = args
            .iter_mut()
            .find(|a| a.starts_with(&prefix))
            .unwrap_or_else(|| panic!("the {deployment} chart does not set {flag}"));
        *arg = format!("{flag}={value}");
    }
    args
}

/// Waits until the ImagePolicy `name`'s status names `tag`; returns the object.
async fn wait_policy_tag(
    server: &KubeApiServer,
    reflector: &Controller,
    name: &str,
    tag: &str,
    timeout: Duration,
) -> Value {
    wait_for(
        &format!("ImagePolicy {}/{name} to select {tag}", seed::NAMESPACE),
        timeout,
        || {
            format!(
                "policy: {}\nreflector log:\n{}",
                get(server, "imagepolicy", name),
                reflector.log_tail(LOG_LINES)
            )
        },
        || async {
            let policy = get(server, "imagepolicy", name);
            (policy["status"]["latestRef"]["tag"] == tag).then_some(policy)
        },
    )
    .await
}

/// Prometheus has scraped `job`: `query` has exactly one sample, and the job's
/// reconcile durations for `kind` are there.
async fn assert_scraped(prometheus: &Prometheus, job: &str, query: &str, kind: &str) {
    let samples = prometheus.wait_for(query, WAIT).await.unwrap();
    assert_eq!(samples.len(), 1, "{query}: {samples:?}");
    prometheus
        .wait_for(
            &format!(r#"gotk_reconcile_duration_seconds_count{{job="{job}",kind="{kind}"}}"#),
            WAIT,
        )
        .await
        .unwrap();
}

/// The files of both gitops repositories: the seed's, plus a copy whose marker has a typo.
fn repository_files(registry_host: &str) -> Vec<(String, String)> {
    let typo = seed::deployment(registry_host, "1.2.3")
        .replace(
            "name: checkout\n  namespace",
            "name: checkout-typo\n  namespace",
        )
        .replace("flux-system:checkout\"}", &format!("{TYPO_POLICY}\"}}"));
    assert!(typo.contains(TYPO_POLICY), "{typo}");
    seed::repository_files(registry_host, "1.2.3", &[(TYPO_FILE, typo.as_str())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_procedure_end_to_end() {
    let started = Instant::now();
    let reflector_bin = binary("image-reflector");

    // The testbed.
    step(
        "0",
        "testbed: kube-apiserver, registry (htpasswd), git server",
        started,
    );
    let (server, registry, git) = start_kube_testbed().await;
    let host = registry.host();
    let image = registry.image(seed::IMAGE_PATH);
    registry
        .push_tags(
            seed::IMAGE_PATH,
            &["1.2.3", "2026.05.30-0a1b2c3", "2026.06.01-abc1234"],
        )
        .await
        .unwrap();
    let repos: &BareRepos = git.repos();
    let files = repository_files(&host);
    let seeded = repos.create(REPO, &files).unwrap();
    let pr_seeded = repos.create(PR_REPO, &files).unwrap();
    let work = tempfile::tempdir().unwrap();

    // Step 1 of the how-to: install the controllers (their charts, with real Helm).
    step(
        "1",
        "helm install both charts; controllers get their charts' RBAC",
        started,
    );
    helm_install(&server, REFLECTOR, &json!({}));
    helm_install(&server, AUTOMATION, &json!({}));
    // The how-to's first check.
    let deployments = kubectl(
        &server,
        &[
            "-n",
            seed::NAMESPACE,
            "get",
            "deploy",
            REFLECTOR,
            AUTOMATION,
            "-o",
            "name",
        ],
    );
    assert_eq!(
        deployments.lines().collect::<Vec<_>>(),
        [
            format!("deployment.apps/{REFLECTOR}"),
            format!("deployment.apps/{AUTOMATION}")
        ],
        "`kubectl -n flux-system get deploy {REFLECTOR} {AUTOMATION}`"
    );
    let reflector_kubeconfig = service_account_kubeconfig(&server, REFLECTOR);
    let automation_kubeconfig = service_account_kubeconfig(&server, AUTOMATION);
    // The tokens carry the charts' RBAC, not more: each controller is denied the other's
    // objects and any write to Secrets.
    for (kubeconfig, allowed, denied) in [
        (
            &reflector_kubeconfig,
            "patch imagepolicies.image.toolkit.fluxcd.io --subresource=status",
            "list imageupdateautomations.image.toolkit.fluxcd.io",
        ),
        (
            &automation_kubeconfig,
            "patch imageupdateautomations.image.toolkit.fluxcd.io --subresource=status",
            "list imagerepositories.image.toolkit.fluxcd.io",
        ),
    ] {
        assert!(
            can_i(kubeconfig, allowed),
            "{}: cannot {allowed}",
            kubeconfig.display()
        );
        assert!(
            !can_i(kubeconfig, denied),
            "{}: can {denied}",
            kubeconfig.display()
        );
        assert!(
            !can_i(kubeconfig, "create secrets"),
            "{}: can create secrets",
            kubeconfig.display()
        );
    }

    // Steps 2 and 3: the registry credentials, the ImageRepository and both policies.
    step(
        "2-3",
        "apply registry-pull, ImageRepository, both ImagePolicies",
        started,
    );
    server
        .apply(&seed::registry_pull_secret(&registry.docker_config_json()))
        .unwrap();
    // A long interval: only the reconcile annotation can make new tags show up in time.
    server.apply(&seed::image_repository(&host, "1h")).unwrap();
    server.apply(&seed::semver_policy()).unwrap();
    server
        .apply(&seed::timestamp_policy(TIMESTAMP_POLICY))
        .unwrap();

    let reflector_port = free_port().unwrap();
    let automation_port = free_port().unwrap();
    let reflector_args = chart_args(
        &server,
        REFLECTOR,
        &[
            ("--http-addr", format!("127.0.0.1:{reflector_port}")),
            (
                "--storage-path",
                work.path().join("reflector").display().to_string(),
            ),
        ],
    );
    let mut reflector = start_controller(
        "image-reflector",
        &reflector_bin,
        &reflector_args,
        &reflector_kubeconfig,
        reflector_port,
        &work.path().join("reflector.log"),
    )
    .await;
    // Prometheus scrapes both from the start (the automation's target is down until it runs).
    let prometheus = Prometheus::start(&[
        ScrapeTarget::new(REFLECTOR, &format!("127.0.0.1:{reflector_port}")),
        ScrapeTarget::new(AUTOMATION, &format!("127.0.0.1:{automation_port}")),
    ])
    .await
    .expect("start Prometheus");

    step(
        "3a",
        "first scan: semver selects 1.2.3, timestamps 2026.06.01-abc1234",
        started,
    );
    wait_policy_tag(&server, &reflector, seed::CHECKOUT, "1.2.3", WAIT).await;
    wait_policy_tag(
        &server,
        &reflector,
        TIMESTAMP_POLICY,
        "2026.06.01-abc1234",
        WAIT,
    )
    .await;
    let repo = get(&server, "imagerepository", seed::CHECKOUT);
    assert_eq!(
        repo["status"]["lastScanResult"]["tagCount"], 3,
        "the first scan (through registry-pull's credentials) found the three tags: {repo}"
    );

    // New builds land in the registry: the seed's three tags and more build tags.
    step(
        "4",
        "push 1.3.0, 2.0.0, 1.2.4-rc.1 and build tags; no scan before the 1h interval",
        started,
    );
    registry
        .push_tags(
            seed::IMAGE_PATH,
            &[
                "1.3.0",
                "2.0.0",
                "1.2.4-rc.1",
                "2026.06.02-def5678",
                // Sorts last, but is not a build tag: the filter drops it.
                "2026.06.09-zzzz",
                "main-fedcba9",
            ],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tags_path = "/api/v1/namespaces/flux-system/imagerepositories/checkout/tags";
    let tags = reflector
        .get_json(tags_path)
        .await
        .expect("tags before the annotation");
    assert_eq!(
        tags["total"], 3,
        "the reflector rescanned before its 1h interval without being asked: {tags}"
    );

    step(
        "5",
        "`flux reconcile image repository checkout` (the annotation) scans at once",
        started,
    );
    let asked = Instant::now();
    let requested = request_reconcile(&server, "imagerepository", seed::CHECKOUT);
    let policy = wait_policy_tag(
        &server,
        &reflector,
        seed::CHECKOUT,
        "1.3.0",
        Duration::from_secs(30),
    )
    .await;
    let scan_latency = asked.elapsed();
    eprintln!("e2e: annotation to new latestRef: {scan_latency:?}");
    let repo = get(&server, "imagerepository", seed::CHECKOUT);
    assert_eq!(
        repo["status"]["lastHandledReconcileAt"],
        requested.as_str(),
        "status.lastHandledReconcileAt: {repo}"
    );
    assert_eq!(repo["status"]["lastScanResult"]["tagCount"], 9, "{repo}");
    // The range blocks the major, the pre-release is ignored.
    assert_eq!(
        policy["status"]["latestImage"],
        format!("{image}:1.3.0"),
        "{policy}"
    );
    assert_eq!(
        condition(&policy, "Ready").map(|c| c["status"].clone()),
        Some("True".into()),
        "{policy}"
    );
    wait_policy_tag(
        &server,
        &reflector,
        TIMESTAMP_POLICY,
        "2026.06.02-def5678",
        WAIT,
    )
    .await;

    step(
        "5a",
        "`kubectl -n flux-system describe imagepolicy checkout`",
        started,
    );
    let describe = kubectl(
        &server,
        &[
            "-n",
            seed::NAMESPACE,
            "describe",
            "imagepolicy",
            seed::CHECKOUT,
        ],
    );
    assert!(
        describe.contains(&format!("{image}:1.3.0")),
        "`kubectl describe imagepolicy checkout` does not show the latest tag:\n{describe}"
    );

    step("6", "the reflector's HTTP API (curl)", started);
    let policies = reflector
        .get_json("/api/v1/imagepolicies")
        .await
        .expect("GET /api/v1/imagepolicies");
    let items = policies["items"].as_array().expect("items");
    let result = |name: &str| {
        items
            .iter()
            .find(|p| p["namespace"] == seed::NAMESPACE && p["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from /api/v1/imagepolicies: {policies}"))
    };
    assert_eq!(
        result(seed::CHECKOUT)["latestRef"]["tag"],
        "1.3.0",
        "{policies}"
    );
    assert_eq!(
        result(seed::CHECKOUT)["latestRef"]["name"],
        image.as_str(),
        "{policies}"
    );
    assert_eq!(result(seed::CHECKOUT)["ready"], true, "{policies}");
    assert_eq!(
        result(TIMESTAMP_POLICY)["latestRef"]["tag"],
        "2026.06.02-def5678",
        "{policies}"
    );
    let tags = reflector.get_json(tags_path).await.expect("GET .../tags");
    assert_eq!(tags["total"], 9, "{tags}");
    let mut listed: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "1.2.3",
            "1.2.4-rc.1",
            "1.3.0",
            "2.0.0",
            "2026.05.30-0a1b2c3",
            "2026.06.01-abc1234",
            "2026.06.02-def5678",
            "2026.06.09-zzzz",
            "main-fedcba9"
        ],
        "{tags}"
    );
    // No credential in any answer or log.
    let password = registry.password().unwrap();
    assert!(!policies.to_string().contains(password));
    reflector.assert_alive();

    step("7a", "Prometheus scrapes the reflector", started);
    assert_scraped(
        &prometheus,
        REFLECTOR,
        &format!(
            r#"image_reflector_policy_latest_info{{job="{REFLECTOR}",name="checkout",tag="1.3.0"}}"#
        ),
        "ImageRepository",
    )
    .await;

    // Steps 5 and 6 of the how-to: the automation, pushing to main, and the PR-gated one.
    step(
        "8",
        "apply GitRepositories and both ImageUpdateAutomations; start image-automation",
        started,
    );
    for (name, repo) in [("flux-system", REPO), ("gitops-pr", PR_REPO)] {
        server
            .apply(&seed::git_credentials_secret(
                name,
                git.username(),
                git.password(),
            ))
            .unwrap();
        server
            .apply(&seed::git_repository(name, &git.url(repo), name))
            .unwrap();
    }
    server
        .apply(&seed::image_update_automation(
            AUTOMATION_MAIN,
            "flux-system",
            "main",
        ))
        .unwrap();
    server
        .apply(&seed::image_update_automation(
            AUTOMATION_PR,
            "gitops-pr",
            PR_BRANCH,
        ))
        .unwrap();
    let automation_args = chart_args(
        &server,
        AUTOMATION,
        &[
            ("--http-addr", format!("127.0.0.1:{automation_port}")),
            (
                "--storage-path",
                work.path().join("automation").display().to_string(),
            ),
            ("--reflector-url", reflector.base().to_string()),
        ],
    );
    let mut automation = start_controller(
        "image-automation",
        &binary("image-automation"),
        &automation_args,
        &automation_kubeconfig,
        automation_port,
        &work.path().join("automation.log"),
    )
    .await;

    step(
        "9",
        "exactly one commit on main, only the marked tag changed",
        started,
    );
    let head = wait_for(
        "a commit on main",
        WAIT,
        || {
            format!(
                "automation: {}\nlog:\n{}",
                get(&server, "imageupdateautomation", AUTOMATION_MAIN),
                automation.log_tail(LOG_LINES)
            )
        },
        || async {
            repos
                .head_commit(REPO, "main")
                .unwrap()
                .filter(|h| *h != seeded)
        },
    )
    .await;
    assert_eq!(
        repos.commit_parents(REPO, &head).unwrap(),
        vec![seeded.clone()],
        "the automation's commit is not directly on top of the seeded main"
    );
    assert_eq!(
        repos.file_at(REPO, &head, seed::DEPLOYMENT_FILE).unwrap(),
        Some(seed::deployment(&host, "1.3.0")),
        "{} is not the seeded file with only the tag changed to 1.3.0",
        seed::DEPLOYMENT_FILE
    );
    for (path, contents) in &files {
        if path != seed::DEPLOYMENT_FILE {
            assert_eq!(
                repos.file_at(REPO, &head, path).unwrap().as_ref(),
                Some(contents),
                "{path} changed; only {} carries the checkout marker",
                seed::DEPLOYMENT_FILE
            );
        }
    }
    assert_eq!(
        repos.files_at(REPO, &head).unwrap(),
        repos.files_at(REPO, &seeded).unwrap(),
        "files added or removed"
    );
    let message = repos.commit_message(REPO, &head).unwrap();
    assert_eq!(
        message.trim_end(),
        seed::expected_message(&[&format!("{image}:1.3.0")]).trim_end(),
        "the commit message is not the how-to's template rendered"
    );
    assert_eq!(
        repos.commit_author(REPO, &head).unwrap(),
        format!("{} <{}>", seed::AUTHOR_NAME, seed::AUTHOR_EMAIL)
    );
    let status = wait_for(
        "status.lastPushCommit to name the commit",
        WAIT,
        || automation.log_tail(LOG_LINES),
        || async {
            let obj = get(&server, "imageupdateautomation", AUTOMATION_MAIN);
            (obj["status"]["lastPushCommit"] == head.as_str()).then_some(obj)
        },
    )
    .await;
    assert_eq!(
        condition(&status, "Ready").map(|c| c["status"].clone()),
        Some("True".into()),
        "{status}"
    );
    // Another run (asked for, so it happens now) pushes nothing.
    let requested = request_reconcile(&server, "imageupdateautomation", AUTOMATION_MAIN);
    wait_for(
        "the automation to handle the reconcile request",
        WAIT,
        || automation.log_tail(LOG_LINES),
        || async {
            let obj = get(&server, "imageupdateautomation", AUTOMATION_MAIN);
            (obj["status"]["lastHandledReconcileAt"] == requested.as_str()).then_some(())
        },
    )
    .await;
    assert_eq!(
        repos.commit_count(REPO, "main").unwrap(),
        2,
        "more than one commit on main: {:?}",
        repos.log(REPO, "main").unwrap()
    );

    step("10", "status and events say which markers matched", started);
    let status = get(&server, "imageupdateautomation", AUTOMATION_MAIN);
    assert_eq!(
        status["status"]["observedPolicies"]["checkout"]["tag"], "1.3.0",
        "status.observedPolicies: {status}"
    );
    let events = wait_for(
        "the automation's events",
        WAIT,
        || automation.log_tail(LOG_LINES),
        || async {
            let events = events(&server, "ImageUpdateAutomation", AUTOMATION_MAIN);
            let pushed = events.iter().any(|(_, m)| m.contains(&head[..7]));
            let unmatched = events.iter().any(|(r, _)| r == "MarkersNotApplied");
            (pushed && unmatched).then_some(events)
        },
    )
    .await;
    let pushed = events.iter().find(|(_, m)| m.contains(&head[..7])).unwrap();
    assert!(
        pushed.1.contains("to branch 'main'") && pushed.1.contains(&format!("{image}:1.3.0")),
        "the push event: {pushed:?}"
    );
    // Paths are relative to `update.path`, like Flux's `.Updated.Files`.
    let typo_in_path = TYPO_FILE
        .strip_prefix(&format!("{}/", seed::UPDATE_PATH))
        .unwrap();
    let (_, not_applied) = events
        .iter()
        .find(|(r, _)| r == "MarkersNotApplied")
        .unwrap();
    assert!(
        not_applied.contains(&format!("\n{typo_in_path}:{IMAGE_LINE}: "))
            && not_applied.contains("chekout"),
        "the typo'd marker is not reported with its place: {not_applied}"
    );
    assert!(
        not_applied.starts_with("1 marker(s) not applied:")
            && !not_applied.contains("checkout-eu.yaml")
            && !not_applied.contains("checkout.yaml:"),
        "a file without a marker, or the applied marker, is reported as unmatched: {not_applied}"
    );

    step(
        "11",
        "the PR-gated path: push.branch flux-image-updates",
        started,
    );
    let branch = wait_for(
        "the flux-image-updates branch",
        WAIT,
        || {
            format!(
                "automation: {}\nlog:\n{}",
                get(&server, "imageupdateautomation", AUTOMATION_PR),
                automation.log_tail(LOG_LINES)
            )
        },
        || async { repos.head_commit(PR_REPO, PR_BRANCH).unwrap() },
    )
    .await;
    assert_eq!(
        repos.head_commit(PR_REPO, "main").unwrap(),
        Some(pr_seeded.clone()),
        "the PR-gated automation moved main"
    );
    assert_eq!(
        repos.commit_parents(PR_REPO, &branch).unwrap(),
        vec![pr_seeded.clone()],
        "the PR branch is not one commit on top of main"
    );
    assert_eq!(
        repos
            .file_at(PR_REPO, &branch, seed::DEPLOYMENT_FILE)
            .unwrap(),
        Some(seed::deployment(&host, "1.3.0")),
    );
    assert_eq!(
        repos.branches(PR_REPO).unwrap(),
        ["flux-image-updates", "main"]
    );

    step("7b", "Prometheus scrapes the automation", started);
    assert_scraped(
        &prometheus,
        AUTOMATION,
        &format!(
            r#"image_automation_pushes_total{{job="{AUTOMATION}",name="{AUTOMATION_MAIN}"}} >= 1"#
        ),
        "ImageUpdateAutomation",
    )
    .await;

    // "End-to-end takes one reconciliation cycle": with both controllers running, a new
    // build reaches main through the reflector's change feed, well before the automation's
    // 1m interval.
    step(
        "12",
        "push 1.3.1 and request a scan: a second commit lands within 20s",
        started,
    );
    registry
        .push_tags(seed::IMAGE_PATH, &["1.3.1"])
        .await
        .unwrap();
    let asked = Instant::now();
    request_reconcile(&server, "imagerepository", seed::CHECKOUT);
    let second = wait_for(
        "a commit for 1.3.1 on main",
        Duration::from_secs(20),
        || {
            format!(
                "policy: {}
automation log:
{}",
                get(&server, "imagepolicy", seed::CHECKOUT),
                automation.log_tail(LOG_LINES)
            )
        },
        || async {
            repos
                .head_commit(REPO, "main")
                .unwrap()
                .filter(|h| *h != head)
        },
    )
    .await;
    eprintln!("e2e: new tag to commit on main: {:?}", asked.elapsed());
    assert_eq!(repos.commit_parents(REPO, &second).unwrap(), vec![head]);
    assert_eq!(
        repos.file_at(REPO, &second, seed::DEPLOYMENT_FILE).unwrap(),
        Some(seed::deployment(&host, "1.3.1")),
    );
    assert_eq!(
        repos.commit_message(REPO, &second).unwrap().trim_end(),
        seed::expected_message(&[&format!("{image}:1.3.1")]).trim_end(),
    );
    assert_eq!(
        repos.head_commit(PR_REPO, "main").unwrap(),
        Some(pr_seeded),
        "the PR-gated automation moved main"
    );

    step("13", "no credential in either controller's log", started);
    reflector.assert_alive();
    automation.assert_alive();
    for (name, controller) in [("reflector", &reflector), ("automation", &automation)] {
        let log = std::fs::read_to_string(controller.log_path()).unwrap();
        assert!(
            !log.contains(password),
            "{name} logged the registry password"
        );
        assert!(
            !log.contains(git.password()),
            "{name} logged the git password"
        );
    }
    eprintln!("e2e: done after {:?}", started.elapsed());
}
