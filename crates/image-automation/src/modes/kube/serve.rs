//! The Kubernetes mode's process: the admin server and [`super::run`] until SIGTERM or
//! Ctrl-C, with the shutdown grace.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::metrics::Metrics;
use crate::modes::{KubeServeOptions, SHUTDOWN_GRACE, ServeError, reconciler, start_http};

/// The Kubernetes mode: `/healthz`, `/readyz` (after the first sync of the watch) and
/// `/metrics` on `--http-addr`, and [`super::run`] until SIGTERM or Ctrl-C.
pub async fn run_kubernetes(opts: KubeServeOptions) -> Result<(), ServeError> {
    let reconciler = Arc::new(reconciler(
        &opts.reflector_url,
        &opts.storage_path,
        opts.no_cross_namespace_refs,
        opts.removed_template_fields,
        opts.sparse_checkout,
    )?);
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let (http, http_shutdown) = start_http(opts.http_addr, ready.clone(), metrics.clone()).await?;
    tracing::info!(addr = %opts.http_addr, reflector = %opts.reflector_url,
        "serving (Kubernetes mode)");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let git = reconciler.git.clone();
    let signals = tokio::spawn(async move {
        kube_support::process::termination().await;
        tracing::info!("termination signal received; shutting down");
        // Runs in flight end quickly (fetches interrupted, pushes killed) and report
        // what they did through their status and events.
        git.cancel();
        let _ = stop_tx.send(true);
    });
    let settings = super::KubeSettings {
        controllers: opts.controllers.clone(),
        reflector_url: opts.reflector_url.clone(),
        no_cross_namespace_refs: opts.no_cross_namespace_refs,
        backoff: opts.backoff,
    };
    let mut stopping = stop_rx.clone();
    let run = super::run(settings, reconciler, metrics, ready, stop_rx);
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        () = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE,
                "shutdown: reconciles still waiting on network I/O were abandoned; no push was in progress (pushes are killed at once and reported)");
            Ok(())
        }
    };
    signals.abort();
    // Wakes the server whether or not it is already waiting.
    http_shutdown.notify_one();
    let http_result = http.await;
    result?;
    match http_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}
