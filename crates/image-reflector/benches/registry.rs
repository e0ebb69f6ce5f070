//! Listing 10,000 tags from the local testbed registry (a real `docker-registry`) with our
//! client, against fetching the same page with a plain reqwest client, in the same run.
//! Prints medians and the ratio (the target is at most 1.3x) and exits non-zero above it.
//!
//! Run with `cargo bench -p image-reflector --bench registry`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A bench fails loudly.

use std::hint::black_box;
use std::time::{Duration, Instant};

use image_reflector::reference::ImageReference;
use image_reflector::registry::{ClientSettings, RegistryClient, TransportConfig};
use testbed::registry::{Registry, RegistryOptions};

const TAGS: usize = 10_000;
const RUNS: usize = 51;
const WARMUP: usize = 3;
const TARGET: f64 = 1.3;
const TIMEOUT: Duration = Duration::from_secs(60);

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let registry = Registry::start(RegistryOptions::anonymous()).await.unwrap();
    let tags: Vec<String> = (0..TAGS)
        .map(|i| format!("{}.{}.{}", i / 1000, (i / 10) % 100, i % 10))
        .collect();
    registry.push_tags("bench/app", &tags).await.unwrap();
    let image = ImageReference::parse(&registry.image("bench/app"), true).unwrap();

    // Baseline: the same request our client makes for the one page distribution answers,
    // body read, nothing else. Ours, warm: one client across scans (the controller's case;
    // ping cached). Runs alternate so drift (other builds on the machine) hits both alike.
    let plain = reqwest::Client::new();
    let url = format!("{}/v2/bench/app/tags/list?n=1000", registry.base_url());
    let client =
        RegistryClient::new(&TransportConfig::default(), ClientSettings::default()).unwrap();
    assert_eq!(
        client.list_tags(&image, None, TIMEOUT).await.unwrap().len(),
        TAGS
    );
    let mut baseline = Vec::with_capacity(RUNS);
    let mut warm = Vec::with_capacity(RUNS);
    for run in 0..RUNS + WARMUP {
        let started = Instant::now();
        let response = plain.get(&url).send().await.unwrap();
        assert!(response.status().is_success());
        black_box(response.bytes().await.unwrap());
        let plain_time = started.elapsed();
        let started = Instant::now();
        black_box(client.list_tags(&image, None, TIMEOUT).await.unwrap());
        let ours = started.elapsed();
        if run >= WARMUP {
            baseline.push(plain_time);
            warm.push(ours);
        }
    }
    let (baseline, warm) = (median(baseline), median(warm));

    // Ours, cold: a new client per scan (ping + list, new connection).
    let mut cold = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let client =
            RegistryClient::new(&TransportConfig::default(), ClientSettings::default()).unwrap();
        black_box(client.list_tags(&image, None, TIMEOUT).await.unwrap());
        cold.push(started.elapsed());
    }
    let cold = median(cold);

    let ratio = warm.as_secs_f64() / baseline.as_secs_f64();
    let cold_ratio = cold.as_secs_f64() / baseline.as_secs_f64();
    println!("registry: listing {TAGS} tags from the testbed registry (median of {RUNS})");
    println!("  plain reqwest GET (baseline)       {baseline:>10.2?}");
    println!(
        "  RegistryClient::list_tags (warm)   {warm:>10.2?}   ratio {ratio:.2}x (target <= {TARGET}x)"
    );
    println!(
        "  RegistryClient::list_tags (cold)   {cold:>10.2?}   ratio {cold_ratio:.2}x (new client: ping + list)"
    );
    if ratio > TARGET {
        eprintln!("registry: FAIL: {ratio:.2}x > {TARGET}x");
        std::process::exit(1);
    }
}
