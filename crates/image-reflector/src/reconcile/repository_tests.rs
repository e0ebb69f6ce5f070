//! Unit tests of [`super`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::reconcile::EventType;
use crate::reconcile::testing::*;
use api_types::meta::is_condition_true;
use api_types::{LocalObjectReference, RegistryProvider};

fn ready_of(status: &ImageRepositoryStatus) -> (String, String, String) {
    let c = find_condition(&status.conditions, "Ready").expect("Ready");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// A registry listing a tag that is no valid tag: the scan stores the others, says how
/// many it skipped, and a policy over the repository picks a valid tag (before, the bad
/// tag was stored and chosen, and every automation using the policy failed).
#[tokio::test]
async fn invalid_listed_tags_are_skipped_and_reported() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0", "zzz bad/tag", "2.0.0"]);
    let repo = repository("app", "registry.local:5000/team/app");
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let scan = out.status.last_scan_result.clone().unwrap();
    assert_eq!(scan.tag_count, 2);
    assert_eq!(scan.latest_tags, ["2.0.0", "1.0.0"]);
    let (status, _, message) = ready_of(&out.status);
    assert_eq!(status, "True");
    assert!(message.ends_with("; skipped 1 invalid tag(s)"), "{message}");
    let stored = fx
        .deps()
        .store
        .get_tags(&RepoKey::new("flux-system", "app"))
        .unwrap()
        .unwrap();
    assert!(!stored.iter().any(|t| t.contains(' ')), "{stored:?}");
}

#[tokio::test]
async fn first_scan_succeeds_with_flux_message_and_status() {
    let fx = Fixture::new();
    fx.registry
        .set_tags(&["1.0.0", "0.9.0", "1.0.0.sig", "2.0.0"]);
    let repo = repository("app", "registry.local:5000/team/app");
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let s = &out.status;
    let scan = s.last_scan_result.as_ref().unwrap();
    assert_eq!(scan.tag_count, 3, ".sig excluded by default");
    assert_eq!(scan.latest_tags, ["2.0.0", "1.0.0", "0.9.0"]);
    assert_eq!(scan.scan_time, Some(to_time(at(1000))));
    assert_eq!(
        s.canonical_image_name.as_deref(),
        Some("registry.local:5000/team/app")
    );
    assert_eq!(s.observed_exclusion_list, ["^.*\\.sig$"]);
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        ready_of(s),
        (
            "True".into(),
            "Succeeded".into(),
            format!(
                "successful scan: found 3 tags with checksum {}",
                scan.revision
            )
        )
    );
    assert!(find_condition(&s.conditions, "Reconciling").is_none());
    assert_eq!(out.requeue_after, Some(Duration::from_secs(300)));
    assert_eq!(out.next(), Next::After(Duration::from_secs(300)));
    assert!(out.scan.unwrap().ok);
    // Stored for the policies.
    let stored = fx
        .store
        .get_tags(&RepoKey::new("flux-system", "app"))
        .unwrap();
    assert_eq!(stored.unwrap(), ["2.0.0", "1.0.0", "0.9.0"]);
    // First success: a Normal event.
    let event = out.event.unwrap();
    assert_eq!(event.type_, EventType::Normal);
    assert_eq!(event.reason, "Succeeded");
    // The pull secret was used for the registry host.
    assert_eq!(fx.registry.last_username().as_deref(), Some("user"));
}

#[tokio::test]
async fn unchanged_repository_waits_without_scanning_or_event() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    let mut repo = repository("app", "registry.local:5000/team/app");
    let first = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    repo.status = Some(first.status.clone());
    let second = reconcile_repository(&repo, &fx.deps(), at(1100)).await;
    assert_eq!(fx.registry.calls(), 1, "no second scan");
    assert!(second.scan.is_none());
    assert_eq!(second.requeue_after, Some(Duration::from_secs(200)));
    assert_eq!(second.event, None, "no event on an unchanged success");
    assert_eq!(second.status, first.status);
    // After the interval: scans again; same tags → same message → still no event.
    repo.status = Some(second.status.clone());
    let third = reconcile_repository(&repo, &fx.deps(), at(1300)).await;
    assert_eq!(fx.registry.calls(), 2);
    assert_eq!(third.event, None);
    // New tags: new checksum in the message → Normal event.
    fx.registry.set_tags(&["1.0.0", "1.1.0"]);
    repo.status = Some(third.status.clone());
    let fourth = reconcile_repository(&repo, &fx.deps(), at(1700)).await;
    assert_eq!(fourth.event.as_ref().unwrap().type_, EventType::Normal);
    assert_ne!(fourth.revision(), third.revision());
}

#[tokio::test]
async fn reconcile_request_scans_and_is_recorded() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.status = Some(
        reconcile_repository(&repo, &fx.deps(), at(1000))
            .await
            .status,
    );
    request_reconcile(&mut repo.metadata, "now-1");
    let out = reconcile_repository(&repo, &fx.deps(), at(1010)).await;
    assert_eq!(fx.registry.calls(), 2);
    assert_eq!(
        out.status.last_handled_reconcile_at.as_deref(),
        Some("now-1")
    );
    repo.status = Some(out.status);
    reconcile_repository(&repo, &fx.deps(), at(1020)).await;
    assert_eq!(
        fx.registry.calls(),
        2,
        "handled request does not scan again"
    );
}

#[tokio::test]
async fn invalid_image_stalls_without_requeue() {
    let fx = Fixture::new();
    for (image, message) in [
        (
            "https://registry.local/app",
            ".spec.image value should not include URL scheme; remove 'https://'",
        ),
        (
            "registry.local/app:1.0",
            ".spec.image value should not include a tag; remove ':1.0'",
        ),
    ] {
        let repo = repository("app", image);
        let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
        assert_eq!(
            ready_of(&out.status),
            ("False".into(), "ImageURLInvalid".into(), message.into())
        );
        assert!(is_condition_true(&out.status.conditions, "Stalled"));
        assert_eq!(out.status.observed_generation, Some(1));
        assert_eq!(out.next(), Next::OnChange);
        assert_eq!(out.event.unwrap().type_, EventType::Warning);
    }
    assert_eq!(fx.registry.calls(), 0);
}

#[tokio::test]
async fn cloud_provider_without_identity_fails_the_scan_never_anonymous() {
    let fx = Fixture::new();
    let mut repo = repository("app", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app");
    repo.spec.provider = RegistryProvider::Aws;
    // Flux ignores static credentials with a cloud provider: a missing Secret is not read.
    repo.spec.secret_ref = Some(api_types::meta::LocalObjectReference {
        name: "missing".into(),
    });
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (status, reason, message) = ready_of(&out.status);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ReadOperationFailed")
    );
    assert!(
        message.starts_with(
            "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: aws"
        ),
        "{message}"
    );
    assert!(!is_condition_true(&out.status.conditions, "Stalled"));
    assert_eq!(fx.registry.calls(), 0);
}

#[tokio::test]
async fn cloud_provider_with_service_account_stalls_without_the_gate() {
    let fx = Fixture::new();
    let mut repo = repository("app", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app");
    repo.spec.provider = RegistryProvider::Aws;
    repo.spec.service_account_name = Some("reader".into());
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (status, reason, message) = ready_of(&out.status);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FeatureGateDisabled")
    );
    assert_eq!(
        message,
        "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
    );
    assert!(is_condition_true(&out.status.conditions, "Stalled"));
    assert_eq!(out.next(), Next::OnChange);
    assert_eq!(fx.registry.calls(), 0);
}

#[tokio::test]
async fn missing_secret_retries_as_authentication_failed() {
    let fx = Fixture::new();
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.secret_ref = Some(LocalObjectReference {
        name: "missing".into(),
    });
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "AuthenticationFailed".into(),
            "failed to configure authentication options: secrets \"missing\" not found".into()
        )
    );
    let reconciling = find_condition(&out.status.conditions, "Reconciling").unwrap();
    assert_eq!(reconciling.reason, "ProgressingWithRetry");
    assert!(find_condition(&out.status.conditions, "Stalled").is_none());
    assert_eq!(
        out.status.observed_generation, None,
        "not Ready nor Stalled"
    );
    assert_eq!(out.next(), Next::Backoff);

    // A service account without its pull secret also fails.
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.service_account_name = Some("nobody".into());
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(
        ready_of(&out.status)
            .2
            .ends_with("serviceaccounts \"nobody\" not found"),
        "{:?}",
        ready_of(&out.status)
    );
}

#[tokio::test]
async fn registry_failure_retries_as_read_operation_failed_and_warns_once() {
    let fx = Fixture::new();
    fx.registry.fail_with_status(500);
    let mut repo = repository("app", "registry.local:5000/team/app");
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (status, reason, message) = ready_of(&out.status);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ReadOperationFailed")
    );
    assert!(message.starts_with("scan failed: "), "{message}");
    assert_eq!(out.next(), Next::Backoff);
    assert!(!out.scan.unwrap().ok);
    assert_eq!(out.event.as_ref().unwrap().type_, EventType::Warning);
    // The same failure again: no second Warning.
    repo.status = Some(out.status);
    let again = reconcile_repository(&repo, &fx.deps(), at(1001)).await;
    assert_eq!(again.event, None);
    // Recovery clears the retry state.
    fx.registry.set_tags(&["1.0.0"]);
    repo.status = Some(again.status);
    let ok = reconcile_repository(&repo, &fx.deps(), at(1002)).await;
    assert!(is_condition_true(&ok.status.conditions, "Ready"));
    assert!(find_condition(&ok.status.conditions, "Reconciling").is_none());
    assert_eq!(ok.event.unwrap().type_, EventType::Normal);
}

#[tokio::test]
async fn invalid_exclusion_regex_is_a_retried_scan_failure() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.exclusion_list = vec!["[=".into()];
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (_, reason, message) = ready_of(&out.status);
    assert_eq!(reason, "ReadOperationFailed");
    assert!(
        message.starts_with("scan failed: failed to compile regex spec.exclusionList[0]"),
        "{message}"
    );
    assert_eq!(out.next(), Next::Backoff);
}

#[tokio::test]
async fn changed_exclusion_list_rescans() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0", "1.1.0-rc.1"]);
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.status = Some(
        reconcile_repository(&repo, &fx.deps(), at(1000))
            .await
            .status,
    );
    repo.spec.exclusion_list = vec!["-rc".into()];
    let out = reconcile_repository(&repo, &fx.deps(), at(1010)).await;
    assert_eq!(fx.registry.calls(), 2);
    assert_eq!(out.status.last_scan_result.unwrap().tag_count, 1);
    assert_eq!(out.status.observed_exclusion_list, ["-rc"]);
}

#[tokio::test]
async fn timeout_bounds_the_scan() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    fx.registry.set_delay(Duration::from_secs(5));
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.timeout = Some("1s".into());
    let started = Instant::now();
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(ready_of(&out.status).1, "ReadOperationFailed");
    // What is left of the one deadline after reading the Secrets.
    let given = fx.registry.last_timeout().unwrap();
    assert!(
        given <= Duration::from_secs(1) && given > Duration::from_millis(500),
        "{given:?}"
    );
    // `timeout` defaults to the interval, with a floor of one second.
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.interval = "100ms".into();
    assert_eq!(scan_timeout(&repo.spec).unwrap(), Duration::from_secs(1));
    repo.spec.interval = "5m".into();
    assert_eq!(scan_timeout(&repo.spec).unwrap(), Duration::from_secs(300));
}

#[tokio::test]
async fn suspended_repository_is_untouched_but_records_the_request() {
    let fx = Fixture::new();
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.suspend = true;
    request_reconcile(&mut repo.metadata, "t1");
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(out.suspended);
    assert_eq!(out.next(), Next::OnChange);
    assert!(out.status.conditions.is_empty());
    assert_eq!(out.status.observed_generation, None);
    assert_eq!(out.status.last_handled_reconcile_at.as_deref(), Some("t1"));
    assert_eq!(fx.registry.calls(), 0);
}

#[tokio::test]
async fn store_read_failure_is_failure_reason() {
    let fx = Fixture::with_broken_store();
    let repo = repository("app", "registry.local:5000/team/app");
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (_, reason, message) = ready_of(&out.status);
    assert_eq!(reason, "Failure");
    assert!(
        message.starts_with("failed to determine if it's scan time: "),
        "{message}"
    );
    assert_eq!(out.next(), Next::Backoff);
}

#[tokio::test]
async fn invalid_interval_stalls_naming_the_field() {
    let fx = Fixture::new();
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.interval = "5 minutes".into();
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    let (_, _, message) = ready_of(&out.status);
    assert!(message.starts_with("spec.interval: "), "{message}");
    assert!(is_condition_true(&out.status.conditions, "Stalled"));
}

/// Records each in-progress status and how many scans had run when it came.
struct RecordProgress {
    registry: std::sync::Arc<FakeRegistry>,
    seen: std::sync::Mutex<Vec<(ImageRepositoryStatus, usize)>>,
}

impl RecordProgress {
    fn new(fx: &Fixture) -> Self {
        Self {
            registry: fx.registry.clone(),
            seen: std::sync::Mutex::default(),
        }
    }

    fn take(&self) -> Vec<(ImageRepositoryStatus, usize)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl ScanProgress for RecordProgress {
    fn scanning<'a>(&'a self, status: &'a ImageRepositoryStatus) -> BoxFuture<'a, ()> {
        let calls = self.registry.calls();
        self.seen.lock().unwrap().push((status.clone(), calls));
        Box::pin(async {})
    }
}

fn condition_of(status: &ImageRepositoryStatus, type_: &str) -> (String, String, String) {
    let c = find_condition(&status.conditions, type_).expect(type_);
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn scanning(message: &str) -> (String, String, String) {
    ("True".into(), "Progressing".into(), message.into())
}

#[tokio::test]
async fn a_scan_publishes_flux_progress_status_first_and_only_when_it_runs() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    let progress = RecordProgress::new(&fx);
    let mut repo = repository("app", "registry.local:5000/team/app");

    // First scan: Reconciling and (no Ready yet) Ready=Unknown, before the listing.
    let first = reconcile_repository_with(&repo, &fx.deps(), at(1000), Some(&progress)).await;
    let seen = progress.take();
    assert_eq!(seen.len(), 1, "one progress status per scan");
    let (status, calls_before) = &seen[0];
    assert_eq!(*calls_before, 0, "published before the registry is asked");
    assert_eq!(
        condition_of(status, "Reconciling"),
        scanning("scanning: first scan")
    );
    assert_eq!(
        condition_of(status, "Ready"),
        (
            "Unknown".into(),
            "Progressing".into(),
            "scanning: first scan".into()
        )
    );
    assert!(find_condition(&first.status.conditions, "Reconciling").is_none());
    assert!(is_condition_true(&first.status.conditions, "Ready"));

    // Nothing due: no scan, nothing published.
    repo.status = Some(first.status.clone());
    let idle = reconcile_repository_with(&repo, &fx.deps(), at(1100), Some(&progress)).await;
    assert!(idle.scan.is_none());
    assert!(progress.take().is_empty(), "no scan, no progress status");

    // A reconcile request on a Ready repository: Reconciling only, Ready kept as is.
    request_reconcile(&mut repo.metadata, "t1");
    let requested = reconcile_repository_with(&repo, &fx.deps(), at(1110), Some(&progress)).await;
    let seen = progress.take();
    assert_eq!(seen.len(), 1);
    let (status, calls_before) = &seen[0];
    assert_eq!(*calls_before, 1);
    assert_eq!(
        condition_of(status, "Reconciling"),
        scanning("scanning: reconcile requested")
    );
    assert_eq!(
        find_condition(&status.conditions, "Ready"),
        find_condition(&first.status.conditions, "Ready"),
        "Ready untouched while rescanning"
    );
    assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("t1"));
    assert!(find_condition(&requested.status.conditions, "Reconciling").is_none());

    // Interval elapsed.
    repo.status = Some(requested.status.clone());
    reconcile_repository_with(&repo, &fx.deps(), at(1500), Some(&progress)).await;
    let seen = progress.take();
    assert_eq!(
        condition_of(&seen[0].0, "Reconciling"),
        scanning("scanning: triggered by interval")
    );
}

#[test]
fn an_emptied_store_makes_ready_unknown_while_scanning() {
    let mut status = ImageRepositoryStatus::default();
    api_types::meta::apply_outcome(
        &mut status.conditions,
        api_types::meta::Outcome::Stalled {
            reason: "ImageURLInvalid",
            message: "bad",
        },
        Some(1),
        &to_time(at(900)),
    );
    let scanning_ = scanning_status(&status, ScanReason::NoTagsInDatabase, Some(2), at(1000));
    assert_eq!(
        condition_of(&scanning_, "Ready"),
        (
            "Unknown".into(),
            "Progressing".into(),
            "scanning: no tags in database".into()
        )
    );
    assert!(find_condition(&scanning_.conditions, "Stalled").is_none());
    let mut ready = ImageRepositoryStatus::default();
    api_types::meta::apply_outcome(
        &mut ready.conditions,
        api_types::meta::Outcome::Ready { message: "ok" },
        Some(1),
        &to_time(at(900)),
    );
    for (reason, ready_status) in [
        (ScanReason::NoTagsInDatabase, "Unknown"),
        (ScanReason::NewImageName, "True"),
        (ScanReason::UpdatedExclusionList, "True"),
    ] {
        let s = scanning_status(&ready, reason, Some(2), at(1000));
        assert_eq!(condition_of(&s, "Ready").0, ready_status, "{reason}");
        assert_eq!(
            condition_of(&s, "Reconciling"),
            scanning(&format!("scanning: {reason}"))
        );
    }
}

#[tokio::test]
async fn zero_interval_never_requeues_by_time() {
    let fx = Fixture::new();
    fx.registry.set_tags(&["1.0.0"]);
    let mut repo = repository("app", "registry.local:5000/team/app");
    repo.spec.interval = "0s".into();
    let out = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
    assert!(out.error.is_none());
    assert_eq!(out.next(), Next::OnChange);
}
