//! Git credentials from a GitRepository's `spec.provider`, as Flux's image-automation
//! builds its auth options (reference cloud-identity.md §5-6):
//!
//! - `generic` (or none): the Secret's own keys; GitHub App data in it stalls
//!   (`InvalidSourceConfiguration`), since the user most likely forgot `provider: github`.
//! - `github`: a GitHub App in the `secretRef`; its installation token is sent as Basic
//!   `x-access-token:<token>` for fetch and push, replacing the Secret's username,
//!   password and bearer token. No `secretRef`, or one without App data, stalls.
//! - `azure`: an Entra token for Azure DevOps with the controller's identity (workload
//!   identity from `AZURE_*`, else IMDS), sent as Bearer.
//! - `azure` with `spec.serviceAccountName` (or `--default-service-account`): needs the
//!   `ObjectLevelWorkloadIdentity` gate (else Stalled `FeatureGateDisabled`); the
//!   ServiceAccount is read **in the ImageUpdateAutomation's namespace** (as Flux's
//!   image-automation-controller does), a token is requested for it (TokenRequest, audience
//!   `api://AzureADTokenExchange`) and exchanged at Entra for the app its
//!   `azure.workload.identity/{tenant,client}-id` annotations name.
//! - `aws` (CodeCommit) is not implemented: it stalls, saying so.
//!
//! Checking the spec ([`plan`]) is pure; only [`fetch`] calls the provider. Tokens are
//! cached process-wide for 80% of their validity (at most `--token-cache-max-duration`),
//! in caches of `--token-cache-max-size` entries, as Flux does ([`configure`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use api_types::GitRepositorySpec;
use cloud_identity::azure::{AZURE_DEVOPS_SCOPE, AccessToken, AzureClient, AzureIdentity};
use cloud_identity::cache::CacheEvent;
use cloud_identity::cache::TokenCache;
use cloud_identity::config::Environment;
use cloud_identity::github::{self, GitHubAppConfig, GitHubClient};
use cloud_identity::http::HttpClient;
use cloud_identity::login::RegistryLogin;
use cloud_identity::metrics::TokenCacheMetrics;
use cloud_identity::workload_identity::{IdentityChoice, choose_identity};
use kube_support::redact::Secrets;

use super::auth::{HttpAuth, ProxyAuth, Secret};
use super::error::GitError;

/// The flags the providers follow, set once at startup ([`configure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// `--feature-gates=ObjectLevelWorkloadIdentity=true`.
    pub object_level_workload_identity: bool,
    /// `--default-service-account`.
    pub default_service_account: Option<String>,
    /// `--token-cache-max-size` (0 disables the caches and their metrics).
    pub token_cache_max_size: usize,
    /// `--token-cache-max-duration` (capped at 1h).
    pub token_cache_max_duration: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            object_level_workload_identity: false,
            default_service_account: None,
            token_cache_max_size: cloud_identity::cache::DEFAULT_MAX_SIZE,
            token_cache_max_duration: cloud_identity::login::MAX_CACHE_DURATION,
        }
    }
}

static SETTINGS: OnceLock<ProviderSettings> = OnceLock::new();
static TOKEN_CACHE_METRICS: OnceLock<TokenCacheMetrics> = OnceLock::new();

/// Sets the process's provider settings (before any run; later calls are ignored, the
/// flags do not change while the process lives).
pub fn configure(settings: ProviderSettings) {
    let _ = SETTINGS.set(settings);
}

/// The process's provider settings (Flux's defaults until [`configure`]).
pub fn settings() -> &'static ProviderSettings {
    SETTINGS.get_or_init(ProviderSettings::default)
}

/// Registers Flux's `gotk_token_*` series on `registry` when the cache is enabled (once
/// per process: the caches are process-wide).
pub fn register_token_cache_metrics(
    registry: &prometheus::Registry,
) -> Result<(), prometheus::Error> {
    if settings().token_cache_max_size == 0 || TOKEN_CACHE_METRICS.get().is_some() {
        return Ok(());
    }
    let metrics = TokenCacheMetrics::register(registry)?;
    let _ = TOKEN_CACHE_METRICS.set(metrics);
    Ok(())
}

/// The `gotk_token_*` series, once registered.
pub fn token_cache_metrics() -> Option<&'static TokenCacheMetrics> {
    TOKEN_CACHE_METRICS.get()
}

// Where a ServiceAccount and its token are read: one trait and one API implementation for
// both services.
pub use cloud_identity::workload_identity::{BoxFuture, ServiceAccounts};
pub use kube_support::objects::KubeServiceAccounts;

/// The automation a provider login is for: where its ServiceAccount lives, its name for
/// the cache metrics, and the API to read ServiceAccounts (`None` without a cluster).
#[derive(Clone, Copy)]
pub struct ProviderContext<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub service_accounts: Option<&'a dyn ServiceAccounts>,
}

impl std::fmt::Debug for ProviderContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ProviderContext<'_> {
    fn record(&self, event: CacheEvent) {
        if let Some(metrics) = token_cache_metrics() {
            metrics.record_event(event, "ImageUpdateAutomation", self.namespace, self.name);
        }
    }
}
const GITHUB_WITHOUT_APP: &str =
    "secretRef with github app data must be specified when provider is set to github";

/// What a GitRepository's provider asks for, checked but not yet fetched.
#[derive(Debug, Clone)]
pub enum ProviderPlan {
    /// The Secret's own credentials.
    Generic,
    /// A GitHub App installation token; `cache_key` is Flux's (the key PEM hashed in).
    GitHub {
        config: Box<GitHubAppConfig>,
        cache_key: String,
    },
    /// An Entra token for Azure DevOps with the controller's identity (workload identity
    /// from `AZURE_*`, else IMDS), sent as Bearer.
    AzureDevOps,
    /// An Entra token for Azure DevOps as a ServiceAccount of the automation's namespace
    /// (`is_default`: from `--default-service-account`), sent as Bearer.
    AzureDevOpsServiceAccount { name: String, is_default: bool },
}

/// Checks the provider against the spec and its Secret (`secret` is the `secretRef`'s
/// data, already read); `namespace` is the GitRepository's. `gate_enabled` and
/// `default_service_account` are the flags ([`settings`]).
pub fn plan(
    spec: &GitRepositorySpec,
    namespace: &str,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    gate_enabled: bool,
    default_service_account: Option<&str>,
) -> Result<ProviderPlan, GitError> {
    let secret_name = spec
        .secret_ref
        .as_ref()
        .map(|r| format!("{namespace}/{}", r.name))
        .unwrap_or_default();
    let has_app_data = secret.is_some_and(|data| {
        data.get(github::APP_ID_KEY)
            .is_some_and(|id| !id.is_empty())
    });
    match spec.provider.as_deref().unwrap_or("generic") {
        "" | "generic" => {
            if has_app_data {
                return Err(GitError::InvalidProviderConfig(format!(
                    "secretRef '{secret_name}' has github app data but provider is not set to github"
                )));
            }
            Ok(ProviderPlan::Generic)
        }
        "github" => {
            let Some(data) = secret.filter(|data| has_any_app_key(data)) else {
                return Err(GitError::InvalidProviderConfig(GITHUB_WITHOUT_APP.into()));
            };
            let config = GitHubAppConfig::from_secret_data(data, &secret_name)
                .map_err(|e| GitError::ProviderCredentials(e.to_string()))?;
            Ok(ProviderPlan::GitHub {
                config: Box::new(config),
                cache_key: github::cache_key(data),
            })
        }
        provider @ ("azure" | "aws") => {
            let identity = choose_identity(
                spec.service_account_name.as_deref(),
                default_service_account,
                gate_enabled,
                false,
            )
            .map_err(|e| GitError::FeatureGateDisabled(e.to_string()))?;
            match (provider, identity) {
                ("azure", IdentityChoice::Controller) => Ok(ProviderPlan::AzureDevOps),
                ("azure", IdentityChoice::ServiceAccount { name, is_default }) => {
                    Ok(ProviderPlan::AzureDevOpsServiceAccount { name, is_default })
                }
                _ => Err(GitError::Unsupported(format!(
                    "GitRepository provider '{provider}' is not implemented yet (generic, github and azure are)"
                ))),
            }
        }
        other => Err(GitError::InvalidProviderConfig(format!(
            "unsupported GitRepository provider '{other}' (generic, github, azure or aws)"
        ))),
    }
}

fn has_any_app_key(data: &BTreeMap<String, Vec<u8>>) -> bool {
    [
        github::APP_ID_KEY,
        github::INSTALLATION_ID_KEY,
        github::INSTALLATION_OWNER_KEY,
        github::PRIVATE_KEY_KEY,
    ]
    .iter()
    .any(|key| data.contains_key(*key))
}

fn new_cache<V: Clone>() -> TokenCache<V> {
    let settings = settings();
    TokenCache::new(
        settings.token_cache_max_size,
        settings.token_cache_max_duration,
    )
    .with_metrics(token_cache_metrics().cloned())
}

/// Installation tokens, process-wide.
fn github_tokens() -> &'static TokenCache<RegistryLogin> {
    static CACHE: OnceLock<TokenCache<RegistryLogin>> = OnceLock::new();
    CACHE.get_or_init(new_cache)
}

/// Azure DevOps tokens, process-wide.
fn azure_tokens() -> &'static TokenCache<AccessToken> {
    static CACHE: OnceLock<TokenCache<AccessToken>> = OnceLock::new();
    CACHE.get_or_init(new_cache)
}

/// The provider's credentials for Git over HTTP(S), or `None` for `generic`. The token
/// calls go through the GitRepository's proxy, as Flux's do.
pub(crate) async fn fetch(
    plan: &ProviderPlan,
    proxy: Option<&ProxyAuth>,
    context: &ProviderContext<'_>,
) -> Result<Option<HttpAuth>, GitError> {
    match plan {
        ProviderPlan::Generic => Ok(None),
        ProviderPlan::GitHub { config, cache_key } => {
            github_credentials(config, cache_key, proxy, context)
                .await
                .map(Some)
        }
        ProviderPlan::AzureDevOps => {
            let env = Environment::from_env()
                .map_err(|e| GitError::ProviderCredentials(e.to_string()))?;
            azure_devops_credentials(&env, proxy, None, context)
                .await
                .map(Some)
        }
        ProviderPlan::AzureDevOpsServiceAccount { name, is_default } => {
            let env = Environment::from_env()
                .map_err(|e| GitError::ProviderCredentials(e.to_string()))?;
            let sa = read_service_account(context, name, *is_default).await?;
            azure_devops_credentials(&env, proxy, Some(&sa), context)
                .await
                .map(Some)
        }
    }
}

/// A ServiceAccount of the automation's namespace, with its Azure identity annotations.
struct ServiceAccountIdentity<'a> {
    namespace: &'a str,
    name: &'a str,
    tenant_id: String,
    client_id: String,
}

async fn read_service_account<'a>(
    context: &ProviderContext<'a>,
    name: &'a str,
    is_default: bool,
) -> Result<ServiceAccountIdentity<'a>, GitError> {
    let namespace = context.namespace;
    let failed = |detail: String| {
        GitError::ProviderCredentials(format!(
            "failed to get service account '{namespace}/{name}': {detail}"
        ))
    };
    let Some(api) = context.service_accounts else {
        return Err(failed(
            "object-level workload identity needs the Kubernetes mode".to_string(),
        ));
    };
    let annotations = match api.annotations(namespace, name).await.map_err(failed)? {
        Some(annotations) => annotations,
        None if is_default => {
            return Err(GitError::ProviderCredentials(
                cloud_identity::workload_identity::DEFAULT_SERVICE_ACCOUNT_MISSING.to_string(),
            ));
        }
        None => return Err(failed(format!("serviceaccounts \"{name}\" not found"))),
    };
    let (tenant_id, client_id) =
        cloud_identity::azure::identity_from_annotations(&annotations).map_err(|e| {
            GitError::ProviderCredentials(format!(
                "failed to get provider identity from service account '{namespace}/{name}' annotations: {e}"
            ))
        })?;
    Ok(ServiceAccountIdentity {
        namespace,
        name,
        tenant_id,
        client_id,
    })
}

fn proxy_scrubber(proxy: Option<&ProxyAuth>) -> impl Fn(String) -> String + '_ {
    move |text: String| match proxy.and_then(|p| p.credentials.as_ref()) {
        Some((user, password)) => Secrets::new()
            .with_basic(user, password.expose())
            .scrub(&text),
        None => text,
    }
}

/// A provider's answer as the token caches keep it: with its expiry, or the error with the
/// proxy credentials scrubbed.
fn cacheable<T, E: std::fmt::Display>(
    answer: Result<T, E>,
    expires_at: impl Fn(&T) -> std::time::SystemTime,
    scrub: &impl Fn(String) -> String,
) -> Result<(T, std::time::SystemTime), GitError> {
    let answer = answer.map_err(|e| GitError::ProviderCredentials(scrub(e.to_string())))?;
    let expiry = expires_at(&answer);
    Ok((answer, expiry))
}

fn http_client(proxy: Option<&ProxyAuth>, provider: &str) -> Result<HttpClient, GitError> {
    let proxy_url = match proxy {
        Some(proxy) => Some(
            reqwest::Url::parse(proxy.url_with_credentials().expose()).map_err(|_| {
                GitError::ProviderCredentials("the proxy address is not a URL".into())
            })?,
        ),
        None => None,
    };
    HttpClient::new(proxy_url.as_ref()).map_err(|_| {
        GitError::ProviderCredentials(format!(
            "{provider}: building the HTTP client for the token calls failed"
        ))
    })
}

/// An Entra token for Azure DevOps' scope, as Bearer (never Basic). The cache key is
/// Flux's access-token key: provider and scope (and the proxy when there is one).
async fn azure_devops_credentials(
    env: &Environment,
    proxy: Option<&ProxyAuth>,
    service_account: Option<&ServiceAccountIdentity<'_>>,
    context: &ProviderContext<'_>,
) -> Result<HttpAuth, GitError> {
    let scrub = proxy_scrubber(proxy);
    let proxy_address = proxy.map(|p| p.address.clone()).unwrap_or_default();
    let identity = service_account
        .map(|sa| format!("{}/{}", sa.tenant_id, sa.client_id))
        .unwrap_or_default();
    // Flux's access-token key: provider, audiences, the ServiceAccount's identity, name and
    // namespace, then the scope and the proxy.
    let mut parts = vec![("provider", "azure")];
    if let Some(sa) = service_account {
        parts.extend([
            ("audiences", cloud_identity::azure::TOKEN_AUDIENCE),
            ("providerIdentity", identity.as_str()),
            ("serviceAccountName", sa.name),
            ("serviceAccountNamespace", sa.namespace),
        ]);
    }
    parts.push(("scopes", AZURE_DEVOPS_SCOPE));
    if !proxy_address.is_empty() {
        parts.push(("proxyURL", proxy_address.as_str()));
    }
    let key = cloud_identity::cache::cache_key(&parts);
    let (token, event) = azure_tokens()
        .get_or_fetch(&key, || async {
            let azure_identity = match service_account {
                None => AzureIdentity::Controller,
                Some(sa) => AzureIdentity::ServiceAccount {
                    tenant_id: sa.tenant_id.clone(),
                    client_id: sa.client_id.clone(),
                    token: mint_token(context, sa).await?,
                },
            };
            let client = AzureClient::new(
                http_client(proxy, "azure")?,
                env.endpoints.clone(),
                env.azure.clone(),
            );
            let token = client
                .access_token(AZURE_DEVOPS_SCOPE, &azure_identity)
                .await;
            cacheable(token, |t| t.expires_at, &scrub)
        })
        .await?;
    context.record(event);
    Ok(HttpAuth::Bearer(Secret::new(token.token.expose())))
}

/// The ServiceAccount's token for Entra's federated credential (TokenRequest).
async fn mint_token(
    context: &ProviderContext<'_>,
    sa: &ServiceAccountIdentity<'_>,
) -> Result<cloud_identity::Secret, GitError> {
    let failed = |detail: String| {
        GitError::ProviderCredentials(format!(
            "failed to create kubernetes token for service account '{}/{}': {detail}",
            sa.namespace, sa.name
        ))
    };
    let api = context
        .service_accounts
        .ok_or_else(|| failed("no Kubernetes API".to_string()))?;
    api.token(
        sa.namespace,
        sa.name,
        vec![cloud_identity::azure::TOKEN_AUDIENCE.to_string()],
    )
    .await
    .map_err(failed)
}

/// A GitHub App installation token as Basic `x-access-token:<token>`.
async fn github_credentials(
    config: &GitHubAppConfig,
    cache_key: &str,
    proxy: Option<&ProxyAuth>,
    context: &ProviderContext<'_>,
) -> Result<HttpAuth, GitError> {
    // Proxy credentials may appear in a transport error's text: scrubbed like git's.
    let scrub = proxy_scrubber(proxy);
    let (login, event) = github_tokens()
        .get_or_fetch(cache_key, || async {
            let http = http_client(proxy, "github")?;
            let login = GitHubClient::new(http).installation_token(config).await;
            cacheable(login, |l| l.expires_at, &scrub)
        })
        .await?;
    context.record(event);
    Ok(HttpAuth::Basic {
        username: login.username,
        password: Secret::new(login.password.expose()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: Option<&str>, secret_ref: bool) -> GitRepositorySpec {
        GitRepositorySpec {
            url: "https://git.example/r.git".into(),
            provider: provider.map(Into::into),
            secret_ref: secret_ref
                .then(|| api_types::meta::LocalObjectReference { name: "s".into() }),
            ..GitRepositorySpec::default()
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn generic_keeps_the_secret_unless_it_holds_an_app_id() {
        let basic = data(&[("username", "u"), ("password", "p")]);
        for provider in [None, Some(""), Some("generic")] {
            assert!(matches!(
                plan(&spec(provider, true), "ns", Some(&basic), false, None),
                Ok(ProviderPlan::Generic)
            ));
        }
        // An empty githubAppID is no App data (Flux checks the length).
        let empty = data(&[("githubAppID", "")]);
        assert!(matches!(
            plan(&spec(None, true), "ns", Some(&empty), false, None),
            Ok(ProviderPlan::Generic)
        ));
        let app = data(&[("githubAppID", "1")]);
        let err = plan(&spec(None, true), "ns", Some(&app), false, None).unwrap_err();
        assert!(err.is_stall());
        assert_eq!(err.flux_reason(), "InvalidSourceConfiguration");
        assert_eq!(
            err.to_string(),
            "secretRef 'ns/s' has github app data but provider is not set to github"
        );
    }

    #[test]
    fn cloud_providers_check_the_gate_then_say_what_is_missing() {
        let mut with_sa = spec(Some("aws"), false);
        with_sa.service_account_name = Some("sa".into());
        let err = plan(&with_sa, "ns", None, false, None).unwrap_err();
        assert_eq!(err.flux_reason(), "FeatureGateDisabled");
        assert!(err.is_stall());
        let err = plan(&with_sa, "ns", None, true, None).unwrap_err();
        assert_eq!(err.flux_reason(), "InvalidSourceConfiguration");
        assert!(
            err.to_string().contains("'aws' is not implemented"),
            "{err}"
        );
        let err = plan(&spec(Some("gitlab"), false), "ns", None, false, None).unwrap_err();
        assert!(err.is_stall());
        assert!(
            err.to_string()
                .contains("unsupported GitRepository provider 'gitlab'")
        );
    }

    #[test]
    fn azure_with_the_gate_uses_the_service_account_or_the_default() {
        let mut with_sa = spec(Some("azure"), false);
        with_sa.service_account_name = Some("devops".into());
        assert!(matches!(
            plan(&with_sa, "ns", None, true, Some("fallback")),
            Ok(ProviderPlan::AzureDevOpsServiceAccount { name, is_default: false }) if name == "devops"
        ));
        assert!(matches!(
            plan(&spec(Some("azure"), false), "ns", None, true, Some("fallback")),
            Ok(ProviderPlan::AzureDevOpsServiceAccount { name, is_default: true }) if name == "fallback"
        ));
        // CodeCommit stays unsupported whatever the identity.
        let err = plan(
            &spec(Some("aws"), false),
            "ns",
            None,
            true,
            Some("fallback"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("'aws' is not implemented"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn service_account_errors_name_it_and_the_lockdown() {
        let context = ProviderContext {
            namespace: "team",
            name: "auto",
            service_accounts: None,
        };
        let Err(err) = read_service_account(&context, "devops", false).await else {
            panic!("no API: must fail");
        };
        assert!(
            err.to_string()
                .contains("failed to get service account 'team/devops': object-level workload identity needs the Kubernetes mode"),
            "{err}"
        );
    }

    #[test]
    fn app_data_errors_are_retried_not_stalled() {
        let partial = data(&[("githubAppID", "1"), ("githubAppInstallationID", "2")]);
        let err = plan(
            &spec(Some("github"), true),
            "ns",
            Some(&partial),
            false,
            None,
        )
        .unwrap_err();
        assert!(!err.is_stall());
        assert_eq!(err.flux_reason(), "SourceManagerFailed");
        assert!(
            err.to_string()
                .starts_with("failed to configure authentication options: "),
            "{err}"
        );
    }

    /// A local Entra token endpoint for the workload-identity flow: checks the grant, the
    /// client, the assertion (the federated token file's content) and Azure DevOps' scope.
    async fn entra_fake(requests: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> reqwest::Url {
        use axum::http::StatusCode;
        let app = axum::Router::new().route(
            "/tenant-1/oauth2/v2.0/token",
            axum::routing::post(move |body: String| async move {
                requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let form: BTreeMap<String, String> =
                    reqwest::Url::parse(&format!("http://form/?{body}"))
                        .unwrap()
                        .query_pairs()
                        .into_owned()
                        .collect();
                let field = |k: &str| form.get(k).map(String::as_str);
                let scope_ok =
                    field("scope").is_some_and(|s| s.split(' ').any(|s| s == AZURE_DEVOPS_SCOPE));
                if field("grant_type") != Some("client_credentials")
                    || field("client_id") != Some("client-1")
                    || field("client_assertion") != Some("k8s-sa-token")
                    || !scope_ok
                {
                    return (StatusCode::UNAUTHORIZED, format!("refused: {form:?}"));
                }
                let answer = serde_json::json!({
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "access_token": "entra-devops-token",
                });
                (StatusCode::OK, answer.to_string())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        reqwest::Url::parse(&format!("http://{addr}/")).unwrap()
    }

    #[tokio::test]
    async fn azure_devops_token_is_a_cached_bearer() {
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let authority = entra_fake(requests.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("azure-token");
        std::fs::write(&token_file, "k8s-sa-token").unwrap();
        let vars = BTreeMap::from([
            ("AZURE_TENANT_ID", "tenant-1".to_string()),
            ("AZURE_CLIENT_ID", "client-1".to_string()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AZURE_AUTHORITY_HOST", authority.to_string()),
        ]);
        let env = Environment::from_lookup(|name| vars.get(name).cloned()).unwrap();
        assert!(matches!(
            plan(&spec(Some("azure"), false), "ns", None, false, None),
            Ok(ProviderPlan::AzureDevOps)
        ));
        let context = ProviderContext {
            namespace: "ns",
            name: "auto",
            service_accounts: None,
        };
        let auth = azure_devops_credentials(&env, None, None, &context)
            .await
            .unwrap();
        assert!(matches!(&auth, HttpAuth::Bearer(t) if t.expose() == "entra-devops-token"));
        azure_devops_credentials(&env, None, None, &context)
            .await
            .unwrap();
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);

        // With a proxy (part of the cache key) that is not listening, the call fails
        // cleanly, retried, and its text holds neither the assertion nor proxy secrets.
        let proxy = ProxyAuth {
            address: "http://127.0.0.1:9".into(),
            credentials: Some(("proxy-user".into(), Secret::new("proxy-pass-1234"))),
        };
        let Err(err) = azure_devops_credentials(&env, Some(&proxy), None, &context).await else {
            panic!("a dead proxy must fail");
        };
        assert_eq!(err.flux_reason(), "SourceManagerFailed");
        let text = err.to_string();
        assert!(
            text.starts_with("failed to configure authentication options: azure"),
            "{text}"
        );
        assert!(
            !text.contains("k8s-sa-token") && !text.contains("proxy-pass-1234"),
            "{text}"
        );
    }
}
