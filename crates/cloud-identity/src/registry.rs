//! Which cloud a registry host belongs to, and the input its credential depends on.
//!
//! Flux's `ParseArtifactRepository`: AWS yields the ECR region (or `public.ecr.aws`), Azure
//! the host, GCP the constant `gcp` (one credential covers every GCP registry).

use std::sync::LazyLock;

use regex::Regex;

use crate::config::AzureCloudEnvironment;
use crate::error::{Error, Provider, Result};

/// From amazon-ecr-credential-helper, unanchored as in Flux (the `.` before `dkr` and the
/// `[.cn]*` class are Flux's too). Group 2 is the region.
pub const AWS_REGISTRY_PATTERN: &str = r"([0-9+]*).dkr[.-]ecr(?:-fips)?\.([^/.]*)\.(amazonaws\.com[.cn]*|amazonaws\.eu|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov|on\.aws)";
pub const GCP_REGISTRY_PATTERN: &str =
    r"^(((.+\.)?gcr\.io)|(.+-docker\.pkg\.dev)|(docker\.s3nsregistry\.fr))$";
pub const AZURE_REGISTRY_PATTERN: &str = r"^.+\.(azurecr\.io|azurecr\.cn|azurecr\.de|azurecr\.us)$";

/// ECR Public's host; its API lives in us-east-1 only.
pub const AWS_PUBLIC_REGISTRY: &str = "public.ecr.aws";
pub const AWS_PUBLIC_REGION: &str = "us-east-1";
/// The registry input for every GCP registry.
pub const GCP_REGISTRY_INPUT: &str = "gcp";

#[allow(clippy::expect_used)] // Constant patterns, covered by the tests below.
static AWS_REGISTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(AWS_REGISTRY_PATTERN).expect("AWS registry pattern"));
#[allow(clippy::expect_used)]
static GCP_REGISTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(GCP_REGISTRY_PATTERN).expect("GCP registry pattern"));
#[allow(clippy::expect_used)]
static AZURE_REGISTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(AZURE_REGISTRY_PATTERN).expect("Azure registry pattern"));

/// What a registry credential depends on besides the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryInput {
    /// Private ECR in this region (also the STS region).
    AwsPrivate { region: String },
    /// ECR Public (`public.ecr.aws`).
    AwsPublic,
    /// Any GCR or Artifact Registry host.
    Gcp,
    /// An ACR host.
    Azure { host: String },
}

impl RegistryInput {
    /// The string Flux keys the registry credential with.
    pub fn cache_input(&self) -> &str {
        match self {
            RegistryInput::AwsPrivate { region } => region,
            RegistryInput::AwsPublic => AWS_PUBLIC_REGISTRY,
            RegistryInput::Gcp => GCP_REGISTRY_INPUT,
            RegistryInput::Azure { host } => host,
        }
    }

    /// The AWS region the STS and ECR calls go to.
    pub fn aws_region(&self) -> Option<&str> {
        match self {
            RegistryInput::AwsPrivate { region } => Some(region),
            RegistryInput::AwsPublic => Some(AWS_PUBLIC_REGION),
            _ => None,
        }
    }
}

/// The registry host of `spec.image`, as Flux derives it: trailing `/` trimmed; with a `/`
/// left, the image reference's registry (`docker.io` becomes `index.docker.io`), else the
/// whole string.
pub fn registry_host(image: &str) -> String {
    let image = image.trim_end_matches('/');
    let Some((first, _)) = image.split_once('/') else {
        return image.to_string();
    };
    let is_registry = first.contains('.') || first.contains(':') || first == "localhost";
    if !is_registry || first == "docker.io" {
        return "index.docker.io".to_string();
    }
    first.to_string()
}

/// Checks `host` against the provider's pattern and returns the registry input.
///
/// `azure_environment` is the private-cloud file (`AZURE_ENVIRONMENT_FILEPATH`): a host not
/// matching the public pattern must end with its `containerRegistryDNSSuffix`.
pub fn parse_registry(
    provider: Provider,
    host: &str,
    azure_environment: Option<&AzureCloudEnvironment>,
) -> Result<RegistryInput> {
    match provider {
        Provider::Aws => parse_aws(host),
        Provider::Gcp => {
            if GCP_REGISTRY.is_match(host) {
                Ok(RegistryInput::Gcp)
            } else {
                Err(invalid(provider, "GCP", host, GCP_REGISTRY_PATTERN))
            }
        }
        Provider::Azure => {
            let private_suffix = azure_environment
                .map(|env| env.container_registry_dns_suffix.trim_start_matches('.'))
                .filter(|suffix| !suffix.is_empty());
            let matches_private = private_suffix.is_some_and(|suffix| {
                host.strip_suffix(suffix)
                    .is_some_and(|name| name.len() > 1 && name.ends_with('.'))
            });
            if AZURE_REGISTRY.is_match(host) || matches_private {
                Ok(RegistryInput::Azure {
                    host: host.to_string(),
                })
            } else {
                let pattern = match private_suffix {
                    Some(suffix) => format!("{AZURE_REGISTRY_PATTERN} or end with .{suffix}"),
                    None => AZURE_REGISTRY_PATTERN.to_string(),
                };
                Err(invalid(provider, "Azure", host, &pattern))
            }
        }
        Provider::GitHub => Err(invalid(provider, "GitHub", host, "(no registry provider)")),
    }
}

fn parse_aws(host: &str) -> Result<RegistryInput> {
    if host == AWS_PUBLIC_REGISTRY {
        return Ok(RegistryInput::AwsPublic);
    }
    match AWS_REGISTRY.captures(host).and_then(|c| c.get(2)) {
        Some(region) => Ok(RegistryInput::AwsPrivate {
            region: region.as_str().to_string(),
        }),
        None => Err(invalid(Provider::Aws, "AWS", host, AWS_REGISTRY_PATTERN)),
    }
}

fn invalid(provider: Provider, name: &'static str, host: &str, pattern: &str) -> Error {
    Error::InvalidRegistry {
        provider,
        provider_name: name,
        host: host.to_string(),
        pattern: pattern.to_string(),
    }
}

#[cfg(test)]
mod tests;
