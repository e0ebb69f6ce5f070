//! Typed git errors the controller maps to Flux's reasons.

use std::time::Duration;

/// What went wrong in a git operation. Messages never contain credentials: texts from
/// gix, the git CLI, ssh and the remote pass through [`kube_support::redact::Secrets`]
/// (holding every credential sent, see `GitAuth::secrets`) first.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The secret is unusable (missing `known_hosts`, `identity`, `git.asc`, bad PEM...).
    #[error("invalid secret: {0}")]
    InvalidSecret(String),
    /// The spec cannot work as written (no push branch can be inferred...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A feature this implementation does not have.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server refused the credentials.
    #[error("authentication failed for {url}: {detail}")]
    AuthFailed { url: String, detail: String },
    /// The SSH host key is not in `known_hosts` (or differs).
    #[error("host key verification failed for {url}: the server's key is not in known_hosts")]
    UnknownHostKey { url: String },
    /// Connection problems: DNS, refused, reset, TLS.
    #[error("network error talking to {url}: {detail}")]
    Network { url: String, detail: String },
    /// The operation took longer than the GitRepository's timeout.
    #[error("git operation on {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The checkout ref (branch, tag, name or commit) does not exist on the remote.
    #[error("reference not found: {0}")]
    RefNotFound(String),
    /// The remote moved on meanwhile: a non-fast-forward push was refused.
    #[error("push to {branch} rejected (non-fast-forward): {detail}")]
    PushRejected { branch: String, detail: String },
    /// The push failed otherwise (a hook or the server refused it, ...).
    #[error("failed to push to remote: {0}")]
    PushFailed(String),
    /// Signing the commit failed (wrong passphrase, unusable key).
    #[error("failed to sign commit: {0}")]
    Signing(String),
    /// The update closure failed; the controller downcasts the source.
    #[error("failed to apply update: {0}")]
    Apply(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The cached repository is damaged (unreadable refs, objects, packs, HEAD or
    /// config); it is quarantined and cloned again.
    #[error("the git cache is damaged: {0}")]
    CacheDamaged(String),
    /// Files the update read differed from the base commit although their stat data did
    /// not show it; they were restored from the base.
    #[error("worktree files differed from the base commit and were restored: {0}")]
    WorktreeDrift(String),
    /// The controller is shutting down: the operation was stopped. `detail` says what
    /// was in flight (a push names its commit).
    #[error("cancelled by shutdown: {0}")]
    Cancelled(String),
    /// A GitRepository `provider` that cannot work as configured (GitHub App data under
    /// `generic`, `github` without App data): stalls as `InvalidSourceConfiguration`.
    #[error("{0}")]
    InvalidProviderConfig(String),
    /// The spec needs a feature gate that is off: stalls as `FeatureGateDisabled`.
    #[error("{0}")]
    FeatureGateDisabled(String),
    /// The provider's credentials could not be obtained (bad App data, a refused or failed
    /// token call): retried as `SourceManagerFailed`.
    #[error("failed to configure authentication options: {0}")]
    ProviderCredentials(String),
    /// Local repository or file-system trouble, or an unclassified git failure.
    #[error("git operation failed: {0}")]
    Git(String),
}

impl GitError {
    /// True when retrying cannot help until the spec changes: Flux's Stalled condition.
    /// Secret problems are retried like Flux does (`SourceManagerFailed`), since a secret
    /// can be fixed without a new generation.
    pub fn is_stall(&self) -> bool {
        matches!(
            self,
            Self::InvalidConfig(_)
                | Self::Unsupported(_)
                | Self::InvalidProviderConfig(_)
                | Self::FeatureGateDisabled(_)
        )
    }

    /// The Flux condition reason for this error.
    pub fn flux_reason(&self) -> &'static str {
        match self {
            Self::InvalidSecret(_) | Self::Signing(_) | Self::ProviderCredentials(_) => {
                "SourceManagerFailed"
            }
            Self::InvalidConfig(_) | Self::Unsupported(_) | Self::InvalidProviderConfig(_) => {
                "InvalidSourceConfiguration"
            }
            Self::FeatureGateDisabled(_) => "FeatureGateDisabled",
            Self::Apply(_) => "UpdateFailed",
            _ => "GitOperationFailed",
        }
    }
}

/// A guess at the class of a failure from its text (gix error chains, git and ssh
/// stderr), all forced to the C locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    HostKey,
    ProxyAuth,
    Auth,
    Network,
    NotFound,
    Other,
}

pub(crate) fn classify(text: &str) -> Class {
    let t = text.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if any(&[
        "host key verification failed",
        "remote host identification has changed",
        "no matching host key",
    ]) {
        Class::HostKey
    } else if any(&[
        "http status 407",
        "returned error: 407",
        "proxy authentication required",
        // SOCKS5 (RFC 1929) refusals: reqwest's, then libcurl's (git push).
        "socks error: credentials not accepted",
        "rejected by the socks5 server",
    ]) {
        Class::ProxyAuth
    } else if any(&[
        "authentication failed",
        "authentication required",
        "authenticationrequired",
        "permission denied",
        "could not read username",
        "could not read password",
        "http status 401",
        "http status 403",
        "returned error: 401",
        "returned error: 403",
        "the requested url returned error: 401",
        "incorrect passphrase",
    ]) {
        Class::Auth
    } else if any(&[
        "couldn't find remote ref",
        "could not find remote ref",
        "not found in upstream",
    ]) {
        Class::NotFound
    } else if any(&[
        "could not resolve",
        "connection refused",
        "connection reset",
        "connection timed out",
        "timed out",
        "connect to host",
        "connection closed",
        "network is unreachable",
        "no route to host",
        "error sending request",
        "tls",
        "certificate",
        "unexpected eof",
        "broken pipe",
        "http status 5",
    ]) {
        Class::Network
    } else {
        Class::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ssh_and_http_texts() {
        assert_eq!(
            classify(
                "Host key verification failed.\r\nfatal: Could not read from remote repository."
            ),
            Class::HostKey
        );
        assert_eq!(
            classify("fatal: Authentication failed for 'http://x/'"),
            Class::Auth
        );
        assert_eq!(
            classify("git@host: Permission denied (publickey)."),
            Class::Auth
        );
        assert_eq!(
            classify("ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            Class::Network
        );
        assert_eq!(
            classify("fatal: couldn't find remote ref refs/heads/nope"),
            Class::NotFound
        );
        assert_eq!(
            classify(
                "fatal: unable to access 'http://h/r.git/': The requested URL returned error: 407"
            ),
            Class::ProxyAuth
        );
        assert_eq!(
            classify("error connecting to socks proxy: SOCKS error: credentials not accepted"),
            Class::ProxyAuth
        );
        assert_eq!(
            classify(
                "fatal: unable to access 'http://h/r.git/': User was rejected by the SOCKS5 server (1 1)."
            ),
            Class::ProxyAuth
        );
        assert_eq!(classify("something else"), Class::Other);
    }

    #[test]
    fn stalls_only_for_config() {
        assert!(GitError::Unsupported("semver".into()).is_stall());
        assert!(
            !GitError::PushRejected {
                branch: "main".into(),
                detail: String::new()
            }
            .is_stall()
        );
        assert_eq!(
            GitError::InvalidSecret("x".into()).flux_reason(),
            "SourceManagerFailed"
        );
    }
}
