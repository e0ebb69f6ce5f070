//! `ImagePolicy`: which of a repository's tags is "latest".

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::NamespacedObjectReference;

/// The requeue period of a `digestReflectionPolicy: Always` policy without an interval.
pub const DEFAULT_DIGEST_REFLECTION_INTERVAL: &str = "10m";

/// ImagePolicySpec defines the parameters for calculating the ImagePolicy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImagePolicy",
    plural = "imagepolicies",
    namespaced,
    status = "ImagePolicyStatus",
    shortname = "imgpol",
    shortname = "imagepol",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.latestRef.name"}"#,
    printcolumn = r#"{"name":"Tag","type":"string","jsonPath":".status.latestRef.tag"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct ImagePolicySpec {
    /// ImageRepositoryRef points at the ImageRepository whose tags are considered; the
    /// namespace defaults to the policy's own.
    pub image_repository_ref: NamespacedObjectReference,

    /// Policy gives the particulars of the policy to be followed in selecting the most
    /// recent image. When several are set, semver wins over alphabetical over numerical.
    pub policy: ImagePolicyChoice,

    /// FilterTags enables filtering for only a subset of tags based on a set of rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,

    /// DigestReflectionPolicy governs the setting of `.status.latestRef.digest`: `Never`,
    /// `IfNotPresent` (look it up when the tag changes) or `Always` (look it up at every
    /// `interval`, for mutable tags).
    #[serde(default)]
    pub digest_reflection_policy: ReflectionPolicy,

    /// Interval is the requeue period when `digestReflectionPolicy` is `Always`; it must
    /// not be set otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: Option<String>,

    /// Suspend tells the controller not to reconcile this policy until it is unset.
    #[serde(default)]
    pub suspend: bool,
}

/// ImagePolicyChoice is a union of all the types of policy that can be supplied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyChoice {
    /// SemVer gives a semantic version range to check against the tags available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
    /// Alphabetical sets ordering by the tags' text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<AlphabeticalPolicy>,
    /// Numerical sets ordering by the tags read as numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<NumericalPolicy>,
}

/// SemVerPolicy specifies a semantic version policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SemVerPolicy {
    /// Range gives a semver range (Masterminds syntax, e.g. `>=1.0.0 <2.0.0`) for the
    /// image tag; the highest version within the range is chosen.
    pub range: String,
}

/// AlphabeticalPolicy specifies an alphabetical ordering policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlphabeticalPolicy {
    /// Order specifies the sorting order of the tags: `asc` picks the last tag in
    /// ascending order, `desc` the first.
    #[serde(default)]
    pub order: SortOrder,
}

/// NumericalPolicy specifies a numerical ordering policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NumericalPolicy {
    /// Order specifies the sorting order of the tags: `asc` picks the highest number,
    /// `desc` the lowest.
    #[serde(default)]
    pub order: SortOrder,
}

/// Sort order of alphabetical and numerical policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

/// TagFilter enables filtering tags based on a set of defined rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TagFilter {
    /// Pattern specifies a regular expression pattern used to filter for image tags.
    #[serde(default)]
    pub pattern: String,
    /// Extract allows a capture group to be extracted from the specified regular
    /// expression pattern, useful before tag evaluation (`$1`, `${name}`, `$name`).
    #[serde(default)]
    pub extract: String,
}

/// When the digest of the selected tag is looked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ReflectionPolicy {
    /// Look up the digest whenever the policy is reconciled.
    Always,
    /// Look up the digest only when the selected tag changes.
    IfNotPresent,
    /// Never look up the digest.
    #[default]
    Never,
}

/// ImagePolicyStatus defines the observed state of ImagePolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    /// LatestRef gives the first in the list of images scanned by the image repository,
    /// when filtered and ordered according to the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,

    /// ObservedPreviousRef is the last image selected before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,

    /// LatestImage is `latestRef` as one string (`name:tag[@digest]`), the form Flux's
    /// v1beta1 and v1beta2 APIs published; kept so older tools keep working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<String>,

    /// ObservedPreviousImage is `observedPreviousRef` as one string (older API form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_image: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl ImagePolicyStatus {
    /// Records a newly selected image the way Flux does: the previous ref moves to
    /// `observedPreviousRef` only when the selection changed. Keeps the string forms in step.
    pub fn record_latest(&mut self, latest: ImageRef) {
        if let Some(previous) = self.latest_ref.take()
            && previous != latest
        {
            self.observed_previous_ref = Some(previous);
        }
        self.latest_ref = Some(latest);
        self.latest_image = self.latest_ref.as_ref().map(ToString::to_string);
        self.observed_previous_image = self.observed_previous_ref.as_ref().map(ToString::to_string);
    }
}

/// ImageRef is a fully resolved image reference: `name:tag[@digest]`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct ImageRef {
    /// Name is the bare image's name (the repository's `spec.image`, verbatim).
    pub name: String,
    /// Tag is the original image's tag.
    pub tag: String,
    /// Digest is the image's digest, when reflected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)?;
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str) -> ImageRef {
        ImageRef {
            name: "ghcr.io/team/app".into(),
            tag: tag.into(),
            digest: None,
        }
    }

    #[test]
    fn image_ref_prints_name_tag_and_digest() {
        assert_eq!(image("1.0.0").to_string(), "ghcr.io/team/app:1.0.0");
        let pinned = ImageRef {
            digest: Some("sha256:abc".into()),
            ..image("1.0.0")
        };
        assert_eq!(pinned.to_string(), "ghcr.io/team/app:1.0.0@sha256:abc");
    }

    #[test]
    fn previous_ref_moves_only_on_change() {
        let mut status = ImagePolicyStatus::default();
        status.record_latest(image("1.0.0"));
        assert_eq!(status.observed_previous_ref, None);
        assert_eq!(
            status.latest_image.as_deref(),
            Some("ghcr.io/team/app:1.0.0")
        );

        status.record_latest(image("1.0.0"));
        assert_eq!(status.observed_previous_ref, None);

        status.record_latest(image("1.1.0"));
        assert_eq!(status.observed_previous_ref, Some(image("1.0.0")));
        assert_eq!(
            status.observed_previous_image.as_deref(),
            Some("ghcr.io/team/app:1.0.0")
        );
        assert_eq!(
            status.latest_image.as_deref(),
            Some("ghcr.io/team/app:1.1.0")
        );

        // Re-selecting the same image keeps the previous one.
        status.record_latest(image("1.1.0"));
        assert_eq!(status.observed_previous_ref, Some(image("1.0.0")));
    }
}

crate::optional_spec!(ImagePolicySpec);
