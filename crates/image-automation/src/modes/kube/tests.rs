//! Unit tests of the Kubernetes mode.

use super::*;
use api_types::meta::{RECONCILE_REQUEST_ANNOTATION, find_condition, set_condition};
use std::time::Duration;

#[test]
fn lease_names() {
    assert_eq!(SERVICE.lease_name(""), SERVICE.name);
    let sharded = SERVICE.lease_name("shard=a");
    assert!(sharded.starts_with("image-automation-controller-leader-election-"));
    assert_ne!(sharded, SERVICE.lease_name("shard=b"));
}

#[test]
fn the_newer_status_wins() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let at = |s: i64| ImageUpdateAutomationStatus {
        last_automation_run_time: Some(Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())),
        ..Default::default()
    };
    let mut obj = ImageUpdateAutomation::new("a", Default::default());
    obj.status = Some(at(10));
    assert_eq!(current_status(&obj, Some(at(20))), Some(at(20)));
    assert_eq!(current_status(&obj, Some(at(5))), Some(at(10)));
    assert_eq!(current_status(&obj, None), Some(at(10)));
    obj.status = None;
    assert_eq!(current_status(&obj, Some(at(5))), Some(at(5)));
}

#[test]
fn progress_on_a_new_generation_or_a_reconcile_request_only() {
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
    let mut obj = ImageUpdateAutomation::new("a", Default::default());
    obj.metadata.generation = Some(2);
    obj.status = Some(ImageUpdateAutomationStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    let s = progress_status(&obj, &now).unwrap();
    let reconciling = find_condition(&s.conditions, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "Progressing")
    );
    assert_eq!(
        reconciling.message,
        "processing object: new generation 1 -> 2"
    );
    assert_eq!(
        find_condition(&s.conditions, "Ready").unwrap().status,
        "Unknown"
    );
    assert_eq!(s.last_automation_run_time, Some(now.clone()));

    // Ready=True stays while the run is in progress; a handled generation needs a
    // reconcile request.
    let mut done = s.clone();
    done.observed_generation = Some(2);
    set_condition(
        &mut done.conditions,
        "Ready",
        "True",
        "Succeeded",
        "ok",
        Some(2),
        &now,
    );
    obj.status = Some(done);
    assert!(progress_status(&obj, &now).is_none());
    obj.metadata.annotations =
        Some([(RECONCILE_REQUEST_ANNOTATION.to_string(), "t1".to_string())].into());
    let s = progress_status(&obj, &now).unwrap();
    assert_eq!(
        find_condition(&s.conditions, "Ready").unwrap().status,
        "True"
    );
    assert_eq!(
        find_condition(&s.conditions, "Reconciling")
            .unwrap()
            .message,
        "reconciliation in progress"
    );
}

#[test]
fn forcing_keeps_the_earliest_change() {
    let mut s = Schedule::new(RetryDelays::default());
    let key = ("ns".to_string(), "a".to_string());
    let early = Instant::now();
    let late = early + Duration::from_secs(1);
    s.force(key.clone(), None);
    s.force(key.clone(), Some(late));
    s.force(key.clone(), Some(early));
    s.force(key.clone(), None);
    assert_eq!(s.forced[&key], Some(early));
}
