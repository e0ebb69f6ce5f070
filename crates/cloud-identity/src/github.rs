//! GitHub App: an RS256 JWT signed with the App's key, the installation (by ID or looked up
//! by owner), then an installation access token used for Git as `x-access-token`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;

use crate::error::{Answer, Error, Provider, Result, Step};
use crate::http::{CallContext, HttpClient, HttpRequest, Method};
use crate::login::RegistryLogin;
use crate::secret::Secret;

pub const APP_ID_KEY: &str = "githubAppID";
pub const INSTALLATION_ID_KEY: &str = "githubAppInstallationID";
pub const INSTALLATION_OWNER_KEY: &str = "githubAppInstallationOwner";
pub const PRIVATE_KEY_KEY: &str = "githubAppPrivateKey";
pub const BASE_URL_KEY: &str = "githubAppBaseURL";
/// The Git username for an installation token.
pub const GIT_USERNAME: &str = "x-access-token";
const DEFAULT_API: &str = "https://api.github.com/";
/// Flux backdates `iat` by 30 s for clock skew and asks for two minutes.
const JWT_BACKDATE: Duration = Duration::from_secs(30);
const JWT_LIFETIME: Duration = Duration::from_secs(120);

/// Which installation to get a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installation {
    Id(u64),
    /// Looked up at `/orgs/<owner>/installation`, then `/users/<owner>/installation`.
    Owner(String),
}

/// The App settings from a Secret.
#[derive(Debug, Clone)]
pub struct GitHubAppConfig {
    pub app_id: u64,
    pub installation: Installation,
    pub private_key: AppKey,
    /// The API root (`githubAppBaseURL`, used verbatim with `/` appended), or api.github.com.
    pub api_root: url::Url,
}

impl GitHubAppConfig {
    /// Whether Secret data holds any GitHub App key (Flux stalls `generic` providers that do).
    pub fn has_app_data(data: &BTreeMap<String, Vec<u8>>) -> bool {
        data.contains_key(APP_ID_KEY)
    }

    /// Reads and checks the Secret's data with Flux's messages; `secret` is `<ns>/<name>`.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>, secret: &str) -> Result<Self> {
        let fail = |field: &'static str, message: String| {
            Error::config(Provider::GitHub, Step::GitHubAppKey, field, message)
        };
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let app_keys = [
            APP_ID_KEY,
            INSTALLATION_ID_KEY,
            INSTALLATION_OWNER_KEY,
            PRIVATE_KEY_KEY,
        ];
        if !app_keys.iter().any(|k| data.contains_key(*k)) {
            return Err(fail(
                "spec.secretRef",
                "secretRef with github app data must be specified when provider is set to github"
                    .into(),
            ));
        }
        let app_id = text(APP_ID_KEY).ok_or_else(|| {
            fail(
                APP_ID_KEY,
                format!("secret '{secret}': key '{APP_ID_KEY}' not found"),
            )
        })?;
        let pem = text(PRIVATE_KEY_KEY).ok_or_else(|| {
            fail(
                PRIVATE_KEY_KEY,
                format!("secret '{secret}': key '{PRIVATE_KEY_KEY}' not found"),
            )
        })?;
        let installation = match (text(INSTALLATION_ID_KEY), text(INSTALLATION_OWNER_KEY)) {
            (Some(id), None) => Installation::Id(id.parse().map_err(|_| {
                fail(
                    INSTALLATION_ID_KEY,
                    "app installation ID must be a number".into(),
                )
            })?),
            (None, Some(owner)) => Installation::Owner(owner),
            _ => {
                return Err(fail(
                    INSTALLATION_ID_KEY,
                    format!(
                        "secret '{secret}': must contain exactly one of '{INSTALLATION_OWNER_KEY}' or '{INSTALLATION_ID_KEY}'"
                    ),
                ));
            }
        };
        let app_id: u64 = app_id.parse().map_err(|_| {
            fail(
                APP_ID_KEY,
                "app ID must be provided to use github app authentication".into(),
            )
        })?;
        let private_key = AppKey::from_pem(pem.as_bytes())?;
        let api_root = match text(BASE_URL_KEY) {
            Some(base) => {
                let base = if base.ends_with('/') {
                    base
                } else {
                    format!("{base}/")
                };
                url::Url::parse(&base)
                    .map_err(|err| fail(BASE_URL_KEY, format!("invalid {BASE_URL_KEY}: {err}")))?
            }
            None => {
                url::Url::parse(DEFAULT_API).map_err(|err| fail(BASE_URL_KEY, err.to_string()))?
            }
        };
        Ok(Self {
            app_id,
            installation,
            private_key,
            api_root,
        })
    }
}

/// The App's RSA private key (shared between clones). `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AppKey(std::sync::Arc<RsaKeyPair>);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

impl AppKey {
    /// An RSA key in PEM, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let fail = |message: String| {
            Error::config(
                Provider::GitHub,
                Step::GitHubAppKey,
                PRIVATE_KEY_KEY,
                format!("could not parse private key: {message}"),
            )
        };
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|err| fail(err.to_string()))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            _ => return Err(fail("not an RSA key".into())),
        }
        .map_err(|err| fail(err.to_string()))?;
        Ok(Self(std::sync::Arc::new(key)))
    }

    /// The App JWT: RS256 over `{"iat": now-30s, "exp": iat+120s, "iss": "<app id>"}`.
    pub fn app_jwt(&self, app_id: u64, now: SystemTime) -> Result<Secret> {
        let iat = crate::time::epoch_seconds(now).saturating_sub(JWT_BACKDATE.as_secs());
        let exp = iat + JWT_LIFETIME.as_secs();
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = encode(
            serde_json::json!({ "iat": iat, "exp": exp, "iss": app_id.to_string() })
                .to_string()
                .as_bytes(),
        );
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                Error::config(
                    Provider::GitHub,
                    Step::GitHubAppKey,
                    PRIVATE_KEY_KEY,
                    "signing the App JWT failed",
                )
            })?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            encode(&signature)
        )))
    }
}

fn api_request(method: Method, url: url::Url, jwt: &Secret) -> HttpRequest {
    HttpRequest::new(method, url)
        .header("Authorization", format!("Bearer {}", jwt.expose()))
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        // GitHub refuses requests without a User-Agent.
        .header("User-Agent", "image-automation-rs")
}

fn api_url(root: &url::Url, path: &str, step: Step) -> Result<url::Url> {
    root.join(path).map_err(|err| {
        Error::config(
            Provider::GitHub,
            step,
            BASE_URL_KEY,
            format!("{path}: {err}"),
        )
    })
}

/// `GET <api>/orgs/<owner>/installation` and `GET <api>/users/<owner>/installation`.
pub fn installation_lookup_requests(
    root: &url::Url,
    owner: &str,
    jwt: &Secret,
) -> Result<[HttpRequest; 2]> {
    let owner: String =
        percent_encoding::utf8_percent_encode(owner, crate::http::PATH_SEGMENT).to_string();
    Ok([
        api_request(
            Method::Get,
            api_url(
                root,
                &format!("orgs/{owner}/installation"),
                Step::GitHubInstallationLookup,
            )?,
            jwt,
        ),
        api_request(
            Method::Get,
            api_url(
                root,
                &format!("users/{owner}/installation"),
                Step::GitHubInstallationLookup,
            )?,
            jwt,
        ),
    ])
}

/// `POST <api>/app/installations/<id>/access_tokens` (no body options).
pub fn access_token_request(
    root: &url::Url,
    installation_id: u64,
    jwt: &Secret,
) -> Result<HttpRequest> {
    Ok(api_request(
        Method::Post,
        api_url(
            root,
            &format!("app/installations/{installation_id}/access_tokens"),
            Step::GitHubInstallationToken,
        )?,
        jwt,
    ))
}

/// The installation `id` from a lookup answer.
pub fn parse_installation(body: &[u8]) -> Result<u64> {
    #[derive(Deserialize)]
    struct Response {
        id: Option<u64>,
    }
    serde_json::from_slice::<Response>(body)
        .ok()
        .and_then(|r| r.id)
        .ok_or_else(|| {
            Error::invalid(
                Provider::GitHub,
                Step::GitHubInstallationLookup,
                "response has no installation id",
            )
        })
}

/// The Git credentials from `{token, expires_at}`. The token's length is not assumed
/// (GitHub is rolling out longer stateless tokens).
pub fn parse_access_token(body: &[u8]) -> Result<RegistryLogin> {
    let answer = Answer::new(Provider::GitHub, Step::GitHubInstallationToken);
    let (token, expires_at) = answer.token_with_expiry(body, "JSON", ("token", "expires_at"))?;
    Ok(RegistryLogin {
        username: GIT_USERNAME.to_string(),
        password: Secret::new(token),
        expires_at,
    })
}

/// The cache key Flux uses for an App's token (the PEM is part of it, hashed).
pub fn cache_key(config_text: &BTreeMap<String, Vec<u8>>) -> String {
    let value = |key: &str| {
        config_text
            .get(key)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    let joined = format!(
        "{APP_ID_KEY}={},{INSTALLATION_OWNER_KEY}={},{INSTALLATION_ID_KEY}={},{BASE_URL_KEY}={},{PRIVATE_KEY_KEY}={},reflectSlug=false",
        value(APP_ID_KEY),
        value(INSTALLATION_OWNER_KEY),
        value(INSTALLATION_ID_KEY),
        value(BASE_URL_KEY),
        value(PRIVATE_KEY_KEY),
    );
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, joined.as_bytes()).as_ref())
}

/// Makes the GitHub API calls.
#[derive(Debug, Clone)]
pub struct GitHubClient {
    http: HttpClient,
}

impl GitHubClient {
    pub fn new(http: HttpClient) -> Self {
        Self { http }
    }

    /// An installation token as Git credentials (`x-access-token`, token, expiry).
    pub async fn installation_token(&self, config: &GitHubAppConfig) -> Result<RegistryLogin> {
        let jwt = config
            .private_key
            .app_jwt(config.app_id, SystemTime::now())?;
        let installation_id = match &config.installation {
            Installation::Id(id) => *id,
            Installation::Owner(owner) => {
                self.lookup_installation(&config.api_root, owner, &jwt)
                    .await?
            }
        };
        let request = access_token_request(&config.api_root, installation_id, &jwt)?;
        let field = "githubAppID, githubAppInstallationID and githubAppPrivateKey";
        let call = CallContext::new(Provider::GitHub, Step::GitHubInstallationToken, field);
        let body = self.http.fetch(&request, call).await?;
        parse_access_token(&body)
    }

    async fn lookup_installation(&self, root: &url::Url, owner: &str, jwt: &Secret) -> Result<u64> {
        let call = CallContext {
            provider: Provider::GitHub,
            step: Step::GitHubInstallationLookup,
            field: "githubAppInstallationOwner",
        };
        let mut errors = Vec::new();
        for (request, kind) in installation_lookup_requests(root, owner, jwt)?
            .into_iter()
            .zip(["organization", "user"])
        {
            let result = async {
                let response = self.http.send(&request, call).await?;
                let body = response.success_body(call, &request.url)?;
                parse_installation(&body)
            }
            .await;
            match result {
                Ok(id) => return Ok(id),
                Err(err) => errors.push(format!("failed to find {kind} installation: {err}")),
            }
        }
        Err(Error::invalid(
            Provider::GitHub,
            Step::GitHubInstallationLookup,
            errors.join("\n"),
        ))
    }
}

#[cfg(test)]
mod tests;
