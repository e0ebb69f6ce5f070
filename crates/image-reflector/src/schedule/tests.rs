use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn sig() -> Vec<String> {
    vec!["^.*\\.sig$".to_string()]
}

/// A repository scanned at t=1000 with one minute interval, consistent status, tags stored.
fn scanned<'a>(exclusions: &'a [String]) -> ScanState<'a> {
    ScanState {
        interval: MINUTE,
        last_scan_time: Some(at(1000)),
        requested_at: None,
        last_handled_reconcile_at: None,
        canonical_image: "index.docker.io/library/alpine",
        observed_canonical_image: Some("index.docker.io/library/alpine"),
        exclusion_list: exclusions,
        observed_exclusion_list: exclusions,
        stored_tags: 3,
    }
}

fn scan(reason: ScanReason) -> ScanDecision {
    ScanDecision::Scan {
        reason,
        next: MINUTE,
    }
}

#[test]
fn case57_new_object_is_a_first_scan() {
    let list = sig();
    let state = ScanState {
        last_scan_time: None,
        stored_tags: 0,
        ..scanned(&list)
    };
    assert_eq!(decide(&state, at(1000)), scan(ScanReason::FirstScan));
}

#[test]
fn case58_pending_reconcile_request_scans() {
    let list = sig();
    let state = ScanState {
        requested_at: Some("t1"),
        ..scanned(&list)
    };
    assert_eq!(
        decide(&state, at(1030)),
        scan(ScanReason::ReconcileRequested)
    );
    let state = ScanState {
        last_handled_reconcile_at: Some("t0"),
        ..state
    };
    assert_eq!(
        decide(&state, at(1030)),
        scan(ScanReason::ReconcileRequested)
    );
}

#[test]
fn case59_handled_request_waits_for_the_rest_of_the_interval() {
    let list = sig();
    let state = ScanState {
        requested_at: Some("t1"),
        last_handled_reconcile_at: Some("t1"),
        ..scanned(&list)
    };
    assert_eq!(
        decide(&state, at(1030)),
        ScanDecision::Wait {
            next: Duration::from_secs(30)
        }
    );
}

#[test]
fn case60_changed_image_scans() {
    let list = sig();
    let state = ScanState {
        canonical_image: "ghcr.io/org/app",
        ..scanned(&list)
    };
    assert_eq!(decide(&state, at(1010)), scan(ScanReason::NewImageName));
}

#[test]
fn case61_changed_exclusion_list_scans_and_order_does_not_matter() {
    let (bar, baz) = (vec!["bar".to_string()], vec!["baz".to_string()]);
    let state = ScanState {
        observed_exclusion_list: &baz,
        ..scanned(&bar)
    };
    assert_eq!(
        decide(&state, at(1010)),
        scan(ScanReason::UpdatedExclusionList)
    );

    let (ab, ba) = (
        vec!["a".to_string(), "b".to_string()],
        vec!["b".to_string(), "a".to_string()],
    );
    let state = ScanState {
        observed_exclusion_list: &ba,
        ..scanned(&ab)
    };
    assert_eq!(
        decide(&state, at(1010)),
        ScanDecision::Wait {
            next: Duration::from_secs(50)
        }
    );
    let a = vec!["a".to_string()];
    let state = ScanState {
        observed_exclusion_list: &a,
        ..scanned(&ab)
    };
    assert_eq!(
        decide(&state, at(1010)),
        scan(ScanReason::UpdatedExclusionList)
    );
}

#[test]
fn case62_empty_store_scans() {
    let list = sig();
    let state = ScanState {
        stored_tags: 0,
        ..scanned(&list)
    };
    assert_eq!(decide(&state, at(1010)), scan(ScanReason::NoTagsInDatabase));
}

#[test]
fn case64_elapsed_interval_scans() {
    let list = sig();
    assert_eq!(
        decide(&scanned(&list), at(1120)),
        scan(ScanReason::TriggeredByInterval)
    );
    // Less than a second left counts as due.
    assert_eq!(
        decide(&scanned(&list), at(1059)),
        ScanDecision::Wait {
            next: Duration::from_secs(1)
        }
    );
    let almost = SystemTime::UNIX_EPOCH + Duration::from_millis(1_059_500);
    assert_eq!(
        decide(&scanned(&list), almost),
        scan(ScanReason::TriggeredByInterval)
    );
}

#[test]
fn zero_interval_scans_every_time_and_never_requeues_by_time() {
    let list = sig();
    let state = ScanState {
        interval: Duration::ZERO,
        ..scanned(&list)
    };
    assert_eq!(
        decide(&state, at(1000)),
        ScanDecision::Scan {
            reason: ScanReason::TriggeredByInterval,
            next: Duration::ZERO
        }
    );
}

#[test]
fn clock_going_backwards_waits_the_whole_interval() {
    let list = sig();
    assert_eq!(
        decide(&scanned(&list), at(900)),
        ScanDecision::Wait { next: MINUTE }
    );
}
