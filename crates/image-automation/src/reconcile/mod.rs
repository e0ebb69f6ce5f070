//! The reconcile core for one `ImageUpdateAutomation` (Flux's algorithm, reference §5.1),
//! over traits so that standalone and Kubernetes modes (and tests) share it:
//! [`PolicySource`] (the reflector API), [`Objects`] (GitRepository and Secret lookup) and
//! [`GitClient`].
//!
//! The run: validate the spec (stalls), list the selected policies (reflector unreachable:
//! `DependencyNotReady`, retried), set up the source (GitRepository, secret, signing key:
//! `SourceManagerFailed`), skip the clone when neither the policies nor the remote head
//! changed (Flux's syncNeeded, §3.4), else fetch, apply the setters on `update.path`, render
//! the message, commit and push. The result is the new status, the outcome for the
//! conditions, and what a user needs to see: changes, unmatched markers, the pushed commit
//! and events.

mod objects;
pub mod selector;
mod source;

pub use objects::ObjectMap;

use source::source_setup;

use api_types::OptionalSpec as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use api_types::http_api::ImagePolicyInfo;
use api_types::meta::{self, Outcome, condition_type, reason};
use api_types::{GitRepository, ImageRef, ImageUpdateAutomation, ImageUpdateAutomationStatus};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::git::{self, ApplyResult, GitClient, GitError, GitRef, PushedCommit};
use crate::message::{self, RemovedFields, TemplateInput};
use crate::reflector_client::{ReflectorClient, ReflectorError};
use crate::setters::{self, Setters, Unmatched, UnmatchedReason, UpdateResult};

/// Flux's Ready message on success.
pub const READY_MESSAGE: &str = "repository up-to-date";

/// Where policy results come from.
pub trait PolicySource: Send + Sync {
    /// The policies of `namespace` matching `selector` (Kubernetes selector syntax).
    fn list<'a>(&'a self, namespace: &'a str, selector: Option<&'a str>) -> Policies<'a>;
}

/// What [`PolicySource::list`] answers (a boxed future: the trait stays dyn-compatible).
pub type Policies<'a> = BoxFuture<'a, Result<Vec<ImagePolicyInfo>, ReflectorError>>;

impl PolicySource for ReflectorClient {
    fn list<'a>(&'a self, namespace: &'a str, selector: Option<&'a str>) -> Policies<'a> {
        Box::pin(async move { Ok(self.list_policies(Some(namespace), selector).await?.items) })
    }
}

/// The other objects an automation reads.
pub trait Objects: Send + Sync {
    fn git_repository(&self, namespace: &str, name: &str) -> Option<GitRepository>;
    /// A Secret's data (`data` decoded, `stringData` merged).
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// ServiceAccounts and their tokens, for object-level workload identity (Kubernetes
    /// mode only).
    fn service_accounts(&self) -> Option<&dyn crate::git::provider::ServiceAccounts> {
        None
    }
}

/// The event types Flux records (`Trace` is a `Normal` Kubernetes event that is not
/// forwarded to notification-controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    Normal,
    Warning,
    Trace,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// How the run ended, for the conditions and the requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Ready,
    /// Retried with backoff.
    Retry {
        reason: String,
        message: String,
    },
    /// Waits for a spec change.
    Stalled {
        reason: String,
        message: String,
    },
}

impl RunOutcome {
    fn retry(reason: &str, message: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }

    /// The Ready condition's reason and message.
    pub fn reason_and_message(&self) -> (&str, &str) {
        match self {
            Self::Ready => (reason::SUCCEEDED, READY_MESSAGE),
            Self::Retry { reason, message } | Self::Stalled { reason, message } => {
                (reason, message)
            }
        }
    }
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The new status (conditions included).
    pub status: ImageUpdateAutomationStatus,
    pub outcome: RunOutcome,
    /// What the setters found on the last full sync of this run (empty when skipped).
    pub result: UpdateResult,
    pub pushed: Option<PushedCommit>,
    /// True when the clone was skipped (nothing changed since the last run).
    pub short_circuited: bool,
    /// The git fetches of the run (clone or incremental fetch, duration, bytes).
    pub fetches: Vec<git::FetchStats>,
    /// Flux's one event per run, then ours (markers that were not applied, git cache
    /// repairs).
    pub events: Vec<Event>,
    /// What the git layer repaired in its cache for this run (quarantine, stale locks).
    pub cache_recoveries: Vec<git::CacheRecovery>,
    /// Warnings about the spec that hold until it changes (a deprecated template field):
    /// the same every run, so callers report them once per generation, not with
    /// [`RunReport::events`].
    pub deprecations: Vec<Event>,
}

/// The event reason of a template that reads a deprecated field (`.Updated`).
pub const DEPRECATED_TEMPLATE_FIELD: &str = "DeprecatedTemplateField";

/// A template that failed to render stalls: it fails the same way until the spec changes.
/// One that ran out of a rendering limit says which, and that nothing was committed.
fn template_stall(error: &message::MessageError) -> RunOutcome {
    if matches!(error, message::MessageError::RemovedField) {
        return RunOutcome::stalled(reason::REMOVED_TEMPLATE_FIELD, error.to_string());
    }
    match error.limit_exceeded() {
        Some(limit) => RunOutcome::stalled(
            reason::TEMPLATE_LIMIT_EXCEEDED,
            format!(
                "spec.git.commit.messageTemplate exceeded the rendering limit {} (nothing was \
                 committed or pushed): {error}",
                limit.limit_name()
            ),
        ),
        None => RunOutcome::stalled(
            reason::GIT_OPERATION_FAILED,
            format!("failed to update source: {error}"),
        ),
    }
}

/// Settings shared by all runs.
#[derive(Debug, Clone)]
pub struct ReconcilerOptions {
    /// `--no-cross-namespace-refs`: a sourceRef to another namespace stalls (`AccessDenied`).
    pub no_cross_namespace_refs: bool,
    /// Attempts when a push is rejected because the branch moved.
    pub max_push_attempts: u32,
    /// `--removed-template-fields`: render `.Updated` with a deprecation warning, or stall
    /// as Flux v1 does.
    pub removed_template_fields: RemovedFields,
    /// Flux's `GitSparseCheckout` gate: with a non-root `update.path`, only that path is
    /// checked out.
    pub sparse_checkout: bool,
}

impl Default for ReconcilerOptions {
    fn default() -> Self {
        Self {
            no_cross_namespace_refs: false,
            max_push_attempts: 3,
            removed_template_fields: RemovedFields::Render,
            sparse_checkout: false,
        }
    }
}

/// Reconciles automations.
pub struct Reconciler<P> {
    pub policies: P,
    pub git: Arc<dyn GitClient>,
    pub options: ReconcilerOptions,
}

impl<P> std::fmt::Debug for Reconciler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One line per unmatched marker: `path:line: message`.
pub fn describe_unmatched(u: &Unmatched) -> String {
    match u.line {
        Some(line) => format!("{}:{line}: {}", u.path, u.message),
        None => format!("{}: {}", u.path, u.message),
    }
}

/// What the apply closure found, kept across push attempts.
#[derive(Debug, Default)]
struct Applied {
    result: UpdateResult,
    template_error: Option<message::MessageError>,
}

/// Everything the blocking git part needs, owned.
struct ApplyInput {
    namespace: String,
    name: String,
    update_path: Option<String>,
    setters: Setters,
    template: String,
    values: Option<BTreeMap<String, String>>,
    removed_template_fields: RemovedFields,
}

fn apply_in(root: &Path, input: &ApplyInput, found: &Mutex<Applied>) -> ApplyResult {
    let applied = setters::apply(root, input.update_path.as_deref(), &input.setters, false)?;
    let mut found = found.lock().unwrap_or_else(PoisonError::into_inner);
    found.result = applied.result.clone();
    if applied.edits.is_empty() {
        return Ok(None);
    }
    let message = message::render_as(
        &input.template,
        &TemplateInput {
            namespace: &input.namespace,
            name: &input.name,
            result: &applied.result,
            values: input.values.as_ref(),
            setters: &input.setters,
        },
        &go_template::Limits::DEFAULT,
        input.removed_template_fields,
    );
    let message = match message {
        Ok(m) => m,
        Err(e) => {
            found.template_error = Some(e.clone());
            return Err(Box::new(e));
        }
    };
    setters::write_edits(&applied.edits)?;
    let (files, originals) = applied
        .edits
        .into_iter()
        .map(|e| (e.target.clone(), (e.target, e.before.into_bytes())))
        .unzip();
    Ok(Some(git::Written {
        message,
        files,
        originals,
    }))
}

impl<P: PolicySource> Reconciler<P> {
    /// One run for `obj` (its current status is the last run's). Never fails: every
    /// problem is an outcome.
    pub async fn reconcile(
        &self,
        obj: &ImageUpdateAutomation,
        objects: &dyn Objects,
        now: Time,
    ) -> RunReport {
        let namespace = obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = obj.metadata.name.clone().unwrap_or_default();
        let old = obj.status.clone().unwrap_or_default();
        let was_ready = meta::is_condition_true(&old.conditions, condition_type::READY);
        let mut status = old.clone();
        status.last_automation_run_time = Some(now.clone());
        if let Some(requested) = meta::pending_reconcile_request(
            obj.metadata.annotations.as_ref(),
            old.last_handled_reconcile_at.as_deref(),
        ) {
            status.last_handled_reconcile_at = Some(requested.to_owned());
        }
        let mut report = RunReport {
            status,
            outcome: RunOutcome::Ready,
            result: UpdateResult::default(),
            pushed: None,
            short_circuited: false,
            events: Vec::new(),
            fetches: Vec::new(),
            cache_recoveries: Vec::new(),
            deprecations: Vec::new(),
        };
        report.outcome = self
            .run(obj, &namespace, &name, objects, &now, &mut report)
            .await;
        self.finish(obj, was_ready, &now, &mut report);
        report
    }

    async fn run(
        &self,
        obj: &ImageUpdateAutomation,
        namespace: &str,
        name: &str,
        objects: &dyn Objects,
        now: &Time,
        report: &mut RunReport,
    ) -> RunOutcome {
        let spec = &obj.spec;
        if let Some(message) = spec.missing_spec_message() {
            return RunOutcome::stalled(reason::INVALID_SOURCE_CONFIGURATION, message);
        }
        // Standalone manifests are not defaulted by an API server: a missing `update` is
        // the CRD default `{strategy: Setters}`; `Setters` is the only strategy that parses.
        let update_path = spec
            .update
            .as_ref()
            .and_then(|u| u.path.clone())
            .filter(|p| !p.is_empty());
        let selector = match selector::to_query(spec.policy_selector.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                return RunOutcome::stalled(
                    reason::INVALID_POLICY_SELECTOR,
                    format!("failed to parse policy selector: {e}"),
                );
            }
        };
        let template = spec
            .git
            .as_ref()
            .and_then(|g| g.commit.message_template.clone())
            .unwrap_or_default();
        if let Err(e) = message::validate(&template) {
            return RunOutcome::stalled(
                reason::GIT_OPERATION_FAILED,
                format!("failed to update source: invalid commit message template: {e}"),
            );
        }
        if self.options.removed_template_fields == RemovedFields::Render {
            report.deprecations = message::deprecated_fields(&template)
                .iter()
                .map(|d| Event {
                    type_: EventType::Warning,
                    reason: DEPRECATED_TEMPLATE_FIELD.into(),
                    message: d.message(),
                })
                .collect();
        }

        let policies = match self.policies.list(namespace, selector.as_deref()).await {
            Ok(p) => p,
            Err(e) if e.is_bad_request() => {
                return RunOutcome::stalled(
                    reason::INVALID_POLICY_SELECTOR,
                    format!("failed to parse policy selector: {e}"),
                );
            }
            Err(e) => {
                return RunOutcome::retry(
                    reason::DEPENDENCY_NOT_READY,
                    format!("failed to list image policies: {e}"),
                );
            }
        };
        // Policies without a result yet stay in: a marker naming one is reported as
        // PolicyNotReady with the reflector's reason, not as an unknown policy. Only those
        // with a result are observed.
        let policies: Vec<ImagePolicyInfo> = policies
            .into_iter()
            .filter(|p| p.namespace == namespace)
            .collect();
        let observed: BTreeMap<String, ImageRef> = policies
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.latest_ref.clone()?)))
            .collect();
        // A policy with an invalid latest image is skipped (its markers are reported
        // unmatched); the others still apply.
        let setters = Setters::from_policies(namespace, &policies);
        for (policy, why) in setters.invalid_policies() {
            tracing::warn!(namespace, policy, reason = %why, "skipping an ImagePolicy");
        }

        let request = match source_setup(
            obj,
            namespace,
            objects,
            &self.options,
            self.options.max_push_attempts,
        )
        .await
        {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };

        // syncNeeded (§3.4).
        let push_branch = request.push.branch.clone();
        let checkout_branch = request.checkout.branch.clone().or_else(|| {
            (request.checkout == GitRef::default()).then(|| git::DEFAULT_BRANCH.to_owned())
        });
        let switch_branch = push_branch.is_some() && push_branch != checkout_branch;
        let mut sync_needed = report.status.observed_policies.as_ref() != Some(&observed)
            || switch_branch
            || request.push.refspec.is_some()
            || report
                .status
                .observed_source_revision
                .as_deref()
                .is_none_or(str::is_empty);
        if !sync_needed {
            let git = self.git.clone();
            let (repo, checkout) = (request.repo.clone(), request.checkout.clone());
            let head = tokio::task::spawn_blocking(move || git.remote_head(&repo, &checkout))
                .await
                .map_err(|e| GitError::Git(format!("remote head task: {e}")))
                .and_then(|r| r);
            match head {
                Ok(Some(head)) => {
                    sync_needed = report.status.observed_source_revision.as_deref()
                        != Some(head.revision().as_str());
                }
                Ok(None) => sync_needed = true,
                Err(e) => return git_failure("failed to checkout source", &e),
            }
        }
        if !sync_needed {
            report.short_circuited = true;
            return RunOutcome::Ready;
        }

        let input = ApplyInput {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            update_path,
            setters,
            template,
            values: spec
                .git
                .as_ref()
                .and_then(|g| g.commit.message_template_values.clone()),
            removed_template_fields: self.options.removed_template_fields,
        };
        let found = Arc::new(Mutex::new(Applied::default()));
        let git = self.git.clone();
        let found_in = found.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            git.update_and_push(&request, &mut |root| apply_in(root, &input, &found_in))
        })
        .await
        .map_err(|e| GitError::Git(format!("update task: {e}")))
        .and_then(|r| r);
        let found = std::mem::take(&mut *found.lock().unwrap_or_else(PoisonError::into_inner));
        report.result = found.result;
        match outcome {
            Ok(outcome) => {
                report.fetches = outcome.fetches.clone();
                report.cache_recoveries = outcome.recoveries.clone();
                report.status.observed_policies = Some(observed);
                report.status.observed_source_revision = Some(outcome.observed_revision());
                if let Some(pushed) = &outcome.pushed {
                    report.status.last_push_commit = Some(pushed.commit.clone());
                    report.status.last_push_time = Some(now.clone());
                }
                report.pushed = outcome.pushed;
                RunOutcome::Ready
            }
            Err(GitError::Apply(source)) => match found.template_error {
                Some(template) => template_stall(&template),
                None => RunOutcome::retry(
                    reason::UPDATE_FAILED,
                    format!("failed to apply policies: {source}"),
                ),
            },
            Err(e) => git_failure("failed to update source", &e),
        }
    }

    /// Conditions, observedGeneration and events, as Flux's result finalizer and notify.
    fn finish(
        &self,
        obj: &ImageUpdateAutomation,
        was_ready: bool,
        now: &Time,
        report: &mut RunReport,
    ) {
        let generation = obj.metadata.generation;
        let unparseable = unparseable_files(&report.result);
        let ready_message = match &unparseable {
            Some(files) => format!("{READY_MESSAGE}; {files}"),
            None => READY_MESSAGE.to_owned(),
        };
        let outcome = match &report.outcome {
            RunOutcome::Ready => Outcome::Ready {
                message: &ready_message,
            },
            RunOutcome::Retry { reason, message } => Outcome::Retrying { reason, message },
            RunOutcome::Stalled { reason, message } => Outcome::Stalled { reason, message },
        };
        meta::apply_outcome(&mut report.status.conditions, outcome, generation, now);
        if meta::should_record_observed_generation(&report.status.conditions) {
            report.status.observed_generation = generation;
        }
        let event = match (&report.outcome, &report.pushed) {
            (RunOutcome::Ready, Some(p)) => Event {
                type_: EventType::Normal,
                reason: reason::SUCCEEDED.into(),
                message: format!(
                    "pushed commit '{}' to branch '{}'\n{}",
                    &p.commit[..p.commit.len().min(7)],
                    p.branch,
                    p.message
                ),
            },
            (RunOutcome::Ready, None) if !was_ready => Event {
                type_: EventType::Normal,
                reason: reason::SUCCEEDED.into(),
                message: READY_MESSAGE.into(),
            },
            (RunOutcome::Ready, None) => Event {
                type_: EventType::Trace,
                reason: reason::SUCCEEDED.into(),
                message: if report.short_circuited {
                    "no change since last reconciliation".into()
                } else {
                    READY_MESSAGE.into()
                },
            },
            (other, _) => {
                let (reason, message) = other.reason_and_message();
                Event {
                    type_: EventType::Warning,
                    reason: reason.into(),
                    message: message.into(),
                }
            }
        };
        report.events.push(event);
        if !report.result.unmatched.is_empty() {
            let lines: Vec<String> = report
                .result
                .unmatched
                .iter()
                .map(describe_unmatched)
                .collect();
            // A file that could not be parsed hides every marker in it: a Warning, not
            // the silent skip Flux does.
            report.events.push(Event {
                type_: if unparseable.is_some() {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: "MarkersNotApplied".into(),
                message: format!(
                    "{} marker(s) not applied:\n{}",
                    lines.len(),
                    lines.join("\n")
                ),
            });
        }
        recovery_events(report);
    }
}

/// The files whose markers were skipped because they are not valid YAML (or UTF-8),
/// for the Ready message: the first few, then a count.
fn unparseable_files(result: &UpdateResult) -> Option<String> {
    const LISTED: usize = 3;
    let bad: Vec<&Unmatched> = result
        .unmatched
        .iter()
        .filter(|u| u.reason == UnmatchedReason::UnparseableFile)
        .collect();
    if bad.is_empty() {
        return None;
    }
    let mut text = format!(
        "{} file(s) with markers could not be parsed, their markers were not applied: ",
        bad.len()
    );
    let listed: Vec<String> = bad
        .iter()
        .take(LISTED)
        .map(|u| describe_unmatched(u))
        .collect();
    text.push_str(&listed.join("; "));
    if bad.len() > LISTED {
        text.push_str(&format!("; and {} more", bad.len() - LISTED));
    }
    Some(text)
}

/// A Warning event per git cache repair: the cache was damaged or a process was killed
/// mid-operation, which someone may want to look into even though the run recovered.
fn recovery_events(report: &mut RunReport) {
    for recovery in &report.cache_recoveries {
        report.events.push(Event {
            type_: EventType::Warning,
            reason: "GitCacheRecovered".into(),
            message: recovery.detail.clone(),
        });
    }
}

fn git_failure(context: &str, e: &GitError) -> RunOutcome {
    let message = format!("{context}: {e}");
    if e.is_stall() {
        RunOutcome::stalled(e.flux_reason(), message)
    } else {
        RunOutcome::retry(e.flux_reason(), message)
    }
}

#[cfg(test)]
mod tests;
