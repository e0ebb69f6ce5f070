//! `spec.provider: aws` (and `gcp`, see its test) end to end: `image-reflector serve` as a real process with the IRSA
//! environment (web identity token file + role ARN), moto (PyPI `moto[server]`, started by
//! `testbed::moto`) serving STS and ECR, and the testbed's real docker-registry accepting
//! exactly the ECR login moto hands out (htpasswd user `AWS`).
//!
//! How the ECR host reaches the loopback registry, honestly: the ImageRepository names
//! `<account>.dkr.ecr.us-east-1.amazonaws.com/...` (the host decides the region, as in Flux)
//! with `insecure: true` and a `proxySecretRef` whose address is `testbed::fault_proxy` in
//! plain forwarding mode. The controller sends absolute-form HTTP requests to that proxy,
//! which forwards every one to the registry whatever the host; nothing resolves the ECR name.
//! So this checks the login flow and that its credential opens the registry, not ECR's TLS
//! or ECR itself (moto is an emulator).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod serve_common;

use std::path::Path;
use std::time::Duration;

use api_types::http_api::ImageRepositoryInfo;
use base64::Engine as _;
use cloud_identity::aws::{AwsClient, AwsIdentity};
use cloud_identity::config::{AwsEnvironment, Endpoints};
use cloud_identity::http::HttpClient;
use cloud_identity::registry::{parse_registry, registry_host};
use cloud_identity::{Provider, Secret};
use serve_common::Serve;
use testbed::controllers::{serve_manifests_command, start_serving};
use testbed::fault_proxy::FaultProxy;
use testbed::moto::{Moto, MotoOptions};
use testbed::process::free_port;
use testbed::registry::{Registry, RegistryOptions};

const WAIT: Duration = Duration::from_secs(60);
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

fn write_manifests(dir: &Path, proxy_url: &str) {
    write_manifests_for(dir, proxy_url, "aws", &ecr_image());
}

fn write_manifests_for(dir: &Path, proxy_url: &str, provider: &str, image: &str) {
    let address = base64::engine::general_purpose::STANDARD.encode(proxy_url);
    std::fs::write(
        dir.join("objects.yaml"),
        format!(
            "apiVersion: v1
kind: Secret
metadata:
  name: to-registry
  namespace: flux-system
type: Opaque
data:
  address: {address}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: {image}
  interval: 5m
  provider: {provider}
  insecure: true
  proxySecretRef:
    name: to-registry
  # Ignored with a cloud provider, as in Flux: this Secret does not exist.
  secretRef:
    name: static-credentials-ignored
"
        ),
    )
    .unwrap();
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

/// `serve` with `env` and no ambient cloud credentials.
async fn serve_with_env(
    manifests: &Path,
    storage: &Path,
    log_dir: &Path,
    env: &[(&str, &str)],
) -> Serve {
    let port = free_port().unwrap();
    let log = log_dir.join(format!("serve-{port}.log"));
    let program = Path::new(env!("CARGO_BIN_EXE_image-reflector"));
    let mut command = serve_manifests_command(program, manifests, storage, port);
    command
        .args(["--log-level", "debug", "--log-encoding", "json"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("GCE_METADATA_HOST")
        .envs(env.iter().copied());
    let (process, base) = start_serving(
        "image-reflector serve",
        command,
        port,
        &log,
        "/healthz",
        WAIT,
    )
    .await;
    Serve {
        process,
        base,
        http: reqwest::Client::new(),
    }
}

async fn repository(serve: &Serve) -> Option<ImageRepositoryInfo> {
    let response = serve
        .send("/api/v1/namespaces/flux-system/imagerepositories/podinfo")
        .await?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn text(serve: &Serve, path: &str) -> String {
    serve.send(path).await.unwrap().text().await.unwrap()
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
    let proxy = FaultProxy::start(&registry.host()).await.unwrap();

    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests(&manifests, &proxy.url());
    let serve = serve_with_irsa(
        &manifests,
        &storage,
        tmp.path(),
        &token_file,
        &moto.endpoint(),
    )
    .await;

    let ready = serve
        .wait_document(
            "ImageRepository podinfo Ready with 3 tags",
            WAIT,
            || repository(&serve),
            |r: &ImageRepositoryInfo| r.readiness.ready && r.tag_count == 3,
        )
        .await;
    assert_eq!(ready.readiness.reason, "Succeeded", "{ready:?}");
    assert!(
        proxy.requests() > 0,
        "the scan did not go through the proxy"
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
    let proxy = FaultProxy::start(&registry.host()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, WEB_IDENTITY_TOKEN).unwrap();
    let (manifests, storage) = (tmp.path().join("manifests"), tmp.path().join("data"));
    std::fs::create_dir_all(&manifests).unwrap();
    write_manifests(&manifests, &proxy.url());
    // Nothing listens there: STS cannot be reached.
    let closed = format!("http://127.0.0.1:{}/", free_port().unwrap());
    let serve = serve_with_irsa(&manifests, &storage, tmp.path(), &token_file, &closed).await;

    let failed = serve
        .wait_document(
            "ImageRepository podinfo failing",
            WAIT,
            || repository(&serve),
            |r: &ImageRepositoryInfo| !r.readiness.message.is_empty() && !r.readiness.ready,
        )
        .await;
    assert_eq!(failed.readiness.reason, "ReadOperationFailed", "{failed:?}");
    assert!(
        failed.readiness.message.starts_with(
            "scan failed: failed to get access token for artifact registry: failed to create provider access token for the controller: aws: STS AssumeRoleWithWebIdentity"
        ),
        "{failed:?}"
    );
    assert_eq!(proxy.requests(), 0, "scanned without the cloud login");
    assert!(!serve.log_text().contains(WEB_IDENTITY_TOKEN));
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
    );
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
    )
    .await;

    let ready = serve
        .wait_document(
            "ImageRepository podinfo Ready with 2 tags",
            WAIT,
            || repository(&serve),
            |r: &ImageRepositoryInfo| r.readiness.ready && r.tag_count == 2,
        )
        .await;
    assert_eq!(ready.readiness.reason, "Succeeded", "{ready:?}");
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
    write_manifests_for(&manifests, &proxy.url(), "gcp", "gcr.io/team/app");
    let serve = serve_with_env(
        &manifests,
        &storage,
        tmp.path(),
        &[("GCE_METADATA_HOST", metadata_host.as_str())],
    )
    .await;

    let ready = serve
        .wait_document(
            "ImageRepository podinfo Ready after the refused login",
            WAIT,
            || repository(&serve),
            |r: &ImageRepositoryInfo| r.readiness.ready && r.tag_count == 1,
        )
        .await;
    assert_eq!(ready.readiness.reason, "Succeeded", "{ready:?}");
    // Exactly one refetch: the refused token was dropped, the accepted one stays cached.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2);
    for published in [format!("{ready:?}"), serve.log_text()] {
        assert!(!published.contains(STALE) && !published.contains(GCP_ACCESS_TOKEN));
    }
}
