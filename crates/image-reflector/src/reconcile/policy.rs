//! The ImagePolicy reconciler (reference §5.3).

use api_types::OptionalSpec as _;
use std::time::{Duration, SystemTime};

use api_types::meta::{condition_type, find_condition, reason};
use api_types::{ImagePolicy, ImagePolicyStatus, ImageRef, ImageRepository};

use super::access::{AccessSetupError, registry_access};
use super::cloud::{LoginFor, check_identity, cloud_provider, login};
use super::events::Event;
use super::name_of;
use super::repository::{RepositoryError, scan_timeout};
use super::{
    Deps, Next, SourceError, conclude, go_duration, namespace_of, record_reconcile_request,
};
use crate::policy::digest::{DigestAction, IntervalError, digest_action, requeue_interval};
use crate::policy::{Policy, PolicyError, SelectError};
use crate::reference::{ImageReference, ReferenceError};
use crate::registry::RegistryError;
use crate::store::{RepoKey, StoreError};

/// Why an ImagePolicy is not Ready. [`PolicyReconcileError::next`] decides stall, backoff
/// or a plain requeue.
#[derive(Debug, thiserror::Error)]
pub enum PolicyReconcileError {
    /// Stored without a spec (Flux's schema allows it).
    #[error("{0}")]
    MissingSpec(String),
    #[error(transparent)]
    Interval(IntervalError),
    #[error("cannot access '{namespace}/{name}', cross-namespace references have been blocked")]
    CrossNamespaceBlocked { namespace: String, name: String },
    #[error(
        "failed to get the referred ImageRepository: referenced ImageRepository does not exist: imagerepositories.image.toolkit.fluxcd.io \"{name}\" not found"
    )]
    RepositoryNotFound { namespace: String, name: String },
    #[error("failed to get the referred ImageRepository: {0}")]
    RepositoryRead(SourceError),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error(transparent)]
    RepositoryImage(ReferenceError),
    #[error(transparent)]
    InvalidPolicy(PolicyError),
    /// The repository has not stored any tags yet: wait for its scan.
    #[error("retrying in {} error: no tags in database", go_duration(*.retry))]
    NoTags { retry: Duration },
    #[error("failed to read the tags of the referred ImageRepository: {0}")]
    Store(StoreError),
    #[error("cannot determine latest tag for policy: {0}")]
    Select(SelectError),
    #[error("failed to configure authentication options for the digest lookup: {0}")]
    DigestAuthentication(String),
    #[error("failed to fetch digest for {image}:{tag}: {source}")]
    Digest {
        image: String,
        tag: String,
        source: RegistryError,
    },
}

impl PolicyReconcileError {
    /// The Ready (and Stalled) condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Interval(IntervalError::NotConfigured) => reason::INTERVAL_NOT_CONFIGURED,
            Self::MissingSpec(_) | Self::Interval(_) | Self::InvalidPolicy(_) => {
                reason::INVALID_POLICY
            }
            Self::CrossNamespaceBlocked { .. } | Self::AccessDenied(_) => reason::ACCESS_DENIED,
            Self::RepositoryNotFound { .. } | Self::NoTags { .. } => reason::DEPENDENCY_NOT_READY,
            Self::RepositoryImage(_) => reason::IMAGE_URL_INVALID,
            Self::RepositoryRead(_) | Self::Store(_) | Self::Select(_) => reason::FAILURE,
            Self::DigestAuthentication(_) | Self::Digest { .. } => reason::FAILED,
        }
    }

    /// Spec errors stall; ACL denials retry because namespace labels are not watched.
    pub fn stalls(&self) -> bool {
        matches!(
            self,
            Self::MissingSpec(_)
                | Self::Interval(_)
                | Self::RepositoryImage(_)
                | Self::InvalidPolicy(_)
        )
    }

    /// When to reconcile again.
    pub fn next(&self) -> Next {
        match self {
            _ if self.stalls() => Next::OnChange,
            // Not an error in Flux: a plain requeue, without growing the backoff.
            Self::NoTags { retry } => Next::After(*retry),
            _ => Next::Backoff,
        }
    }
}

/// The result of one ImagePolicy reconcile.
#[derive(Debug)]
pub struct PolicyOutcome {
    pub status: ImagePolicyStatus,
    /// When to run again on success (`digestReflectionPolicy: Always`).
    pub requeue_after: Option<Duration>,
    pub event: Option<Event>,
    pub error: Option<PolicyReconcileError>,
    /// The repository the policy refers to, `(namespace, name)` (namespace defaulted).
    pub repository: (String, String),
    pub suspended: bool,
}

impl PolicyOutcome {
    pub fn next(&self) -> Next {
        match &self.error {
            Some(e) => e.next(),
            None => self.requeue_after.map_or(Next::OnChange, Next::After),
        }
    }
}

/// The repository `(namespace, name)` a policy refers to.
pub fn repository_ref(policy: &ImagePolicy) -> (String, String) {
    let (namespace, name) = repository_ref_str(policy);
    (namespace.to_string(), name.to_string())
}

/// [`repository_ref`] borrowed from the policy (no allocation: the standalone engine asks
/// it of every policy after every scan).
pub fn repository_ref_str(policy: &ImagePolicy) -> (&str, &str) {
    let r = &policy.spec.image_repository_ref;
    let namespace = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace_of(&policy.metadata));
    (namespace, r.name.as_str())
}

/// Flux's Ready message: `Latest image tag for <name> resolved to <tag>[ with digest <d>]`
/// `[ (previously <name>:<tag>[@<digest>])]`.
pub fn ready_message(status: &ImagePolicyStatus) -> String {
    let Some(latest) = &status.latest_ref else {
        return String::new();
    };
    let mut message = format!(
        "Latest image tag for {} resolved to {}",
        latest.name, latest.tag
    );
    if let Some(digest) = latest.digest.as_deref().filter(|d| !d.is_empty()) {
        message.push_str(" with digest ");
        message.push_str(digest);
    }
    if let Some(previous) = status
        .observed_previous_ref
        .as_ref()
        .filter(|p| *p != latest)
    {
        message.push_str(&format!(" (previously {previous})"));
    }
    message
}

/// Reconciles `policy` (with its current `status`) at `now`.
pub async fn reconcile_policy(policy: &ImagePolicy, deps: &Deps, now: SystemTime) -> PolicyOutcome {
    let mut status = policy.status.clone().unwrap_or_default();
    let before = find_condition(&status.conditions, condition_type::READY).cloned();
    let repository = repository_ref(policy);
    record_reconcile_request(&policy.metadata, &mut status.last_handled_reconcile_at);
    if policy.spec.suspend {
        return PolicyOutcome {
            status,
            requeue_after: None,
            event: None,
            error: None,
            repository,
            suspended: true,
        };
    }

    let result = run(policy, deps, &repository, &mut status).await;
    let result = result.map(|requeue| (ready_message(&status), requeue));
    let parts = (&mut status.conditions, &mut status.observed_generation);
    let at = (policy.metadata.generation, now);
    let failure = |e: &PolicyReconcileError| (e.reason(), e.stalls());
    let (requeue_after, event, error) = conclude(parts, before.as_ref(), result, failure, at);
    PolicyOutcome {
        repository,
        suspended: false,
        status,
        requeue_after,
        event,
        error,
    }
}

/// Steps 2 to 10; returns the requeue period.
async fn run(
    policy: &ImagePolicy,
    deps: &Deps,
    (repo_namespace, repo_name): &(String, String),
    status: &mut ImagePolicyStatus,
) -> Result<Option<Duration>, PolicyReconcileError> {
    if let Some(message) = policy.spec.missing_spec_message() {
        return Err(PolicyReconcileError::MissingSpec(message));
    }
    let requeue = requeue_interval(&policy.spec).map_err(PolicyReconcileError::Interval)?;
    let namespace = namespace_of(&policy.metadata);
    let cross_namespace = repo_namespace != namespace;
    if cross_namespace && deps.options.no_cross_namespace_refs {
        return Err(PolicyReconcileError::CrossNamespaceBlocked {
            namespace: repo_namespace.clone(),
            name: repo_name.clone(),
        });
    }
    let repo = deps
        .objects
        .image_repository(repo_namespace, repo_name)
        .await
        .map_err(PolicyReconcileError::RepositoryRead)?
        .ok_or_else(|| PolicyReconcileError::RepositoryNotFound {
            namespace: repo_namespace.clone(),
            name: repo_name.clone(),
        })?;
    if cross_namespace {
        check_access(deps, &repo, namespace, repo_namespace, repo_name).await?;
    }
    let image = ImageReference::parse(&repo.spec.image, repo.spec.insecure)
        .map_err(PolicyReconcileError::RepositoryImage)?;
    let selector = Policy::from_spec(&policy.spec).map_err(PolicyReconcileError::InvalidPolicy)?;

    let key = RepoKey::new(repo_namespace.as_str(), repo_name.as_str());
    let tags = deps
        .store
        .get_tags(&key)
        .map_err(PolicyReconcileError::Store)?
        .unwrap_or_default();
    if tags.is_empty() {
        return Err(PolicyReconcileError::NoTags {
            retry: deps.options.requeue_dependency,
        });
    }
    let selected = selector
        .select(tags.iter().map(String::as_str))
        .map_err(PolicyReconcileError::Select)?;
    drop(tags);

    let name = repo.spec.image.clone();
    let digest = match digest_action(
        policy.spec.digest_reflection_policy,
        status.latest_ref.as_ref(),
        &name,
        &selected.tag,
    ) {
        DigestAction::Clear => None,
        DigestAction::Keep(digest) => Some(digest),
        DigestAction::Fetch => Some(fetch_digest(deps, &repo, &image, &selected.tag).await?),
    };
    status.record_latest(ImageRef {
        name,
        tag: selected.tag,
        digest,
    });
    Ok(requeue)
}

/// The repository's `accessFrom` against the policy namespace's labels.
async fn check_access(
    deps: &Deps,
    repo: &ImageRepository,
    policy_namespace: &str,
    repo_namespace: &str,
    repo_name: &str,
) -> Result<(), PolicyReconcileError> {
    let denied = |why: String| PolicyReconcileError::AccessDenied(why);
    let Some(access_from) = &repo.spec.access_from else {
        return Err(denied(format!(
            "ImageRepository '{repo_namespace}/{repo_name}' has no spec.accessFrom, so ImagePolicies in namespace '{policy_namespace}' may not use it"
        )));
    };
    // A namespace we cannot see has no labels (an empty matchLabels still admits it).
    let labels = deps
        .objects
        .namespace_labels(policy_namespace)
        .await
        .map_err(|e| {
            denied(format!(
                "failed to read namespace '{policy_namespace}': {e}"
            ))
        })?
        .unwrap_or_default();
    if access_from.admits(&labels) {
        Ok(())
    } else {
        Err(denied(format!(
            "namespace '{policy_namespace}' does not match any spec.accessFrom.namespaceSelectors of ImageRepository '{repo_namespace}/{repo_name}'"
        )))
    }
}

async fn fetch_digest(
    deps: &Deps,
    repo: &ImageRepository,
    image: &ImageReference,
    tag: &str,
) -> Result<String, PolicyReconcileError> {
    let auth = |e: String| PolicyReconcileError::DigestAuthentication(e);
    // The repository's timeout bounds the lookup, as in Flux.
    let timeout = scan_timeout(&repo.spec).map_err(|e: RepositoryError| auth(e.to_string()))?;
    let namespace = namespace_of(&repo.metadata);
    let access = tokio::time::timeout(
        timeout,
        registry_access(deps.objects.as_ref(), namespace, &repo.spec, image),
    )
    .await
    .unwrap_or(Err(AccessSetupError::Timeout))
    .map_err(|e| auth(e.to_string()))?;
    let mut access = access;
    if let Some(provider) = cloud_provider(repo.spec.provider) {
        let identity = check_identity(
            deps.options.workload_identity,
            repo.spec.service_account_name.as_deref(),
            true,
        )
        .map_err(|e| auth(e.to_string()))?;
        // The ServiceAccount is the repository's (in its namespace), as in Flux.
        let object = LoginFor {
            kind: "ImageRepository",
            namespace,
            name: name_of(&repo.metadata),
        };
        let proxy = access.transport.proxy.as_ref();
        let (credentials, _) = login(
            deps,
            provider,
            &identity,
            &repo.spec.image,
            proxy,
            timeout,
            object,
        )
        .await
        .map_err(|e| auth(e.to_string()))?;
        access.credentials = Some(credentials);
    }
    deps.digests
        .manifest_digest(image, tag, &access, timeout)
        .await
        .map_err(|source| PolicyReconcileError::Digest {
            image: repo.spec.image.clone(),
            tag: tag.to_string(),
            source,
        })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
