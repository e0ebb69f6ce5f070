#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Issue 12, problems 5 and 7: `kill -9` of `image-automation serve --manifests` at chosen
//! points (first clone, fetch, push, and a sweep of moments in between) and SIGTERM with
//! hung git I/O. After each kill the remote branch is the old head or exactly the update
//! (never anything else, no other path) and a restart converges with no human. SIGTERM
//! ends the process within a few seconds and the log says what was cancelled. Against the
//! REAL testbed registry, reflector and git server, behind a slowing TCP proxy.

mod serve_common;

use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serve_common::*;
use testbed::git::GitHttpServer;
use testbed::process::Process;
use testbed::seed;

/// About `bytes` of text that compresses poorly (hex of an LCG stream).
fn noise(bytes: usize, seed: u64) -> String {
    let mut x = seed;
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(&format!("{:016x}", x));
        if out.len().is_multiple_of(64) {
            out.push('\n');
        }
    }
    out
}

/// The remote head is `old`, or one exact tag update on top of it (`from` -> `to`).
fn assert_old_or_new(
    git: &GitHttpServer,
    old: &str,
    image: &str,
    (from, to): (&str, &str),
    context: &str,
) -> bool {
    let head = git.repos().head_commit("fleet", "main").unwrap().unwrap();
    if head == old {
        return false;
    }
    assert_eq!(
        changed_paths(git, "fleet", old, &head),
        [CHECKOUT],
        "{context}: the remote moved to something else than the update"
    );
    seed::assert_one_tag_update(
        git.repos(),
        "fleet",
        old,
        &head,
        CHECKOUT,
        image,
        (from, to),
    );
    true
}

/// The usual [`Fleet`], its automation cloning through a [`SlowProxy`].
struct Setup {
    fleet: Fleet,
    proxy: SlowProxy,
}

async fn setup(extra: &[(&str, &str)], timeout: Option<&str>) -> Setup {
    let fleet = Fleet::start(extra).await;
    let proxy = SlowProxy::start(fleet.git.port()).await;
    fleet.write_manifests(&proxy.url(&fleet.git, "fleet"), timeout);
    Setup { fleet, proxy }
}

impl Setup {
    fn serve(&self, log: &str) -> Process {
        let f = &self.fleet;
        spawn_serve(
            &f.manifests,
            &f.storage,
            &f.reflector.base,
            &f.tmp.path().join(log),
        )
    }

    /// Sets the proxy to `mode`, starts `serve` logging to `log` and waits up to `limit`
    /// for `reached`.
    async fn serve_until(
        &self,
        mode: u8,
        log: &str,
        limit: Duration,
        reached: impl FnMut() -> bool,
    ) -> Process {
        self.proxy.set(mode);
        let serve = self.serve(log);
        let ok = eventually(limit, reached).await;
        assert!(ok, "{}", serve.log_tail());
        serve
    }

    fn head(&self) -> String {
        self.fleet.head()
    }

    /// Restarts at full speed and waits for the push of `from` -> `to` on top of `old`.
    async fn restart_and_converge(&self, old: &str, (from, to): (&str, &str), log: &str) {
        self.proxy.set(FAST);
        let mut serve = self.serve(log);
        let moved = eventually(Duration::from_secs(60), || self.head() != old).await;
        let text = std::fs::read_to_string(serve.log_path()).unwrap_or_default();
        assert!(moved, "no push after the restart ({log}):\n{text}");
        assert!(assert_old_or_new(
            &self.fleet.git,
            old,
            &self.fleet.image,
            (from, to),
            log
        ));
        assert!(!text.contains(self.fleet.git.password()), "password logged");
        serve.stop();
        let left = lock_files(&self.fleet.storage.join("git"));
        assert!(left.is_empty(), "{log}: stale locks survived: {left:?}");
    }
}

/// SIGTERM with up to 5 s to exit: the exit status, how long it took and the log (its
/// shutdown lines echoed, with `what`).
fn terminate(serve: &mut Process, what: &str) -> (Option<ExitStatus>, Duration, String) {
    let sent = Instant::now();
    let status = serve.terminate(Duration::from_secs(5));
    let took = sent.elapsed();
    let log = std::fs::read_to_string(serve.log_path()).unwrap();
    eprintln!("exit {took:?} after SIGTERM {what}");
    for line in log.lines().filter(|l| l.contains("shutdown")) {
        eprintln!("  {line}");
    }
    (status, took, log)
}

fn lock_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(lock_files(&p));
        } else if p.extension().is_some_and(|x| x == "lock") {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_chosen_points_then_a_restart_converges() {
    let big = noise(3 << 20, 7);
    let s = setup(&[("assets/big.txt", big.as_str())], None).await;

    // 1. During the first clone (answers trickle): kill once pack data is flowing.
    let old = s.head();
    s.fleet.publish("1.3.0").await;
    let mut serve = s
        .serve_until(SLOW_DOWNLOADS, "clone.log", Duration::from_secs(60), || {
            s.proxy.down.load(Ordering::SeqCst) > 300_000
        })
        .await;
    let peak = serve.peak_rss_kib().unwrap();
    eprintln!("VmHWM mid-clone: {peak} KiB");
    kill9(&serve);
    serve.stop();
    assert!(peak < 256 * 1024, "VmHWM {peak} KiB during a 3 MB clone");
    assert!(!assert_old_or_new(
        &s.fleet.git,
        &old,
        &s.fleet.image,
        ("1.2.3", "1.3.0"),
        "clone"
    ));
    eprintln!(
        "locks after the kill mid-clone: {:?}",
        lock_files(&s.fleet.storage.join("git"))
    );
    let packs = s.fleet.storage.join("git").join(
        cache_dir(&s.fleet.storage)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
            + "/objects/pack",
    );
    eprintln!(
        "objects/pack after the kill mid-clone: {:?}",
        std::fs::read_dir(&packs)
            .map(|d| d
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
    s.restart_and_converge(&old, ("1.2.3", "1.3.0"), "after-clone.log")
        .await;

    // 2. During an incremental fetch of a big commit someone else pushed.
    let theirs = s
        .fleet
        .git
        .repos()
        .commit_files(
            "fleet",
            "main",
            &[("assets/big2.txt", noise(3 << 20, 11))],
            "Human change\n",
        )
        .unwrap();
    s.fleet.publish("1.4.0").await;
    let start = s.proxy.down.load(Ordering::SeqCst);
    let mut serve = s
        .serve_until(SLOW_DOWNLOADS, "fetch.log", Duration::from_secs(60), || {
            s.proxy.down.load(Ordering::SeqCst) > start + 300_000
        })
        .await;
    kill9(&serve);
    serve.stop();
    assert!(!assert_old_or_new(
        &s.fleet.git,
        &theirs,
        &s.fleet.image,
        ("1.3.0", "1.4.0"),
        "fetch"
    ));
    s.restart_and_converge(&theirs, ("1.3.0", "1.4.0"), "after-fetch.log")
        .await;

    // 3. During the push (its upload trickles): the server never got the whole pack.
    let old = s.head();
    s.fleet.publish("1.5.0").await;
    let start = s.proxy.up_pushes.load(Ordering::SeqCst);
    let mut serve = s
        .serve_until(SLOW_PUSHES, "push.log", Duration::from_secs(60), || {
            s.proxy.up_pushes.load(Ordering::SeqCst) > start
        })
        .await;
    kill9(&serve);
    serve.stop();
    // The kill may race the end of the upload: old or exactly new, nothing else.
    let pushed = assert_old_or_new(
        &s.fleet.git,
        &old,
        &s.fleet.image,
        ("1.4.0", "1.5.0"),
        "push",
    );
    if !pushed {
        s.restart_and_converge(&old, ("1.4.0", "1.5.0"), "after-push.log")
            .await;
    }

    // 4. A sweep of moments from start-up to the commit and push at full speed.
    s.proxy.set(FAST);
    for (minor, delay_ms) in (5..).zip([30u64, 80, 150, 250, 400, 700]) {
        let old = s.head();
        let (from, to) = (format!("1.{minor}.0"), format!("1.{}.0", minor + 1));
        s.fleet.publish(&to).await;
        let mut serve = s.serve(&format!("sweep-{delay_ms}.log"));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        kill9(&serve);
        serve.stop();
        let context = format!("kill after {delay_ms} ms");
        if !assert_old_or_new(&s.fleet.git, &old, &s.fleet.image, (&from, &to), &context) {
            s.restart_and_converge(&old, (&from, &to), &format!("after-sweep-{delay_ms}.log"))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_hanging_server_ends_within_seconds() {
    // The GitRepository timeout is Flux's default minute: shutdown must not wait it out.
    let s = setup(&[], Some("60s")).await;
    s.fleet.publish("1.3.0").await;
    let mut serve = s
        .serve_until(HANG, "hang.log", Duration::from_secs(30), || {
            s.proxy.accepted.load(Ordering::SeqCst) > 0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took, log) = terminate(&mut serve, "with a hanging git server");
    assert!(
        status.is_some(),
        "still running {took:?} after SIGTERM with a hanging git server:\n{log}"
    );
    assert!(
        log.contains("abandoned") || log.contains("cancelled"),
        "the log does not say what was stopped:\n{log}"
    );
    assert!(!log.contains(s.fleet.git.password()));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_push_kills_it_and_logs_the_outcome() {
    let s = setup(&[], Some("60s")).await;
    let old = s.head();
    s.fleet.publish("1.3.0").await;
    let mut serve = s
        .serve_until(
            SLOW_PUSHES,
            "push-term.log",
            Duration::from_secs(60),
            || s.proxy.up_pushes.load(Ordering::SeqCst) > 0,
        )
        .await;
    let (status, took, log) = terminate(&mut serve, "mid-push");
    assert!(
        status.is_some(),
        "still running {took:?} after SIGTERM:\n{log}"
    );
    // Give a push that the server had fully received a moment to land, then check.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if assert_old_or_new(
        &s.fleet.git,
        &old,
        &s.fleet.image,
        ("1.2.3", "1.3.0"),
        "SIGTERM",
    ) {
        let head = s.head();
        assert!(
            log.contains(&format!("pushed commit '{}'", &head[..7])),
            "a push that landed is not logged:\n{log}"
        );
    } else {
        assert!(
            log.contains("cancelled by shutdown") && log.contains("push of"),
            "the cancelled push is not logged:\n{log}"
        );
    }
    // The next start pushes.
    s.restart_and_converge(&old, ("1.2.3", "1.3.0"), "after-term.log")
        .await;
}
