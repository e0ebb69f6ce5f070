//! Digest reflection (`spec.digestReflectionPolicy`): whether the selected tag's digest is
//! looked up, kept or cleared, and when the policy is requeued. Pure decisions; the lookup
//! itself is the registry client's `manifest_digest`.

use std::time::Duration;

use api_types::duration::{InvalidDuration, parse_duration};
use api_types::{ImagePolicySpec, ImageRef, ReflectionPolicy};

/// The requeue period of `Always` when `spec.interval` is absent or zero.
pub const DEFAULT_ALWAYS_INTERVAL: Duration = Duration::from_secs(600);

/// What to do about the digest of the newly selected image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestAction {
    /// Look it up in the registry (HEAD on the manifest).
    Fetch,
    /// Keep the digest already recorded.
    Keep(String),
    /// Record no digest (clearing one recorded before).
    Clear,
}

/// Flux's rule. `previous` is the current `status.latestRef`; `name`/`tag` the new selection.
pub fn digest_action(
    policy: ReflectionPolicy,
    previous: Option<&ImageRef>,
    name: &str,
    tag: &str,
) -> DigestAction {
    match policy {
        ReflectionPolicy::Never => DigestAction::Clear,
        ReflectionPolicy::Always => DigestAction::Fetch,
        ReflectionPolicy::IfNotPresent => match previous {
            Some(ImageRef {
                name: prev_name,
                tag: prev_tag,
                digest: Some(digest),
            }) if prev_name == name && prev_tag == tag && !digest.is_empty() => {
                DigestAction::Keep(digest.clone())
            }
            _ => DigestAction::Fetch,
        },
    }
}

/// `spec.interval` set without `digestReflectionPolicy: Always` is an error Flux enforces with
/// CEL; `Always` without one stalls with `IntervalNotConfigured` in Flux, but only when CEL was
/// bypassed. Both are reported here so the controller can stall with a clear message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error("spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'")]
    NotConfigured,
    #[error("spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'")]
    NotAllowed,
    #[error("spec.interval: {0}")]
    Invalid(InvalidDuration),
}

/// The policy's requeue period (Flux's `GetInterval`): the interval for `Always` (10m when
/// zero), none otherwise.
pub fn requeue_interval(spec: &ImagePolicySpec) -> Result<Option<Duration>, IntervalError> {
    match (spec.digest_reflection_policy, spec.interval.as_deref()) {
        (ReflectionPolicy::Always, None) => Err(IntervalError::NotConfigured),
        (ReflectionPolicy::Always, Some(text)) => {
            let interval = parse_duration(text).map_err(IntervalError::Invalid)?;
            Ok(Some(if interval.is_zero() {
                DEFAULT_ALWAYS_INTERVAL
            } else {
                interval
            }))
        }
        (_, Some(_)) => Err(IntervalError::NotAllowed),
        (_, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests;
