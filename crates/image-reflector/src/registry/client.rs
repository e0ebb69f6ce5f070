//! The registry HTTP client: Docker Registry v2 / OCI distribution on reqwest.
//!
//! Per registry host it pings `GET /v2/` once to learn the scheme (HTTPS, or HTTP for
//! `insecure` and, after HTTPS failed, for local hosts) and the auth challenge, and caches
//! that. Bearer tokens are cached per (realm, service, scope, credentials) until shortly
//! before they expire. Any 401 re-reads the challenge from that response and retries once,
//! which covers expired tokens and registries whose `/v2/` is open but repositories are not.
//!
//! Whatever the registry says (error bodies, token-service errors, URLs it sent us to, parse
//! errors quoting its answers) reaches an error message only through [`Op::quote`], which
//! scrubs every credential sent for the operation (see [`kube_support::redact`]). Every body
//! is read through [`Op::read_capped`] (or [`read_error`]), which stops at a size cap.
//!
//! Every HTTP response (pings, 401 challenges, token requests, each tag-list page, manifest
//! requests, each retry, redirects) is reported to the client's [`RequestObserver`], if
//! any, with the host it came from and its status code.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use kube_support::redact::Secrets;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::challenge::{Challenge, parse_challenges, preferred};
use super::credentials::Credentials;
use super::error::{BodyKind, RegistryError};
use super::link::{LinkError, next_link, resolve_next};
use super::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use super::transport::TransportConfig;
use crate::reference::ImageReference;

mod auth;
mod op;
mod tags_page;

pub use auth::TokenResponse;
use auth::{CachedToken, auth_from_challenges, credentials_hint, token_key};
use op::{Op, read_error};
pub use tags_page::parse_tags_page;
use tags_page::{PageError, TagsPageSeed};

/// Quay rejects `n` above 100 (`TOO_MANY_TAGS_REQUESTED`).
pub const QUAY_PAGE_CAP: u32 = 100;

/// Manifest media types accepted on digest lookups: indexes first, so a multi-arch tag
/// yields its index digest (what `docker pull` and Flux report).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// How long a ping result (scheme and challenge) is reused for a host.
const HOST_TTL: Duration = Duration::from_secs(600);
/// Token lifetime when the token service does not say (the Docker token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longer `expires_in` values are capped (and cannot overflow an `Instant`).
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// How much of an error body we read for the message (the rest is not read).
const ERROR_BODY_LIMIT: usize = 2048;
/// How many characters of an error body's text a message quotes.
const ERROR_DETAIL_CHARS: usize = 300;
/// Default cap on one `tags/list` page: a registry ignoring `n` and sending 100,000 tags
/// of 128 characters in one page stays under it.
pub const DEFAULT_MAX_TAG_PAGE_BYTES: usize = 32 * 1024 * 1024;
/// Cap on a token-service answer (JWTs are a few KiB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1024 * 1024;
/// Cap on a manifest hashed for its digest: distribution refuses manifests over 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Told of every HTTP response: the `host[:port]` that answered and the status code.
pub type RequestObserver = Arc<dyn Fn(&str, u16) + Send + Sync>;

/// Client-wide settings.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `n` on `tags/list` unless `page_sizes` has the registry host.
    pub default_page_size: u32,
    /// `n` per registry host (`host[:port]`). Defaults to `quay.io` → 100.
    pub page_sizes: BTreeMap<String, u32>,
    /// Scans of repositories with more tags fail with [`RegistryError::TooManyTags`]
    /// (`serve --max-tags-per-repository`).
    pub max_tags: usize,
    /// Scans needing more pages fail with [`RegistryError::TooManyPages`]
    /// (`serve --max-tag-pages`).
    pub max_pages: usize,
    /// A larger `tags/list` page fails with [`RegistryError::BodyTooLarge`]
    /// (`serve --max-tag-page-bytes`).
    pub max_tag_page_bytes: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            default_page_size: 1000,
            page_sizes: BTreeMap::from([("quay.io".to_string(), QUAY_PAGE_CAP)]),
            max_tags: 100_000,
            max_pages: 1_000,
            max_tag_page_bytes: DEFAULT_MAX_TAG_PAGE_BYTES,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("image-reflector/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A registry client; cheap to clone (clones share connections and caches).
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    settings: ClientSettings,
    /// The proxy's credentials (sent with every request through it).
    proxy_secrets: Secrets,
    state: Mutex<State>,
    observer: Observer,
}

/// The optional observer, with a `Debug` that shows only whether there is one.
#[derive(Clone, Default)]
pub(crate) struct Observer(Option<RequestObserver>);

impl Observer {
    /// Reports a response from `url` with `status`.
    pub(crate) fn observe(&self, url: &Url, status: StatusCode) {
        if let Some(observer) = &self.0 {
            observer(&host_label(url), status.as_u16());
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// `host` or `host:port` (when the URL names a port): the metric's host label.
fn host_label(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

#[derive(Debug, Default)]
struct State {
    hosts: HashMap<HostKey, HostInfo>,
    tokens: HashMap<TokenKey, CachedToken>,
}

/// (registry, insecure): the scheme choice depends on both.
type HostKey = (String, bool);
/// (realm, service, scope, credentials fingerprint).
type TokenKey = (String, String, String, String);

#[derive(Debug, Clone)]
struct HostInfo {
    /// `scheme://host[:port]/`.
    base: Url,
    auth: HostAuth,
    checked: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostAuth {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl RegistryClient {
    pub fn new(
        transport: &TransportConfig,
        settings: ClientSettings,
    ) -> Result<Self, RegistryError> {
        Self::build(transport, settings, Observer::default())
    }

    /// A client that reports every HTTP response to `observer` (the registry request
    /// metrics).
    pub fn with_observer(
        transport: &TransportConfig,
        settings: ClientSettings,
        observer: RequestObserver,
    ) -> Result<Self, RegistryError> {
        Self::build(transport, settings, Observer(Some(observer)))
    }

    fn build(
        transport: &TransportConfig,
        settings: ClientSettings,
        observer: Observer,
    ) -> Result<Self, RegistryError> {
        let http = transport
            .build(&settings.user_agent, settings.connect_timeout, &observer)
            .map_err(RegistryError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                settings,
                proxy_secrets: transport
                    .proxy
                    .as_ref()
                    .map(super::transport::ProxyConfig::secrets)
                    .unwrap_or_default(),
                state: Mutex::default(),
                observer,
            }),
        })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The `n` used for `registry` (`host[:port]`).
    pub fn page_size(&self, registry: &str) -> u32 {
        let s = &self.inner.settings;
        s.page_sizes
            .get(registry)
            .copied()
            .unwrap_or(s.default_page_size)
            .max(1)
    }

    /// Every tag of `image`, following `Link` pagination, within `timeout` overall.
    pub async fn list_tags(
        &self,
        image: &ImageReference,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Vec<String>, RegistryError> {
        let op = Op::new(image, credentials, timeout, &self.inner.proxy_secrets);
        with_timeout(image, timeout, self.list_tags_op(&op)).await
    }

    /// The digest `image:tag` resolves to (the index digest for multi-arch images), by
    /// `HEAD` on the manifest, falling back to hashing a `GET` when the registry sends no
    /// `Docker-Content-Digest`.
    pub async fn manifest_digest(
        &self,
        image: &ImageReference,
        tag: &str,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<String, RegistryError> {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(RegistryError::InvalidTag {
                tag: tag.to_string(),
            });
        }
        let op = Op::new(image, credentials, timeout, &self.inner.proxy_secrets);
        with_timeout(image, timeout, self.digest_op(&op, tag)).await
    }

    async fn list_tags_op(&self, op: &Op<'_>) -> Result<Vec<String>, RegistryError> {
        let host = self.host(op).await?;
        let settings = &self.inner.settings;
        let registry = op.image.registry();
        let mut page_size = self.page_size(registry);
        let first_url = |n: u32| -> Result<Url, RegistryError> {
            let mut url = self.repo_url(op, &host, "tags/list")?;
            url.query_pairs_mut().append_pair("n", &n.to_string());
            Ok(url)
        };
        let mut url = first_url(page_size)?;
        let mut tags: Vec<String> = Vec::new();
        let mut pages = 0usize;
        loop {
            pages += 1;
            if pages > settings.max_pages {
                return Err(RegistryError::TooManyPages {
                    image: op.image.canonical_name(),
                    limit: settings.max_pages,
                });
            }
            let response = self.send(op, Method::GET, &url, None).await?;
            let status = response.status();
            if !status.is_success() {
                let (status, detail) = read_error(op, response).await;
                // Quay-like caps: retry the listing with the cap rather than fail.
                if status == StatusCode::BAD_REQUEST
                    && detail.contains("TOO_MANY_TAGS_REQUESTED")
                    && page_size > QUAY_PAGE_CAP
                {
                    page_size = QUAY_PAGE_CAP;
                    url = first_url(page_size)?;
                    tags.clear();
                    pages = 0;
                    continue;
                }
                return Err(self.status_error(op, &Method::GET, &url, status, detail, None));
            }
            let next = response
                .headers()
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let body = op
                .read_capped(response, BodyKind::TagPage, settings.max_tag_page_bytes)
                .await?;
            // Parsing stops at the first tag over the budget, so a page of millions of tiny
            // tags never becomes millions of strings.
            let budget = settings.max_tags.saturating_sub(tags.len());
            let parsed = TagsPageSeed {
                tags: &mut tags,
                budget,
            }
            .parse(&body);
            drop(body);
            match parsed {
                Ok(()) => {}
                Err(PageError::OverBudget) => {
                    return Err(RegistryError::TooManyTags {
                        image: op.image.canonical_name(),
                        limit: settings.max_tags,
                    });
                }
                Err(PageError::Json(e)) => {
                    return Err(op.invalid_response(&format!("tags/list is not a tag list: {e}")));
                }
            }
            match next {
                None => return Ok(tags),
                Some(link) => {
                    url = resolve_next(&url, &link).map_err(|e| match e {
                        LinkError::ForeignOrigin(origin) => RegistryError::ForeignNextLink {
                            registry: registry.to_string(),
                            link_origin: op.quote(&origin),
                        },
                        LinkError::Invalid => RegistryError::InvalidResponse {
                            registry: registry.to_string(),
                            detail: "invalid Link header".into(),
                        },
                    })?;
                }
            }
        }
    }

    async fn digest_op(&self, op: &Op<'_>, tag: &str) -> Result<String, RegistryError> {
        let host = self.host(op).await?;
        let url = self.repo_url(op, &host, &format!("manifests/{tag}"))?;
        let what = || format!("manifest {}:{tag}", op.image.repository());
        let response = self
            .send(op, Method::HEAD, &url, Some(MANIFEST_ACCEPT))
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(self.status_error(
                op,
                &Method::HEAD,
                &url,
                status,
                String::new(),
                Some(what()),
            ));
        }
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        let response = self
            .send(op, Method::GET, &url, Some(MANIFEST_ACCEPT))
            .await?;
        if !response.status().is_success() {
            let (status, detail) = read_error(op, response).await;
            return Err(self.status_error(op, &Method::GET, &url, status, detail, Some(what())));
        }
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        let body = op
            .read_capped(response, BodyKind::Manifest, MAX_MANIFEST_BYTES)
            .await?;
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(&body))))
    }

    fn repo_url(&self, op: &Op<'_>, host: &HostInfo, suffix: &str) -> Result<Url, RegistryError> {
        host.base
            .join(&format!("v2/{}/{suffix}", op.image.repository()))
            .map_err(|e| RegistryError::InvalidResponse {
                registry: op.image.registry().to_string(),
                detail: format!("cannot build a URL: {e}"),
            })
    }

    /// The cached ping result for the image's registry, or a fresh ping.
    async fn host(&self, op: &Op<'_>) -> Result<HostInfo, RegistryError> {
        let key = host_key(op.image);
        if let Some(info) = self.lock().hosts.get(&key)
            && info.checked.elapsed() < HOST_TTL
        {
            return Ok(info.clone());
        }
        let info = self.ping(op).await?;
        self.lock().hosts.insert(key, info.clone());
        Ok(info)
    }

    async fn ping(&self, op: &Op<'_>) -> Result<HostInfo, RegistryError> {
        let registry = op.image.registry();
        let schemes = op.image.schemes();
        let mut last_error = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let fallback_left = i + 1 < schemes.len();
            let base = Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| {
                RegistryError::InvalidResponse {
                    registry: registry.to_string(),
                    detail: format!("cannot build a URL: {e}"),
                }
            })?;
            let url = base.join("v2/").unwrap_or_else(|_| base.clone());
            // No retries while another scheme is left to try: failing fast is the point.
            let result = self
                .send_raw(op, !fallback_left, || self.inner.http.get(url.clone()))
                .await;
            let response = match result {
                Ok(r) => r,
                Err(e @ RegistryError::Transport { .. }) if fallback_left => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let auth = match response.status() {
                s if s.is_success() => HostAuth::Anonymous,
                StatusCode::UNAUTHORIZED => auth_from_challenges(response.headers()),
                _ => {
                    let (status, detail) = read_error(op, response).await;
                    return Err(self.status_error(op, &Method::GET, &url, status, detail, None));
                }
            };
            return Ok(HostInfo {
                base,
                auth,
                checked: Instant::now(),
            });
        }
        Err(
            last_error.unwrap_or_else(|| RegistryError::InvalidResponse {
                registry: registry.to_string(),
                detail: "no URL scheme to try".into(),
            }),
        )
    }

    /// Sends an authenticated request; on 401 re-reads the challenge and retries once.
    async fn send(
        &self,
        op: &Op<'_>,
        method: Method,
        url: &Url,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut host = self.host(op).await?;
        let mut retried_auth = false;
        loop {
            let authorization = self.authorization(op, &host.auth).await?;
            let response = self
                .send_raw(op, true, || {
                    let mut request = self.inner.http.request(method.clone(), url.clone());
                    if let Some(value) = &authorization {
                        request = request.header(AUTHORIZATION, value.as_str());
                    }
                    if let Some(accept) = accept {
                        request = request.header(ACCEPT, accept);
                    }
                    request
                })
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenged = auth_from_challenges(response.headers());
            // Basic twice means the credentials are wrong: asking again would not help.
            let hopeless = host.auth == HostAuth::Basic && challenged == HostAuth::Basic;
            if retried_auth || hopeless || challenged == HostAuth::Anonymous {
                let (status, detail) = read_error(op, response).await;
                return Err(self.status_error(op, &method, url, status, detail, None));
            }
            retried_auth = true;
            if let HostAuth::Bearer { realm, service } = &host.auth {
                // The cached token was refused (expired early or revoked): drop it.
                self.lock()
                    .tokens
                    .remove(&token_key(op, realm, service.as_deref()));
            }
            host.auth = challenged;
            self.lock().hosts.insert(host_key(op.image), host.clone());
        }
    }

    /// Sends with retries: transient transport errors and retryable statuses back off
    /// exponentially, 429 waits `Retry-After` when given (bounded), all within the deadline.
    async fn send_raw(
        &self,
        op: &Op<'_>,
        retry: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let policy = &self.inner.settings.retry;
        let registry = op.image.registry();
        let mut attempt = 1u32;
        loop {
            let can_retry = retry && attempt < policy.max_attempts.max(1);
            let fits = |delay: Duration| Instant::now() + delay < op.deadline;
            let sent = build().send().await;
            if let Ok(response) = &sent {
                self.inner
                    .observer
                    .observe(response.url(), response.status());
            }
            match sent {
                Err(source) => {
                    let delay = policy.backoff(attempt);
                    if can_retry && is_transient(&source) && fits(delay) {
                        tokio::time::sleep(delay).await;
                    } else {
                        return Err(op.transport_error(source));
                    }
                }
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let delay = retry_after.unwrap_or_else(|| policy.backoff(attempt));
                    if can_retry && delay <= policy.max_retry_after && fits(delay) {
                        tokio::time::sleep(delay).await;
                    } else {
                        return Err(RegistryError::RateLimited {
                            registry: registry.to_string(),
                            retry_after,
                        });
                    }
                }
                Ok(response) if is_retryable_status(response.status().as_u16()) => {
                    let delay = policy.backoff(attempt);
                    if can_retry && fits(delay) {
                        tokio::time::sleep(delay).await;
                    } else {
                        return Ok(response);
                    }
                }
                Ok(response) => return Ok(response),
            }
            attempt += 1;
        }
    }

    fn status_error(
        &self,
        op: &Op<'_>,
        method: &Method,
        url: &Url,
        status: StatusCode,
        detail: String,
        what: Option<String>,
    ) -> RegistryError {
        let registry = op.image.registry().to_string();
        let repository = op.image.repository().to_string();
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                registry,
                repository,
                detail: format!("401 Unauthorized{detail}{}", credentials_hint(op)),
            },
            StatusCode::FORBIDDEN => RegistryError::Forbidden {
                registry,
                repository,
                detail,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry,
                what: what.unwrap_or_else(|| format!("repository {repository}")),
                detail,
            },
            _ => RegistryError::Status {
                method: method.to_string(),
                url: op.quote(url.as_str()),
                status: status.as_u16(),
                detail,
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn with_timeout<T>(
    image: &ImageReference,
    timeout: Duration,
    future: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or_else(|_| {
            Err(RegistryError::Timeout {
                registry: image.registry().to_string(),
                timeout,
            })
        })
}

fn host_key(image: &ImageReference) -> HostKey {
    (image.registry().to_string(), image.insecure())
}

fn content_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.contains(':'))
        .map(str::to_string)
}

/// Connect failures, resets and timeouts are worth retrying; TLS failures (a certificate
/// problem will not fix itself) and malformed requests are not.
fn is_transient(error: &reqwest::Error) -> bool {
    if error.is_builder() || error.is_redirect() || error.is_decode() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return false;
        }
        source = e.source();
    }
    true
}
