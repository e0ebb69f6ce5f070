//! Cloud registry logins for `spec.provider: aws|gcp|azure` (reference cloud-identity §1):
//! the login replaces static credentials, runs lazily (only when a request needs it) and is
//! cached by [`RegistryCredentials`] per identity and registry.

use std::sync::Arc;
use std::time::Duration;

use api_types::RegistryProvider;
use cloud_identity::config::Environment;
use cloud_identity::http::HttpClient;
use cloud_identity::workload_identity::{GateError, IdentityChoice, choose_identity};
use cloud_identity::{Provider, RegistryCredentials, Step};

use crate::registry::Credentials;
use crate::registry::transport::ProxyConfig;

/// Flux's `--token-cache-max-size` default.
pub const TOKEN_CACHE_MAX_SIZE: usize = 100;

/// Why the controller's cloud identity could not be set up at startup.
#[derive(Debug, thiserror::Error)]
pub enum CloudSetupError {
    #[error("reading the cloud identity environment: {0}")]
    Environment(#[source] cloud_identity::Error),
    #[error("building the cloud identity HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Why a cloud login failed; worded with Flux's wrappers (reference §5).
#[derive(Debug, thiserror::Error)]
pub enum CloudLoginError {
    /// The controller's environment could not be read at startup (the log says why).
    #[error(
        "failed to get access token for artifact registry: failed to create provider access token for the controller: {provider}: the controller's cloud identity environment is invalid (see the controller log)"
    )]
    NotConfigured { provider: &'static str },
    /// Obtaining the provider's access token failed.
    #[error(
        "failed to get access token for artifact registry: failed to create provider access token for the controller: {0}"
    )]
    AccessToken(#[source] cloud_identity::Error),
    /// The host check or the registry exchange (ECR token, ACR exchange) failed.
    #[error("failed to create artifact registry credentials: {0}")]
    RegistryCredentials(#[source] cloud_identity::Error),
}

/// The controller's registry logins, from the process environment (IRSA, Pod Identity, GKE
/// metadata, Azure workload identity, IMDS; endpoints overridable as documented).
pub fn controller_credentials() -> Result<RegistryCredentials, CloudSetupError> {
    let env = Environment::from_env().map_err(CloudSetupError::Environment)?;
    let http = HttpClient::new(None).map_err(CloudSetupError::Http)?;
    Ok(RegistryCredentials::new(
        env,
        http,
        TOKEN_CACHE_MAX_SIZE,
        cloud_identity::login::MAX_CACHE_DURATION,
    ))
}

/// [`controller_credentials`], logging (not failing) when the environment is invalid, so
/// generic repositories keep working and cloud ones fail with [`CloudLoginError::NotConfigured`].
pub fn controller_credentials_or_log() -> Option<Arc<RegistryCredentials>> {
    match controller_credentials() {
        Ok(credentials) => Some(Arc::new(credentials)),
        Err(error) => {
            tracing::error!(%error, "cloud registry providers are unavailable");
            None
        }
    }
}

/// The cloud provider of `provider`; `None` for `generic`.
pub fn cloud_provider(provider: RegistryProvider) -> Option<Provider> {
    match provider {
        RegistryProvider::Generic => None,
        RegistryProvider::Aws => Some(Provider::Aws),
        RegistryProvider::Azure => Some(Provider::Azure),
        RegistryProvider::Gcp => Some(Provider::Gcp),
    }
}

/// The gate check for a cloud provider (the `ObjectLevelWorkloadIdentity` gate is off: no
/// flag turns it on yet). `for_image_policy` picks the ImagePolicy wording.
pub fn check_identity(
    spec_service_account: Option<&str>,
    for_image_policy: bool,
) -> Result<(), GateError> {
    match choose_identity(spec_service_account, None, false, for_image_policy)? {
        IdentityChoice::Controller => Ok(()),
        // Unreachable with the gate off; refuse rather than use the controller identity.
        IdentityChoice::ServiceAccount { .. } => Err(if for_image_policy {
            GateError::RepositoryServiceAccountWithoutGate
        } else {
            GateError::ServiceAccountWithoutGate
        }),
    }
}

/// The registry login for `image` as the controller, within `timeout`. The token calls go
/// through `proxy` (`spec.proxySecretRef`), as Flux sends them.
pub async fn controller_login(
    credentials: Option<&RegistryCredentials>,
    provider: Provider,
    image: &str,
    proxy: Option<&ProxyConfig>,
    timeout: Duration,
) -> Result<Credentials, CloudLoginError> {
    let Some(credentials) = credentials else {
        return Err(CloudLoginError::NotConfigured {
            provider: provider.as_str(),
        });
    };
    let login = tokio::time::timeout(
        timeout,
        credentials.registry_login_via(
            provider,
            image,
            None,
            proxy.map(ProxyConfig::url),
            |_| async { Err::<cloud_identity::Secret, _>("no service account".to_string()) },
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(cloud_identity::Error::InvalidResponse {
            provider,
            step: Step::ControllerCredentials,
            message: "timed out".to_string(),
        })
    })
    .map_err(classify)?
    .0;
    Ok(Credentials::new(login.username, login.password.expose()))
}

/// Drops the cached login after the registry refused it, so the next scan logs in afresh.
pub async fn forget_login(
    credentials: Option<&RegistryCredentials>,
    provider: Provider,
    image: &str,
    proxy: Option<&ProxyConfig>,
) {
    if let Some(credentials) = credentials {
        // A host the provider rejects has nothing cached.
        let _ = credentials
            .invalidate_via(provider, image, None, proxy.map(ProxyConfig::url))
            .await;
    }
}

fn classify(error: cloud_identity::Error) -> CloudLoginError {
    let registry_step = match &error {
        cloud_identity::Error::InvalidRegistry { .. } => true,
        cloud_identity::Error::Config { step, .. }
        | cloud_identity::Error::Transport { step, .. }
        | cloud_identity::Error::Status { step, .. }
        | cloud_identity::Error::InvalidResponse { step, .. } => {
            matches!(
                step,
                Step::EcrGetAuthorizationToken | Step::AcrExchange | Step::RegistryHost
            )
        }
        cloud_identity::Error::ServiceAccountToken { .. } => false,
    };
    if registry_step {
        CloudLoginError::RegistryCredentials(error)
    } else {
        CloudLoginError::AccessToken(error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn service_account_with_a_provider_needs_the_gate() {
        assert!(check_identity(None, false).is_ok());
        assert!(check_identity(Some(""), false).is_ok());
        assert_eq!(
            check_identity(Some("reader"), false)
                .unwrap_err()
                .to_string(),
            "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
        );
        assert!(
            check_identity(Some("reader"), true)
                .unwrap_err()
                .to_string()
                .contains("in the ImageRepository for provider authentication")
        );
    }

    #[tokio::test]
    async fn unconfigured_controller_fails_without_anonymous_fallback() {
        let e = controller_login(
            None,
            Provider::Aws,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(
            e,
            CloudLoginError::NotConfigured { provider: "aws" }
        ));
    }

    #[test]
    fn host_errors_are_registry_credential_errors() {
        let e =
            cloud_identity::registry::parse_registry(Provider::Aws, "ghcr.io", None).unwrap_err();
        assert!(classify(e).to_string().starts_with(
            "failed to create artifact registry credentials: invalid AWS registry: 'ghcr.io'"
        ));
    }
}
