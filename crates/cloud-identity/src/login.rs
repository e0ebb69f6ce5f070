//! What a provider hands the registry client, and how long it may be cached.

use std::time::{Duration, SystemTime};

use crate::secret::Secret;

/// Flux's default and maximum `--token-cache-max-duration`.
pub const MAX_CACHE_DURATION: Duration = Duration::from_secs(3600);

/// Basic credentials for a registry (or Git server) and when they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: Secret,
    pub expires_at: SystemTime,
}

/// How long a credential valid until `expires_at` may be cached at `now`: the kubelet's
/// 80% rule, `min(0.8 × remaining, max)`. Zero for an already-expired credential, which the
/// caller uses once and does not cache, so the next request fetches a fresh one.
pub fn cache_lifetime(now: SystemTime, expires_at: SystemTime, max: Duration) -> Duration {
    let remaining = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
    remaining.mul_f64(0.8).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn eighty_percent_of_what_remains() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            cache_lifetime(now, now + Duration::from_secs(1000), HOUR),
            Duration::from_secs(800)
        );
    }

    #[test]
    fn capped_at_the_maximum() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // ECR's 12 h token is cached for at most one hour.
        assert_eq!(cache_lifetime(now, now + 12 * HOUR, HOUR), HOUR);
        assert_eq!(
            cache_lifetime(now, now + 12 * HOUR, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn expired_is_not_cached() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            cache_lifetime(now, now - Duration::from_secs(5), HOUR),
            Duration::ZERO
        );
        assert_eq!(cache_lifetime(now, now, HOUR), Duration::ZERO);
    }

    #[test]
    fn debug_hides_the_password() {
        let login = RegistryLogin {
            username: "AWS".into(),
            password: Secret::new("ecr-password-value"),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        let shown = format!("{login:?}");
        assert!(shown.contains("AWS"));
        assert!(!shown.contains("ecr-password-value"), "{shown}");
    }
}
