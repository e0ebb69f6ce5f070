//! Polling until a condition holds, for tests. These helpers panic with a message saying
//! what was awaited (they exist only to make a test fail loudly).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_for`] polls.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every [`POLL`] until it returns `Some`, or panics after `timeout` with
/// `what` and `context()` (e.g. the object's status and the controller's log).
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    check: F,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_every(what, timeout, POLL, context, check).await
}

/// [`wait_for`] polling every `poll` (slower polls spare a busy machine when each check
/// starts a process).
pub async fn wait_for_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    context: impl Fn() -> String,
    check: F,
) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(poll).await;
    }
}

/// True when `GET url` answers with a success status.
pub async fn http_ok(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_some() {
        let calls = AtomicU32::new(0);
        let value = wait_for(
            "the third call",
            Duration::from_secs(5),
            String::new,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                (n == 3).then_some(n)
            },
        )
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 300ms waiting for never\nthe context")]
    async fn panics_with_what_and_context_after_the_timeout() {
        wait_for(
            "never",
            Duration::from_millis(300),
            || "the context".to_string(),
            || async { None::<()> },
        )
        .await;
    }
}
