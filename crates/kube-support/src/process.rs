//! Process plumbing of both controllers' `serve`: the stderr logger, the termination
//! signal and whether a Kubernetes configuration exists.

use std::path::Path;

/// The logger could not be installed (a bad filter, or one is already installed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoggingError(String);

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Error,
}

/// `--log-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogEncoding {
    Json,
    Console,
}

/// Installs the global stderr `tracing` subscriber at `level`, as JSON lines or plain
/// console text. `RUST_LOG`, when set, overrides the level.
pub fn init_logging(level: LogLevel, encoding: LogEncoding) -> Result<(), LoggingError> {
    let level = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Error => "error",
    };
    let json = encoding == LogEncoding::Json;
    use tracing_subscriber::EnvFilter;
    // Dependencies' debug output is noise for operators (and could echo request details).
    let default = format!("{level},hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,rustls=warn");
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default))
        .map_err(|e| LoggingError(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    result.map_err(|e| LoggingError(e.to_string()))
}

/// Whether a kubeconfig or the in-cluster configuration exists.
pub fn kubernetes_config_exists() -> bool {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists();
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.is_file()))
        .unwrap_or(false);
    let home = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".kube/config").is_file())
        .unwrap_or(false);
    in_cluster || kubeconfig || home
}

/// Completes on SIGTERM or Ctrl-C. A signal that cannot be listened for is logged and
/// never fires (rather than stopping the process at once).
pub async fn termination() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
