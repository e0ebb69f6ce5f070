//! The health, readiness and metrics routes of both controllers: `/healthz` (the process
//! answers), `/readyz` (503 until the mode's first pass or sync) and `/metrics` (the
//! Prometheus text). image-automation serves them alone ([`start`], with the limits of
//! [`crate::http::serve`]); image-reflector merges [`routes`] into its HTTP API with
//! [`Probes`] that answer with the API's JSON errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The admin server could not listen.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A running admin server: notify `shutdown` to stop it, then await `task`.
#[derive(Debug)]
pub struct AdminServer {
    pub task: JoinHandle<std::io::Result<()>>,
    pub shutdown: Arc<Notify>,
}

impl AdminServer {
    /// Stops the server and waits for it to drain.
    pub async fn stop(self) -> std::io::Result<()> {
        // Wakes the server whether or not it is already waiting.
        self.shutdown.notify_one();
        joined(self.task).await
    }
}

/// The result of a server task, a panic or cancellation as an I/O error.
pub async fn joined(task: JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// What a service answers on `/readyz` and `/metrics` (`/healthz` is always `ok`).
pub trait Probes: Clone + Send + Sync + 'static {
    /// `ok` once ready, else a 503.
    fn readyz(&self) -> Response;
    /// The Prometheus text.
    fn metrics(&self) -> Response;
}

/// The three routes over `probes`, for any router state (merged into a service's router,
/// they get its fallbacks and layers).
pub fn routes<S: Clone + Send + Sync + 'static>(probes: impl Probes) -> axum::Router<S> {
    let metrics = probes.clone();
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || std::future::ready(probes.readyz())))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.metrics())),
        )
}

/// The plain-text probes of the standalone admin server: `ready` and the text `metrics`
/// renders.
#[derive(Clone)]
struct PlainProbes<M> {
    ready: Arc<AtomicBool>,
    metrics: M,
}

impl<M: Fn() -> String + Clone + Send + Sync + 'static> Probes for PlainProbes<M> {
    fn readyz(&self) -> Response {
        if self.ready.load(Ordering::SeqCst) {
            (StatusCode::OK, "ok").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }

    fn metrics(&self) -> Response {
        (self.metrics)().into_response()
    }
}

/// The three routes over `ready` and `metrics` (the text `/metrics` answers).
pub fn router(
    ready: Arc<AtomicBool>,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> axum::Router {
    routes(PlainProbes { ready, metrics })
}

/// Binds `addr` and serves [`router`] in the background until `shutdown` is notified.
pub async fn start(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<AdminServer, ListenError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let shutdown = Arc::new(Notify::new());
    let stop = shutdown.clone();
    // Header-read and idle timeouts, connection cap: slow clients cannot pin the probes.
    let task = tokio::spawn(crate::http::serve(
        listener,
        router(ready, metrics),
        crate::http::ServerLimits::default(),
        async move { stop.notified().await },
    ));
    Ok(AdminServer { task, shutdown })
}
