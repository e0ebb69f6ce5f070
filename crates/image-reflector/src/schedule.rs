//! When an ImageRepository is scanned: Flux's `shouldScan`, as a pure decision.
//!
//! The checks run in Flux's order and the first that holds scans now; otherwise the next scan
//! is due when the interval has elapsed since the last one.

use std::time::{Duration, SystemTime};

/// What the decision needs to know about one repository.
#[derive(Debug, Clone)]
pub struct ScanState<'a> {
    /// `spec.interval`.
    pub interval: Duration,
    /// `status.lastScanResult.scanTime`; `None` when the repository was never scanned.
    pub last_scan_time: Option<SystemTime>,
    /// The `reconcile.fluxcd.io/requestedAt` annotation.
    pub requested_at: Option<&'a str>,
    /// `status.lastHandledReconcileAt`.
    pub last_handled_reconcile_at: Option<&'a str>,
    /// The canonical name of `spec.image` now.
    pub canonical_image: &'a str,
    /// `status.canonicalImageName`.
    pub observed_canonical_image: Option<&'a str>,
    /// The effective exclusion list of the spec (defaults applied).
    pub exclusion_list: &'a [String],
    /// `status.observedExclusionList`.
    pub observed_exclusion_list: &'a [String],
    /// How many tags the store holds for this repository.
    pub stored_tags: u64,
}

/// Why a scan happens; the text is what Flux puts in the Reconciling message
/// (`scanning: <reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanReason {
    FirstScan,
    ReconcileRequested,
    NewImageName,
    UpdatedExclusionList,
    NoTagsInDatabase,
    TriggeredByInterval,
}

impl ScanReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstScan => "first scan",
            Self::ReconcileRequested => "reconcile requested",
            Self::NewImageName => "new image name",
            Self::UpdatedExclusionList => "updated exclusion list",
            Self::NoTagsInDatabase => "no tags in database",
            Self::TriggeredByInterval => "triggered by interval",
        }
    }
}

impl std::fmt::Display for ScanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision: scan now (and again after the interval), or wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanDecision {
    /// Scan now; the next scan is due `next` after it (zero: never by time).
    Scan { reason: ScanReason, next: Duration },
    /// Nothing changed; requeue after `next`.
    Wait { next: Duration },
}

/// Flux's `shouldScan`.
pub fn decide(state: &ScanState<'_>, now: SystemTime) -> ScanDecision {
    let scan = |reason| ScanDecision::Scan {
        reason,
        next: state.interval,
    };
    let Some(last_scan) = state.last_scan_time else {
        return scan(ScanReason::FirstScan);
    };
    if state.requested_at.is_some() && state.requested_at != state.last_handled_reconcile_at {
        return scan(ScanReason::ReconcileRequested);
    }
    if state.observed_canonical_image != Some(state.canonical_image) {
        return scan(ScanReason::NewImageName);
    }
    if !same_set(state.exclusion_list, state.observed_exclusion_list) {
        return scan(ScanReason::UpdatedExclusionList);
    }
    if state.stored_tags == 0 {
        return scan(ScanReason::NoTagsInDatabase);
    }
    // A clock that went backwards counts as no time elapsed.
    let elapsed = now.duration_since(last_scan).unwrap_or(Duration::ZERO);
    let remaining = state.interval.saturating_sub(elapsed);
    if remaining < Duration::from_secs(1) {
        return scan(ScanReason::TriggeredByInterval);
    }
    ScanDecision::Wait { next: remaining }
}

/// Flux compares exclusion lists as sets with a length check (order does not matter).
fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|item| b.contains(item))
}

#[cfg(test)]
mod tests {
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
}
