//! The git layer on a repository of 20,000 files and 5,000 commits (made with
//! `git fast-import`) served by the testbed's smart-HTTP server, against the git CLI on
//! the same repository in the same run:
//!
//! - warm: "apply a change" → pushed commit with a warm cache, vs `git fetch` +
//!   `git commit` + `git push` in a warm clone (goal ≤ 1.5x);
//! - cold: fetch into an empty cache + checkout, vs `git clone --depth 1` (goal ≤ 1.2x);
//! - sparse (Flux's `GitSparseCheckout`, `update.path` = one directory of 100 files):
//!   cold checkout and warm run against the full ones (reported, no goal).
//!
//! Run with `cargo bench -p image-automation --bench git`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use image_automation::git::{
    Author, GitAuth, GitCache, GitClient, GitRef, PushSpec, RepoSpec, UpdateRequest, Written,
};
use testbed::git::{GitHttpServer, GitHttpServerOptions, git_cli};

const FILES: usize = 20_000;
const COMMITS: usize = 5_000;
const RUNS: usize = 5;

fn fast_import(repo: &Path) {
    let mut child = git_cli()
        .unwrap()
        .arg("--git-dir")
        .arg(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
    for c in 0..COMMITS {
        let msg = format!("commit {c}\n");
        write!(
            w,
            "commit refs/heads/main\ncommitter Bench <b@x> {} +0000\ndata {}\n{msg}",
            1_700_000_000 + c,
            msg.len()
        )
        .unwrap();
        let files: Vec<usize> = if c == 0 {
            (0..FILES).collect()
        } else {
            vec![(c * 7919) % FILES]
        };
        for f in files {
            let body = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{f}\ndata:\n  rev: \"{c}\"\n  image: registry.example.com/app-{f}:1.0.0\n"
            );
            write!(
                w,
                "M 100644 inline apps/d{:03}/f{f:05}.yaml\ndata {}\n{body}\n",
                f % 200,
                body.len()
            )
            .unwrap();
        }
    }
    drop(w);
    assert!(child.wait().unwrap().success());
}

fn git(dir: &Path, env: &[(String, String)], args: &[&str]) {
    let out = git_cli()
        .unwrap()
        .current_dir(dir)
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(GitHttpServer::start(GitHttpServerOptions::default()))
        .unwrap();
    let repos = server.repos();
    repos.create_empty("big").unwrap();
    let t = Instant::now();
    fast_import(&repos.path("big"));
    eprintln!(
        "generated {FILES} files / {COMMITS} commits in {:?}",
        t.elapsed()
    );
    git(&repos.path("big"), &[], &["gc", "--quiet"]);

    let url = server.url("big");
    let data = BTreeMap::from([
        (
            "username".to_string(),
            server.username().as_bytes().to_vec(),
        ),
        (
            "password".to_string(),
            server.password().as_bytes().to_vec(),
        ),
    ]);
    let spec = RepoSpec::new(
        url.clone(),
        GitAuth::from_secret(&url, Some(&data)).unwrap(),
    );
    let env = server.auth_env();
    let scratch = tempfile::tempdir().unwrap();

    // Cold: empty cache → fetched + checked out, vs git clone --depth 1.
    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let storage = scratch.path().join(format!("cold-{i}"));
        let cache = GitCache::new(&storage);
        let t = Instant::now();
        let repo = cache.open(&spec).unwrap();
        let co = repo.checkout(&GitRef::branch("main"), None).unwrap();
        ours.push(t.elapsed());
        drop(co);
        let t = Instant::now();
        git(
            scratch.path(),
            &env,
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                &url,
                &format!("cli-cold-{i}"),
            ],
        );
        cli.push(t.elapsed());
    }
    let (cold_ours, cold_cli) = (median(ours), median(cli));

    // Cold sparse: the same, with only `apps/d000` (100 of the 20,000 files) on disk.
    let sparse_path = "apps/d000";
    let mut sparse = Vec::new();
    for i in 0..RUNS {
        let cache = GitCache::new(scratch.path().join(format!("cold-sparse-{i}")));
        let t = Instant::now();
        let repo = cache.open(&spec).unwrap();
        let co = repo
            .checkout_sparse(&GitRef::branch("main"), None, Some(sparse_path))
            .unwrap();
        sparse.push(t.elapsed());
        assert_eq!(co.prepared.written, FILES / 200);
    }
    let cold_sparse = median(sparse);

    // Warm: a cache and a CLI clone that have seen the repository before.
    let cache = GitCache::new(scratch.path().join("warm"));
    let clone = scratch.path().join("cli-warm");
    git(
        scratch.path(),
        &env,
        &["clone", "-q", "--depth", "1", &url, "cli-warm"],
    );
    let author = Author {
        name: "Bench".into(),
        email: "bench@x".into(),
    };
    let request = UpdateRequest {
        repo: spec.clone(),
        checkout: GitRef::branch("main"),
        push: PushSpec::default(),
        author,
        signing: None,
        max_attempts: 1,
        sparse: None,
    };
    let file = "apps/d000/f00000.yaml";
    cache
        .update_and_push(&request, &mut |d| {
            std::fs::write(d.join(file), "warm-up\n")?;
            Ok(Some(Written {
                message: "warm up".into(),
                files: vec![file.into()],
                originals: Vec::new(),
            }))
        })
        .unwrap();
    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let t = Instant::now();
        let out = cache
            .update_and_push(&request, &mut |d| {
                std::fs::write(d.join(file), format!("ours {i}\n"))?;
                Ok(Some(Written {
                    message: format!("ours {i}"),
                    files: vec![file.into()],
                    originals: Vec::new(),
                }))
            })
            .unwrap();
        assert!(out.pushed.is_some());
        ours.push(t.elapsed());
        let t = Instant::now();
        git(&clone, &env, &["fetch", "-q", "origin", "main"]);
        git(&clone, &env, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        std::fs::write(clone.join(file), format!("cli {i}\n")).unwrap();
        git(
            &clone,
            &env,
            &["commit", "-q", "-a", "-m", &format!("cli {i}")],
        );
        git(&clone, &env, &["push", "-q", "origin", "HEAD:main"]);
        cli.push(t.elapsed());
    }
    let (warm_ours, warm_cli) = (median(ours), median(cli));

    // Warm sparse: the same runs with only `apps/d000` checked out.
    let sparse_request = UpdateRequest {
        sparse: Some(sparse_path.into()),
        ..request.clone()
    };
    let mut sparse = Vec::new();
    for i in 0..=RUNS {
        let t = Instant::now();
        let out = cache
            .update_and_push(&sparse_request, &mut |d| {
                std::fs::write(d.join(file), format!("sparse {i}\n"))?;
                Ok(Some(Written {
                    message: format!("sparse {i}"),
                    files: vec![file.into()],
                    originals: Vec::new(),
                }))
            })
            .unwrap();
        assert!(out.pushed.is_some());
        // The first run is the sparse worktree's own first checkout.
        if i > 0 {
            sparse.push(t.elapsed());
        }
    }
    let warm_sparse = median(sparse);

    let warm = warm_ours.as_secs_f64() / warm_cli.as_secs_f64();
    let cold = cold_ours.as_secs_f64() / cold_cli.as_secs_f64();
    println!(
        "git warm: ours {warm_ours:?} vs git fetch+commit+push {warm_cli:?}: ratio {warm:.2} (goal <= 1.5)"
    );
    println!(
        "git cold: ours {cold_ours:?} vs git clone --depth 1 {cold_cli:?}: ratio {cold:.2} (goal <= 1.2)"
    );
    println!(
        "git sparse ({sparse_path}, {} of {FILES} files): cold {cold_sparse:?} vs full {cold_ours:?} ({:.1}x faster), warm {warm_sparse:?} vs full {warm_ours:?} ({:.1}x faster)",
        FILES / 200,
        cold_ours.as_secs_f64() / cold_sparse.as_secs_f64(),
        warm_ours.as_secs_f64() / warm_sparse.as_secs_f64(),
    );
    if warm <= 1.5 && cold <= 1.2 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
