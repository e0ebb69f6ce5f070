//! Registry behaviours the real testbed registry cannot show (distribution 2.8 answers
//! tags/list in one page): Link pagination with opaque cursors, Quay-like page caps, a
//! next link to another host, tag and page caps, 429 with Retry-After, 5xx then success,
//! token expiry, a registry that hangs, and the request metrics of all of these. Fault
//! injection is what mocks are for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::time::{Duration, Instant};
use testbed::leaks::credential_forms;

use image_reflector::reference::ImageReference;
use image_reflector::registry::{
    ClientSettings, Credentials, RegistryClient, RegistryError, RetryPolicy, TransportConfig,
};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const TAGS_PATH: &str = "/v2/team/app/tags/list";
const TIMEOUT: Duration = Duration::from_secs(20);

/// Fast retries so fault tests take milliseconds.
fn settings() -> ClientSettings {
    ClientSettings {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            factor: 2,
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..ClientSettings::default()
    }
}

fn client(settings: ClientSettings) -> RegistryClient {
    RegistryClient::new(&TransportConfig::default(), settings).unwrap()
}

/// `127.0.0.1:PORT/team/app`, insecure (the mock speaks plain HTTP).
fn image(server: &MockServer) -> ImageReference {
    ImageReference::parse(&format!("{}/team/app", host(server)), true).unwrap()
}

fn host(server: &MockServer) -> String {
    server.address().to_string()
}

async fn registry() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// A GET of the tags/list of `team/app`.
fn tags_list() -> MockBuilder {
    Mock::given(method("GET")).and(path(TAGS_PATH))
}

/// Expects `times` tags/list requests with `key=value` in the query, answers `response`.
async fn expect_query(
    server: &MockServer,
    (key, value): (&str, &str),
    response: ResponseTemplate,
    times: u64,
) {
    tags_list()
        .and(query_param(key, value))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

/// Lists the tags of `team/app` on `server` without credentials.
async fn list(server: &MockServer, settings: ClientSettings) -> Result<Vec<String>, RegistryError> {
    client(settings)
        .list_tags(&image(server), None, TIMEOUT)
        .await
}

/// Answers one tags/list request with `response`, ahead of mocks of a lower priority
/// (a greater number).
async fn answer_once(server: &MockServer, response: ResponseTemplate, priority: u8) {
    tags_list()
        .respond_with(response)
        .up_to_n_times(1)
        .with_priority(priority)
        .mount(server)
        .await;
}

fn page(tags: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "name": "team/app", "tags": tags }))
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("t{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_link_pagination_with_opaque_cursors() {
    let server = registry().await;
    let base = server.uri();
    // Page 1 → relative link with an opaque cursor; page 2 → absolute link; page 3 ends.
    tags_list()
        .and(query_param("n", "1000"))
        .and(query_param_is_missing("cursor"))
        .respond_with(page(&names(0..3)).insert_header(
            "Link",
            format!(r#"<{TAGS_PATH}?cursor=b3BhcXVl%3D%3D&n=1000>; rel="next""#),
        ))
        .expect(1)
        .mount(&server)
        .await;
    expect_query(
        &server,
        ("cursor", "b3BhcXVl=="),
        page(&names(3..6)).insert_header(
            "Link",
            format!(r#"<{base}{TAGS_PATH}?cursor=second>; rel="next""#),
        ),
        1,
    )
    .await;
    expect_query(&server, ("cursor", "second"), page(&names(6..8)), 1).await;

    let tags = list(&server, settings()).await.unwrap();
    assert_eq!(tags, names(0..8));
}

/// A Quay-like registry: at most 100 tags per page whatever `n` says, `n`/`last` links.
async fn mount_capped_registry(server: &MockServer, total: usize) {
    let all = names(0..total);
    for start in (0..total).step_by(100) {
        let end = (start + 100).min(total);
        let mut response = page(&all[start..end]);
        if end < total {
            response = response.insert_header(
                "Link",
                format!(r#"<{TAGS_PATH}?n=100&last={}>; rel="next""#, all[end - 1]),
            );
        }
        let mut mock = tags_list();
        mock = if start == 0 {
            mock.and(query_param_is_missing("last"))
        } else {
            mock.and(query_param("last", all[start - 1].as_str()))
        };
        mock.respond_with(response).mount(server).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_capped_registry_is_paginated() {
    let server = registry().await;
    mount_capped_registry(&server, 250).await;
    let tags = list(&server, settings()).await.unwrap();
    assert_eq!(tags, names(0..250));
    let requests = server.received_requests().await.unwrap();
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == TAGS_PATH)
        .collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].url.query(), Some("n=1000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn page_size_is_configurable_per_host_and_quay_errors_fall_back() {
    let server = registry().await;
    // n=1000 is refused the way Quay refuses it; n=100 works.
    expect_query(
        &server,
        ("n", "1000"),
        ResponseTemplate::new(400).set_body_json(
            json!({ "errors": [{"code": "TOO_MANY_TAGS_REQUESTED", "message": "n > 100"}] }),
        ),
        1,
    )
    .await;
    expect_query(&server, ("n", "100"), page(&names(0..5)), 2).await;
    // Default settings: one refused request, then the capped size.
    let tags = list(&server, settings()).await.unwrap();
    assert_eq!(tags, names(0..5));
    // Configured for this host: n=100 from the start.
    let mut configured = settings();
    configured.page_sizes.insert(host(&server), 100);
    let c = client(configured);
    assert_eq!(c.page_size(&host(&server)), 100);
    assert_eq!(c.page_size("quay.io"), 100, "Quay's cap is a default");
    assert_eq!(c.page_size("ghcr.io"), 1000);
    let tags = c.list_tags(&image(&server), None, TIMEOUT).await.unwrap();
    assert_eq!(tags, names(0..5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_link_to_another_host_is_refused() {
    let server = registry().await;
    tags_list()
        .respond_with(page(&names(0..3)).insert_header(
            "Link",
            r#"<https://evil.example/v2/team/app/tags/list?last=t0002>; rel="next""#,
        ))
        .mount(&server)
        .await;
    let e = list(&server, settings()).await.unwrap_err();
    let RegistryError::ForeignNextLink { link_origin, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(link_origin, "https://evil.example");
    assert!(e.to_string().contains("refusing to follow"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_and_page_caps_fail_clearly() {
    let server = registry().await;
    mount_capped_registry(&server, 350).await;
    let mut few_tags = settings();
    few_tags.max_tags = 250;
    let e = list(&server, few_tags).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::TooManyTags { limit: 250, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("more than 250 tags"), "{e}");

    let mut few_pages = settings();
    few_pages.max_pages = 2;
    let e = list(&server, few_pages).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::TooManyPages { limit: 2, .. }),
        "{e:?}"
    );
    // Exactly at the caps is fine.
    let mut exact = settings();
    exact.max_tags = 350;
    exact.max_pages = 4;
    let tags = list(&server, exact).await.unwrap();
    assert_eq!(tags.len(), 350);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_honour_retry_after() {
    let server = registry().await;
    answer_once(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        1,
    )
    .await;
    tags_list()
        .respond_with(page(&names(0..2)))
        .mount(&server)
        .await;
    let started = Instant::now();
    let tags = list(&server, settings()).await.unwrap();
    assert_eq!(tags, names(0..2));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_the_bound_fails_at_once_with_the_wait() {
    let server = registry().await;
    tags_list()
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = list(&server, settings()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    assert!(e.is_transient());
    assert!(e.to_string().contains("retry after 3600s"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_then_succeed() {
    let server = registry().await;
    answer_once(&server, ResponseTemplate::new(500), 1).await;
    answer_once(&server, ResponseTemplate::new(503), 2).await;
    tags_list()
        .respond_with(page(&names(0..2)))
        .with_priority(3)
        .mount(&server)
        .await;
    let tags = list(&server, settings()).await.unwrap();
    assert_eq!(tags, names(0..2));
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_server_errors_give_up_after_bounded_attempts() {
    let server = registry().await;
    tags_list()
        .respond_with(ResponseTemplate::new(502))
        .expect(3)
        .mount(&server)
        .await;
    let e = list(&server, settings()).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Status { status: 502, .. }),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_registry_hits_the_overall_timeout() {
    let server = registry().await;
    tags_list()
        .respond_with(page(&names(0..2)).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = client(settings())
        .list_tags(&image(&server), None, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_requested_with_our_scope_and_refreshed_on_expiry() {
    let server = MockServer::start().await;
    let realm = format!("{}/token", server.uri());
    let challenge = format!(r#"Bearer realm="{realm}",service="mock-registry""#);
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge))
        .mount(&server)
        .await;
    // Basic credentials go to the token service, with our pull scope.
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("scope", "repository:team/app:pull"))
        .and(query_param("service", "mock-registry"))
        .and(header("authorization", "Basic dTpw")) // u:p
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": "tok", "expires_in": 1})),
        )
        .expect(2)
        .mount(&server)
        .await;
    tags_list()
        .and(header("authorization", "Bearer tok"))
        .respond_with(page(&names(0..2)))
        .expect(3)
        .mount(&server)
        .await;
    let c = client(settings());
    let credentials = Credentials::new("u", "p");
    let image = image(&server);
    for _ in 0..2 {
        let tags = c
            .list_tags(&image, Some(&credentials), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(tags, names(0..2));
    }
    // expires_in 1 s: refreshed (early) before the third scan.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.list_tags(&image, Some(&credentials), TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_go_through_the_proxy_from_the_proxy_secret() {
    use image_reflector::registry::{ProxyConfig, SecretData};
    // The "proxy" is a mock answering as the registry: with an HTTP proxy, reqwest sends
    // absolute-form requests to it. The registry host does not even resolve.
    let proxy = registry().await;
    tags_list()
        .and(header("proxy-authorization", "Basic cHU6cHA=")) // pu:pp
        .respond_with(page(&names(0..3)))
        .expect(1)
        .mount(&proxy)
        .await;
    let secret = SecretData::new("proxy", "Opaque")
        .with("address", proxy.uri())
        .with("username", "pu")
        .with("password", "pp");
    let transport = TransportConfig {
        tls: None,
        proxy: Some(ProxyConfig::from_secret(&secret).unwrap()),
    };
    let c = RegistryClient::new(&transport, settings()).unwrap();
    let image = ImageReference::parse("registry.invalid:5000/team/app", true).unwrap();
    assert_eq!(
        c.list_tags(&image, None, TIMEOUT).await.unwrap(),
        names(0..3)
    );

    // A proxy that refuses connections fails the scan (Flux: "connection refused").
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let secret = SecretData::new("proxy", "Opaque").with("address", address);
    let transport = TransportConfig {
        tls: None,
        proxy: Some(ProxyConfig::from_secret(&secret).unwrap()),
    };
    let c = RegistryClient::new(&transport, settings()).unwrap();
    let e = c.list_tags(&image, None, TIMEOUT).await.unwrap_err();
    assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
}

/// A proxy (or a registry behind it) quoting the request's `Proxy-Authorization` in an
/// error: the proxy password is scrubbed like the registry's.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_credentials_echoed_back_are_scrubbed() {
    use image_reflector::registry::{ProxyConfig, SecretData};
    let proxy = registry().await;
    tags_list()
        .respond_with(EchoHeaders {
            status: 502,
            json: false,
        })
        .mount(&proxy)
        .await;
    let secret = SecretData::new("proxy", "Opaque")
        .with("address", proxy.uri())
        .with("username", "proxy-user")
        .with("password", ECHO_PASSWORD);
    let transport = TransportConfig {
        tls: None,
        proxy: Some(ProxyConfig::from_secret(&secret).unwrap()),
    };
    let c = RegistryClient::new(&transport, settings()).unwrap();
    let image = ImageReference::parse("registry.invalid:5000/team/app", true).unwrap();
    let e = c.list_tags(&image, None, TIMEOUT).await.unwrap_err();
    assert_scrubbed(&e, &credential_forms("proxy-user", ECHO_PASSWORD));
}

/// Every HTTP response is counted by host and status code: the ping's 401 challenge, the
/// token, a 429 and a 503 that are retried, each tag-list page, a redirect and the page it
/// leads to, and a digest request.
#[tokio::test(flavor = "multi_thread")]
async fn every_response_is_counted_by_host_and_status_code() {
    use image_reflector::metrics::Metrics;

    let server = MockServer::start().await;
    let realm = format!("{}/token", server.uri());
    let challenge = format!(r#"Bearer realm="{realm}",service="mock-registry""#);
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": "tok", "expires_in": 300})),
        )
        .expect(1)
        .mount(&server)
        .await;
    // The first page: 429, then 503, then the page with a link to the second.
    answer_once(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "0"),
        1,
    )
    .await;
    answer_once(&server, ResponseTemplate::new(503), 2).await;
    tags_list()
        .and(query_param_is_missing("last"))
        .respond_with(page(&names(0..2)).insert_header(
            "Link",
            format!(r#"<{TAGS_PATH}?last=t0001&n=1000>; rel="next""#),
        ))
        .with_priority(3)
        .mount(&server)
        .await;
    // The second page redirects (reqwest follows it inside one send).
    tags_list()
        .and(query_param("last", "t0001"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("Location", "/v2/team/app/moved?last=t0001"),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/team/app/moved"))
        .respond_with(page(&names(2..3)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/t0002"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("Docker-Content-Digest", "sha256:abc"),
        )
        .expect(1)
        .mount(&server)
        .await;

    let metrics = Metrics::new().unwrap();
    let c = RegistryClient::with_observer(
        &TransportConfig::default(),
        settings(),
        metrics.request_observer(),
    )
    .unwrap();
    let credentials = Credentials::new("u", "p");
    let image = image(&server);
    let tags = c
        .list_tags(&image, Some(&credentials), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(tags, names(0..3));
    let digest = c
        .manifest_digest(&image, "t0002", Some(&credentials), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(digest, "sha256:abc");

    let text = metrics.encode_text().unwrap();
    let host = host(&server);
    let count = |code: u16| {
        let series =
            format!(r#"image_reflector_registry_requests_total{{code="{code}",host="{host}"}} "#);
        text.lines()
            .find_map(|line| line.strip_prefix(&series)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // 200: the token, page one, the redirected page two, the digest.
    for (code, expected) in [(200, 4), (401, 1), (429, 1), (503, 1), (307, 1)] {
        assert_eq!(count(code), expected, "code {code}:\n{text}");
    }
    assert!(
        text.contains(&format!(
            r#"image_reflector_registry_rate_limited_total{{host="{host}"}} 1"#
        )),
        "{text}"
    );
}

/// Answers with `status` and a body quoting every request header, as registries that
/// echo the request in 401/500 errors do (`json`: inside the registry's error JSON).
struct EchoHeaders {
    status: u16,
    json: bool,
}

impl wiremock::Respond for EchoHeaders {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let headers: Vec<String> = request
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        let response = ResponseTemplate::new(self.status);
        if self.json {
            response.set_body_json(json!({"errors": [{
                "code": "UNAUTHORIZED",
                "message": format!("request headers: {}", headers.join(", ")),
            }]}))
        } else {
            response.set_body_string(format!("bad request\n{}", headers.join("\n")))
        }
    }
}

#[track_caller]
fn assert_scrubbed(error: &RegistryError, forms: &[String]) {
    let texts = [error.to_string(), format!("{error:?}")];
    for text in &texts {
        for form in forms {
            assert!(!text.contains(form.as_str()), "{form:?} leaked in: {text}");
        }
    }
    assert!(
        texts[0].contains("[redacted]"),
        "the echo should reach the message, scrubbed: {}",
        texts[0]
    );
}

/// A password whose base64 differs between the standard and URL-safe alphabets.
const ECHO_PASSWORD: &str = "s3cr3t>>??~pass";

#[tokio::test(flavor = "multi_thread")]
async fn basic_credentials_echoed_in_error_bodies_are_scrubbed() {
    for (status, json) in [(401, true), (401, false), (500, true), (500, false)] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", "Basic"))
            .mount(&server)
            .await;
        tags_list()
            .respond_with(EchoHeaders { status, json })
            .mount(&server)
            .await;
        let credentials = Credentials::new("echo-user", ECHO_PASSWORD);
        let e = client(settings())
            .list_tags(&image(&server), Some(&credentials), TIMEOUT)
            .await
            .unwrap_err();
        assert_scrubbed(&e, &credential_forms("echo-user", ECHO_PASSWORD));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_service_and_bearer_echoes_are_scrubbed() {
    let token = "tok-SECRET-1234567890";
    for echo_at in ["/token", TAGS_PATH] {
        let server = MockServer::start().await;
        let challenge = format!(r#"Bearer realm="{}/token",service="mock""#, server.uri());
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(echo_at))
            .respond_with(EchoHeaders {
                status: if echo_at == "/token" { 401 } else { 500 },
                json: echo_at == "/token",
            })
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": token})))
            .mount(&server)
            .await;
        let credentials = Credentials::new("echo-user", ECHO_PASSWORD);
        let e = client(settings())
            .list_tags(&image(&server), Some(&credentials), TIMEOUT)
            .await
            .unwrap_err();
        let mut forms = credential_forms("echo-user", ECHO_PASSWORD);
        forms.extend(credential_forms("", token));
        assert_scrubbed(&e, &forms);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_is_read_up_to_a_cap() {
    use image_reflector::registry::error::BodyKind;
    // A tags/list page over the cap: refused from its Content-Length.
    let server = registry().await;
    tags_list()
        .respond_with(page(&names(0..50_000)))
        .mount(&server)
        .await;
    let e = list(
        &server,
        ClientSettings {
            max_tag_page_bytes: 64 * 1024,
            ..settings()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::BodyTooLarge {
                kind: BodyKind::TagPage,
                limit: 65_536,
                ..
            }
        ),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.contains("tags/list page larger than 64 KiB")
            && message.contains("--max-tag-page-bytes"),
        "{message}"
    );

    // A page of millions of tiny tags within the byte cap stops at the tag budget while
    // parsing, instead of building every string first.
    let server = registry().await;
    let tiny: String = std::iter::repeat_n("\"a\",", 2_000_000).collect();
    tags_list()
        .respond_with(
            ResponseTemplate::new(200).set_body_string(format!("{{\"tags\":[{tiny}\"a\"]}}")),
        )
        .mount(&server)
        .await;
    let e = list(
        &server,
        ClientSettings {
            max_tags: 1000,
            ..settings()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, RegistryError::TooManyTags { limit: 1000, .. }),
        "{e:?}"
    );

    // A token answer over 1 MiB.
    let server = MockServer::start().await;
    let challenge = format!(r#"Bearer realm="{}/token""#, server.uri());
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2 << 20)))
        .mount(&server)
        .await;
    let e = list(&server, settings()).await.unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::BodyTooLarge {
                kind: BodyKind::TokenResponse,
                ..
            }
        ),
        "{e:?}"
    );

    // A manifest hashed for its digest (no Docker-Content-Digest) over 4 MiB.
    let server = registry().await;
    Mock::given(path("/v2/team/app/manifests/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(5 << 20)))
        .mount(&server)
        .await;
    let e = client(settings())
        .manifest_digest(&image(&server), "v1", None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::BodyTooLarge {
                kind: BodyKind::Manifest,
                ..
            }
        ),
        "{e:?}"
    );
}
