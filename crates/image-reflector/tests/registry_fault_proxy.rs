//! The fault suite: `image-reflector serve --manifests DIR` as a real process, scanning the
//! REAL testbed registry (htpasswd auth) through `testbed::fault_proxy::FaultProxy`. For
//! each fault (echoed credentials, delay, hang, hang mid-body, reset, truncated body,
//! 429, 5xx, huge bodies) the case asserts:
//! - the failure shows in the ImageRepository's API document with a clear message;
//! - no form of the registry password (raw, `user:password`, base64 in either alphabet,
//!   padded or not) appears in the API documents or the process log;
//! - the scan recovers on its own once the fault is removed (no restart);
//! - for huge bodies, the process's peak RSS (`VmHWM`) stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod serve_common;

use std::path::Path;
use std::time::Duration;

use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo};
use serve_common::Serve;
use testbed::fault_proxy::{EchoFormat, Fault, FaultProxy};
use testbed::leaks::{assert_no_leak, credential_forms};
use testbed::registry::{Registry, RegistryOptions};
use testbed::wait::wait_for;

const WAIT: Duration = Duration::from_secs(60);
const REPO: &str = "team/app";
/// Only tag-list requests are faulted: the ping is cached and the ImagePolicy needs no
/// digest.
const TAGS: &str = "/tags/list";
/// Peak RSS allowed while a 400 MB body is sent (the body cap is 32 MiB).
const HWM_BOUND_MIB: u64 = 150;

impl Serve {
    /// Scanning through the proxy: failed scans are retried soon, so recovery shows within
    /// seconds.
    async fn start(manifests: &Path, storage: &Path, log_dir: &Path) -> Self {
        let retry = ["--min-retry-delay", "200ms", "--max-retry-delay", "1s"];
        Self::start_with(manifests, storage, log_dir, &retry).await
    }

    async fn get_text(&self, path: &str) -> Option<String> {
        let response = self.send(path).await?;
        response
            .status()
            .is_success()
            .then_some(response.text().await.ok()?)
    }

    async fn repository(&self) -> Option<(ImageRepositoryInfo, String)> {
        let text = self
            .get_text("/api/v1/namespaces/flux-system/imagerepositories/app")
            .await?;
        Some((serde_json::from_str(&text).unwrap(), text))
    }

    async fn policy(&self) -> Option<ImagePolicyInfo> {
        let text = self
            .get_text("/api/v1/namespaces/flux-system/imagepolicies/app")
            .await?;
        Some(serde_json::from_str(&text).unwrap())
    }

    /// Polls the ImageRepository until `check` holds; returns it and its JSON text.
    async fn wait_repository(
        &self,
        what: &str,
        check: impl Fn(&ImageRepositoryInfo) -> bool,
    ) -> (ImageRepositoryInfo, String) {
        let what = format!("repository: {what}");
        self.wait_document(&what, WAIT, || self.repository(), |(r, _)| check(r))
            .await
    }

    /// `VmHWM` (peak resident set) of the process, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        self.process
            .peak_rss_kib()
            .expect("VmHWM in /proc/<pid>/status")
    }
}

/// Every form the registry password can take when a registry echoes the header.
fn secret_forms(registry: &Registry) -> Vec<String> {
    credential_forms(registry.username().unwrap(), registry.password().unwrap())
}

/// The ImageRepository `app` (scanning `image` through the proxy, with a short timeout so
/// hangs fail fast), its pull Secret for the proxy's host, and a semver ImagePolicy.
fn write_manifests(dir: &Path, registry: &Registry, proxy: &FaultProxy, timeout: &str) {
    let config = serde_json::json!({"auths": {proxy.host(): {
        "username": registry.username().unwrap(),
        "password": registry.password().unwrap(),
    }}});
    let secret = testbed::seed::registry_pull_secret(&config.to_string());
    std::fs::write(
        dir.join("objects.yaml"),
        format!(
            "{secret}---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: app
  namespace: flux-system
spec:
  image: {}/{REPO}
  interval: 1s
  timeout: {timeout}
  insecure: true
  secretRef:
    name: registry-pull
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: app
  namespace: flux-system
spec:
  imageRepositoryRef: {{ name: app }}
  policy:
    semver:
      range: '>=1.0.0'
",
            proxy.host()
        ),
    )
    .unwrap();
}

struct Suite {
    registry: Registry,
    proxy: FaultProxy,
    serve: Serve,
    forms: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Suite {
    async fn start() -> Self {
        Self::start_with_timeout("4s").await
    }

    /// With `timeout` as the ImageRepository's scan timeout.
    async fn start_with_timeout(timeout: &str) -> Self {
        let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
        registry.push_tags(REPO, &["1.0.0", "1.1.0"]).await.unwrap();
        let proxy = FaultProxy::start(&registry.host()).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
        std::fs::create_dir_all(&manifests).unwrap();
        write_manifests(&manifests, &registry, &proxy, timeout);
        let serve = Serve::start(&manifests, &storage, tmp.path()).await;
        let forms = secret_forms(&registry);
        let suite = Self {
            registry,
            proxy,
            serve,
            forms,
            _tmp: tmp,
        };
        suite.wait_healthy("the first scan").await;
        suite
    }

    /// Waits for a successful scan (Ready, both tags) and the policy's result.
    async fn wait_healthy(&self, what: &str) {
        self.serve
            .wait_repository(what, |r| r.readiness.ready && r.tag_count == 2)
            .await;
        let policy = self.serve.policy().await.unwrap();
        assert_eq!(
            policy.latest_ref.map(|r| r.tag).as_deref(),
            Some("1.1.0"),
            "{what}"
        );
    }

    /// Applies `fault` to tag listing, waits for the scan to fail, checks that nothing
    /// secret shows and that the message contains every string of `expected`, removes the
    /// fault and waits for the next scan to succeed. Returns the failure's message.
    async fn case(&self, fault: Fault, expected: &[&str]) -> String {
        let name = format!("{fault:?}");
        self.proxy.set_fault_on(TAGS, fault);
        let (failed, text) = self
            .serve
            .wait_repository(&format!("{name} fails the scan"), |r| !r.readiness.ready)
            .await;
        assert_no_leak(&self.forms, &format!("API document ({name})"), &text);
        let message = failed.readiness.message;
        for expected in expected {
            assert!(
                message.contains(expected),
                "{name}: {expected:?} not in {message}"
            );
        }
        assert!(self.proxy.faulted_requests() > 0, "{name}: never applied");
        self.proxy.clear();
        self.wait_healthy(&format!("recovery from {name}")).await;
        let policies = self.serve.get_text("/api/v1/imagepolicies").await.unwrap();
        assert_no_leak(&self.forms, &format!("policy list ({name})"), &policies);
        assert_no_leak(
            &self.forms,
            &format!("log ({name})"),
            &self.serve.log_text(),
        );
        message
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_fails_clearly_leaks_nothing_and_recovers() {
    let suite = Suite::start().await;

    // Problem 1: the registry quotes the request's Authorization header in its errors.
    for (status, format) in [
        (401, EchoFormat::RegistryJson),
        (401, EchoFormat::Text),
        (500, EchoFormat::Text),
        (500, EchoFormat::RegistryJson),
    ] {
        let message = suite
            .case(Fault::EchoHeaders { status, format }, &["[redacted]"])
            .await;
        assert!(
            message.contains("uthorization"),
            "the echo is quoted: {message}"
        );
        assert!(
            suite.serve.log_text().contains("[redacted]"),
            "the log has the scrubbed message"
        );
    }

    // Transport faults and error statuses.
    suite.case(Fault::Hang, &["timed out after"]).await;
    suite
        .case(Fault::HangMidBody { after: 10 }, &["timed out after"])
        .await;
    suite.case(Fault::Reset, &["request to registry"]).await;
    suite
        .case(Fault::Truncate { after: 5 }, &["request to registry"])
        .await;
    suite
        .case(Fault::too_many_requests(1), &["rate limiting"])
        .await;
    suite
        .case(Fault::status(503), &["unexpected status 503"])
        .await;
    suite
        .case(Fault::status(502), &["unexpected status 502"])
        .await;

    // A delay within the timeout is only slower: scans keep succeeding through it.
    let (before, _) = suite.serve.repository().await.unwrap();
    suite
        .proxy
        .set_fault_on(TAGS, Fault::Delay(Duration::from_millis(1500)));
    let faulted = suite.proxy.faulted_requests();
    let (after, _) = suite
        .serve
        .wait_repository("a scan through the delay", |r| {
            r.readiness.ready && r.last_scan_time > before.last_scan_time
        })
        .await;
    assert!(suite.proxy.faulted_requests() > faulted);
    assert_eq!(after.tag_count, 2);
    suite.proxy.clear();
    assert!(suite.registry.list_tags(REPO).await.unwrap().len() == 2);
}

/// Problem 8: a 400 MB tags/list answer, with and without `Content-Length`, fails the scan
/// naming the cap and the flag that raises it; a 30 MB answer under the cap holding five
/// million tiny tags fails at the tag budget while parsing. The process's peak RSS stays
/// bounded throughout.
#[tokio::test(flavor = "multi_thread")]
async fn huge_bodies_are_capped_with_bounded_memory() {
    let suite = Suite::start().await;
    let host = suite.proxy.host();
    let cap: &[&str] = &[
        "tags/list page larger than 32 MiB",
        "--max-tag-page-bytes",
        &host,
    ];
    let budget: &[&str] = &["more than 100000 tags", "--max-tags-per-repository"];
    for (bytes, length_header, expected) in [
        (400_000_000, true, cap),
        (400_000_000, false, cap),
        (30_000_000, true, budget),
    ] {
        let fault = Fault::HugeBody {
            bytes,
            length_header,
        };
        let name = format!("{fault:?}");
        suite.proxy.set_fault_on(TAGS, fault);
        let (failed, text) = suite
            .serve
            .wait_repository(&format!("{name} fails the scan"), |r| !r.readiness.ready)
            .await;
        let peak_mib = suite.serve.peak_rss_kib() / 1024;
        eprintln!("{name}: peak RSS (VmHWM) of serve {peak_mib} MiB");
        assert!(
            peak_mib < HWM_BOUND_MIB,
            "{name}: VmHWM {peak_mib} MiB >= {HWM_BOUND_MIB} MiB"
        );
        let message = &failed.readiness.message;
        for expected in expected {
            assert!(
                message.contains(expected),
                "{name}: {expected:?} not in {message}"
            );
        }
        assert_no_leak(&suite.forms, "API document", &text);
        suite.proxy.clear();
        suite.wait_healthy(&format!("recovery from {name}")).await;
    }
    assert_no_leak(&suite.forms, "log", &suite.serve.log_text());
}

/// SIGTERM while a scan hangs on the registry (a 5-minute scan timeout): the process stops
/// within a few seconds, well inside the charts' 10 s grace period.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_hung_registry_exits_promptly() {
    let mut suite = Suite::start_with_timeout("5m").await;
    suite.proxy.set_fault_on(TAGS, Fault::Hang);
    let faulted = suite.proxy.faulted_requests();
    wait_for(
        "a scan hanging on the registry",
        WAIT,
        || suite.serve.log_text(),
        || async { (suite.proxy.faulted_requests() > faulted).then_some(()) },
    )
    .await;
    let started = std::time::Instant::now();
    let status =
        tokio::task::block_in_place(|| suite.serve.process.terminate(Duration::from_secs(5)));
    let took = started.elapsed();
    assert!(
        status.is_some(),
        "no exit within 5 s of SIGTERM:\n{}",
        suite.serve.log_text()
    );
    eprintln!("exit {took:?} after SIGTERM with a hung scan");
}
