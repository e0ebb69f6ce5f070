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
//! - `azure`, `aws`: `spec.serviceAccountName` needs the `ObjectLevelWorkloadIdentity` gate
//!   (Stalled `FeatureGateDisabled`); object identities and `aws` (CodeCommit) are not
//!   implemented yet (they stall, saying so).
//!
//! Checking the spec ([`plan`]) is pure; only [`fetch`] calls the provider. Tokens are
//! cached per App for 80% of their validity (at most an hour), process-wide, as Flux does.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use api_types::GitRepositorySpec;
use cloud_identity::azure::{AZURE_DEVOPS_SCOPE, AccessToken, AzureClient, AzureIdentity};
use cloud_identity::cache::TokenCache;
use cloud_identity::config::Environment;
use cloud_identity::github::{self, GitHubAppConfig, GitHubClient};
use cloud_identity::http::HttpClient;
use cloud_identity::login::RegistryLogin;
use kube_support::redact::Secrets;

use super::auth::{HttpAuth, ProxyAuth, Secret};
use super::error::GitError;

/// Flux's `ObjectLevelWorkloadIdentity` gate. It is off by default in Flux and this
/// controller has no flag for it yet, so a `serviceAccountName` always stalls.
pub const OBJECT_LEVEL_WORKLOAD_IDENTITY: bool = false;

const GATE_MESSAGE: &str = "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller";
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
}

/// Checks the provider against the spec and its Secret (`secret` is the `secretRef`'s
/// data, already read); `namespace` is the GitRepository's.
pub fn plan(
    spec: &GitRepositorySpec,
    namespace: &str,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    gate_enabled: bool,
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
            let wants_service_account = spec
                .service_account_name
                .as_deref()
                .is_some_and(|n| !n.is_empty());
            if wants_service_account && !gate_enabled {
                return Err(GitError::FeatureGateDisabled(GATE_MESSAGE.into()));
            }
            match (provider, wants_service_account) {
                ("azure", false) => Ok(ProviderPlan::AzureDevOps),
                ("azure", true) => Err(GitError::Unsupported(
                    "GitRepository provider 'azure' with spec.serviceAccountName is not implemented yet (the controller identity is)".into(),
                )),
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

/// Installation tokens, process-wide (Flux's default size; an hour at most).
fn github_tokens() -> &'static TokenCache<RegistryLogin> {
    static CACHE: OnceLock<TokenCache<RegistryLogin>> = OnceLock::new();
    CACHE.get_or_init(|| {
        TokenCache::new(
            cloud_identity::cache::DEFAULT_MAX_SIZE,
            Duration::from_secs(3600),
        )
    })
}

/// Azure DevOps tokens, process-wide.
fn azure_tokens() -> &'static TokenCache<AccessToken> {
    static CACHE: OnceLock<TokenCache<AccessToken>> = OnceLock::new();
    CACHE.get_or_init(|| {
        TokenCache::new(
            cloud_identity::cache::DEFAULT_MAX_SIZE,
            Duration::from_secs(3600),
        )
    })
}

/// The provider's credentials for Git over HTTP(S), or `None` for `generic`. The token
/// calls go through the GitRepository's proxy, as Flux's do.
pub(crate) async fn fetch(
    plan: &ProviderPlan,
    proxy: Option<&ProxyAuth>,
) -> Result<Option<HttpAuth>, GitError> {
    match plan {
        ProviderPlan::Generic => Ok(None),
        ProviderPlan::GitHub { config, cache_key } => {
            github_credentials(config, cache_key, proxy).await.map(Some)
        }
        ProviderPlan::AzureDevOps => {
            let env = Environment::from_env()
                .map_err(|e| GitError::ProviderCredentials(e.to_string()))?;
            azure_devops_credentials(&env, proxy).await.map(Some)
        }
    }
}

fn proxy_scrubber(proxy: Option<&ProxyAuth>) -> impl Fn(String) -> String + '_ {
    move |text: String| match proxy.and_then(|p| p.credentials.as_ref()) {
        Some((user, password)) => Secrets::new()
            .with_basic(user, password.expose())
            .scrub(&text),
        None => text,
    }
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
) -> Result<HttpAuth, GitError> {
    let scrub = proxy_scrubber(proxy);
    let proxy_address = proxy.map(|p| p.address.clone()).unwrap_or_default();
    let mut parts = vec![("provider", "azure"), ("scopes", AZURE_DEVOPS_SCOPE)];
    if !proxy_address.is_empty() {
        parts.push(("proxyURL", proxy_address.as_str()));
    }
    let key = cloud_identity::cache::cache_key(&parts);
    let (token, _event) = azure_tokens()
        .get_or_fetch(&key, || async {
            let client = AzureClient::new(
                http_client(proxy, "azure")?,
                env.endpoints.clone(),
                env.azure.clone(),
            );
            let token = client
                .access_token(AZURE_DEVOPS_SCOPE, &AzureIdentity::Controller)
                .await
                .map_err(|e| GitError::ProviderCredentials(scrub(e.to_string())))?;
            let expires_at = token.expires_at;
            Ok::<_, GitError>((token, expires_at))
        })
        .await?;
    Ok(HttpAuth::Bearer(Secret::new(token.token.expose())))
}

/// A GitHub App installation token as Basic `x-access-token:<token>`.
async fn github_credentials(
    config: &GitHubAppConfig,
    cache_key: &str,
    proxy: Option<&ProxyAuth>,
) -> Result<HttpAuth, GitError> {
    // Proxy credentials may appear in a transport error's text: scrubbed like git's.
    let scrub = proxy_scrubber(proxy);
    let (login, _event) = github_tokens()
        .get_or_fetch(cache_key, || async {
            let http = http_client(proxy, "github")?;
            let login = GitHubClient::new(http)
                .installation_token(config)
                .await
                .map_err(|e| GitError::ProviderCredentials(scrub(e.to_string())))?;
            let expires_at = login.expires_at;
            Ok::<_, GitError>((login, expires_at))
        })
        .await?;
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
                plan(&spec(provider, true), "ns", Some(&basic), false),
                Ok(ProviderPlan::Generic)
            ));
        }
        // An empty githubAppID is no App data (Flux checks the length).
        let empty = data(&[("githubAppID", "")]);
        assert!(matches!(
            plan(&spec(None, true), "ns", Some(&empty), false),
            Ok(ProviderPlan::Generic)
        ));
        let app = data(&[("githubAppID", "1")]);
        let err = plan(&spec(None, true), "ns", Some(&app), false).unwrap_err();
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
        let err = plan(&with_sa, "ns", None, false).unwrap_err();
        assert_eq!(err.flux_reason(), "FeatureGateDisabled");
        assert!(err.is_stall());
        let err = plan(&with_sa, "ns", None, true).unwrap_err();
        assert_eq!(err.flux_reason(), "InvalidSourceConfiguration");
        assert!(
            err.to_string().contains("'aws' is not implemented"),
            "{err}"
        );
        let err = plan(&spec(Some("gitlab"), false), "ns", None, false).unwrap_err();
        assert!(err.is_stall());
        assert!(
            err.to_string()
                .contains("unsupported GitRepository provider 'gitlab'")
        );
    }

    #[test]
    fn app_data_errors_are_retried_not_stalled() {
        let partial = data(&[("githubAppID", "1"), ("githubAppInstallationID", "2")]);
        let err = plan(&spec(Some("github"), true), "ns", Some(&partial), false).unwrap_err();
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
            plan(&spec(Some("azure"), false), "ns", None, false),
            Ok(ProviderPlan::AzureDevOps)
        ));
        let auth = azure_devops_credentials(&env, None).await.unwrap();
        assert!(matches!(&auth, HttpAuth::Bearer(t) if t.expose() == "entra-devops-token"));
        azure_devops_credentials(&env, None).await.unwrap();
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);

        // With a proxy (part of the cache key) that is not listening, the call fails
        // cleanly, retried, and its text holds neither the assertion nor proxy secrets.
        let proxy = ProxyAuth {
            address: "http://127.0.0.1:9".into(),
            credentials: Some(("proxy-user".into(), Secret::new("proxy-pass-1234"))),
        };
        let Err(err) = azure_devops_credentials(&env, Some(&proxy)).await else {
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
