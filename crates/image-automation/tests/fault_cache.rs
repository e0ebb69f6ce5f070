#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Issue 12, problems 4 and 5: a damaged git cache (undecodable refs, garbled loose
//! objects, packs, HEAD, config, packed-refs, shallow file) and the lock files of a killed
//! process never block the automation: the next run quarantines or clears, says so in a
//! warning, clones again and pushes exactly its update. Runs `image-automation serve
//! --manifests --once` against the REAL testbed registry, reflector and git server.

mod serve_common;

use std::path::Path;

use serve_common::*;

/// Overwrites every file under `dir` (recursively) with garbage of the same length.
fn garble_all(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += garble_all(&path);
        } else {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            std::fs::write(&path, vec![0x5a; len.max(1)]).unwrap();
            n += 1;
        }
    }
    n
}

/// Overwrites the second half of every pack file (the data after the header).
fn garble_packs(cache: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(cache.join("objects/pack")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "pack" || x == "idx") {
            let mut bytes = std::fs::read(&path).unwrap();
            let half = bytes.len() / 2;
            for b in &mut bytes[half..] {
                *b = !*b;
            }
            std::fs::write(&path, bytes).unwrap();
            n += 1;
        }
    }
    n
}

fn loose_object_dirs(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 2 && p.is_dir())
        .collect()
}

/// One way to damage the cache; returns how many files it touched (must be > 0).
type Damage = fn(&Path) -> usize;

const DAMAGE: &[(&str, Damage)] = &[
    ("undecodable refs", |c| garble_all(&c.join("refs"))),
    ("garbled loose objects", |c| {
        loose_object_dirs(c).iter().map(|d| garble_all(d)).sum()
    }),
    ("garbled packs", garble_packs),
    ("broken HEAD", |c| {
        std::fs::write(c.join("HEAD"), "ref: \x00\x01garbage\n").unwrap();
        1
    }),
    ("broken config", |c| {
        std::fs::write(c.join("config"), "[core\n\tbare = maybe\n[[[\n").unwrap();
        1
    }),
    ("garbled packed-refs", |c| {
        std::fs::write(c.join("packed-refs"), "not a packed-refs file\n\x00\x00\n").unwrap();
        1
    }),
    ("garbled shallow file", |c| {
        std::fs::write(c.join("shallow"), "zzzz\n").unwrap();
        1
    }),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_cache_damage_is_quarantined_and_recloned() {
    let f = Fleet::start(&[]).await;

    // A first push: the cache holds a pack and the loose objects of our commit.
    f.publish("1.3.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");

    for (minor, (what, damage)) in (3..).zip(DAMAGE) {
        let cache = cache_dir(&f.storage);
        let touched = damage(&cache);
        assert!(
            touched > 0,
            "{what}: nothing to damage in {}",
            cache.display()
        );
        let before = f.head();
        let (from, to) = (format!("1.{minor}.0"), format!("1.{}.0", minor + 1));
        f.publish(&to).await;

        let (ok, a, log) = f.run_once();
        assert!(
            ok && a["pushed"] == true,
            "{what}: the run did not recover\n{a:#}\n{log}"
        );
        f.assert_one_update(&before, (&from, &to));
        // Said, not silent: a warning naming the damage (the event, logged).
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("GitCacheRecovered")
                && l.contains("damaged")),
            "{what}: no warning about the quarantine\n{log}"
        );
        assert!(
            f.storage.join("git/quarantine").read_dir().unwrap().count() == 1,
            "{what}: one quarantined copy per URL is kept"
        );
        assert!(!log.contains(f.git.password()), "{what}: password logged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_lock_files_of_a_killed_process_are_cleared() {
    let f = Fleet::start(&[]).await;

    // What a kill -9 mid-clone, mid-fetch or mid-push leaves: git's and gix's lock files.
    let (ok, a, log) = f.run_once();
    assert!(ok, "{a:#}\n{log}");
    let cache = cache_dir(&f.storage);
    let locks = [
        "shallow.lock",
        "HEAD.lock",
        "config.lock",
        "packed-refs.lock",
        "index.lock",
        "refs/iua/heads/main.lock",
    ];
    for lock in locks {
        std::fs::write(cache.join(lock), "").unwrap();
    }
    let before = f.head();
    f.publish("1.3.0").await;
    let (ok, a, log) = f.run_once();
    assert!(ok && a["pushed"] == true, "{a:#}\n{log}");
    f.assert_one_update(&before, ("1.2.3", "1.3.0"));
    for lock in locks {
        assert!(!cache.join(lock).exists(), "{lock} is still there");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("stale lock")),
        "{log}"
    );
}
