#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `proxySecretRef` with a `socks5://` address: gix's ls-remote and fetch (reqwest) and the
//! git CLI's push (libcurl) all go through a real SOCKS5 proxy on loopback with RFC 1929
//! credentials; a wrong proxy password fails without leaking it and pushes nothing. The
//! proxy is `testbed::socks5`, in front of the testbed's smart-HTTP server.

mod git_common;

use std::sync::Arc;

use git_common::*;
use image_automation::git::{GitCache, GitClient, GitError, GitRef, PushSpec, RepoSpec};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use testbed::socks5::Socks5Proxy;

const PROXY_USER: &str = "socks-user";
const PROXY_PASSWORD: &str = "so s3cret:@/%";

fn spec_via(server: &GitHttpServer, repo: &str, proxy: &Socks5Proxy, password: &str) -> RepoSpec {
    proxied_spec(server, repo, proxy.address(), PROXY_USER, password)
}

#[tokio::test]
async fn fetch_and_push_go_through_the_socks5_proxy() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let proxy = Socks5Proxy::start(PROXY_USER, PROXY_PASSWORD)
        .await
        .unwrap();
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let spec = spec_via(&server, "fleet", &proxy, PROXY_PASSWORD);

    // ls-remote (gix).
    let (c, s) = (cache.clone(), spec.clone());
    let head = tokio::task::spawn_blocking(move || c.remote_head(&s, &GitRef::branch("main")))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(head.commit, seeded);

    // Fetch (gix) and push (git CLI).
    let req = request(spec, GitRef::branch("main"), PushSpec::default());
    let out = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap();
    let pushed = out.pushed.unwrap();
    assert_eq!(
        repos.head_commit("fleet", "main").unwrap(),
        Some(pushed.commit)
    );
    let seen = proxy.seen();
    assert_eq!(seen.refused, 0, "{seen:?}");
    // Connections are kept alive, so only each connection's first request is recorded:
    // ls-remote's and fetch's (gix) and push's (git CLI) discovery requests.
    let count = |what: &str| seen.relayed.iter().filter(|r| r.contains(what)).count();
    assert!(
        count("GET /fleet.git/info/refs?service=git-upload-pack") >= 2,
        "{seen:?}"
    );
    assert!(
        count("GET /fleet.git/info/refs?service=git-receive-pack") >= 1,
        "{seen:?}"
    );
}

#[tokio::test]
async fn wrong_socks5_password_fails_without_leaking_it() {
    let server = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let repos = server.repos();
    let seeded = seed(repos, "fleet");
    let proxy = Socks5Proxy::start(PROXY_USER, PROXY_PASSWORD)
        .await
        .unwrap();
    let storage = tempfile::tempdir().unwrap();
    let cache = Arc::new(GitCache::new(storage.path()));
    let wrong = "wrong-socks-pass";
    let spec = spec_via(&server, "fleet", &proxy, wrong);
    let req = request(spec, GitRef::branch("main"), PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(
        matches!(err, GitError::AuthFailed { .. }) && text.contains("proxySecretRef"),
        "{text}"
    );
    let seen = proxy.seen();
    assert!(seen.refused >= 1, "{seen:?}");
    assert!(seen.relayed.is_empty(), "{seen:?}");
    assert_eq!(repos.head_commit("fleet", "main").unwrap(), Some(seeded));
}
