//! Two figures, measured in one run:
//! 1. peak memory (VmHWM of this process) of scanning 200 repositories of 5,000 tags each
//!    into the redb store with bounded concurrency (target: under 64 MiB). The registry
//!    is a generator in a child process (this binary re-executed), so only the scanner's
//!    memory counts; pushing a million manifests to a real registry would take too long;
//! 2. store write + read of 10,000 tags (median).
//!
//! Run with `cargo bench -p image-reflector --bench store`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A bench fails loudly.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use image_reflector::reference::ImageReference;
use image_reflector::registry::{
    ClientSettings, ExclusionList, RegistryClient, ScanResult, TransportConfig,
};
use image_reflector::store::{RedbTagStore, RepoKey, TagStore};

const SERVER_ENV: &str = "IMAGE_REFLECTOR_BENCH_REGISTRY";
const REPOSITORIES: usize = 200;
const TAGS_PER_REPOSITORY: usize = 5_000;
const CONCURRENCY: usize = 8;
const MEMORY_TARGET_MIB: f64 = 64.0;
const STORE_TAGS: usize = 10_000;
const RUNS: usize = 21;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(SERVER_ENV).is_some() {
        runtime.block_on(serve());
        return;
    }
    let ok = runtime.block_on(memory());
    store_timing();
    if !ok {
        std::process::exit(1);
    }
}

/// The child: a registry answering `/v2/` and `/v2/bench/repo-N/tags/list` with 5,000 tags
/// per repository, until its stdin closes.
async fn serve() {
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    struct TagList;
    impl Respond for TagList {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let repo = request.url.path().split('/').nth(3).unwrap_or("repo-0");
            let n = repo.trim_start_matches("repo-");
            let tags: Vec<String> = (0..TAGS_PER_REPOSITORY)
                .map(|i| format!("{n}.{}.{}", i / 100, i % 100))
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "name": format!("bench/{repo}"), "tags": tags }))
        }
    }

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v2/bench/repo-\d+/tags/list$"))
        .respond_with(TagList)
        .mount(&server)
        .await;
    println!("{}", server.address());
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
}

/// `VmHWM` (peak resident set) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    testbed::process::own_peak_rss_kib().unwrap()
}

async fn memory() -> bool {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut address = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim().to_string();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbTagStore::open(dir.path().join("tags.redb")).unwrap());
    let client =
        RegistryClient::new(&TransportConfig::default(), ClientSettings::default()).unwrap();
    let exclusions = Arc::new(
        ExclusionList::compile(&[api_types::image_repository::DEFAULT_EXCLUSION_LIST]).unwrap(),
    );
    let before = peak_rss_kib();
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REPOSITORIES {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, store, exclusions) = (client.clone(), store.clone(), exclusions.clone());
        let image = ImageReference::parse(&format!("{address}/bench/repo-{i}"), true).unwrap();
        tasks.spawn(async move {
            // As the controller scans: list, then filter, sort and checksum.
            let listed = client
                .list_tags(&image, None, Duration::from_secs(60))
                .await
                .unwrap();
            let result = ScanResult::new(
                image.canonical_name(),
                listed,
                &exclusions,
                SystemTime::now(),
            );
            assert_eq!(result.tag_count(), TAGS_PER_REPOSITORY);
            let key = RepoKey::new("bench", format!("repo-{i}"));
            tokio::task::spawn_blocking(move || store.put(&key, &result))
                .await
                .unwrap()
                .unwrap();
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let elapsed = started.elapsed();
    let peak = peak_rss_kib();
    assert_eq!(store.keys().unwrap().len(), REPOSITORIES);
    let sample = store
        .meta(&RepoKey::new("bench", "repo-7"))
        .unwrap()
        .unwrap();
    assert_eq!(sample.tag_count, TAGS_PER_REPOSITORY as u64);
    drop(child.stdin.take());
    let _ = child.wait();

    let peak_mib = peak as f64 / 1024.0;
    println!(
        "store: scanning {REPOSITORIES} repositories x {TAGS_PER_REPOSITORY} tags into redb \
         ({CONCURRENCY} at a time) took {elapsed:.2?}"
    );
    println!(
        "  peak RSS (VmHWM) {peak_mib:.1} MiB (before scanning {:.1} MiB); target < {MEMORY_TARGET_MIB} MiB; ratio {:.2}",
        before as f64 / 1024.0,
        peak_mib / MEMORY_TARGET_MIB
    );
    if peak_mib >= MEMORY_TARGET_MIB {
        eprintln!("store: FAIL: peak RSS {peak_mib:.1} MiB >= {MEMORY_TARGET_MIB} MiB");
        return false;
    }
    true
}

fn store_timing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbTagStore::open(dir.path().join("tags.redb")).unwrap();
    let tags: Vec<String> = (0..STORE_TAGS)
        .map(|i| format!("{}.{}.{}", i / 1000, (i / 10) % 100, i % 10))
        .collect();
    let result = ScanResult::new(
        "bench/app",
        tags,
        &ExclusionList::default(),
        SystemTime::now(),
    );
    let key = RepoKey::new("bench", "app");
    let mut write = Vec::new();
    let mut read = Vec::new();
    let mut meta = Vec::new();
    let mut page = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        store.put(&key, &result).unwrap();
        write.push(t.elapsed());
        let t = Instant::now();
        let back = store.get_tags(&key).unwrap().unwrap();
        read.push(t.elapsed());
        assert_eq!(back.len(), STORE_TAGS);
        let t = Instant::now();
        std::hint::black_box(store.meta(&key).unwrap());
        meta.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(
            store
                .get_page(&key, Some("5000.ffffffffffffffff"), 100)
                .ok(),
        );
        let first = store.get_page(&key, None, 100).unwrap().unwrap();
        let token = first.continue_token.unwrap().replacen("100.", "5000.", 1);
        std::hint::black_box(store.get_page(&key, Some(&token), 100).unwrap());
        page.push(t.elapsed());
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (write, read) = (median(write), median(read));
    println!("store: {STORE_TAGS} tags in redb (median of {RUNS})");
    println!("  write (one fsynced transaction)    {write:>10.2?}");
    println!("  read all tags                      {read:>10.2?}");
    println!(
        "  write + read                       {:>10.2?}",
        write + read
    );
    println!(
        "  meta only                          {:>10.2?}",
        median(meta)
    );
    println!(
        "  two 100-tag pages (first, middle)  {:>10.2?}",
        median(page)
    );
}
