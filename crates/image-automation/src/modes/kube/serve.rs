//! The Kubernetes mode's process: the admin server and [`super::run`] until SIGTERM or
//! Ctrl-C, with the shutdown grace.

use crate::modes::{KubeServeOptions, SHUTDOWN_GRACE, ServeError, Started, start};

/// The Kubernetes mode: `/healthz`, `/readyz` (after the first sync of the watch) and
/// `/metrics` on `--http-addr`, and [`super::run`] until SIGTERM or Ctrl-C.
pub async fn run_kubernetes(opts: KubeServeOptions) -> Result<(), ServeError> {
    let service = &opts.service;
    let Started {
        reconciler,
        metrics,
        ready,
        admin,
    } = start(service).await?;
    tracing::info!(addr = %service.http_addr, reflector = %service.reflector_url,
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
        reflector_url: service.reflector_url.clone(),
        no_cross_namespace_refs: service.no_cross_namespace_refs,
        backoff: service.backoff,
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
    let http_result = admin.stop().await;
    result?;
    http_result.map_err(ServeError::Http)
}
