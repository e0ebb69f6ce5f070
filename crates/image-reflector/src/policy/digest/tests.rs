use super::*;
use api_types::ImagePolicyStatus;

/// One reconcile of the reference's digest matrix (§7.3): select `tag`, decide, and
/// "fetch" from `registry_digest`; returns the recorded status.
fn pass(
    status: &mut ImagePolicyStatus,
    policy: ReflectionPolicy,
    tag: &str,
    registry_digest: &str,
) {
    let name = "foo/bar";
    let digest = match digest_action(policy, status.latest_ref.as_ref(), name, tag) {
        DigestAction::Fetch => Some(registry_digest.to_string()),
        DigestAction::Keep(digest) => Some(digest),
        DigestAction::Clear => None,
    };
    status.record_latest(ImageRef {
        name: name.into(),
        tag: tag.into(),
        digest,
    });
}

fn image(tag: &str, digest: Option<&str>) -> Option<ImageRef> {
    Some(ImageRef {
        name: "foo/bar".into(),
        tag: tag.into(),
        digest: digest.map(Into::into),
    })
}

use ReflectionPolicy::{Always, IfNotPresent, Never};

/// Pass 1 policy, pass 2 policy, pass 2 tag, expected `latestRef`, expected previous ref.
type Row = (
    ReflectionPolicy,
    ReflectionPolicy,
    &'static str,
    Option<ImageRef>,
    Option<ImageRef>,
);

#[test]
fn matrix_rows_match_flux() {
    let rows: [Row; 9] = [
        (Never, Never, "v1.1.1", image("v1.1.1", None), None),
        (
            Always,
            Always,
            "v1.1.1",
            image("v1.1.1", Some("d2")),
            image("v1.1.1", Some("d1")),
        ),
        (
            IfNotPresent,
            IfNotPresent,
            "v2.0.0",
            image("v2.0.0", Some("d2")),
            image("v1.1.1", Some("d1")),
        ),
        (
            IfNotPresent,
            IfNotPresent,
            "v1.1.1",
            image("v1.1.1", Some("d1")),
            None,
        ),
        (
            Never,
            IfNotPresent,
            "v1.1.1",
            image("v1.1.1", Some("d2")),
            image("v1.1.1", None),
        ),
        (
            Always,
            Never,
            "v1.1.1",
            image("v1.1.1", None),
            image("v1.1.1", Some("d1")),
        ),
        (
            IfNotPresent,
            Never,
            "v1.1.1",
            image("v1.1.1", None),
            image("v1.1.1", Some("d1")),
        ),
        (
            IfNotPresent,
            Always,
            "v1.1.1",
            image("v1.1.1", Some("d2")),
            image("v1.1.1", Some("d1")),
        ),
        (
            Always,
            IfNotPresent,
            "v1.1.1",
            image("v1.1.1", Some("d1")),
            None,
        ),
    ];
    for (first, second, tag, latest, previous) in rows {
        let mut status = ImagePolicyStatus::default();
        pass(&mut status, first, "v1.1.1", "d1");
        // Between passes every tag is re-pushed, so the registry now answers d2.
        pass(&mut status, second, tag, "d2");
        assert_eq!(status.latest_ref, latest, "{first:?} -> {second:?}");
        assert_eq!(
            status.observed_previous_ref, previous,
            "{first:?} -> {second:?}"
        );
    }
}

#[test]
fn requeue_interval_follows_get_interval() {
    let mut spec = ImagePolicySpec::default();
    assert_eq!(requeue_interval(&spec), Ok(None));
    spec.digest_reflection_policy = Always;
    assert_eq!(requeue_interval(&spec), Err(IntervalError::NotConfigured));
    assert_eq!(
        IntervalError::NotConfigured.to_string(),
        "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'"
    );
    spec.interval = Some("0s".into());
    assert_eq!(requeue_interval(&spec), Ok(Some(DEFAULT_ALWAYS_INTERVAL)));
    spec.interval = Some("5m".into());
    assert_eq!(requeue_interval(&spec), Ok(Some(Duration::from_secs(300))));
    spec.interval = Some("5 minutes".into());
    assert!(matches!(
        requeue_interval(&spec),
        Err(IntervalError::Invalid(_))
    ));
    spec.digest_reflection_policy = IfNotPresent;
    spec.interval = Some("5m".into());
    assert_eq!(requeue_interval(&spec), Err(IntervalError::NotAllowed));
}

/// Kubernetes before 1.25 ignores the CRD's CEL rules, so the reflector enforces them
/// and must answer with the very messages the CRD declares.
#[test]
fn interval_errors_say_what_the_crd_rules_say() {
    let [only_always, always_needs_interval] = api_types::crd::IMAGE_POLICY_RULES;
    assert_eq!(IntervalError::NotAllowed.to_string(), only_always.1);
    assert_eq!(
        IntervalError::NotConfigured.to_string(),
        always_needs_interval.1
    );
}
