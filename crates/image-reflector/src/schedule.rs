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
mod tests;
