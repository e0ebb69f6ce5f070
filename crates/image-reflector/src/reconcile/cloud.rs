//! Cloud registry logins for `spec.provider: aws|gcp|azure` (reference cloud-identity §1):
//! the login replaces static credentials, runs lazily (only when a request needs it) and is
//! cached by [`RegistryCredentials`] per identity and registry.
//!
//! The identity is the controller's, or with the `ObjectLevelWorkloadIdentity` gate the
//! object's ServiceAccount (`spec.serviceAccountName`, else `--default-service-account`),
//! whose token comes from a Kubernetes TokenRequest (§1.1).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::RegistryProvider;
use cloud_identity::config::Environment;
use cloud_identity::http::HttpClient;
use cloud_identity::metrics::TokenCacheMetrics;
use cloud_identity::workload_identity::{
    DEFAULT_SERVICE_ACCOUNT_MISSING, GateError, IdentityChoice, choose_identity,
};
use cloud_identity::{Provider, RegistryCredentials, ServiceAccountRef, Step};

use super::Deps;
use crate::registry::Credentials;
use crate::registry::transport::ProxyConfig;

/// Flux's `--token-cache-max-size` default.
pub const TOKEN_CACHE_MAX_SIZE: usize = 100;

/// What a mode without the Kubernetes API answers when asked for a ServiceAccount token.
pub const NO_OBJECT_IDENTITY: &str = "object-level workload identity needs the Kubernetes mode (ServiceAccount tokens come from the API server)";

/// `--feature-gates=ObjectLevelWorkloadIdentity=true` and `--default-service-account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadIdentity {
    pub gate: bool,
    /// Set once at startup from the flag (hence `'static`, so `Options` stays `Copy`).
    pub default_service_account: Option<&'static str>,
}

/// `--token-cache-max-size` (0 disables) and `--token-cache-max-duration` (capped at 1h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheSettings {
    pub max_size: usize,
    pub max_duration: Duration,
}

impl Default for TokenCacheSettings {
    fn default() -> Self {
        Self {
            max_size: TOKEN_CACHE_MAX_SIZE,
            max_duration: cloud_identity::login::MAX_CACHE_DURATION,
        }
    }
}

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
    /// Obtaining the provider's access token for the object's ServiceAccount failed.
    #[error(
        "failed to get access token for artifact registry: failed to create provider access token for service account '{service_account}': {source}"
    )]
    ServiceAccountAccessToken {
        /// `<namespace>/<name>`.
        service_account: String,
        #[source]
        source: cloud_identity::Error,
    },
    /// The Kubernetes TokenRequest for the ServiceAccount failed.
    #[error("failed to get access token for artifact registry: {0}")]
    ServiceAccountToken(#[source] cloud_identity::Error),
    /// The ServiceAccount could not be read (or does not exist).
    #[error(
        "failed to get access token for artifact registry: failed to get service account '{namespace}/{name}': {detail}"
    )]
    ServiceAccount {
        namespace: String,
        name: String,
        detail: String,
    },
    /// `--default-service-account` names a ServiceAccount the namespace lacks.
    #[error("failed to get access token for artifact registry: {DEFAULT_SERVICE_ACCOUNT_MISSING}")]
    DefaultServiceAccountMissing,
    /// The host check or the registry exchange (ECR token, ACR exchange) failed.
    #[error("failed to create artifact registry credentials: {0}")]
    RegistryCredentials(#[source] cloud_identity::Error),
}

/// The controller's registry logins, from the process environment (IRSA, Pod Identity, GKE
/// metadata, Azure workload identity, IMDS; endpoints overridable as documented).
pub fn controller_credentials(
    cache: TokenCacheSettings,
    metrics: Option<TokenCacheMetrics>,
) -> Result<RegistryCredentials, CloudSetupError> {
    let env = Environment::from_env().map_err(CloudSetupError::Environment)?;
    let http = HttpClient::new(None).map_err(CloudSetupError::Http)?;
    Ok(
        RegistryCredentials::new(env, http, cache.max_size, cache.max_duration)
            .with_metrics(metrics),
    )
}

/// [`controller_credentials`], logging (not failing) when the environment is invalid, so
/// generic repositories keep working and cloud ones fail with [`CloudLoginError::NotConfigured`].
pub fn controller_credentials_or_log(
    cache: TokenCacheSettings,
    metrics: Option<TokenCacheMetrics>,
) -> Option<Arc<RegistryCredentials>> {
    match controller_credentials(cache, metrics) {
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

/// Which identity a cloud provider login uses, or the gate error (Stalled
/// `FeatureGateDisabled`). `for_image_policy` picks the ImagePolicy wording.
pub fn check_identity(
    identity: WorkloadIdentity,
    spec_service_account: Option<&str>,
    for_image_policy: bool,
) -> Result<IdentityChoice, GateError> {
    choose_identity(
        spec_service_account,
        identity.default_service_account,
        identity.gate,
        for_image_policy,
    )
}

/// The object a login is for: its kind, namespace (where its ServiceAccount lives) and
/// name (for the cache event metrics).
#[derive(Debug, Clone, Copy)]
pub struct LoginFor<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A ServiceAccount read for a login, kept to drop that login if the registry refuses it.
#[derive(Debug, Clone)]
pub struct ServiceAccountData {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

impl ServiceAccountData {
    fn as_ref(&self) -> ServiceAccountRef<'_> {
        ServiceAccountRef {
            name: &self.name,
            namespace: &self.namespace,
            annotations: &self.annotations,
        }
    }
}

/// The registry login for `image` as `identity` (the controller, or the ServiceAccount in
/// `object.namespace`), within `timeout`; records the cache hit or miss for `object`.
pub async fn login(
    deps: &Deps,
    provider: Provider,
    identity: &IdentityChoice,
    image: &str,
    proxy: Option<&ProxyConfig>,
    timeout: Duration,
    object: LoginFor<'_>,
) -> Result<(Credentials, Option<ServiceAccountData>), CloudLoginError> {
    let Some(credentials) = deps.cloud.as_deref() else {
        return Err(CloudLoginError::NotConfigured {
            provider: provider.as_str(),
        });
    };
    let timed_out = || cloud_identity::Error::InvalidResponse {
        provider,
        step: Step::ControllerCredentials,
        message: "timed out".to_string(),
    };
    let attempt = async {
        let service_account = match identity {
            IdentityChoice::Controller => None,
            IdentityChoice::ServiceAccount { name, is_default } => {
                Some(read_service_account(deps, object.namespace, name, *is_default).await?)
            }
        };
        let result = credentials
            .registry_login_via(
                provider,
                image,
                service_account.as_ref().map(ServiceAccountData::as_ref),
                proxy.map(ProxyConfig::url),
                |audiences| {
                    let sa = service_account.clone();
                    async move {
                        let (Some(sa), Some(api)) = (sa, deps.objects.service_accounts()) else {
                            return Err(NO_OBJECT_IDENTITY.to_string());
                        };
                        api.token(&sa.namespace, &sa.name, audiences).await
                    }
                },
            )
            .await;
        Ok::<_, CloudLoginError>((result, service_account))
    };
    let (result, service_account) = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(e),
        Err(_) => (Err(timed_out()), None),
    };
    let (login, event) = result.map_err(|e| classify(e, service_account.as_ref()))?;
    if let Some(metrics) = credentials.metrics() {
        metrics.record_event(event, object.kind, object.namespace, object.name);
    }
    Ok((
        Credentials::new(login.username, login.password.expose()),
        service_account,
    ))
}

async fn read_service_account(
    deps: &Deps,
    namespace: &str,
    name: &str,
    is_default: bool,
) -> Result<ServiceAccountData, CloudLoginError> {
    let failed = |detail: String| CloudLoginError::ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
        detail,
    };
    let api = deps
        .objects
        .service_accounts()
        .ok_or_else(|| failed(NO_OBJECT_IDENTITY.to_string()))?;
    let found = api.annotations(namespace, name).await.map_err(failed)?;
    match found {
        Some(annotations) => Ok(ServiceAccountData {
            namespace: namespace.to_string(),
            name: name.to_string(),
            annotations,
        }),
        None if is_default => Err(CloudLoginError::DefaultServiceAccountMissing),
        None => Err(CloudLoginError::ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
            detail: format!("serviceaccounts \"{name}\" not found"),
        }),
    }
}

/// Drops the cached login after the registry refused it, so the next scan logs in afresh.
pub async fn forget_login(
    credentials: Option<&RegistryCredentials>,
    provider: Provider,
    image: &str,
    service_account: Option<&ServiceAccountData>,
    proxy: Option<&ProxyConfig>,
) {
    if let Some(credentials) = credentials {
        // A host the provider rejects has nothing cached.
        let _ = credentials
            .invalidate_via(
                provider,
                image,
                service_account.map(ServiceAccountData::as_ref),
                proxy.map(ProxyConfig::url),
            )
            .await;
    }
}

fn classify(
    error: cloud_identity::Error,
    service_account: Option<&ServiceAccountData>,
) -> CloudLoginError {
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
        return CloudLoginError::RegistryCredentials(error);
    }
    match service_account {
        None => CloudLoginError::AccessToken(error),
        Some(_) if matches!(error, cloud_identity::Error::ServiceAccountToken { .. }) => {
            CloudLoginError::ServiceAccountToken(error)
        }
        Some(sa) => CloudLoginError::ServiceAccountAccessToken {
            service_account: format!("{}/{}", sa.namespace, sa.name),
            source: error,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn service_account_with_a_provider_needs_the_gate() {
        let off = WorkloadIdentity::default();
        assert_eq!(
            check_identity(off, None, false),
            Ok(IdentityChoice::Controller)
        );
        assert_eq!(
            check_identity(off, Some(""), false),
            Ok(IdentityChoice::Controller)
        );
        let on = WorkloadIdentity {
            gate: true,
            default_service_account: Some("flux-default"),
        };
        assert_eq!(
            check_identity(on, None, false),
            Ok(IdentityChoice::ServiceAccount {
                name: "flux-default".into(),
                is_default: true
            })
        );
        assert_eq!(
            check_identity(off, Some("reader"), false)
                .unwrap_err()
                .to_string(),
            "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
        );
        assert!(
            check_identity(off, Some("reader"), true)
                .unwrap_err()
                .to_string()
                .contains("in the ImageRepository for provider authentication")
        );
    }

    #[tokio::test]
    async fn unconfigured_controller_fails_without_anonymous_fallback() {
        let fixture = crate::reconcile::testing::Fixture::new();
        let e = login(
            &fixture.deps(),
            Provider::Aws,
            &IdentityChoice::Controller,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            None,
            Duration::from_secs(1),
            LoginFor {
                kind: "ImageRepository",
                namespace: "apps",
                name: "app",
            },
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
        assert!(classify(e, None).to_string().starts_with(
            "failed to create artifact registry credentials: invalid AWS registry: 'ghcr.io'"
        ));
    }

    #[test]
    fn service_account_failures_name_the_service_account_as_flux_does() {
        let sa = ServiceAccountData {
            namespace: "apps".into(),
            name: "reader".into(),
            annotations: BTreeMap::new(),
        };
        let annotations = BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_string(),
            "not-an-arn".to_string(),
        )]);
        let e = cloud_identity::aws::role_arn_from_annotations(&annotations).unwrap_err();
        assert!(classify(e, Some(&sa)).to_string().starts_with(
            "failed to get access token for artifact registry: failed to create provider access token for service account 'apps/reader': aws: "
        ));
        let e = cloud_identity::Error::ServiceAccountToken {
            provider: Provider::Aws,
            namespace: "apps".into(),
            name: "reader".into(),
            message: "forbidden".into(),
        };
        assert_eq!(
            classify(e, Some(&sa)).to_string(),
            "failed to get access token for artifact registry: aws: failed to create kubernetes token for service account 'apps/reader': forbidden"
        );
    }
}
