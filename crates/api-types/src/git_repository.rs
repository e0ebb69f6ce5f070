//! A read-only model of Flux's `GitRepository` (`source.toolkit.fluxcd.io/v1`), owned by
//! source-controller. The automation reads the fields it needs; every other field is kept
//! by the API server (the spec preserves unknown fields) and ignored here.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::LocalObjectReference;

/// The subset of GitRepositorySpec the image automation uses.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    plural = "gitrepositories",
    namespaced,
    shortname = "gitrepo",
    category = "fluxcd"
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// URL specifies the Git repository URL (`http`, `https` or `ssh`).
    pub url: String,
    /// SecretRef names a Secret with the credentials: `username`/`password` or
    /// `bearerToken` for HTTPS, `identity`/`known_hosts` for SSH, `ca.crt`/`tls.crt`/`tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// ProxySecretRef names a Secret with `address`, `username` and `password` of a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Reference specifies the Git reference to resolve and check out.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRepositoryRef>,
    /// Timeout for Git operations; 60s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Interval at which source-controller fetches the repository (not used here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Provider used for authentication (`generic`, `azure`, `aws`, `github`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// ServiceAccountName for workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// GitRepositoryRef specifies the Git reference to resolve and checkout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitRepositoryRef {
    /// Branch to check out; `master` when nothing else is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Tag to check out; takes precedence over Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// SemVer tag expression to check out; takes precedence over Tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Name of the reference to check out (e.g. `refs/heads/main`); takes precedence over
    /// Branch, Tag and SemVer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Commit SHA to check out; takes precedence over all reference fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// The branch Flux falls back to when no reference is given.
pub const DEFAULT_BRANCH: &str = "master";

/// The Git operation timeout when `spec.timeout` is absent.
pub const DEFAULT_TIMEOUT: &str = "60s";
