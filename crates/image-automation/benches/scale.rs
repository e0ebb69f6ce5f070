//! 500 ImageUpdateAutomations over 50 git repositories in one `image-automation serve
//! --manifests DIR --reflector-url URL` process (standalone mode, the release-built
//! binary), against the testbed's real docker-registry, a real `image-reflector serve
//! --manifests` (release-built) and the testbed's smart-HTTP git server.
//!
//! Layout: namespace `team-NN` per git repository `fleet-NN` (its GitRepository and
//! credentials Secret), 10 automations per namespace, each with its own ImageRepository,
//! semver ImagePolicy (labelled `app: app-NNN`), `update.path` (`apps/app-NNN`, one
//! Deployment with the marker) and a `policySelector` for its own policy. Every file starts
//! at 1.0.0 and every policy selects 1.1.0, so the first round is one commit per
//! automation. The registry repositories other than `app-000` are aliases of one seeded
//! repository ([`testbed::registry::Registry::alias_repository`]).
//!
//! Measured:
//! - the first round: from the automation's start until every automation has pushed its
//!   commit and runs have stopped;
//! - one policy change with the others idle, [`CHANGES`] times: a newer tag is pushed to
//!   `app-000`, its ImageRepository gets a `reconcile.fluxcd.io/requestedAt` annotation
//!   (what `flux reconcile image repository` sets; the reflector reads its manifests every
//!   second), and the bench times (a) the reflector's API showing the new latest image to
//!   the git server's `fleet-00` `main` having the commit (goal < 2 s), (b) the tag push to
//!   the commit;
//! - the automation's peak RSS (`VmHWM`; goal < 150 MiB).
//!
//! Exits non-zero when a goal is missed. `SCALE_GIT_REPOS` (default 50) and
//! `SCALE_AUTOMATIONS_PER_REPO` (default 10) change the size; `SCALE_POLICY_SELECTOR=0`
//! drops the per-automation `policySelector`.
//!
//! Run with `cargo bench -p image-automation --bench scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A bench fails loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use api_types::http_api::ImagePolicyInfo;
use testbed::controllers::{reflector_binary, serve_manifests_command, start_serving};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use testbed::process::{Process, free_port, peak_rss_kib, proc_status_kib};
use testbed::registry::{Registry, RegistryOptions};

const RSS_GOAL_MIB: f64 = 150.0;
const CHANGE_GOAL: Duration = Duration::from_secs(2);
/// Policy changes measured after the first round.
const CHANGES: usize = 3;
const WAIT: Duration = Duration::from_secs(600);
/// How often the bench looks at the reflector's policy and the git branch while timing.
const POLL: Duration = Duration::from_millis(10);
const PROGRESS: Duration = Duration::from_secs(5);
/// The repository whose seeded tags every aliased registry repository shares.
const SEEDED: &str = "bench/seeded";
const AUTHOR: &str = "fluxcdbot";

static GIT_REPOS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env_size("SCALE_GIT_REPOS", 50));
static PER_REPO: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env_size("SCALE_AUTOMATIONS_PER_REPO", 10));
/// Whether each automation selects only its own policy (`SCALE_POLICY_SELECTOR=0`: no
/// selector, so every automation of a namespace reads all its policies and a change there
/// makes all of them sync).
static OWN_POLICY_ONLY: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var("SCALE_POLICY_SELECTOR").as_deref() != Ok("0"));

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn automations() -> usize {
    *GIT_REPOS * *PER_REPO
}

fn namespace(repo: usize) -> String {
    format!("team-{repo:02}")
}

fn fleet(repo: usize) -> String {
    format!("fleet-{repo:02}")
}

/// The app (ImageRepository, ImagePolicy, automation and directory) `i`.
fn app(i: usize) -> String {
    format!("app-{i:03}")
}

fn image_path(i: usize) -> String {
    format!("bench/{}", app(i))
}

fn deployment_file(i: usize) -> String {
    format!("apps/{}/deployment.yaml", app(i))
}

fn deployment(registry: &Registry, repo: usize, i: usize, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  namespace: prod
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}:{tag} # {{\"$imagepolicy\": \"{ns}:{app}\"}}
",
        app = app(i),
        image = registry.image(&image_path(i)),
        ns = namespace(repo),
    )
}

/// The reflector's manifests of namespace `repo`: one ImageRepository and ImagePolicy per
/// app; `requested_at` annotates app-000's repository (the reconcile trigger).
fn reflector_manifests(registry: &Registry, repo: usize, requested_at: Option<&str>) -> String {
    let ns = namespace(repo);
    let mut docs = Vec::new();
    for i in repo * *PER_REPO..(repo + 1) * *PER_REPO {
        let annotations = match requested_at {
            Some(at) if i == 0 => {
                format!("  annotations:\n    reconcile.fluxcd.io/requestedAt: \"{at}\"\n")
            }
            _ => String::new(),
        };
        docs.push(format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: {app}
  namespace: {ns}
{annotations}spec:
  image: {image}
  interval: 1h
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: {app}
  namespace: {ns}
  labels:
    app: {app}
spec:
  imageRepositoryRef: {{ name: {app} }}
  policy:
    semver:
      range: '>=1.0.0'
",
            app = app(i),
            image = registry.image(&image_path(i)),
        ));
    }
    docs.join("---\n")
}

/// The automation's manifests of namespace `repo`: the GitRepository, its credentials and
/// one automation per app.
fn automation_manifests(git: &GitHttpServer, repo: usize) -> String {
    let ns = namespace(repo);
    let mut docs = vec![format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: fleet
  namespace: {ns}
spec:
  interval: 1h
  url: {url}
  ref:
    branch: main
  secretRef:
    name: git-credentials
---
apiVersion: v1
kind: Secret
metadata:
  name: git-credentials
  namespace: {ns}
type: Opaque
stringData:
  username: {username}
  password: {password}
",
        url = git.url(&fleet(repo)),
        username = git.username(),
        password = git.password(),
    )];
    for i in repo * *PER_REPO..(repo + 1) * *PER_REPO {
        docs.push(format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata:
  name: {app}
  namespace: {ns}
spec:
  interval: 1h
  sourceRef:
    kind: GitRepository
    name: fleet
  git:
    checkout:
      ref: {{ branch: main }}
    commit:
      author:
        name: {AUTHOR}
        email: {AUTHOR}@users.noreply.github.com
      messageTemplate: 'Update {app}'
    push:
      branch: main
{selector}  update:
    path: ./apps/{app}
    strategy: Setters
",
            app = app(i),
            selector = if *OWN_POLICY_ONLY {
                format!(
                    "  policySelector:\n    matchLabels:\n      app: {}\n",
                    app(i)
                )
            } else {
                String::new()
            },
        ));
    }
    docs.join("---\n")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn write_reflector_file(dir: &Path, registry: &Registry, repo: usize, requested_at: Option<&str>) {
    // Written aside and renamed, so the reflector never reads half a file.
    let file = dir.join(format!("{}.yaml", namespace(repo)));
    let scratch = dir.join(format!(".{}.yaml.tmp", namespace(repo)));
    std::fs::write(&scratch, reflector_manifests(registry, repo, requested_at)).unwrap();
    std::fs::rename(&scratch, &file).unwrap();
}

/// The latest tag the reflector's API shows for app-000's policy.
async fn latest_tag(http: &reqwest::Client, reflector: &str) -> Option<String> {
    let url = format!(
        "{reflector}/api/v1/namespaces/{}/imagepolicies/{}",
        namespace(0),
        app(0)
    );
    let info: ImagePolicyInfo = http.get(url).send().await.ok()?.json().await.ok()?;
    info.latest_ref.map(|r| r.tag)
}

/// How many policies select `tag`.
async fn policies_at(http: &reqwest::Client, reflector: &str, tag: &str) -> usize {
    let Ok(response) = http
        .get(format!("{reflector}/api/v1/imagepolicies"))
        .send()
        .await
    else {
        return 0;
    };
    let Ok(list) = response
        .json::<api_types::http_api::List<ImagePolicyInfo>>()
        .await
    else {
        return 0;
    };
    list.items
        .iter()
        .filter(|p| p.latest_ref.as_ref().is_some_and(|r| r.tag == tag))
        .count()
}

/// The sum of `gotk_reconcile_duration_seconds_count` (runs finished) in the metrics text.
fn runs_finished(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gotk_reconcile_duration_seconds_count{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if runtime.block_on(run()) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn run() -> bool {
    let total = automations();
    let shm = Path::new("/dev/shm");
    let options = if shm.is_dir() {
        RegistryOptions::anonymous().with_disk_storage_in(shm)
    } else {
        RegistryOptions::anonymous().with_disk_storage()
    };
    let registry = Registry::start(options).await.unwrap();
    registry
        .seed_tags(SEEDED, &["1.0.0", "1.1.0"])
        .await
        .unwrap();
    // app-000 is a repository of its own: the measured change pushes a tag to it alone.
    registry
        .push_tags(&image_path(0), &["1.0.0"])
        .await
        .unwrap();
    registry
        .push_tags(&image_path(0), &["1.1.0"])
        .await
        .unwrap();
    for i in 1..total {
        registry.alias_repository(SEEDED, &image_path(i)).unwrap();
    }

    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let mut seeded_heads = Vec::new();
    for repo in 0..*GIT_REPOS {
        let files: Vec<(String, String)> = (repo * *PER_REPO..(repo + 1) * *PER_REPO)
            .map(|i| (deployment_file(i), deployment(&registry, repo, i, "1.0.0")))
            .collect();
        seeded_heads.push(git.repos().create(&fleet(repo), &files).unwrap());
    }

    let tmp = tempfile::Builder::new()
        .prefix("bench-automation-scale-")
        .tempdir()
        .unwrap();
    let reflector_dir = tmp.path().join("reflector");
    let automation_dir = tmp.path().join("automation");
    std::fs::create_dir_all(&reflector_dir).unwrap();
    std::fs::create_dir_all(&automation_dir).unwrap();
    for repo in 0..*GIT_REPOS {
        write_reflector_file(&reflector_dir, &registry, repo, None);
        std::fs::write(
            automation_dir.join(format!("{}.yaml", namespace(repo))),
            automation_manifests(&git, repo),
        )
        .unwrap();
    }

    // The reflector, until every policy selects 1.1.0.
    let port = free_port().unwrap();
    let mut command = serve_manifests_command(
        &reflector_binary(),
        &reflector_dir,
        &tmp.path().join("tags"),
        port,
    );
    command.args(["--log-level", "error"]);
    let (reflector, reflector_url) = start_serving(
        "image-reflector",
        command,
        port,
        &tmp.path().join("reflector.log"),
        "/readyz",
        WAIT,
    )
    .await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while policies_at(&http, &reflector_url, "1.1.0").await < total {
        assert!(
            started.elapsed() < WAIT,
            "the reflector's policies never all selected 1.1.0:\n{}",
            reflector.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} git repositories, {total} automations (policySelector per automation: {}); reflector ready in {:.1} s",
        *GIT_REPOS,
        *OWN_POLICY_ONLY,
        started.elapsed().as_secs_f64()
    );

    // The automation, until its first round has settled.
    let port = free_port().unwrap();
    let mut command = serve_manifests_command(
        Path::new(env!("CARGO_BIN_EXE_image-automation")),
        &automation_dir,
        &tmp.path().join("data"),
        port,
    );
    command.args(["--reflector-url", &reflector_url, "--log-level", "info"]);
    let started = Instant::now();
    let mut automation = Process::spawn(
        "image-automation serve",
        command,
        &tmp.path().join("automation.log"),
    )
    .unwrap();
    let pid = automation.pid();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let first_round = settle(&mut automation, &git, &http, &metrics_url, started).await;
    println!(
        "first round: {total} commits pushed in {:.1} s; RSS {:.1} MiB, peak {:.1} MiB",
        first_round.as_secs_f64(),
        mib(proc_status_kib(pid, "VmRSS").unwrap_or(0)),
        mib(peak_rss_kib(pid).unwrap_or(0)),
    );

    let mut to_commit = Vec::new();
    let mut from_push = Vec::new();
    for change in 0..CHANGES {
        let tag = format!("1.{}.0", change + 2);
        let before = git.repos().head_commit(&fleet(0), "main").unwrap();
        let pushed_at = Instant::now();
        registry.push_tags(&image_path(0), &[&tag]).await.unwrap();
        write_reflector_file(&reflector_dir, &registry, 0, Some(&format!("change-{tag}")));
        let mut seen_at = None;
        let committed_at = loop {
            automation.check_running().unwrap();
            assert!(
                pushed_at.elapsed() < WAIT,
                "no commit for {tag}; reflector saw it: {}\n{}",
                seen_at.is_some(),
                automation.log_tail()
            );
            if seen_at.is_none() && latest_tag(&http, &reflector_url).await.as_deref() == Some(&tag)
            {
                seen_at = Some(Instant::now());
            }
            let head = git.repos().head_commit(&fleet(0), "main").unwrap();
            if head != before {
                break Instant::now();
            }
            tokio::time::sleep(POLL).await;
        };
        // The feed can beat the bench's poll of the reflector: then the policy showed the
        // tag no later than the commit.
        let seen_at = seen_at.unwrap_or(committed_at);
        let head = git.repos().head_commit(&fleet(0), "main").unwrap().unwrap();
        let file = git
            .repos()
            .file_at(&fleet(0), &head, &deployment_file(0))
            .unwrap()
            .unwrap();
        assert!(
            file.contains(&format!(":{tag} #")),
            "{head} does not set {tag}:\n{file}"
        );
        to_commit.push(committed_at - seen_at);
        from_push.push(committed_at - pushed_at);
        println!(
            "  change {}: reflector shows {tag} -> commit on fleet-00 main {:.3} s; tag push -> commit {:.3} s",
            change + 1,
            (committed_at - seen_at).as_secs_f64(),
            (committed_at - pushed_at).as_secs_f64(),
        );
    }
    let hwm = peak_rss_kib(pid).expect("VmHWM of the automation");
    let rss = proc_status_kib(pid, "VmRSS").expect("VmRSS of the automation");
    automation.terminate(Duration::from_secs(15));
    drop(reflector);

    let worst = to_commit.iter().max().copied().unwrap_or_default();
    let peak = mib(hwm);
    println!(
        "one policy change with {} automations idle: reflector -> commit worst {:.3} s (goal < {} s), tag push -> commit worst {:.3} s",
        total - 1,
        worst.as_secs_f64(),
        CHANGE_GOAL.as_secs(),
        from_push
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
    );
    println!(
        "image-automation peak RSS (VmHWM) {peak:.1} MiB, RSS at the end {:.1} MiB (goal < {RSS_GOAL_MIB} MiB)",
        mib(rss)
    );
    let mut met = true;
    if peak >= RSS_GOAL_MIB {
        eprintln!("peak RSS goal missed: {peak:.1} MiB >= {RSS_GOAL_MIB} MiB");
        met = false;
    }
    if worst >= CHANGE_GOAL {
        eprintln!(
            "change goal missed: {:.3} s >= {} s",
            worst.as_secs_f64(),
            CHANGE_GOAL.as_secs()
        );
        met = false;
    }
    met
}

/// Waits until every git repository has one commit per automation on top of its seed and
/// no run has finished for a second; returns the time since `started`.
async fn settle(
    automation: &mut Process,
    git: &GitHttpServer,
    http: &reqwest::Client,
    metrics_url: &str,
    started: Instant,
) -> Duration {
    let mut last_progress = Instant::now();
    let mut pushed_at = None;
    let mut last_runs = None;
    loop {
        automation.check_running().unwrap();
        assert!(
            started.elapsed() < WAIT,
            "the first round did not settle:\n{}",
            automation.log_tail()
        );
        let commits: usize = (0..*GIT_REPOS)
            .map(|repo| git.repos().commit_count(&fleet(repo), "main").unwrap() - 1)
            .sum();
        if commits >= automations() && pushed_at.is_none() {
            pushed_at = Some(started.elapsed());
        }
        let runs = match http.get(metrics_url).send().await {
            Ok(response) => response.text().await.ok().map(|t| runs_finished(&t)),
            Err(_) => None,
        };
        if pushed_at.is_some() && runs.is_some() && runs == last_runs {
            return pushed_at.unwrap_or_default();
        }
        last_runs = runs;
        if last_progress.elapsed() >= PROGRESS {
            last_progress = Instant::now();
            println!(
                "  {:6.1} s: {commits} of {} commits pushed, {} runs finished, RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                automations(),
                runs.unwrap_or(0),
                mib(proc_status_kib(automation.pid(), "VmRSS").unwrap_or(0)),
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
