//! The HTTP/1.1 server of both controllers (the reflector's API, the automation's probes
//! and metrics), with the limits `axum::serve` lacks:
//!
//! - a header-read timeout: a connection must send a complete request head within
//!   [`ServerLimits::header_read_timeout`]. hyper starts that timer whenever it waits for
//!   a request head, so the same limit closes idle keep-alive connections (the idle
//!   keep-alive timeout) and slowloris connections that trickle a head or send half of one;
//! - a cap on open connections: at [`ServerLimits::max_connections`] the server stops
//!   accepting (new connections wait in the kernel's backlog) until one closes;
//! - a bounded drain: after `shutdown`, open connections finish their current request and
//!   close; whatever is still open after [`ServerLimits::drain_timeout`] is dropped.
//!
//! Response bodies are not timed: a long-lived stream (the reflector's Server-Sent Events
//! feed) stays open as long as the handler keeps it open.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The server's limits; [`ServerLimits::default`] suits both controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to receive a complete request head, and the longest idle keep-alive wait.
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// After shutdown, how long in-flight requests may take before connections are dropped.
    pub drain_timeout: Duration,
}

/// Time to send a request head (and the idle keep-alive limit).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most (probes, scrapes, API clients, feeds).
pub const MAX_CONNECTIONS: usize = 512;
/// Below the charts' termination grace period (10 s), with room for the rest of shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then drains.
///
/// Errors accepting a connection never end the server: a failed handshake is skipped, and
/// running out of file descriptors pauses accepting for a moment.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed; pausing");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // Responses are small or streamed event by event: send them at once.
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Timeouts, resets and malformed requests end only this connection.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(
                seconds = limits.drain_timeout.as_secs(),
                "HTTP connections still open after the drain timeout; closing them"
            );
        }
    }
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
