//! Credentials cached per identity and registry until shortly before they expire.
//!
//! As Flux's `cache.TokenCache`: the lifetime is [`cache_lifetime`] (80% of what remains,
//! at most the max duration), checked against both the monotonic and the wall clock; an
//! already-expired credential is handed out once and not stored; one lock is held while
//! fetching, so concurrent misses for the same identity make one call, not many.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::login::{MAX_CACHE_DURATION, cache_lifetime};
use crate::metrics::TokenCacheMetrics;

/// Flux's default `--token-cache-max-size`.
pub const DEFAULT_MAX_SIZE: usize = 100;

/// Whether a lookup was served from the cache (for `gotk_token_cache_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEvent {
    Hit,
    Miss,
}

/// The cache key: sha256 (hex) of newline-joined `name=value` pairs, in the given order.
pub fn cache_key(parts: &[(&str, &str)]) -> String {
    let joined = parts
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("\n");
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, joined.as_bytes()).as_ref())
}

/// The registry credential's key: the access token's key and the registry input
/// (AWS region or `public.ecr.aws`, the ACR host, or `gcp`).
pub fn registry_credential_key(access_token_key: &str, registry_input: &str) -> String {
    cache_key(&[
        ("accessTokenCacheKey", access_token_key),
        ("artifactRepositoryCacheKey", registry_input),
    ])
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    valid_until: Instant,
    valid_until_wall: SystemTime,
    last_used: u64,
}

#[derive(Debug)]
struct State<V> {
    entries: HashMap<String, Entry<V>>,
    uses: u64,
}

/// A bounded cache of credentials (`V` is e.g. [`crate::RegistryLogin`]).
#[derive(Debug)]
pub struct TokenCache<V> {
    max_size: usize,
    max_duration: Duration,
    state: tokio::sync::Mutex<State<V>>,
    metrics: Option<TokenCacheMetrics>,
}

impl<V: Clone> TokenCache<V> {
    /// `max_size` 0 disables caching; `max_duration` is capped at one hour as in Flux.
    pub fn new(max_size: usize, max_duration: Duration) -> Self {
        Self {
            max_size,
            max_duration: max_duration.min(MAX_CACHE_DURATION),
            state: tokio::sync::Mutex::new(State {
                entries: HashMap::new(),
                uses: 0,
            }),
            metrics: None,
        }
    }

    /// Counts requests, evictions and stored items in `metrics` (shared by every cache of
    /// the process, as Flux has one). Not attached when the cache is disabled (size 0).
    pub fn with_metrics(mut self, metrics: Option<TokenCacheMetrics>) -> Self {
        self.metrics = metrics.filter(|_| self.max_size > 0);
        self
    }

    /// Whether the cache stores anything (`--token-cache-max-size` above 0).
    pub fn enabled(&self) -> bool {
        self.max_size > 0
    }

    /// The cached value for `key`, or the result of `fetch` (value and its expiry), stored
    /// for [`cache_lifetime`] unless that is zero.
    pub async fn get_or_fetch<E, F, Fut>(&self, key: &str, fetch: F) -> Result<(V, CacheEvent), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, SystemTime), E>>,
    {
        let mut state = self.state.lock().await;
        state.uses += 1;
        let uses = state.uses;
        let fresh = state.entries.get_mut(key).and_then(|entry| {
            let valid =
                Instant::now() < entry.valid_until && SystemTime::now() < entry.valid_until_wall;
            entry.last_used = uses;
            valid.then(|| entry.value.clone())
        });
        if let Some(value) = fresh {
            self.record_request(true);
            return Ok((value, CacheEvent::Hit));
        }
        if state.entries.remove(key).is_some() {
            self.record_removal(false);
        }
        let (value, expires_at) = match fetch().await {
            Ok(fetched) => fetched,
            Err(error) => {
                self.record_request(false);
                return Err(error);
            }
        };
        self.record_request(true);
        let now_wall = SystemTime::now();
        let lifetime = cache_lifetime(now_wall, expires_at, self.max_duration);
        if self.max_size > 0 && !lifetime.is_zero() {
            while state.entries.len() >= self.max_size {
                let oldest = state
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.last_used)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(oldest) => {
                        state.entries.remove(&oldest);
                        self.record_removal(true);
                    }
                    None => break,
                };
            }
            state.entries.insert(
                key.to_string(),
                Entry {
                    value: value.clone(),
                    valid_until: Instant::now() + lifetime,
                    valid_until_wall: now_wall + lifetime,
                    last_used: uses,
                },
            );
            if let Some(metrics) = &self.metrics {
                metrics.stored();
            }
        }
        Ok((value, CacheEvent::Miss))
    }

    fn record_request(&self, success: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.request(success);
        }
    }

    fn record_removal(&self, evicted: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.removed(evicted);
        }
    }

    /// Drops one entry (e.g. after the registry rejected the credential).
    pub async fn invalidate(&self, key: &str) {
        if self.state.lock().await.entries.remove(key).is_some() {
            self.record_removal(false);
        }
    }

    /// How many entries are stored (`gotk_token_cache_cached_items`).
    pub async fn len(&self) -> usize {
        self.state.lock().await.entries.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn fetch_counted(
        cache: &TokenCache<String>,
        key: &str,
        calls: &AtomicUsize,
        valid_for: i64,
    ) -> (String, CacheEvent) {
        let result: Result<_, Infallible> = cache
            .get_or_fetch(key, || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let expires = if valid_for >= 0 {
                    SystemTime::now() + Duration::from_secs(valid_for as u64)
                } else {
                    SystemTime::now() - Duration::from_secs(valid_for.unsigned_abs())
                };
                Ok((format!("token-{n}"), expires))
            })
            .await;
        match result {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn valid_token_is_served_from_the_cache() {
        let cache = TokenCache::new(10, MAX_CACHE_DURATION);
        let calls = AtomicUsize::new(0);
        let first = fetch_counted(&cache, "k", &calls, 3600).await;
        let second = fetch_counted(&cache, "k", &calls, 3600).await;
        assert_eq!(first, ("token-1".into(), CacheEvent::Miss));
        assert_eq!(second, ("token-1".into(), CacheEvent::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_token_is_used_once_then_refetched() {
        // moto's ECR token expired in 2015: each request gets one fetch, never a loop.
        let cache = TokenCache::new(10, MAX_CACHE_DURATION);
        let calls = AtomicUsize::new(0);
        let first = fetch_counted(&cache, "k", &calls, -10).await;
        assert_eq!(first, ("token-1".into(), CacheEvent::Miss));
        let second = fetch_counted(&cache, "k", &calls, -10).await;
        assert_eq!(second, ("token-2".into(), CacheEvent::Miss));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(cache.is_empty().await);
    }

    #[tokio::test]
    async fn size_zero_disables_and_full_cache_evicts_least_recently_used() {
        let off = TokenCache::new(0, MAX_CACHE_DURATION);
        let calls = AtomicUsize::new(0);
        fetch_counted(&off, "k", &calls, 3600).await;
        fetch_counted(&off, "k", &calls, 3600).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let cache = TokenCache::new(2, MAX_CACHE_DURATION);
        let calls = AtomicUsize::new(0);
        fetch_counted(&cache, "a", &calls, 3600).await;
        fetch_counted(&cache, "b", &calls, 3600).await;
        fetch_counted(&cache, "a", &calls, 3600).await; // a is now the most recent
        fetch_counted(&cache, "c", &calls, 3600).await; // evicts b
        assert_eq!(cache.len().await, 2);
        let (_, a) = fetch_counted(&cache, "a", &calls, 3600).await;
        let (_, b) = fetch_counted(&cache, "b", &calls, 3600).await;
        assert_eq!((a, b), (CacheEvent::Hit, CacheEvent::Miss));
    }

    #[test]
    fn keys_follow_flux_layout() {
        // `printf 'provider=aws\naudiences=sts.amazonaws.com' | sha256sum`
        let key = cache_key(&[("provider", "aws"), ("audiences", "sts.amazonaws.com")]);
        assert_eq!(
            key,
            "3eb0ee74bb4cab0b54665cedf9504edf7ab72e312bf4096d664837f75c5f051c"
        );
        assert_ne!(key, cache_key(&[("provider", "aws")]));
        let a = registry_credential_key(&key, "us-east-1");
        let b = registry_credential_key(&key, "eu-west-1");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn metrics_count_requests_items_and_evictions() {
        let registry = prometheus::Registry::new();
        let metrics = TokenCacheMetrics::register(&registry).unwrap();
        let cache = TokenCache::new(1, MAX_CACHE_DURATION).with_metrics(Some(metrics));
        let calls = AtomicUsize::new(0);
        fetch_counted(&cache, "a", &calls, 3600).await; // miss, stored
        fetch_counted(&cache, "a", &calls, 3600).await; // hit
        fetch_counted(&cache, "b", &calls, 3600).await; // miss, evicts a
        let failed: Result<(String, CacheEvent), &str> =
            cache.get_or_fetch("c", || async { Err("denied") }).await;
        assert!(failed.is_err());
        let text = encode(&registry);
        assert!(text.contains("gotk_token_cached_items 1"), "{text}");
        assert!(
            text.contains("gotk_token_cache_evictions_total 1"),
            "{text}"
        );
        assert!(
            text.contains("gotk_token_cache_requests_total{status=\"success\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("gotk_token_cache_requests_total{status=\"failure\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_disabled_cache_takes_no_metrics() {
        let registry = prometheus::Registry::new();
        let metrics = TokenCacheMetrics::register(&registry).unwrap();
        let cache: TokenCache<String> =
            TokenCache::new(0, MAX_CACHE_DURATION).with_metrics(Some(metrics));
        assert!(cache.metrics.is_none());
    }

    fn encode(registry: &prometheus::Registry) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }
}
