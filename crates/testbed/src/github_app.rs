//! A local stand-in for the GitHub App endpoints Flux calls (`GET /orgs|users/<owner>/installation`,
//! `POST /app/installations/<id>/access_tokens`), shared by the cloud-identity and
//! image-automation tests.
//!
//! It checks what GitHub checks: the App JWT's RS256 signature against the App's public
//! key (extracted by the `openssl` CLI, independently of the code under test), `iss` = the
//! App ID, `exp - iat` = 120 s around now, and a User-Agent. A refused call is a 401 whose
//! body says why. It counts token requests so a test can see the cache at work.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use tokio::task::JoinHandle;

use crate::error::{Error, IoContext, Result};

/// The Secret keys Flux reads for a GitHub App.
pub const APP_ID_KEY: &str = "githubAppID";
pub const INSTALLATION_ID_KEY: &str = "githubAppInstallationID";
pub const INSTALLATION_OWNER_KEY: &str = "githubAppInstallationOwner";
pub const PRIVATE_KEY_KEY: &str = "githubAppPrivateKey";
pub const BASE_URL_KEY: &str = "githubAppBaseURL";

/// The fake's fixed identities.
pub const APP_ID: u64 = 123;
pub const INSTALLATION_ID: u64 = 456;
/// The organization and the user that have the App installed.
pub const ORG: &str = "flux-org";
pub const USER: &str = "flux-user";

fn openssl(args: &[&str], dir: &Path) -> Result<()> {
    let binary = crate::tools::openssl()?;
    let output = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .output()
        .context(|| format!("running openssl {args:?}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            context: format!("openssl {args:?}"),
            message: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// A fresh 2048-bit App key as PEM (PKCS#8 or PKCS#1) and its public key (RSAPublicKey DER).
pub fn app_key(dir: &Path, pkcs8: bool) -> Result<(Vec<u8>, Vec<u8>)> {
    if pkcs8 {
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "key.pem",
            ],
            dir,
        )?;
    } else {
        openssl(&["genrsa", "-traditional", "-out", "key.pem", "2048"], dir)?;
    }
    openssl(
        &[
            "rsa",
            "-in",
            "key.pem",
            "-RSAPublicKey_out",
            "-outform",
            "DER",
            "-out",
            "pub.der",
        ],
        dir,
    )?;
    let pem = std::fs::read(dir.join("key.pem")).context(|| "reading key.pem".into())?;
    let public = std::fs::read(dir.join("pub.der")).context(|| "reading pub.der".into())?;
    Ok((pem, public))
}

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC with whole seconds, as GitHub writes `expires_at`.
fn rfc3339(time: SystemTime) -> String {
    let secs = i64::try_from(epoch_seconds(time)).unwrap_or(i64::MAX);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Checks the App JWT; `Err` is the reason for a 401.
fn verify_jwt(headers: &HeaderMap, public_key: &[u8]) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let jwt = auth.strip_prefix("Bearer ").ok_or("no Bearer JWT")?;
    if headers.get("user-agent").is_none() {
        return Err("no User-Agent".into());
    }
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not a JWT".into());
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| e.to_string())
    };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
        .map_err(|_| "bad signature".to_string())?;
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
    let now = epoch_seconds(SystemTime::now());
    let (iat, exp) = (
        claims["iat"].as_u64().ok_or("no iat")?,
        claims["exp"].as_u64().ok_or("no exp")?,
    );
    if claims["iss"].as_str() != Some(APP_ID.to_string().as_str()) {
        return Err(format!("iss {}", claims["iss"]));
    }
    if exp.saturating_sub(iat) != 120 || iat > now || exp <= now || exp > now + 600 {
        return Err(format!("iat {iat} exp {exp} now {now}"));
    }
    Ok(())
}

struct State {
    public_key: Vec<u8>,
    token: String,
    token_requests: AtomicUsize,
}

fn router(state: Arc<State>) -> axum::Router {
    let (orgs, users, tokens) = (state.clone(), state.clone(), state);
    axum::Router::new()
        .route(
            "/orgs/{owner}/installation",
            get(
                move |UrlPath(owner): UrlPath<String>, headers: HeaderMap| async move {
                    lookup(&orgs, &headers, owner == ORG)
                },
            ),
        )
        .route(
            "/users/{owner}/installation",
            get(
                move |UrlPath(owner): UrlPath<String>, headers: HeaderMap| async move {
                    lookup(&users, &headers, owner == USER)
                },
            ),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            post(
                move |UrlPath(id): UrlPath<u64>, headers: HeaderMap| async move {
                    tokens.token_requests.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = verify_jwt(&headers, &tokens.public_key) {
                        return (StatusCode::UNAUTHORIZED, e);
                    }
                    if id != INSTALLATION_ID {
                        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into());
                    }
                    let expires = rfc3339(SystemTime::now() + Duration::from_secs(3600));
                    let body = serde_json::json!({
                        "token": tokens.token,
                        "expires_at": expires,
                        "permissions": {"contents": "write"},
                    });
                    (StatusCode::CREATED, body.to_string())
                },
            ),
        )
}

fn lookup(state: &State, headers: &HeaderMap, installed: bool) -> (StatusCode, String) {
    if let Err(e) = verify_jwt(headers, &state.public_key) {
        return (StatusCode::UNAUTHORIZED, e);
    }
    if installed {
        let body = serde_json::json!({"id": INSTALLATION_ID});
        (StatusCode::OK, body.to_string())
    } else {
        (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into())
    }
}

/// A running fake GitHub API on a loopback port; stops when dropped.
pub struct GitHubAppFake {
    base_url: String,
    private_key_pem: Vec<u8>,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for GitHubAppFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubAppFake")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for GitHubAppFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GitHubAppFake {
    /// Generates an App key (PKCS#8 or PKCS#1) and serves the API; installation tokens are
    /// `token` (GitHub's newer ones are long: tests should not assume 40 characters).
    pub async fn start(pkcs8: bool, token: impl Into<String>) -> Result<Self> {
        let dir = tempfile::tempdir().context(|| "creating a key directory".into())?;
        let (private_key_pem, public_key) = app_key(dir.path(), pkcs8)?;
        let state = Arc::new(State {
            public_key,
            token: token.into(),
            token_requests: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context(|| "binding the GitHub fake".into())?;
        let addr = listener
            .local_addr()
            .context(|| "the GitHub fake's address".into())?;
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://{addr}"),
            private_key_pem,
            state,
            server,
        })
    }

    /// The API root without a trailing slash (Flux appends one), for `githubAppBaseURL`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The App's private key in PEM.
    pub fn private_key_pem(&self) -> &[u8] {
        &self.private_key_pem
    }

    /// The installation token the fake hands out.
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// How many `access_tokens` requests arrived (refused ones included).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Secret data for this App: ID, key, base URL and `installation` (a key and its value,
    /// e.g. `(INSTALLATION_ID_KEY, "456")` or `(INSTALLATION_OWNER_KEY, ORG)`).
    pub fn secret_data(&self, installation: (&str, &str)) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        data.insert(APP_ID_KEY.to_string(), APP_ID.to_string().into_bytes());
        data.insert(PRIVATE_KEY_KEY.to_string(), self.private_key_pem.clone());
        data.insert(
            installation.0.to_string(),
            installation.1.as_bytes().to_vec(),
        );
        data.insert(BASE_URL_KEY.to_string(), self.base_url.clone().into_bytes());
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_825_600)),
            "2000-02-29T12:00:00Z"
        );
    }
}
