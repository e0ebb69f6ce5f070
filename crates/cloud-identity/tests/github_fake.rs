//! GitHub App against a local fake of the documented API: the fake verifies the App JWT's
//! RS256 signature with the App's public key (extracted by the `openssl` CLI, independently
//! of our key parsing), its `iss`, `iat` and `exp`, then answers the installation lookup and
//! `POST /app/installations/{id}/access_tokens` as GitHub does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use cloud_identity::github::{
    APP_ID_KEY, BASE_URL_KEY, GitHubAppConfig, GitHubClient, INSTALLATION_ID_KEY,
    INSTALLATION_OWNER_KEY, PRIVATE_KEY_KEY,
};
use cloud_identity::http::HttpClient;
use cloud_identity::{Error, Provider, Step};
use common::{assert_no_secret, serve};

const APP_ID: u64 = 123;
const INSTALLATION_ID: u64 = 456;
const ORG: &str = "flux-org";
const USER: &str = "flux-user";

fn openssl(args: &[&str], dir: &Path) {
    let binary = testbed::tools::openssl().unwrap();
    let output = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh App key as PEM (PKCS#1 or PKCS#8) and its public key (RSAPublicKey DER).
fn app_key(dir: &Path, pkcs8: bool) -> (Vec<u8>, Vec<u8>) {
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
        );
    } else {
        openssl(&["genrsa", "-traditional", "-out", "key.pem", "2048"], dir);
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
    );
    let pem = std::fs::read(dir.join("key.pem")).unwrap();
    let header = if pkcs8 {
        "-----BEGIN PRIVATE KEY-----"
    } else {
        "-----BEGIN RSA PRIVATE KEY-----"
    };
    assert!(String::from_utf8_lossy(&pem).starts_with(header));
    (pem, std::fs::read(dir.join("pub.der")).unwrap())
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
    let now = cloud_identity::time::epoch_seconds(SystemTime::now());
    let (iat, exp) = (
        claims["iat"].as_u64().ok_or("no iat")?,
        claims["exp"].as_u64().ok_or("no exp")?,
    );
    if claims["iss"].as_str() != Some(APP_ID.to_string().as_str()) {
        return Err(format!("iss {}", claims["iss"]));
    }
    if exp - iat != 120 || iat > now || exp <= now || exp > now + 600 {
        return Err(format!("iat {iat} exp {exp} now {now}"));
    }
    Ok(())
}

struct Fake {
    public_key: Vec<u8>,
    token: String,
}

fn app(fake: Arc<Fake>) -> axum::Router {
    let (orgs, users, tokens) = (fake.clone(), fake.clone(), fake);
    axum::Router::new()
        .route(
            "/orgs/{owner}/installation",
            get(move |UrlPath(owner): UrlPath<String>, headers: HeaderMap| async move {
                if let Err(e) = verify_jwt(&headers, &orgs.public_key) {
                    return (StatusCode::UNAUTHORIZED, e);
                }
                if owner == ORG {
                    (StatusCode::OK, serde_json::json!({"id": INSTALLATION_ID, "account": {"login": ORG}}).to_string())
                } else {
                    (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.to_string())
                }
            }),
        )
        .route(
            "/users/{owner}/installation",
            get(move |UrlPath(owner): UrlPath<String>, headers: HeaderMap| async move {
                if let Err(e) = verify_jwt(&headers, &users.public_key) {
                    return (StatusCode::UNAUTHORIZED, e);
                }
                if owner == USER {
                    (StatusCode::OK, serde_json::json!({"id": INSTALLATION_ID}).to_string())
                } else {
                    (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.to_string())
                }
            }),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            post(move |UrlPath(id): UrlPath<u64>, headers: HeaderMap| async move {
                if let Err(e) = verify_jwt(&headers, &tokens.public_key) {
                    return (StatusCode::UNAUTHORIZED, e);
                }
                if id != INSTALLATION_ID {
                    return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.to_string());
                }
                let expires = cloud_identity::time::format_rfc3339(SystemTime::now() + Duration::from_secs(3600));
                (StatusCode::CREATED, serde_json::json!({"token": tokens.token, "expires_at": expires, "permissions": {"contents": "write"}}).to_string())
            }),
        )
}

async fn setup(
    pkcs8: bool,
    installation: (&str, &str),
) -> (GitHubAppConfig, String, BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let (pem, public_key) = app_key(dir.path(), pkcs8);
    // GitHub's newer stateless tokens are long: never assume 40 characters.
    let token = format!("ghs_{}", "x".repeat(200));
    let base = serve(app(Arc::new(Fake {
        public_key,
        token: token.clone(),
    })))
    .await;
    let mut data = BTreeMap::new();
    data.insert(APP_ID_KEY.to_string(), APP_ID.to_string().into_bytes());
    data.insert(PRIVATE_KEY_KEY.to_string(), pem);
    data.insert(
        installation.0.to_string(),
        installation.1.as_bytes().to_vec(),
    );
    // Without the trailing slash: it is appended, the rest used verbatim.
    data.insert(
        BASE_URL_KEY.to_string(),
        base.as_str().trim_end_matches('/').as_bytes().to_vec(),
    );
    let config = GitHubAppConfig::from_secret_data(&data, "apps/github-app").unwrap();
    (config, token, data)
}

#[tokio::test]
async fn installation_id_pkcs1_key_gives_x_access_token() {
    let (config, token, _) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    let login = client.installation_token(&config).await.unwrap();
    assert_eq!(login.username, "x-access-token");
    assert_eq!(login.password.expose(), token);
    assert!(login.expires_at > SystemTime::now() + Duration::from_secs(3000));
    assert_no_secret(&format!("{login:?} {config:?}"), &[&token, "PRIVATE KEY"]);
}

#[tokio::test]
async fn owner_lookup_org_then_user_with_pkcs8_key() {
    let (config, token, _) = setup(true, (INSTALLATION_OWNER_KEY, ORG)).await;
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    assert_eq!(
        client
            .installation_token(&config)
            .await
            .unwrap()
            .password
            .expose(),
        token
    );

    let (config, token, _) = setup(true, (INSTALLATION_OWNER_KEY, USER)).await;
    assert_eq!(
        client
            .installation_token(&config)
            .await
            .unwrap()
            .password
            .expose(),
        token
    );
}

#[tokio::test]
async fn unknown_owner_joins_both_lookup_errors() {
    let (config, _, _) = setup(false, (INSTALLATION_OWNER_KEY, "nobody")).await;
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    let err = client.installation_token(&config).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidResponse {
                provider: Provider::GitHub,
                step: Step::GitHubInstallationLookup,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("failed to find organization installation: "),
        "{text}"
    );
    assert!(
        text.contains("failed to find user installation: "),
        "{text}"
    );
    assert!(text.contains("HTTP 404"), "{text}");
}

#[tokio::test]
async fn a_different_key_is_refused_by_the_fake() {
    // The fake holds one App's public key; a config with another key must fail, so the
    // passing tests above show the signature was really checked.
    let (mut config, _, _) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let dir = tempfile::tempdir().unwrap();
    let (other_pem, _) = app_key(dir.path(), false);
    config.private_key = cloud_identity::github::AppKey::from_pem(&other_pem).unwrap();
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    let err = client.installation_token(&config).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("bad signature"), "{err}");
}

#[tokio::test]
async fn installation_token_pushes_a_commit_to_a_real_git_server() {
    use testbed::git::{GitHttpServer, GitHttpServerOptions, auth_env};

    let (config, _, _) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let login = GitHubClient::new(HttpClient::new(None).unwrap())
        .installation_token(&config)
        .await
        .unwrap();
    // The git server (lighttpd + git http-backend) accepts exactly x-access-token:<token>.
    let server = GitHttpServer::start(GitHttpServerOptions {
        username: Some(login.username.clone()),
        password: Some(login.password.expose().to_string()),
        repos: None,
    })
    .await
    .unwrap();
    let before = server
        .repos()
        .create("fleet", &[("apps/podinfo.yaml", "image: podinfo:6.5.0\n")])
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str], auth: &[(String, String)]| {
        let mut command = testbed::git::git_cli().unwrap();
        command
            .current_dir(work.path())
            .args(args)
            .envs(auth.iter().cloned());
        command.output().unwrap()
    };
    let token_auth = auth_env(&login.username, login.password.expose());
    let clone = git(&["clone", "-q", &server.url("fleet"), "."], &token_auth);
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    std::fs::write(
        work.path().join("apps/podinfo.yaml"),
        "image: podinfo:6.5.1\n",
    )
    .unwrap();
    assert!(
        git(&["commit", "-qam", "podinfo 6.5.1"], &[])
            .status
            .success()
    );

    // A wrong token is refused; the App's token pushes.
    let refused = git(
        &["push", "-q", "origin", "HEAD"],
        &auth_env("x-access-token", "ghs_wrong"),
    );
    assert!(!refused.status.success());
    let pushed = git(&["push", "-q", "origin", "HEAD"], &token_auth);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let branch = server
        .repos()
        .branches("fleet")
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let after = server
        .repos()
        .head_commit("fleet", &branch)
        .unwrap()
        .unwrap();
    assert_ne!(after, before);
    assert_eq!(
        server
            .repos()
            .commit_message("fleet", &after)
            .unwrap()
            .trim(),
        "podinfo 6.5.1"
    );
}
