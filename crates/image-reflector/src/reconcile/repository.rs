//! The ImageRepository reconciler (reference §5.2).

use api_types::OptionalSpec as _;
use std::time::{Duration, Instant, SystemTime};

use api_types::duration::{InvalidDuration, parse_duration};
use api_types::meta::{
    RECONCILE_REQUEST_ANNOTATION, condition_type, find_condition, mark_progressing, reason,
    remove_condition,
};
use api_types::{ImageRepository, ImageRepositoryStatus, ScanResult as StatusScanResult};

use super::access::{AccessSetupError, registry_access};
use super::cloud::{
    CloudLoginError, LoginFor, check_identity, cloud_provider, forget_login, login,
};
use super::events::Event;
use super::{
    BoxFuture, Deps, Next, conclude, from_time, name_of, namespace_of, record_reconcile_request,
    to_time,
};
use crate::reference::{ImageReference, ReferenceError};
use crate::registry::{ExclusionError, ExclusionList, RegistryAccess, RegistryError, ScanResult};
use crate::schedule::{ScanDecision, ScanReason, ScanState, decide};
use crate::store::{RepoKey, StoreError};

/// The scan timeout never goes below this (Flux's `GetTimeout`).
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a scan failed (`ReadOperationFailed`, retried).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Exclusion(#[from] ExclusionError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cloud provider's login (checked lazily, at scan time, as in Flux).
    #[error(transparent)]
    Cloud(#[from] CloudLoginError),
}

/// Why an ImageRepository is not Ready. [`RepositoryError::stalls`] decides stall (wait
/// for a spec change) versus retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Stored without a spec (Flux's schema allows it).
    #[error("{0}")]
    MissingSpec(String),
    /// `spec.interval` or `spec.timeout` is not a duration (the CRD pattern normally
    /// rejects it; manifests in standalone mode are not validated by an API server).
    #[error("{field}: {source}")]
    InvalidDuration {
        field: &'static str,
        source: InvalidDuration,
    },
    #[error(transparent)]
    ImageUrl(#[from] ReferenceError),
    /// `spec.serviceAccountName` with a cloud provider while the
    /// `ObjectLevelWorkloadIdentity` gate is off.
    #[error(transparent)]
    FeatureGate(cloud_identity::workload_identity::GateError),
    #[error("failed to configure authentication options: {0}")]
    Authentication(AccessSetupError),
    #[error("failed to determine if it's scan time: {0}")]
    ScanTime(StoreError),
    #[error("scan failed: {0}")]
    Scan(#[from] ScanError),
}

impl RepositoryError {
    /// The Ready (and Stalled) condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidDuration { .. } => reason::INTERVAL_NOT_CONFIGURED,
            Self::MissingSpec(_) | Self::ImageUrl(_) => reason::IMAGE_URL_INVALID,
            Self::FeatureGate(_) => reason::FEATURE_GATE_DISABLED,
            Self::Authentication(_) => reason::AUTHENTICATION_FAILED,
            Self::ScanTime(_) => reason::FAILURE,
            Self::Scan(_) => reason::READ_OPERATION_FAILED,
        }
    }

    /// True for spec errors that no retry can fix.
    pub fn stalls(&self) -> bool {
        matches!(
            self,
            Self::MissingSpec(_)
                | Self::InvalidDuration { .. }
                | Self::ImageUrl(_)
                | Self::FeatureGate(_)
        )
    }

    /// The wait a rate-limiting registry asked for, to respect over a shorter backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Scan(ScanError::Registry(e)) => e.retry_after(),
            _ => None,
        }
    }
}

/// A scan that ran, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub duration: Duration,
    /// Tags stored (after the exclusion list); 0 on failure.
    pub tags: usize,
    pub ok: bool,
    /// Listed tags that are not valid tags (not stored; the log names one).
    pub skipped_tags: usize,
}

/// The result of one ImageRepository reconcile.
#[derive(Debug)]
pub struct RepositoryOutcome {
    /// The status to write (the input status when suspended, apart from
    /// `lastHandledReconcileAt`).
    pub status: ImageRepositoryStatus,
    /// When to run again on success: the next scan (`None`: never by time).
    pub requeue_after: Option<Duration>,
    pub event: Option<Event>,
    /// Why the repository is not Ready; `None` on success and when suspended.
    pub error: Option<RepositoryError>,
    /// Set when a scan ran.
    pub scan: Option<ScanReport>,
    pub suspended: bool,
}

impl RepositoryOutcome {
    /// When the caller should reconcile again.
    pub fn next(&self) -> Next {
        match &self.error {
            Some(e) if e.stalls() => Next::OnChange,
            Some(_) => Next::Backoff,
            None => self.requeue_after.map_or(Next::OnChange, Next::After),
        }
    }

    /// The revision of the stored tags after this reconcile.
    pub fn revision(&self) -> Option<&str> {
        self.status
            .last_scan_result
            .as_ref()
            .map(|s| s.revision.as_str())
    }
}

/// Told when a scan starts, with the status to publish while it runs: Flux patches the
/// `Reconciling` condition "scanning: <reason>" before scanning, and so do we (the API
/// state in standalone mode, one status write in Kubernetes mode).
pub trait ScanProgress: Send + Sync {
    fn scanning<'a>(&'a self, status: &'a ImageRepositoryStatus) -> BoxFuture<'a, ()>;
}

/// Reconciles `repo` (with its current `status`) at `now`, publishing nothing while a
/// scan runs.
pub async fn reconcile_repository(
    repo: &ImageRepository,
    deps: &Deps,
    now: SystemTime,
) -> RepositoryOutcome {
    reconcile_repository_with(repo, deps, now, None).await
}

/// Reconciles `repo` at `now`; when a scan runs, `progress` is told the in-progress
/// status first.
pub async fn reconcile_repository_with(
    repo: &ImageRepository,
    deps: &Deps,
    now: SystemTime,
    progress: Option<&dyn ScanProgress>,
) -> RepositoryOutcome {
    let mut status = repo.status.clone().unwrap_or_default();
    let before = find_condition(&status.conditions, condition_type::READY).cloned();
    // Flux records a handled request whatever the result (its deferred patch does).
    record_reconcile_request(&repo.metadata, &mut status.last_handled_reconcile_at);
    if repo.spec.suspend {
        return RepositoryOutcome {
            status,
            requeue_after: None,
            event: None,
            error: None,
            scan: None,
            suspended: true,
        };
    }

    let mut scan = None;
    let result = run(repo, deps, now, &mut status, &mut scan, progress).await;
    let result = result.map(|next| {
        let (count, revision) = status
            .last_scan_result
            .as_ref()
            .map(|s| (s.tag_count, s.revision.clone()))
            .unwrap_or_default();
        let mut message = format!("successful scan: found {count} tags with checksum {revision}");
        if let Some(skipped) = scan.map(|r| r.skipped_tags).filter(|n| *n > 0) {
            message.push_str(&format!("; skipped {skipped} invalid tag(s)"));
        }
        (message, (!next.is_zero()).then_some(next))
    });
    let at = (repo.metadata.generation, now);
    let failure = |e: &RepositoryError| (e.reason(), e.stalls());
    let parts = (&mut status.conditions, &mut status.observed_generation);
    let (requeue_after, event, error) = conclude(parts, before.as_ref(), result, failure, at);
    RepositoryOutcome {
        status,
        requeue_after,
        event,
        error,
        scan,
        suspended: false,
    }
}

fn parse_field(field: &'static str, text: &str) -> Result<Duration, RepositoryError> {
    parse_duration(text).map_err(|source| RepositoryError::InvalidDuration { field, source })
}

/// The scan timeout: `spec.timeout`, else the interval, at least a second.
pub(crate) fn scan_timeout(
    spec: &api_types::ImageRepositorySpec,
) -> Result<Duration, RepositoryError> {
    let interval = parse_field("spec.interval", &spec.interval)?;
    let timeout = match spec.timeout.as_deref() {
        Some(t) => parse_field("spec.timeout", t)?,
        None => interval,
    };
    Ok(timeout.max(MIN_TIMEOUT))
}

/// The status while a scan for `reason` runs (Flux's `ProgressiveStatus`): Reconciling
/// "scanning: <reason>"; Ready goes Unknown with the same message when it was absent or
/// Unknown, or when the store lost the tags (so dependent policies are not served a stale
/// Ready); Stalled is gone since the image parsed.
pub fn scanning_status(
    status: &ImageRepositoryStatus,
    reason: ScanReason,
    generation: Option<i64>,
    now: SystemTime,
) -> ImageRepositoryStatus {
    let mut scanning = status.clone();
    let message = format!("scanning: {reason}");
    let now = to_time(now);
    let conditions = &mut scanning.conditions;
    let lost_tags = reason == ScanReason::NoTagsInDatabase;
    mark_progressing(conditions, &message, lost_tags, generation, &now);
    remove_condition(conditions, condition_type::STALLED);
    scanning
}

/// Steps 5 to 13; returns the time to the next scan.
async fn run(
    repo: &ImageRepository,
    deps: &Deps,
    now: SystemTime,
    status: &mut ImageRepositoryStatus,
    report: &mut Option<ScanReport>,
    progress: Option<&dyn ScanProgress>,
) -> Result<Duration, RepositoryError> {
    let spec = &repo.spec;
    if let Some(message) = spec.missing_spec_message() {
        return Err(RepositoryError::MissingSpec(message));
    }
    let namespace = namespace_of(&repo.metadata);
    let interval = parse_field("spec.interval", &spec.interval)?;
    let timeout = scan_timeout(spec)?;
    let image = ImageReference::parse(&spec.image, spec.insecure)?;
    let provider = cloud_provider(spec.provider);
    let identity = match provider {
        Some(_) => Some(
            check_identity(
                deps.options.workload_identity,
                spec.service_account_name.as_deref(),
                false,
            )
            .map_err(RepositoryError::FeatureGate)?,
        ),
        None => None,
    };

    // One deadline covers reading the Secrets and the scan (reference §3.4).
    let started = Instant::now();
    let access = tokio::time::timeout(
        timeout,
        registry_access(deps.objects.as_ref(), namespace, spec, &image),
    )
    .await
    .unwrap_or(Err(AccessSetupError::Timeout))
    .map_err(RepositoryError::Authentication)?;

    let canonical = image.canonical_name();
    let exclusions = spec.effective_exclusion_list();
    let key = RepoKey::new(namespace, name_of(&repo.metadata));
    let stored_tags = deps
        .store
        .meta(&key)
        .map_err(RepositoryError::ScanTime)?
        .map_or(0, |m| m.tag_count);
    let requested_at = repo
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECONCILE_REQUEST_ANNOTATION))
        .map(String::as_str);
    let last_scan = status.last_scan_result.as_ref();
    let state = ScanState {
        interval,
        last_scan_time: last_scan.and_then(|s| s.scan_time.as_ref()).map(from_time),
        requested_at,
        // The token was already recorded above, so compare with the input status.
        last_handled_reconcile_at: repo
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref()),
        canonical_image: &canonical,
        observed_canonical_image: status.canonical_image_name.as_deref(),
        exclusion_list: &exclusions,
        observed_exclusion_list: &status.observed_exclusion_list,
        stored_tags,
    };
    let next = match decide(&state, now) {
        ScanDecision::Wait { next } => next,
        ScanDecision::Scan { reason, next } => {
            tracing::debug!(namespace, name = name_of(&repo.metadata), %reason, "scanning");
            if let Some(progress) = progress {
                let scanning = scanning_status(status, reason, repo.metadata.generation, now);
                progress.scanning(&scanning).await;
            }
            let scan_started = Instant::now();
            let remaining = timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            let result = async {
                let (access, service_account) = match (provider, &identity) {
                    (Some(provider), Some(identity)) => {
                        let object = LoginFor {
                            kind: "ImageRepository",
                            namespace,
                            name: name_of(&repo.metadata),
                        };
                        let (credentials, service_account) = login(
                            deps,
                            provider,
                            identity,
                            &spec.image,
                            access.transport.proxy.as_ref(),
                            remaining,
                            object,
                        )
                        .await?;
                        let access = RegistryAccess {
                            credentials: Some(credentials),
                            transport: access.transport.clone(),
                        };
                        (access, service_account)
                    }
                    _ => (access.clone(), None),
                };
                let result = scan(deps, &image, &access, &exclusions, &key, remaining, now).await;
                if let (
                    Some(provider),
                    Err(ScanError::Registry(RegistryError::Unauthorized { .. })),
                ) = (provider, &result)
                {
                    // A refused login is not reused: the next scan logs in afresh (once).
                    forget_login(
                        deps.cloud.as_deref(),
                        provider,
                        &spec.image,
                        service_account.as_ref(),
                        access.transport.proxy.as_ref(),
                    )
                    .await;
                }
                result
            }
            .await;
            *report = Some(ScanReport {
                duration: scan_started.elapsed(),
                tags: result.as_ref().map_or(0, ScanResult::tag_count),
                ok: result.is_ok(),
                skipped_tags: result.as_ref().map_or(0, |r| r.skipped.count),
            });
            let result = result?;
            if result.skipped.count > 0 {
                tracing::warn!(
                    namespace,
                    name = name_of(&repo.metadata),
                    skipped = result.skipped.count,
                    example = result.skipped.example.as_deref().unwrap_or_default(),
                    "the registry listed tags that are not valid tags; skipped them"
                );
            }
            status.last_scan_result = Some(StatusScanResult {
                revision: result.revision.clone(),
                tag_count: i64::try_from(result.tag_count()).unwrap_or(i64::MAX),
                scan_time: Some(to_time(now)),
                latest_tags: result.latest_tags().to_vec(),
            });
            next
        }
    };
    status.canonical_image_name = Some(canonical);
    status.observed_exclusion_list = exclusions;
    Ok(next)
}

async fn scan(
    deps: &Deps,
    image: &ImageReference,
    access: &crate::registry::RegistryAccess,
    exclusions: &[String],
    key: &RepoKey,
    timeout: Duration,
    now: SystemTime,
) -> Result<ScanResult, ScanError> {
    let exclusions = ExclusionList::compile(exclusions)?;
    let tags = deps.tags.list_tags(image, access, timeout).await?;
    let result = ScanResult::new(image.canonical_name(), tags, &exclusions, now);
    deps.store.put(key, &result)?;
    Ok(result)
}

#[cfg(test)]
#[path = "repository_tests.rs"]
mod tests;
