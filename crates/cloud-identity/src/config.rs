//! Endpoints and controller identity settings, read from the environment in one place.
//!
//! The variable names are the SDKs' own, so a private cloud or a test points every call at
//! its own server the way it would with the official SDKs: `AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_ECR_PUBLIC`, `AWS_ENDPOINT_URL`,
//! `GCE_METADATA_HOST`, `AZURE_AUTHORITY_HOST`. Google STS and IAM credentials, which Flux
//! hard-codes, take our `GCP_ENDPOINT_URL_STS` and `GCP_ENDPOINT_URL_IAM_CREDENTIALS`; Azure
//! IMDS has a field for tests but no variable.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Provider, Result, Step};

/// A provider's client: the HTTP client, the endpoints and the provider's environment
/// (`AwsClient`, `AzureClient`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProviderClient<Env> {
    pub(crate) http: crate::http::HttpClient,
    pub(crate) endpoints: Endpoints,
    pub(crate) env: Env,
}

impl<Env> ProviderClient<Env> {
    pub fn new(http: crate::http::HttpClient, endpoints: Endpoints, env: Env) -> Self {
        Self {
            http,
            endpoints,
            env,
        }
    }
}

/// The endpoint `configured` (tests, sovereign clouds), else the `default` one.
pub(crate) fn endpoint_or(
    configured: &Option<url::Url>,
    default: impl FnOnce() -> crate::error::Result<url::Url>,
) -> crate::error::Result<url::Url> {
    configured.clone().map_or_else(default, Ok)
}

/// Where each provider call goes when not to the public cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// STS (`AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`).
    pub aws_sts: Option<url::Url>,
    /// Private ECR API (`AWS_ENDPOINT_URL_ECR`, else `AWS_ENDPOINT_URL`).
    pub aws_ecr: Option<url::Url>,
    /// ECR Public API (`AWS_ENDPOINT_URL_ECR_PUBLIC`, else `AWS_ENDPOINT_URL`).
    pub aws_ecr_public: Option<url::Url>,
    /// EC2 instance metadata (`AWS_EC2_METADATA_SERVICE_ENDPOINT`); default
    /// `http://169.254.169.254/`.
    pub aws_ec2_metadata: Option<url::Url>,
    /// The GCE metadata server `host[:port]` (`GCE_METADATA_HOST`); default
    /// `169.254.169.254`.
    pub gce_metadata_host: Option<String>,
    /// Google STS root (`GCP_ENDPOINT_URL_STS`, ours); default `https://sts.googleapis.com/`.
    pub google_sts: Option<url::Url>,
    /// Google IAM credentials root (`GCP_ENDPOINT_URL_IAM_CREDENTIALS`, ours); default
    /// `https://iamcredentials.googleapis.com/`.
    pub google_iam_credentials: Option<url::Url>,
    /// Entra ID authority (`AZURE_AUTHORITY_HOST`); default
    /// `https://login.microsoftonline.com/`.
    pub azure_authority_host: Option<url::Url>,
    /// Azure IMDS root (default `http://169.254.169.254/`).
    pub azure_imds: Option<url::Url>,
    /// Every ACR call to this root instead of `https://<registry>/` (tests only).
    pub acr: Option<url::Url>,
}

/// AWS controller-level identity (aws-sdk-go-v2's default chain, minus shared files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Present or not; the value is read where it is used.
    pub secret_access_key: Option<crate::Secret>,
    pub session_token: Option<crate::Secret>,
    pub web_identity_token_file: Option<PathBuf>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub container_credentials_full_uri: Option<String>,
    pub container_credentials_relative_uri: Option<String>,
    pub container_authorization_token_file: Option<PathBuf>,
    pub container_authorization_token: Option<crate::Secret>,
    /// `AWS_EC2_METADATA_DISABLED=true`: do not ask the node's instance metadata.
    pub ec2_metadata_disabled: bool,
}

/// Azure controller-level identity (what the AKS workload identity webhook injects).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureEnvironment {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET` (EnvironmentCredential with a client secret).
    pub client_secret: Option<crate::Secret>,
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_ENVIRONMENT_FILEPATH`, parsed.
    pub cloud: Option<AzureCloudEnvironment>,
}

/// A private Azure cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureCloudEnvironment {
    pub container_registry_dns_suffix: String,
    pub resource_manager_endpoint: String,
    pub token_audience: String,
}

/// Everything the providers read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub endpoints: Endpoints,
    pub aws: AwsEnvironment,
    pub azure: AzureEnvironment,
}

impl Environment {
    /// Reads the process environment (the one place that does).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = |provider: Provider, name: &'static str| -> Result<Option<url::Url>> {
            get(name)
                .map(|value| {
                    url::Url::parse(value.trim()).map_err(|err| {
                        Error::config(
                            provider,
                            Step::ControllerCredentials,
                            name,
                            format!("invalid URL: {err}"),
                        )
                    })
                })
                .transpose()
        };
        let aws_any = url(Provider::Aws, "AWS_ENDPOINT_URL")?;
        let endpoints = Endpoints {
            aws_sts: url(Provider::Aws, "AWS_ENDPOINT_URL_STS")?.or_else(|| aws_any.clone()),
            aws_ecr: url(Provider::Aws, "AWS_ENDPOINT_URL_ECR")?.or_else(|| aws_any.clone()),
            aws_ecr_public: url(Provider::Aws, "AWS_ENDPOINT_URL_ECR_PUBLIC")?
                .or_else(|| aws_any.clone()),
            aws_ec2_metadata: url(Provider::Aws, "AWS_EC2_METADATA_SERVICE_ENDPOINT")?,
            gce_metadata_host: get("GCE_METADATA_HOST"),
            // Ours (Flux hard-codes both): private endpoints and local stand-ins.
            google_sts: url(Provider::Gcp, "GCP_ENDPOINT_URL_STS")?,
            google_iam_credentials: url(Provider::Gcp, "GCP_ENDPOINT_URL_IAM_CREDENTIALS")?,
            azure_authority_host: url(Provider::Azure, "AZURE_AUTHORITY_HOST")?,
            azure_imds: None,
            acr: None,
        };
        let aws = AwsEnvironment {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(crate::Secret::new),
            session_token: get("AWS_SESSION_TOKEN").map(crate::Secret::new),
            web_identity_token_file: get("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
            role_arn: get("AWS_ROLE_ARN"),
            role_session_name: get("AWS_ROLE_SESSION_NAME"),
            container_credentials_full_uri: get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            container_credentials_relative_uri: get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            container_authorization_token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .map(PathBuf::from),
            container_authorization_token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                .map(crate::Secret::new),
            ec2_metadata_disabled: get("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
        let cloud = match get("AZURE_ENVIRONMENT_FILEPATH") {
            Some(path) => Some(read_azure_environment_file(&path)?),
            None => None,
        };
        let azure = AzureEnvironment {
            tenant_id: get("AZURE_TENANT_ID"),
            client_id: get("AZURE_CLIENT_ID"),
            client_secret: get("AZURE_CLIENT_SECRET").map(crate::Secret::new),
            federated_token_file: get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            cloud,
        };
        Ok(Self {
            endpoints,
            aws,
            azure,
        })
    }
}

fn read_azure_environment_file(path: &str) -> Result<AzureCloudEnvironment> {
    let field = "AZURE_ENVIRONMENT_FILEPATH";
    let fail = |message: String| {
        Error::config(Provider::Azure, Step::ControllerCredentials, field, message)
    };
    let text = std::fs::read(path).map_err(|err| fail(format!("reading {path}: {err}")))?;
    let env: AzureCloudEnvironment =
        serde_json::from_slice(&text).map_err(|err| fail(format!("parsing {path}: {err}")))?;
    if env.token_audience.is_empty() || env.resource_manager_endpoint.is_empty() {
        return Err(fail(format!(
            "{path} must set resourceManagerEndpoint and tokenAudience"
        )));
    }
    Ok(env)
}

#[cfg(test)]
mod tests;
