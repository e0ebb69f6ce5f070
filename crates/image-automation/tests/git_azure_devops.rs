#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! `GitRepository.spec.provider: azure` end to end: the controller identity is Azure
//! workload identity (`AZURE_*` variables, read from the process environment as in Flux),
//! exchanged at a local Entra token endpoint for an Azure DevOps token, which must reach the
//! testbed's real git server as `Authorization: Bearer` (Azure DevOps takes no Basic). The
//! git server speaks Basic only, so a small front checks the Bearer token and forwards.
//!
//! Object-level identity (`ObjectLevelWorkloadIdentity`): the GitRepository's
//! `serviceAccountName`, read in the automation's namespace on the testbed's real
//! kube-apiserver (as the non-admin user with the automation chart's RBAC, gate on), whose
//! TokenRequest token (audience `api://AzureADTokenExchange`) is the Entra assertion.
//!
//! The environment belongs to the process, and tests may not change it (`unsafe` is
//! forbidden): the test starts the fakes, then re-runs this test binary for one ignored test
//! with the variables set.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use api_types::http_api::{ImagePolicyInfo, Readiness};
use api_types::{
    CommitSpec, CommitUser, GitRepository, GitRepositoryRef, GitRepositorySpec, GitSpec, ImageRef,
    ImageUpdateAutomation, ImageUpdateAutomationSpec,
};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use image_automation::git::GitCache;
use image_automation::git::provider::{KubeServiceAccounts, ProviderSettings, ServiceAccounts};
use image_automation::reconcile::{self, Objects, PolicySource, Reconciler, ReconcilerOptions};
use image_automation::reconcile::{RunOutcome, RunReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use testbed::git::{GitHttpServer, GitHttpServerOptions};

const DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
const DEVOPS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.devops.token";
const SA_TOKEN: &str = "k8s-projected-sa-token";
const MANIFEST: &str = "image: reg/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n";
/// Set in the child run: the git URL behind the Bearer front.
const CHILD_URL: &str = "IUA_TEST_AZURE_GIT_URL";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Entra's token endpoint for tenant `tenant-1`: the workload-identity grant with the
/// federated token as the assertion and Azure DevOps' scope.
fn entra(requests: Arc<AtomicUsize>) -> axum::Router {
    entra_with(requests, |assertion| assertion == SA_TOKEN)
}

/// [`entra`] with `assertion_ok` judging `client_assertion`.
fn entra_with(requests: Arc<AtomicUsize>, assertion_ok: fn(&str) -> bool) -> axum::Router {
    axum::Router::new().route(
        "/tenant-1/oauth2/v2.0/token",
        axum::routing::post(move |body: String| async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let form: BTreeMap<String, String> =
                reqwest::Url::parse(&format!("http://form/?{body}"))
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
            let field = |k: &str| form.get(k).map(String::as_str);
            let ok = field("grant_type") == Some("client_credentials")
                && field("client_id") == Some("client-1")
                && field("client_assertion").is_some_and(assertion_ok)
                && field("client_assertion_type")
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && field("scope").is_some_and(|s| s.split(' ').any(|s| s == DEVOPS_SCOPE));
            if !ok {
                return (StatusCode::UNAUTHORIZED, "invalid_client".to_string());
            }
            let answer = serde_json::json!({
                "token_type": "Bearer", "expires_in": 3600, "access_token": DEVOPS_TOKEN,
            });
            (StatusCode::OK, answer.to_string())
        }),
    )
}

/// Accepts only `Authorization: Bearer <DEVOPS_TOKEN>` and forwards to the git server with
/// its Basic credentials.
fn bearer_front(git: &GitHttpServer, seen: Arc<AtomicUsize>) -> axum::Router {
    let base = format!("http://127.0.0.1:{}", git.port());
    let basic = git.basic_auth_header();
    let client = reqwest::Client::new();
    axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (base, basic, client, seen) =
                (base.clone(), basic.clone(), client.clone(), seen.clone());
            async move {
                let bearer = format!("Bearer {DEVOPS_TOKEN}");
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(bearer.as_str())
                {
                    return (StatusCode::UNAUTHORIZED, HeaderMap::new(), Bytes::new());
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut request = client
                    .request(method, format!("{base}{path}"))
                    .header("authorization", basic)
                    .body(body);
                for name in ["content-type", "content-encoding", "accept", "git-protocol"] {
                    if let Some(value) = headers.get(name) {
                        request = request.header(name, value);
                    }
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let mut out = HeaderMap::new();
                for name in ["content-type", "cache-control"] {
                    if let Some(value) = response.headers().get(name) {
                        out.insert(name, value.clone());
                    }
                }
                (status, out, response.bytes().await.unwrap())
            }
        },
    )
}

#[tokio::test]
async fn azure_devops_token_pushes_as_bearer() {
    let entra_requests = Arc::new(AtomicUsize::new(0));
    let authority = serve(entra(entra_requests.clone())).await;
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let seeded = git
        .repos()
        .create("fleet", &[("app.yaml", MANIFEST)])
        .unwrap();
    let relayed = Arc::new(AtomicUsize::new(0));
    let front = serve(bearer_front(&git, relayed.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, SA_TOKEN).unwrap();

    // Blocking wait off the runtime: the fakes keep serving meanwhile.
    let git_url = format!("{front}/fleet.git");
    let authority_url = format!("{authority}/");
    let child = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "azure_child_run",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, git_url)
            .env("AZURE_TENANT_ID", "tenant-1")
            .env("AZURE_CLIENT_ID", "client-1")
            .env("AZURE_FEDERATED_TOKEN_FILE", &token_file)
            .env("AZURE_AUTHORITY_HOST", authority_url)
            .env_remove("AZURE_CLIENT_SECRET")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "{output}");
    assert!(output.contains("1 passed"), "{output}");
    assert!(!output.contains(DEVOPS_TOKEN) && !output.contains(SA_TOKEN));

    let head = git.repos().head_commit("fleet", "main").unwrap().unwrap();
    assert_ne!(head, seeded);
    assert_eq!(
        git.repos().file_at("fleet", &head, "app.yaml").unwrap(),
        Some(MANIFEST.replace("1.0.0", "1.1.0"))
    );
    // One token for the fetch and the push; both went through the Bearer front.
    assert_eq!(entra_requests.load(Ordering::SeqCst), 1);
    assert!(relayed.load(Ordering::SeqCst) >= 2);
}

struct Policies;

impl PolicySource for Policies {
    fn list<'a>(&'a self, _: &'a str, _: Option<&'a str>) -> reconcile::Policies<'a> {
        Box::pin(std::future::ready(Ok(vec![ImagePolicyInfo {
            namespace: "ns".into(),
            name: "app".into(),
            labels: BTreeMap::new(),
            image_repository_ref: Default::default(),
            latest_ref: Some(ImageRef {
                name: "reg/app".into(),
                tag: "1.1.0".into(),
                digest: None,
            }),
            observed_previous_ref: None,
            readiness: Readiness::default(),
        }])))
    }
}

struct Repo(String);

impl Objects for Repo {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        azure_repository(namespace, name, &self.0, None)
    }

    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
}

/// The GitRepository `ns/repo` with provider azure (and `service_account`).
fn azure_repository(
    namespace: &str,
    name: &str,
    url: &str,
    service_account: Option<&str>,
) -> Option<GitRepository> {
    (namespace == "ns" && name == "repo").then(|| {
        GitRepository::new(
            "repo",
            GitRepositorySpec {
                url: url.to_string(),
                provider: Some("azure".into()),
                service_account_name: service_account.map(str::to_string),
                reference: Some(GitRepositoryRef {
                    branch: Some("main".into()),
                    ..GitRepositoryRef::default()
                }),
                ..GitRepositorySpec::default()
            },
        )
    })
}

/// The GitRepository names the ServiceAccount; ServiceAccounts come from the API server.
struct SaRepo {
    url: String,
    service_accounts: KubeServiceAccounts,
}

impl Objects for SaRepo {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        azure_repository(namespace, name, &self.url, Some("devops"))
    }

    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }

    fn service_accounts(&self) -> Option<&dyn ServiceAccounts> {
        Some(&self.service_accounts)
    }
}

fn visible(report: &RunReport) -> String {
    format!(
        "{} {:?} {:?}",
        serde_json::to_string(&report.status).unwrap(),
        report.events,
        report.outcome
    )
}

/// The automation run, in the child process with the `AZURE_*` environment.
#[tokio::test]
#[ignore = "run by azure_devops_token_pushes_as_bearer with the AZURE_* environment"]
async fn azure_child_run() {
    let url = std::env::var(CHILD_URL).expect("started by azure_devops_token_pushes_as_bearer");
    run_automation(&Repo(url)).await;
}

/// One automation `ns/auto` run against `objects`; asserts it pushed.
async fn run_automation(objects: &dyn Objects) {
    let mut spec = ImageUpdateAutomationSpec {
        interval: "1m".into(),
        ..ImageUpdateAutomationSpec::default()
    };
    spec.source_ref.name = "repo".into();
    spec.git = Some(GitSpec {
        commit: CommitSpec {
            author: CommitUser {
                name: Some("bot".into()),
                email: "bot@example.invalid".into(),
            },
            ..CommitSpec::default()
        },
        ..GitSpec::default()
    });
    let obj = ImageUpdateAutomation {
        metadata: ObjectMeta {
            name: Some("auto".into()),
            namespace: Some("ns".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    let storage = tempfile::tempdir().unwrap();
    let reconciler = Reconciler {
        policies: Policies,
        git: Arc::new(GitCache::new(storage.path())),
        options: ReconcilerOptions::default(),
    };
    let report = reconciler
        .reconcile(&obj, objects, Time(k8s_openapi::jiff::Timestamp::now()))
        .await;
    assert_eq!(report.outcome, RunOutcome::Ready, "{}", visible(&report));
    assert!(report.pushed.is_some());
    println!("{}", visible(&report));
}

/// The ServiceAccount token's claims (unverified: the API server signed it).
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The assertion must be the API server's token for `ns/devops`, for Entra's audience.
fn service_account_assertion(assertion: &str) -> bool {
    let claims = claims(assertion);
    claims["aud"] == serde_json::json!(["api://AzureADTokenExchange"])
        && claims["sub"] == "system:serviceaccount:ns:devops"
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_token_from_the_api_server_pushes_as_bearer() {
    use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};
    let server = KubeApiServer::start().await.unwrap();
    let values = serde_json::json!({
        "featureGates": {"ObjectLevelWorkloadIdentity": true},
        "rbac": {"extraSubjects": [{
            "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NON_ADMIN_USER,
        }]},
    });
    testbed::controllers::helm_install(&server, "image-automation-controller", &values);
    server
        .apply(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: devops
  namespace: ns
  annotations:
    azure.workload.identity/tenant-id: tenant-1
    azure.workload.identity/client-id: client-1
"#,
        )
        .unwrap();
    let entra_requests = Arc::new(AtomicUsize::new(0));
    let authority = serve(entra_with(
        entra_requests.clone(),
        service_account_assertion,
    ))
    .await;
    let git = GitHttpServer::start(GitHttpServerOptions::default())
        .await
        .unwrap();
    let seeded = git
        .repos()
        .create("fleet", &[("app.yaml", MANIFEST)])
        .unwrap();
    let relayed = Arc::new(AtomicUsize::new(0));
    let front = serve(bearer_front(&git, relayed.clone())).await;

    let git_url = format!("{front}/fleet.git");
    let authority_url = format!("{authority}/");
    let kubeconfig = server.user_kubeconfig().to_path_buf();
    let child = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "azure_service_account_child_run",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, git_url)
            .env("KUBECONFIG", kubeconfig)
            .env("AZURE_AUTHORITY_HOST", authority_url)
            // No controller identity: only the ServiceAccount can succeed.
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("AZURE_CLIENT_SECRET")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "{output}");
    assert!(output.contains("1 passed"), "{output}");
    assert!(!output.contains(DEVOPS_TOKEN) && !output.contains("eyJhbGciOiJSUzI1NiIs"));
    let head = git.repos().head_commit("fleet", "main").unwrap().unwrap();
    assert_ne!(head, seeded);
    assert_eq!(entra_requests.load(Ordering::SeqCst), 1);
    assert!(relayed.load(Ordering::SeqCst) >= 2);
}

/// The automation run as the ServiceAccount, in the child process (gate on, the API
/// server's kubeconfig, Entra's authority in the environment).
#[tokio::test]
#[ignore = "run by service_account_token_from_the_api_server_pushes_as_bearer"]
async fn azure_service_account_child_run() {
    let url = std::env::var(CHILD_URL)
        .expect("started by service_account_token_from_the_api_server_pushes_as_bearer");
    image_automation::git::provider::configure(ProviderSettings {
        object_level_workload_identity: true,
        ..ProviderSettings::default()
    });
    let client = kube::Client::try_default().await.unwrap();
    run_automation(&SaRepo {
        url,
        service_accounts: KubeServiceAccounts(client),
    })
    .await;
}
