//! A client of image-reflector's HTTP API (`docs/http-api.md`): the policy list and the
//! Server-Sent Events change feed.
//!
//! - [`ReflectorClient::list_policies`]: `GET /api/v1/imagepolicies?namespace=NS[&labelSelector=S]`.
//! - [`ReflectorClient::follow`]: lists once for a resource version, then follows
//!   `?watch=true&resourceVersion=N`, reporting every event; reconnects with backoff from the
//!   last event id, and on `410 Expired` lists again and reports a [`FeedEvent::Resync`]
//!   (events may have been missed).

use std::time::Duration;

use api_types::http_api::{API_PREFIX, ApiError, ImagePolicyInfo, List, PolicyEvent};

/// Per-request timeout of list calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The server sends a comment every 15 s on an idle stream; silence longer than this means
/// the connection is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why policy results could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReflectorError {
    /// Connection refused, DNS, timeout, a 5xx: the reflector is not (yet) there.
    #[error("image-reflector at {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// The reflector refused the request (a 4xx other than 410).
    #[error("image-reflector rejected {url}: {code} {reason}: {message}")]
    Rejected {
        url: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// The resource version is too old (410): list again.
    #[error("image-reflector: resource version expired: {0}")]
    Expired(String),
    /// A response that is not the documented JSON.
    #[error("invalid response from image-reflector at {url}: {detail}")]
    Invalid { url: String, detail: String },
}

impl ReflectorError {
    /// True when the request itself is wrong (e.g. a label selector the reflector rejects);
    /// retrying cannot help.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::Rejected { code: 400, .. })
    }
}

/// What the change feed reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// One policy result changed.
    Changed(Box<PolicyEvent>),
    /// Events may have been missed (expired version, reconnect after a restart): treat
    /// every namespace as changed.
    Resync,
}

/// The reflector's HTTP API at a base URL such as `http://image-reflector:8080`.
#[derive(Debug, Clone)]
pub struct ReflectorClient {
    base: String,
    http: reqwest::Client,
    stream: reqwest::Client,
}

/// Below the server's idle keep-alive timeout ([`kube_support::http::HEADER_READ_TIMEOUT`]).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

impl ReflectorClient {
    /// A client for `base` (trailing slashes ignored).
    pub fn new(base: &str) -> Result<Self, ReflectorError> {
        let base = base.trim_end_matches('/').to_owned();
        let build = |timeout: Option<Duration>| {
            // Idle connections are dropped before the reflector's server closes them
            // (10 s, kube_support::http), so a request never races that close.
            let mut b = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(POOL_IDLE_TIMEOUT);
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| ReflectorError::Invalid {
                url: base.clone(),
                detail: e.to_string(),
            })
        };
        Ok(Self {
            http: build(Some(REQUEST_TIMEOUT))?,
            stream: build(None)?,
            base,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn policies_url(&self) -> String {
        format!("{}{API_PREFIX}/imagepolicies", self.base)
    }

    /// The policies of `namespace` (all namespaces with `None`) matching `label_selector`
    /// (Kubernetes syntax), with the list's resource version.
    pub async fn list_policies(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<List<ImagePolicyInfo>, ReflectorError> {
        let url = self.policies_url();
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        if let Some(sel) = label_selector.filter(|s| !s.is_empty()) {
            query.push(("labelSelector", sel));
        }
        let response = self
            .http
            .get(&url)
            .query(&query)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let response = check_status(&url, response).await?;
        response
            .json::<List<ImagePolicyInfo>>()
            .await
            .map_err(|e| ReflectorError::Invalid {
                url,
                detail: e.to_string(),
            })
    }

    /// Follows the change feed of `namespace` (all with `None`) forever, calling `on_event`
    /// for every event. Errors are retried with backoff; `on_error` hears about them.
    pub async fn follow(
        &self,
        namespace: Option<&str>,
        mut on_event: impl FnMut(FeedEvent),
        mut on_error: impl FnMut(&ReflectorError),
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut version: Option<String> = None;
        loop {
            if version.is_none() {
                match self.list_policies(namespace, None).await {
                    Ok(list) => {
                        version = list.resource_version;
                        // We may have missed changes while not watching.
                        on_event(FeedEvent::Resync);
                    }
                    Err(e) => {
                        on_error(&e);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            match self
                .watch_once(namespace, &mut version, &mut on_event, &mut backoff)
                .await
            {
                Ok(()) => {}
                Err(ReflectorError::Expired(_)) => {
                    version = None;
                    continue;
                }
                Err(e) => on_error(&e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection of the feed, until it ends. Updates `version` with every event id and
    /// resets `backoff` once connected.
    async fn watch_once(
        &self,
        namespace: Option<&str>,
        version: &mut Option<String>,
        on_event: &mut impl FnMut(FeedEvent),
        backoff: &mut Duration,
    ) -> Result<(), ReflectorError> {
        let url = self.policies_url();
        let mut query: Vec<(&str, &str)> = vec![("watch", "true")];
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        if let Some(v) = version.as_deref() {
            query.push(("resourceVersion", v));
        }
        let response = self
            .stream
            .get(&url)
            .query(&query)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let mut response = check_status(&url, response).await?;
        *backoff = BACKOFF_MIN;
        let mut parser = SseParser::default();
        loop {
            let chunk = tokio::time::timeout(IDLE_TIMEOUT, response.chunk())
                .await
                .map_err(|_| ReflectorError::Unreachable {
                    url: url.clone(),
                    detail: "change feed silent for too long".into(),
                })?
                .map_err(|e| unreachable(&url, &e))?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            for message in parser.push(&chunk) {
                if let Some(id) = &message.id {
                    *version = Some(id.clone());
                }
                match message.event.as_deref() {
                    Some("error") => {
                        let err: Option<ApiError> = serde_json::from_str(&message.data).ok();
                        return Err(match err {
                            Some(e) if e.code == 410 => ReflectorError::Expired(e.message),
                            Some(e) => ReflectorError::Rejected {
                                url: url.clone(),
                                code: e.code,
                                reason: e.reason,
                                message: e.message,
                            },
                            None => ReflectorError::Invalid {
                                url: url.clone(),
                                detail: format!("error event: {}", message.data),
                            },
                        });
                    }
                    _ if message.data.is_empty() => {}
                    _ => {
                        let event: PolicyEvent =
                            serde_json::from_str(&message.data).map_err(|e| {
                                ReflectorError::Invalid {
                                    url: url.clone(),
                                    detail: format!("event: {e}"),
                                }
                            })?;
                        *version = Some(event.resource_version.clone());
                        on_event(FeedEvent::Changed(Box::new(event)));
                    }
                }
            }
        }
    }
}

fn unreachable(url: &str, err: &reqwest::Error) -> ReflectorError {
    // reqwest's Display omits the cause ("error sending request"); add the chain.
    ReflectorError::Unreachable {
        url: url.to_owned(),
        detail: error_chain(err),
    }
}

/// `err` and its causes joined by `: `, skipping a cause whose text is already there
/// (thiserror messages often embed their direct source).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

async fn check_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, ReflectorError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let api: Option<ApiError> = serde_json::from_str(&body).ok();
    let (reason, message) = match api {
        Some(e) => (e.reason, e.message),
        None => (
            status.canonical_reason().unwrap_or("").to_owned(),
            body.chars().take(200).collect(),
        ),
    };
    if status.as_u16() == 410 {
        return Err(ReflectorError::Expired(message));
    }
    if status.is_server_error() || status.as_u16() == 404 {
        return Err(ReflectorError::Unreachable {
            url: url.to_owned(),
            detail: format!("HTTP {status}: {message}"),
        });
    }
    Err(ReflectorError::Rejected {
        url: url.to_owned(),
        code: status.as_u16(),
        reason,
        message,
    })
}

/// One Server-Sent Events message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SseMessage {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An incremental SSE parser (the subset the reflector sends: `id`, `event`, `data`,
/// comments; LF or CRLF line ends).
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let message = std::mem::take(&mut self.current);
                if self.has_data || message.event.is_some() || message.id.is_some() {
                    out.push(message);
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_messages_and_comments() {
        let mut p = SseParser::default();
        assert!(p.push(b":\n\nid: 7\r\nda").is_empty());
        let out = p.push(b"ta: {\"a\":1}\r\n\r\nevent: error\ndata: x\n\n");
        assert_eq!(
            out,
            vec![
                SseMessage {
                    id: Some("7".into()),
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: None,
                    event: Some("error".into()),
                    data: "x".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn unreachable_is_typed() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = ReflectorClient::new(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = c.list_policies(Some("ns"), None).await.unwrap_err();
        assert!(matches!(err, ReflectorError::Unreachable { .. }), "{err:?}");
    }
}
