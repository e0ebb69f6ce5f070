//! The HTTP API documents of reconciled objects.

use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo, Readiness, Reconciling};
use api_types::meta::{condition_status, condition_type, find_condition};
use api_types::{ImagePolicy, ImageRepository};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{name_of, namespace_of};

/// The Ready condition and `observedGeneration`, flattened.
pub fn readiness(conditions: &[Condition], observed_generation: Option<i64>) -> Readiness {
    let ready = find_condition(conditions, condition_type::READY);
    Readiness {
        ready: ready.is_some_and(|c| c.status == condition_status::TRUE),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        observed_generation,
    }
}

/// The Reconciling condition while it is `True` (a scan is running).
pub fn reconciling(conditions: &[Condition]) -> Option<Reconciling> {
    find_condition(conditions, condition_type::RECONCILING)
        .filter(|c| c.status == condition_status::TRUE)
        .map(|c| Reconciling {
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

/// The document of an ImageRepository with its status (`repo.status`).
pub fn repository_info(repo: &ImageRepository) -> ImageRepositoryInfo {
    let status = repo.status.clone().unwrap_or_default();
    let scan = status.last_scan_result.as_ref();
    ImageRepositoryInfo {
        namespace: namespace_of(&repo.metadata).to_string(),
        name: name_of(&repo.metadata).to_string(),
        image: repo.spec.image.clone(),
        canonical_image_name: status.canonical_image_name.clone(),
        tag_count: scan.map_or(0, |s| s.tag_count),
        last_scan_time: scan.and_then(|s| s.scan_time.clone()),
        revision: scan.map(|s| s.revision.clone()),
        readiness: readiness(&status.conditions, status.observed_generation),
        reconciling: reconciling(&status.conditions),
    }
}

/// The document of an ImagePolicy with its status (`policy.status`).
pub fn policy_info(policy: &ImagePolicy) -> ImagePolicyInfo {
    let status = policy.status.clone().unwrap_or_default();
    ImagePolicyInfo {
        namespace: namespace_of(&policy.metadata).to_string(),
        name: name_of(&policy.metadata).to_string(),
        labels: policy.metadata.labels.clone().unwrap_or_default(),
        image_repository_ref: policy.spec.image_repository_ref.clone(),
        latest_ref: status.latest_ref.clone(),
        observed_previous_ref: status.observed_previous_ref.clone(),
        readiness: readiness(&status.conditions, status.observed_generation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::testing::{Fixture, at, repository};
    use crate::reconcile::{reconcile_repository, scanning_status};
    use crate::schedule::ScanReason;

    #[tokio::test]
    async fn a_rescan_of_a_ready_repository_shows_reconciling() {
        let fx = Fixture::new();
        fx.registry.set_tags(&["1.0.0", "1.1.0"]);
        let mut repo = repository("app", "registry.local:5000/team/app");
        let scanned = reconcile_repository(&repo, &fx.deps(), at(1000)).await;
        repo.status = Some(scanned.status.clone());
        let ready = repository_info(&repo);
        assert!(ready.readiness.ready);
        assert_eq!(ready.reconciling, None, "no scan running");

        // What both modes publish while a requested rescan runs: still Ready, and
        // Reconciling with the scan's reason.
        repo.status = Some(scanning_status(
            &scanned.status,
            ScanReason::ReconcileRequested,
            Some(1),
            at(2000),
        ));
        let scanning = repository_info(&repo);
        assert!(scanning.readiness.ready, "{scanning:?}");
        assert_eq!(scanning.tag_count, 2);
        assert_eq!(
            scanning.reconciling,
            Some(Reconciling {
                reason: "Progressing".into(),
                message: "scanning: reconcile requested".into(),
            })
        );

        // A Reconciling condition that is not True is not shown.
        let mut status = repo.status.clone().unwrap_or_default();
        for c in &mut status.conditions {
            if c.type_ == condition_type::RECONCILING {
                c.status = condition_status::FALSE.into();
            }
        }
        repo.status = Some(status);
        assert_eq!(repository_info(&repo).reconciling, None);
    }
}
