//! Errors that name the provider, the step that failed and the field to check.
//!
//! Response bodies are quoted only from error responses and cut short; no secret we hold is
//! ever formatted into a message.

use std::fmt;

/// The identity provider, as `spec.provider` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    GitHub,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::GitHub => "github",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step of a credential flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RegistryHost,
    ControllerCredentials,
    WebIdentityTokenFile,
    StsAssumeRoleWithWebIdentity,
    ContainerCredentials,
    Ec2InstanceMetadata,
    EcrGetAuthorizationToken,
    GcpMetadataToken,
    GcpMetadataValue,
    GcpStsTokenExchange,
    GcpImpersonation,
    AzureFederatedTokenFile,
    AzureAdToken,
    AzureImdsToken,
    AcrExchange,
    GitHubAppKey,
    GitHubInstallationLookup,
    GitHubInstallationToken,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::RegistryHost => "registry host",
            Step::ControllerCredentials => "controller credentials",
            Step::WebIdentityTokenFile => "reading the web identity token file",
            Step::StsAssumeRoleWithWebIdentity => "STS AssumeRoleWithWebIdentity",
            Step::ContainerCredentials => "container credentials (EKS Pod Identity)",
            Step::Ec2InstanceMetadata => "EC2 instance metadata credentials",
            Step::EcrGetAuthorizationToken => "ECR GetAuthorizationToken",
            Step::GcpMetadataToken => "metadata server access token",
            Step::GcpMetadataValue => "metadata server value",
            Step::GcpStsTokenExchange => "STS token exchange",
            Step::GcpImpersonation => "service account impersonation",
            Step::AzureFederatedTokenFile => "reading the federated token file",
            Step::AzureAdToken => "Entra ID (AAD) token",
            Step::AzureImdsToken => "IMDS managed identity token",
            Step::AcrExchange => "ACR /oauth2/exchange",
            Step::GitHubAppKey => "GitHub App private key",
            Step::GitHubInstallationLookup => "GitHub App installation lookup",
            Step::GitHubInstallationToken => "GitHub App installation token",
        })
    }
}

/// Why a credential could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry host does not belong to the provider (Flux's text).
    #[error("invalid {provider_name} registry: '{host}'. must match {pattern}")]
    InvalidRegistry {
        provider: Provider,
        provider_name: &'static str,
        host: String,
        pattern: String,
    },
    /// Missing or invalid configuration; `field` says what to check.
    #[error("{provider}: {step}: {message} (check {field})")]
    Config {
        provider: Provider,
        step: Step,
        field: &'static str,
        message: String,
    },
    /// The endpoint could not be reached or did not answer in time.
    #[error("{provider}: {step}: request to {endpoint} failed: {message} (check {field})")]
    Transport {
        provider: Provider,
        step: Step,
        endpoint: String,
        field: &'static str,
        message: String,
    },
    /// The endpoint answered with an error status.
    #[error("{provider}: {step}: {endpoint} answered HTTP {status}: {body} (check {field})")]
    Status {
        provider: Provider,
        step: Step,
        endpoint: String,
        field: &'static str,
        status: u16,
        /// The start of the error body, control characters removed.
        body: String,
    },
    /// The Kubernetes TokenRequest for the object's ServiceAccount failed.
    #[error(
        "{provider}: failed to create kubernetes token for service account '{namespace}/{name}': {message}"
    )]
    ServiceAccountToken {
        provider: Provider,
        namespace: String,
        name: String,
        message: String,
    },
    /// The endpoint answered 2xx with something we cannot use (Flux's texts where it has them).
    #[error("{provider}: {step}: {message}")]
    InvalidResponse {
        provider: Provider,
        step: Step,
        message: String,
    },
}

impl Error {
    /// The provider the error is about.
    pub fn provider(&self) -> Provider {
        match self {
            Error::InvalidRegistry { provider, .. }
            | Error::Config { provider, .. }
            | Error::Transport { provider, .. }
            | Error::Status { provider, .. }
            | Error::ServiceAccountToken { provider, .. }
            | Error::InvalidResponse { provider, .. } => *provider,
        }
    }

    /// The HTTP status of an error answer, e.g. 403 for a denied role.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn config(
        provider: Provider,
        step: Step,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            provider,
            step,
            field,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(provider: Provider, step: Step, message: impl Into<String>) -> Self {
        Error::InvalidResponse {
            provider,
            step,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One provider step's answer, read the same way everywhere: JSON into `T`, with `not` saying
/// what the body turned out not to be (`a token`, `JSON`) when it does not parse.
pub(crate) struct Answer {
    pub provider: Provider,
    pub step: Step,
}

impl Answer {
    pub(crate) fn new(provider: Provider, step: Step) -> Self {
        Self { provider, step }
    }

    /// The token and its RFC 3339 expiry, the answer's string fields `token` and `expiry`
    /// (a body that is not JSON is not `not`).
    pub(crate) fn token_with_expiry(
        &self,
        body: &[u8],
        not: &str,
        (token, expiry): (&str, &str),
    ) -> Result<(String, std::time::SystemTime)> {
        let fields: serde_json::Map<String, serde_json::Value> = self.json(body, not)?;
        let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let value = self.required(text(token), &format!("response has no {token}"))?;
        let expires_at = text(expiry)
            .as_deref()
            .and_then(crate::time::parse_rfc3339)
            .ok_or_else(|| self.invalid(format!("response has no valid {expiry}")))?;
        Ok((value, expires_at))
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, body: &[u8], not: &str) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|err| self.invalid(format!("response is not {not}: {err}")))
    }

    /// A string field the answer must carry, not empty; `missing` is the message otherwise.
    pub(crate) fn required(&self, value: Option<String>, missing: &str) -> Result<String> {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.invalid(missing))
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> Error {
        Error::invalid(self.provider, self.step, message)
    }
}
