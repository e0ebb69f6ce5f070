#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fault proxy in front of the real git smart-HTTP server: the git CLI clones and pushes
//! through it (request bodies, chunked uploads), a fault fails git, and clearing the fault
//! lets the next command through.

use std::path::{Path, PathBuf};
use std::process::Output;

use testbed::fault_proxy::{EchoFormat, Fault, FaultProxy};
use testbed::git::{GitHttpServer, GitHttpServerOptions, git_cli};

/// Runs git in `dir` off the runtime's threads (the proxy runs on them).
async fn git(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = git_cli().unwrap();
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().cloned());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn git_clones_and_pushes_through_the_proxy_and_faults_fail_it() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    server
        .repos()
        .create("fleet", &[("app.yaml", "image: app:1\n")])
        .unwrap();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", server.port()))
        .await
        .unwrap();
    let url = server
        .url("fleet")
        .replace(&format!("127.0.0.1:{}", server.port()), &proxy.host());
    let env = server.auth_env();
    let tmp = tempfile::tempdir().unwrap();
    let clone: PathBuf = tmp.path().join("clone");

    let out = git(tmp.path(), &env, &["clone", "-q", &url, "clone"]).await;
    assert_ok(&out, "clone through the proxy");
    std::fs::write(clone.join("app.yaml"), "image: app:2\n").unwrap();
    for args in [
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qam",
            "bump",
        ][..],
        &["push", "-q", "origin", "HEAD:main"],
    ] {
        let out = git(&clone, &env, args).await;
        assert_ok(&out, &format!("git {args:?} through the proxy"));
    }
    let head = git(&clone, &env, &["rev-parse", "HEAD"]).await;
    let pushed = server.repos().head_commit("fleet", "main").unwrap();
    assert_eq!(
        pushed.as_deref(),
        Some(String::from_utf8_lossy(&head.stdout).trim())
    );

    for fault in [
        Fault::status(503),
        Fault::Reset,
        Fault::Truncate { after: 10 },
        Fault::EchoHeaders {
            status: 500,
            format: EchoFormat::Text,
        },
    ] {
        proxy.set_fault(fault.clone());
        let out = git(&clone, &env, &["ls-remote", "origin"]).await;
        assert!(!out.status.success(), "{fault:?}: git succeeded");
        proxy.clear();
        let out = git(&clone, &env, &["ls-remote", "origin"]).await;
        assert_ok(&out, &format!("ls-remote after {fault:?}"));
    }
    assert!(proxy.faulted_requests() >= 4);
}
