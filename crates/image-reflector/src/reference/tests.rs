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
