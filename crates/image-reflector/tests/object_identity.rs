//! Object-level workload identity (`--feature-gates=ObjectLevelWorkloadIdentity=true`) end to
//! end: `image-reflector serve` in Kubernetes mode against the testbed's real kube-apiserver
//! (which signs ServiceAccount tokens with its own issuer and key), running as the non-admin
//! user with exactly the RBAC the chart renders with `featureGates.ObjectLevelWorkloadIdentity`.
//!
//! - aws: the ImageRepository's `spec.serviceAccountName` -> the real API server's
//!   TokenRequest (audience `sts.amazonaws.com`) -> moto's STS `AssumeRoleWithWebIdentity`
//!   (through a front that records what STS received: moto validates nothing) -> moto's ECR
//!   token -> the testbed's real registry (htpasswd with exactly that login) -> Ready.
//! - gcp: `--default-service-account` -> TokenRequest with the workload identity provider's
//!   audience -> a local Google STS stand-in that checks the audience and the token's claims
//!   -> `oauth2accesstoken` at the real registry; the token cache metrics after two scans
//!   (one miss, one hit), gone when the object is deleted, absent with size 0.
//!
//! The ECR/GAR hosts reach the loopback registry through `proxySecretRef` and
//! `testbed::mapping_proxy` (which lets the loopback token endpoints through), as in
//! `cloud_providers.rs`.
//!
//! Needs `HELM_PYTHON` (or the helm venv) and moto (`bash e2e/moto.sh`); fails, never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use cloud_identity::aws::{AwsClient, AwsIdentity};
use cloud_identity::config::{AwsEnvironment, Endpoints};
use cloud_identity::http::HttpClient;
use cloud_identity::registry::{parse_registry, registry_host};
use cloud_identity::{Provider, Secret};
use serde_json::{Value, json};
use testbed::controllers::{Controller, condition, get_in, helm_install, kubectl};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
use testbed::mapping_proxy::MappingProxy;
use testbed::moto::{Moto, MotoOptions};
use testbed::process::free_port;
use testbed::registry::{Registry, RegistryOptions};
use testbed::wait::wait_for_every;

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);
const NAMESPACE: &str = "apps";
/// The role's account: moto's ECR hands out this registry's token.
const ACCOUNT: &str = "210987654321";
const WIP: &str = "projects/123456/locations/global/workloadIdentityPools/flux/providers/k8s";
const GCP_ACCESS_TOKEN: &str = "ya29.object-level-access-token";
const ISSUER: &str = "https://kubernetes.default.svc";

fn role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/image-reader")
}

fn wip_audience() -> String {
    format!("//iam.googleapis.com/{WIP}")
}

/// The claims of a JWT (unverified: the API server signed it, we read what it says).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

/// The API server with the chart's RBAC (gate on) bound to the non-admin user, and the
/// namespace the objects live in.
async fn cluster() -> KubeApiServer {
    let server = KubeApiServer::start().await.unwrap();
    let values = json!({
        "featureGates": {"ObjectLevelWorkloadIdentity": true},
        "rbac": {"extraSubjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "User",
            "name": NON_ADMIN_USER,
        }]},
    });
    let manifest = helm_install(&server, "image-reflector-controller", &values);
    assert!(
        manifest.contains("serviceaccounts/token"),
        "the chart rendered no TokenRequest rule with the gate on:\n{manifest}"
    );
    server
        .apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
        ))
        .unwrap();
    server
}

/// `image-reflector serve` as the non-admin user with `flags` and `env`, no ambient cloud
/// credentials.
async fn start(
    server: &KubeApiServer,
    storage: &Path,
    flags: &[&str],
    env: &[(&str, &str)],
) -> Controller {
    let port = free_port().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_image-reflector"));
    command
        .arg("serve")
        .arg("--storage-path")
        .arg(storage)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "debug", "--log-encoding", "json"])
        .args(flags)
        .env("RUST_LOG", "debug")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("GCE_METADATA_HOST")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied());
    let log = server.dir().join(format!("serve-{port}.log"));
    Controller::start(
        "image-reflector serve",
        command,
        server.user_kubeconfig(),
        port,
        &log,
        WAIT,
    )
    .await
}

/// The cloud registry host of `image` on port 80 (the repositories are `insecure`), routed to
/// the local registry; the token endpoints on loopback pass through as they are (the token
/// calls go through `proxySecretRef` too, as in Flux).
async fn registry_proxy(registry: &Registry, image: &str) -> MappingProxy {
    let registry_addr: std::net::SocketAddr = registry.host().parse().unwrap();
    let host = image.split('/').next().unwrap();
    MappingProxy::start(&[(&format!("{host}:80"), registry_addr)])
        .await
        .unwrap()
}

/// The proxy Secret and an ImageRepository `name` in `namespace` (`extra` spec lines).
fn apply_repository(
    server: &KubeApiServer,
    namespace: &str,
    name: &str,
    image: &str,
    provider: &str,
    proxy_url: &str,
    extra: &str,
) {
    let address = base64::engine::general_purpose::STANDARD.encode(proxy_url);
    server
        .apply(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: to-registry, namespace: {namespace}}}
type: Opaque
data: {{address: {address}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  image: {image}
  interval: 1h
  provider: {provider}
  insecure: true
  proxySecretRef: {{name: to-registry}}
{extra}
"#
        ))
        .unwrap();
}

async fn wait_ready(
    server: &KubeApiServer,
    serve: &Controller,
    namespace: &str,
    name: &str,
    status: &str,
) -> Value {
    wait_for_every(
        &format!("ImageRepository {namespace}/{name} Ready={status}"),
        WAIT,
        POLL,
        || {
            format!(
                "object: {}\nlog:\n{}",
                get_in(server, "imagerepository", namespace, name),
                serve.log_tail(40)
            )
        },
        || async {
            let repo = get_in(server, "imagerepository", namespace, name);
            let ready = condition(&repo, "Ready")?;
            (ready["status"] == status && ready["reason"] != "Progressing").then_some(repo.clone())
        },
    )
    .await
}

/// Everything the controller published: its log, the objects' status and the events.
fn published(
    server: &KubeApiServer,
    serve: &Controller,
    metrics: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("log", serve.log_text()),
        (
            "status",
            kubectl(server, &["get", "imagerepositories", "-A", "-o", "json"]),
        ),
        (
            "events",
            kubectl(server, &["get", "events", "-A", "-o", "json"]),
        ),
        ("metrics", metrics.to_string()),
    ]
}

/// What the STS front received (form fields of each call).
type Received = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A front for moto's STS that records each form it forwards (moto checks none of it).
async fn recording_sts_front(moto_endpoint: String) -> (String, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, http, moto) = (seen.clone(), http.clone(), moto_endpoint.clone());
            async move {
                let form: HashMap<String, String> =
                    form_urlencoded::parse(&body).into_owned().collect();
                seen.lock().unwrap().push(form);
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/x-www-form-urlencoded")
                    .to_string();
                let answer = http
                    .post(&moto)
                    .header("content-type", content_type)
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                (status, answer.text().await.unwrap())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The ECR login moto hands this role (what the registry must accept).
async fn moto_ecr_login(moto: &Moto, image: &str) -> (String, Secret) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "header.payload.signature").unwrap();
    let url = reqwest::Url::parse(&moto.endpoint()).unwrap();
    let endpoints = Endpoints {
        aws_sts: Some(url.clone()),
        aws_ecr: Some(url),
        ..Endpoints::default()
    };
    let env = AwsEnvironment {
        web_identity_token_file: Some(token_file),
        role_arn: Some(role_arn()),
        ..AwsEnvironment::default()
    };
    let client = AwsClient::new(HttpClient::new(None).unwrap(), endpoints, env);
    let input = parse_registry(Provider::Aws, &registry_host(image), None).unwrap();
    let login = client
        .registry_login(&input, &AwsIdentity::Controller)
        .await
        .unwrap();
    (login.username, login.password)
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_service_account_token_from_the_api_server_opens_the_registry_through_sts_and_ecr() {
    let image = format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/apps/podinfo");
    let (server, moto) = tokio::join!(cluster(), async {
        Moto::start(MotoOptions::default()).await.unwrap()
    });
    let (username, password) = moto_ecr_login(&moto, &image).await;
    let registry =
        Registry::start(RegistryOptions::htpasswd().with_credentials(&username, password.expose()))
            .await
            .unwrap();
    registry
        .push_tags("apps/podinfo", &["6.5.0", "6.6.0"])
        .await
        .unwrap();
    let proxy = registry_proxy(&registry, &image).await;
    let (sts, received) = recording_sts_front(moto.endpoint()).await;

    server
        .apply(&format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ecr-reader
  namespace: {NAMESPACE}
  annotations: {{eks.amazonaws.com/role-arn: "{}"}}
"#,
            role_arn()
        ))
        .unwrap();
    apply_repository(
        &server,
        NAMESPACE,
        "podinfo",
        &image,
        "aws",
        &proxy.url(),
        "  serviceAccountName: ecr-reader",
    );
    // A ServiceAccount that does not exist: a clear condition, no scan.
    apply_repository(
        &server,
        NAMESPACE,
        "nobody",
        &image,
        "aws",
        &proxy.url(),
        "  serviceAccountName: nobody",
    );

    let storage = tempfile::tempdir().unwrap();
    let serve = start(
        &server,
        storage.path(),
        &["--feature-gates=ObjectLevelWorkloadIdentity=true"],
        &[
            ("AWS_ENDPOINT_URL_STS", sts.as_str()),
            ("AWS_ENDPOINT_URL_ECR", moto.endpoint().as_str()),
        ],
    )
    .await;

    let ready = wait_ready(&server, &serve, NAMESPACE, "podinfo", "True").await;
    assert_eq!(ready["status"]["lastScanResult"]["tagCount"], 2, "{ready}");
    assert!(
        proxy.count(image.split('/').next().unwrap()) > 0,
        "the scan did not reach the registry"
    );

    // What STS received: the API server's token for apps/ecr-reader, for STS's audience.
    let calls = received.lock().unwrap().clone();
    assert!(!calls.is_empty(), "STS was never called");
    let call = &calls[0];
    assert_eq!(call["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(call["RoleArn"], role_arn());
    assert_eq!(
        call["RoleSessionName"],
        "ecr-reader.apps.us-east-1.fluxcd.io"
    );
    let web_identity_token = call["WebIdentityToken"].clone();
    let claims = jwt_claims(&web_identity_token);
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]), "{claims}");
    assert_eq!(claims["iss"], ISSUER, "{claims}");
    assert_eq!(
        claims["sub"], "system:serviceaccount:apps:ecr-reader",
        "{claims}"
    );

    let failed = wait_ready(&server, &serve, NAMESPACE, "nobody", "False").await;
    let message = condition(&failed, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        "scan failed: failed to get access token for artifact registry: failed to get service account 'apps/nobody': serviceaccounts \"nobody\" not found"
    );

    let metrics = serve.metrics().await;
    for (what, text) in published(&server, &serve, &metrics) {
        assert!(
            !text.contains(&web_identity_token),
            "the ServiceAccount token leaked into the {what}"
        );
        assert!(
            !text.contains(password.expose()),
            "the ECR password leaked into the {what}"
        );
    }
}

/// A Google STS stand-in: checks the exchange (grant, token types, the audience, and that
/// the subject token is the API server's token for `apps/<sa>` with that audience) and
/// answers an hour-long access token. Returns its root URL and the count of exchanges.
async fn google_sts(service_account: &'static str) -> (String, Arc<AtomicUsize>) {
    let exchanges = Arc::new(AtomicUsize::new(0));
    let counter = exchanges.clone();
    let app = axum::Router::new().route(
        "/v1/token",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let form: HashMap<String, String> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let field = |name: &str| form.get(name).cloned().unwrap_or_default();
                let mut wrong = Vec::new();
                for (name, want) in [
                    ("audience", wip_audience()),
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                    ),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:jwt".into(),
                    ),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token".into(),
                    ),
                ] {
                    if field(name) != want {
                        wrong.push(format!("{name}={:?}", field(name)));
                    }
                }
                let claims = jwt_claims(&field("subject_token"));
                if claims["aud"] != json!([wip_audience()])
                    || claims["iss"] != ISSUER
                    || claims["sub"] != format!("system:serviceaccount:apps:{service_account}")
                {
                    wrong.push(format!("subject token claims {claims}"));
                }
                if !wrong.is_empty() {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"error": "invalid_request", "error_description": wrong.join(", ")})
                            .to_string(),
                    );
                }
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::OK,
                    json!({
                        "access_token": GCP_ACCESS_TOKEN,
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": 3600
                    })
                    .to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, exchanges)
}

fn annotate_reconcile(server: &KubeApiServer, namespace: &str, name: &str, token: &str) {
    kubectl(
        server,
        &[
            "annotate",
            "--overwrite",
            "-n",
            namespace,
            "imagerepository",
            name,
            &format!("reconcile.fluxcd.io/requestedAt={token}"),
        ],
    );
}

async fn wait_handled(
    server: &KubeApiServer,
    serve: &Controller,
    namespace: &str,
    name: &str,
    token: &str,
) {
    wait_for_every(
        &format!("ImageRepository {namespace}/{name} handled {token}"),
        WAIT,
        POLL,
        || serve.log_tail(40),
        || async {
            let repo = get_in(server, "imagerepository", namespace, name);
            let ready = condition(&repo, "Ready").is_some_and(|c| c["status"] == "True");
            (ready && repo["status"]["lastHandledReconcileAt"] == token).then_some(())
        },
    )
    .await;
}

fn series(metrics: &str, event: &str, namespace: &str, name: &str) -> Option<f64> {
    let labels = format!(
        "gotk_token_cache_events_total{{event_type=\"{event}\",kind=\"ImageRepository\",name=\"{name}\",namespace=\"{namespace}\",operation=\"reconcile\"}} "
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&labels))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_default_service_account_and_the_token_cache_metrics() {
    let server = cluster().await;
    let (sts, exchanges) = google_sts("gar-reader").await;
    let registry = Registry::start(
        RegistryOptions::htpasswd().with_credentials("oauth2accesstoken", GCP_ACCESS_TOKEN),
    )
    .await
    .unwrap();
    registry
        .push_tags("team/app", &["1.0.0", "1.1.0"])
        .await
        .unwrap();
    let image = "europe-west1-docker.pkg.dev/team/app";
    let proxy = registry_proxy(&registry, image).await;
    server
        .apply(&format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: gar-reader
  namespace: {NAMESPACE}
  annotations: {{gcp.auth.fluxcd.io/workload-identity-provider: "{WIP}"}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: tenant-b}}
"#
        ))
        .unwrap();
    // No serviceAccountName: the default one (which tenant-b lacks) is used.
    apply_repository(&server, NAMESPACE, "gar", image, "gcp", &proxy.url(), "");
    apply_repository(&server, "tenant-b", "gar", image, "gcp", &proxy.url(), "");

    let storage = tempfile::tempdir().unwrap();
    let serve = start(
        &server,
        storage.path(),
        &[
            "--feature-gates=ObjectLevelWorkloadIdentity=true",
            "--default-service-account=gar-reader",
        ],
        &[("GCP_ENDPOINT_URL_STS", sts.as_str())],
    )
    .await;

    let ready = wait_ready(&server, &serve, NAMESPACE, "gar", "True").await;
    assert_eq!(ready["status"]["lastScanResult"]["tagCount"], 2, "{ready}");
    annotate_reconcile(&server, NAMESPACE, "gar", "second-scan");
    wait_handled(&server, &serve, NAMESPACE, "gar", "second-scan").await;
    assert_eq!(
        exchanges.load(Ordering::SeqCst),
        1,
        "the second scan must use the cached token"
    );
    let metrics = serve.metrics().await;
    assert_eq!(
        series(&metrics, "cache_miss", NAMESPACE, "gar"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "cache_hit", NAMESPACE, "gar"),
        Some(1.0),
        "{metrics}"
    );
    assert!(metrics.contains("gotk_token_cached_items 1"), "{metrics}");
    assert!(
        metrics.contains("gotk_token_cache_requests_total{status=\"success\"}"),
        "{metrics}"
    );

    // The lockdown: a namespace without the default ServiceAccount gets Flux's message.
    let locked = wait_ready(&server, &serve, "tenant-b", "gar", "False").await;
    assert_eq!(
        condition(&locked, "Ready").unwrap()["message"],
        "scan failed: failed to get access token for artifact registry: the specified default service account does not exist in the object namespace. your cluster is subject to multi-tenant workload identity lockdown, reach out to your cluster administrator for help",
        "{locked}"
    );

    for (what, text) in published(&server, &serve, &metrics) {
        assert!(
            !text.contains(GCP_ACCESS_TOKEN),
            "the access token leaked into the {what}"
        );
        assert!(
            !text.contains("eyJ"),
            "a JWT (the ServiceAccount token) leaked into the {what}"
        );
    }

    // Deleting the object drops its cache event series.
    kubectl(
        &server,
        &[
            "delete",
            "imagerepository",
            "gar",
            "-n",
            NAMESPACE,
            "--wait=true",
        ],
    );
    wait_for_every(
        "the deleted object's token cache series gone",
        WAIT,
        POLL,
        || serve.log_tail(20),
        || async {
            let metrics = serve.metrics().await;
            (series(&metrics, "cache_miss", NAMESPACE, "gar").is_none()
                && series(&metrics, "cache_hit", NAMESPACE, "gar").is_none())
            .then_some(())
        },
    )
    .await;
    drop(serve);

    // --token-cache-max-size=0: no cache, no gotk_token_* series, one exchange per scan.
    apply_repository(
        &server,
        NAMESPACE,
        "uncached",
        image,
        "gcp",
        &proxy.url(),
        "",
    );
    let storage = tempfile::tempdir().unwrap();
    let serve = start(
        &server,
        storage.path(),
        &[
            "--feature-gates=ObjectLevelWorkloadIdentity=true",
            "--default-service-account=gar-reader",
            "--token-cache-max-size=0",
        ],
        &[("GCP_ENDPOINT_URL_STS", sts.as_str())],
    )
    .await;
    wait_ready(&server, &serve, NAMESPACE, "uncached", "True").await;
    annotate_reconcile(&server, NAMESPACE, "uncached", "again");
    wait_handled(&server, &serve, NAMESPACE, "uncached", "again").await;
    let exchanged = exchanges.load(Ordering::SeqCst);
    assert_eq!(exchanged, 3, "each uncached scan must exchange a token");
    let metrics = serve.metrics().await;
    assert!(!metrics.contains("gotk_token_"), "{metrics}");
}
