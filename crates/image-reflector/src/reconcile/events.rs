//! Which event a reconcile deserves, from the Ready condition before and after.
//!
//! Flux's rules (reference §5.5) minus the noise users complain of (#166): a success that
//! changes nothing emits nothing (Flux emits a Trace event), and a failure identical to the
//! previous one (same reason and message) is not repeated on every retry (#930).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use api_types::meta::condition_status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// The Kubernetes `Event.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// An event to record on the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// The event for a Ready condition going from `before` to `after`, if any.
pub fn decide_event(before: Option<&Condition>, after: Option<&Condition>) -> Option<Event> {
    let after = after?;
    let is_true = |c: &Condition| c.status == condition_status::TRUE;
    let was_true = before.is_some_and(is_true);
    if is_true(after) {
        if was_true && before.is_some_and(|b| b.message == after.message) {
            return None;
        }
        return Some(Event {
            type_: EventType::Normal,
            reason: after.reason.clone(),
            message: after.message.clone(),
        });
    }
    let same_failure = before.is_some_and(|b| {
        !is_true(b)
            && b.status == after.status
            && b.reason == after.reason
            && b.message == after.message
    });
    if same_failure {
        return None;
    }
    Some(Event {
        type_: EventType::Warning,
        reason: after.reason.clone(),
        message: after.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn ready(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn event(type_: EventType, reason: &str, message: &str) -> Option<Event> {
        Some(Event {
            type_,
            reason: reason.into(),
            message: message.into(),
        })
    }

    #[test]
    fn flux_pinned_cases_without_the_trace_noise() {
        let found_x = ready("True", "Succeeded", "found x tags");
        let found_y = ready("True", "Succeeded", "found y tags");
        let failed = ready("False", "Failed", "scan failed");
        // "first success": Normal.
        assert_eq!(
            decide_event(None, Some(&found_x)),
            event(EventType::Normal, "Succeeded", "found x tags")
        );
        // "no-op": Flux emits Trace; we emit nothing.
        assert_eq!(decide_event(Some(&found_x), Some(&found_x)), None);
        // "new message": Normal.
        assert_eq!(
            decide_event(Some(&found_x), Some(&found_y)),
            event(EventType::Normal, "Succeeded", "found y tags")
        );
        // "failure": Warning.
        assert_eq!(
            decide_event(Some(&found_x), Some(&failed)),
            event(EventType::Warning, "Failed", "scan failed")
        );
        // Recovery: Normal.
        assert_eq!(
            decide_event(Some(&failed), Some(&found_x)),
            event(EventType::Normal, "Succeeded", "found x tags")
        );
    }

    #[test]
    fn repeated_identical_failures_warn_once_and_changed_failures_warn_again() {
        let failed = ready("False", "ReadOperationFailed", "scan failed: 500");
        let other = ready("False", "ReadOperationFailed", "scan failed: 503");
        let unknown = ready("Unknown", "Progressing", "reconciliation in progress");
        assert!(decide_event(None, Some(&failed)).is_some());
        assert!(decide_event(Some(&unknown), Some(&failed)).is_some());
        assert_eq!(decide_event(Some(&failed), Some(&failed)), None);
        assert_eq!(
            decide_event(Some(&failed), Some(&other)),
            event(
                EventType::Warning,
                "ReadOperationFailed",
                "scan failed: 503"
            )
        );
        assert_eq!(decide_event(Some(&failed), None), None);
    }
}
