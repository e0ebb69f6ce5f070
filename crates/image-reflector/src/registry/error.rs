//! Typed errors of the registry client. None carries a credential: messages name the
//! registry host and the repository, never a username, password or token.

use std::time::Duration;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry (or its token service) refused the credentials, or needs some.
    #[error("authentication to registry {registry} failed for repository {repository}: {detail}")]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    /// 403: the credentials are valid but may not pull this repository.
    #[error("access to {repository} on registry {registry} denied: 403 Forbidden{detail}")]
    Forbidden {
        registry: String,
        repository: String,
        detail: String,
    },
    /// 404 on the repository or manifest (Flux reports "404 Not Found").
    #[error("{what} not found on registry {registry}: 404 Not Found{detail}")]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    /// Any other unexpected status, after retries for the transient ones.
    #[error("{method} {url}: unexpected status {status}{detail}")]
    Status {
        method: String,
        url: String,
        status: u16,
        detail: String,
    },
    /// 429 still answered after the retries, or a `Retry-After` beyond what we wait.
    #[error(
        "registry {registry} is rate limiting requests (429 Too Many Requests){}",
        retry_after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default()
    )]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    /// Connection, TLS or protocol failure (after retries for the transient ones).
    #[error("request to registry {registry} failed: {source}")]
    Transport {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    /// The overall deadline for the operation (the ImageRepository timeout) passed.
    #[error("scanning registry {registry} timed out after {}", humanize(*timeout))]
    Timeout { registry: String, timeout: Duration },
    /// A response we could not understand.
    #[error("invalid response from registry {registry}: {detail}")]
    InvalidResponse { registry: String, detail: String },
    /// A `Link: rel="next"` pointing to another scheme, host or port (an SSRF guard).
    #[error(
        "registry {registry} sent a pagination link to another origin ({link_origin}); refusing to follow it"
    )]
    ForeignNextLink {
        registry: String,
        link_origin: String,
    },
    /// Tags are counted as listed, before `exclusionList` applies.
    #[error(
        "repository {image} has more than {limit} tags; raise the limit with the `image-reflector serve` flag --max-tags-per-repository"
    )]
    TooManyTags { image: String, limit: usize },
    #[error(
        "listing the tags of {image} needed more than {limit} pages; raise the limit with the `image-reflector serve` flag --max-tag-pages"
    )]
    TooManyPages { image: String, limit: usize },
    /// A response body over its cap; reading stopped there.
    #[error(
        "registry {registry} sent a {kind} larger than {} ({limit} bytes); reading stopped at the cap{}",
        humanize_bytes(*limit),
        kind.raise_hint()
    )]
    BodyTooLarge {
        registry: String,
        kind: BodyKind,
        limit: usize,
    },
    /// A tag that cannot be part of a manifest URL.
    #[error("invalid tag '{tag}': tags are 1 to 128 characters of A-Z a-z 0-9 _ . -")]
    InvalidTag { tag: String },
    /// Building the HTTP client failed (bad TLS material or proxy URL, caught earlier
    /// normally).
    #[error("building the HTTP client failed: {0}")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether a later retry may succeed without a spec or secret change (for conditions and
    /// requeue decisions of the controller).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Transport { .. }
                | Self::Timeout { .. }
                | Self::Status { .. }
        )
    }

    /// The wait the registry asked for, when it rate limited us.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Which response a size cap applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One `GET /v2/<name>/tags/list` page.
    TagPage,
    /// A token service's answer.
    TokenResponse,
    /// A manifest read to hash its digest.
    Manifest,
}

impl BodyKind {
    /// How to raise the cap, when a flag sets it.
    fn raise_hint(self) -> &'static str {
        match self {
            Self::TagPage => {
                "; raise the cap with the `image-reflector serve` flag --max-tag-page-bytes"
            }
            Self::TokenResponse | Self::Manifest => "",
        }
    }
}

impl std::fmt::Display for BodyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TagPage => "tags/list page",
            Self::TokenResponse => "token response",
            Self::Manifest => "manifest",
        })
    }
}

fn humanize_bytes(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
