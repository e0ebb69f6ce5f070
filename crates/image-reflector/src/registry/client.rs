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

#[derive(Debug)]
struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// One operation: whose repository, with which credentials, until when, and every
/// credential sent for it so far (to scrub from whatever the registry answers).
struct Op<'a> {
    image: &'a ImageReference,
    credentials: Option<&'a Credentials>,
    deadline: Instant,
    sent: Mutex<Secrets>,
}

impl<'a> Op<'a> {
    fn new(
        image: &'a ImageReference,
        credentials: Option<&'a Credentials>,
        timeout: Duration,
        proxy_secrets: &Secrets,
    ) -> Self {
        let sent = credentials
            .map_or_else(Secrets::new, |c| {
                Secrets::new().with_basic(&c.username, &c.password)
            })
            .merge(proxy_secrets);
        Self {
            image,
            credentials,
            deadline: Instant::now() + timeout,
            sent: Mutex::new(sent),
        }
    }

    fn registry(&self) -> String {
        self.image.registry().to_string()
    }

    /// Remembers a token sent (in a `Bearer` header) for this operation.
    fn sent_token(&self, token: &str) {
        let mut sent = self.secrets();
        *sent = std::mem::take(&mut *sent).with_token(token);
    }

    /// The one way registry-provided text enters a message: every credential sent for this
    /// operation, in any form, is replaced by `[redacted]`.
    fn quote(&self, remote_text: &str) -> String {
        self.secrets().scrub(remote_text)
    }

    /// [`Op::quote`] for text cut at a length limit (it may end in part of a credential).
    fn quote_cut(&self, remote_text: &str) -> String {
        self.secrets().scrub_cut(remote_text)
    }

    fn secrets(&self) -> std::sync::MutexGuard<'_, Secrets> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A transport error, without its URL when the URL (which may come from the registry:
    /// a `Link` or a redirect) holds a credential.
    fn transport_error(&self, source: reqwest::Error) -> RegistryError {
        let leaks = source
            .url()
            .is_some_and(|url| self.secrets().leaks_in(url.as_str()));
        RegistryError::Transport {
            registry: self.registry(),
            source: if leaks { source.without_url() } else { source },
        }
    }

    fn invalid_response(&self, remote_text: &str) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry(),
            detail: self.quote(remote_text),
        }
    }

    /// The body of a successful response, read chunk by chunk and given up on as soon as it
    /// passes `limit` bytes (before reading at all when `Content-Length` says so).
    async fn read_capped(
        &self,
        mut response: Response,
        kind: BodyKind,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::BodyTooLarge {
            registry: self.registry(),
            kind,
            limit,
        };
        let announced = response.content_length();
        if announced.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let initial = announced.map_or(8 * 1024, |len| usize::try_from(len).unwrap_or(limit));
        let mut body = Vec::with_capacity(initial.min(limit));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| self.transport_error(source))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Why a `tags/list` page was not taken.
#[derive(Debug)]
enum PageError {
    /// More tags than the budget left for the scan.
    OverBudget,
    Json(serde_json::Error),
}

/// Reads `{"tags": [..]}` (other keys ignored, `null` or no `tags` meaning none) into
/// `tags`, failing as soon as more than `budget` tags were read.
struct TagsPageSeed<'t> {
    tags: &'t mut Vec<String>,
    budget: usize,
}

impl TagsPageSeed<'_> {
    fn parse(self, body: &[u8]) -> Result<(), PageError> {
        let over = std::cell::Cell::new(false);
        let mut json = serde_json::Deserializer::from_slice(body);
        let seed = PageVisitor {
            tags: self.tags,
            budget: self.budget,
            over: &over,
        };
        let parsed =
            serde::de::DeserializeSeed::deserialize(seed, &mut json).and_then(|()| json.end());
        match parsed {
            Ok(()) => Ok(()),
            Err(_) if over.get() => Err(PageError::OverBudget),
            Err(e) => Err(PageError::Json(e)),
        }
    }
}

struct PageVisitor<'t, 'o> {
    tags: &'t mut Vec<String>,
    budget: usize,
    over: &'o std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for PageVisitor<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PageVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with a tags array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut list = Some(TagListSeed {
            tags: self.tags,
            budget: self.budget,
            over: self.over,
        });
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), list.take()) {
                ("tags", Some(seed)) => map.next_value_seed(seed)?,
                (_, unused) => {
                    list = unused;
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct TagListSeed<'t, 'o> {
    tags: &'t mut Vec<String>,
    budget: usize,
    over: &'o std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TagListSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TagListSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of tags or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut read = 0usize;
        while let Some(tag) = seq.next_element::<String>()? {
            if read >= self.budget {
                self.over.set(true);
                return Err(serde::de::Error::custom("more tags than the scan's budget"));
            }
            self.tags.push(tag);
            read += 1;
        }
        Ok(())
    }
}

/// Parses one `tags/list` answer as a scan does, reading at most `budget` tags; `None` when
/// the answer is not a tag list or holds more tags than that (public for the fuzz targets).
pub fn parse_tags_page(body: &[u8], budget: usize) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    TagsPageSeed {
        tags: &mut tags,
        budget,
    }
    .parse(body)
    .ok()
    .map(|()| tags)
}

/// A token endpoint's answer (public for the fuzz targets).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
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

    /// The `Authorization` value for the host's auth scheme (None: anonymous).
    async fn authorization(
        &self,
        op: &Op<'_>,
        auth: &HostAuth,
    ) -> Result<Option<String>, RegistryError> {
        match auth {
            HostAuth::Anonymous => Ok(None),
            HostAuth::Basic => Ok(op.credentials.map(basic_header)),
            HostAuth::Bearer { realm, service } => {
                let token = self.token(op, realm, service.as_deref()).await?;
                op.sent_token(&token);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn token(
        &self,
        op: &Op<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, RegistryError> {
        let key = token_key(op, realm, service);
        if let Some(cached) = self.lock().tokens.get(&key)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let registry = op.image.registry();
        let mut url = Url::parse(realm)
            .map_err(|_| op.invalid_response("the Bearer challenge's realm is not a URL"))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &key.2);
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let response = self
            .send_raw(op, true, || {
                let request = self.inner.http.get(url.clone());
                match op.credentials {
                    Some(c) => request.basic_auth(&c.username, Some(&c.password)),
                    None => request,
                }
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            let (status, detail) = read_error(op, response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    repository: op.image.repository().to_string(),
                    detail: format!(
                        "the token service at {} answered {status}{}{}",
                        op.quote(&url.origin().ascii_serialization()),
                        detail,
                        credentials_hint(op)
                    ),
                },
                _ => self.status_error(op, &Method::GET, &url, status, detail, None),
            });
        }
        let received = Instant::now();
        let body = op
            .read_capped(response, BodyKind::TokenResponse, MAX_TOKEN_RESPONSE_BYTES)
            .await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            op.invalid_response("the token service's answer is not a token response")
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::InvalidResponse {
                registry: registry.to_string(),
                detail: "the token service answered without a token".into(),
            })?;
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
                Duration::from_secs(s.min(MAX_TOKEN_LIFETIME_SECS))
            });
        // Refresh early so a token never expires between our check and the registry's.
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        self.lock().tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at: received + lifetime - margin,
            },
        );
        Ok(token)
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

fn token_key(op: &Op<'_>, realm: &str, service: Option<&str>) -> TokenKey {
    (
        realm.to_string(),
        service.unwrap_or_default().to_string(),
        format!("repository:{}:pull", op.image.repository()),
        op.credentials.map(fingerprint).unwrap_or_default(),
    )
}

/// Tells tokens of different credentials apart without keeping the password as a key.
fn fingerprint(credentials: &Credentials) -> String {
    let mut hash = Sha256::new();
    hash.update(credentials.username.as_bytes());
    hash.update([0]);
    hash.update(credentials.password.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

fn basic_header(credentials: &Credentials) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn credentials_hint(op: &Op<'_>) -> &'static str {
    if op.credentials.is_some() {
        " (check the credentials for this registry)"
    } else {
        " (no credentials matched this registry: set spec.secretRef or imagePullSecrets)"
    }
}

fn auth_from_challenges(headers: &HeaderMap) -> HostAuth {
    let challenges: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    match preferred(&challenges) {
        Some(Challenge::Bearer { realm, service, .. }) => HostAuth::Bearer { realm, service },
        Some(Challenge::Basic) => HostAuth::Basic,
        // A 401 without a usable challenge: Basic is the only thing left to try.
        _ if challenges.is_empty() => HostAuth::Basic,
        _ => HostAuth::Anonymous,
    }
}

fn content_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.contains(':'))
        .map(str::to_string)
}

/// The status and a short description from the registry's error body
/// (`{"errors":[{"code":..,"message":..}]}`), as `" (CODE: message)"` or `""`. At most
/// [`ERROR_BODY_LIMIT`] bytes are read; the text is quoted through [`Op::quote`] before it
/// is shortened, so a cut never leaves part of a credential behind.
async fn read_error(op: &Op<'_>, mut response: Response) -> (StatusCode, String) {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status();
    let mut body = Vec::new();
    // A body that fails midway still has a useful start.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    let text = match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) => errors
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    // Control characters become spaces before scrubbing: removing them afterwards could
    // join the pieces of a secret.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let quoted = if body.len() >= ERROR_BODY_LIMIT {
        op.quote_cut(&text)
    } else {
        op.quote(&text)
    };
    let detail = quoted
        .chars()
        .take(ERROR_DETAIL_CHARS)
        .collect::<String>()
        .trim()
        .to_string();
    if detail.is_empty() {
        (status, String::new())
    } else {
        (status, format!(" ({detail})"))
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str, budget: usize) -> Result<Vec<String>, PageError> {
        let mut tags = vec!["earlier".to_string()];
        TagsPageSeed {
            tags: &mut tags,
            budget,
        }
        .parse(body.as_bytes())?;
        Ok(tags)
    }

    #[test]
    fn page_shapes() {
        assert_eq!(parse(r#"{"tags":null}"#, 5).unwrap(), ["earlier"]);
        assert_eq!(parse(r#"{"name":"x"}"#, 5).unwrap(), ["earlier"]);
        assert_eq!(
            parse(r#"{"name":"x","tags":["a","b"],"extra":{"k":[1]}}"#, 5).unwrap(),
            ["earlier", "a", "b"]
        );
        assert!(matches!(
            parse(r#"{"tags":["a","b","c"]}"#, 2),
            Err(PageError::OverBudget)
        ));
        for bad in [r#"{"tags":[1]}"#, r#"["a"]"#, r#"{"tags":["a"]} x"#, "{"] {
            assert!(matches!(parse(bad, 5), Err(PageError::Json(_))), "{bad}");
        }
    }

    proptest! {
        /// Within the budget, the streaming parser reads what `serde_json` reads; over it,
        /// it stops with `OverBudget`.
        #[test]
        fn agrees_with_serde(
            name in "[a-z/]{0,10}",
            tags in proptest::collection::vec("[ -~]{0,12}", 0..40),
            budget in 0usize..50,
        ) {
            let body = serde_json::json!({"name": name, "tags": tags}).to_string();
            match parse(&body, budget) {
                Ok(parsed) => {
                    prop_assert!(tags.len() <= budget);
                    prop_assert_eq!(&parsed[1..], &tags[..]);
                }
                Err(PageError::OverBudget) => prop_assert!(tags.len() > budget),
                Err(PageError::Json(e)) => prop_assert!(false, "{}", e),
            }
        }
    }
}
