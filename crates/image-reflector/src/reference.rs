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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ok(image: &str) -> ImageReference {
        ImageReference::parse(image, false).unwrap_or_else(|e| panic!("{image}: {e}"))
    }

    fn err(image: &str) -> ReferenceError {
        match ImageReference::parse(image, false) {
            Ok(r) => panic!("{image} parsed as {r}"),
            Err(e) => e,
        }
    }

    #[test]
    fn docker_hub_defaults() {
        // 7.5 #83: `alpine` is `index.docker.io/library/alpine`.
        assert_eq!(
            ok("alpine").canonical_name(),
            "index.docker.io/library/alpine"
        );
        assert_eq!(ok("alpine").registry(), DOCKER_HUB);
        assert_eq!(ok("alpine").repository(), "library/alpine");
        assert_eq!(
            ok("fluxcd/flux").canonical_name(),
            "index.docker.io/fluxcd/flux"
        );
        assert_eq!(
            ok("docker.io/alpine").canonical_name(),
            "index.docker.io/library/alpine"
        );
        assert_eq!(
            ok("docker.io/library/alpine").canonical_name(),
            "index.docker.io/library/alpine"
        );
        assert_eq!(
            ok("index.docker.io/fluxcd/flux").canonical_name(),
            "index.docker.io/fluxcd/flux"
        );
        assert!(ok("alpine").is_docker_hub());
        // Without `.`/`:`/localhost the first component is a namespace, not a host.
        assert_eq!(
            ok("team/sub/app").canonical_name(),
            "index.docker.io/team/sub/app"
        );
    }

    #[test]
    fn registries_and_ports() {
        // 7.5 #95 and 3.3.
        let r = ok("example.com/foo/bar");
        assert_eq!((r.registry(), r.repository()), ("example.com", "foo/bar"));
        let r = ok("example.com:9999/foo/bar");
        assert_eq!(r.registry(), "example.com:9999");
        assert_eq!(r.canonical_name(), "example.com:9999/foo/bar");
        // 7.5 #86: localhost with a port keeps its name.
        assert_eq!(
            ok("localhost:5000/xy").canonical_name(),
            "localhost:5000/xy"
        );
        assert_eq!(ok("localhost/foo").canonical_name(), "localhost/foo");
        assert_eq!(ok("127.0.0.1:5000/team/app").registry(), "127.0.0.1:5000");
        assert_eq!(
            ok("ghcr.io/stefanprodan/podinfo").repository(),
            "stefanprodan/podinfo"
        );
        assert_eq!(
            ok("registry.k8s.io/coredns/coredns").registry(),
            "registry.k8s.io"
        );
        // A custom registry gets no `library/`.
        assert_eq!(ok("example.com/foo").repository(), "foo");
        assert_eq!(ok("[::1]:5000/foo").registry(), "[::1]:5000");
    }

    #[test]
    fn schemes_are_rejected_with_fluxs_message() {
        // 7.5 #84, #95.
        let e = err("https://example.com/foo/bar");
        assert_eq!(
            e,
            ReferenceError::UrlScheme {
                scheme: "https".into()
            }
        );
        assert!(
            e.to_string()
                .contains("should not include URL scheme; remove 'https://'")
        );
        assert!(
            err("http://localhost:5000/foo")
                .to_string()
                .contains("remove 'http://'")
        );
        assert!(
            err("oci://ghcr.io/foo")
                .to_string()
                .contains("remove 'oci://'")
        );
    }

    #[test]
    fn tags_and_digests_are_rejected_with_fluxs_message() {
        // 7.5 #85, #95.
        let e = err("example.com/foo/bar:baz");
        assert_eq!(e, ReferenceError::Tag { tag: "baz".into() });
        assert!(
            e.to_string()
                .contains("should not include a tag; remove ':baz'")
        );
        assert_eq!(
            err("alpine:3.18"),
            ReferenceError::Tag { tag: "3.18".into() }
        );
        assert_eq!(
            err("example.com:9999/foo/bar:1.0.0"),
            ReferenceError::Tag {
                tag: "1.0.0".into()
            }
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        // Flux reports a digest through the same path: the part after `sha256:`.
        assert_eq!(
            err(&format!("ghcr.io/foo/bar@{digest}")),
            ReferenceError::Tag {
                tag: "a".repeat(64)
            }
        );
        // 3.3: more than one colon after the host is unparseable.
        assert!(matches!(
            err("ghcr.io/stefanprodan/podinfo/foo:bar:zzz:qqq/aaa"),
            ReferenceError::Invalid { .. }
        ));
        assert!(matches!(err("foo:"), ReferenceError::Invalid { .. }));
    }

    #[test]
    fn invalid_names() {
        let e = err("example.com/Foo/Bar");
        assert!(
            e.to_string()
                .contains("repository can only contain the characters"),
            "{e}"
        );
        assert!(matches!(err(""), ReferenceError::Invalid { .. }));
        // ggcr: a repository has at least two characters.
        assert!(matches!(
            err("localhost:5000/x"),
            ReferenceError::Invalid { .. }
        ));
        assert!(matches!(
            err("exa mple.com/foo"),
            ReferenceError::Invalid { .. }
        ));
        assert!(matches!(
            err("example.com:port/foo"),
            ReferenceError::Invalid { .. }
        ));
        assert!(matches!(err("foo@bar"), ReferenceError::Invalid { .. }));
        assert!(matches!(
            err(&format!("foo/bar@sha256:{}", "a".repeat(10))),
            ReferenceError::Invalid { .. }
        ));
        assert!(matches!(
            err(&"a".repeat(256)),
            ReferenceError::Invalid { .. }
        ));
    }

    #[test]
    fn scheme_selection() {
        // 7.5 #95: insecure gives http.
        let insecure = ImageReference::parse("example.com/foo/bar", true).unwrap();
        assert_eq!(insecure.schemes(), ["http"]);
        assert_eq!(ok("example.com/foo/bar").schemes(), ["https"]);
        for local in [
            "localhost:5000/ab",
            "127.0.0.1:5000/ab",
            "10.1.2.3/ab",
            "192.168.0.1:80/ab",
            "172.16.0.1/ab",
            "registry.local/ab",
            "[::1]:5000/ab",
        ] {
            assert_eq!(ok(local).schemes(), ["https", "http"], "{local}");
        }
        assert_eq!(ok("172.32.0.1/ab").schemes(), ["https"]);
        assert_eq!(ok("8.8.8.8/ab").schemes(), ["https"]);
    }
}
