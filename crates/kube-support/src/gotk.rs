//! Flux's `gotk_*` metrics, as both controllers export them:
//! `gotk_reconcile_duration_seconds` (labels kind, name, namespace),
//! `gotk_reconcile_condition` (kind, name, namespace, type, status) and
//! `gotk_suspend_status` (kind, name, namespace). The names and labels are a contract
//! (docs/metrics.md, the charts' PrometheusRules). Unlike Flux, which registers the
//! condition and suspend gauges but never sets them, they are kept up to date. They are
//! kept per object in a few bytes ([`crate::series`]), not as `prometheus` crate vectors
//! (about a kilobyte per series, twelve series per object), and written to the text by
//! [`GotkMetrics::encode`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus::core::Collector;

use crate::series::{Family, FamilyType, write_header, write_sample};

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

/// Creates each process-wide series (not per object: those are [`crate::series`]'s) and
/// registers it on the process's registry in one call.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a>(pub &'a prometheus::Registry);

impl Series<'_> {
    pub fn counter(
        self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Made<prometheus::IntCounterVec> {
        self.register(prometheus::IntCounterVec::new(
            prometheus::Opts::new(name, help),
            labels,
        )?)
    }

    pub fn gauge(self, name: &str, help: &str, labels: &[&str]) -> Made<prometheus::GaugeVec> {
        self.register(prometheus::GaugeVec::new(
            prometheus::Opts::new(name, help),
            labels,
        )?)
    }

    /// A histogram with `buckets` (see [`exponential_buckets_range`]).
    pub fn histogram(
        self,
        (name, help): (&str, &str),
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> Made<prometheus::HistogramVec> {
        let opts = prometheus::HistogramOpts::new(name, help).buckets(buckets);
        self.register(prometheus::HistogramVec::new(opts, labels)?)
    }

    fn register<C: Collector + Clone + 'static>(self, series: C) -> Made<C> {
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

/// `(kind, name, namespace)`.
type ObjectKey = (Text, Box<str>, Box<str>);
/// Each object's `(condition type, status)` pairs.
type Conditions = BTreeMap<ObjectKey, Vec<(Text, Text)>>;
/// A kind, condition type or status: one of the usual ones costs no allocation.
type Text = Cow<'static, str>;

const COMMON: [&str; 10] = [
    "True",
    "False",
    "Unknown",
    "Deleted",
    "Ready",
    "Stalled",
    "Reconciling",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
];

fn interned(value: &str) -> Text {
    COMMON
        .iter()
        .find(|c| **c == value)
        .map_or_else(|| Cow::Owned(value.to_owned()), |c| Cow::Borrowed(*c))
}

/// The three `gotk_*` families, kept compactly ([`crate::series`]): a condition is one
/// `(type, status)` pair per object, written as one series per Flux status. Clones share
/// the series. [`GotkMetrics::encode`] appends them to a `/metrics` text.
#[derive(Clone)]
pub struct GotkMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    reconcile_duration: Family,
    suspend_status: Family,
    conditions: Mutex<Conditions>,
}

impl fmt::Debug for GotkMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GotkMetrics").finish_non_exhaustive()
    }
}

impl Default for GotkMetrics {
    fn default() -> Self {
        Self::new()
    }
}

const CONDITION_NAME: &str = "gotk_reconcile_condition";
const CONDITION_HELP: &str =
    "The current condition status of a GitOps Toolkit resource reconciliation.";

impl GotkMetrics {
    /// The text exposition of `registry`'s (process-wide) series followed by the `gotk_*`
    /// ones: the start of both services' `/metrics`.
    pub fn encode_after(&self, registry: &prometheus::Registry) -> Made<String> {
        let mut buffer = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buffer,
        )?;
        let mut text =
            String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        self.encode(&mut text);
        Ok(text)
    }

    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                reconcile_duration: Family::histogram(
                    "gotk_reconcile_duration_seconds",
                    "The duration in seconds of a GitOps Toolkit resource reconciliation.",
                    &OBJECT_LABELS,
                    exponential_buckets_range(0.01, 1800.0, 10),
                ),
                suspend_status: Family::gauge(
                    "gotk_suspend_status",
                    "The current suspend status of a GitOps Toolkit resource.",
                    &OBJECT_LABELS,
                ),
                conditions: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn conditions(&self) -> MutexGuard<'_, Conditions> {
        self.inner
            .conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `gotk_reconcile_duration_seconds`, after every reconcile.
    pub fn observe_reconcile(&self, kind: &str, namespace: &str, name: &str, seconds: f64) {
        self.inner
            .reconcile_duration
            .observe(&[kind, name, namespace], seconds);
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
        let mut conditions = self.conditions();
        let types = conditions
            .entry((interned(kind), name.into(), namespace.into()))
            .or_default();
        match types.iter_mut().find(|(t, _)| t == type_) {
            Some((_, current)) if current == status => {}
            Some((_, current)) => *current = interned(status),
            None => types.push((interned(type_), interned(status))),
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
        self.inner
            .suspend_status
            .set(&[kind, name, namespace], if suspended { 1.0 } else { 0.0 });
    }

    /// Drops every series of a deleted object.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        self.inner
            .reconcile_duration
            .remove(&[kind, name, namespace]);
        self.inner.suspend_status.remove(&[kind, name, namespace]);
        self.conditions()
            .remove(&(interned(kind), name.into(), namespace.into()));
    }

    /// Drops every series (e.g. when a replica stops leading).
    pub fn clear(&self) {
        self.inner.reconcile_duration.clear();
        self.inner.suspend_status.clear();
        self.conditions().clear();
    }

    /// Appends the three families to a `/metrics` text, in the `prometheus` text encoder's
    /// form (a condition type as one series per Flux status, plus the status itself when
    /// it is none of Flux's four).
    pub fn encode(&self, out: &mut String) {
        {
            let conditions = self.conditions();
            if !conditions.is_empty() {
                write_header(out, CONDITION_NAME, CONDITION_HELP, FamilyType::Gauge);
            }
            for ((kind, name, namespace), types) in conditions.iter() {
                for (type_, status) in types {
                    let odd = (!CONDITION_STATUSES.contains(&&**status)).then_some(&**status);
                    for candidate in CONDITION_STATUSES.iter().copied().chain(odd) {
                        let value = if candidate == &**status { 1.0 } else { 0.0 };
                        let pairs = [
                            ("kind", &**kind),
                            ("name", &**name),
                            ("namespace", &**namespace),
                            ("status", candidate),
                            ("type", &**type_),
                        ];
                        write_sample(out, CONDITION_NAME, "", &pairs, None, value);
                    }
                }
            }
        }
        self.inner.reconcile_duration.encode(out);
        self.inner.suspend_status.encode(out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(metrics: &GotkMetrics) -> String {
        let mut text = String::new();
        metrics.encode(&mut text);
        text
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
        let m = GotkMetrics::new();
        let ready: Condition = serde_json::from_value(serde_json::json!({
            "type": "Ready", "status": "False", "reason": "Failed", "message": "",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }))
        .unwrap();
        m.set_conditions("K", "ns", "a", &[ready]);
        m.set_suspended("K", "ns", "a", true);
        m.observe_reconcile("K", "ns", "a", 0.5);
        m.set_condition("K", "ns", "b", "Ready", "Odd");
        let t = text(&m);
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
        let t = text(&m);
        assert!(!t.contains(r#"name="a""#), "{t}");
        assert!(t.contains(r#"name="b""#), "{t}");
        m.clear();
        assert!(!text(&m).contains(r#"name="b""#));
    }
}
