//! Prometheus metrics of `image-automation serve`, shared by the standalone and Kubernetes
//! modes. Names are a contract (docs, the chart's PrometheusRule):
//!
//! - Flux's `gotk_reconcile_duration_seconds`, `gotk_reconcile_condition` and
//!   `gotk_suspend_status` (kind `ImageUpdateAutomation`; the gauges kept up to date, unlike
//!   Flux, which registers them but never sets them);
//! - ours: `image_automation_pushes_total`, `image_automation_push_failures_total` (by the
//!   failed run's Ready reason) and `image_automation_policy_to_push_seconds`.
//!
//! Everything is registered on a private [`prometheus::Registry`] that `/metrics` encodes;
//! the `gotk_*` series are `kube_support::gotk`'s, shared with image-reflector.

use std::fmt;
use std::time::Duration;

use kube_support::gotk::{GotkMetrics, Series, exponential_buckets_range, remove_matching};
use prometheus::{HistogramVec, IntCounterVec};

use crate::reconcile::RunReport;

/// The kind label of every `gotk_*` series this process exports.
pub const KIND: &str = "ImageUpdateAutomation";

const AUTOMATION_LABELS: [&str; 2] = ["namespace", "name"];

/// The metrics of one process. Clones share the series.
#[derive(Clone)]
pub struct Metrics {
    pub registry: prometheus::Registry,
    gotk: GotkMetrics,
    pushes: IntCounterVec,
    push_failures: IntCounterVec,
    policy_to_push: HistogramVec,
    git_fetch_duration: HistogramVec,
    git_fetch_bytes: IntCounterVec,
    git_cache_recoveries: IntCounterVec,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = prometheus::Registry::new();
        // Flux's gotk_token_* series, only with the token cache enabled.
        crate::git::provider::register_token_cache_metrics(&registry)?;
        let series = Series(&registry);
        Ok(Self {
            gotk: GotkMetrics::new(),
            pushes: series.counter(
                "image_automation_pushes_total",
                "Commits pushed by image update automations.",
                &AUTOMATION_LABELS,
            )?,
            push_failures: series.counter(
                "image_automation_push_failures_total",
                "Failed image update automation runs, by the run's Ready reason.",
                &["namespace", "name", "reason"],
            )?,
            policy_to_push: series.histogram(
                (
                    "image_automation_policy_to_push_seconds",
                    "Time from a changed policy result (or the run start when unknown) to the pushed commit.",
                ),
                exponential_buckets_range(0.1, 600.0, 12),
                &AUTOMATION_LABELS,
            )?,
            // The git layer's fetches into its cache, by kind: `clone` (first fetch of a ref) or
            // `fetch`.
            git_fetch_duration: series.histogram(
                (
                    "image_automation_git_fetch_duration_seconds",
                    "Duration of the git fetches into the cache, by kind (clone or fetch).",
                ),
                exponential_buckets_range(0.01, 300.0, 12),
                &["kind"],
            )?,
            git_fetch_bytes: series.counter(
                "image_automation_git_fetch_bytes_total",
                "Pack bytes received by the git fetches into the cache, by kind (clone or fetch).",
                &["kind"],
            )?,
            // Damaged caches moved aside and stale locks removed, by kind.
            git_cache_recoveries: series.counter(
                "image_automation_git_cache_recoveries_total",
                "Repairs of the git cache without a human, by kind (quarantined: a damaged repository moved aside and cloned again; stale_locks: lock files of a killed process removed).",
                &["kind"],
            )?,
            registry,
        })
    }

    /// Everything one finished run changes: duration, condition and suspend gauges, push
    /// and failure counters, and (when it pushed) the policy-to-push time. `since_change`
    /// is the time since the policy change that led to this run was seen on the feed;
    /// `None` uses the run's own duration.
    pub fn record_run(
        &self,
        namespace: &str,
        name: &str,
        report: &RunReport,
        elapsed: Duration,
        since_change: Option<Duration>,
    ) {
        self.gotk
            .observe_reconcile(KIND, namespace, name, elapsed.as_secs_f64());
        self.set_suspended(namespace, name, false);
        self.set_conditions(namespace, name, &report.status.conditions);
        if report.pushed.is_some() {
            self.pushes.with_label_values(&[namespace, name]).inc();
            let seconds = since_change.unwrap_or(elapsed).max(elapsed);
            self.policy_to_push
                .with_label_values(&[namespace, name])
                .observe(seconds.as_secs_f64());
        }
        for fetch in &report.fetches {
            let kind = [fetch.kind.as_str()];
            self.git_fetch_duration
                .with_label_values(&kind)
                .observe(fetch.duration.as_secs_f64());
            self.git_fetch_bytes
                .with_label_values(&kind)
                .inc_by(fetch.bytes);
        }
        for recovery in &report.cache_recoveries {
            self.git_cache_recoveries
                .with_label_values(&[recovery.kind.as_str()])
                .inc();
        }
        if !report.outcome.is_ready() {
            let reason = report.outcome.reason_and_message().0;
            self.push_failures
                .with_label_values(&[namespace, name, reason])
                .inc();
        }
    }

    /// A pass over a suspended automation: its duration and `gotk_suspend_status` 1 (its
    /// conditions stay what the last run left).
    pub fn record_suspended(&self, namespace: &str, name: &str, elapsed: Duration) {
        self.gotk
            .observe_reconcile(KIND, namespace, name, elapsed.as_secs_f64());
        self.set_suspended(namespace, name, true);
    }

    /// `gotk_reconcile_condition` for Ready, Stalled and Reconciling (absent: `Deleted`).
    pub fn set_conditions(
        &self,
        namespace: &str,
        name: &str,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) {
        self.gotk.set_conditions(KIND, namespace, name, conditions);
    }

    /// `gotk_reconcile_condition`: 1 for `status`, 0 for Flux's other statuses.
    pub fn set_condition(&self, namespace: &str, name: &str, type_: &str, status: &str) {
        self.gotk
            .set_condition(KIND, namespace, name, type_, status);
    }

    /// `gotk_suspend_status`: 1 when suspended.
    pub fn set_suspended(&self, namespace: &str, name: &str, suspended: bool) {
        self.gotk.set_suspended(KIND, namespace, name, suspended);
    }

    /// Drops every series of a deleted automation.
    pub fn delete_object(&self, namespace: &str, name: &str) {
        self.gotk.delete_object(KIND, namespace, name);
        if let Some(token_cache) = crate::git::provider::token_cache_metrics() {
            token_cache.delete_object(KIND, namespace, name);
        }
        let named = [("namespace", namespace), ("name", name)];
        remove_matching(&self.pushes, &named);
        remove_matching(&self.push_failures, &named);
        remove_matching(&self.policy_to_push, &named);
    }

    /// The Prometheus text exposition of every series.
    pub fn encode_text(&self) -> Result<String, prometheus::Error> {
        self.gotk.encode_after(&self.registry)
    }

    /// [`Metrics::encode_text`], empty on an (unexpected) encoding error, for `/metrics`.
    pub fn render(&self) -> String {
        self.encode_text().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::PushedCommit;
    use crate::reconcile::RunOutcome;

    fn report(outcome: RunOutcome, pushed: bool) -> RunReport {
        RunReport {
            cache_recoveries: Vec::new(),
            deprecations: Vec::new(),
            status: Default::default(),
            outcome,
            result: Default::default(),
            pushed: pushed.then(|| PushedCommit {
                commit: "abc".into(),
                branch: "main".into(),
                refspec: None,
                message: "m".into(),
            }),
            short_circuited: false,
            events: Vec::new(),
            fetches: Vec::new(),
        }
    }

    #[test]
    fn runs_count_pushes_failures_and_policy_to_push() {
        let m = Metrics::new().unwrap();
        m.record_run(
            "ns",
            "a",
            &report(RunOutcome::Ready, true),
            Duration::from_secs(1),
            Some(Duration::from_secs(3)),
        );
        m.record_run(
            "ns",
            "a",
            &report(
                RunOutcome::Retry {
                    reason: "DependencyNotReady".into(),
                    message: "down".into(),
                },
                false,
            ),
            Duration::from_secs(1),
            None,
        );
        let text = m.encode_text().unwrap();
        assert!(text.contains(r#"image_automation_pushes_total{name="a",namespace="ns"} 1"#));
        assert!(text.contains(
            r#"image_automation_push_failures_total{name="a",namespace="ns",reason="DependencyNotReady"} 1"#
        ));
        assert!(
            text.contains(
                r#"image_automation_policy_to_push_seconds_sum{name="a",namespace="ns"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"gotk_reconcile_condition{kind="ImageUpdateAutomation",name="a",namespace="ns",status="Deleted",type="Ready"} 1"#
        ));
        m.delete_object("ns", "a");
        assert!(!m.encode_text().unwrap().contains(r#"name="a""#));
    }
    #[test]
    fn git_fetches_are_recorded_by_kind() {
        use crate::git::{FetchKind, FetchStats};
        let m = Metrics::new().unwrap();
        let mut r = report(RunOutcome::Ready, false);
        r.fetches = vec![
            FetchStats {
                kind: FetchKind::Clone,
                duration: Duration::from_secs(2),
                bytes: 1000,
            },
            FetchStats {
                kind: FetchKind::Fetch,
                duration: Duration::from_millis(500),
                bytes: 10,
            },
        ];
        m.record_run("ns", "a", &r, Duration::from_secs(3), None);
        let text = m.encode_text().unwrap();
        assert!(text.contains(r#"image_automation_git_fetch_bytes_total{kind="clone"} 1000"#));
        assert!(text.contains(r#"image_automation_git_fetch_bytes_total{kind="fetch"} 10"#));
        assert!(
            text.contains(r#"image_automation_git_fetch_duration_seconds_sum{kind="clone"} 2"#)
        );
        assert!(
            text.contains(r#"image_automation_git_fetch_duration_seconds_count{kind="fetch"} 1"#)
        );
    }
}
