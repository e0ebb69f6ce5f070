use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::git::{RemoteHead, RepoSpec, UpdateOutcome, UpdateRequest};
use api_types::http_api::Readiness;
use api_types::{CommitSpec, CommitUser, GitRepositorySpec, GitSpec, ImageUpdateAutomationSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

struct FakePolicies(Result<Vec<ImagePolicyInfo>, ()>);

impl PolicySource for FakePolicies {
    fn list<'a>(&'a self, _namespace: &'a str, _selector: Option<&'a str>) -> Policies<'a> {
        let answer = self.0.clone().map_err(|()| ReflectorError::Unreachable {
            url: "http://x".into(),
            detail: "connection refused".into(),
        });
        Box::pin(std::future::ready(answer))
    }
}

/// Rewrites `app.yaml` through the real setters in a temporary directory and records calls.
#[derive(Default)]
struct FakeGit {
    heads: AtomicU32,
    updates: AtomicU32,
    /// `app.yaml`'s content; `None`: a marker for `ns:app` and one for `ns:missing`.
    manifest: Option<&'static str>,
    /// The sparse path of every request.
    sparse: std::sync::Mutex<Vec<Option<String>>>,
}

impl GitClient for FakeGit {
    fn remote_head(&self, _: &RepoSpec, _: &GitRef) -> Result<Option<RemoteHead>, GitError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        Ok(Some(RemoteHead {
            label: "main".into(),
            commit: "c0".into(),
        }))
    }

    fn update_and_push(
        &self,
        request: &UpdateRequest,
        apply: &mut dyn FnMut(&Path) -> crate::git::ApplyResult,
    ) -> Result<UpdateOutcome, GitError> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        self.sparse.lock().unwrap().push(request.sparse.clone());
        let dir = tempfile::tempdir().map_err(|e| GitError::Git(e.to_string()))?;
        let manifest = self.manifest.unwrap_or(
            "image: reg/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n\
             other: reg/x:1 # {\"$imagepolicy\": \"ns:missing\"}\n",
        );
        std::fs::write(dir.path().join("app.yaml"), manifest)
            .map_err(|e| GitError::Git(e.to_string()))?;
        let message = apply(dir.path()).map_err(GitError::Apply)?;
        Ok(UpdateOutcome {
            checkout_label: "main".into(),
            checked_out: "c0".into(),
            pushed: message.map(|w| PushedCommit {
                commit: "c1c1c1c1c1".into(),
                branch: "main".into(),
                refspec: None,
                message: w.message,
            }),
            attempts: 1,
            switched_branch: false,
            fetches: Vec::new(),
            recoveries: Vec::new(),
        })
    }
}

struct FakeObjects;

impl Objects for FakeObjects {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository> {
        (namespace == "ns" && name == "repo").then(|| {
            GitRepository::new(
                "repo",
                GitRepositorySpec {
                    url: "https://git.invalid/r.git".into(),
                    ..GitRepositorySpec::default()
                },
            )
        })
    }
    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
}

fn policy(tag: &str) -> ImagePolicyInfo {
    ImagePolicyInfo {
        namespace: "ns".into(),
        name: "app".into(),
        labels: BTreeMap::new(),
        image_repository_ref: Default::default(),
        latest_ref: Some(ImageRef {
            name: "reg/app".into(),
            tag: tag.into(),
            digest: None,
        }),
        observed_previous_ref: None,
        readiness: Readiness::default(),
    }
}

fn automation(git: bool) -> ImageUpdateAutomation {
    let mut spec = ImageUpdateAutomationSpec {
        interval: "1m".into(),
        ..ImageUpdateAutomationSpec::default()
    };
    spec.source_ref.name = "repo".into();
    if git {
        spec.git = Some(GitSpec {
            commit: CommitSpec {
                author: CommitUser {
                    name: Some("bot".into()),
                    email: "bot@example.invalid".into(),
                },
                message_template: Some(
                    "{{ range .Changed.Changes }}{{ .NewValue }}{{ end }}".into(),
                ),
                ..CommitSpec::default()
            },
            ..GitSpec::default()
        });
    }
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
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
}

fn reconciler(policies: FakePolicies, git: Arc<FakeGit>) -> Reconciler<FakePolicies> {
    Reconciler {
        policies,
        git,
        options: ReconcilerOptions::default(),
    }
}

#[tokio::test]
async fn missing_git_spec_stalls() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    let report = r.reconcile(&automation(false), &FakeObjects, now()).await;
    assert_eq!(
        report.outcome,
        RunOutcome::Stalled {
            reason: "InvalidSourceConfiguration".into(),
            message: "source kind 'GitRepository' necessitates field .spec.git".into()
        }
    );
    assert!(meta::is_condition_true(
        &report.status.conditions,
        condition_type::STALLED
    ));
    assert_eq!(git.updates.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_reflector_is_dependency_not_ready_and_touches_no_git() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Err(())), git.clone());
    let report = r.reconcile(&automation(true), &FakeObjects, now()).await;
    let (reason, message) = report.outcome.reason_and_message();
    assert_eq!(reason, "DependencyNotReady");
    assert!(message.contains("unreachable"), "{message}");
    assert!(matches!(report.outcome, RunOutcome::Retry { .. }));
    assert_eq!(git.updates.load(Ordering::SeqCst), 0);
    assert_eq!(git.heads.load(Ordering::SeqCst), 0);
    assert_eq!(report.events[0].type_, EventType::Warning);
}

#[tokio::test]
async fn pushes_then_short_circuits_until_a_policy_changes() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    let mut obj = automation(true);
    let report = r.reconcile(&obj, &FakeObjects, now()).await;
    assert!(report.outcome.is_ready(), "{:?}", report.outcome);
    let pushed = report.pushed.clone().unwrap();
    assert_eq!(pushed.message, "reg/app:1.1.0");
    assert_eq!(
        report.status.last_push_commit.as_deref(),
        Some("c1c1c1c1c1")
    );
    assert_eq!(
        report.status.observed_source_revision.as_deref(),
        Some("main@sha1:c1c1c1c1c1")
    );
    assert_eq!(report.result.change_count(), 1);
    assert_eq!(report.result.unmatched.len(), 1);
    assert!(
        report
            .events
            .iter()
            .any(|e| e.reason == "MarkersNotApplied" && e.message.contains("app.yaml:2: ")),
        "{:?}",
        report.events
    );
    // The remote head is the pushed commit: a fake head "c0" differs, so a run syncs; with
    // the head equal to the observed revision it is skipped.
    obj.status = Some(report.status.clone());
    obj.status.as_mut().unwrap().observed_source_revision = Some("main@sha1:c0".into());
    let again = r.reconcile(&obj, &FakeObjects, now()).await;
    assert!(again.short_circuited);
    assert_eq!(git.updates.load(Ordering::SeqCst), 1);
    assert_eq!(again.events[0].type_, EventType::Trace);
    assert_eq!(
        again.events[0].message,
        "no change since last reconciliation"
    );

    let r2 = reconciler(FakePolicies(Ok(vec![policy("1.2.0")])), git.clone());
    let third = r2.reconcile(&obj, &FakeObjects, now()).await;
    assert!(!third.short_circuited);
    assert_eq!(git.updates.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn missing_repository_is_source_manager_failed() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![])), git.clone());
    let mut obj = automation(true);
    obj.spec.source_ref.name = "nope".into();
    let report = r.reconcile(&obj, &FakeObjects, now()).await;
    assert_eq!(report.outcome.reason_and_message().0, "SourceManagerFailed");
    assert!(matches!(report.outcome, RunOutcome::Retry { .. }));
}

/// Flux's schema lets an automation be stored without a spec: it stalls, naming what is
/// required, and touches no git repository.
#[tokio::test]
async fn an_automation_without_spec_stalls_naming_the_required_fields() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    let mut obj = automation(true);
    obj.spec = Default::default();
    let report = r.reconcile(&obj, &FakeObjects, now()).await;
    assert_eq!(
        report.outcome,
        RunOutcome::Stalled {
            reason: "InvalidSourceConfiguration".into(),
            message: "the object has no spec: spec.sourceRef and spec.interval are required".into(),
        }
    );
    assert_eq!(git.updates.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_template_past_a_rendering_limit_stalls_naming_the_limit_and_pushes_nothing() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    let mut obj = automation(true);
    if let Some(g) = obj.spec.git.as_mut() {
        g.commit.message_template = Some("{{ repeat 2000000000 \"x\" }}".into());
    }
    let report = r.reconcile(&obj, &FakeObjects, now()).await;
    let RunOutcome::Stalled { reason, message } = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(reason, "TemplateLimitExceeded");
    assert!(
        message.starts_with(
            "spec.git.commit.messageTemplate exceeded the rendering limit max_value_bytes"
        ),
        "{message}"
    );
    assert!(
        message.contains("at <repeat 2000000000 \"x\">: value size limit exceeded"),
        "{message}"
    );
    assert!(report.pushed.is_none());
    assert!(report.status.last_push_commit.is_none());
    assert!(meta::is_condition_true(
        &report.status.conditions,
        condition_type::STALLED
    ));
    assert!(!meta::is_condition_true(
        &report.status.conditions,
        condition_type::READY
    ));
    assert_eq!(git.updates.load(Ordering::SeqCst), 1);
}

/// A policy the reflector lists without a result yet (its repository was never scanned) is
/// not a typo: the marker says so, with the reflector's own reason and message.
#[tokio::test]
async fn a_policy_without_a_result_is_not_ready_not_unknown() {
    let git = Arc::new(FakeGit {
        manifest: Some(
            "image: reg/app:1.0.0 # {\"$imagepolicy\": \"ns:app\"}\n\
             pending: reg/p:1 # {\"$imagepolicy\": \"ns:pending\"}\n\
             typo: reg/t:1 # {\"$imagepolicy\": \"ns:typo\"}\n",
        ),
        ..FakeGit::default()
    });
    let mut pending = policy("unused");
    pending.name = "pending".into();
    pending.latest_ref = None;
    pending.readiness = Readiness {
        ready: false,
        reason: "DependencyNotReady".into(),
        message: "ImageRepository ns/p has not been scanned yet".into(),
        observed_generation: Some(1),
    };
    let r = reconciler(
        FakePolicies(Ok(vec![policy("1.1.0"), pending])),
        git.clone(),
    );
    let report = r.reconcile(&automation(true), &FakeObjects, now()).await;
    assert!(report.outcome.is_ready(), "{:?}", report.outcome);
    let by_setter = |setter: &str| {
        report
            .result
            .unmatched
            .iter()
            .find(|u| u.setter.as_deref() == Some(setter))
            .unwrap_or_else(|| panic!("no unmatched {setter}: {:?}", report.result.unmatched))
            .clone()
    };
    let pending = by_setter("ns:pending");
    assert_eq!(
        pending.reason,
        setters::UnmatchedReason::PolicyNotReady,
        "{pending:?}"
    );
    assert!(
        pending.message.contains("DependencyNotReady")
            && pending.message.contains("has not been scanned yet"),
        "{pending:?}"
    );
    assert!(!pending.message.contains("typo"), "{pending:?}");
    let typo = by_setter("ns:typo");
    assert_eq!(typo.reason, setters::UnmatchedReason::UnknownPolicy);
    // Only policies with a result are observed: a pending policy getting one triggers a run.
    assert_eq!(
        report
            .status
            .observed_policies
            .as_ref()
            .map(|p| p.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["app".to_string()])
    );
}

fn with_template(template: &str) -> ImageUpdateAutomation {
    let mut obj = automation(true);
    if let Some(g) = obj.spec.git.as_mut() {
        g.commit.message_template = Some(template.into());
    }
    obj
}

/// The seeds' v1beta1 template: `.Updated` was removed from Flux v1's data.
const UPDATED_TEMPLATE: &str = "Auto-update images\n{{ range .Updated.Images }}- {{.}}\n{{ end }}";

#[tokio::test]
async fn removed_updated_field_renders_with_a_deprecation_by_default() {
    let git = Arc::new(FakeGit::default());
    let r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    let report = r
        .reconcile(&with_template(UPDATED_TEMPLATE), &FakeObjects, now())
        .await;
    assert!(report.outcome.is_ready(), "{:?}", report.outcome);
    assert_eq!(
        report.pushed.as_ref().map(|p| p.message.as_str()),
        Some("Auto-update images\n- reg/app:1.1.0\n")
    );
    let [warning] = report.deprecations.as_slice() else {
        panic!("{:?}", report.deprecations);
    };
    assert_eq!(warning.type_, EventType::Warning);
    assert_eq!(warning.reason, DEPRECATED_TEMPLATE_FIELD);
    for part in [
        "spec.git.commit.messageTemplate line 2",
        "'.Updated'",
        "'.Changed'",
    ] {
        assert!(warning.message.contains(part), "{}", warning.message);
    }
    // Not one of the run's events: callers report it once per generation.
    assert!(
        report
            .events
            .iter()
            .all(|e| e.reason != DEPRECATED_TEMPLATE_FIELD)
    );

    let plain = r.reconcile(&automation(true), &FakeObjects, now()).await;
    assert!(plain.deprecations.is_empty());
}

#[tokio::test]
async fn removed_updated_field_stalls_like_flux_when_asked() {
    let git = Arc::new(FakeGit::default());
    let mut r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
    r.options.removed_template_fields = RemovedFields::Stall;
    let report = r
        .reconcile(&with_template(UPDATED_TEMPLATE), &FakeObjects, now())
        .await;
    assert_eq!(
        report.outcome,
        RunOutcome::Stalled {
            reason: "RemovedTemplateField".into(),
            message: "template uses removed '.Updated' field. Please use '.Changed' instead. \
                      See: https://fluxcd.io/flux/components/image/imageupdateautomations/#message-template"
                .into(),
        }
    );
    assert!(meta::is_condition_true(
        &report.status.conditions,
        condition_type::STALLED
    ));
    let ready = meta::find_condition(&report.status.conditions, condition_type::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RemovedTemplateField")
    );
    assert!(report.pushed.is_none());
    assert!(report.status.last_push_commit.is_none());
    assert!(report.deprecations.is_empty());
    assert_eq!(report.events[0].type_, EventType::Warning);
    assert_eq!(report.events[0].reason, "RemovedTemplateField");

    // A v1 template is unaffected.
    let ok = r.reconcile(&automation(true), &FakeObjects, now()).await;
    assert!(ok.outcome.is_ready(), "{:?}", ok.outcome);
    assert_eq!(
        ok.pushed.map(|p| p.message).as_deref(),
        Some("reg/app:1.1.0")
    );
}

#[tokio::test]
async fn sparse_checkout_follows_the_gate_and_a_non_root_update_path() {
    let cases = [
        (false, Some("./apps/"), None),
        (true, Some("./apps/"), Some("apps".to_string())),
        (true, Some("."), None),
        (true, None, None),
    ];
    for (gate, path, expected) in cases {
        let git = Arc::new(FakeGit::default());
        let mut r = reconciler(FakePolicies(Ok(vec![policy("1.1.0")])), git.clone());
        r.options.sparse_checkout = gate;
        let mut obj = automation(true);
        obj.spec.update = Some(api_types::UpdateStrategy {
            path: path.map(Into::into),
            ..api_types::UpdateStrategy::default()
        });
        r.reconcile(&obj, &FakeObjects, now()).await;
        assert_eq!(
            *git.sparse.lock().unwrap(),
            [expected],
            "gate {gate}, path {path:?}"
        );
    }
}
