#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Issue 12, problem 1 on the git side: a proxy and git server that echo the request's
//! headers (`Authorization`, `Proxy-Authorization`) in their error bodies. The real
//! `image-automation serve --manifests` (`--once`, then long-running for `/metrics`), the
//! real reflector, registry and smart-HTTP git server (basic auth), reached through
//! `testbed::fault_proxy` as the GitRepository's `proxySecretRef` proxy. Fetch and push
//! fail with the headers echoed; no form of either credential may appear in the run's
//! summary (status message, reason), the process log or `/metrics`.

mod serve_common;

use serve_common::*;
use testbed::fault_proxy::{EchoFormat, Fault, FaultProxy};
use testbed::leaks::credential_forms;
use testbed::process::{Process, free_port};

const PROXY_USER: &str = "proxy-user";
/// `+`, `/` and `=` in its base64; characters URLs percent-encode.
const PROXY_PASSWORD: &str = "px~>>s3cret:@/%";

fn assert_no_leak(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (user, password) in secrets {
        for form in credential_forms(user, password) {
            assert!(!text.contains(&form), "{what}: {form:?} leaked:\n{text}");
        }
    }
}

fn echo(status: u16) -> Fault {
    Fault::EchoHeaders {
        status,
        format: EchoFormat::Text,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echoed_credentials_reach_no_status_log_or_metric() {
    let (registry, git, seeded) = seeded_fleet(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let reflector = Reflector::start(tmp.path(), &registry, "1.2.3").await;
    reflector.publish(&registry, "1.3.0").await;
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", git.port()))
        .await
        .unwrap();
    let manifests = tmp.path().join("automation");
    write_automation_manifests(
        &manifests,
        &git.url("fleet"),
        (git.username(), git.password()),
        None,
        "main",
    );
    let source = manifests.join("source.yaml");
    let text = std::fs::read_to_string(&source).unwrap();
    let with_proxy = text.replacen(
        "  secretRef:\n",
        "  proxySecretRef:\n    name: proxy\n  secretRef:\n",
        1,
    );
    assert_ne!(with_proxy, text);
    std::fs::write(
        &source,
        format!(
            "{with_proxy}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: proxy\n  namespace: {}\nstringData:\n  address: {}\n  username: {PROXY_USER}\n  password: '{PROXY_PASSWORD}'\n",
            testbed::seed::NAMESPACE,
            proxy.url()
        ),
    )
    .unwrap();
    let secrets = [
        (git.username(), git.password()),
        (PROXY_USER, PROXY_PASSWORD),
    ];
    let storage = tmp.path().join("data");

    for status in [401, 500] {
        // Fetch (gix) fails: every request's headers echoed.
        proxy.set_fault(echo(status));
        let faulted = proxy.faulted_requests();
        let (ok, a, log) = run_once(&manifests, &storage, &reflector.base);
        assert!(!ok && a["pushed"] != true, "{a:#}\n{log}");
        assert!(proxy.faulted_requests() > faulted, "{a:#}\n{log}");
        assert_no_leak(
            &format!("fetch {status}"),
            &format!("{a:#}\n{log}"),
            &secrets,
        );

        // Fetch goes through, the push (git CLI) gets the headers echoed.
        proxy.clear();
        proxy.set_fault_on("git-receive-pack", echo(status));
        let faulted = proxy.faulted_requests();
        let (ok, a, log) = run_once(&manifests, &storage, &reflector.base);
        assert!(!ok && a["pushed"] != true, "{a:#}\n{log}");
        assert!(proxy.faulted_requests() > faulted, "{a:#}\n{log}");
        assert_no_leak(
            &format!("push {status}"),
            &format!("{a:#}\n{log}"),
            &secrets,
        );
        proxy.clear();
    }
    assert_eq!(
        git.repos().head_commit("fleet", "main").unwrap(),
        Some(seeded.clone())
    );

    // Long-running: the failed push's metrics.
    proxy.set_fault_on("git-receive-pack", echo(500));
    let log_path = tmp.path().join("serve.log");
    let port = free_port().unwrap();
    let mut command = automation_bin();
    command
        .arg("serve")
        .arg("--manifests")
        .arg(&manifests)
        .arg("--storage-path")
        .arg(&storage)
        .args(["--reflector-url", &reflector.base])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug");
    let process = Process::spawn("image-automation serve", command, &log_path).unwrap();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let faulted = proxy.faulted_requests();
    let deadline = std::time::Instant::now() + WAIT;
    // Metrics read once a push was refused (its outcome is recorded by then or shortly
    // after: read until the failure shows).
    let metrics = loop {
        let text = match reqwest::get(&metrics_url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if proxy.faulted_requests() > faulted && text.contains("GitOperationFailed") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed push in the metrics:\n{text}\n{}",
            process.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_no_leak("metrics", &metrics, &secrets);
    assert_no_leak("serve log", &log, &secrets);
}
