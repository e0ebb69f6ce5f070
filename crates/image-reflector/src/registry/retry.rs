//! Retry decisions: which failures are transient, exponential backoff, `Retry-After`.

use std::time::{Duration, SystemTime};

/// How requests are retried. Attempts are bounded; so is the wait a `Retry-After` may ask
/// for (a longer wait fails the scan with a rate-limit error carrying the wait, so the
/// controller can requeue after it instead of holding a worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, including the first (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; multiplied by `factor` after each failure.
    pub initial_backoff: Duration,
    pub factor: u32,
    pub max_backoff: Duration,
    /// The longest `Retry-After` we honour by waiting.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// ggcr's transport retries 3 times with 1 s then 3 s; we start lower since the overall
    /// scan timeout bounds the total anyway.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            factor: 3,
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let mut delay = self.initial_backoff;
        for _ in 1..attempt {
            delay = delay.saturating_mul(self.factor.max(1));
            if delay >= self.max_backoff {
                return self.max_backoff;
            }
        }
        delay.min(self.max_backoff)
    }
}

/// Statuses worth retrying: ggcr's list (408, 499, 500, 502, 503, 504, 522). 429 is handled
/// separately because of `Retry-After`.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 499 | 500 | 502 | 503 | 504 | 522)
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past
/// means no wait; an unparseable value means "unknown" (`None`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_millis(1500));
        assert_eq!(p.backoff(3), Duration::from_millis(4500));
        assert_eq!(p.backoff(4), Duration::from_secs(10));
        assert_eq!(p.backoff(60), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap_or(SystemTime::UNIX_EPOCH);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete RFC 850 and asctime forms are valid too.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        // In the past: no wait.
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 429, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
