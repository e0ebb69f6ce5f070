//! The HTTP API documents of reconciled objects.

use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo, Readiness};
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
