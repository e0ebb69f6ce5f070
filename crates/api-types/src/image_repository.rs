//! `ImageRepository`: which registry repository to scan, how often, with which credentials.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::LocalObjectReference;

/// The exclusion list Flux applies when none is given: cosign signature tags.
pub const DEFAULT_EXCLUSION_LIST: &str = "^.*\\.sig$";

/// Number of tags `status.lastScanResult.latestTags` shows.
pub const LATEST_TAGS_COUNT: usize = 10;

/// The pattern Flux puts on `interval` fields (a Go duration without sign).
pub const INTERVAL_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The pattern Flux puts on the scan `timeout` (no hours).
pub const TIMEOUT_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$";

/// ImageRepositorySpec defines the parameters for scanning an image repository.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageRepository",
    plural = "imagerepositories",
    namespaced,
    status = "ImageRepositoryStatus",
    shortname = "imgrepo",
    shortname = "imagerepo",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Tags","type":"integer","jsonPath":".status.lastScanResult.tagCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Last scan","type":"string","jsonPath":".status.lastScanResult.scanTime","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct ImageRepositorySpec {
    /// Image is the name of the image repository, without scheme, tag or digest
    /// (for example `ghcr.io/org/app` or `alpine`).
    pub image: String,

    /// Interval is the length of time to wait between scans of the image repository.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,

    /// Timeout for the scan (and for the digest lookup of policies using this repository).
    /// Defaults to the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"))]
    pub timeout: Option<String>,

    /// SecretRef names a `kubernetes.io/dockerconfigjson` (or `dockercfg`) Secret in the
    /// same namespace holding registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// ProxySecretRef names a Secret with `address` and optional `username` and `password`
    /// of the proxy to reach the registry through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,

    /// ServiceAccountName names a service account in the same namespace whose
    /// `imagePullSecrets` are added to the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// CertSecretRef names a Secret with `ca.crt` and/or `tls.crt` + `tls.key` for TLS to
    /// the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,

    /// Suspend tells the controller not to scan this repository until it is unset.
    #[serde(default)]
    pub suspend: bool,

    /// AccessFrom lists the namespaces whose ImagePolicies may refer to this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,

    /// ExclusionList is a list of regular expressions; tags matching any of them are dropped
    /// before they are stored. Defaults to `^.*\.sig$`.
    #[serde(default = "default_exclusion_list")]
    #[schemars(length(max = 25))]
    pub exclusion_list: Vec<String>,

    /// Provider selects how credentials are obtained: `generic` (Secrets) or a cloud
    /// provider's workload identity.
    #[serde(default)]
    pub provider: RegistryProvider,

    /// Insecure allows scanning a registry over plain HTTP.
    #[serde(default)]
    pub insecure: bool,
}

fn default_exclusion_list() -> Vec<String> {
    vec![DEFAULT_EXCLUSION_LIST.to_string()]
}

impl ImageRepositorySpec {
    /// The exclusion list in force: Flux falls back to the default for an empty list too.
    pub fn effective_exclusion_list(&self) -> Vec<String> {
        if self.exclusion_list.is_empty() {
            default_exclusion_list()
        } else {
            self.exclusion_list.clone()
        }
    }
}

/// How registry credentials are obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistryProvider {
    /// Credentials from `secretRef` and the service account's image pull secrets.
    #[default]
    Generic,
    Aws,
    Azure,
    Gcp,
}

/// AccessFrom defines an ACL for allowing cross-namespace references to the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    /// NamespaceSelectors is the list of namespace selectors, ORed together.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// NamespaceSelector selects namespaces by label; an empty `matchLabels` selects all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// MatchLabels is a map of {key,value} pairs a namespace must all carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl NamespaceSelector {
    /// Whether a namespace with these labels is selected.
    pub fn matches(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(key, value)| namespace_labels.get(key) == Some(value))
    }
}

impl AccessFrom {
    /// Whether any selector admits a namespace with these labels.
    pub fn admits(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.namespace_selectors
            .iter()
            .any(|s| s.matches(namespace_labels))
    }
}

/// ImageRepositoryStatus defines the observed state of ImageRepository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryStatus {
    /// ObservedGeneration is the last reconciled generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// CanonicalImageName is the name of the image repository with all the implied bits
    /// made explicit; e.g., `docker.io/library/alpine` rather than `alpine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,

    /// LastScanResult contains the number of fetched tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,

    /// ObservedExclusionList is the exclusion list used by the last successful scan; a
    /// change to `spec.exclusionList` triggers a rescan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_exclusion_list: Vec<String>,

    /// LastHandledReconcileAt holds the value of the most recent reconcile request value,
    /// so a change of the annotation value can be detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// ScanResult describes the last successful scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    /// Revision is a checksum of the stored tag list.
    #[serde(default)]
    pub revision: String,
    /// TagCount is the number of tags after the exclusion list.
    #[serde(default)]
    pub tag_count: i64,
    /// ScanTime is the time of the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_time: Option<Time>,
    /// LatestTags is a small sample of the tags, sorted in descending byte order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_exclusion_list_falls_back_to_default() {
        let spec = ImageRepositorySpec::default();
        assert!(spec.exclusion_list.is_empty());
        assert_eq!(
            spec.effective_exclusion_list(),
            vec![DEFAULT_EXCLUSION_LIST]
        );
        let spec = ImageRepositorySpec {
            exclusion_list: vec!["^dev-".into()],
            ..spec
        };
        assert_eq!(spec.effective_exclusion_list(), vec!["^dev-"]);
    }

    #[test]
    fn access_from_selectors_are_ored_and_empty_matches_all() {
        let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let only_b = NamespaceSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "b".to_string())])),
        };
        let only_a = NamespaceSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
        };
        assert!(
            !AccessFrom {
                namespace_selectors: vec![only_b.clone()]
            }
            .admits(&labels)
        );
        assert!(
            AccessFrom {
                namespace_selectors: vec![only_b, only_a]
            }
            .admits(&labels)
        );
        let any = NamespaceSelector {
            match_labels: Some(BTreeMap::new()),
        };
        assert!(
            AccessFrom {
                namespace_selectors: vec![any]
            }
            .admits(&BTreeMap::new())
        );
        assert!(!AccessFrom::default().admits(&labels));
    }
}

crate::optional_spec!(ImageRepositorySpec);
