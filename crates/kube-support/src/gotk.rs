//! Flux's `gotk_*` metrics, as both controllers export them:
//! `gotk_reconcile_duration_seconds` (labels kind, name, namespace),
//! `gotk_reconcile_condition` (kind, name, namespace, type, status) and
//! `gotk_suspend_status` (kind, name, namespace). The names and labels are a contract
//! (docs/metrics.md, the charts' PrometheusRules). Unlike Flux, which registers the
//! condition and suspend gauges but never sets them, they are kept up to date.

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus::core::Collector;
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Flux's condition statuses; `gotk_reconcile_condition` has one series per status.
pub const CONDITION_STATUSES: [&str; 4] = ["True", "False", "Unknown", "Deleted"];

/// The condition types exported by [`GotkMetrics::set_conditions`].
pub const CONDITION_TYPES: [&str; 3] = ["Ready", "Stalled", "Reconciling"];

const OBJECT_LABELS: [&str; 3] = ["kind", "name", "namespace"];

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

/// A series created and registered, or why not.
pub type Made<V> = Result<V, prometheus::Error>;

/// Creates each series of a process and registers it on the process's registry in one
/// call (both services' metrics and the `gotk_*` series).
#[derive(Debug, Clone, Copy)]
pub struct Series<'a>(pub &'a Registry);

impl Series<'_> {
    pub fn counter(self, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub fn gauge(self, name: &str, help: &str, labels: &[&str]) -> Made<GaugeVec> {
        self.register(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A histogram with `buckets` (see [`exponential_buckets_range`]).
    pub fn histogram(
        self,
        (name, help): (&str, &str),
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> Made<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.register(HistogramVec::new(opts, labels)?)
    }

    fn register<C: Collector + Clone + 'static>(self, series: C) -> Result<C, prometheus::Error> {
        self.0.register(Box::new(series.clone()))?;
        Ok(series)
    }
}

/// Removes the series of `vec` whose labels include all of `wanted` (the prometheus
/// crate only removes by the full label set, so the sets are found by collecting).
pub fn remove_matching<T>(vec: &prometheus::core::MetricVec<T>, wanted: &[(&str, &str)])
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

/// The three `gotk_*` series. Clones share the series.
#[derive(Clone)]
pub struct GotkMetrics {
    reconcile_duration: HistogramVec,
    reconcile_condition: GaugeVec,
    suspend_status: GaugeVec,
}

impl fmt::Debug for GotkMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GotkMetrics").finish_non_exhaustive()
    }
}

impl GotkMetrics {
    /// Creates the series and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let series = Series(registry);
        let reconcile_duration = series.histogram(
            (
                "gotk_reconcile_duration_seconds",
                "The duration in seconds of a GitOps Toolkit resource reconciliation.",
            ),
            exponential_buckets_range(0.01, 1800.0, 10),
            &OBJECT_LABELS,
        )?;
        let reconcile_condition = series.gauge(
            "gotk_reconcile_condition",
            "The current condition status of a GitOps Toolkit resource reconciliation.",
            &["kind", "name", "namespace", "type", "status"],
        )?;
        let suspend_status = series.gauge(
            "gotk_suspend_status",
            "The current suspend status of a GitOps Toolkit resource.",
            &OBJECT_LABELS,
        )?;
        Ok(Self {
            reconcile_duration,
            reconcile_condition,
            suspend_status,
        })
    }

    /// `gotk_reconcile_duration_seconds`, after every reconcile.
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

    /// `gotk_reconcile_condition` for Ready, Stalled and Reconciling (absent: `Deleted`).
    pub fn set_conditions(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        conditions: &[Condition],
    ) {
        for type_ in CONDITION_TYPES {
            let status = conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map_or("Deleted", |c| c.status.as_str());
            self.set_condition(kind, namespace, name, type_, status);
        }
    }

    /// `gotk_suspend_status`: 1 when suspended.
    pub fn set_suspended(&self, kind: &str, namespace: &str, name: &str, suspended: bool) {
        self.suspend_status
            .with_label_values(&[kind, name, namespace])
            .set(if suspended { 1.0 } else { 0.0 });
    }

    /// Drops every series of a deleted object.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        let object = [("kind", kind), ("namespace", namespace), ("name", name)];
        remove_matching(&self.reconcile_duration, &object);
        remove_matching(&self.reconcile_condition, &object);
        remove_matching(&self.suspend_status, &object);
    }

    /// Drops every series (e.g. when a replica stops leading).
    pub fn clear(&self) {
        self.reconcile_duration.reset();
        self.reconcile_condition.reset();
        self.suspend_status.reset();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::Encoder as _;

    fn text(registry: &Registry) -> String {
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buffer)
            .unwrap();
        String::from_utf8(buffer).unwrap()
    }

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
    fn conditions_suspend_and_deletion() {
        let registry = Registry::new();
        let m = GotkMetrics::register(&registry).unwrap();
        let ready: Condition = serde_json::from_value(serde_json::json!({
            "type": "Ready", "status": "False", "reason": "Failed", "message": "",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }))
        .unwrap();
        m.set_conditions("K", "ns", "a", &[ready]);
        m.set_suspended("K", "ns", "a", true);
        m.observe_reconcile("K", "ns", "a", 0.5);
        m.set_condition("K", "ns", "b", "Ready", "Odd");
        let t = text(&registry);
        for line in [
            r#"gotk_reconcile_condition{kind="K",name="a",namespace="ns",status="False",type="Ready"} 1"#,
            r#"gotk_reconcile_condition{kind="K",name="a",namespace="ns",status="True",type="Ready"} 0"#,
            r#"gotk_reconcile_condition{kind="K",name="a",namespace="ns",status="Deleted",type="Stalled"} 1"#,
            r#"gotk_reconcile_condition{kind="K",name="a",namespace="ns",status="Deleted",type="Reconciling"} 1"#,
            r#"gotk_reconcile_condition{kind="K",name="b",namespace="ns",status="Odd",type="Ready"} 1"#,
            r#"gotk_suspend_status{kind="K",name="a",namespace="ns"} 1"#,
            r#"gotk_reconcile_duration_seconds_count{kind="K",name="a",namespace="ns"} 1"#,
        ] {
            assert!(t.contains(line), "{line} missing:\n{t}");
        }
        m.delete_object("K", "ns", "a");
        let t = text(&registry);
        assert!(!t.contains(r#"name="a""#), "{t}");
        assert!(t.contains(r#"name="b""#), "{t}");
        m.clear();
        assert!(!text(&registry).contains(r#"name="b""#));
    }
}
