//! The JSON documents of image-reflector's read-only HTTP API, shared with image-automation
//! (which consumes them) and with `image-automation update --policies FILE`.
//!
//! Field names are camelCase like the Kubernetes objects they summarise. Optional fields
//! are omitted when absent, and readers accept documents with only the fields they need,
//! so a hand-written policies file of `{namespace, name, latestRef}` items is valid.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::image_policy::ImageRef;
use crate::meta::NamespacedObjectReference;

/// The API's path prefix.
pub const API_PREFIX: &str = "/api/v1";

/// A list response: `{"items": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub items: Vec<T>,
    /// The change-feed position this list reflects; pass it to the feed to receive only
    /// later changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// One ImageRepository as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.image`, verbatim.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,
    /// Number of stored tags (after the exclusion list).
    #[serde(default)]
    pub tag_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<Time>,
    /// Checksum of the stored tag list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub readiness: Readiness,
    /// Present only while the Reconciling condition is `True`: a scan is running (its
    /// message is `scanning: <reason>`), also while a previous scan keeps the repository
    /// Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciling: Option<Reconciling>,
}

/// The Reconciling condition's reason and message, while it is `True`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reconciling {
    /// The Reconciling condition's reason (Flux writes `Progressing`).
    pub reason: String,
    /// The Reconciling condition's message, e.g. `scanning: reconcile requested`.
    pub message: String,
}

/// A page of an ImageRepository's stored tags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagPage {
    pub namespace: String,
    pub name: String,
    /// Revision of the tag list the page was cut from; a `continue` token is only valid
    /// for the same revision.
    pub revision: String,
    /// Total number of stored tags.
    pub total: u64,
    /// Tags in the stored order (descending bytewise, like `latestTags`).
    pub tags: Vec<String>,
    /// Opaque token for the next page; absent on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// One ImagePolicy's result as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyInfo {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub image_repository_ref: NamespacedObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,
    #[serde(flatten)]
    pub readiness: Readiness,
}

/// The Ready condition, flattened into API documents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Whether the object's Ready condition is `True`.
    #[serde(default)]
    pub ready: bool,
    /// The Ready condition's reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The Ready condition's message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What happened to a policy, as the change feed reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyEventType {
    /// The policy was created or its result changed.
    Upserted,
    /// The policy was deleted.
    Deleted,
}

/// One entry of the policy change feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEvent {
    #[serde(rename = "type")]
    pub event_type: PolicyEventType,
    /// Monotonic position in the feed; resume after it.
    pub resource_version: String,
    pub policy: ImagePolicyInfo,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// A short machine-readable reason, e.g. `NotFound`, `BadRequest`.
    pub reason: String,
    /// A human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_list_accepts_the_minimal_hand_written_shape() {
        let doc = r#"{"items": [{"namespace": "flux-system", "name": "checkout",
            "latestRef": {"name": "registry.example.com/team/checkout", "tag": "1.3.0"}}]}"#;
        let list: List<ImagePolicyInfo> = serde_json::from_str(doc).unwrap();
        assert_eq!(list.items.len(), 1);
        let policy = &list.items[0];
        assert_eq!(
            policy.latest_ref.as_ref().unwrap().to_string(),
            "registry.example.com/team/checkout:1.3.0"
        );
        assert!(!policy.readiness.ready);
    }

    #[test]
    fn policy_info_serialises_flat_camel_case() {
        let info = ImagePolicyInfo {
            namespace: "flux-system".into(),
            name: "checkout".into(),
            image_repository_ref: NamespacedObjectReference {
                name: "checkout".into(),
                namespace: None,
            },
            latest_ref: Some(ImageRef {
                name: "r/app".into(),
                tag: "1.0.0".into(),
                digest: None,
            }),
            readiness: Readiness {
                ready: true,
                reason: "Succeeded".into(),
                message: "ok".into(),
                observed_generation: Some(2),
            },
            ..Default::default()
        };
        let value = serde_json::to_value(&info).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "namespace": "flux-system",
                "name": "checkout",
                "imageRepositoryRef": {"name": "checkout"},
                "latestRef": {"name": "r/app", "tag": "1.0.0"},
                "ready": true,
                "reason": "Succeeded",
                "message": "ok",
                "observedGeneration": 2
            })
        );
        let back: ImagePolicyInfo = serde_json::from_value(value).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn repository_info_shows_reconciling_only_when_present() {
        let mut info = ImageRepositoryInfo {
            namespace: "flux-system".into(),
            name: "app".into(),
            image: "r/app".into(),
            readiness: Readiness {
                ready: true,
                reason: "Succeeded".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let value = serde_json::to_value(&info).unwrap();
        assert!(value.get("reconciling").is_none(), "{value}");
        // Documents written before the field existed still parse.
        let back: ImageRepositoryInfo = serde_json::from_value(value).unwrap();
        assert_eq!(back, info);

        info.reconciling = Some(Reconciling {
            reason: "Progressing".into(),
            message: "scanning: reconcile requested".into(),
        });
        let value = serde_json::to_value(&info).unwrap();
        assert_eq!(
            value["reconciling"],
            serde_json::json!({"reason": "Progressing", "message": "scanning: reconcile requested"})
        );
        assert_eq!(value["ready"], true);
        let back: ImageRepositoryInfo = serde_json::from_value(value).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn tag_page_continue_token_uses_the_reserved_word() {
        let page = TagPage {
            continue_token: Some("abc".into()),
            ..Default::default()
        };
        let value = serde_json::to_value(&page).unwrap();
        assert_eq!(value["continue"], "abc");
    }
}
