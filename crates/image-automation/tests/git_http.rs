#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The git layer against the testbed's smart-HTTP server (lighttpd + git http-backend,
//! basic auth): clone into the cache, commit, push, retry, refspecs, errors.

mod git_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use git_common::*;
use image_automation::git::{GitAuth, GitCache, GitClient, GitError, GitRef, PushSpec, RepoSpec};
use testbed::git::GitHttpServer;

#[tokio::test]
async fn commit_push_noop_and_incremental_fetch() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (_storage, cache) = new_cache();
    let req = request(
        http_spec(&server, "fleet"),
        GitRef::branch("main"),
        PushSpec::default(),
    );

    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    let pushed = out.pushed.clone().expect("a commit was pushed");
    assert_eq!(pushed.branch, "main");
    assert_eq!(out.attempts, 1);
    assert_eq!(out.checked_out, seeded);
    assert_eq!(
        out.observed_revision(),
        format!("main@sha1:{}", pushed.commit)
    );
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit.clone())
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);
    assert_eq!(
        repos.commit_parents("fleet", &pushed.commit).unwrap(),
        std::slice::from_ref(&seeded)
    );
    assert_eq!(
        repos.commit_author("fleet", &pushed.commit).unwrap(),
        "Flux Bot <flux@example.invalid>"
    );
    assert_eq!(
        repos.commit_committer("fleet", &pushed.commit).unwrap(),
        "Flux Bot <flux@example.invalid>"
    );
    // Verbatim: no newline added.
    assert_eq!(
        repos.commit_message("fleet", &pushed.commit).unwrap(),
        "Update checkout to 1.2.4\n\nAutomated by image-automation."
    );
    // Every other file is untouched: the trees differ in exactly one path.
    assert_only_tag_changed(repos, "fleet", &seeded, &pushed.commit, "1.2.3", "1.2.4");

    // The cache persists; mark it to prove the next run reuses it rather than re-cloning.
    let cache_dir = cache.repo_dir(&server.url("fleet"));
    assert!(cache_dir.join("HEAD").is_file());
    std::fs::write(cache_dir.join("iua-test-marker"), b"").unwrap();
    let packs = pack_count(&cache_dir);
    assert!(packs >= 1);

    // No change: no commit, no push.
    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    assert_eq!(out.pushed, None);
    assert_eq!(out.checked_out, pushed.commit);
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 2);

    // Someone else commits; the next run fetches only that (one small pack) and builds on it.
    let theirs = repos
        .commit_files(
            "fleet",
            "main",
            &[("README.md", "# fleet\n\nedited by a human\n")],
            "Edit README\n",
        )
        .unwrap();
    let second = push_tag_on(&cache, &req, (repos, "fleet"), &theirs, ("1.2.4", "1.2.5")).await;
    assert!(
        cache_dir.join("iua-test-marker").exists(),
        "the cache was recreated"
    );
    assert_eq!(pack_count(&cache_dir), packs + 1, "one incremental pack");
    assert_eq!(
        repos
            .file_at("fleet", "main", "README.md")
            .unwrap()
            .unwrap(),
        "# fleet\n\nedited by a human\n"
    );
    // The cache is shallow: the first fetch took only the tip.
    assert!(cache_dir.join("shallow").is_file());

    // The remote-head probe sees the pushed commit.
    let head = {
        let cache = cache.clone();
        let r = req.repo.clone();
        tokio::task::spawn_blocking(move || cache.remote_head(&r, &GitRef::branch("main")))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert_eq!(head.revision(), format!("main@sha1:{}", second.commit));
}

#[tokio::test]
async fn push_branch_refspec_and_options() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    // http-backend refuses push options unless the repository advertises them.
    let (ok, o) = output(repos.git("fleet").unwrap().args([
        "config",
        "receive.advertisePushOptions",
        "true",
    ]));
    assert!(ok, "{o}");
    let (_storage, cache) = new_cache();
    let push = PushSpec {
        branch: Some("automation".into()),
        refspec: Some("refs/heads/automation:refs/heads/automation-copy".into()),
        options: BTreeMap::from([
            ("ci.skip".to_string(), String::new()),
            ("topic".to_string(), "images".to_string()),
        ]),
    };
    let req = request(http_spec(&server, "fleet"), GitRef::branch("main"), push);

    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    let first = out.pushed.clone().unwrap();
    assert_eq!(first.branch, "automation");
    assert!(out.switched_branch);
    // Observed revision stays on the checkout branch when pushing elsewhere (Flux).
    assert_eq!(out.observed_revision(), format!("main@sha1:{seeded}"));
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );
    assert_eq!(
        repos.head_commit("fleet", "automation").unwrap(),
        Some(first.commit.clone())
    );
    assert_eq!(
        repos.head_commit("fleet", "automation-copy").unwrap(),
        Some(first.commit.clone())
    );
    assert_eq!(
        repos.commit_parents("fleet", &first.commit).unwrap(),
        std::slice::from_ref(&seeded)
    );

    // A second update lands on top of the existing push branch, history kept.
    let second = push_tag_on(
        &cache,
        &req,
        (repos, "fleet"),
        &first.commit,
        ("1.2.4", "1.2.5"),
    )
    .await;
    assert_eq!(
        repos.head_commit("fleet", "automation-copy").unwrap(),
        Some(second.commit.clone())
    );
    assert_eq!(repos.commit_count("fleet", "automation").unwrap(), 3);
    assert_eq!(
        repos.branches("fleet").unwrap(),
        ["automation", "automation-copy", "main"]
    );
}

#[tokio::test]
async fn concurrent_commit_is_preserved_by_retry() {
    let server = http_server().await;
    let repos = server.repos().clone();
    seed(&repos, "fleet");
    let (_storage, cache) = new_cache();
    let req = request(
        http_spec(&server, "fleet"),
        GitRef::branch("main"),
        PushSpec::default(),
    );

    let calls = Arc::new(AtomicU32::new(0));
    let theirs = Arc::new(std::sync::Mutex::new(String::new()));
    let (c, t, r) = (calls.clone(), theirs.clone(), repos.clone());
    let out = run(&cache, &req, move |d| {
        // Between our fetch and our push, someone else pushes to main.
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            let id = r
                .commit_files(
                    "fleet",
                    "main",
                    &[("clusters/prod/extra.yaml", "kind: ConfigMap\n")],
                    "Human change\n",
                )
                .unwrap();
            *t.lock().unwrap() = id;
        }
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap();
    let theirs = theirs.lock().unwrap().clone();
    let ours = out.pushed.unwrap();
    assert_eq!(out.attempts, 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "re-applied once on the new head"
    );
    assert_eq!(out.checked_out, theirs);
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(ours.commit.clone())
    );
    assert_eq!(
        repos.commit_parents("fleet", &ours.commit).unwrap(),
        [theirs]
    );
    assert_eq!(repos.commit_count("fleet", "main").unwrap(), 3);
    assert_eq!(
        repos
            .file_at("fleet", "main", "clusters/prod/extra.yaml")
            .unwrap()
            .as_deref(),
        Some("kind: ConfigMap\n")
    );
    assert!(
        repos
            .file_at("fleet", "main", FILE)
            .unwrap()
            .unwrap()
            .contains(&checkout_line("1.2.4"))
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = http_server().await;
    let repos = server.repos().clone();
    seed(&repos, "fleet");
    let (_storage, cache) = new_cache();
    let mut req = request(
        http_spec(&server, "fleet"),
        GitRef::branch("main"),
        PushSpec::default(),
    );
    req.max_attempts = 2;
    let n = Arc::new(AtomicU32::new(0));
    let (r, c) = (repos.clone(), n.clone());
    let err = run(&cache, &req, move |d| {
        // Someone always wins the race.
        let i = c.fetch_add(1, Ordering::SeqCst);
        r.commit_files("fleet", "main", &[("race.txt", format!("{i}\n"))], "Race\n")
            .unwrap();
        set_tag(d, "1.2.3", "1.2.4")
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GitError::PushRejected { .. }), "{err}");
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(
        !repos
            .file_at("fleet", "main", FILE)
            .unwrap()
            .unwrap()
            .contains(&checkout_line("1.2.4"))
    );
}

#[tokio::test]
async fn wrong_password_fails_typed_and_pushes_nothing() {
    let (server, seeded) = http_fleet().await;
    let url = server.url("fleet");
    let secret = "not-the-password-4242";
    let auth = GitAuth::from_secret(&url, Some(&basic(server.username(), secret))).unwrap();
    let err = wrong_credentials_push_nothing(
        RepoSpec::new(url, auth),
        (server.repos(), "fleet"),
        &seeded,
    )
    .await;
    assert!(matches!(err, GitError::AuthFailed { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert_eq!(err.flux_reason(), "GitOperationFailed");
}

#[tokio::test]
async fn missing_ref_and_semver_fail_typed() {
    let (server, _) = http_fleet().await;
    let (_storage, cache) = new_cache();
    let req = request(
        http_spec(&server, "fleet"),
        GitRef::branch("nope"),
        PushSpec::default(),
    );
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::RefNotFound(ref m) if m.contains("refs/heads/nope")),
        "{err:?}"
    );

    let semver = GitRef {
        semver: Some(">=1.0.0".into()),
        ..GitRef::default()
    };
    let req = request(
        http_spec(&server, "fleet"),
        semver,
        PushSpec {
            branch: Some("main".into()),
            ..PushSpec::default()
        },
    );
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    // No tag at all: retried like Flux's "no match found for semver" (a tag may come).
    assert!(
        matches!(err, GitError::RefNotFound(ref m) if m.contains("spec.ref.semver") && m.contains(">=1.0.0")),
        "{err:?}"
    );
    assert!(!err.is_stall());
    assert_eq!(err.flux_reason(), "GitOperationFailed");

    // A tag checkout gives no push branch: a clear stalled error.
    let tag = GitRef {
        tag: Some("v1".into()),
        ..GitRef::default()
    };
    let req = request(http_spec(&server, "fleet"), tag, PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::InvalidConfig(ref m) if m.contains("push spec not provided")),
        "{err:?}"
    );
    assert!(err.is_stall());
}

#[tokio::test]
async fn tag_and_commit_checkouts_push_to_a_branch() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let (ok, o) = output(
        repos
            .git("fleet")
            .unwrap()
            .args(["tag", "-a", "-m", "release", "v1", &seeded]),
    );
    assert!(ok, "{o}");
    let later = repos
        .commit_files("fleet", "main", &[("README.md", "later\n")], "Later\n")
        .unwrap();
    let (_storage, cache) = new_cache();

    let tag = GitRef {
        tag: Some("v1".into()),
        ..GitRef::default()
    };
    push_to_new_branch(&cache, &server, tag, "from-tag", "1.2.4", &seeded).await;
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(later.clone())
    );

    let commit = GitRef {
        commit: Some(seeded.clone()),
        branch: Some("main".into()),
        ..GitRef::default()
    };
    push_to_new_branch(&cache, &server, commit, "from-commit", "1.2.9", &seeded).await;
}

#[tokio::test]
async fn semver_checkout_takes_the_highest_tag_in_range() {
    let (server, seeded) = http_fleet().await;
    let repos = server.repos();
    let tag = |args: &[&str]| {
        let (ok, o) = output(repos.git("fleet").unwrap().arg("tag").args(args));
        assert!(ok, "{o}");
    };
    let commit = |text: &str| {
        repos
            .commit_files("fleet", "main", &[("README.md", text)], "Release\n")
            .unwrap()
    };
    tag(&["v1.0.0", &seeded]);
    let v1_2 = commit("1.2\n");
    tag(&["v1.2.0", &v1_2]);
    let v1_10 = commit("1.10\n");
    tag(&["-a", "-m", "release", "v1.10.0", &v1_10]);
    let rc = commit("2.0 rc\n");
    tag(&["v2.0.0-rc.1", &rc]);
    tag(&["latest", &rc]);
    tag(&["v1.11", &rc]);
    let (_storage, cache) = new_cache();

    let in_range = GitRef {
        semver: Some(">=1.0.0 <2.0.0".into()),
        ..GitRef::default()
    };
    // v1.10.0 (annotated), not v1.2.0 (lexical), v2.0.0-rc.1 (outside), latest or v1.11
    // (no version for Flux).
    push_to_new_branch(
        &cache,
        &server,
        in_range.clone(),
        "from-semver",
        "1.2.4",
        &v1_10,
    )
    .await;
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(rc.clone())
    );

    // As for a tag, Flux infers no push branch from a semver ref.
    let req = request(http_spec(&server, "fleet"), in_range, PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.5"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::InvalidConfig(ref m) if m.contains("push spec not provided")),
        "{err:?}"
    );

    let push = PushSpec {
        branch: Some("from-semver".into()),
        ..PushSpec::default()
    };
    let none = GitRef {
        semver: Some(">=3.0.0".into()),
        ..GitRef::default()
    };
    let req = request(http_spec(&server, "fleet"), none, push.clone());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.5"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::RefNotFound(ref m) if m.contains("spec.ref.semver") && m.contains(">=3.0.0")),
        "{err:?}"
    );
    assert_eq!(err.flux_reason(), "GitOperationFailed");

    let invalid = GitRef {
        semver: Some(">=1.0.0 <<2".into()),
        ..GitRef::default()
    };
    let req = request(http_spec(&server, "fleet"), invalid, push);
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.5"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::InvalidConfig(ref m) if m.contains("spec.ref.semver")),
        "{err:?}"
    );
    assert!(err.is_stall());
}

/// Checks out `checkout` (which resolves to `seeded`) and pushes the update of 1.2.3 to
/// `to` to the new branch `branch`: one commit on top of `seeded`.
async fn push_to_new_branch(
    cache: &Arc<GitCache>,
    server: &GitHttpServer,
    checkout: GitRef,
    branch: &str,
    to: &'static str,
    seeded: &str,
) {
    let push = PushSpec {
        branch: Some(branch.into()),
        ..PushSpec::default()
    };
    let out = run(
        cache,
        &request(http_spec(server, "fleet"), checkout, push),
        move |d| set_tag(d, "1.2.3", to),
    )
    .await
    .unwrap();
    assert_eq!(out.checked_out, seeded);
    let pushed = out.pushed.unwrap();
    assert_eq!(
        server
            .repos()
            .commit_parents("fleet", &pushed.commit)
            .unwrap(),
        [seeded.to_string()]
    );
    assert_eq!(
        server.repos().head_commit("fleet", branch).unwrap(),
        Some(pushed.commit)
    );
}
