//! The entry point for the services: a registry login for `spec.provider` and `spec.image`,
//! as the controller or as the object's ServiceAccount, cached per identity and registry.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::aws::{self, AwsClient, AwsIdentity};
use crate::azure::{self, AzureClient, AzureIdentity};
use crate::cache::{CacheEvent, TokenCache, cache_key, registry_credential_key};
use crate::config::Environment;
use crate::error::{Error, Provider, Result};
use crate::gcp::{self, GcpClient, GcpServiceAccountIdentity, GkeCluster};
use crate::http::HttpClient;
use crate::login::RegistryLogin;
use crate::metrics::TokenCacheMetrics;
use crate::registry::{RegistryInput, parse_registry, registry_host};
use crate::secret::Secret;

/// The object's ServiceAccount (`spec.serviceAccountName`, or `--default-service-account`),
/// already read from the object's namespace.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAccountRef<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
}

/// The providers' clients over one [`HttpClient`].
#[derive(Debug)]
struct Clients {
    aws: AwsClient,
    gcp: GcpClient,
    azure: AzureClient,
}

impl Clients {
    fn new(http: HttpClient, env: &Environment) -> Self {
        Self {
            aws: AwsClient::new(http.clone(), env.endpoints.clone(), env.aws.clone()),
            gcp: GcpClient::new(http.clone(), env.endpoints.clone()),
            azure: AzureClient::new(http, env.endpoints.clone(), env.azure.clone()),
        }
    }
}

/// Registry logins for the cloud providers, with Flux's token cache.
#[derive(Debug)]
pub struct RegistryCredentials {
    env: Environment,
    /// Without a proxy.
    direct: Clients,
    /// The timeout of every token call, also through a proxy.
    timeout: Duration,
    cache: TokenCache<RegistryLogin>,
    /// Read once per process, as Flux does.
    gke_cluster: tokio::sync::OnceCell<GkeCluster>,
    metrics: Option<TokenCacheMetrics>,
}

impl RegistryCredentials {
    /// `cache_max_size` is `--token-cache-max-size` (0 disables), `cache_max_duration`
    /// `--token-cache-max-duration` (capped at 1 h).
    pub fn new(
        env: Environment,
        http: HttpClient,
        cache_max_size: usize,
        cache_max_duration: Duration,
    ) -> Self {
        Self {
            timeout: http.timeout(),
            direct: Clients::new(http, &env),
            env,
            cache: TokenCache::new(cache_max_size, cache_max_duration),
            gke_cluster: tokio::sync::OnceCell::new(),
            metrics: None,
        }
    }

    /// Counts the cache's requests, evictions and items in `metrics` (ignored when the
    /// cache is disabled); the caller records the per-object events with [`Self::metrics`].
    pub fn with_metrics(mut self, metrics: Option<TokenCacheMetrics>) -> Self {
        self.cache = self.cache.with_metrics(metrics.clone());
        self.metrics = metrics.filter(|_| self.cache.enabled());
        self
    }

    /// The token cache metrics, when the cache is enabled and they were attached.
    pub fn metrics(&self) -> Option<&TokenCacheMetrics> {
        self.metrics.as_ref()
    }

    /// The registry login for `image` with `provider`. With a ServiceAccount, `mint_token`
    /// is called (only on a cache miss) with the audiences for the TokenRequest and returns
    /// `status.token`; its error text goes into the error as Flux words it.
    pub async fn registry_login<F, Fut>(
        &self,
        provider: Provider,
        image: &str,
        service_account: Option<ServiceAccountRef<'_>>,
        mint_token: F,
    ) -> Result<(RegistryLogin, CacheEvent)>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<Secret, String>>,
    {
        self.registry_login_via(provider, image, service_account, None, mint_token)
            .await
    }

    /// [`Self::registry_login`] with the token calls sent through `proxy` (the object's
    /// `proxySecretRef`, as Flux sends them); the proxy is part of the cache key.
    pub async fn registry_login_via<F, Fut>(
        &self,
        provider: Provider,
        image: &str,
        service_account: Option<ServiceAccountRef<'_>>,
        proxy: Option<&url::Url>,
        mint_token: F,
    ) -> Result<(RegistryLogin, CacheEvent)>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<Secret, String>>,
    {
        let host = registry_host(image);
        let input = parse_registry(provider, &host, self.env.azure.cloud.as_ref())?;
        let plan = self.plan(provider, &input, service_account)?;
        let key = registry_credential_key(
            &plan.access_token_key(provider, service_account, proxy),
            input.cache_input(),
        );
        self.cache
            .get_or_fetch(&key, || async {
                let proxied;
                let clients = match proxy {
                    None => &self.direct,
                    Some(proxy) => {
                        proxied = self.proxied_clients(provider, proxy)?;
                        &proxied
                    }
                };
                let login = self
                    .fetch(
                        clients,
                        provider,
                        &host,
                        &input,
                        service_account,
                        plan,
                        mint_token,
                    )
                    .await?;
                let expires_at = login.expires_at;
                Ok((login, expires_at))
            })
            .await
    }

    /// Clients whose calls go through `proxy`; built on a cache miss only.
    fn proxied_clients(&self, provider: Provider, proxy: &url::Url) -> Result<Clients> {
        let http = HttpClient::with_timeout(Some(proxy), self.timeout).map_err(|err| {
            Error::config(
                provider,
                crate::Step::ControllerCredentials,
                "spec.proxySecretRef",
                format!("the proxy cannot be used: {err}"),
            )
        })?;
        Ok(Clients::new(http, &self.env))
    }

    /// Drops a cached login (e.g. after the registry refused it).
    pub async fn invalidate(
        &self,
        provider: Provider,
        image: &str,
        service_account: Option<ServiceAccountRef<'_>>,
    ) -> Result<()> {
        self.invalidate_via(provider, image, service_account, None)
            .await
    }

    /// [`Self::invalidate`] for a login fetched through `proxy`.
    pub async fn invalidate_via(
        &self,
        provider: Provider,
        image: &str,
        service_account: Option<ServiceAccountRef<'_>>,
        proxy: Option<&url::Url>,
    ) -> Result<()> {
        let input = parse_registry(
            provider,
            &registry_host(image),
            self.env.azure.cloud.as_ref(),
        )?;
        let plan = self.plan(provider, &input, service_account)?;
        let key = registry_credential_key(
            &plan.access_token_key(provider, service_account, proxy),
            input.cache_input(),
        );
        self.cache.invalidate(&key).await;
        Ok(())
    }

    /// Validates the ServiceAccount's annotations before anything is fetched.
    fn plan(
        &self,
        provider: Provider,
        input: &RegistryInput,
        service_account: Option<ServiceAccountRef<'_>>,
    ) -> Result<Plan> {
        let Some(sa) = service_account else {
            return Ok(Plan::Controller);
        };
        Ok(match provider {
            Provider::Aws => Plan::Aws {
                role_arn: aws::role_arn_from_annotations(sa.annotations)?,
                region: input.aws_region().unwrap_or_default().to_string(),
            },
            Provider::Azure => {
                let (tenant_id, client_id) = azure::identity_from_annotations(sa.annotations)?;
                Plan::Azure {
                    tenant_id,
                    client_id,
                }
            }
            Provider::Gcp => {
                Plan::Gcp(GcpServiceAccountIdentity::from_annotations(sa.annotations)?)
            }
            Provider::GitHub => Plan::Controller,
        })
    }

    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
    async fn fetch<F, Fut>(
        &self,
        clients: &Clients,
        provider: Provider,
        host: &str,
        input: &RegistryInput,
        service_account: Option<ServiceAccountRef<'_>>,
        plan: Plan,
        mint_token: F,
    ) -> Result<RegistryLogin>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<Secret, String>>,
    {
        let required_account = || {
            service_account.ok_or_else(|| {
                let step = crate::Step::ControllerCredentials;
                Error::invalid(provider, step, "no service account")
            })
        };
        let mint = |audiences: Vec<String>| async {
            let sa = required_account()?;
            mint_token(audiences)
                .await
                .map_err(|message| Error::ServiceAccountToken {
                    provider,
                    namespace: sa.namespace.to_string(),
                    name: sa.name.to_string(),
                    message,
                })
        };
        match (provider, plan) {
            (Provider::Aws, Plan::Controller) => {
                clients
                    .aws
                    .registry_login(input, &AwsIdentity::Controller)
                    .await
            }
            (Provider::Aws, Plan::Aws { role_arn, region }) => {
                let sa = required_account()?;
                if region.is_empty() {
                    // Before minting: Flux's message for a host without a region.
                    return Err(Error::config(
                        provider,
                        crate::Step::StsAssumeRoleWithWebIdentity,
                        "spec.image",
                        "an AWS region is required for authenticating with a service account. please configure one in the object spec",
                    ));
                }
                let token = mint(vec![aws::STS_AUDIENCE.to_string()]).await?;
                let identity = AwsIdentity::ServiceAccount {
                    role_arn,
                    session_name: aws::service_account_session_name(sa.name, sa.namespace, &region),
                    token,
                };
                clients.aws.registry_login(input, &identity).await
            }
            (Provider::Azure, Plan::Controller) => {
                clients
                    .azure
                    .registry_login(host, &AzureIdentity::Controller)
                    .await
            }
            (
                Provider::Azure,
                Plan::Azure {
                    tenant_id,
                    client_id,
                },
            ) => {
                let token = mint(vec![azure::TOKEN_AUDIENCE.to_string()]).await?;
                let identity = AzureIdentity::ServiceAccount {
                    tenant_id,
                    client_id,
                    token,
                };
                clients.azure.registry_login(host, &identity).await
            }
            (Provider::Gcp, Plan::Controller) => {
                // Flux's metadata client never uses the object's proxy.
                Ok(self.direct.gcp.metadata_token().await?.registry_login())
            }
            (Provider::Gcp, Plan::Gcp(identity)) => {
                let (token_audience, sts_audience) = match &identity.workload_identity_provider {
                    Some(wip) => {
                        let audience = gcp::workload_identity_provider_audience(wip);
                        (audience.clone(), audience)
                    }
                    None => {
                        let cluster = self
                            .gke_cluster
                            // Once per process and never through a proxy, as Flux.
                            .get_or_try_init(|| self.direct.gcp.gke_cluster())
                            .await?;
                        (cluster.token_audience(), cluster.sts_audience())
                    }
                };
                let token = mint(vec![token_audience]).await?;
                Ok(clients
                    .gcp
                    .exchange_service_account_token(&identity, &sts_audience, &token)
                    .await?
                    .registry_login())
            }
            (provider, _) => Err(Error::config(
                provider,
                crate::Step::RegistryHost,
                "spec.provider",
                format!("provider '{provider}' has no registry login"),
            )),
        }
    }
}

/// What the ServiceAccount's annotations say, checked up front.
#[derive(Debug)]
enum Plan {
    Controller,
    Aws {
        role_arn: String,
        region: String,
    },
    Azure {
        tenant_id: String,
        client_id: String,
    },
    Gcp(GcpServiceAccountIdentity),
}

impl Plan {
    /// Flux's access-token key: provider, then with a ServiceAccount its identity, name and
    /// namespace, then the STS region, then the proxy.
    fn access_token_key(
        &self,
        provider: Provider,
        sa: Option<ServiceAccountRef<'_>>,
        proxy: Option<&url::Url>,
    ) -> String {
        let identity = match self {
            Plan::Controller => String::new(),
            Plan::Aws { role_arn, .. } => role_arn.clone(),
            Plan::Azure {
                tenant_id,
                client_id,
            } => format!("{tenant_id}/{client_id}"),
            Plan::Gcp(identity) => identity.gcp_service_account.clone().unwrap_or_default(),
        };
        let mut parts = vec![("provider", provider.as_str().to_string())];
        if let Some(sa) = sa {
            parts.push(("providerIdentity", identity));
            parts.push(("serviceAccountName", sa.name.to_string()));
            parts.push(("serviceAccountNamespace", sa.namespace.to_string()));
        }
        if let Plan::Aws { region, .. } = self {
            parts.push(("stsRegion", region.clone()));
        }
        if let Some(proxy) = proxy {
            parts.push(("proxyURL", proxy.to_string()));
        }
        let borrowed: Vec<(&str, &str)> = parts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cache_key(&borrowed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_proxy_is_part_of_the_access_token_key_after_the_region() {
        let proxy = url::Url::parse("http://user:pass@proxy.example:3128").unwrap();
        let plan = Plan::Aws {
            role_arn: "arn:aws:iam::123456789012:role/flux".into(),
            region: "eu-west-1".into(),
        };
        let direct = plan.access_token_key(Provider::Aws, None, None);
        let proxied = plan.access_token_key(Provider::Aws, None, Some(&proxy));
        assert_ne!(direct, proxied);
        assert_eq!(
            proxied,
            cache_key(&[
                ("provider", "aws"),
                ("stsRegion", "eu-west-1"),
                ("proxyURL", "http://user:pass@proxy.example:3128/"),
            ])
        );
        assert_eq!(
            direct,
            cache_key(&[("provider", "aws"), ("stsRegion", "eu-west-1")])
        );
    }
}
