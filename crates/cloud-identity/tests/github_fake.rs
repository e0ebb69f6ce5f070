//! GitHub App against a local fake of the documented API: the fake verifies the App JWT's
//! RS256 signature with the App's public key (extracted by the `openssl` CLI, independently
//! of our key parsing), its `iss`, `iat` and `exp`, then answers the installation lookup and
//! `POST /app/installations/{id}/access_tokens` as GitHub does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod common;

use std::time::{Duration, SystemTime};

use cloud_identity::github::{
    GitHubAppConfig, GitHubClient, INSTALLATION_ID_KEY, INSTALLATION_OWNER_KEY,
};
use cloud_identity::http::HttpClient;
use cloud_identity::{Error, Provider, Step};
use common::assert_no_secret;
use testbed::github_app::{GitHubAppFake, ORG, USER, app_key};

/// The fake (kept alive by the caller), the config from its Secret data, and its token.
async fn setup(
    pkcs8: bool,
    installation: (&str, &str),
) -> (GitHubAppConfig, String, GitHubAppFake) {
    // GitHub's newer stateless tokens are long: never assume 40 characters.
    let fake = GitHubAppFake::start(pkcs8, format!("ghs_{}", "x".repeat(200)))
        .await
        .unwrap();
    let header = if pkcs8 {
        "-----BEGIN PRIVATE KEY-----"
    } else {
        "-----BEGIN RSA PRIVATE KEY-----"
    };
    assert!(String::from_utf8_lossy(fake.private_key_pem()).starts_with(header));
    // The base URL has no trailing slash: it is appended, the rest used verbatim.
    let data = fake.secret_data(installation);
    let config = GitHubAppConfig::from_secret_data(&data, "apps/github-app").unwrap();
    (config, fake.token().to_string(), fake)
}

#[tokio::test]
async fn installation_id_pkcs1_key_gives_x_access_token() {
    let (config, token, _fake) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    let login = client.installation_token(&config).await.unwrap();
    assert_eq!(login.username, "x-access-token");
    assert_eq!(login.password.expose(), token);
    assert!(login.expires_at > SystemTime::now() + Duration::from_secs(3000));
    assert_no_secret(&format!("{login:?} {config:?}"), &[&token, "PRIVATE KEY"]);
}

#[tokio::test]
async fn owner_lookup_org_then_user_with_pkcs8_key() {
    let (config, token, _fake) = setup(true, (INSTALLATION_OWNER_KEY, ORG)).await;
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

    let (config, token, _fake) = setup(true, (INSTALLATION_OWNER_KEY, USER)).await;
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
    let (config, _, _fake) = setup(false, (INSTALLATION_OWNER_KEY, "nobody")).await;
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
    let (mut config, _, _fake) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let dir = tempfile::tempdir().unwrap();
    let (other_pem, _) = app_key(dir.path(), false).unwrap();
    config.private_key = cloud_identity::github::AppKey::from_pem(&other_pem).unwrap();
    let client = GitHubClient::new(HttpClient::new(None).unwrap());
    let err = client.installation_token(&config).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("bad signature"), "{err}");
}

#[tokio::test]
async fn installation_token_pushes_a_commit_to_a_real_git_server() {
    use testbed::git::{GitHttpServer, GitHttpServerOptions, auth_env};

    let (config, _, _fake) = setup(false, (INSTALLATION_ID_KEY, "456")).await;
    let login = GitHubClient::new(HttpClient::new(None).unwrap())
        .installation_token(&config)
        .await
        .unwrap();
    // The git server (lighttpd + git http-backend) accepts exactly x-access-token:<token>.
    let server = GitHttpServer::start(GitHttpServerOptions {
        username: Some(login.username.clone()),
        password: Some(login.password.expose().to_string()),
        repos: None,
        tls: None,
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
