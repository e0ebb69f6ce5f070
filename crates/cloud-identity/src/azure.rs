//! Azure (ACR): an Entra ID token from workload identity (a federated token) or IMDS, then
//! ACR's `/oauth2/exchange` for a refresh token, the registry password.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Deserialize;

use crate::config::{AzureCloudEnvironment, AzureEnvironment, Endpoints, endpoint_or};
use crate::error::{Answer, Error, Provider, Result, Step};
use crate::http::{CallContext, HttpRequest, Method};
use crate::login::RegistryLogin;
use crate::secret::Secret;

/// The TokenRequest audience of a ServiceAccount token exchanged at Entra ID.
pub const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// ACR's scope in the public, China and Government clouds alike.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// Azure DevOps (Git) scope.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// The registry username for an ACR refresh token.
pub const REGISTRY_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
const DEFAULT_IMDS: &str = "http://169.254.169.254/";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra ID access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: SystemTime,
}

/// Who asks for the token.
#[derive(Debug, Clone)]
pub enum AzureIdentity {
    /// Workload identity from the environment (`AZURE_*`), else IMDS.
    Controller,
    /// A ServiceAccount token (audience [`TOKEN_AUDIENCE`]) for the annotated app.
    ServiceAccount {
        tenant_id: String,
        client_id: String,
        token: Secret,
    },
}

/// Tenant and client IDs from a ServiceAccount's annotations (presence only, as Flux).
pub fn identity_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<(String, String)> {
    let get = |name: &'static str, what: &str| {
        annotations
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| {
                Error::config(
                    Provider::Azure,
                    Step::ControllerCredentials,
                    name,
                    format!("azure {what} is not set in the service account annotation {name}"),
                )
            })
    };
    Ok((
        get(TENANT_ID_ANNOTATION, "tenant ID")?,
        get(CLIENT_ID_ANNOTATION, "client ID")?,
    ))
}

/// The Entra scope for a registry: the private cloud's resource manager, else ACR's.
pub fn registry_scope(cloud: Option<&AzureCloudEnvironment>) -> String {
    match cloud {
        Some(cloud) => format!(
            "{}/.default",
            cloud.resource_manager_endpoint.trim_end_matches('/')
        ),
        None => ACR_SCOPE.to_string(),
    }
}

fn parse_url(text: &str, step: Step, field: &'static str) -> Result<url::Url> {
    url::Url::parse(text)
        .map_err(|err| Error::config(Provider::Azure, step, field, format!("{text}: {err}")))
}

/// Base URLs end with `/` so `join` appends instead of replacing the last segment.
fn with_trailing_slash(mut url: url::Url) -> url::Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// `<authority>/<tenant>/oauth2/v2.0/token`.
fn token_endpoint(endpoints: &Endpoints, tenant_id: &str) -> Result<url::Url> {
    let authority = match &endpoints.azure_authority_host {
        Some(url) => url.clone(),
        None => parse_url(
            DEFAULT_AUTHORITY,
            Step::AzureAdToken,
            "AZURE_AUTHORITY_HOST",
        )?,
    };
    let tenant: String =
        percent_encoding::utf8_percent_encode(tenant_id, crate::http::PATH_SEGMENT).to_string();
    with_trailing_slash(authority)
        .join(&format!("{tenant}/oauth2/v2.0/token"))
        .map_err(|err| {
            Error::config(
                Provider::Azure,
                Step::AzureAdToken,
                "AZURE_AUTHORITY_HOST",
                err.to_string(),
            )
        })
}

/// `POST <authority>/<tenant>/oauth2/v2.0/token`: client credentials with the federated
/// token as the client assertion (what MSAL's `FromAssertion` sends).
pub fn federated_token_request(
    endpoints: &Endpoints,
    tenant_id: &str,
    client_id: &str,
    assertion: &Secret,
    scope: &str,
) -> Result<HttpRequest> {
    let credential = [
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion.expose()),
    ];
    client_credentials_request(endpoints, (tenant_id, client_id), &credential, scope)
}

/// The client-credentials token request of `client_id` in `tenant_id` with its
/// `credential` form fields (in that place of the form).
fn client_credentials_request(
    endpoints: &Endpoints,
    (tenant_id, client_id): (&str, &str),
    credential: &[(&str, &str)],
    scope: &str,
) -> Result<HttpRequest> {
    let scope = format!("{scope} openid offline_access profile");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
    ];
    form.extend_from_slice(credential);
    form.extend([("client_info", "1"), ("scope", scope.as_str())]);
    Ok(HttpRequest::new(Method::Post, token_endpoint(endpoints, tenant_id)?).form(&form))
}

/// EnvironmentCredential with a client secret: the same endpoint, `client_secret` instead of
/// an assertion.
pub fn client_secret_token_request(
    endpoints: &Endpoints,
    tenant_id: &str,
    client_id: &str,
    client_secret: &Secret,
    scope: &str,
) -> Result<HttpRequest> {
    let credential = [("client_secret", client_secret.expose())];
    client_credentials_request(endpoints, (tenant_id, client_id), &credential, scope)
}

/// IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with
/// `Metadata: true`.
pub fn imds_token_request(
    endpoints: &Endpoints,
    scope: &str,
    client_id: Option<&str>,
) -> Result<HttpRequest> {
    let base = endpoint_or(&endpoints.azure_imds, || {
        parse_url(
            DEFAULT_IMDS,
            Step::AzureImdsToken,
            "the node's managed identity",
        )
    })?;
    let mut url = with_trailing_slash(base)
        .join("metadata/identity/oauth2/token")
        .map_err(|err| {
            Error::config(
                Provider::Azure,
                Step::AzureImdsToken,
                "the IMDS endpoint",
                err.to_string(),
            )
        })?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("api-version", "2018-02-01");
        query.append_pair("resource", scope.trim_end_matches("/.default"));
        if let Some(client_id) = client_id {
            query.append_pair("client_id", client_id);
        }
    }
    Ok(HttpRequest::new(Method::Get, url).header("Metadata", "true"))
}

/// A number that IMDS sends as a string and Entra as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn value(&self) -> Option<u64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// `{access_token, expires_in | expires_on}` from Entra ID or IMDS.
pub fn parse_token_response(body: &[u8], step: Step, now: SystemTime) -> Result<AccessToken> {
    #[derive(Deserialize)]
    struct Response {
        access_token: Option<String>,
        expires_in: Option<Seconds>,
        expires_on: Option<Seconds>,
    }
    let answer = Answer::new(Provider::Azure, step);
    let parsed: Response = answer.json(body, "a token")?;
    let token = answer.required(parsed.access_token, "response has no access_token")?;
    let expires_at = match (
        parsed.expires_on.as_ref().and_then(Seconds::value),
        parsed.expires_in.as_ref().and_then(Seconds::value),
    ) {
        (Some(on), _) => SystemTime::UNIX_EPOCH + Duration::from_secs(on),
        (None, Some(seconds)) => now + Duration::from_secs(seconds),
        (None, None) => {
            return Err(Error::invalid(
                Provider::Azure,
                step,
                "response has neither expires_in nor expires_on",
            ));
        }
    };
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at,
    })
}

/// `POST https://<registry>/oauth2/exchange` (form; `api-version` as the SDK adds it).
pub fn acr_exchange_request(
    endpoints: &Endpoints,
    registry_host: &str,
    access_token: &Secret,
) -> Result<HttpRequest> {
    let base = endpoint_or(&endpoints.acr, || {
        parse_url(
            &format!("https://{registry_host}/"),
            Step::AcrExchange,
            "spec.image",
        )
    })?;
    let mut url = with_trailing_slash(base)
        .join("oauth2/exchange")
        .map_err(|err| {
            Error::config(
                Provider::Azure,
                Step::AcrExchange,
                "spec.image",
                err.to_string(),
            )
        })?;
    url.query_pairs_mut()
        .append_pair("api-version", "2021-07-01");
    Ok(HttpRequest::new(Method::Post, url).form(&[
        ("grant_type", "access_token"),
        ("service", registry_host),
        ("access_token", access_token.expose()),
    ]))
}

/// The registry login from ACR's `{"refresh_token": "<JWT>"}`; its expiry is the JWT's
/// unverified `exp` claim, and a non-JWT is an error.
pub fn parse_acr_exchange(body: &[u8]) -> Result<RegistryLogin> {
    #[derive(Deserialize)]
    struct Response {
        refresh_token: Option<String>,
    }
    let step = Step::AcrExchange;
    let answer = Answer::new(Provider::Azure, step);
    let parsed: Response = answer.json(body, "JSON")?;
    let token = answer.required(parsed.refresh_token, "response has no refresh_token")?;
    let expires_at = jwt_expiry(&token).ok_or_else(|| {
        Error::invalid(
            Provider::Azure,
            step,
            "the refresh token is not a JWT with an exp claim",
        )
    })?;
    Ok(RegistryLogin {
        username: REGISTRY_USERNAME.to_string(),
        password: Secret::new(token),
        expires_at,
    })
}

/// A JWT's `exp` claim, without verifying the signature.
pub fn jwt_expiry(jwt: &str) -> Option<SystemTime> {
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    crate::time::from_epoch_seconds(exp)
}

/// Makes the Azure calls. Cheap to clone.
pub type AzureClient = crate::config::ProviderClient<AzureEnvironment>;

impl AzureClient {
    /// The registry login for an ACR host: an Entra token for the registry scope, then
    /// the ACR exchange.
    pub async fn registry_login(
        &self,
        registry_host: &str,
        identity: &AzureIdentity,
    ) -> Result<RegistryLogin> {
        let scope = registry_scope(self.env.cloud.as_ref());
        let token = self.access_token(&scope, identity).await?;
        self.acr_exchange(registry_host, &token.token).await
    }

    /// An Entra token for `scope` (ACR's, or Azure DevOps' for Git).
    pub async fn access_token(&self, scope: &str, identity: &AzureIdentity) -> Result<AccessToken> {
        match identity {
            AzureIdentity::ServiceAccount {
                tenant_id,
                client_id,
                token,
            } => {
                self.federated_token(
                    tenant_id,
                    client_id,
                    token,
                    scope,
                    "the service account's azure.workload.identity/client-id and tenant-id annotations and the app's federated credential",
                )
                .await
            }
            AzureIdentity::Controller => self.controller_token(scope).await,
        }
    }

    /// As Flux's default chain: EnvironmentCredential (client secret), workload identity,
    /// then IMDS. A configured credential's failure is final; unconfigured ones are skipped
    /// and, if IMDS fails too, listed in the error.
    async fn controller_token(&self, scope: &str) -> Result<AccessToken> {
        let env = &self.env;
        if let (Some(tenant), Some(client), Some(secret)) =
            (&env.tenant_id, &env.client_id, &env.client_secret)
        {
            let request =
                client_secret_token_request(&self.endpoints, tenant, client, secret, scope)?;
            let field = "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET";
            let call = CallContext::new(Provider::Azure, Step::AzureAdToken, field);
            let body = self.http.fetch(&request, call).await?;
            return parse_token_response(&body, Step::AzureAdToken, SystemTime::now());
        }
        if let (Some(tenant), Some(client), Some(file), Some(_)) = (
            &env.tenant_id,
            &env.client_id,
            &env.federated_token_file,
            &self.endpoints.azure_authority_host,
        ) {
            let assertion = crate::aws::read_token_file(
                file,
                Step::AzureFederatedTokenFile,
                "AZURE_FEDERATED_TOKEN_FILE",
                Provider::Azure,
            )?;
            return self
                .federated_token(
                    tenant,
                    client,
                    &assertion,
                    scope,
                    "AZURE_CLIENT_ID, AZURE_TENANT_ID and the app's federated credential",
                )
                .await;
        }
        self.imds_token(scope).await.map_err(|imds| {
            Error::config(
                Provider::Azure,
                Step::ControllerCredentials,
                "the workload identity webhook and pod configuration",
                format!(
                    "EnvironmentCredential: missing environment variables AZURE_TENANT_ID, AZURE_CLIENT_ID or AZURE_CLIENT_SECRET\nmissing environment variables for workload identity. Check webhook and pod configuration\n{imds}"
                ),
            )
        })
    }

    async fn federated_token(
        &self,
        tenant_id: &str,
        client_id: &str,
        assertion: &Secret,
        scope: &str,
        field: &'static str,
    ) -> Result<AccessToken> {
        let request =
            federated_token_request(&self.endpoints, tenant_id, client_id, assertion, scope)?;
        let call = CallContext::new(Provider::Azure, Step::AzureAdToken, field);
        let body = self.http.fetch(&request, call).await?;
        parse_token_response(&body, Step::AzureAdToken, SystemTime::now())
    }

    /// The kubelet (managed) identity's token from IMDS.
    pub async fn imds_token(&self, scope: &str) -> Result<AccessToken> {
        let request = imds_token_request(&self.endpoints, scope, self.env.client_id.as_deref())?;
        let field = "the node's managed identity and its AcrPull role";
        let call = CallContext::new(Provider::Azure, Step::AzureImdsToken, field);
        let body = self.http.fetch(&request, call).await?;
        parse_token_response(&body, Step::AzureImdsToken, SystemTime::now())
    }

    /// ACR's `/oauth2/exchange`: the Entra token for a refresh token.
    pub async fn acr_exchange(&self, registry_host: &str, token: &Secret) -> Result<RegistryLogin> {
        let request = acr_exchange_request(&self.endpoints, registry_host, token)?;
        let field = "the identity's AcrPull role on the registry";
        let call = CallContext::new(Provider::Azure, Step::AcrExchange, field);
        let body = self.http.fetch(&request, call).await?;
        parse_acr_exchange(&body)
    }
}

#[cfg(test)]
mod tests;
