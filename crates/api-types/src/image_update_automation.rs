//! `ImageUpdateAutomation`: which Git repository to update from which policies, and how to
//! commit and push.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::git_repository::GitRepositoryRef;
use crate::image_policy::ImageRef;
use crate::meta::LocalObjectReference;

/// The commit message Flux writes when no template is given (exact, no newline).
pub const DEFAULT_MESSAGE_TEMPLATE: &str = "Update from image update automation";

/// ImageUpdateAutomationSpec defines the desired state of ImageUpdateAutomation.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageUpdateAutomation",
    plural = "imageupdateautomations",
    namespaced,
    status = "ImageUpdateAutomationStatus",
    shortname = "iua",
    shortname = "imgupd",
    shortname = "imgauto",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Last run","type":"string","jsonPath":".status.lastAutomationRunTime","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct ImageUpdateAutomationSpec {
    /// SourceRef refers to the GitRepository giving access details to a git repository.
    pub source_ref: CrossNamespaceSourceReference,

    /// GitSpec contains all the git-specific definitions. Optional in the schema, but
    /// required when the source is a GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,

    /// Interval gives a lower bound for how often the automation run should be attempted.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,

    /// PolicySelector selects the ImagePolicies of the automation's namespace to apply;
    /// all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_selector: Option<LabelSelector>,

    /// Update gives the specification for how to update the files in the repository.
    #[serde(default = "default_update", skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_update")]
    pub update: Option<UpdateStrategy>,

    /// Suspend tells the controller not to run this automation until it is unset.
    #[serde(default)]
    pub suspend: bool,
}

fn default_update() -> Option<UpdateStrategy> {
    Some(UpdateStrategy::default())
}

/// CrossNamespaceSourceReference locates the source (a GitRepository), possibly in another
/// namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// API version of the referent (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default)]
    pub kind: SourceKind,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the automation's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kinds of source an automation can update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SourceKind {
    #[default]
    GitRepository,
}

/// GitSpec contains all the git-specific definitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitSpec {
    /// Checkout gives the parameters for cloning the git repository, ready to make
    /// changes; the GitRepository's `spec.ref` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<GitCheckoutSpec>,
    /// Commit specifies how to commit to the git repository.
    pub commit: CommitSpec,
    /// Push specifies how and where to push commits made by the automation; back to the
    /// checkout branch when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

/// GitCheckoutSpec specifies the git reference to check out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitCheckoutSpec {
    /// Reference gives a branch, tag or commit to clone from the Git repository.
    #[serde(rename = "ref")]
    pub reference: GitRepositoryRef,
}

/// CommitSpec specifies how to commit changes to the git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    /// Author gives the email and optionally the name to use as the author of commits.
    pub author: CommitUser,
    /// SigningKey provides the option to sign commits with a GPG or SSH key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
    /// MessageTemplate provides a template for the commit message, into which will be
    /// interpolated the details of the change made (Go `text/template` with Sprig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// MessageTemplateValues provides additional values, exposed to the template as `.Values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template_values: Option<BTreeMap<String, String>>,
}

/// CommitUser is the author (and committer) of automation commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitUser {
    /// Name gives the name to provide when making a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email gives the email to provide when making a commit.
    pub email: String,
}

/// SigningKey references a Kubernetes secret that contains a signing key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// SecretRef names a Secret in the automation's namespace holding `git.asc` (and
    /// optionally `passphrase`) for OpenPGP, or an SSH private key for `type: ssh`.
    pub secret_ref: LocalObjectReference,
    /// Type of the signing key: `gpg` (the default) or `ssh`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<SigningKeyType>,
}

/// The kind of key commits are signed with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyType {
    #[default]
    Gpg,
    Ssh,
}

/// PushSpec specifies how and where to push commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushSpec {
    /// Branch specifies that commits should be pushed to the branch named; it is created
    /// from the checkout branch if it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Refspec specifies the Git refspec of an extra push, made after the branch push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refspec: Option<String>,
    /// Options specifies the push options sent to the Git server with every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// UpdateStrategy is a union of the various strategies for updating the Git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateStrategy {
    /// Strategy names the strategy to be used.
    #[serde(default)]
    pub strategy: UpdateStrategyName,
    /// Path to the directory containing the manifests to be updated; the repository root
    /// when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The update strategies; only `Setters` (marker comments) exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategyName {
    #[default]
    Setters,
}

/// ImageUpdateAutomationStatus defines the observed state of ImageUpdateAutomation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationStatus {
    /// LastAutomationRunTime records the last time the controller ran this automation
    /// through to completion (even if no updates were made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_automation_run_time: Option<Time>,
    /// LastPushCommit records the SHA1 of the last commit made by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_commit: Option<String>,
    /// LastPushTime records the time of the last pushed change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// ObservedPolicies is the list of observed ImagePolicies that were considered by the
    /// automation in the last run, keyed by policy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_policies: Option<BTreeMap<String, ImageRef>>,
    /// ObservedSourceRevision is the last observed source revision, e.g. `main@sha1:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_source_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl ImageUpdateAutomationSpec {
    /// The commit message template in force.
    pub fn message_template(&self) -> &str {
        self.git
            .as_ref()
            .and_then(|git| git.commit.message_template.as_deref())
            .filter(|template| !template.is_empty())
            .unwrap_or(DEFAULT_MESSAGE_TEMPLATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_message_template_applies_when_unset_or_empty() {
        let mut spec = ImageUpdateAutomationSpec::default();
        assert_eq!(spec.message_template(), DEFAULT_MESSAGE_TEMPLATE);
        spec.git = Some(GitSpec::default());
        assert_eq!(spec.message_template(), DEFAULT_MESSAGE_TEMPLATE);
        spec.git.as_mut().unwrap().commit.message_template = Some("bump".into());
        assert_eq!(spec.message_template(), "bump");
    }
}

crate::optional_spec!(ImageUpdateAutomationSpec);
