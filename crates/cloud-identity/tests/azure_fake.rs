//! Azure against a local fake of the documented endpoints: Entra ID's token endpoint
//! (`/<tenant>/oauth2/v2.0/token`), IMDS and ACR's `/oauth2/exchange`. The fake checks
//! grant type, client assertion, scopes, the `Metadata: true` header and the exchange form,
//! and answers as the documentation shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use cloud_identity::azure::{ACR_SCOPE, AzureClient, AzureIdentity, REGISTRY_USERNAME};
use cloud_identity::config::{AzureEnvironment, Endpoints};
use cloud_identity::http::HttpClient;
use cloud_identity::{Error, Provider, Secret, Step};
use common::{assert_no_secret, expect_eq, form, serve};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5a5d0a5e-0000-4000-8000-00000000c11e";
const CLIENT_SECRET: &str = "app-client-secret-value";
const K8S_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.azure-federated-token.sig";
const AAD_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.entra-access-token.sig";
const IMDS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.imds-access-token.sig";
const REGISTRY: &str = "fluxtest.azurecr.io";
const REFRESH_EXP: u64 = 1_900_000_000;

type Reply = (StatusCode, String);

fn refresh_token() -> String {
    let enc = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    format!(
        "{}.{}.c2ln",
        enc(r#"{"alg":"RS256","typ":"JWT"}"#),
        enc(&format!(
            r#"{{"exp":{REFRESH_EXP},"grant_type":"refresh_token","aud":"{REGISTRY}"}}"#
        ))
    )
}

fn check(checks: Vec<Result<(), String>>) -> Result<(), Reply> {
    match checks.into_iter().find(Result::is_err) {
        Some(Err(e)) => Err((
            StatusCode::BAD_REQUEST,
            format!(r#"{{"error":"invalid_request","error_description":"{e}"}}"#),
        )),
        _ => Ok(()),
    }
}

fn app() -> axum::Router {
    axum::Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(|Path(tenant): Path<String>, body: axum::body::Bytes| async move {
                let fields = form(&body);
                let field = |name: &str| fields.get(name).map(String::as_str);
                if let Err(reply) = check(vec![
                    expect_eq("tenant", Some(&tenant), TENANT),
                    expect_eq("grant_type", field("grant_type"), "client_credentials"),
                    expect_eq("client_id", field("client_id"), CLIENT),
                    // EnvironmentCredential sends a client secret, workload identity an assertion.
                    match field("client_secret") {
                        Some(secret) => expect_eq("client_secret", Some(secret), CLIENT_SECRET)
                            .and(if field("client_assertion").is_none() { Ok(()) } else { Err("both secret and assertion".into()) }),
                        None => expect_eq("client_assertion_type", field("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                            .and(expect_eq("client_assertion", field("client_assertion"), K8S_TOKEN)),
                    },
                    // MSAL appends the OIDC scopes; the resource scope comes first.
                    expect_eq("scope", field("scope"), &format!("{ACR_SCOPE} openid offline_access profile")),
                ]) {
                    return reply;
                }
                (StatusCode::OK, serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": AAD_TOKEN}).to_string())
            }),
        )
        .route(
            "/metadata/identity/oauth2/token",
            get(|headers: HeaderMap, Query(query): Query<BTreeMap<String, String>>| async move {
                let q = |name: &str| query.get(name).map(String::as_str);
                if let Err(reply) = check(vec![
                    expect_eq("Metadata header", headers.get("metadata").and_then(|v| v.to_str().ok()), "true"),
                    expect_eq("api-version", q("api-version"), "2018-02-01"),
                    expect_eq("resource", q("resource"), "https://containerregistry.azure.net"),
                ]) {
                    return reply;
                }
                let expires_on = cloud_identity::time::epoch_seconds(SystemTime::now() + Duration::from_secs(3600));
                (StatusCode::OK, serde_json::json!({"access_token": IMDS_TOKEN, "expires_in": "3599", "expires_on": expires_on.to_string(), "resource": "https://containerregistry.azure.net", "token_type": "Bearer"}).to_string())
            }),
        )
        .route(
            "/oauth2/exchange",
            post(|body: axum::body::Bytes| async move {
                let fields = form(&body);
                let field = |name: &str| fields.get(name).map(String::as_str);
                let token = field("access_token").unwrap_or_default();
                if let Err(reply) = check(vec![
                    expect_eq("grant_type", field("grant_type"), "access_token"),
                    expect_eq("service", field("service"), REGISTRY),
                    if token == AAD_TOKEN || token == IMDS_TOKEN { Ok(()) } else { Err(format!("access_token {token:?} is not one the fake issued")) },
                    if field("tenant").is_none() { Ok(()) } else { Err("tenant must not be sent".into()) },
                ]) {
                    return (StatusCode::UNAUTHORIZED, reply.1);
                }
                (StatusCode::OK, serde_json::json!({"refresh_token": refresh_token()}).to_string())
            }),
        )
}

async fn client(env: AzureEnvironment) -> AzureClient {
    let base = serve(app()).await;
    let endpoints = Endpoints {
        azure_authority_host: Some(base.clone()),
        azure_imds: Some(base.clone()),
        acr: Some(base),
        ..Endpoints::default()
    };
    AzureClient::new(HttpClient::new(None).unwrap(), endpoints, env)
}

#[tokio::test]
async fn service_account_token_to_entra_to_acr_refresh_token() {
    let client = client(AzureEnvironment::default()).await;
    let identity = AzureIdentity::ServiceAccount {
        tenant_id: TENANT.into(),
        client_id: CLIENT.into(),
        token: Secret::new(K8S_TOKEN),
    };
    let login = client.registry_login(REGISTRY, &identity).await.unwrap();
    assert_eq!(login.username, REGISTRY_USERNAME);
    assert_eq!(login.password.expose(), refresh_token());
    assert_eq!(
        cloud_identity::time::epoch_seconds(login.expires_at),
        REFRESH_EXP
    );
    assert_no_secret(&format!("{login:?}"), &[&refresh_token()]);
}

#[tokio::test]
async fn controller_workload_identity_reads_the_federated_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, K8S_TOKEN).unwrap();
    let env = AzureEnvironment {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret: None,
        federated_token_file: Some(file),
        cloud: None,
    };
    let client = client(env).await;
    let login = client
        .registry_login(REGISTRY, &AzureIdentity::Controller)
        .await
        .unwrap();
    assert_eq!(login.password.expose(), refresh_token());
}

#[tokio::test]
async fn controller_without_workload_identity_uses_imds() {
    let client = client(AzureEnvironment::default()).await;
    let token = client
        .access_token(ACR_SCOPE, &AzureIdentity::Controller)
        .await
        .unwrap();
    assert_eq!(token.token.expose(), IMDS_TOKEN);
    let login = client.acr_exchange(REGISTRY, &token.token).await.unwrap();
    assert_eq!(login.username, REGISTRY_USERNAME);
}

#[tokio::test]
async fn wrong_client_is_a_clear_entra_error_without_tokens() {
    let client = client(AzureEnvironment::default()).await;
    let identity = AzureIdentity::ServiceAccount {
        tenant_id: TENANT.into(),
        client_id: "someone-else".into(),
        token: Secret::new(K8S_TOKEN),
    };
    let err = client
        .registry_login(REGISTRY, &identity)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Status {
                provider: Provider::Azure,
                step: Step::AzureAdToken,
                status: 400,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("client_id"), "{text}");
    assert!(text.contains("azure.workload.identity/client-id"), "{text}");
    assert_no_secret(&format!("{text} {err:?}"), &[K8S_TOKEN]);
}

#[tokio::test]
async fn registry_credentials_mint_once_then_serve_from_cache() {
    use cloud_identity::cache::CacheEvent;
    use cloud_identity::config::Environment;
    use cloud_identity::{RegistryCredentials, ServiceAccountRef};

    let base = serve(app()).await;
    let env = Environment {
        endpoints: Endpoints {
            azure_authority_host: Some(base.clone()),
            acr: Some(base),
            ..Endpoints::default()
        },
        ..Environment::default()
    };
    let credentials = RegistryCredentials::new(
        env,
        HttpClient::new(None).unwrap(),
        100,
        Duration::from_secs(3600),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "azure.workload.identity/tenant-id".to_string(),
        TENANT.to_string(),
    );
    annotations.insert(
        "azure.workload.identity/client-id".to_string(),
        CLIENT.to_string(),
    );
    let sa = ServiceAccountRef {
        name: "reflector",
        namespace: "apps",
        annotations: &annotations,
    };
    let minted = std::sync::atomic::AtomicUsize::new(0);
    let image = format!("{REGISTRY}/podinfo");
    for expected in [CacheEvent::Miss, CacheEvent::Hit] {
        let (login, event) = credentials
            .registry_login(Provider::Azure, &image, Some(sa), |audiences| {
                minted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    assert_eq!(audiences, vec!["api://AzureADTokenExchange".to_string()]);
                    Ok(Secret::new(K8S_TOKEN))
                }
            })
            .await
            .unwrap();
        assert_eq!(event, expected);
        assert_eq!(login.password.expose(), refresh_token());
    }
    assert_eq!(minted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A TokenRequest failure is worded as Flux words it.
    let other = ServiceAccountRef {
        name: "other",
        namespace: "apps",
        annotations: &annotations,
    };
    let err = credentials
        .registry_login(Provider::Azure, &image, Some(other), |_| async {
            Err("serviceaccounts \"other\" is forbidden".to_string())
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("failed to create kubernetes token for service account 'apps/other': serviceaccounts \"other\" is forbidden"),
        "{err}"
    );

    // Missing annotations fail before any token is minted.
    let empty = BTreeMap::new();
    let bare = ServiceAccountRef {
        name: "bare",
        namespace: "apps",
        annotations: &empty,
    };
    let err = credentials
        .registry_login(Provider::Azure, &image, Some(bare), |_| async {
            panic!("must not mint")
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("azure tenant ID is not set"),
        "{err}"
    );
    // A host that is not ACR is refused with Flux's text.
    let err = credentials
        .registry_login(Provider::Azure, "ghcr.io/app", None, |_| async {
            panic!("must not mint")
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid Azure registry: 'ghcr.io'"),
        "{err}"
    );
}

#[tokio::test]
async fn controller_environment_credential_with_client_secret_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "not-used").unwrap();
    let env = AzureEnvironment {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        federated_token_file: Some(file),
        cloud: None,
    };
    let client = client(env).await;
    let token = client
        .access_token(ACR_SCOPE, &AzureIdentity::Controller)
        .await
        .unwrap();
    assert_eq!(token.token.expose(), AAD_TOKEN);

    // A wrong secret is final (no fall-through to the token file), and not in the error.
    let env = AzureEnvironment {
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret: Some(Secret::new("wrong-secret-value")),
        federated_token_file: None,
        cloud: None,
    };
    let client = self::client(env).await;
    let err = client
        .access_token(ACR_SCOPE, &AzureIdentity::Controller)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("AZURE_CLIENT_SECRET"), "{err}");
    assert_no_secret(&format!("{err} {err:?}"), &["wrong-secret-value"]);
}

#[tokio::test]
async fn acr_refresh_token_opens_a_real_token_auth_registry() {
    // ACR's registry side is the Docker token flow with Basic `0000…:<refresh token>` at the
    // realm; the testbed's docker-registry in token mode speaks exactly that.
    use testbed::registry::{Registry, RegistryOptions, TOKEN_SERVICE};

    let client = client(AzureEnvironment::default()).await;
    let identity = AzureIdentity::ServiceAccount {
        tenant_id: TENANT.into(),
        client_id: CLIENT.into(),
        token: Secret::new(K8S_TOKEN),
    };
    let login = client.registry_login(REGISTRY, &identity).await.unwrap();
    let registry = Registry::start(
        RegistryOptions::token().with_credentials(&login.username, login.password.expose()),
    )
    .await
    .unwrap();
    registry
        .push_tags("apps/podinfo", &["6.5.0"])
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let realm = registry.token_realm().unwrap();
    let token_answer = |password: String| {
        http.get(&realm)
            .query(&[
                ("service", TOKEN_SERVICE),
                ("scope", "repository:apps/podinfo:pull"),
            ])
            .basic_auth(&login.username, Some(password))
            .send()
    };
    let answer = token_answer(login.password.expose().to_string())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    let bearer = answer["access_token"].as_str().unwrap().to_string();
    let tags: serde_json::Value = http
        .get(format!("{}/v2/apps/podinfo/tags/list", registry.base_url()))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["6.5.0"]));
    let refused = token_answer("not-the-refresh-token".into()).await.unwrap();
    assert_eq!(refused.status(), 401);
}
