//! Prometheus metrics: Flux's `gotk_*` series (kept up to date, unlike Flux, which
//! registers the condition and suspend gauges but never sets them) and our own
//! `image_reflector_*` series for what Flux lacks (scans, tags, registry requests,
//! the selected version and how long ago it changed).
//!
//! Everything is registered on a private [`prometheus::Registry`] that `/metrics` encodes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::{Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// Flux's condition statuses; `gotk_reconcile_condition` has one series per status.
pub const CONDITION_STATUSES: [&str; 4] = ["True", "False", "Unknown", "Deleted"];

/// What the registry client calls after every HTTP response: `(host, status code)`.
pub use crate::registry::RequestObserver;

/// (namespace, name) → the (image, tag) labels exported for that policy.
type LatestLabels = HashMap<(String, String), (String, String)>;

/// `ExponentialBucketsRange(min, max, count)` as in client_golang: `count` buckets from
/// `min` to `max`, each a constant factor above the previous.
pub fn exponential_buckets_range(min: f64, max: f64, count: usize) -> Vec<f64> {
    if count < 2 || min <= 0.0 || max <= min {
        return vec![min];
    }
    let factor = (max / min).powf(1.0 / (count - 1) as f64);
    (0..count)
        .map(|i| min * factor.powi(i32::try_from(i).unwrap_or(i32::MAX)))
        .collect()
}

/// The metrics of one process. Clones share the series.
#[derive(Clone)]
pub struct Metrics {
    pub registry: prometheus::Registry,
    reconcile_duration: HistogramVec,
    reconcile_condition: GaugeVec,
    suspend_status: GaugeVec,
    scans_total: IntCounterVec,
    scan_duration: HistogramVec,
    repository_tags: GaugeVec,
    registry_requests: IntCounterVec,
    registry_rate_limited: IntCounterVec,
    policy_latest_info: GaugeVec,
    policy_latest_change: GaugeVec,
    /// The `(image, tag)` labels currently exported per policy, so a new version
    /// replaces the old info series instead of adding one.
    latest: Arc<Mutex<LatestLabels>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const OBJECT_LABELS: [&str; 3] = ["kind", "name", "namespace"];
const REPO_LABELS: [&str; 2] = ["namespace", "name"];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "gotk_reconcile_duration_seconds",
                "The duration in seconds of a GitOps Toolkit resource reconciliation.",
            )
            .buckets(exponential_buckets_range(0.01, 1800.0, 10)),
            &OBJECT_LABELS,
        )?;
        let reconcile_condition = GaugeVec::new(
            Opts::new(
                "gotk_reconcile_condition",
                "The current condition status of a GitOps Toolkit resource reconciliation.",
            ),
            &["kind", "name", "namespace", "type", "status"],
        )?;
        let suspend_status = GaugeVec::new(
            Opts::new(
                "gotk_suspend_status",
                "The current suspend status of a GitOps Toolkit resource.",
            ),
            &OBJECT_LABELS,
        )?;
        let scans_total = IntCounterVec::new(
            Opts::new(
                "image_reflector_scans_total",
                "Registry scans of an ImageRepository, by result (success or failure).",
            ),
            &["namespace", "name", "result"],
        )?;
        let scan_duration = HistogramVec::new(
            HistogramOpts::new(
                "image_reflector_scan_duration_seconds",
                "Duration of an ImageRepository's registry scan.",
            )
            .buckets(exponential_buckets_range(0.05, 600.0, 10)),
            &REPO_LABELS,
        )?;
        let repository_tags = GaugeVec::new(
            Opts::new(
                "image_reflector_repository_tags",
                "Tags stored for an ImageRepository after its last successful scan.",
            ),
            &REPO_LABELS,
        )?;
        let registry_requests = IntCounterVec::new(
            Opts::new(
                "image_reflector_registry_requests_total",
                "HTTP responses from container registries and their token services (every page, retry and redirect), by host and status code.",
            ),
            &["host", "code"],
        )?;
        let registry_rate_limited = IntCounterVec::new(
            Opts::new(
                "image_reflector_registry_rate_limited_total",
                "Registry responses with status 429 (Too Many Requests), by host.",
            ),
            &["host"],
        )?;
        let policy_latest_info = GaugeVec::new(
            Opts::new(
                "image_reflector_policy_latest_info",
                "The image and tag an ImagePolicy currently selects (always 1).",
            ),
            &["namespace", "name", "image", "tag"],
        )?;
        let policy_latest_change = GaugeVec::new(
            Opts::new(
                "image_reflector_policy_latest_change_timestamp_seconds",
                "Unix time at which an ImagePolicy's selected tag last changed.",
            ),
            &REPO_LABELS,
        )?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(reconcile_condition.clone()))?;
        registry.register(Box::new(suspend_status.clone()))?;
        registry.register(Box::new(scans_total.clone()))?;
        registry.register(Box::new(scan_duration.clone()))?;
        registry.register(Box::new(repository_tags.clone()))?;
        registry.register(Box::new(registry_requests.clone()))?;
        registry.register(Box::new(registry_rate_limited.clone()))?;
        registry.register(Box::new(policy_latest_info.clone()))?;
        registry.register(Box::new(policy_latest_change.clone()))?;
        Ok(Self {
            registry,
            reconcile_duration,
            reconcile_condition,
            suspend_status,
            scans_total,
            scan_duration,
            repository_tags,
            registry_requests,
            registry_rate_limited,
            policy_latest_info,
            policy_latest_change,
            latest: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// `gotk_reconcile_duration_seconds`, after every reconcile of either kind.
    pub fn observe_reconcile(&self, kind: &str, namespace: &str, name: &str, seconds: f64) {
        self.reconcile_duration
            .with_label_values(&[kind, name, namespace])
            .observe(seconds);
    }

    /// `gotk_reconcile_condition`: 1 for `status`, 0 for Flux's other statuses.
    pub fn set_condition(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        type_: &str,
        status: &str,
    ) {
        for candidate in CONDITION_STATUSES {
            let value = if candidate == status { 1.0 } else { 0.0 };
            self.reconcile_condition
                .with_label_values(&[kind, name, namespace, type_, candidate])
                .set(value);
        }
        // A status outside Flux's four still shows (as 1), rather than nothing.
        if !CONDITION_STATUSES.contains(&status) {
            self.reconcile_condition
                .with_label_values(&[kind, name, namespace, type_, status])
                .set(1.0);
        }
    }

    /// `gotk_suspend_status`: 1 when suspended.
    pub fn set_suspended(&self, kind: &str, namespace: &str, name: &str, suspended: bool) {
        self.suspend_status
            .with_label_values(&[kind, name, namespace])
            .set(if suspended { 1.0 } else { 0.0 });
    }

    /// Drops every series of a deleted object (the `gotk_*` ones for `kind`, and the
    /// repository or policy series of that name).
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        let object = [("kind", kind), ("namespace", namespace), ("name", name)];
        remove_matching(&self.reconcile_duration, &object);
        remove_matching(&self.reconcile_condition, &object);
        remove_matching(&self.suspend_status, &object);
        let named = [("namespace", namespace), ("name", name)];
        match kind {
            "ImageRepository" => {
                remove_matching(&self.scans_total, &named);
                remove_matching(&self.scan_duration, &named);
                remove_matching(&self.repository_tags, &named);
            }
            "ImagePolicy" => {
                remove_matching(&self.policy_latest_info, &named);
                remove_matching(&self.policy_latest_change, &named);
                self.latest_map()
                    .remove(&(namespace.to_string(), name.to_string()));
            }
            _ => {}
        }
    }

    /// Drops every per-object series (the `gotk_*` ones, scans, tags, the selected version
    /// and when it changed), keeping the per-host registry counters: called when a replica
    /// stops its controllers on losing leadership, so a follower exports no stale
    /// condition (that could fire an alert) for objects the new leader now reconciles.
    pub fn clear_objects(&self) {
        self.reconcile_duration.reset();
        self.reconcile_condition.reset();
        self.suspend_status.reset();
        self.scans_total.reset();
        self.scan_duration.reset();
        self.repository_tags.reset();
        self.policy_latest_info.reset();
        self.policy_latest_change.reset();
        self.latest_map().clear();
    }

    /// One registry scan of an ImageRepository: its duration, the result, and (on
    /// success) the number of stored tags.
    pub fn observe_scan(&self, namespace: &str, name: &str, seconds: f64, tags: usize, ok: bool) {
        self.scan_duration
            .with_label_values(&[namespace, name])
            .observe(seconds);
        let result = if ok { "success" } else { "failure" };
        self.scans_total
            .with_label_values(&[namespace, name, result])
            .inc();
        if ok {
            self.repository_tags
                .with_label_values(&[namespace, name])
                .set(tags as f64);
        }
    }

    /// One registry HTTP response; 429s are also counted in
    /// `image_reflector_registry_rate_limited_total`.
    pub fn registry_request(&self, host: &str, status: u16) {
        let code = status.to_string();
        self.registry_requests
            .with_label_values(&[host, code.as_str()])
            .inc();
        if status == 429 {
            self.registry_rate_limited.with_label_values(&[host]).inc();
        }
    }

    /// A [`RequestObserver`] feeding [`Metrics::registry_request`], for the registry
    /// client.
    pub fn request_observer(&self) -> RequestObserver {
        let metrics = self.clone();
        Arc::new(move |host: &str, status: u16| metrics.registry_request(host, status))
    }

    /// The version an ImagePolicy selects (`image_reflector_policy_latest_info`, one
    /// series per policy) and when its tag last changed (so an alert can use
    /// `time() - image_reflector_policy_latest_change_timestamp_seconds`).
    pub fn set_policy_latest(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
        tag: &str,
        changed_at_unix: f64,
    ) {
        let previous = self.latest_map().insert(
            (namespace.to_string(), name.to_string()),
            (image.to_string(), tag.to_string()),
        );
        if let Some((old_image, old_tag)) = previous
            && (old_image != image || old_tag != tag)
        {
            // Absent is fine: another thread may have removed it already.
            let _ = self.policy_latest_info.remove_label_values(&[
                namespace,
                name,
                old_image.as_str(),
                old_tag.as_str(),
            ]);
        }
        self.policy_latest_info
            .with_label_values(&[namespace, name, image, tag])
            .set(1.0);
        self.policy_latest_change
            .with_label_values(&[namespace, name])
            .set(changed_at_unix);
    }

    /// The Prometheus text exposition of every series.
    pub fn encode_text(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn latest_map(&self) -> std::sync::MutexGuard<'_, LatestLabels> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes the series of `vec` whose labels include all of `wanted` (the prometheus
/// crate only removes by the full label set, so the sets are found by collecting).
fn remove_matching<T>(vec: &prometheus::core::MetricVec<T>, wanted: &[(&str, &str)])
where
    T: prometheus::core::MetricVecBuilder,
{
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if wanted
                .iter()
                .all(|(name, value)| labels.get(name) == Some(value))
            {
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_client_golang_range() {
        let b = exponential_buckets_range(0.01, 1800.0, 10);
        assert_eq!(b.len(), 10);
        assert!((b[0] - 0.01).abs() < 1e-12);
        assert!((b[9] - 1800.0).abs() < 1e-6);
        // factor = (1800/0.01)^(1/9) ≈ 3.8366
        assert!((b[1] / b[0] - 3.8366).abs() < 1e-3);
    }

    #[test]
    fn condition_sets_one_status_and_delete_removes_the_object() {
        let m = Metrics::new().unwrap();
        m.set_condition("ImagePolicy", "ns", "p", "Ready", "False");
        m.set_condition("ImagePolicy", "ns", "q", "Ready", "True");
        m.set_suspended("ImagePolicy", "ns", "p", true);
        m.set_policy_latest("ns", "p", "r/app", "1.0.0", 10.0);
        m.set_policy_latest("ns", "p", "r/app", "1.1.0", 20.0);
        let text = m.encode_text().unwrap();
        assert!(text.contains(
            r#"gotk_reconcile_condition{kind="ImagePolicy",name="p",namespace="ns",status="False",type="Ready"} 1"#
        ));
        assert!(text.contains(
            r#"gotk_reconcile_condition{kind="ImagePolicy",name="p",namespace="ns",status="True",type="Ready"} 0"#
        ));
        assert!(!text.contains(r#"tag="1.0.0""#), "{text}");
        assert!(text.contains(r#"tag="1.1.0""#));
        m.delete_object("ImagePolicy", "ns", "p");
        let text = m.encode_text().unwrap();
        assert!(!text.contains(r#"name="p""#), "{text}");
        assert!(text.contains(r#"name="q""#));
    }

    #[test]
    fn clear_objects_drops_every_per_object_series_but_keeps_registry_counters() {
        let m = Metrics::new().unwrap();
        m.observe_reconcile("ImageRepository", "ns", "r", 0.5);
        m.set_condition("ImageRepository", "ns", "r", "Ready", "False");
        m.set_suspended("ImageRepository", "ns", "r", false);
        m.observe_scan("ns", "r", 0.2, 12, true);
        m.observe_scan("ns", "r", 0.2, 0, false);
        m.observe_reconcile("ImagePolicy", "ns", "p", 0.1);
        m.set_condition("ImagePolicy", "ns", "p", "Ready", "True");
        m.set_policy_latest("ns", "p", "r/app", "1.0.0", 10.0);
        m.registry_request("ghcr.io", 200);
        let text = m.encode_text().unwrap();
        for name in [
            "gotk_reconcile_duration_seconds",
            "gotk_reconcile_condition",
            "gotk_suspend_status",
            "image_reflector_scans_total",
            "image_reflector_scan_duration_seconds",
            "image_reflector_repository_tags",
            "image_reflector_policy_latest_info",
            "image_reflector_policy_latest_change_timestamp_seconds",
        ] {
            assert!(
                text.contains(&format!("{name}{{")) || text.contains(&format!("{name}_count{{")),
                "{name} missing before:\n{text}"
            );
        }

        m.clear_objects();
        let text = m.encode_text().unwrap();
        assert!(!text.contains(r#"name="r""#), "{text}");
        assert!(!text.contains(r#"name="p""#), "{text}");
        assert!(
            text.contains(
                r#"image_reflector_registry_requests_total{code="200",host="ghcr.io"} 1"#
            ),
            "{text}"
        );

        // The next leadership starts clean: a new version is one info series, not two.
        m.set_policy_latest("ns", "p", "r/app", "1.1.0", 20.0);
        let text = m.encode_text().unwrap();
        assert!(text.contains(r#"tag="1.1.0""#), "{text}");
        assert!(!text.contains(r#"tag="1.0.0""#), "{text}");
    }

    #[test]
    fn registry_requests_count_codes_and_429s() {
        let m = Metrics::new().unwrap();
        let observe = m.request_observer();
        observe("ghcr.io", 200);
        observe("ghcr.io", 429);
        observe("ghcr.io", 429);
        let text = m.encode_text().unwrap();
        assert!(
            text.contains(
                r#"image_reflector_registry_requests_total{code="429",host="ghcr.io"} 2"#
            )
        );
        assert!(text.contains(r#"image_reflector_registry_rate_limited_total{host="ghcr.io"} 2"#));
    }
}
