//! ImageRepositories × 1,000 tags in standalone mode against the testbed's real
//! `docker-registry` (5,000 by default, issue 14's goal size; `SCALE_REPOSITORIES` changes it): the
//! time from starting `image-reflector serve --manifests DIR` (the release-built binary)
//! until every semver ImagePolicy is Ready with the newest tag, and the process's peak RSS
//! (`VmHWM`). Goals: every policy Ready within 60 s, peak RSS under 100 MiB (Flux reports
//! 187 MB on average); the bench exits non-zero when either is missed. The baseline,
//! measured in the same run against the same registry, is a minimal sequential client
//! listing every tag list (one plain GET each, body read). Progress (policies Ready, RSS) is
//! printed every few seconds. The tags are seeded straight into one repository's storage
//! and the other repositories are aliases of it (see [`seed_all`]).
//!
//! Run with `cargo bench -p image-reflector --bench scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A bench fails loudly.

use std::path::Path;
use std::time::{Duration, Instant};

use api_types::http_api::{ImagePolicyInfo, List};
use testbed::controllers::serve_manifests_command;
use testbed::process::{Process, free_port, peak_rss_kib, proc_status_kib};
use testbed::registry::{Registry, RegistryOptions};

/// `SCALE_REPOSITORIES` (default 5,000) and `SCALE_TAGS` (default and at most 1,000, the
/// `0.0.0` … `9.9.9` grammar) change the size.
static REPOSITORIES: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env_size("SCALE_REPOSITORIES", 5_000));
static TAGS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| env_size("SCALE_TAGS", 1_000).min(1_000));

/// The newest of [`tags`], which every policy must select.
static NEWEST: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| tags().pop().unwrap_or_default());

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}
const RSS_GOAL_MIB: f64 = 100.0;
const READY_GOAL: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(900);
/// How often the bench lists the policies: each list is every policy's JSON (2 MB at
/// 5,000), which the reflector serializes while it scans on the same two cores.
const POLL: Duration = Duration::from_millis(250);
/// How often progress is printed while waiting.
const PROGRESS: Duration = Duration::from_secs(5);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let goal_met = runtime.block_on(run());
    if !goal_met {
        std::process::exit(1);
    }
}

fn repo_name(i: usize) -> String {
    format!("bench/app-{i:03}")
}

/// `0.0.0` .. `9.9.9`: 1,000 semver tags, the newest `9.9.9`.
fn tags() -> Vec<String> {
    (0..*TAGS)
        .map(|i| format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10))
        .collect()
}

/// Seeds the first repository's tags in the registry's storage (pushing 1,000 tags through
/// the API takes a minute per repository) and makes every other repository an alias of it
/// ([`Registry::alias_repository`]: a symbolic link the registry follows). Each repository
/// is still listed and resolved by the real registry on every request; copies of the tags
/// would need two file-system entries per tag, 10 million for 5,000 x 1,000, more than
/// `/dev/shm` allows.
async fn seed_all(registry: &Registry) {
    registry.seed_tags(&repo_name(0), &tags()).await.unwrap();
    for i in 1..*REPOSITORIES {
        registry
            .alias_repository(&repo_name(0), &repo_name(i))
            .unwrap();
    }
}

/// One file per repository: the ImageRepository and its semver ImagePolicy.
fn write_manifests(dir: &Path, registry: &Registry) {
    for i in 0..*REPOSITORIES {
        std::fs::write(
            dir.join(format!("app-{i:03}.yaml")),
            format!(
                "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: app-{i:03}
  namespace: bench
spec:
  image: {}
  interval: 1h
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: app-{i:03}
  namespace: bench
spec:
  imageRepositoryRef: {{ name: app-{i:03} }}
  policy:
    semver:
      range: '>=0.0.0'
",
                registry.image(&repo_name(i))
            ),
        )
        .unwrap();
    }
}

/// The baseline: list every repository's tags once, one after the other, with a plain
/// HTTP client (the registry answers 1,000 tags in one page).
async fn baseline(registry: &Registry) -> Duration {
    let http = reqwest::Client::new();
    let started = Instant::now();
    for i in 0..*REPOSITORIES {
        let url = format!(
            "{}/v2/{}/tags/list?n=1000",
            registry.base_url(),
            repo_name(i)
        );
        let response = http.get(&url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["tags"].as_array().map(Vec::len), Some(*TAGS), "{url}");
    }
    started.elapsed()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// How many policies are Ready with the newest tag.
async fn ready_policies(http: &reqwest::Client, base: &str) -> Option<usize> {
    let response = http
        .get(format!("{base}/api/v1/imagepolicies?namespace=bench"))
        .send()
        .await
        .ok()?;
    let list: List<ImagePolicyInfo> = response.json().await.ok()?;
    Some(
        list.items
            .iter()
            .filter(|p| p.readiness.ready)
            .filter(|p| p.latest_ref.as_ref().is_some_and(|r| r.tag == *NEWEST))
            .count(),
    )
}

async fn run() -> bool {
    // tmpfs when there is one: a million file-system entries are slow to create and
    // remove on a loaded disk.
    let shm = Path::new("/dev/shm");
    let options = if shm.is_dir() {
        RegistryOptions::anonymous().with_disk_storage_in(shm)
    } else {
        RegistryOptions::anonymous().with_disk_storage()
    };
    let registry = Registry::start(options).await.unwrap();
    let started = Instant::now();
    seed_all(&registry).await;
    println!(
        "seeded {} repositories x {} tags in {:.1} s",
        *REPOSITORIES,
        *TAGS,
        started.elapsed().as_secs_f64()
    );

    // Twice, keeping the faster run: the first one may still warm the registry's caches.
    let baseline = baseline(&registry).await.min(baseline(&registry).await);

    let dir = tempfile::Builder::new()
        .prefix("bench-scale-")
        .tempdir()
        .unwrap();
    let manifests = dir.path().join("manifests");
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests(&manifests, &registry);

    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let program = Path::new(env!("CARGO_BIN_EXE_image-reflector"));
    let mut command = serve_manifests_command(program, &manifests, &storage, port);
    command.args(["--log-level", "error"]);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut process = Process::spawn(
        "image-reflector serve",
        command,
        &dir.path().join("serve.log"),
    )
    .unwrap();
    let pid = process.pid();
    let mut ready = 0;
    let mut last_progress = Instant::now();
    while ready < *REPOSITORIES {
        assert!(
            started.elapsed() < WAIT,
            "only {ready} of {} policies ready after {WAIT:?}; log:\n{}",
            *REPOSITORIES,
            process.log_tail()
        );
        process.check_running().unwrap();
        tokio::time::sleep(POLL).await;
        ready = ready_policies(&http, &base).await.unwrap_or(0);
        if last_progress.elapsed() >= PROGRESS {
            last_progress = Instant::now();
            println!(
                "  {:6.1} s: {ready} of {} policies Ready, RSS {:.1} MiB (peak {:.1} MiB)",
                started.elapsed().as_secs_f64(),
                *REPOSITORIES,
                mib(proc_status_kib(pid, "VmRSS").unwrap_or(0)),
                mib(peak_rss_kib(pid).unwrap_or(0)),
            );
        }
    }
    let elapsed = started.elapsed();
    let hwm = peak_rss_kib(pid).expect("VmHWM of the serve process");
    let rss = proc_status_kib(pid, "VmRSS").expect("VmRSS of the serve process");
    let anon = proc_status_kib(pid, "RssAnon").unwrap_or(0);
    let file = proc_status_kib(pid, "RssFile").unwrap_or(0);
    process.terminate(Duration::from_secs(15));

    let peak = mib(hwm);
    println!(
        "baseline: sequential plain client listing the {} tag lists: {:.3} s",
        *REPOSITORIES,
        baseline.as_secs_f64()
    );
    println!(
        "image-reflector serve --manifests: all {} policies Ready after {:.3} s ({:.2}x the baseline)",
        *REPOSITORIES,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM) {peak:.1} MiB, RSS when done {:.1} MiB: {:.1} MiB anonymous (heap, stacks), {:.1} MiB file-backed (the binary) (goal < {RSS_GOAL_MIB} MiB; Flux reports 187 MB on average)",
        mib(rss),
        mib(anon),
        mib(file),
    );
    let mut met = true;
    if peak >= RSS_GOAL_MIB {
        eprintln!("peak RSS goal missed: {peak:.1} MiB >= {RSS_GOAL_MIB} MiB");
        met = false;
    }
    if elapsed >= READY_GOAL {
        eprintln!(
            "time goal missed: all policies Ready after {:.1} s >= {} s",
            elapsed.as_secs_f64(),
            READY_GOAL.as_secs()
        );
        met = false;
    }
    met
}
