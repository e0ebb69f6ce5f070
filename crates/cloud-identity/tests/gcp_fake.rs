//! GCP against a local fake of the documented endpoints: the metadata server, Google STS
//! and IAM credentials `generateAccessToken`. The fake checks what it receives (header
//! `Metadata-Flavor`, audience, grant type, token types, scopes, the Bearer STS token) and
//! answers as the documentation shows; a mismatch is a 400 naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use cloud_identity::config::Endpoints;
use cloud_identity::gcp::{
    GcpClient, GcpServiceAccountIdentity, SCOPE_CLOUD_PLATFORM, SCOPE_USERINFO_EMAIL,
    workload_identity_provider_audience,
};
use cloud_identity::http::HttpClient;
use cloud_identity::{Error, Provider, Secret, Step};
use common::{assert_no_secret, expect_eq, form, serve};

const K8S_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.kubernetes-sa-token.sig";
const METADATA_TOKEN: &str = "ya29.metadata-access-token";
const STS_TOKEN: &str = "ya29.sts-federated-token";
const IMPERSONATED_TOKEN: &str = "ya29.impersonated-token";
const EMAIL: &str = "flux@my-project.iam.gserviceaccount.com";
const WIP: &str = "projects/123456/locations/global/workloadIdentityPools/pool/providers/k8s";

type Reply = (StatusCode, String);

fn bad(message: String) -> Reply {
    (StatusCode::BAD_REQUEST, message)
}

fn metadata_flavor(headers: &HeaderMap) -> Result<(), Reply> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google") {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            "missing Metadata-Flavor: Google".into(),
        ))
    }
}

/// The fake's expectations for the STS audience.
#[derive(Clone)]
struct Fake {
    sts_audience: String,
    /// Whether the STS call should see only cloud-platform (impersonation follows).
    impersonating: bool,
    slow_metadata: Arc<AtomicBool>,
}

fn app(fake: Fake) -> axum::Router {
    let metadata_fake = fake.clone();
    let sts_fake = fake.clone();
    axum::Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(
                move |headers: HeaderMap,
                      query: axum::extract::Query<std::collections::BTreeMap<String, String>>| {
                    let fake = metadata_fake.clone();
                    async move {
                        if fake.slow_metadata.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        if let Err(reply) = metadata_flavor(&headers) {
                            return reply;
                        }
                        let scopes = format!("{SCOPE_CLOUD_PLATFORM},{SCOPE_USERINFO_EMAIL}");
                        if let Err(e) = expect_eq("scopes", query.get("scopes").map(String::as_str), &scopes) {
                            return bad(e);
                        }
                        (
                            StatusCode::OK,
                            serde_json::json!({"access_token": METADATA_TOKEN, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
                        )
                    }
                },
            ),
        )
        .route(
            "/computeMetadata/v1/project/project-id",
            get(|headers: HeaderMap| async move {
                metadata_flavor(&headers).map(|_| (StatusCode::OK, "my-project".to_string())).unwrap_or_else(|r| r)
            }),
        )
        .route(
            "/computeMetadata/v1/instance/attributes/cluster-location",
            get(|headers: HeaderMap| async move {
                metadata_flavor(&headers).map(|_| (StatusCode::OK, "europe-west1".to_string())).unwrap_or_else(|r| r)
            }),
        )
        .route(
            "/computeMetadata/v1/instance/attributes/cluster-name",
            get(|headers: HeaderMap| async move {
                metadata_flavor(&headers).map(|_| (StatusCode::OK, String::new())).unwrap_or_else(|r| r)
            }),
        )
        .route(
            "/computeMetadata/v1/instance/attributes/huge",
            get(|| async { (StatusCode::OK, "x".repeat(2 * 1024 * 1024)) }),
        )
        .route(
            "/v1/token",
            post(move |body: axum::body::Bytes| {
                let fake = sts_fake.clone();
                async move {
                    let fields = form(&body);
                    let field = |name: &str| fields.get(name).map(String::as_str);
                    let scope = if fake.impersonating {
                        SCOPE_CLOUD_PLATFORM.to_string()
                    } else {
                        format!("{SCOPE_CLOUD_PLATFORM} {SCOPE_USERINFO_EMAIL}")
                    };
                    let checks = [
                        expect_eq("audience", field("audience"), &fake.sts_audience),
                        expect_eq("grant_type", field("grant_type"), "urn:ietf:params:oauth:grant-type:token-exchange"),
                        expect_eq("requested_token_type", field("requested_token_type"), "urn:ietf:params:oauth:token-type:access_token"),
                        expect_eq("subject_token_type", field("subject_token_type"), "urn:ietf:params:oauth:token-type:jwt"),
                        expect_eq("subject_token", field("subject_token"), K8S_TOKEN),
                        expect_eq("scope", field("scope"), &scope),
                    ];
                    if let Some(Err(e)) = checks.into_iter().find(Result::is_err) {
                        return bad(format!("{{\"error\":\"invalid_request\",\"error_description\":\"{e}\"}}"));
                    }
                    (
                        StatusCode::OK,
                        serde_json::json!({
                            "access_token": STS_TOKEN,
                            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                            "token_type": "Bearer",
                            "expires_in": 3600,
                        })
                        .to_string(),
                    )
                }
            }),
        )
        .route(
            &format!("/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"),
            post(|headers: HeaderMap, body: axum::body::Bytes| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if let Err(e) = expect_eq("authorization", auth, &format!("Bearer {STS_TOKEN}")) {
                    return (StatusCode::UNAUTHORIZED, e);
                }
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let want = serde_json::json!({"lifetime": "3600s", "scope": [SCOPE_CLOUD_PLATFORM, SCOPE_USERINFO_EMAIL]});
                if body != want {
                    return bad(format!("body {body}, want {want}"));
                }
                let expire = cloud_identity::time::format_rfc3339(SystemTime::now() + Duration::from_secs(3600));
                (StatusCode::OK, serde_json::json!({"accessToken": IMPERSONATED_TOKEN, "expireTime": expire}).to_string())
            }),
        )
}

async fn start(fake: Fake) -> (GcpClient, Endpoints) {
    let base = serve(app(fake)).await;
    let endpoints = Endpoints {
        gce_metadata_host: Some(format!(
            "{}:{}",
            base.host_str().unwrap(),
            base.port().unwrap()
        )),
        google_sts: Some(base.clone()),
        google_iam_credentials: Some(base),
        ..Endpoints::default()
    };
    (
        GcpClient::new(HttpClient::new(None).unwrap(), endpoints.clone()),
        endpoints,
    )
}

fn fake(sts_audience: String, impersonating: bool) -> Fake {
    Fake {
        sts_audience,
        impersonating,
        slow_metadata: Arc::new(AtomicBool::new(false)),
    }
}

#[tokio::test]
async fn controller_metadata_token_is_the_registry_password() {
    let (client, _) = start(fake(String::new(), false)).await;
    let token = client.metadata_token().await.unwrap();
    let login = token.registry_login();
    assert_eq!(login.username, "oauth2accesstoken");
    assert_eq!(login.password.expose(), METADATA_TOKEN);
    let remaining = login.expires_at.duration_since(SystemTime::now()).unwrap();
    assert!(remaining > Duration::from_secs(3500), "{remaining:?}");
}

#[tokio::test]
async fn workload_identity_federation_with_impersonation() {
    let identity = GcpServiceAccountIdentity {
        workload_identity_provider: Some(WIP.into()),
        gcp_service_account: Some(EMAIL.into()),
    };
    let audience = workload_identity_provider_audience(WIP);
    let (client, _) = start(fake(audience.clone(), true)).await;
    let token = client
        .exchange_service_account_token(&identity, &audience, &Secret::new(K8S_TOKEN))
        .await
        .unwrap();
    assert_eq!(token.token.expose(), IMPERSONATED_TOKEN);
}

#[tokio::test]
async fn workload_identity_federation_without_impersonation_asks_both_scopes() {
    let identity = GcpServiceAccountIdentity {
        workload_identity_provider: Some(WIP.into()),
        gcp_service_account: None,
    };
    let audience = workload_identity_provider_audience(WIP);
    let (client, _) = start(fake(audience.clone(), false)).await;
    let token = client
        .exchange_service_account_token(&identity, &audience, &Secret::new(K8S_TOKEN))
        .await
        .unwrap();
    assert_eq!(token.registry_login().password.expose(), STS_TOKEN);
}

#[tokio::test]
async fn wrong_audience_is_a_clear_sts_error_without_the_token() {
    let (client, _) = start(fake("//iam.googleapis.com/expected".into(), false)).await;
    let err = client
        .exchange_service_account_token(
            &GcpServiceAccountIdentity::default(),
            "//iam.googleapis.com/other",
            &Secret::new(K8S_TOKEN),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Status {
                provider: Provider::Gcp,
                step: Step::GcpStsTokenExchange,
                status: 400,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("audience"), "{text}");
    assert!(text.contains("workload-identity-provider"), "{text}");
    assert_no_secret(&format!("{text} {err:?}"), &[K8S_TOKEN]);
}

#[tokio::test]
async fn gke_cluster_values_and_empty_name() {
    let (client, _) = start(fake(String::new(), false)).await;
    // The fake's cluster-name is empty: Flux's error.
    let err = client.gke_cluster().await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("failed to get GKE cluster name from the metadata service: empty value"),
        "{err}"
    );
    assert_eq!(
        client
            .metadata_value("project/project-id", "project ID")
            .await
            .unwrap(),
        "my-project"
    );
}

#[tokio::test]
async fn slow_metadata_server_times_out_cleanly() {
    let fake = fake(String::new(), false);
    fake.slow_metadata.store(true, Ordering::SeqCst);
    let (_, endpoints) = start(fake).await;
    let client = GcpClient::new(
        HttpClient::with_timeout(None, Duration::from_millis(300)).unwrap(),
        endpoints,
    );
    let started = std::time::Instant::now();
    let err = client.metadata_token().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Transport {
                provider: Provider::Gcp,
                step: Step::GcpMetadataToken,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
}

#[tokio::test]
async fn oversized_answer_is_refused_not_buffered() {
    let (client, _) = start(fake(String::new(), false)).await;
    let err = client
        .metadata_value("instance/attributes/huge", "huge")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("response larger than 1048576 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn gcp_access_token_opens_a_real_registry_as_oauth2accesstoken() {
    use testbed::registry::{Registry, RegistryOptions};

    let (client, _) = start(fake(String::new(), false)).await;
    let login = client.metadata_token().await.unwrap().registry_login();
    let registry = Registry::start(
        RegistryOptions::htpasswd().with_credentials(&login.username, login.password.expose()),
    )
    .await
    .unwrap();
    registry
        .push_tags("project/repo/app", &["1.0.0"])
        .await
        .unwrap();
    let url = format!("{}/v2/project/repo/app/tags/list", registry.base_url());
    let http = reqwest::Client::new();
    let ok = http
        .get(&url)
        .basic_auth("oauth2accesstoken", Some(METADATA_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = http
        .get(&url)
        .basic_auth("oauth2accesstoken", Some("ya29.other"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
