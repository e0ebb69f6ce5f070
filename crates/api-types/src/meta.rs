//! Shared building blocks of the Flux APIs: references, conditions and reasons.
//!
//! Conditions follow kstatus as Flux's runtime writes them: `Ready`, `Reconciling` and
//! `Stalled`. The helpers here are pure; the caller supplies the clock.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation users (and `flux reconcile`) set to request an immediate reconcile.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// The finalizer both controllers put on the objects they own.
pub const FINALIZER: &str = "finalizers.fluxcd.io";

/// Condition types.
pub mod condition_type {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons, with the exact strings Flux writes.
pub mod reason {
    // fluxcd/pkg meta
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const PROGRESSING: &str = "Progressing";
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    pub const FEATURE_GATE_DISABLED: &str = "FeatureGateDisabled";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    /// `metav1.StatusFailure`, used by the reflector when the store cannot be read.
    pub const FAILURE: &str = "Failure";

    // image-reflector-controller
    pub const IMAGE_URL_INVALID: &str = "ImageURLInvalid";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const READ_OPERATION_FAILED: &str = "ReadOperationFailed";
    pub const INTERVAL_NOT_CONFIGURED: &str = "IntervalNotConfigured";
    pub const INVALID_POLICY: &str = "InvalidPolicy";

    // image-automation-controller
    pub const INVALID_POLICY_SELECTOR: &str = "InvalidPolicySelector";
    pub const INVALID_SOURCE_CONFIGURATION: &str = "InvalidSourceConfiguration";
    pub const SOURCE_MANAGER_FAILED: &str = "SourceManagerFailed";
    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    pub const UPDATE_FAILED: &str = "UpdateFailed";
    pub const INVALID_UPDATE_STRATEGY: &str = "InvalidUpdateStrategy";
    pub const REMOVED_TEMPLATE_FIELD: &str = "RemovedTemplateField";

    /// Ours, not Flux's: a feature the spec asks for that this release does not implement
    /// (for example a cloud `provider`), reported instead of silently doing something else.
    pub const UNSUPPORTED: &str = "Unsupported";
    /// Ours: the commit message template ran out of a rendering limit (output size, value
    /// size, steps, time); it stalls until the template changes and nothing is pushed.
    pub const TEMPLATE_LIMIT_EXCEEDED: &str = "TemplateLimitExceeded";
}

/// Condition status values.
pub mod condition_status {
    pub const TRUE: &str = "True";
    pub const FALSE: &str = "False";
    pub const UNKNOWN: &str = "Unknown";
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object, in the same namespace unless `namespace` is given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What the reconcile annotation asks for, given the status already written.
///
/// Returns the token to record when the annotation holds a value not yet handled.
pub fn pending_reconcile_request<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    last_handled: Option<&str>,
) -> Option<&'a str> {
    let requested = annotations?.get(RECONCILE_REQUEST_ANNOTATION)?;
    (Some(requested.as_str()) != last_handled).then_some(requested.as_str())
}

/// Looks up a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition exists with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == condition_status::TRUE)
}

/// Sets a condition the way `apimachinery/meta.SetStatusCondition` does: the transition
/// time only moves when the status changes, so an unchanged condition is byte-identical
/// and a status patch can be skipped.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.status = status.to_string();
            existing.last_transition_time = now.clone();
        }
        existing.reason = reason.to_string();
        existing.message = message.to_string();
        existing.observed_generation = observed_generation;
        return;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time: now.clone(),
    });
}

/// Flux's progressive status: Reconciling=True `Progressing` with `message`, and Ready goes
/// Unknown with the same message when it was absent or Unknown, or when `ready_unknown`
/// (whatever it was).
pub fn mark_progressing(
    conditions: &mut Vec<Condition>,
    message: &str,
    ready_unknown: bool,
    observed_generation: Option<i64>,
    now: &Time,
) {
    let progressing = |conditions: &mut Vec<Condition>, type_: &str, status: &str| {
        let reason = reason::PROGRESSING;
        set_condition(
            conditions,
            type_,
            status,
            reason,
            message,
            observed_generation,
            now,
        );
    };
    progressing(
        conditions,
        condition_type::RECONCILING,
        condition_status::TRUE,
    );
    let ready_known = find_condition(conditions, condition_type::READY)
        .is_some_and(|c| c.status != condition_status::UNKNOWN);
    if !ready_known || ready_unknown {
        progressing(conditions, condition_type::READY, condition_status::UNKNOWN);
    }
}

/// Removes a condition by type; returns whether one was removed.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

/// The outcome of one reconcile, as kstatus conditions express it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Ready=True; Reconciling and Stalled removed.
    Ready { message: &'a str },
    /// Still working (for example a scan in progress): Reconciling=True, Ready=Unknown.
    Progressing { message: &'a str },
    /// A transient failure that will be retried: Ready=False with the reason,
    /// Reconciling=True `ProgressingWithRetry`, Stalled removed.
    Retrying { reason: &'a str, message: &'a str },
    /// An invalid spec that waits for a change: Ready=False and Stalled=True with the
    /// same reason and message, Reconciling removed.
    Stalled { reason: &'a str, message: &'a str },
}

/// Writes the conditions for `outcome` the way Flux's result finalizer leaves them.
pub fn apply_outcome(
    conditions: &mut Vec<Condition>,
    outcome: Outcome<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    use condition_status::{FALSE, TRUE, UNKNOWN};
    use condition_type::{READY, RECONCILING, STALLED};
    match outcome {
        Outcome::Ready { message } => {
            set_condition(
                conditions,
                READY,
                TRUE,
                reason::SUCCEEDED,
                message,
                generation,
                now,
            );
            remove_condition(conditions, RECONCILING);
            remove_condition(conditions, STALLED);
        }
        Outcome::Progressing { message } => {
            set_condition(
                conditions,
                RECONCILING,
                TRUE,
                reason::PROGRESSING,
                message,
                generation,
                now,
            );
            set_condition(
                conditions,
                READY,
                UNKNOWN,
                reason::PROGRESSING,
                message,
                generation,
                now,
            );
            remove_condition(conditions, STALLED);
        }
        Outcome::Retrying {
            reason: why,
            message,
        } => {
            set_condition(conditions, READY, FALSE, why, message, generation, now);
            set_condition(
                conditions,
                RECONCILING,
                TRUE,
                reason::PROGRESSING_WITH_RETRY,
                message,
                generation,
                now,
            );
            remove_condition(conditions, STALLED);
        }
        Outcome::Stalled {
            reason: why,
            message,
        } => {
            set_condition(conditions, READY, FALSE, why, message, generation, now);
            set_condition(conditions, STALLED, TRUE, why, message, generation, now);
            remove_condition(conditions, RECONCILING);
        }
    }
}

/// Whether `observedGeneration` should be recorded: Flux writes it only when the object
/// ends Ready=True or Stalled=True.
pub fn should_record_observed_generation(conditions: &[Condition]) -> bool {
    is_condition_true(conditions, condition_type::READY)
        || is_condition_true(conditions, condition_type::STALLED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            "False",
            "Failed",
            "boom",
            Some(1),
            &at(10),
        );
        set_condition(
            &mut conditions,
            "Ready",
            "False",
            "Failed",
            "boom again",
            Some(2),
            &at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "boom again");
        assert_eq!(conditions[0].observed_generation, Some(2));

        set_condition(
            &mut conditions,
            "Ready",
            "True",
            "Succeeded",
            "ok",
            Some(2),
            &at(30),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
    }

    #[test]
    fn outcomes_leave_kstatus_conditions() {
        let mut conditions = Vec::new();
        apply_outcome(
            &mut conditions,
            Outcome::Progressing {
                message: "scanning",
            },
            Some(1),
            &at(1),
        );
        assert!(is_condition_true(&conditions, "Reconciling"));
        assert_eq!(
            find_condition(&conditions, "Ready").unwrap().status,
            "Unknown"
        );
        assert!(!should_record_observed_generation(&conditions));

        apply_outcome(
            &mut conditions,
            Outcome::Retrying {
                reason: reason::READ_OPERATION_FAILED,
                message: "scan failed: x",
            },
            Some(1),
            &at(2),
        );
        let ready = find_condition(&conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ReadOperationFailed")
        );
        assert_eq!(
            find_condition(&conditions, "Reconciling").unwrap().reason,
            "ProgressingWithRetry"
        );
        assert!(!should_record_observed_generation(&conditions));

        apply_outcome(
            &mut conditions,
            Outcome::Stalled {
                reason: reason::INVALID_POLICY,
                message: "bad range",
            },
            Some(2),
            &at(3),
        );
        assert!(find_condition(&conditions, "Reconciling").is_none());
        assert_eq!(
            find_condition(&conditions, "Stalled").unwrap().reason,
            "InvalidPolicy"
        );
        assert!(should_record_observed_generation(&conditions));

        apply_outcome(
            &mut conditions,
            Outcome::Ready { message: "done" },
            Some(3),
            &at(4),
        );
        assert_eq!(conditions.len(), 1);
        assert!(is_condition_true(&conditions, "Ready"));
        assert!(should_record_observed_generation(&conditions));
    }

    #[test]
    fn reconcile_request_is_pending_until_handled() {
        let mut annotations = std::collections::BTreeMap::new();
        assert_eq!(pending_reconcile_request(Some(&annotations), None), None);
        annotations.insert(RECONCILE_REQUEST_ANNOTATION.to_string(), "t1".to_string());
        assert_eq!(
            pending_reconcile_request(Some(&annotations), None),
            Some("t1")
        );
        assert_eq!(
            pending_reconcile_request(Some(&annotations), Some("t0")),
            Some("t1")
        );
        assert_eq!(
            pending_reconcile_request(Some(&annotations), Some("t1")),
            None
        );
        assert_eq!(pending_reconcile_request(None, None), None);
    }
}
