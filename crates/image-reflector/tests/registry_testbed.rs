//! The registry client against a REAL registry (the testbed's CNCF distribution) in every
//! auth mode: anonymous, htpasswd (credentials from a dockerconfigjson Secret), Bearer
//! tokens from an issuer, and TLS with the CA from a cert Secret. Thousands of tags, exact
//! sets, digests, deletes and refused credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use image_reflector::reference::ImageReference;
use image_reflector::registry::{
    AccessInputs, ClientSettings, ExclusionList, RegistryAccess, RegistryClient, RegistryError,
    ScanResult, SecretData, resolve_access,
};
use image_reflector::store::{RedbTagStore, RepoKey, TagStore};
use testbed::registry::{Registry, RegistryOptions};

const TAG_COUNT: usize = 3_100;
const TIMEOUT: Duration = Duration::from_secs(60);

fn tags() -> Vec<String> {
    (0..TAG_COUNT)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect()
}

/// What the controller would do: Secrets → access → client.
fn access(registry: &Registry, image: &ImageReference, with_ca: bool) -> RegistryAccess {
    let pull = [SecretData::docker_config_json(
        "pull",
        registry.docker_config_json(),
    )];
    let certs = registry
        .ca_cert()
        .filter(|_| with_ca)
        .map(|ca| SecretData::new("certs", "Opaque").with("ca.crt", std::fs::read(ca).unwrap()));
    resolve_access(
        image,
        &AccessInputs {
            pull_secrets: &pull,
            cert_secret: certs.as_ref(),
            ..Default::default()
        },
    )
    .unwrap()
}

fn client(access: &RegistryAccess) -> RegistryClient {
    RegistryClient::new(&access.transport, ClientSettings::default()).unwrap()
}

/// Pushes [`TAG_COUNT`] tags to `team/app` and lists them through our client.
async fn push_and_list(registry: &Registry) -> (RegistryClient, RegistryAccess, ImageReference) {
    registry.push_tags("team/app", &tags()).await.unwrap();
    let image = ImageReference::parse(&registry.image("team/app"), false).unwrap();
    let access = access(registry, &image, true);
    let client = client(&access);
    let listed = client
        .list_tags(&image, access.credentials.as_ref(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(listed.len(), TAG_COUNT, "no duplicates or losses");
    assert_eq!(
        listed.into_iter().collect::<BTreeSet<_>>(),
        tags().into_iter().collect::<BTreeSet<_>>()
    );
    (client, access, image)
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_registry_lists_every_tag() {
    let registry = Registry::start(RegistryOptions::anonymous()).await.unwrap();
    // No `insecure`: a loopback host tries HTTPS, then falls back to HTTP like ggcr.
    let (client, access, _) = push_and_list(&registry).await;
    assert_eq!(access.credentials, None);

    // `insecure` goes straight to HTTP; the scan (as the controller does it) lists, then
    // filters, sorts and checksums.
    let image = ImageReference::parse(&registry.image("team/app"), true).unwrap();
    let exclusions = ExclusionList::compile(&[r"^1\.0\."]).unwrap();
    let listed = client.list_tags(&image, None, TIMEOUT).await.unwrap();
    let result = ScanResult::new(
        image.canonical_name(),
        listed,
        &exclusions,
        SystemTime::now(),
    );
    assert_eq!(result.tag_count(), TAG_COUNT - 100);
    assert_eq!(result.latest_tags()[0], "1.9.99");
    assert_eq!(result.canonical_image, registry.image("team/app"));
    assert!(result.revision.starts_with("sha256:"));

    // Into the store and back.
    let dir = tempfile::tempdir().unwrap();
    let store = RedbTagStore::open(dir.path().join("tags.redb")).unwrap();
    let key = RepoKey::new("apps", "app");
    store.put(&key, &result).unwrap();
    assert_eq!(store.get_tags(&key).unwrap().unwrap(), result.tags);
    assert_eq!(store.meta(&key).unwrap().unwrap().revision, result.revision);

    // A missing repository is Flux's "404 Not Found".
    let missing = ImageReference::parse(&registry.image("team/missing"), false).unwrap();
    let e = client.list_tags(&missing, None, TIMEOUT).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("404 Not Found"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_with_dockerconfigjson_credentials() {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    let (client, access, image) = push_and_list(&registry).await;
    assert_eq!(
        access.credentials.as_ref().map(|c| c.username.as_str()),
        registry.username()
    );

    // Without credentials: a typed auth error saying none matched.
    let e = client.list_tags(&image, None, TIMEOUT).await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("no credentials matched"), "{e}");

    wrong_password_is_a_typed_error(&registry, &client, &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_caches_bearer_tokens() {
    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    registry.push_tags("team/app", &tags()).await.unwrap();
    let before = registry.tokens_issued();
    let image = ImageReference::parse(&registry.image("team/app"), false).unwrap();
    let access = access(&registry, &image, false);
    let client = client(&access);
    let credentials = access.credentials.as_ref();
    for _ in 0..5 {
        let listed = client
            .list_tags(&image, credentials, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            listed.into_iter().collect::<BTreeSet<_>>(),
            tags().into_iter().collect::<BTreeSet<_>>()
        );
    }
    assert_eq!(
        registry.tokens_issued() - before,
        1,
        "five scans of one repository share one token"
    );
    // Another repository needs its own scope, hence one more token.
    registry.push_tags("team/other", &["x1"]).await.unwrap();
    let before = registry.tokens_issued();
    let other = ImageReference::parse(&registry.image("team/other"), false).unwrap();
    assert_eq!(
        client
            .list_tags(&other, credentials, TIMEOUT)
            .await
            .unwrap(),
        ["x1"]
    );
    client
        .list_tags(&image, credentials, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(registry.tokens_issued() - before, 1);

    // The token service refuses anonymous requests here.
    let e = client.list_tags(&image, None, TIMEOUT).await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");

    wrong_password_is_a_typed_error(&registry, &client, &image).await;
}

/// The value of `series` (a full `name{labels}` of the text exposition), 0 when absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn requests(text: &str, host: &str, code: u16) -> u64 {
    sample(
        text,
        &format!(r#"image_reflector_registry_requests_total{{code="{code}",host="{host}"}}"#),
    )
}

/// The client pool both modes use counts every HTTP response of the token flow: the
/// ping's 401 challenge, the token service's answer (under its own host), each tag list
/// and digest request, and a 404.
#[tokio::test(flavor = "multi_thread")]
async fn the_pool_counts_every_registry_response_by_host_and_code() {
    use image_reflector::metrics::Metrics;
    use image_reflector::reconcile::{DigestSource, RegistryPool, ScanSource};

    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    registry
        .push_tags("team/app", &["1.0.0", "1.1.0", "2.0.0"])
        .await
        .unwrap();
    let tokens_before = registry.tokens_issued();
    // `insecure`: straight to HTTP, so no HTTPS attempt precedes the ping.
    let image = ImageReference::parse(&registry.image("team/app"), true).unwrap();
    let access = access(&registry, &image, false);
    let metrics = Metrics::new().unwrap();
    let pool = RegistryPool::new(ClientSettings::default(), Some(metrics.request_observer()));
    let host = registry.host();
    let realm = reqwest::Url::parse(&registry.token_realm().unwrap()).unwrap();
    let token_host = format!("{}:{}", realm.host_str().unwrap(), realm.port().unwrap());
    assert_ne!(token_host, host, "the token service has its own port");

    assert_eq!(
        pool.list_tags(&image, &access, TIMEOUT)
            .await
            .unwrap()
            .len(),
        3
    );
    let text = metrics.encode_text().unwrap();
    assert_eq!(
        requests(&text, &host, 401),
        1,
        "the ping's challenge:\n{text}"
    );
    assert_eq!(requests(&text, &token_host, 200), 1, "the token:\n{text}");
    assert_eq!(requests(&text, &host, 200), 1, "the tag list:\n{text}");

    // Cached ping and token: one response each.
    pool.list_tags(&image, &access, TIMEOUT).await.unwrap();
    pool.manifest_digest(&image, "2.0.0", &access, TIMEOUT)
        .await
        .unwrap();
    // Another repository: its own token, then the registry's 404.
    let missing = ImageReference::parse(&registry.image("team/missing"), true).unwrap();
    let e = pool
        .list_tags(&missing, &access, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e:?}");
    let text = metrics.encode_text().unwrap();
    assert_eq!(requests(&text, &host, 401), 1, "{text}");
    assert_eq!(requests(&text, &host, 200), 3, "{text}");
    assert_eq!(requests(&text, &host, 404), 1, "{text}");
    assert_eq!(requests(&text, &token_host, 200), 2, "{text}");
    assert_eq!(
        registry.tokens_issued() - tokens_before,
        2,
        "the token responses counted are the tokens issued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_with_ca_from_a_cert_secret() {
    let registry = Registry::start(RegistryOptions::htpasswd().with_tls())
        .await
        .unwrap();
    let (_, access, image) = push_and_list(&registry).await;
    assert!(access.transport.tls.as_ref().unwrap().has_ca());

    // Without the CA the certificate is not trusted: a transport error, not a silent
    // downgrade to plain HTTP (the registry answers HTTP with 400).
    let untrusting = access_without_ca(&registry, &image);
    let client = client(&untrusting);
    let started = std::time::Instant::now();
    let e = client
        .list_tags(&image, untrusting.credentials.as_ref(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Transport { .. } | RegistryError::Status { status: 400, .. }
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "TLS failures are not retried: {:?}",
        started.elapsed()
    );
}

fn access_without_ca(registry: &Registry, image: &ImageReference) -> RegistryAccess {
    access(registry, image, false)
}

#[tokio::test(flavor = "multi_thread")]
async fn digests_and_deleted_tags() {
    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    let repo = "team/multi";
    let a = registry.push_image(repo, "a").await.unwrap();
    let b = registry.push_image(repo, "b").await.unwrap();
    let index = registry
        .push_index(repo, "multi", &[("linux", "amd64"), ("linux", "arm64")])
        .await
        .unwrap();
    let image = ImageReference::parse(&registry.image(repo), false).unwrap();
    let access = access(&registry, &image, false);
    let client = client(&access);
    let credentials = access.credentials.as_ref();

    // The multi-arch tag resolves to the index digest, not a platform manifest.
    assert_eq!(
        client
            .manifest_digest(&image, "multi", credentials, TIMEOUT)
            .await
            .unwrap(),
        index
    );
    assert_eq!(
        client
            .manifest_digest(&image, "a", credentials, TIMEOUT)
            .await
            .unwrap(),
        a
    );
    // `insecure` (plain HTTP) is honoured for digests too.
    let insecure = ImageReference::parse(&registry.image(repo), true).unwrap();
    assert_eq!(
        client
            .manifest_digest(&insecure, "b", credentials, TIMEOUT)
            .await
            .unwrap(),
        b
    );

    let mut listed = client
        .list_tags(&image, credentials, TIMEOUT)
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, ["a", "b", "multi"]);
    registry.delete_tag(repo, "a").await.unwrap();
    let mut listed = client
        .list_tags(&image, credentials, TIMEOUT)
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, ["b", "multi"], "a deleted tag disappears");
    let e = client
        .manifest_digest(&image, "a", credentials, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e:?}");
    assert!(matches!(
        client
            .manifest_digest(&image, "../x", credentials, TIMEOUT)
            .await
            .unwrap_err(),
        RegistryError::InvalidTag { .. }
    ));
}

/// A wrong password gives a typed auth error naming the registry host, never the password.
async fn wrong_password_is_a_typed_error(
    registry: &Registry,
    client: &RegistryClient,
    image: &ImageReference,
) {
    let wrong_password = format!("{}-wrong", registry.password().unwrap());
    let wrong = image_reflector::registry::Credentials::new(
        registry.username().unwrap(),
        wrong_password.clone(),
    );
    let e = client
        .list_tags(image, Some(&wrong), TIMEOUT)
        .await
        .unwrap_err();
    let RegistryError::Unauthorized { registry: host, .. } = &e else {
        panic!("expected Unauthorized, got {e:?}");
    };
    assert_eq!(host, &registry.host());
    let message = e.to_string();
    assert!(message.contains(&registry.host()), "{message}");
    assert!(!message.contains(&wrong_password), "{message}");
    assert!(!message.contains(registry.password().unwrap()), "{message}");
    assert!(!format!("{e:?}").contains(&wrong_password));
}

#[test]
fn client_certificates_from_a_tls_secret() {
    use image_reflector::registry::{TlsConfig, TransportConfig};
    // Real PEM material from the testbed's CA tooling (a server pair works as a client
    // pair for parsing and client building).
    let dir = tempfile::tempdir().unwrap();
    let certs = testbed::tls::Certificates::generate(dir.path()).unwrap();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let secret = SecretData::new("tls", "kubernetes.io/tls")
        .with("tls.crt", read(&certs.server_cert))
        .with("tls.key", read(&certs.server_key))
        .with("ca.crt", read(&certs.ca_cert));
    let tls = TlsConfig::from_secret(&secret).unwrap();
    assert!(tls.has_client_certificate() && tls.has_ca() && !tls.used_legacy_keys());
    let transport = TransportConfig {
        tls: Some(tls),
        proxy: None,
    };
    RegistryClient::new(&transport, ClientSettings::default()).unwrap();

    // Legacy keys are a fallback, and flagged so the controller can warn.
    let legacy = SecretData::new("tls", "Opaque")
        .with("certFile", read(&certs.server_cert))
        .with("keyFile", read(&certs.server_key))
        .with("caFile", read(&certs.ca_cert));
    assert!(TlsConfig::from_secret(&legacy).unwrap().used_legacy_keys());
    // A dockerconfigjson-typed Secret carrying TLS keys works too (the type is not checked).
    let typed = SecretData::docker_config_json("both", "{}").with("ca.crt", read(&certs.ca_cert));
    assert!(TlsConfig::from_secret(&typed).unwrap().has_ca());
}
