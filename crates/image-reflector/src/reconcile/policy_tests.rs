//! Unit tests of [`super`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::reconcile::EventType;
use crate::reconcile::testing::*;
use api_types::meta::is_condition_true;
use api_types::{
    AccessFrom, ImagePolicyChoice, NamespaceSelector, NamespacedObjectReference, ReflectionPolicy,
    SemVerPolicy, TagFilter,
};
use std::collections::BTreeMap;

fn ready_of(status: &ImagePolicyStatus) -> (String, String, String) {
    let c = find_condition(&status.conditions, "Ready").expect("Ready");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

const IMAGE: &str = "registry.local:5000/team/app";

#[tokio::test]
async fn semver_selects_and_reports_flux_message() {
    // 7.2 #34.
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["1.0.0", "2.0.0", "1.0.1", "1.2.0"]);
    let pol = semver_policy("app-policy", "app", "1.0.x");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let latest = out.status.latest_ref.clone().unwrap();
    assert_eq!(
        (latest.name.as_str(), latest.tag.as_str()),
        (IMAGE, "1.0.1")
    );
    assert_eq!(latest.digest, None);
    assert_eq!(out.status.observed_previous_ref, None);
    assert_eq!(
        out.status.latest_image.as_deref(),
        Some("registry.local:5000/team/app:1.0.1")
    );
    assert_eq!(
        ready_of(&out.status),
        (
            "True".into(),
            "Succeeded".into(),
            format!("Latest image tag for {IMAGE} resolved to 1.0.1")
        )
    );
    assert_eq!(out.status.observed_generation, Some(1));
    assert_eq!(out.next(), Next::OnChange);
    assert_eq!(out.event.as_ref().unwrap().type_, EventType::Normal);
    assert_eq!(out.repository, ("flux-system".into(), "app".into()));

    // Unchanged on re-evaluation: no event, no previous ref.
    let mut pol = pol;
    pol.status = Some(out.status.clone());
    let again = reconcile_policy(&pol, &fx.deps(), at(1100)).await;
    assert_eq!(again.event, None);
    assert_eq!(again.status, out.status);

    // A new tag: previous ref and the "previously" part; Normal event.
    fx.store_tags("flux-system", "app", &["1.0.0", "2.0.0", "1.0.1", "1.0.2"]);
    pol.status = Some(again.status);
    let moved = reconcile_policy(&pol, &fx.deps(), at(1200)).await;
    assert_eq!(
        ready_of(&moved.status).2,
        format!("Latest image tag for {IMAGE} resolved to 1.0.2 (previously {IMAGE}:1.0.1)")
    );
    assert_eq!(moved.event.unwrap().type_, EventType::Normal);
}

#[tokio::test]
async fn flux_controller_cases_32_to_40() {
    let cases: [(&[&str], ImagePolicyChoice, Option<TagFilter>, &str); 6] = [
        (
            &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"],
            semver("v1.0.x"),
            None,
            "v1.0.1",
        ),
        (
            &["1.0.0", "2.0.0", "1.0.1", "1.2.0"],
            semver("v1.0.x"),
            None,
            "1.0.1",
        ),
        (
            &["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"],
            semver("1.0.x"),
            None,
            "v1.0.1",
        ),
        (
            &[
                "1.0.0",
                "1.0.0-rc.1",
                "1.0.0-rc.2",
                "1.0.0-rc.3",
                "1.0.1-rc.2",
            ],
            numerical_asc(),
            Some(filter(r"1.0.0-rc\.(?P<num>[0-9]+)", "$num")),
            "1.0.0-rc.3",
        ),
        (
            &["foo-aaa", "bar-bbb", "foo-zzz", "baz-nnn", "foo-ooo"],
            alphabetical_asc(),
            Some(filter("foo-(?P<word>[a-z]+)", "$word")),
            "foo-zzz",
        ),
        (
            &["xenial", "yakkety", "zesty", "artful", "bionic"],
            alphabetical_asc(),
            None,
            "zesty",
        ),
    ];
    for (tags, choice, filter_tags, want) in cases {
        let fx = Fixture::new();
        fx.add_repository(repository("app", IMAGE));
        fx.store_tags("flux-system", "app", tags);
        let mut pol = semver_policy("p", "app", "*");
        pol.spec.policy = choice;
        pol.spec.filter_tags = filter_tags;
        let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
        assert_eq!(out.status.latest_ref.unwrap().tag, want, "{tags:?}");
    }
}

#[tokio::test]
async fn no_tags_is_dependency_not_ready_with_flux_message_and_plain_requeue() {
    // 7.2 #32, #48.
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    let pol = semver_policy("p", "app", "1.0.x");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "DependencyNotReady".into(),
            "retrying in 30s error: no tags in database".into()
        )
    );
    assert_eq!(
        find_condition(&out.status.conditions, "Reconciling")
            .unwrap()
            .reason,
        "ProgressingWithRetry"
    );
    assert_eq!(out.next(), Next::After(Duration::from_secs(30)));
    assert_eq!(out.event.unwrap().type_, EventType::Warning);
}

#[tokio::test]
async fn bad_range_and_bad_pattern_stall_naming_the_field() {
    // 7.2 #38, #42, #45.
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["1.0.0", "1.0.1"]);
    let pol = semver_policy("p", "app", "*-*");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    let (status, reason, message) = ready_of(&out.status);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidPolicy")
    );
    assert!(message.starts_with("spec.policy.semver.range"), "{message}");
    assert!(is_condition_true(&out.status.conditions, "Stalled"));
    assert_eq!(out.next(), Next::OnChange);
    assert_eq!(out.status.observed_generation, Some(1));

    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.filter_tags = Some(filter("^test-(.*", "$1"));
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    let (_, reason, message) = ready_of(&out.status);
    assert_eq!(reason, "InvalidPolicy");
    assert!(message.starts_with("spec.filterTags.pattern"), "{message}");
    assert!(
        message.contains("invalid regular expression pattern"),
        "{message}"
    );

    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.policy = ImagePolicyChoice::default();
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert!(
        ready_of(&out.status)
            .2
            .starts_with("spec.policy: invalid policy")
    );
}

#[tokio::test]
async fn interval_without_always_stalls_with_the_crd_rule_message() {
    // The CRD's CEL rule, which Kubernetes before 1.25 does not enforce.
    let fx = Fixture::new();
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.digest_reflection_policy = ReflectionPolicy::IfNotPresent;
    pol.spec.interval = Some("5m".into());
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "InvalidPolicy".into(),
            api_types::crd::IMAGE_POLICY_RULES[0].1.into()
        )
    );
    let stalled = find_condition(&out.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidPolicy");
    assert_eq!(out.next(), Next::OnChange);
}

#[tokio::test]
async fn always_without_interval_stalls_with_exact_message() {
    // 7.2 #50.
    let fx = Fixture::new();
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.digest_reflection_policy = ReflectionPolicy::Always;
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "IntervalNotConfigured".into(),
            "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'".into()
        )
    );
    let stalled = find_condition(&out.status.conditions, "Stalled").unwrap();
    assert_eq!(stalled.reason, "IntervalNotConfigured");
    assert_eq!(out.next(), Next::OnChange);
    assert_eq!(out.requeue_after, None);
}

#[tokio::test]
async fn missing_repository_is_dependency_not_ready_with_backoff() {
    let fx = Fixture::new();
    let pol = semver_policy("p", "nope", "1.0.x");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "DependencyNotReady".into(),
            "failed to get the referred ImageRepository: referenced ImageRepository does not exist: imagerepositories.image.toolkit.fluxcd.io \"nope\" not found".into()
        )
    );
    assert_eq!(out.next(), Next::Backoff);
}

#[tokio::test]
async fn repository_with_invalid_image_stalls_the_policy() {
    let fx = Fixture::new();
    fx.add_repository(repository("app", "https://registry.local/app"));
    let pol = semver_policy("p", "app", "1.0.x");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(ready_of(&out.status).1, "ImageURLInvalid");
    assert!(is_condition_true(&out.status.conditions, "Stalled"));
}

#[tokio::test]
async fn cross_namespace_acl_cases() {
    // 7.2 #46.
    let team_a = BTreeMap::from([("team".to_string(), "a".to_string())]);
    let selector = |labels: Option<&BTreeMap<String, String>>| NamespaceSelector {
        match_labels: labels.cloned(),
    };
    let other = BTreeMap::from([("team".to_string(), "b".to_string())]);
    let cases: Vec<(Option<AccessFrom>, bool, bool)> = vec![
        (None, false, false),
        (
            Some(AccessFrom {
                namespace_selectors: vec![selector(Some(&BTreeMap::new()))],
            }),
            false,
            true,
        ),
        (
            Some(AccessFrom {
                namespace_selectors: vec![selector(Some(&team_a))],
            }),
            false,
            true,
        ),
        (
            Some(AccessFrom {
                namespace_selectors: vec![selector(Some(&other))],
            }),
            false,
            false,
        ),
        (
            Some(AccessFrom {
                namespace_selectors: vec![selector(Some(&other)), selector(Some(&team_a))],
            }),
            false,
            true,
        ),
        (
            Some(AccessFrom {
                namespace_selectors: vec![selector(Some(&team_a))],
            }),
            true,
            false,
        ),
    ];
    for (access_from, no_cross, allowed) in cases {
        let fx = Fixture::new();
        fx.no_cross_namespace_refs(no_cross);
        fx.add_namespace("apps", team_a.clone());
        let mut repo = repository("app", IMAGE);
        repo.spec.access_from = access_from.clone();
        fx.add_repository(repo);
        fx.store_tags("flux-system", "app", &["1.0.0", "1.0.1"]);
        let mut pol = semver_policy("p", "app", "1.0.x");
        pol.metadata.namespace = Some("apps".into());
        pol.spec.image_repository_ref = NamespacedObjectReference {
            name: "app".into(),
            namespace: Some("flux-system".into()),
        };
        let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
        if allowed {
            assert_eq!(
                out.status.latest_ref.unwrap().tag,
                "1.0.1",
                "{access_from:?}"
            );
        } else {
            let (status, reason, message) = ready_of(&out.status);
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "AccessDenied"),
                "{access_from:?} {no_cross}"
            );
            assert_eq!(out.next(), Next::Backoff);
            if no_cross {
                assert_eq!(
                    message,
                    "cannot access 'flux-system/app', cross-namespace references have been blocked"
                );
            }
        }
    }
}

#[tokio::test]
async fn digest_reflection_fetches_keeps_and_requeues() {
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["1.0.0", "1.0.1"]);
    fx.registry.set_digest("1.0.1", "sha256:d1");
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.digest_reflection_policy = ReflectionPolicy::Always;
    pol.spec.interval = Some("1m".into());
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        out.status.latest_ref.as_ref().unwrap().digest.as_deref(),
        Some("sha256:d1")
    );
    assert_eq!(out.next(), Next::After(Duration::from_secs(60)));
    assert_eq!(
        ready_of(&out.status).2,
        format!("Latest image tag for {IMAGE} resolved to 1.0.1 with digest sha256:d1")
    );
    // The tag moved to a new image: Always fetches again, the previous ref keeps d1.
    fx.registry.set_digest("1.0.1", "sha256:d2");
    pol.status = Some(out.status);
    let out = reconcile_policy(&pol, &fx.deps(), at(1060)).await;
    assert_eq!(
        ready_of(&out.status).2,
        format!(
            "Latest image tag for {IMAGE} resolved to 1.0.1 with digest sha256:d2 (previously {IMAGE}:1.0.1@sha256:d1)"
        )
    );
    // IfNotPresent keeps the recorded digest for the same tag.
    pol.spec.digest_reflection_policy = ReflectionPolicy::IfNotPresent;
    pol.spec.interval = None;
    fx.registry.set_digest("1.0.1", "sha256:d3");
    pol.status = Some(out.status);
    let out = reconcile_policy(&pol, &fx.deps(), at(1120)).await;
    assert_eq!(
        out.status.latest_ref.as_ref().unwrap().digest.as_deref(),
        Some("sha256:d2")
    );
    assert_eq!(out.next(), Next::OnChange);
}

#[tokio::test]
async fn digest_failure_is_failed_with_backoff() {
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["1.0.0"]);
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.digest_reflection_policy = ReflectionPolicy::IfNotPresent;
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    let (status, reason, message) = ready_of(&out.status);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Failed"));
    assert!(
        message.starts_with("failed to fetch digest for"),
        "{message}"
    );
    assert_eq!(out.next(), Next::Backoff);
}

#[tokio::test]
async fn digest_lookup_with_a_cloud_provider_logs_in_never_anonymously() {
    let fx = Fixture::new();
    let mut repo = repository("app", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app");
    repo.spec.provider = api_types::RegistryProvider::Aws;
    fx.add_repository(repo.clone());
    fx.store_tags("flux-system", "app", &["1.0.0"]);
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.digest_reflection_policy = ReflectionPolicy::IfNotPresent;
    // No cloud identity in the fixture: the login fails, the lookup is not sent.
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    let (_, reason, message) = ready_of(&out.status);
    assert_eq!(reason, "Failed");
    assert!(
        message.contains("failed to get access token for artifact registry"),
        "{message}"
    );
    assert_eq!(fx.registry.calls(), 0);
    // spec.serviceAccountName on the repository: the gate's ImagePolicy wording.
    repo.spec.service_account_name = Some("reader".into());
    fx.add_repository(repo);
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    let (_, _, message) = ready_of(&out.status);
    assert!(
        message.contains(
            "to use spec.serviceAccountName in the ImageRepository for provider authentication"
        ),
        "{message}"
    );
    assert_eq!(fx.registry.calls(), 0);
}

#[tokio::test]
async fn no_match_is_failure() {
    let fx = Fixture::new();
    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["latest", "main"]);
    let pol = semver_policy("p", "app", "1.0.x");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        ready_of(&out.status),
        (
            "False".into(),
            "Failure".into(),
            "cannot determine latest tag for policy: unable to determine latest version from provided list".into()
        )
    );
    assert_eq!(out.next(), Next::Backoff);
}

#[tokio::test]
async fn suspended_policy_keeps_status_and_observed_generation() {
    // 7.2 #52, #53.
    let fx = Fixture::new();
    let mut pol = semver_policy("p", "app", "1.0.x");
    pol.spec.suspend = true;
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert!(out.suspended);
    assert_eq!(out.status.observed_generation, None);
    assert!(out.status.conditions.is_empty());

    fx.add_repository(repository("app", IMAGE));
    fx.store_tags("flux-system", "app", &["1.0.0"]);
    let mut pol = semver_policy("p", "app", "1.0.x");
    request_reconcile(&mut pol.metadata, "some-string");
    let out = reconcile_policy(&pol, &fx.deps(), at(1000)).await;
    assert_eq!(
        out.status.last_handled_reconcile_at.as_deref(),
        Some("some-string")
    );
    assert!(is_condition_true(&out.status.conditions, "Ready"));
}

#[test]
fn ready_messages_7_4() {
    let r = |name: &str, tag: &str, digest: Option<&str>| ImageRef {
        name: name.into(),
        tag: tag.into(),
        digest: digest.map(Into::into),
    };
    let status = |latest: ImageRef, previous: Option<ImageRef>| ImagePolicyStatus {
        latest_ref: Some(latest),
        observed_previous_ref: previous,
        ..Default::default()
    };
    assert_eq!(
        ready_message(&status(r("foo/bar", "1.0.0", None), None)),
        "Latest image tag for foo/bar resolved to 1.0.0"
    );
    assert_eq!(
        ready_message(&status(
            r("foo/bar", "1.1.0", None),
            Some(r("foo/bar", "1.0.0", None))
        )),
        "Latest image tag for foo/bar resolved to 1.1.0 (previously foo/bar:1.0.0)"
    );
    assert_eq!(
        ready_message(&status(
            r("foo/bar", "1.0.0", None),
            Some(r("foo/bar", "1.0.0", None))
        )),
        "Latest image tag for foo/bar resolved to 1.0.0"
    );
    assert_eq!(
        ready_message(&status(
            r("foo/bar", "1.0.0", Some("sha256:1234567890abcdef")),
            Some(r("baz/qux", "1.0.0", None))
        )),
        "Latest image tag for foo/bar resolved to 1.0.0 with digest sha256:1234567890abcdef (previously baz/qux:1.0.0)"
    );
    assert_eq!(
        ready_message(&status(
            r("foo/bar", "1.0.0", Some("sha256:1234567890abcdef")),
            Some(r("foo/bar", "1.0.0", Some("sha256:abcdef1234567890")))
        )),
        "Latest image tag for foo/bar resolved to 1.0.0 with digest sha256:1234567890abcdef (previously foo/bar:1.0.0@sha256:abcdef1234567890)"
    );
}

fn semver(range: &str) -> ImagePolicyChoice {
    ImagePolicyChoice {
        semver: Some(SemVerPolicy {
            range: range.into(),
        }),
        ..Default::default()
    }
}

fn numerical_asc() -> ImagePolicyChoice {
    ImagePolicyChoice {
        numerical: Some(Default::default()),
        ..Default::default()
    }
}

fn alphabetical_asc() -> ImagePolicyChoice {
    ImagePolicyChoice {
        alphabetical: Some(Default::default()),
        ..Default::default()
    }
}

fn filter(pattern: &str, extract: &str) -> TagFilter {
    TagFilter {
        pattern: pattern.into(),
        extract: extract.into(),
    }
}
