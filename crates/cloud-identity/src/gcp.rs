//! GCP (GCR, Artifact Registry): the metadata server's token, or workload identity
//! federation (Google STS token exchange, then optional service-account impersonation).

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::Deserialize;

use crate::config::{Endpoints, endpoint_or};
use crate::error::{Answer, Error, Provider, Result, Step};
use crate::http::{CallContext, HttpClient, HttpRequest, Method};
use crate::login::RegistryLogin;
use crate::secret::Secret;

pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const SCOPE_USERINFO_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
/// The registry username for an access token.
pub const REGISTRY_USERNAME: &str = "oauth2accesstoken";
pub const WORKLOAD_IDENTITY_PROVIDER_ANNOTATION: &str =
    "gcp.auth.fluxcd.io/workload-identity-provider";
pub const GCP_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
pub const WORKLOAD_IDENTITY_PROVIDER_PATTERN: &str =
    r"^projects/\d{1,30}/locations/global/workloadIdentityPools/[^/]{1,100}/providers/[^/]{1,100}$";
pub const GCP_SERVICE_ACCOUNT_PATTERN: &str =
    r"^[a-zA-Z0-9-]{1,100}@[a-zA-Z0-9-]{1,100}\.iam\.gserviceaccount\.com$";
const DEFAULT_METADATA_HOST: &str = "169.254.169.254";
const DEFAULT_STS: &str = "https://sts.googleapis.com/";
const DEFAULT_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com/";
const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[allow(clippy::expect_used)] // Constant patterns, covered by the tests.
static WORKLOAD_IDENTITY_PROVIDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(WORKLOAD_IDENTITY_PROVIDER_PATTERN).expect("workload identity provider pattern")
});
#[allow(clippy::expect_used)]
static GCP_SERVICE_ACCOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(GCP_SERVICE_ACCOUNT_PATTERN).expect("GCP service account pattern"));

/// An access token and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: SystemTime,
}

impl AccessToken {
    /// The registry login: `oauth2accesstoken` and the token.
    pub fn registry_login(&self) -> RegistryLogin {
        RegistryLogin {
            username: REGISTRY_USERNAME.to_string(),
            password: self.token.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// A ServiceAccount's GCP identity, from its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcpServiceAccountIdentity {
    /// `gcp.auth.fluxcd.io/workload-identity-provider`; without it, GKE is assumed.
    pub workload_identity_provider: Option<String>,
    /// `iam.gke.io/gcp-service-account`: impersonated when set.
    pub gcp_service_account: Option<String>,
}

impl GcpServiceAccountIdentity {
    /// Reads and checks the annotations as Flux does.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self> {
        let check = |name: &'static str, re: &Regex, pattern: &str| -> Result<Option<String>> {
            match annotations.get(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(value) if re.is_match(value) => Ok(Some(value.clone())),
                Some(value) => Err(Error::config(
                    Provider::Gcp,
                    Step::ControllerCredentials,
                    name,
                    format!("invalid {name} annotation: '{value}'. must match {pattern}"),
                )),
            }
        };
        Ok(Self {
            workload_identity_provider: check(
                WORKLOAD_IDENTITY_PROVIDER_ANNOTATION,
                &WORKLOAD_IDENTITY_PROVIDER,
                WORKLOAD_IDENTITY_PROVIDER_PATTERN,
            )?,
            gcp_service_account: check(
                GCP_SERVICE_ACCOUNT_ANNOTATION,
                &GCP_SERVICE_ACCOUNT,
                GCP_SERVICE_ACCOUNT_PATTERN,
            )?,
        })
    }
}

/// The GKE cluster a controller runs in (from the metadata server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GkeCluster {
    pub project_id: String,
    pub location: String,
    pub name: String,
}

impl GkeCluster {
    /// The TokenRequest audience on GKE: `<project>.svc.id.goog`.
    pub fn token_audience(&self) -> String {
        format!("{}.svc.id.goog", self.project_id)
    }

    /// The STS audience on GKE.
    pub fn sts_audience(&self) -> String {
        format!(
            "identitynamespace:{project}.svc.id.goog:https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}",
            project = self.project_id,
            location = self.location,
            name = self.name
        )
    }
}

/// The TokenRequest audience and the STS audience for a workload identity provider.
pub fn workload_identity_provider_audience(provider: &str) -> String {
    format!("//iam.googleapis.com/{provider}")
}

fn metadata_base(endpoints: &Endpoints) -> Result<url::Url> {
    let host = endpoints
        .gce_metadata_host
        .as_deref()
        .unwrap_or(DEFAULT_METADATA_HOST);
    url::Url::parse(&format!("http://{host}/computeMetadata/v1/")).map_err(|err| {
        Error::config(
            Provider::Gcp,
            Step::GcpMetadataToken,
            "GCE_METADATA_HOST",
            format!("invalid metadata host: {err}"),
        )
    })
}

fn join(base: &url::Url, path: &str, provider: Provider, step: Step) -> Result<url::Url> {
    base.join(path)
        .map_err(|err| Error::config(provider, step, "the endpoint URL", format!("{path}: {err}")))
}

/// `GET …/instance/service-accounts/default/token?scopes=…` with `Metadata-Flavor: Google`.
pub fn metadata_token_request(endpoints: &Endpoints) -> Result<HttpRequest> {
    let mut url = join(
        &metadata_base(endpoints)?,
        "instance/service-accounts/default/token",
        Provider::Gcp,
        Step::GcpMetadataToken,
    )?;
    url.query_pairs_mut().append_pair(
        "scopes",
        &format!("{SCOPE_CLOUD_PLATFORM},{SCOPE_USERINFO_EMAIL}"),
    );
    Ok(HttpRequest::new(Method::Get, url).header("Metadata-Flavor", "Google"))
}

/// `GET …/<path>` (a plain-text value) with `Metadata-Flavor: Google`.
pub fn metadata_value_request(endpoints: &Endpoints, path: &str) -> Result<HttpRequest> {
    let url = join(
        &metadata_base(endpoints)?,
        path,
        Provider::Gcp,
        Step::GcpMetadataValue,
    )?;
    Ok(HttpRequest::new(Method::Get, url).header("Metadata-Flavor", "Google"))
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `{access_token, expires_in}` (metadata server and STS): an empty token or a zero
/// lifetime is an error.
pub fn parse_oauth_token(body: &[u8], step: Step, now: SystemTime) -> Result<AccessToken> {
    let answer = Answer::new(Provider::Gcp, step);
    let parsed: OAuthToken = answer.json(body, "a token")?;
    let token = answer.required(parsed.access_token, "response has an empty access_token")?;
    let expires_in = parsed
        .expires_in
        .filter(|s| *s > 0)
        .ok_or_else(|| Error::invalid(Provider::Gcp, step, "response has no expires_in"))?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at: now + Duration::from_secs(expires_in),
    })
}

/// The STS token exchange (RFC 8693 form). Without impersonation both scopes are asked
/// for; with it, only cloud-platform (the impersonation asks for both).
pub fn sts_exchange_request(
    endpoints: &Endpoints,
    audience: &str,
    subject_token: &Secret,
    impersonating: bool,
) -> Result<HttpRequest> {
    let base = endpoint_or(&endpoints.google_sts, || parse_default(DEFAULT_STS))?;
    let url = join(&base, "v1/token", Provider::Gcp, Step::GcpStsTokenExchange)?;
    let scope = if impersonating {
        SCOPE_CLOUD_PLATFORM.to_string()
    } else {
        format!("{SCOPE_CLOUD_PLATFORM} {SCOPE_USERINFO_EMAIL}")
    };
    Ok(HttpRequest::new(Method::Post, url).form(&[
        ("audience", audience),
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ("subject_token_type", TOKEN_TYPE_JWT),
        ("subject_token", subject_token.expose()),
        ("scope", &scope),
    ]))
}

/// `generateAccessToken` for `email`, authorised by the STS token.
pub fn impersonation_request(
    endpoints: &Endpoints,
    email: &str,
    sts_token: &Secret,
) -> Result<HttpRequest> {
    let base = endpoint_or(&endpoints.google_iam_credentials, || {
        parse_default(DEFAULT_IAM_CREDENTIALS)
    })?;
    // The email as is (Flux formats it into the path), any other character encoded.
    const EMAIL_PATH: &percent_encoding::AsciiSet = &crate::http::PATH_SEGMENT.remove(b'@');
    let encoded: String = percent_encoding::utf8_percent_encode(email, EMAIL_PATH).to_string();
    let url = join(
        &base,
        &format!("v1/projects/-/serviceAccounts/{encoded}:generateAccessToken"),
        Provider::Gcp,
        Step::GcpImpersonation,
    )?;
    let body = serde_json::json!({
        "lifetime": "3600s",
        "scope": [SCOPE_CLOUD_PLATFORM, SCOPE_USERINFO_EMAIL],
    });
    let mut request = HttpRequest::new(Method::Post, url)
        .header("Authorization", format!("Bearer {}", sts_token.expose()))
        .header("Content-Type", "application/json");
    request.body = body.to_string().into_bytes();
    Ok(request)
}

/// `{accessToken, expireTime}` from `generateAccessToken`.
pub fn parse_impersonation_response(body: &[u8]) -> Result<AccessToken> {
    let answer = Answer::new(Provider::Gcp, Step::GcpImpersonation);
    let fields = ("accessToken", "expireTime");
    let (token, expires_at) = answer.token_with_expiry(body, "a token", fields)?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at,
    })
}

fn parse_default(url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|err| {
        Error::config(
            Provider::Gcp,
            Step::GcpStsTokenExchange,
            "the endpoint URL",
            err.to_string(),
        )
    })
}

/// Makes the GCP calls.
#[derive(Debug, Clone)]
pub struct GcpClient {
    http: HttpClient,
    endpoints: Endpoints,
}

impl GcpClient {
    pub fn new(http: HttpClient, endpoints: Endpoints) -> Self {
        Self { http, endpoints }
    }

    /// The controller's token from the metadata server.
    pub async fn metadata_token(&self) -> Result<AccessToken> {
        let request = metadata_token_request(&self.endpoints)?;
        let field = "the node's metadata server (GKE workload identity) or GCE_METADATA_HOST";
        let call = CallContext::new(Provider::Gcp, Step::GcpMetadataToken, field);
        let body = self.http.fetch(&request, call).await?;
        parse_oauth_token(&body, Step::GcpMetadataToken, SystemTime::now())
    }

    /// A plain-text metadata value; empty is an error.
    pub async fn metadata_value(&self, path: &str, what: &str) -> Result<String> {
        let request = metadata_value_request(&self.endpoints, path)?;
        let call = CallContext {
            provider: Provider::Gcp,
            step: Step::GcpMetadataValue,
            field: "the node's metadata server or GCE_METADATA_HOST",
        };
        let fail = |err: String| {
            Error::invalid(
                Provider::Gcp,
                Step::GcpMetadataValue,
                format!("failed to get GKE cluster {what} from the metadata service: {err}"),
            )
        };
        let response = self
            .http
            .send(&request, call)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body = response
            .success_body(call, &request.url)
            .map_err(|e| fail(e.to_string()))?;
        let value = String::from_utf8_lossy(&body).trim().to_string();
        if value.is_empty() {
            return Err(fail("empty value".into()));
        }
        Ok(value)
    }

    /// The GKE cluster (project, location, name) from the metadata server.
    pub async fn gke_cluster(&self) -> Result<GkeCluster> {
        Ok(GkeCluster {
            project_id: self
                .metadata_value("project/project-id", "project ID")
                .await?,
            location: self
                .metadata_value("instance/attributes/cluster-location", "location")
                .await?,
            name: self
                .metadata_value("instance/attributes/cluster-name", "name")
                .await?,
        })
    }

    /// Exchanges a Kubernetes ServiceAccount token: STS, then impersonation when the
    /// ServiceAccount names a GCP service account. `sts_audience` is
    /// [`workload_identity_provider_audience`] or [`GkeCluster::sts_audience`].
    pub async fn exchange_service_account_token(
        &self,
        identity: &GcpServiceAccountIdentity,
        sts_audience: &str,
        kubernetes_token: &Secret,
    ) -> Result<AccessToken> {
        let impersonating = identity.gcp_service_account.is_some();
        let request = sts_exchange_request(
            &self.endpoints,
            sts_audience,
            kubernetes_token,
            impersonating,
        )?;
        let field = "the gcp.auth.fluxcd.io/workload-identity-provider annotation and the pool's provider settings";
        let call = CallContext::new(Provider::Gcp, Step::GcpStsTokenExchange, field);
        let body = self.http.fetch(&request, call).await?;
        let sts_token = parse_oauth_token(&body, Step::GcpStsTokenExchange, SystemTime::now())?;
        let Some(email) = &identity.gcp_service_account else {
            return Ok(sts_token);
        };
        let request = impersonation_request(&self.endpoints, email, &sts_token.token)?;
        let field = "the iam.gke.io/gcp-service-account annotation and its roles/iam.workloadIdentityUser binding";
        let call = CallContext::new(Provider::Gcp, Step::GcpImpersonation, field);
        let body = self.http.fetch(&request, call).await?;
        parse_impersonation_response(&body)
    }
}

#[cfg(test)]
mod tests;
