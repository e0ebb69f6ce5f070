//! Flux's token cache metrics (`gotk_token_*`), registered only when the cache is enabled
//! (`--token-cache-max-size` above 0).
//!
//! The cache itself counts requests, evictions and stored items; the services count the
//! per-object hit/miss events (they know the object) and drop an object's series when the
//! object is deleted.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::cache::CacheEvent;

/// The `operation` label of every event, as Flux's `cache.OperationReconcile`.
pub const OPERATION_RECONCILE: &str = "reconcile";

const EVENT_LABELS: [&str; 5] = ["event_type", "kind", "name", "namespace", "operation"];

/// The four `gotk_token_*` series. Clones share the series.
#[derive(Debug, Clone)]
pub struct TokenCacheMetrics {
    events: IntCounterVec,
    items: IntGauge,
    requests: IntCounterVec,
    evictions: IntCounter,
}

impl CacheEvent {
    /// The `event_type` label.
    pub fn label(self) -> &'static str {
        match self {
            CacheEvent::Hit => "cache_hit",
            CacheEvent::Miss => "cache_miss",
        }
    }
}

impl TokenCacheMetrics {
    /// Creates and registers the series on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "gotk_token_cache_events_total",
                "Total number of cache retrieval events for a Gitops Toolkit resource reconciliation.",
            ),
            &EVENT_LABELS,
        )?;
        let items = IntGauge::new(
            "gotk_token_cached_items",
            "Total number of items in the cache.",
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "gotk_token_cache_requests_total",
                "Total number of cache requests partioned by success or failure.",
            ),
            &["status"],
        )?;
        let evictions = IntCounter::new(
            "gotk_token_cache_evictions_total",
            "Total number of cache evictions.",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(items.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(evictions.clone()))?;
        Ok(Self {
            events,
            items,
            requests,
            evictions,
        })
    }

    /// One lookup for an object's reconcile: a hit or a miss.
    pub fn record_event(&self, event: CacheEvent, kind: &str, namespace: &str, name: &str) {
        self.events
            .with_label_values(&[event.label(), kind, name, namespace, OPERATION_RECONCILE])
            .inc();
    }

    /// Drops a deleted object's event series.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        for event in [CacheEvent::Hit, CacheEvent::Miss] {
            // Absent series are fine: the object may never have used the cache.
            let _ = self.events.remove_label_values(&[
                event.label(),
                kind,
                name,
                namespace,
                OPERATION_RECONCILE,
            ]);
        }
    }

    /// Drops every object's event series (a replica that stopped leading).
    pub fn clear_objects(&self) {
        self.events.reset();
    }

    pub(crate) fn request(&self, success: bool) {
        let status = if success { "success" } else { "failure" };
        self.requests.with_label_values(&[status]).inc();
    }

    pub(crate) fn stored(&self) {
        self.items.inc();
    }

    pub(crate) fn removed(&self, evicted: bool) {
        self.items.dec();
        if evicted {
            self.evictions.inc();
        }
    }
}
