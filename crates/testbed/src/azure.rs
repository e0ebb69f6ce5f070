//! Local stand-ins for what `provider: azure` talks to, in front of the testbed's real
//! registry:
//!
//! - [`EntraFake`]: Entra ID's `POST /<tenant>/oauth2/v2.0/token` (workload identity: client
//!   credentials with the federated token as the client assertion). It checks the tenant,
//!   grant type, client ID, assertion type, the assertion itself and that ACR's scope is
//!   asked for, and answers an access token, or refuses as Entra does (`AADSTS…`).
//! - [`AcrFront`]: an HTTPS server for `<name>.azurecr.io` (certificate from a test CA) that
//!   speaks ACR's `POST /oauth2/exchange` (Entra token -> refresh token, a JWT whose `exp`
//!   the client reads) and `GET /oauth2/token` (Basic
//!   `00000000-0000-0000-0000-000000000000:<refresh token>` -> registry access token), and
//!   forwards `/v2/` to the real docker-registry in token mode. The registry's Bearer
//!   challenge is rewritten to name ACR's realm (`https://<name>.azurecr.io/oauth2/token`)
//!   and service (`<name>.azurecr.io`), as ACR's does; the access token itself is signed by
//!   the registry's own token issuer, so the registry checks it for real. An expired refresh
//!   token is refused with 401, as ACR refuses it.
//!
//! A client reaches `<name>.azurecr.io` through [`crate::mapping_proxy::MappingProxy`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{Error, IoContext, Result};
use crate::registry::{Registry, TOKEN_SERVICE};
use crate::tls::Certificates;

/// ACR's scope in every public cloud (what the Entra call must ask for).
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The registry username that goes with an ACR refresh token.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The most a forwarded request or response body may hold (tag lists, manifests).
const MAX_BODY: usize = 16 * 1024 * 1024;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

async fn bind() -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context(|| "binding a fake's listener".into())?;
    let addr = listener
        .local_addr()
        .context(|| "a fake's address".into())?;
    Ok((listener, addr))
}

/// What [`EntraFake`] accepts.
#[derive(Debug, Clone)]
pub struct EntraOptions {
    pub tenant_id: String,
    pub client_id: String,
    /// The federated token (the file `AZURE_FEDERATED_TOKEN_FILE` names), sent as the
    /// client assertion.
    pub assertion: String,
    /// The access token handed out (what [`AcrOptions::access_token`] must be).
    pub access_token: String,
    /// Refuse every request with this `AADSTS…` description (HTTP 401 `invalid_client`), as
    /// Entra does when no federated credential matches.
    pub deny: Option<String>,
}

/// A running Entra ID token endpoint; stops on drop.
#[derive(Debug)]
pub struct EntraFake {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for EntraFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EntraFake {
    pub async fn start(options: EntraOptions) -> Result<Self> {
        let (listener, addr) = bind().await?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let options = Arc::new(options);
        let app = axum::Router::new().route(
            "/{tenant}/oauth2/v2.0/token",
            post(move |UrlPath(tenant): UrlPath<String>, body: String| {
                counter.fetch_add(1, Ordering::SeqCst);
                let options = options.clone();
                async move { entra_token(&options, &tenant, &body) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            requests,
            task,
        })
    }

    /// `http://127.0.0.1:<port>/`: the `AZURE_AUTHORITY_HOST`.
    pub fn authority_host(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Token requests received, refused ones included.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn entra_token(options: &EntraOptions, tenant: &str, body: &str) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if tenant != options.tenant_id {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let wrong = if field("grant_type") != "client_credentials" {
        Some("grant_type must be client_credentials")
    } else if field("client_id") != options.client_id {
        Some("client_id is not the application's")
    } else if field("client_assertion_type") != CLIENT_ASSERTION_TYPE {
        Some("client_assertion_type must be jwt-bearer")
    } else if field("client_assertion") != options.assertion.trim() {
        Some("client_assertion is not the federated token")
    } else if !field("scope").split(' ').any(|s| s == ACR_SCOPE) {
        Some("scope does not ask for the container registry")
    } else {
        None
    };
    if let Some(wrong) = wrong {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS900144: {wrong}"),
        );
    }
    if let Some(deny) = &options.deny {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_client", deny);
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": options.access_token,
        })
        .to_string(),
    )
        .into_response()
}

/// What [`AcrFront`] accepts and hands out.
#[derive(Debug, Clone)]
pub struct AcrOptions {
    /// `<name>.azurecr.io`: the certificate's name and the `service` the exchange expects.
    pub host: String,
    /// The Entra access token the exchange accepts.
    pub access_token: String,
    /// The validity of the refresh token the n-th exchange hands out, in seconds (the last
    /// one from then on); negative: already expired.
    pub refresh_lifetimes: Vec<i64>,
}

#[derive(Debug, Default)]
struct AcrCounters {
    exchanges: AtomicUsize,
    token_requests: AtomicUsize,
    refused_tokens: AtomicUsize,
    forwarded: AtomicUsize,
}

#[derive(Debug)]
struct AcrState {
    options: AcrOptions,
    counters: AcrCounters,
    /// Refresh token -> its `exp`.
    issued: Mutex<BTreeMap<String, i64>>,
    registry_base: String,
    registry_realm: String,
    registry_user: String,
    registry_password: String,
    http: reqwest::Client,
}

/// A running ACR stand-in over HTTPS on a loopback port; stops on drop.
#[derive(Debug)]
pub struct AcrFront {
    addr: SocketAddr,
    state: Arc<AcrState>,
    certs: Certificates,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for AcrFront {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AcrFront {
    /// Starts in front of `registry`, which must run in token mode.
    pub async fn start(registry: &Registry, options: AcrOptions) -> Result<Self> {
        let missing = |what: &str| Error::Command {
            context: "starting the ACR front".into(),
            message: format!("the registry has no {what}: start it with RegistryOptions::token()"),
        };
        let registry_realm = registry
            .token_realm()
            .ok_or_else(|| missing("token realm"))?;
        let registry_user = registry
            .username()
            .ok_or_else(|| missing("user"))?
            .to_string();
        let registry_password = registry
            .password()
            .ok_or_else(|| missing("password"))?
            .to_string();
        let dir = tempfile::Builder::new()
            .prefix("testbed-acr-")
            .tempdir()
            .context(|| "ACR front: creating a temporary directory".into())?;
        let certs = Certificates::generate_for(dir.path(), &[&options.host])?;
        let tls = tls_acceptor(&certs)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Command {
                context: "ACR front: building its HTTP client".into(),
                message: e.to_string(),
            })?;
        let state = Arc::new(AcrState {
            options,
            counters: AcrCounters::default(),
            issued: Mutex::new(BTreeMap::new()),
            registry_base: registry.base_url(),
            registry_realm,
            registry_user,
            registry_password,
            http,
        });
        let (listener, addr) = bind().await?;
        let (streams, accepted) = tokio::sync::mpsc::channel(16);
        let handshakes = tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                let (tls, streams) = (tls.clone(), streams.clone());
                // Each handshake on its own task: a stalled client never blocks the others.
                tokio::spawn(async move {
                    if let Ok(stream) = tls.accept(conn).await {
                        let _ = streams.send((stream, peer)).await;
                    }
                });
            }
        });
        let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
        let app = axum::Router::new()
            .route(
                "/oauth2/exchange",
                post(move |body: String| {
                    let state = s1.clone();
                    async move { exchange(&state, &body) }
                }),
            )
            .route(
                "/oauth2/token",
                get(move |headers: HeaderMap, request: Request| {
                    let state = s2.clone();
                    async move {
                        let query = request.uri().query().unwrap_or_default().to_string();
                        registry_token(&state, &headers, &query).await
                    }
                }),
            )
            .fallback(move |request: Request| {
                let state = s3.clone();
                async move { forward(&state, request).await }
            });
        let server = tokio::spawn(async move {
            let _ = axum::serve(TlsListener { accepted, addr }, app).await;
        });
        Ok(Self {
            addr,
            state,
            certs,
            tasks: vec![handshakes, server],
            _dir: dir,
        })
    }

    /// Where the HTTPS server listens (what a proxy maps `<host>:443` to).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the server certificate (PEM file).
    pub fn ca_cert(&self) -> &std::path::Path {
        &self.certs.ca_cert
    }

    /// `POST /oauth2/exchange` calls answered with a refresh token.
    pub fn exchanges(&self) -> usize {
        self.state.counters.exchanges.load(Ordering::SeqCst)
    }

    /// `GET /oauth2/token` calls, refused ones included.
    pub fn token_requests(&self) -> usize {
        self.state.counters.token_requests.load(Ordering::SeqCst)
    }

    /// `GET /oauth2/token` calls refused (unknown or expired refresh token).
    pub fn refused_tokens(&self) -> usize {
        self.state.counters.refused_tokens.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the registry.
    pub fn forwarded(&self) -> usize {
        self.state.counters.forwarded.load(Ordering::SeqCst)
    }

    /// Every refresh token handed out (to check none leaks).
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

fn tls_acceptor(certs: &Certificates) -> Result<tokio_rustls::TlsAcceptor> {
    let invalid = |what: &str, e: String| Error::Command {
        context: format!("ACR front: {what}"),
        message: e,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .map_err(|e| invalid("reading the certificate", e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| invalid("parsing the certificate", e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&certs.server_key)
        .map_err(|e| invalid("reading the key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("TLS config", e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Hands axum the connections whose TLS handshake succeeded.
struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The acceptor task ended (the front is dropping): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

fn registry_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]}).to_string(),
    )
        .into_response()
}

/// `POST /oauth2/exchange`: `grant_type=access_token`, `service=<host>`, `access_token`.
fn exchange(state: &AcrState, body: &str) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let options = &state.options;
    let wrong = if field("grant_type") != "access_token" {
        Some("grant_type must be access_token")
    } else if field("service") != options.host {
        Some("service is not this registry")
    } else if field("access_token") != options.access_token {
        Some("access_token is not a valid Entra token for this registry")
    } else {
        None
    };
    if let Some(wrong) = wrong {
        return registry_error(StatusCode::UNAUTHORIZED, wrong);
    }
    let n = state.counters.exchanges.fetch_add(1, Ordering::SeqCst);
    let lifetime = options
        .refresh_lifetimes
        .get(n)
        .or(options.refresh_lifetimes.last())
        .copied()
        .unwrap_or(3 * 3600);
    let now = now_secs();
    let exp = now + lifetime;
    let encode = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let refresh_token = format!(
        "{}.{}.{}",
        encode(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        encode(serde_json::json!({
            "jti": format!("refresh-{n}"),
            "sub": "workload-identity",
            "aud": options.host,
            "grant_type": "refresh_token",
            "iat": now,
            "exp": exp,
        })),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("acr-front-signature-{n}")),
    );
    state
        .issued
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(refresh_token.clone(), exp);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::json!({"refresh_token": refresh_token}).to_string(),
    )
        .into_response()
}

/// The refresh token of `Basic 0000…:<refresh token>`.
fn basic_refresh_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == ACR_USERNAME).then(|| password.to_string())
}

/// `GET /oauth2/token?service=&scope=` with Basic `0000…:<refresh token>`: the registry's
/// access token for the scope, from the registry's own issuer.
async fn registry_token(state: &AcrState, headers: &HeaderMap, query: &str) -> Response {
    state.counters.token_requests.fetch_add(1, Ordering::SeqCst);
    let refuse = |why: &str| {
        state.counters.refused_tokens.fetch_add(1, Ordering::SeqCst);
        registry_error(StatusCode::UNAUTHORIZED, why)
    };
    let Some(refresh_token) = basic_refresh_token(headers) else {
        return refuse("Basic 00000000-0000-0000-0000-000000000000:<refresh token> expected");
    };
    let exp = state
        .issued
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&refresh_token)
        .copied();
    match exp {
        None => return refuse("unknown refresh token"),
        Some(exp) if exp <= now_secs() => return refuse("the refresh token has expired"),
        Some(_) => {}
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(name, _)| name == "scope")
        .chain(std::iter::once((
            "service".to_string(),
            TOKEN_SERVICE.to_string(),
        )))
        .collect();
    let answer = state
        .http
        .get(&state.registry_realm)
        .query(&pairs)
        .basic_auth(&state.registry_user, Some(&state.registry_password))
        .send()
        .await;
    let token = match answer {
        Ok(response) if response.status().is_success() => response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string)),
        _ => None,
    };
    match token {
        Some(token) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            serde_json::json!({"access_token": token}).to_string(),
        )
            .into_response(),
        None => registry_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the registry's token issuer did not answer",
        ),
    }
}

/// Forwards a registry request, rewriting the Bearer challenge to ACR's realm and service.
async fn forward(state: &AcrState, request: Request) -> Response {
    state.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let method = request.method().clone();
    let headers = request.headers().clone();
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut upstream = state
        .http
        .request(method, format!("{}{path}", state.registry_base))
        .body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length") {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(response) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = response.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            continue;
        }
        let value = if name.as_str() == "www-authenticate" {
            let text = value.to_str().unwrap_or_default();
            let rewritten = text
                .replace(
                    &state.registry_realm,
                    &format!("https://{}/oauth2/token", state.options.host),
                )
                .replace(
                    &format!("service=\"{TOKEN_SERVICE}\""),
                    &format!("service=\"{}\"", state.options.host),
                );
            HeaderValue::from_str(&rewritten).unwrap_or_else(|_| value.clone())
        } else {
            value.clone()
        };
        out_headers.append(name.clone(), value);
    }
    let Ok(bytes) = response.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut reply = Response::new(Body::from(bytes));
    *reply.status_mut() = status;
    *reply.headers_mut() = out_headers;
    reply
}
