#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A git server (or a proxy on the way) that echoes the request's headers, `Authorization`
//! and `Proxy-Authorization` included, in its error bodies: `testbed::fault_proxy` with
//! `Fault::EchoHeaders` in front of the real smart-HTTP server (basic auth). Fetch (gix) and
//! push (git CLI) fail with the headers echoed; no form of any credential the controller
//! sent may appear in the error that becomes the status message, event and log line.
//! Credentials come from the Secret, from the URL itself (`http://user:pass@host`) and from
//! a `proxySecretRef`.

mod git_common;

use std::collections::BTreeMap;

use git_common::*;
use image_automation::git::{GitAuth, GitError, GitRef, PushSpec, RepoSpec};
use testbed::fault_proxy::{EchoFormat, Fault, FaultProxy};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use testbed::leaks::{credential_forms, percent_encode};

/// `+`, `/` and `=` in its base64, characters that URLs percent-encode.
const PASSWORD: &str = "p@ss:w/rd?~>>s3cr3t";
const USER: &str = "echo-user";
const PROXY_USER: &str = "proxy-user";
const PROXY_PASSWORD: &str = "px~>>s3cret:@/%";

fn assert_no_leak(what: &str, err: &GitError, secrets: &[(&str, &str)]) {
    let text = format!("{err}\n{err:?}");
    for (user, password) in secrets {
        for form in credential_forms(user, password) {
            assert!(
                !text.contains(&form),
                "{what}: {form:?} leaked into the error:\n{text}"
            );
        }
    }
}

async fn server() -> (GitHttpServer, String) {
    let server = GitHttpServer::start(GitHttpServerOptions {
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
        repos: None,
        tls: None,
    })
    .await
    .unwrap();
    let seeded = seed(server.repos(), "fleet");
    (server, seeded)
}

fn echo(status: u16) -> Fault {
    Fault::EchoHeaders {
        status,
        format: EchoFormat::Text,
    }
}

/// Runs the 1.2.3 -> 1.2.4 update with a fresh cache; it must fail, and `fleet`'s `main`
/// must still be `head`.
async fn failing_run(spec: RepoSpec, server: &GitHttpServer, head: &str) -> GitError {
    let (_storage, cache) = new_cache();
    let req = request(spec, GitRef::branch("main"), PushSpec::default());
    let err = run(&cache, &req, |d| set_tag(d, "1.2.3", "1.2.4"))
        .await
        .unwrap_err();
    assert_eq!(
        server.repos().head_commit("fleet", "main").unwrap(),
        Some(head.to_string())
    );
    err
}

/// Fetch fails with every request's headers echoed back (401 and 500); then the fetch goes
/// through and the push fails with its headers echoed.
async fn fetch_and_push_echo(
    what: &str,
    proxy: &FaultProxy,
    spec: impl Fn() -> RepoSpec,
    server: &GitHttpServer,
    head: &str,
    secrets: &[(&str, &str)],
) {
    for status in [401, 500] {
        proxy.set_fault(echo(status));
        let faulted = proxy.faulted_requests();
        let err = failing_run(spec(), server, head).await;
        assert!(
            proxy.faulted_requests() > faulted,
            "{what}: no fault hit: {err:?}"
        );
        assert_no_leak(&format!("{what}, fetch {status}"), &err, secrets);
        let push_faulted = proxy.faulted_requests();
        proxy.clear();
        proxy.set_fault_on("git-receive-pack", echo(status));
        let err = failing_run(spec(), server, head).await;
        assert!(
            proxy.faulted_requests() > push_faulted,
            "{what}: the push never reached the proxy: {err}"
        );
        assert!(
            matches!(
                err,
                GitError::PushFailed(_) | GitError::AuthFailed { .. } | GitError::Network { .. }
            ),
            "{what}: {err:?}"
        );
        assert_no_leak(&format!("{what}, push {status}"), &err, secrets);
        proxy.clear();
    }
}

#[tokio::test]
async fn secret_credentials_never_come_back() {
    let (server, head) = server().await;
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", server.port()))
        .await
        .unwrap();
    let url = format!("{}/fleet.git", proxy.url());
    let spec = || {
        let auth = GitAuth::from_secret(&url, Some(&basic(USER, PASSWORD))).unwrap();
        RepoSpec::new(url.clone(), auth)
    };
    fetch_and_push_echo("secret", &proxy, spec, &server, &head, &[(USER, PASSWORD)]).await;
}

/// Credentials in `spec.url` (no secret). gix refuses to send them over plain HTTP (the
/// testbed's server has no TLS), so the fetch fails before any request: its error, and
/// the spec's `Debug`, must not quote them either.
#[tokio::test]
async fn url_credentials_never_come_back() {
    let (server, head) = server().await;
    let url = format!(
        "http://{USER}:{}@127.0.0.1:{}/fleet.git",
        percent_encode(PASSWORD),
        server.port()
    );
    let spec = RepoSpec::new(url.clone(), GitAuth::none());
    let debug = format!("{spec:?}");
    let err = failing_run(spec, &server, &head).await;
    assert_no_leak("url", &err, &[(USER, PASSWORD)]);
    for form in credential_forms(USER, PASSWORD) {
        assert!(!debug.contains(&form), "{form:?} in {debug}");
    }
}

#[tokio::test]
async fn proxy_credentials_never_come_back() {
    let (server, head) = server().await;
    // The fault proxy as the `proxySecretRef` HTTP proxy: it forwards absolute-form
    // requests to the git server, and echoes `Proxy-Authorization` with the rest.
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", server.port()))
        .await
        .unwrap();
    let url = server.url("fleet");
    let proxy_data = BTreeMap::from([
        ("address".to_string(), proxy.url().into_bytes()),
        ("username".to_string(), PROXY_USER.as_bytes().to_vec()),
        ("password".to_string(), PROXY_PASSWORD.as_bytes().to_vec()),
    ]);
    let spec = || {
        let auth = GitAuth::from_secret(&url, Some(&basic(USER, PASSWORD)))
            .unwrap()
            .with_proxy_secret(&url, &proxy_data)
            .unwrap();
        RepoSpec::new(url.clone(), auth)
    };
    fetch_and_push_echo(
        "proxy",
        &proxy,
        spec,
        &server,
        &head,
        &[(USER, PASSWORD), (PROXY_USER, PROXY_PASSWORD)],
    )
    .await;
}
