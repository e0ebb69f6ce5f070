#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! `GitRepository.spec.provider: github` end to end: an automation run whose GitRepository
//! names a GitHub App gets an installation token from the local GitHub API fake (which
//! verifies the App JWT with the App's public key) and fetches and pushes with it as
//! `x-access-token` to the testbed's real git smart-HTTP server, which accepts nothing else.
//! Then Flux's error cases (reference cloud-identity.md §5-6), and no token anywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use api_types::http_api::{ImagePolicyInfo, Readiness};
use api_types::meta::LocalObjectReference;
use api_types::{
    CommitSpec, CommitUser, GitRepository, GitRepositoryRef, GitRepositorySpec, GitSpec, ImageRef,
    ImageUpdateAutomation, ImageUpdateAutomationSpec,
};
use image_automation::git::GitCache;
use image_automation::reconcile::{self, Objects, PolicySource, Reconciler, ReconcilerOptions};
use image_automation::reconcile::{RunOutcome, RunReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use testbed::git::{GitHttpServer, GitHttpServerOptions};
use testbed::github_app::{GitHubAppFake, INSTALLATION_ID_KEY};

const MANIFEST: &str = "image: reg/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n";

struct Policies(String);

impl PolicySource for Policies {
    fn list<'a>(&'a self, _: &'a str, _: Option<&'a str>) -> reconcile::Policies<'a> {
        Box::pin(std::future::ready(Ok(vec![ImagePolicyInfo {
            namespace: "ns".into(),
            name: "app".into(),
            labels: BTreeMap::new(),
            image_repository_ref: Default::default(),
            latest_ref: Some(ImageRef {
                name: "reg/app".into(),
                tag: self.0.clone(),
                digest: None,
            }),
            observed_previous_ref: None,
            readiness: Readiness::default(),
        }])))
    }
}

/// One GitRepository `ns/repo` and its Secret `ns/app-secret` (if any).
struct Repo {
    spec: GitRepositorySpec,
    secret: Option<BTreeMap<String, Vec<u8>>>,
}

impl Objects for Repo {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        (namespace == "ns" && name == "repo").then(|| {
            let mut repo = GitRepository::new("repo", self.spec.clone());
            repo.metadata.namespace = Some("ns".into());
            repo
        })
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        (namespace == "ns" && name == "app-secret")
            .then(|| self.secret.clone())
            .flatten()
    }
}

fn repo_spec(url: &str, provider: Option<&str>, with_secret: bool) -> GitRepositorySpec {
    GitRepositorySpec {
        url: url.into(),
        provider: provider.map(Into::into),
        secret_ref: with_secret.then(|| LocalObjectReference {
            name: "app-secret".into(),
        }),
        reference: Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..GitRepositoryRef::default()
        }),
        ..GitRepositorySpec::default()
    }
}

fn automation() -> ImageUpdateAutomation {
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
            message_template: Some("{{ range .Changed.Changes }}{{ .NewValue }}{{ end }}".into()),
            ..CommitSpec::default()
        },
        ..GitSpec::default()
    });
    ImageUpdateAutomation {
        metadata: ObjectMeta {
            name: Some("auto".into()),
            namespace: Some("ns".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn reconciler(tag: &str, storage: &std::path::Path) -> Reconciler<Policies> {
    Reconciler {
        policies: Policies(tag.into()),
        git: Arc::new(GitCache::new(storage)),
        options: ReconcilerOptions::default(),
    }
}

/// Everything a user or log can see of a run.
fn visible(report: &RunReport) -> String {
    format!(
        "{} {:?} {:?}",
        serde_json::to_string(&report.status).unwrap(),
        report.events,
        report.outcome
    )
}

async fn run(objects: &Repo, tag: &str) -> RunReport {
    let storage = tempfile::tempdir().unwrap();
    reconciler(tag, storage.path())
        .reconcile(&automation(), objects, now())
        .await
}

#[tokio::test]
async fn github_app_token_fetches_and_pushes_as_x_access_token() {
    let fake = GitHubAppFake::start(false, format!("ghs_{}", "t".repeat(180)))
        .await
        .unwrap();
    // The git server accepts exactly x-access-token:<installation token>.
    let server = GitHttpServer::start(GitHttpServerOptions {
        username: Some("x-access-token".into()),
        password: Some(fake.token().into()),
        repos: None,
        tls: None,
    })
    .await
    .unwrap();
    let seeded = server
        .repos()
        .create("fleet", &[("app.yaml", MANIFEST)])
        .unwrap();
    let objects = Repo {
        spec: repo_spec(&server.url("fleet"), Some("github"), true),
        secret: Some(fake.secret_data((INSTALLATION_ID_KEY, "456"))),
    };

    let storage = tempfile::tempdir().unwrap();
    let reconciler = reconciler("1.1.0", storage.path());
    let mut obj = automation();
    let report = reconciler.reconcile(&obj, &objects, now()).await;
    assert_eq!(report.outcome, RunOutcome::Ready, "{}", visible(&report));
    let pushed = report.pushed.clone().expect("a commit was pushed");
    let head = server.repos().head_commit("fleet", "main").unwrap();
    assert_eq!(head.as_deref(), Some(pushed.commit.as_str()));
    assert_ne!(head.as_deref(), Some(seeded.as_str()));
    assert_eq!(
        server
            .repos()
            .file_at("fleet", &pushed.commit, "app.yaml")
            .unwrap()
            .unwrap(),
        MANIFEST.replace("1.0.0", "1.1.0")
    );
    assert!(!visible(&report).contains(fake.token()));

    // The next run checks the remote head with the cached token: no new token request.
    obj.status = Some(report.status.clone());
    let again = reconciler.reconcile(&obj, &objects, now()).await;
    assert_eq!(again.outcome, RunOutcome::Ready, "{}", visible(&again));
    assert!(again.short_circuited);
    assert_eq!(fake.token_requests(), 1);
}

fn assert_outcome(report: &RunReport, stalled: bool, reason: &str, message: &str) {
    let (got_reason, got_message) = report.outcome.reason_and_message();
    assert_eq!(
        matches!(report.outcome, RunOutcome::Stalled { .. }),
        stalled,
        "{:?}",
        report.outcome
    );
    assert_eq!(got_reason, reason, "{got_message}");
    assert!(
        got_message.starts_with("failed configuring source manager: "),
        "{got_message}"
    );
    assert!(got_message.contains(message), "{got_message}");
    assert!(report.pushed.is_none());
}

#[tokio::test]
async fn github_without_app_data_and_app_data_under_generic_stall() {
    let url = "http://127.0.0.1:9/fleet.git";
    let flux = "secretRef with github app data must be specified when provider is set to github";
    let no_secret_ref = Repo {
        spec: repo_spec(url, Some("github"), false),
        secret: None,
    };
    let report = run(&no_secret_ref, "1.1.0").await;
    assert_outcome(&report, true, "InvalidSourceConfiguration", flux);

    let basic_only = Repo {
        spec: repo_spec(url, Some("github"), true),
        secret: Some(BTreeMap::from([
            ("username".to_string(), b"bot".to_vec()),
            ("password".to_string(), b"hunter2-password".to_vec()),
        ])),
    };
    let report = run(&basic_only, "1.1.0").await;
    assert_outcome(&report, true, "InvalidSourceConfiguration", flux);
    assert!(!visible(&report).contains("hunter2-password"));

    let fake = GitHubAppFake::start(false, "ghs_unused").await.unwrap();
    let generic = Repo {
        spec: repo_spec(url, None, true),
        secret: Some(fake.secret_data((INSTALLATION_ID_KEY, "456"))),
    };
    let report = run(&generic, "1.1.0").await;
    assert_outcome(
        &report,
        true,
        "InvalidSourceConfiguration",
        "secretRef 'ns/app-secret' has github app data but provider is not set to github",
    );
    assert_eq!(fake.token_requests(), 0);
}

#[tokio::test]
async fn token_failures_are_source_manager_failed_without_secrets() {
    let url = "http://127.0.0.1:9/fleet.git";
    let fake = GitHubAppFake::start(false, format!("ghs_{}", "s".repeat(60)))
        .await
        .unwrap();
    let pem = String::from_utf8(fake.private_key_pem().to_vec()).unwrap();
    let key_body = pem.lines().nth(1).unwrap().to_string();

    // Partial App data: retried, with Flux's text.
    let mut partial = fake.secret_data((INSTALLATION_ID_KEY, "456"));
    partial.remove("githubAppPrivateKey");
    let report = run(
        &Repo {
            spec: repo_spec(url, Some("github"), true),
            secret: Some(partial),
        },
        "1.1.0",
    )
    .await;
    assert_outcome(
        &report,
        false,
        "SourceManagerFailed",
        "failed to configure authentication options: ",
    );
    assert_outcome(
        &report,
        false,
        "SourceManagerFailed",
        "secret 'ns/app-secret': key 'githubAppPrivateKey' not found",
    );

    // An installation the App does not have: the API's 404, no token, no key.
    let report = run(
        &Repo {
            spec: repo_spec(url, Some("github"), true),
            secret: Some(fake.secret_data((INSTALLATION_ID_KEY, "999"))),
        },
        "1.1.0",
    )
    .await;
    assert_outcome(&report, false, "SourceManagerFailed", "HTTP 404");
    let text = visible(&report);
    assert!(
        !text.contains(fake.token()) && !text.contains(&key_body),
        "{text}"
    );

    // Another App's key: the fake refuses the JWT (401); nothing secret in the message.
    let other = GitHubAppFake::start(true, "ghs_other").await.unwrap();
    let mut wrong_key = fake.secret_data((INSTALLATION_ID_KEY, "456"));
    wrong_key.insert(
        "githubAppPrivateKey".into(),
        other.private_key_pem().to_vec(),
    );
    let report = run(
        &Repo {
            spec: repo_spec(url, Some("github"), true),
            secret: Some(wrong_key),
        },
        "1.1.0",
    )
    .await;
    assert_outcome(&report, false, "SourceManagerFailed", "HTTP 401");
    let text = visible(&report);
    let other_key = String::from_utf8(other.private_key_pem().to_vec()).unwrap();
    assert!(!text.contains(other_key.lines().nth(1).unwrap()), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn azure_with_a_service_account_needs_the_feature_gate() {
    let mut spec = repo_spec("http://127.0.0.1:9/org/p/_git/r", Some("azure"), false);
    spec.service_account_name = Some("git-sa".into());
    let report = run(&Repo { spec, secret: None }, "1.1.0").await;
    assert_outcome(
        &report,
        true,
        "FeatureGateDisabled",
        "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller",
    );
}
