//! Prometheus metrics: Flux's `gotk_*` series (kept up to date, unlike Flux, which
//! registers the condition and suspend gauges but never sets them) and our own
//! `image_reflector_*` series for what Flux lacks (scans, tags, registry requests,
//! the selected version and how long ago it changed).
//!
//! Everything is registered on a private [`prometheus::Registry`] that `/metrics` encodes;
//! the `gotk_*` series are `kube_support::gotk`'s, shared with image-automation.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use kube_support::gotk::{GotkMetrics, Series, exponential_buckets_range};
use kube_support::series::Family;
use prometheus::IntCounterVec;

/// What the registry client calls after every HTTP response: `(host, status code)`.
pub use crate::registry::RequestObserver;

/// (namespace, name) → the (image, tag) labels exported for that policy.
type LatestLabels = HashMap<(String, String), (String, String)>;

/// The metrics of one process. Clones share the series.
#[derive(Clone)]
pub struct Metrics {
    pub registry: prometheus::Registry,
    pub gotk: GotkMetrics,
    objects: Arc<ObjectFamilies>,
    registry_requests: IntCounterVec,
    registry_rate_limited: IntCounterVec,
    /// The `(image, tag)` labels currently exported per policy, so a new version
    /// replaces the old info series instead of adding one.
    latest: Arc<Mutex<LatestLabels>>,
    /// Flux's `gotk_token_*` series, registered only when the token cache is enabled.
    token_cache: Arc<std::sync::OnceLock<cloud_identity::metrics::TokenCacheMetrics>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const REPO_LABELS: [&str; 2] = ["namespace", "name"];

/// The per-repository and per-policy families, compact ([`kube_support::series`]): at
/// 5,000 ImageRepositories the `prometheus` crate's vectors took tens of MiB.
#[derive(Debug)]
struct ObjectFamilies {
    scans_total: Family,
    scan_duration: Family,
    repository_tags: Family,
    policy_latest_info: Family,
    policy_latest_change: Family,
}

impl ObjectFamilies {
    fn new() -> Self {
        Self {
            scans_total: Family::counter(
                "image_reflector_scans_total",
                "Registry scans of an ImageRepository, by result (success or failure).",
                &["namespace", "name", "result"],
            ),
            scan_duration: Family::histogram(
                "image_reflector_scan_duration_seconds",
                "Duration of an ImageRepository's registry scan.",
                &REPO_LABELS,
                exponential_buckets_range(0.05, 600.0, 10),
            ),
            repository_tags: Family::gauge(
                "image_reflector_repository_tags",
                "Tags stored for an ImageRepository after its last successful scan.",
                &REPO_LABELS,
            ),
            policy_latest_info: Family::gauge(
                "image_reflector_policy_latest_info",
                "The image and tag an ImagePolicy currently selects (always 1).",
                &["namespace", "name", "image", "tag"],
            ),
            policy_latest_change: Family::gauge(
                "image_reflector_policy_latest_change_timestamp_seconds",
                "Unix time at which an ImagePolicy's selected tag last changed.",
                &REPO_LABELS,
            ),
        }
    }

    fn all(&self) -> [&Family; 5] {
        [
            &self.scans_total,
            &self.scan_duration,
            &self.repository_tags,
            &self.policy_latest_info,
            &self.policy_latest_change,
        ]
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let series = Series(&registry);
        Ok(Self {
            gotk: GotkMetrics::new(),
            objects: Arc::new(ObjectFamilies::new()),
            registry_requests: series.counter(
                "image_reflector_registry_requests_total",
                "HTTP responses from container registries and their token services (every page, retry and redirect), by host and status code.",
                &["host", "code"],
            )?,
            registry_rate_limited: series.counter(
                "image_reflector_registry_rate_limited_total",
                "Registry responses with status 429 (Too Many Requests), by host.",
                &["host"],
            )?,
            latest: Arc::new(Mutex::new(HashMap::new())),
            token_cache: Arc::new(std::sync::OnceLock::new()),
            registry,
        })
    }

    /// Drops every series of a deleted object (the `gotk_*` ones for `kind`, and the
    /// repository or policy series of that name).
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        self.gotk.delete_object(kind, namespace, name);
        if let Some(token_cache) = self.token_cache.get() {
            token_cache.delete_object(kind, namespace, name);
        }
        // Each series by its full labels: a lookup, not a pass over every series.
        match kind {
            "ImageRepository" => {
                for result in ["success", "failure"] {
                    self.objects.scans_total.remove(&[namespace, name, result]);
                }
                self.objects.scan_duration.remove(&[namespace, name]);
                self.objects.repository_tags.remove(&[namespace, name]);
            }
            "ImagePolicy" => {
                let latest = self
                    .latest_map()
                    .remove(&(namespace.to_string(), name.to_string()));
                if let Some((image, tag)) = latest {
                    self.objects
                        .policy_latest_info
                        .remove(&[namespace, name, &image, &tag]);
                }
                self.objects.policy_latest_change.remove(&[namespace, name]);
            }
            _ => {}
        }
    }

    /// Drops every per-object series (the `gotk_*` ones, scans, tags, the selected version
    /// and when it changed), keeping the per-host registry counters: called when a replica
    /// stops its controllers on losing leadership, so a follower exports no stale
    /// condition (that could fire an alert) for objects the new leader now reconciles.
    pub fn clear_objects(&self) {
        self.gotk.clear();
        if let Some(token_cache) = self.token_cache.get() {
            token_cache.clear_objects();
        }
        for family in self.objects.all() {
            family.clear();
        }
        self.latest_map().clear();
    }

    /// Registers the `gotk_token_*` series when `max_size` (`--token-cache-max-size`) is
    /// above 0, as Flux does; returns them (`None` when the cache is disabled).
    pub fn enable_token_cache(
        &self,
        max_size: usize,
    ) -> Result<Option<cloud_identity::metrics::TokenCacheMetrics>, prometheus::Error> {
        if max_size == 0 {
            return Ok(None);
        }
        if let Some(existing) = self.token_cache.get() {
            return Ok(Some(existing.clone()));
        }
        let metrics = cloud_identity::metrics::TokenCacheMetrics::register(&self.registry)?;
        Ok(Some(self.token_cache.get_or_init(|| metrics).clone()))
    }

    /// The `gotk_token_*` series, if [`Self::enable_token_cache`] registered them.
    pub fn token_cache(&self) -> Option<cloud_identity::metrics::TokenCacheMetrics> {
        self.token_cache.get().cloned()
    }

    /// One registry scan of an ImageRepository: its duration, the result, and (on
    /// success) the number of stored tags.
    pub fn observe_scan(&self, namespace: &str, name: &str, seconds: f64, tags: usize, ok: bool) {
        self.objects
            .scan_duration
            .observe(&[namespace, name], seconds);
        let result = if ok { "success" } else { "failure" };
        self.objects
            .scans_total
            .add(&[namespace, name, result], 1.0);
        if ok {
            self.objects
                .repository_tags
                .set(&[namespace, name], tags as f64);
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
            self.objects.policy_latest_info.remove(&[
                namespace,
                name,
                old_image.as_str(),
                old_tag.as_str(),
            ]);
        }
        self.objects
            .policy_latest_info
            .set(&[namespace, name, image, tag], 1.0);
        self.objects
            .policy_latest_change
            .set(&[namespace, name], changed_at_unix);
    }

    /// The Prometheus text exposition of every series.
    pub fn encode_text(&self) -> Result<String, prometheus::Error> {
        let mut text = self.gotk.encode_after(&self.registry)?;
        for family in self.objects.all() {
            family.encode(&mut text);
        }
        Ok(text)
    }

    fn latest_map(&self) -> std::sync::MutexGuard<'_, LatestLabels> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_sets_one_status_and_delete_removes_the_object() {
        let m = Metrics::new().unwrap();
        m.gotk
            .set_condition("ImagePolicy", "ns", "p", "Ready", "False");
        m.gotk
            .set_condition("ImagePolicy", "ns", "q", "Ready", "True");
        m.gotk.set_suspended("ImagePolicy", "ns", "p", true);
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
        m.gotk.observe_reconcile("ImageRepository", "ns", "r", 0.5);
        m.gotk
            .set_condition("ImageRepository", "ns", "r", "Ready", "False");
        m.gotk.set_suspended("ImageRepository", "ns", "r", false);
        m.observe_scan("ns", "r", 0.2, 12, true);
        m.observe_scan("ns", "r", 0.2, 0, false);
        m.gotk.observe_reconcile("ImagePolicy", "ns", "p", 0.1);
        m.gotk
            .set_condition("ImagePolicy", "ns", "p", "Ready", "True");
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
