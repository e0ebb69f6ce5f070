//! Policy selection over 100,000 tags against the baseline of sorting the same strings,
//! measured in the same run. Prints medians and the ratios (the target is at most 3x).
//!
//! Run with `cargo bench -p image-reflector --bench policy`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use api_types::{ImagePolicyChoice, ImagePolicySpec, SemVerPolicy, TagFilter};
use image_reflector::policy::Policy;

const TAGS: usize = 100_000;
const RUNS: usize = 21;

/// A deterministic mix like a busy repository's: releases with and without `v`, release
/// candidates, build tags, branch tags.
fn tags() -> Vec<String> {
    let mut s: u64 = 0x0123_4567_89AB_CDEF;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..TAGS)
        .map(|i| {
            let (a, b, c) = (next() % 40, next() % 100, next() % 1000);
            match i % 8 {
                0..=2 => format!("{a}.{b}.{c}"),
                3..=4 => format!("v{a}.{b}.{c}"),
                5 => format!("{a}.{b}.{c}-rc.{}", next() % 20),
                6 => format!("main-{:08x}-{}", next() as u32, 1_600_000_000 + i),
                _ => format!("sha-{:012x}", next() & 0xFFFF_FFFF_FFFF),
            }
        })
        .collect()
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    times.sort();
    times[RUNS / 2]
}

fn semver_spec(filter: Option<(&str, &str)>) -> ImagePolicySpec {
    ImagePolicySpec {
        policy: ImagePolicyChoice {
            semver: Some(SemVerPolicy {
                range: ">=1.0.0 <30.0.0".into(),
            }),
            ..Default::default()
        },
        filter_tags: filter.map(|(p, e)| TagFilter {
            pattern: p.into(),
            extract: e.into(),
        }),
        ..Default::default()
    }
}

fn main() {
    let owned = tags();
    let tags: Vec<&str> = owned.iter().map(String::as_str).collect();

    let sort = median(|| {
        let mut v = tags.clone();
        let t = Instant::now();
        v.sort();
        let d = t.elapsed();
        black_box(v);
        d
    });

    let cases = [
        ("semver, no filter", semver_spec(None)),
        (
            "semver + filter pattern",
            semver_spec(Some((r"^v?\d+\.\d+\.\d+$", ""))),
        ),
        (
            "semver + filter pattern + extract",
            semver_spec(Some((r"^v?(?P<v>\d+\.\d+\.\d+(?:-rc\.\d+)?)$", "$v"))),
        ),
    ];
    println!("policy selection over {TAGS} tags (median of {RUNS} runs)");
    println!("  baseline: sort of the same {TAGS} strings: {sort:?}");
    let mut worst: f64 = 0.0;
    for (name, spec) in &cases {
        let policy = Policy::from_spec(spec).unwrap_or_else(|e| panic!("{e}"));
        let d = median(|| {
            let t = Instant::now();
            let r = policy.select(tags.iter().copied());
            let d = t.elapsed();
            black_box(r.ok());
            d
        });
        let ratio = d.as_secs_f64() / sort.as_secs_f64();
        worst = worst.max(ratio);
        println!("  {name}: {d:?} = {ratio:.2}x the sort");
    }
    println!(
        "  worst ratio {worst:.2}x (target <= 3.00x): {}",
        if worst <= 3.0 { "OK" } else { "OVER TARGET" }
    );
}
