//! `spec.provider: aws` and `gcp` end to end (`azure`: tests/cloud_azure.rs):
//! `image-reflector serve` as a real process with the IRSA environment (web identity token
//! file + role ARN), moto (PyPI `moto[server]`, started by `testbed::moto`) serving STS and
//! ECR, and the testbed's real docker-registry accepting exactly the ECR login moto hands out
//! (htpasswd user `AWS`); for gcp a GKE metadata stand-in and `oauth2accesstoken`.
//!
//! How the ECR host reaches the loopback registry, honestly: the ImageRepository names
//! `<account>.dkr.ecr.us-east-1.amazonaws.com/...` (the host decides the region, as in Flux)
//! with `insecure: true` and a `proxySecretRef` to `testbed::mapping_proxy`, which routes the
//! ECR host to the registry and lets the loopback moto calls through: the token calls go
//! through the object's proxy, as Flux sends them, and the test checks they did. Nothing
//! resolves the ECR name. So this checks the login flow and that its credential opens the
//! registry, not ECR's TLS or ECR itself (moto is an emulator). GCP's metadata server is
//! called directly, as Flux's metadata client does; its tests use `testbed::fault_proxy` in
//! plain forwarding mode for the registry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod cloud_common;
mod serve_common;

use std::net::SocketAddr;
use std::path::Path;

use cloud_common::{serve_with_env, text, wait_failing, wait_ready, write_manifests_for};
use cloud_identity::aws::{AwsClient, AwsIdentity};
use cloud_identity::config::{AwsEnvironment, Endpoints};
use cloud_identity::http::HttpClient;
use cloud_identity::registry::{parse_registry, registry_host};
use cloud_identity::{Provider, Secret};
use serve_common::Serve;
use testbed::fault_proxy::FaultProxy;
use testbed::mapping_proxy::MappingProxy;
use testbed::moto::{Moto, MotoOptions};
use testbed::process::free_port;
use testbed::registry::{Registry, RegistryOptions};

/// The role's account: moto's ECR hands out this registry's token.
const ACCOUNT: &str = "210987654321";
const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.web-identity-token.sig";

fn ecr_image() -> String {
    format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/apps/podinfo")
}

fn role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/flux")
}

/// The ECR login moto gives this role (what the registry must accept).
async fn moto_login(moto: &Moto, token_file: &Path) -> (String, Secret) {
    let url = reqwest::Url::parse(&moto.endpoint()).unwrap();
    let endpoints = Endpoints {
        aws_sts: Some(url.clone()),
        aws_ecr: Some(url),
        ..Endpoints::default()
    };
    let env = AwsEnvironment {
        web_identity_token_file: Some(token_file.to_path_buf()),
        role_arn: Some(role_arn()),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(HttpClient::new(None).unwrap(), endpoints, env);
    let input = parse_registry(Provider::Aws, &registry_host(&ecr_image()), None).unwrap();
    let login = client
        .registry_login(&input, &AwsIdentity::Controller)
        .await
        .unwrap();
    (login.username, login.password)
}

/// `serve` with the IRSA environment and every AWS endpoint at `aws_endpoint`.
async fn serve_with_irsa(
    manifests: &Path,
    storage: &Path,
    log_dir: &Path,
    token_file: &Path,
    aws_endpoint: &str,
) -> Serve {
    let token_file = token_file.display().to_string();
    let role = role_arn();
    serve_with_env(
        manifests,
        storage,
        log_dir,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
            ("AWS_ROLE_ARN", role.as_str()),
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await
}

/// The ECR host on port 80 (the repository is `insecure`), routed to the local registry;
/// moto and other loopback endpoints pass through as they are.
async fn ecr_proxy(registry: &Registry) -> MappingProxy {
    let registry_addr: SocketAddr = registry.host().parse().unwrap();
    MappingProxy::start(&[(&format!("{}:80", ecr_host()), registry_addr)])
        .await
        .unwrap()
}

fn ecr_host() -> String {
    registry_host(&ecr_image())
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_aws_scans_the_registry_with_the_ecr_login_from_irsa() {
    let moto = Moto::start(MotoOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{WEB_IDENTITY_TOKEN}\n")).unwrap();
    let (username, password) = moto_login(&moto, &token_file).await;
    assert_eq!(username, "AWS");

    let registry =
        Registry::start(RegistryOptions::htpasswd().with_credentials(&username, password.expose()))
            .await
            .unwrap();
    registry
        .push_tags("apps/podinfo", &["6.5.0", "6.5.1", "6.6.0"])
        .await
        .unwrap();
    let proxy = ecr_proxy(&registry).await;

    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "aws", &ecr_image(), true);
    let serve = serve_with_irsa(
        &manifests,
        &storage,
        tmp.path(),
        &token_file,
        &moto.endpoint(),
    )
    .await;

    let ready = wait_ready(&serve, 3).await;
    assert!(
        proxy.count(&format!("http://{}/v2/", ecr_host())) > 0,
        "the scan did not go through the proxy: {:?}",
        proxy.seen()
    );
    // STS and ECR were called through spec.proxySecretRef's proxy, as Flux calls them.
    let moto_address = moto.endpoint().trim_end_matches('/').to_string();
    assert!(
        proxy.count(&format!("POST {moto_address}/")) >= 2,
        "the token calls did not go through the proxy: {:?}",
        proxy.seen()
    );

    // No token anywhere we publish.
    let api = format!("{ready:?}");
    let metrics = text(&serve, "/metrics").await;
    let log = serve.log_text();
    for (what, published) in [("API", &api), ("metrics", &metrics), ("log", &log)] {
        assert!(
            !published.contains(password.expose()),
            "the ECR password leaked into the {what}"
        );
        assert!(
            !published.contains(WEB_IDENTITY_TOKEN),
            "the web identity token leaked into the {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_sts_fails_the_scan_with_fluxs_chain_and_no_anonymous_scan() {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("apps/podinfo", &["1.0.0"])
        .await
        .unwrap();
    let proxy = ecr_proxy(&registry).await;
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, WEB_IDENTITY_TOKEN).unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "aws", &ecr_image(), true);
    // Nothing listens there: STS cannot be reached.
    let closed = format!("http://127.0.0.1:{}/", free_port().unwrap());
    let serve = serve_with_irsa(&manifests, &storage, tmp.path(), &token_file, &closed).await;

    let failed = wait_failing(&serve).await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    assert!(
        failed.readiness.message.starts_with(
            "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: aws: STS AssumeRoleWithWebIdentity"
        ),
        "{failed:?}"
    );
    assert_eq!(
        proxy.count(&ecr_host()),
        0,
        "scanned without the cloud login: {:?}",
        proxy.seen()
    );
    assert!(!serve.log_text().contains(WEB_IDENTITY_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_without_ecr_permission_fails_the_scan_with_the_denial_and_no_anonymous_scan() {
    // Strict moto after two actions (CreateRole, STS): the ECR call's signature and the role's
    // IAM policy are checked, and the role may not call ecr:GetAuthorizationToken. The role
    // lives in moto's default account, where strict mode looks it up.
    let moto = Moto::start(MotoOptions {
        verify_after: Some(2),
    })
    .await
    .unwrap();
    moto.create_role("no-ecr", &[]).await.unwrap();
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry
        .push_tags("apps/podinfo", &["1.0.0"])
        .await
        .unwrap();
    let proxy = ecr_proxy(&registry).await;
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, WEB_IDENTITY_TOKEN).unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "aws", &ecr_image(), true);
    let token_file = token_file.display().to_string();
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/no-ecr"),
            ("AWS_ENDPOINT_URL", moto.endpoint().as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await;

    let failed = wait_failing(&serve).await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    let message = &failed.readiness.message;
    assert!(
        message.starts_with(
            "scan failed: failed to create artifact registry credentials: aws: ECR GetAuthorizationToken: "
        ),
        "{message}\n{}",
        moto.log_tail()
    );
    assert!(message.contains("HTTP 403"), "{message}");
    assert!(message.contains("AccessDenied"), "{message}");
    assert!(
        message.ends_with("(check the role's ecr:GetAuthorizationToken permission)"),
        "{message}"
    );
    assert_eq!(
        proxy.count(&ecr_host()),
        0,
        "scanned without the cloud login: {:?}",
        proxy.seen()
    );
    let log = serve.log_text();
    assert!(!log.contains(WEB_IDENTITY_TOKEN) && !message.contains(WEB_IDENTITY_TOKEN));
}

/// The GKE metadata server's access token (what the fake hands out, and the registry accepts).
const GCP_ACCESS_TOKEN: &str = "ya29.fake-gke-metadata-token";

/// A GKE metadata server stand-in: the default service account's token, only with
/// `Metadata-Flavor: Google` (as the real one requires). The n-th token request gets
/// `tokens[n]` (the last one from then on). Returns its `host:port` and a counter of the
/// token requests it answered.
async fn gke_metadata_server(
    tokens: &'static [&'static str],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let app = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/token",
        axum::routing::get(move |headers: HeaderMap| {
            let counter = counter.clone();
            async move {
                if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                    return (StatusCode::FORBIDDEN, "missing Metadata-Flavor".to_string());
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let token = tokens[n.min(tokens.len() - 1)];
                (
                    StatusCode::OK,
                    serde_json::json!({
                        "access_token": token,
                        "expires_in": 3599,
                        "token_type": "Bearer"
                    })
                    .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (host, served)
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_gcp_scans_the_registry_with_the_gke_metadata_token() {
    let (metadata_host, served) = gke_metadata_server(&[GCP_ACCESS_TOKEN]).await;
    // GCP registries take `oauth2accesstoken` and the access token (Flux, reference §3).
    let registry = Registry::start(
        RegistryOptions::htpasswd().with_credentials("oauth2accesstoken", GCP_ACCESS_TOKEN),
    )
    .await
    .unwrap();
    registry
        .push_tags("team/app", &["1.0.0", "1.1.0"])
        .await
        .unwrap();
    let proxy = FaultProxy::start(&registry.host()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(
        &manifests,
        &proxy.url(),
        "gcp",
        "europe-west1-docker.pkg.dev/team/app",
        true,
    );
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
    )
    .await;

    let ready = wait_ready(&serve, 2).await;
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(proxy.requests() > 0);
    let metrics = text(&serve, "/metrics").await;
    for published in [format!("{ready:?}"), metrics, serve.log_text()] {
        assert!(
            !published.contains(GCP_ACCESS_TOKEN),
            "the GCP token leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_cloud_login_is_dropped_and_fetched_again_once() {
    // The first token (valid for an hour, so cached) is one the registry refuses, as after a
    // revocation; the metadata server hands out an accepted one from the second request on.
    const STALE: &str = "ya29.revoked-token";
    let (metadata_host, served) = gke_metadata_server(&[STALE, GCP_ACCESS_TOKEN]).await;
    let registry = Registry::start(
        RegistryOptions::htpasswd().with_credentials("oauth2accesstoken", GCP_ACCESS_TOKEN),
    )
    .await
    .unwrap();
    registry.push_tags("team/app", &["1.0.0"]).await.unwrap();
    let proxy = FaultProxy::start(&registry.host()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "gcp", "gcr.io/team/app", true);
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
    )
    .await;

    let ready = wait_ready(&serve, 1).await;
    // Exactly one refetch: the refused token was dropped, the accepted one stays cached.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
    for published in [format!("{ready:?}"), serve.log_text()] {
        assert!(!published.contains(STALE) && !published.contains(GCP_ACCESS_TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_gke_metadata_server_times_out_cleanly() {
    // The metadata server accepts the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metadata_host = silent.local_addr().unwrap().to_string();
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    registry.push_tags("team/app", &["1.0.0"]).await.unwrap();
    let proxy = FaultProxy::start(&registry.host()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests_for(&manifests, &proxy.url(), "gcp", "gcr.io/team/app", true);
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
    )
    .await;

    let failed = wait_failing(&serve).await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    let expected = format!(
        "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: gcp: metadata server access token: request to http://{metadata_host}/computeMetadata/v1/instance/service-accounts/default/token failed: timed out after 10s"
    );
    assert!(
        failed.readiness.message.starts_with(&expected),
        "{failed:?}"
    );
    assert_eq!(proxy.requests(), 0, "scanned without the cloud login");
    drop(silent);
}
