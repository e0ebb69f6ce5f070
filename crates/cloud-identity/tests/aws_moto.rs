//! AWS end to end against moto in server mode (PyPI `moto[server]`, installed by
//! `e2e/moto.sh`, started by `testbed::moto`): web identity token -> STS
//! AssumeRoleWithWebIdentity -> SigV4-signed ECR GetAuthorizationToken -> registry login.
//!
//! moto is an emulator: these tests check our requests against moto's implementation of the
//! AWS APIs, not against AWS itself. In strict mode (`INITIAL_NO_AUTH_ACTION_COUNT`) moto
//! verifies SigV4 signatures and IAM policies, which checks the signer for real.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::time::SystemTime;

use cloud_identity::aws::{
    AwsClient, AwsCredentials, AwsIdentity, service_account_session_name,
    sigv4::{self, SigningScope},
};
use cloud_identity::cache::{CacheEvent, TokenCache};
use cloud_identity::config::{AwsEnvironment, Endpoints};
use cloud_identity::http::{HttpClient, HttpRequest, Method};
use cloud_identity::registry::{RegistryInput, parse_registry, registry_host};
use cloud_identity::{Error, Provider, RegistryLogin, Secret, Step};
use testbed::moto::{Moto, MotoOptions};

/// The account in the role ARN; moto's ECR then hands out this registry's token.
const ACCOUNT: &str = "210987654321";
/// moto's default account: IAM roles made in setup live here, so strict mode finds them.
const DEFAULT_ACCOUNT: &str = "123456789012";
const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.web-identity-token.sig";

fn role_arn(name: &str) -> String {
    role_arn_in(ACCOUNT, name)
}

fn role_arn_in(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

fn moto_endpoints(moto: &Moto) -> Endpoints {
    let url = url::Url::parse(&moto.endpoint()).unwrap();
    Endpoints {
        aws_sts: Some(url.clone()),
        aws_ecr: Some(url.clone()),
        aws_ecr_public: Some(url),
        ..Endpoints::default()
    }
}

fn http() -> HttpClient {
    HttpClient::new(None).unwrap()
}

fn ecr_input() -> RegistryInput {
    let image = format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/apps/podinfo");
    parse_registry(Provider::Aws, &registry_host(&image), None).unwrap()
}

/// An IAM call signed with throwaway keys (moto accepts any before strict mode starts).
async fn iam(moto: &Moto, fields: &[(&str, &str)]) {
    let mut request =
        HttpRequest::new(Method::Post, url::Url::parse(&moto.endpoint()).unwrap()).form(fields);
    let setup_keys = AwsCredentials {
        access_key_id: "AKIASETUPEXAMPLE".into(),
        secret_access_key: Secret::new("setup-secret"),
        session_token: None,
        expires_at: None,
    };
    sigv4::sign(
        &mut request,
        &setup_keys,
        SigningScope {
            region: "us-east-1",
            service: "iam",
            at: SystemTime::now(),
        },
    );
    let client = reqwest::Client::new();
    let mut builder = client.post(request.url.clone()).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(
        status.is_success(),
        "IAM {fields:?}: {status} {body}\n{}",
        moto.log_tail()
    );
}

async fn create_role(moto: &Moto, name: &str, allow_ecr: bool) {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.example"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
    iam(
        moto,
        &[
            ("Action", "CreateRole"),
            ("Version", "2010-05-08"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", trust),
        ],
    )
    .await;
    if allow_ecr {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken"],"Resource":"*"}]}"#;
        iam(
            moto,
            &[
                ("Action", "PutRolePolicy"),
                ("Version", "2010-05-08"),
                ("RoleName", name),
                ("PolicyName", "ecr-pull"),
                ("PolicyDocument", policy),
            ],
        )
        .await;
    }
}

fn service_account_identity(account: &str, role: &str) -> AwsIdentity {
    AwsIdentity::ServiceAccount {
        role_arn: role_arn_in(account, role),
        session_name: service_account_session_name("image-reflector", "apps", "us-east-1"),
        token: Secret::new(WEB_IDENTITY_TOKEN),
    }
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked into: {text}"
        );
    }
}

#[tokio::test]
async fn irsa_token_file_to_sts_to_ecr_login() {
    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WEB_IDENTITY_TOKEN}\n")).unwrap();
    let env = AwsEnvironment {
        web_identity_token_file: Some(token_file),
        role_arn: Some(role_arn("flux")),
        role_session_name: Some(
            "image-reflector-controller.flux-system.us-east-1.fluxcd.io".into(),
        ),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(http(), moto_endpoints(&moto), env);
    let input = ecr_input();
    assert_eq!(input.cache_input(), "us-east-1");

    let credentials = client
        .access_credentials(&input, &AwsIdentity::Controller)
        .await
        .unwrap();
    // Assumed-role keys from STS, valid about an hour.
    assert!(
        credentials.access_key_id.starts_with("ASIA"),
        "{credentials:?}"
    );
    assert!(credentials.session_token.is_some());
    let lifetime = credentials
        .expires_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        lifetime.as_secs() > 3000 && lifetime.as_secs() <= 3600,
        "{lifetime:?}"
    );

    let login = client.ecr_login(&credentials, &input).await.unwrap();
    // moto hands out `AWS:<registryId>-auth-token`, the registry being the role's account.
    assert_eq!(login.username, "AWS");
    assert_eq!(login.password.expose(), format!("{ACCOUNT}-auth-token"));
    // ...and an expiry in 2015.
    assert_eq!(
        cloud_identity::time::epoch_seconds(login.expires_at),
        1_420_070_400
    );
    assert_no_secret(
        &format!("{login:?} {credentials:?}"),
        &[&format!("{ACCOUNT}-auth-token")],
    );
}

#[tokio::test]
async fn expired_ecr_token_is_used_once_and_refetched_never_looping() {
    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let env = AwsEnvironment {
        access_key_id: Some("AKIASTATICEXAMPLE".into()),
        secret_access_key: Some(Secret::new("static-secret")),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(http(), moto_endpoints(&moto), env);
    let input = ecr_input();
    let cache: TokenCache<RegistryLogin> =
        TokenCache::new(10, std::time::Duration::from_secs(3600));
    let fetches = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..2 {
        let (login, event) = cache
            .get_or_fetch("aws/us-east-1", || async {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let login = client
                    .registry_login(&input, &AwsIdentity::Controller)
                    .await?;
                let expires_at = login.expires_at;
                Ok::<_, Error>((login, expires_at))
            })
            .await
            .unwrap();
        assert_eq!(event, CacheEvent::Miss);
        // Static keys: the registry is the signer's (moto's default) account.
        assert_eq!(login.password.expose(), "123456789012-auth-token");
    }
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn strict_moto_verifies_our_sigv4_and_the_role_policy() {
    // Three unauthenticated actions (CreateRole, PutRolePolicy, STS), then every request's
    // SigV4 signature and IAM policy are checked.
    let moto = Moto::start(MotoOptions {
        verify_after: Some(3),
    })
    .await
    .unwrap();
    create_role(&moto, "flux", true).await;
    let client = AwsClient::new(http(), moto_endpoints(&moto), AwsEnvironment::default());
    let input = ecr_input();
    let credentials = client
        .access_credentials(&input, &service_account_identity(DEFAULT_ACCOUNT, "flux"))
        .await
        .unwrap();
    let login = match client.ecr_login(&credentials, &input).await {
        Ok(login) => login,
        Err(err) => panic!("{err}\n{}", moto.log_tail()),
    };
    assert_eq!(login.username, "AWS");
    assert_eq!(
        login.password.expose(),
        format!("{DEFAULT_ACCOUNT}-auth-token")
    );

    // The same call with a wrong secret is refused: the 200 above was a verified signature.
    let mut tampered = credentials.clone();
    tampered.secret_access_key = Secret::new("not-the-secret");
    let err = client.ecr_login(&tampered, &input).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
}

#[tokio::test]
async fn denied_role_names_provider_step_and_permission_without_secrets() {
    let moto = Moto::start(MotoOptions {
        verify_after: Some(2),
    })
    .await
    .unwrap();
    create_role(&moto, "no-ecr", false).await;
    let client = AwsClient::new(http(), moto_endpoints(&moto), AwsEnvironment::default());
    let input = ecr_input();
    let credentials = client
        .access_credentials(&input, &service_account_identity(DEFAULT_ACCOUNT, "no-ecr"))
        .await
        .unwrap();
    let err = client.ecr_login(&credentials, &input).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Status {
                provider: Provider::Aws,
                step: Step::EcrGetAuthorizationToken,
                status: 403,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("AccessDenied"), "{text}");
    assert!(text.contains("ecr:GetAuthorizationToken"), "{text}");
    let session = credentials
        .session_token
        .as_ref()
        .unwrap()
        .expose()
        .to_string();
    assert_no_secret(
        &format!("{text} {err:?}"),
        &[
            &session,
            credentials.secret_access_key.expose(),
            WEB_IDENTITY_TOKEN,
        ],
    );
}

#[tokio::test]
async fn absent_sts_endpoint_fails_cleanly_naming_the_step() {
    // A port nobody listens on.
    let port = testbed::process::free_port().unwrap();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let endpoints = Endpoints {
        aws_sts: Some(url),
        ..Endpoints::default()
    };
    let client = AwsClient::new(http(), endpoints, AwsEnvironment::default());
    let started = std::time::Instant::now();
    let err = client
        .access_credentials(&ecr_input(), &service_account_identity(ACCOUNT, "flux"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < cloud_identity::http::TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Transport {
                provider: Provider::Aws,
                step: Step::StsAssumeRoleWithWebIdentity,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("aws: STS AssumeRoleWithWebIdentity: request to"),
        "{text}"
    );
    assert_no_secret(&text, &[WEB_IDENTITY_TOKEN]);
}

#[tokio::test]
async fn pod_identity_agent_credentials_then_ecr() {
    // moto has no EKS Pod Identity agent: a one-route fake checks the Authorization header
    // (the token file's contents, no `Bearer`) and answers the four fields.
    use axum::http::{HeaderMap, StatusCode};
    const AGENT_TOKEN: &str = "eks-pod-identity-token-value";
    let app = axum::Router::new().route(
        "/v1/credentials",
        axum::routing::get(|headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(AGENT_TOKEN) {
                return (StatusCode::UNAUTHORIZED, "bad token".to_string());
            }
            let expiration = cloud_identity::time::format_rfc3339(
                SystemTime::now() + std::time::Duration::from_secs(3600),
            );
            (
                StatusCode::OK,
                serde_json::json!({
                    "AccessKeyId": "ASIAPODIDENTITY",
                    "SecretAccessKey": "pod-identity-secret",
                    "Token": "pod-identity-session",
                    "AccountId": ACCOUNT,
                    "Expiration": expiration,
                })
                .to_string(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = format!("http://{}/v1/credentials", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, AGENT_TOKEN).unwrap();
    let env = AwsEnvironment {
        container_credentials_full_uri: Some(agent.clone()),
        container_authorization_token_file: Some(token_file.clone()),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(http(), moto_endpoints(&moto), env);
    let login = client
        .registry_login(&ecr_input(), &AwsIdentity::Controller)
        .await
        .unwrap();
    assert_eq!(login.username, "AWS");
    assert!(login.password.expose().ends_with("-auth-token"));

    // The token file is re-read on every call: a rotated, wrong token is refused.
    std::fs::write(&token_file, "rotated-but-wrong").unwrap();
    let env = AwsEnvironment {
        container_credentials_full_uri: Some(agent),
        container_authorization_token_file: Some(token_file),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(http(), moto_endpoints(&moto), env);
    let err = client
        .registry_login(&ecr_input(), &AwsIdentity::Controller)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("container credentials"), "{err}");
}

#[tokio::test]
async fn registry_credentials_service_account_flow_against_moto() {
    use cloud_identity::config::Environment;
    use cloud_identity::{RegistryCredentials, ServiceAccountRef};

    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let env = Environment {
        endpoints: moto_endpoints(&moto),
        ..Environment::default()
    };
    let credentials =
        RegistryCredentials::new(env, http(), 100, std::time::Duration::from_secs(3600));
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("eks.amazonaws.com/role-arn".to_string(), role_arn("flux"));
    let sa = ServiceAccountRef {
        name: "reflector",
        namespace: "apps",
        annotations: &annotations,
    };
    let image = format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/apps/podinfo");
    let minted = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..2 {
        let (login, event) = credentials
            .registry_login(Provider::Aws, &image, Some(sa), |audiences| {
                minted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    assert_eq!(audiences, vec!["sts.amazonaws.com".to_string()]);
                    Ok(Secret::new(WEB_IDENTITY_TOKEN))
                }
            })
            .await
            .unwrap();
        // moto's ECR token expired in 2015: used once, fetched again next time.
        assert_eq!(event, CacheEvent::Miss);
        assert_eq!(login.password.expose(), format!("{ACCOUNT}-auth-token"));
    }
    assert_eq!(minted.load(std::sync::atomic::Ordering::SeqCst), 2);

    let mut bad = std::collections::BTreeMap::new();
    bad.insert("eks.amazonaws.com/role-arn".to_string(), "flux".to_string());
    let sa = ServiceAccountRef {
        name: "reflector",
        namespace: "apps",
        annotations: &bad,
    };
    let err = credentials
        .registry_login(Provider::Aws, &image, Some(sa), |_| async {
            panic!("must not mint")
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid eks.amazonaws.com/role-arn annotation: 'flux'"),
        "{err}"
    );
}

#[tokio::test]
async fn the_ecr_login_moto_hands_out_opens_a_real_registry() {
    // moto's ECR credential, put in front of the testbed's docker-registry as its htpasswd
    // user: the registry accepts exactly that pair.
    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let client = AwsClient::new(http(), moto_endpoints(&moto), AwsEnvironment::default());
    let input = ecr_input();
    let credentials = client
        .access_credentials(&input, &service_account_identity(ACCOUNT, "flux"))
        .await
        .unwrap();
    let login = client.ecr_login(&credentials, &input).await.unwrap();

    let registry = testbed::registry::Registry::start(
        testbed::registry::RegistryOptions::htpasswd()
            .with_credentials(&login.username, login.password.expose()),
    )
    .await
    .unwrap();
    registry
        .push_tags("apps/podinfo", &["6.5.0", "6.5.1"])
        .await
        .unwrap();

    let tags_url = format!("{}/v2/apps/podinfo/tags/list", registry.base_url());
    let http = reqwest::Client::new();
    let response = http
        .get(&tags_url)
        .basic_auth(&login.username, Some(login.password.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["6.5.0", "6.5.1"]));

    let refused = http
        .get(&tags_url)
        .basic_auth(&login.username, Some("not-the-ecr-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn ec2_node_role_from_instance_metadata_then_ecr() {
    // moto serves IMDSv2 too: session token, role name, then the role's keys.
    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let mut endpoints = moto_endpoints(&moto);
    endpoints.aws_ec2_metadata = Some(url::Url::parse(&moto.endpoint()).unwrap());
    let client = AwsClient::new(http(), endpoints, AwsEnvironment::default());
    let credentials = client.instance_metadata_credentials().await.unwrap();
    assert!(!credentials.access_key_id.is_empty());
    assert!(credentials.expires_at.is_some());
    let login = client
        .registry_login(&ecr_input(), &AwsIdentity::Controller)
        .await
        .unwrap();
    assert_eq!(login.username, "AWS");

    // Disabled: the chain ends with a message naming what to set.
    let disabled = AwsEnvironment {
        ec2_metadata_disabled: true,
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(http(), moto_endpoints(&moto), disabled);
    let err = client
        .registry_login(&ecr_input(), &AwsIdentity::Controller)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no AWS credentials found"),
        "{err}"
    );
}

#[tokio::test]
async fn service_account_needs_a_region_before_any_token_is_minted() {
    use cloud_identity::config::Environment;
    use cloud_identity::{RegistryCredentials, ServiceAccountRef};

    let credentials = RegistryCredentials::new(
        Environment::default(),
        http(),
        100,
        std::time::Duration::from_secs(3600),
    );
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("eks.amazonaws.com/role-arn".to_string(), role_arn("flux"));
    let sa = ServiceAccountRef {
        name: "reflector",
        namespace: "apps",
        annotations: &annotations,
    };
    // The unanchored pattern matches with an empty region group.
    let image = format!("{ACCOUNT}.dkr.ecr..amazonaws.com/app");
    let err = credentials
        .registry_login(Provider::Aws, &image, Some(sa), |_| async {
            panic!("must not mint")
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("an AWS region is required for authenticating with a service account. please configure one in the object spec"),
        "{err}"
    );
}
