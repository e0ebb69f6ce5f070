//! Image reference parsing for `ImageRepository.spec.image`, as Flux does it.
//!
//! Flux calls go-containerregistry's `name.ParseReference` (non-strict) and then rejects
//! URL schemes, tags and digests with its own messages. We port both layers:
//! - a registry is the first path component when it contains `.` or `:` or is `localhost`
//!   (ggcr itself ignores `localhost`, which turns `localhost/x` into a Docker Hub name no
//!   one means; docker and the spec treat it as a host, so we do too);
//! - no registry means Docker Hub, `index.docker.io`, and a single-component repository
//!   gets `library/`; `docker.io` is rewritten to `index.docker.io`;
//! - the repository must be 2 to 255 characters of `a-z0-9_-./` (so uppercase fails);
//! - the canonical name is `registry/repository`, e.g. `index.docker.io/library/alpine`.

use std::fmt;
use std::net::Ipv4Addr;

/// Docker Hub's registry host, as ggcr names it (and as canonical names carry it).
pub const DOCKER_HUB: &str = "index.docker.io";
/// What users write for Docker Hub; rewritten to [`DOCKER_HUB`].
pub const DOCKER_HUB_ALIAS: &str = "docker.io";

const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
const DIGEST_CHARS: &str = "sh:0123456789abcdef";

/// Why `spec.image` was rejected. The messages are Flux's (`ImageURLInvalid` conditions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(".spec.image value should not include URL scheme; remove '{scheme}://'")]
    UrlScheme { scheme: String },
    /// A tag, or a digest (Flux reports both as a tag: `remove ':<hex>'` for a digest).
    #[error(".spec.image value should not include a tag; remove ':{tag}'")]
    Tag { tag: String },
    /// ggcr could not parse the reference; `reason` is why (ggcr drops it, we keep it).
    #[error("could not parse reference: {input} ({reason})")]
    Invalid { input: String, reason: String },
}

/// A parsed image repository (never with a tag or digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    insecure: bool,
}

impl ImageReference {
    /// Parses `spec.image`; `insecure` is `spec.insecure` (plain HTTP).
    pub fn parse(image: &str, insecure: bool) -> Result<Self, ReferenceError> {
        if let Some((scheme, _)) = image.split_once("://") {
            return Err(ReferenceError::UrlScheme {
                scheme: scheme.to_string(),
            });
        }
        let parsed = parse_reference(image).map_err(|reason| ReferenceError::Invalid {
            input: image.to_string(),
            reason,
        })?;
        // Flux strips the registry string and rejects any `:` left: a tag, or a digest.
        let rest = image.strip_prefix(&parsed.registry).unwrap_or(image);
        if let Some(after) = rest.split(':').nth(1) {
            return Err(ReferenceError::Tag {
                tag: after.to_string(),
            });
        }
        Ok(Self {
            registry: parsed.registry,
            repository: parsed.repository,
            insecure,
        })
    }

    /// The registry host with its port, e.g. `index.docker.io` or `example.com:9999`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path on the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `spec.insecure`: talk plain HTTP only.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// `registry/repository`: what `status.canonicalImageName` holds.
    pub fn canonical_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether this is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The URL schemes to try, in order. `insecure` means plain HTTP. Like ggcr, hosts that
    /// are usually local (localhost, loopback, `*.local`, RFC 1918 literals) try HTTPS and
    /// fall back to HTTP; everything else is HTTPS only.
    pub fn schemes(&self) -> &'static [&'static str] {
        if self.insecure {
            &["http"]
        } else if self.is_local_host() {
            &["https", "http"]
        } else {
            &["https"]
        }
    }

    fn is_local_host(&self) -> bool {
        let host = host_without_port(&self.registry);
        if host == "localhost" || host == "::1" || host.ends_with(".local") {
            return true;
        }
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => ip.is_loopback() || ip.is_private(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// `host` of `host:port`, `[v6]:port` or `host`.
pub(crate) fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[derive(Debug)]
struct Parsed {
    registry: String,
    repository: String,
}

/// ggcr's `ParseReference`: a tag reference, else a digest reference.
fn parse_reference(input: &str) -> Result<Parsed, String> {
    match parse_tagged(input) {
        Ok(parsed) => Ok(parsed),
        Err(tag_error) => parse_digested(input).map_err(|_| tag_error),
    }
}

fn parse_tagged(input: &str) -> Result<Parsed, String> {
    let mut base = input;
    if let Some((before, tag)) = input.rsplit_once(':') {
        // A `:` followed by a `/` is a port, not a tag.
        if !tag.contains('/') {
            if tag.is_empty() {
                return Err(format!("{input} must specify a tag name after the colon"));
            }
            check_element("tag", tag, TAG_CHARS, 1, 128)?;
            base = before;
        }
    }
    parse_repository(base)
}

fn parse_digested(input: &str) -> Result<Parsed, String> {
    let parts: Vec<&str> = input.split('@').collect();
    let [base, digest] = parts.as_slice() else {
        return Err(format!(
            "a digest must contain exactly one '@' separator (e.g. registry/repository@digest) saw: {input}"
        ));
    };
    check_element("digest", digest, DIGEST_CHARS, 7 + 64, 7 + 64)?;
    parse_repository(base)
}

fn parse_repository(name: &str) -> Result<Parsed, String> {
    if name.is_empty() {
        return Err("a repository name must be specified".into());
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("", name),
    };
    check_element("repository", repository, REPOSITORY_CHARS, 2, 255)?;
    check_registry(registry)?;
    let registry = match registry {
        "" | DOCKER_HUB_ALIAS => DOCKER_HUB,
        other => other,
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    };
    Ok(Parsed {
        registry: registry.to_string(),
        repository,
    })
}

fn check_element(
    what: &str,
    element: &str,
    allowed: &str,
    min: usize,
    max: usize,
) -> Result<(), String> {
    let count = element.chars().count();
    if count < min || count > max {
        return Err(format!(
            "{what} must be between {min} and {max} characters in length: {element}"
        ));
    }
    if element.chars().any(|c| !allowed.contains(c)) {
        return Err(format!(
            "{what} can only contain the characters `{allowed}`: {element}"
        ));
    }
    Ok(())
}

/// ggcr requires a valid RFC 3986 authority (Go's `url.Parse("//" + name).Host == name`).
fn check_registry(registry: &str) -> Result<(), String> {
    let invalid = || format!("registries must be valid RFC 3986 URI authorities: {registry}");
    if registry.is_empty() {
        return Ok(());
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(invalid)?;
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(invalid());
        }
        match after {
            "" => ("ipv6", None),
            _ => ("ipv6", Some(after.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%'));
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests;
