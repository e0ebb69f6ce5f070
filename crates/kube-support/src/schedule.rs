//! When an object is retried: one exponential backoff for both services and both modes,
//! like the controller-runtime workqueue limiter Flux uses (`--min-retry-delay` 750ms,
//! `--max-retry-delay` 15m).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// Flux's `--min-retry-delay`.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(750);
/// Flux's `--max-retry-delay`.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// The retry delay shape: `min` doubled per consecutive failure, capped at `max`. Like the
/// workqueue's limiter, `max` wins when it is below `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    pub min: Duration,
    pub max: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self {
            min: MIN_RETRY_DELAY,
            max: MAX_RETRY_DELAY,
        }
    }
}

impl RetryDelays {
    /// The delay after a failure that follows `previous` failures in a row.
    pub fn delay(&self, previous: u32) -> Duration {
        let exponent = previous.min(31);
        self.min
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Consecutive failures per object, and the delay they earn.
#[derive(Debug, Clone)]
pub struct Backoff<K> {
    delays: RetryDelays,
    failures: HashMap<K, u32>,
}

impl<K: Hash + Eq> Default for Backoff<K> {
    fn default() -> Self {
        Self::new(MIN_RETRY_DELAY, MAX_RETRY_DELAY)
    }
}

impl<K: Hash + Eq> Backoff<K> {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self::with_delays(RetryDelays { min, max })
    }

    pub fn with_delays(delays: RetryDelays) -> Self {
        Self {
            delays,
            failures: HashMap::new(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the retry.
    pub fn failure(&mut self, key: K) -> Duration {
        let count = self.failures.entry(key).or_insert(0);
        let delay = self.delays.delay(*count);
        *count = count.saturating_add(1);
        delay
    }

    /// A success (or a stall, or deletion): the next failure starts from `min` again.
    pub fn reset(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn doubles_from_min_to_max_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..6).map(|_| b.failure("a")).collect();
        assert_eq!(
            delays,
            [750, 1500, 3000, 6000, 12000, 24000].map(Duration::from_millis)
        );
        for _ in 0..40 {
            b.failure("a");
        }
        assert_eq!(b.failure("a"), MAX_RETRY_DELAY);
        // Other objects are independent.
        assert_eq!(b.failure("b"), MIN_RETRY_DELAY);
        b.reset(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(b.failure("a"), MIN_RETRY_DELAY);
    }

    #[test]
    fn honours_configured_delays() {
        // `--min-retry-delay=1s --max-retry-delay=5s`.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<_> = (0..5).map(|_| b.failure("a")).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5].map(Duration::from_secs));
        // A maximum below the minimum caps every delay, as in controller-runtime.
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_millis(500));
        assert_eq!(b.failure("a"), Duration::from_millis(500));
        assert_eq!(b.failure("a"), Duration::from_millis(500));
        assert_eq!(RetryDelays::default().delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
