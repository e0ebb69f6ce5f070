//! The read-only HTTP API (axum): repositories, tags, policy results, the policy change
//! feed, `/metrics`, `/healthz`, `/readyz` and the OpenAPI document. docs/http-api.md
//! describes every endpoint.
//!
//! Handlers read [`ApiState`] (short lock-protected map reads, never across an await) and
//! the tag store (on the blocking pool), so the API keeps answering while scans run.
//! Only the leader scans and has tags: a follower forwards `/tags` to it.

pub mod openapi;
pub use kube_support::selector;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api_types::http_api::{ApiError, ImagePolicyInfo, PolicyEvent, TagPage};
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use tokio::sync::broadcast::error::RecvError;

use crate::metrics::Metrics;
use crate::state::{ApiState, LeaderInfo};
use crate::store::{RepoKey, StoreError};
use selector::LabelSelector;

/// Tags per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page; a larger `limit` is a 400, as the OpenAPI document declares.
pub const MAX_LIMIT: usize = 1000;
/// Requests with a larger body are refused (the API takes no bodies).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Time to produce a response head; the feed's body streams beyond it.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a follower's forwarded `/tags` request to the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Comment lines on an idle feed, so proxies keep the connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Marks a request forwarded by a follower; a non-leader receiving one answers 503
/// instead of forwarding again (no loops while leadership moves).
pub const FORWARDED_HEADER: &str = "x-image-reflector-forwarded";

/// An error response: `ApiError` JSON with the HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {reason}: {message}")]
pub struct HttpError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    fn body(&self) -> ApiError {
        ApiError {
            code: self.status.as_u16(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[derive(Clone)]
struct App {
    state: ApiState,
    metrics: Metrics,
    /// For forwarding `/tags` to the leader; `None` if the client could not be built
    /// (forwarding then answers 503 with the reason).
    http: Result<reqwest::Client, Arc<str>>,
}

/// The API's routes over `state`, with `/metrics` from `metrics`.
pub fn router(state: ApiState, metrics: Metrics) -> Router {
    let http = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        // Below the leader's idle keep-alive timeout, so a forward never races its close.
        .pool_idle_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Arc::from(format!("cannot build the HTTP client: {e}")));
    let app = App {
        state,
        metrics,
        http,
    };
    Router::new()
        .route("/api/v1/imagerepositories", get(list_repositories))
        .route(
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}",
            get(get_repository),
        )
        .route(
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}/tags",
            get(list_tags),
        )
        .route("/api/v1/imagepolicies", get(list_policies))
        .route(
            "/api/v1/namespaces/{namespace}/imagepolicies/{name}",
            get(get_policy),
        )
        .route("/api/v1/openapi.json", get(openapi_document))
        .merge(kube_support::admin::routes(app.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(limits))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then ends open feeds
/// and drains the other requests. Header-read (and idle keep-alive) timeout, connection
/// cap and drain bound: [`kube_support::http::ServerLimits::default`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closer = state.clone();
    kube_support::http::serve(
        listener,
        router(state, metrics),
        kube_support::http::ServerLimits::default(),
        async move {
            shutdown.await;
            closer.close_feeds();
        },
    )
    .await
}

/// Request size and handler time limits.
async fn limits(request: Request, next: Next) -> Response {
    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    if too_large {
        return HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    // Bounds the time to the response head only: the feed's stream is not cut.
    match tokio::time::timeout(HANDLER_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => HttpError::unavailable(
            "Timeout",
            format!(
                "the request took longer than {}s",
                HANDLER_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query(q: QueryMap) -> Result<HashMap<String, String>, HttpError> {
    q.map(|Query(map)| map)
        .map_err(|e| HttpError::bad_request(format!("invalid query string: {e}")))
}

fn non_empty<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

async fn not_found() -> HttpError {
    HttpError::not_found("no such endpoint; see /api/v1/openapi.json")
}

async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the API is read-only: only GET (and HEAD) are allowed",
    )
}

/// `/readyz` and `/metrics` on the kit's admin routes, with the API's JSON errors.
impl kube_support::admin::Probes for App {
    fn readyz(&self) -> Response {
        if self.state.is_ready() {
            return "ok".into_response();
        }
        HttpError::unavailable(
            "NotReady",
            "the first sync of ImageRepositories and ImagePolicies has not finished",
        )
        .into_response()
    }

    fn metrics(&self) -> Response {
        match self.metrics.encode_text() {
            Ok(text) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                )],
                text,
            )
                .into_response(),
            Err(e) => HttpError::internal(format!("encoding metrics: {e}")).into_response(),
        }
    }
}

async fn openapi_document() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn list_repositories(State(app): State<App>) -> Response {
    Json(app.state.repositories()).into_response()
}

type ObjectPath = Path<(String, String)>;

async fn get_repository(
    State(app): State<App>,
    Path(key): ObjectPath,
) -> Result<Response, HttpError> {
    found(
        "ImageRepository",
        &key,
        app.state.repository(&key.0, &key.1),
    )
}

async fn get_policy(State(app): State<App>, Path(key): ObjectPath) -> Result<Response, HttpError> {
    found("ImagePolicy", &key, app.state.policy(&key.0, &key.1))
}

/// The object as JSON, or a 404 naming `kind` `namespace/name`.
fn found<T: serde::Serialize>(
    kind: &str,
    (namespace, name): &(String, String),
    object: Option<T>,
) -> Result<Response, HttpError> {
    object
        .map(|o| Json(o).into_response())
        .ok_or_else(|| HttpError::not_found(format!("{kind} {namespace}/{name} not found")))
}

fn parse_limit(raw: Option<&str>) -> Result<usize, HttpError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => Ok(n),
            _ => Err(HttpError::bad_request(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}, got '{}'",
                quote(raw)
            ))),
        },
    }
}

async fn list_tags(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    q: QueryMap,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    let limit = parse_limit(non_empty(&q, "limit"))?;
    let token = non_empty(&q, "continue").map(str::to_string);
    let leader = app.state.leader();
    if !leader.is_leader {
        return forward_tags(&app, &leader, &namespace, &name, &q, &headers).await;
    }
    let store = app.state.store();
    let key = RepoKey::new(namespace.clone(), name.clone());
    // The store is synchronous (redb): keep it off the async workers.
    let page = tokio::task::spawn_blocking(move || store.get_page(&key, token.as_deref(), limit))
        .await
        .map_err(|e| HttpError::internal(format!("reading the tag store: {e}")))?;
    match page {
        Ok(Some(page)) => Ok(Json(TagPage {
            namespace,
            name,
            revision: page.revision,
            total: page.total,
            tags: page.tags,
            continue_token: page.continue_token,
        })
        .into_response()),
        Ok(None) | Err(StoreError::InvalidKey { .. }) => Err(HttpError::not_found(format!(
            "no tags stored for ImageRepository {namespace}/{name}: it does not exist or has not been scanned yet"
        ))),
        Err(e @ StoreError::InvalidContinue) => Err(HttpError::bad_request(e.to_string())),
        Err(e @ StoreError::ContinueExpired) => {
            Err(HttpError::new(StatusCode::GONE, "Expired", e.to_string()))
        }
        Err(e) => Err(HttpError::internal(e.to_string())),
    }
}

/// A follower asks the leader (which has the tags) and relays its answer verbatim.
async fn forward_tags(
    app: &App,
    leader: &LeaderInfo,
    namespace: &str,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    if headers.contains_key(FORWARDED_HEADER) {
        return Err(HttpError::unavailable(
            "LeaderUnavailable",
            "this replica was asked as the leader but is not (leadership is moving); retry shortly",
        ));
    }
    let base = leader.leader_url.as_deref().ok_or_else(|| {
        HttpError::unavailable(
            "LeaderUnknown",
            "tags are served by the leader, which is not known yet; retry shortly",
        )
    })?;
    let client = app
        .http
        .as_ref()
        .map_err(|e| HttpError::unavailable("LeaderUnavailable", e.to_string()))?;
    let mut url = reqwest::Url::parse(base).map_err(|e| {
        HttpError::unavailable(
            "LeaderUnknown",
            format!("the leader's URL '{base}' is invalid: {e}"),
        )
    })?;
    url.path_segments_mut()
        .map_err(|()| {
            HttpError::unavailable(
                "LeaderUnknown",
                format!("the leader's URL '{base}' cannot be a base"),
            )
        })?
        .pop_if_empty()
        .extend([
            "api",
            "v1",
            "namespaces",
            namespace,
            "imagerepositories",
            name,
            "tags",
        ]);
    {
        let mut pairs = url.query_pairs_mut();
        for key in ["limit", "continue"] {
            if let Some(value) = non_empty(q, key) {
                pairs.append_pair(key, value);
            }
        }
    }
    url.set_query(
        url.query()
            .filter(|q| !q.is_empty())
            .map(str::to_string)
            .as_deref(),
    );
    let unreachable = |e: reqwest::Error| {
        HttpError::new(
            StatusCode::BAD_GATEWAY,
            "LeaderUnreachable",
            format!("forwarding to the leader at {base} failed: {e}"),
        )
    };
    let response = client
        .get(url)
        .header(FORWARDED_HEADER, "1")
        .send()
        .await
        .map_err(unreachable)?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let body = response.bytes().await.map_err(unreachable)?;
    Ok((status, [(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn list_policies(
    State(app): State<App>,
    q: QueryMap,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    let selector: LabelSelector = non_empty(&q, "labelSelector")
        .unwrap_or_default()
        .parse()
        .map_err(|e: selector::SelectorError| {
            HttpError::bad_request(format!("labelSelector: {e}"))
        })?;
    let namespace = non_empty(&q, "namespace").map(str::to_string);
    let filter = move |p: &ImagePolicyInfo| {
        namespace.as_ref().is_none_or(|ns| &p.namespace == ns) && selector.matches(&p.labels)
    };
    let watch = match non_empty(&q, "watch") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "watch must be true or false, got '{}'",
                quote(other)
            )));
        }
    };
    // Both checked with or without watch, so a request is refused exactly when the
    // OpenAPI document says a value is invalid.
    let resource_version = parse_version("resourceVersion", non_empty(&q, "resourceVersion"))?;
    let last_event_id = parse_version(
        "Last-Event-ID",
        headers
            .get("last-event-id")
            .map(|v| v.to_str().unwrap_or("(not text)"))
            .filter(|v| !v.is_empty()),
    )?;
    if !watch {
        return Ok(Json(app.state.policies(filter)).into_response());
    }
    // `resourceVersion`, or `Last-Event-ID` when an EventSource reconnects by itself.
    // "0" means "from any point", as in Kubernetes: start with the current state.
    let from = resource_version.or(last_event_id).filter(|v| *v != 0);
    Ok(feed(&app.state, from, filter)?.into_response())
}

/// The digits of a resource version: at most [`openapi::MAX_VERSION_DIGITS`], so every
/// value the document allows fits in a `u64`.
fn parse_version(name: &str, raw: Option<&str>) -> Result<Option<u64>, HttpError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let valid = !raw.is_empty()
        && raw.len() <= openapi::MAX_VERSION_DIGITS
        && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Ok(version) if valid => Ok(Some(version)),
        _ => Err(HttpError::bad_request(format!(
            "{name} must be a decimal number of 1 to {} digits, got '{}'",
            openapi::MAX_VERSION_DIGITS,
            quote(raw)
        ))),
    }
}

/// A client's value for an error message: at most 100 characters, control characters
/// escaped.
fn quote(raw: &str) -> String {
    let mut out: String = raw.chars().take(100).flat_map(char::escape_debug).collect();
    if raw.chars().nth(100).is_some() {
        out.push_str("...");
    }
    out
}

fn sse_event(event: &PolicyEvent) -> Event {
    let data = serde_json::to_string(event).unwrap_or_default();
    Event::default()
        .id(event.resource_version.clone())
        .data(data)
}

/// The change feed (Server-Sent Events): the backlog, then live events, filtered.
fn feed<F>(
    state: &ApiState,
    from: Option<u64>,
    filter: F,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>> + use<F>>, HttpError>
where
    F: Fn(&ImagePolicyInfo) -> bool + Send + Sync + 'static,
{
    let subscription = state
        .subscribe(from)
        .map_err(|e| HttpError::new(StatusCode::GONE, "Expired", e.to_string()))?;
    let filter = Arc::new(filter);
    let backlog: Vec<Result<Event, Infallible>> = subscription
        .backlog
        .iter()
        .filter(|e| filter(&e.policy))
        .map(|e| Ok(sse_event(e)))
        .collect();
    let live_state = (subscription.receiver, state.feeds_closed(), filter, false);
    let live = futures::stream::unfold(
        live_state,
        |(mut receiver, mut closed, filter, done)| async move {
            if done {
                return None;
            }
            loop {
                if *closed.borrow_and_update() {
                    return None;
                }
                tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(event) if filter(&event.policy) => {
                            return Some((Ok(sse_event(&event)), (receiver, closed, filter, false)));
                        }
                        Ok(_) => {}
                        Err(RecvError::Lagged(missed)) => {
                            // The watcher is behind the retained history: tell it to
                            // re-list, then end the stream.
                            let error = HttpError::new(
                                StatusCode::GONE,
                                "Expired",
                                format!("the watcher fell {missed} events behind; list again and watch from the list's resourceVersion"),
                            );
                            let data = serde_json::to_string(&error.body()).unwrap_or_default();
                            let event = Event::default().event("error").data(data);
                            return Some((Ok(event), (receiver, closed, filter, true)));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    changed = closed.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                }
            }
        },
    );
    let stream = futures::stream::iter(backlog).chain(live);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_clamps_and_rejects() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("5")).unwrap(), 5);
        assert_eq!(parse_limit(Some("1000")).unwrap(), MAX_LIMIT);
        assert!(parse_limit(Some("1001")).is_err());
        assert!(parse_limit(Some("5000")).is_err());
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("-1")).is_err());
        assert!(parse_limit(Some("ten")).is_err());
    }
}
