//! `image-reflector serve`: the controller process.
//!
//! Mode: `--manifests DIR` runs [`crate::modes::standalone`]; otherwise the Kubernetes mode runs
//! when a kubeconfig (`$KUBECONFIG`, `~/.kube/config`) or the in-cluster configuration
//! exists. Both serve the HTTP API, `/metrics`, `/healthz` and `/readyz` on `--http-addr`
//! and keep tags in the redb store under `--storage-path`. SIGTERM and Ctrl-C stop the
//! reconcilers, then drain the HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api_types::duration::parse_flag;
use clap::{ArgAction, Args};
use kube_support::args::{
    BackoffArgs, ConcurrencyArgs, HttpArgs, LeaderElectionArgs, LoggingArgs,
    OBJECT_LEVEL_WORKLOAD_IDENTITY, WatchSelectorArgs, WorkloadIdentityArgs, parse_feature_gates,
};
use tokio::sync::watch;

use crate::api::selector::LabelSelector;
use crate::metrics::Metrics;
use crate::modes::standalone::{self, StandaloneConfig};
use crate::reconcile::Options;
use crate::reconcile::cloud::{TokenCacheSettings, WorkloadIdentity};
use crate::registry::ClientSettings;
use crate::state::ApiState;
use crate::store::{QuarantineObserver, Quarantined, RedbTagStore, StoreError, TagStore};

/// The tag database's file name under `--storage-path`.
pub const STORE_FILE: &str = "tags.redb";

pub use kube_support::process::{LogEncoding, LogLevel, init_logging};

/// Flags of `image-reflector serve` (Flux's names where Flux has the flag).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Directory of the tag store (created if missing).
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,
    /// Run without a cluster, from the ImageRepository, ImagePolicy, Secret, ServiceAccount
    /// and Namespace manifests under DIR (re-read when they change).
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    /// How soon a policy whose repository has no tags yet is retried (Go duration).
    #[arg(long, default_value = "30s", value_parser = parse_flag)]
    pub requeue_dependency: Duration,
    #[command(flatten)]
    pub backoff: BackoffArgs,
    /// Deny ImagePolicies referring to ImageRepositories in other namespaces.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub no_cross_namespace_refs: bool,
    #[command(flatten)]
    pub watch: WatchSelectorArgs,
    // Off by default: one replica needs no Lease.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs<false>,
    /// The URL other replicas reach this one's API at (followers forward `/tags` to the
    /// leader). Default: `http://$POD_IP:<port>`, else the `--http-addr` (loopback when it
    /// is unspecified).
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Scans of repositories listing more tags fail (tags are counted before
    /// exclusionList applies).
    #[arg(long, default_value_t = ClientSettings::default().max_tags as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tags_per_repository: u64,
    /// Scans needing more tags/list pages fail.
    #[arg(long, default_value_t = ClientSettings::default().max_pages as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tag_pages: u64,
    /// The largest tags/list page read, in bytes; reading stops there and the scan fails.
    #[arg(long, default_value_t = ClientSettings::default().max_tag_page_bytes as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_tag_page_bytes: u64,
    /// Flux's feature gates, `Name=bool` separated by commas. Only
    /// `ObjectLevelWorkloadIdentity` (default false: `spec.serviceAccountName` with a cloud
    /// provider stalls) can be set.
    #[arg(long, value_name = "GATES", default_value = "", value_parser = feature_gates)]
    pub feature_gates: std::collections::BTreeMap<String, bool>,
    #[command(flatten)]
    pub identity: WorkloadIdentityArgs,
    // JSON lines by default, as Flux logs.
    #[command(flatten)]
    pub logging: LoggingArgs<true>,
}

fn feature_gates(text: &str) -> Result<std::collections::BTreeMap<String, bool>, String> {
    parse_feature_gates(text, &[OBJECT_LEVEL_WORKLOAD_IDENTITY])
}

/// `--feature-gates=ObjectLevelWorkloadIdentity=true`.
pub fn object_level_workload_identity(args: &ServeArgs) -> bool {
    args.feature_gates
        .get(OBJECT_LEVEL_WORKLOAD_IDENTITY)
        .copied()
        .unwrap_or(false)
}

/// The controllers' settings from the flags (both modes use them).
pub fn options(args: &ServeArgs) -> Options {
    Options {
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        requeue_dependency: args.requeue_dependency,
        min_retry_delay: args.backoff.min_retry_delay,
        max_retry_delay: args.backoff.max_retry_delay,
        workload_identity: WorkloadIdentity {
            gate: object_level_workload_identity(args),
            // A process-lifetime flag value: leaked once so `Options` stays `Copy`.
            default_service_account: args
                .identity
                .default_service_account()
                .map(|name| &*Box::leak(name.to_string().into_boxed_str())),
        },
        token_cache: TokenCacheSettings {
            max_size: args.identity.token_cache_max_size,
            max_duration: args.identity.token_cache_max_duration,
        },
    }
}

/// The registry client's settings: the tag budget and body cap from the flags.
pub fn client_settings(args: &ServeArgs) -> ClientSettings {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    ClientSettings {
        max_tags: size(args.max_tags_per_repository),
        max_pages: size(args.max_tag_pages),
        max_tag_page_bytes: size(args.max_tag_page_bytes),
        ..ClientSettings::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--storage-path {path}: {source}")]
    StorageDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the tag store: {0}")]
    Store(#[from] StoreError),
    #[error("--watch-label-selector: {0}")]
    Selector(#[from] kube_support::selector::SelectorError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("--http-addr {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Standalone(#[from] standalone::StandaloneError),
    #[error("logging: {0}")]
    Logging(#[from] kube_support::process::LoggingError),
    #[error(
        "no --manifests directory and no Kubernetes configuration ($KUBECONFIG, ~/.kube/config or in-cluster)"
    )]
    NoMode,
    #[error(transparent)]
    Kubernetes(#[from] crate::modes::kube::KubeModeError),
    /// `--default-service-account` without the `ObjectLevelWorkloadIdentity` gate.
    #[error(transparent)]
    FeatureGate(#[from] cloud_identity::workload_identity::GateError),
}

/// What both modes share, built by [`run`].
#[derive(Clone)]
pub struct ServeContext {
    pub store: Arc<dyn TagStore>,
    pub state: ApiState,
    pub metrics: Metrics,
    pub options: Options,
    pub concurrent: usize,
    /// `--watch-label-selector`, parsed; `None` when empty.
    pub selector: Option<LabelSelector>,
    /// The address the HTTP API listens on (the actual port when `--http-addr` has port 0).
    pub http_addr: SocketAddr,
}

impl std::fmt::Debug for ServeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeContext")
            .field("options", &self.options)
            .field("concurrent", &self.concurrent)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

pub use kube_support::process::kubernetes_config_exists;

/// The Kubernetes mode ([`crate::modes::kube`]).
pub async fn run_kubernetes(
    args: &ServeArgs,
    context: ServeContext,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let settings = crate::modes::kube::KubeSettings {
        controllers: kube_support::args::controller_settings(
            &args.concurrency,
            &args.watch,
            &args.leader_election,
        ),
        advertise_url: advertise_url(args.advertise_url.as_deref(), context.http_addr),
        registry: client_settings(args),
    };
    crate::modes::kube::run(
        settings,
        context.store,
        context.state,
        context.metrics,
        context.options,
        shutdown,
    )
    .await
    .map_err(ServeError::from)
}

/// `--advertise-url`, or `http://$POD_IP:<port>`, or the listening address (loopback when
/// it is unspecified).
fn advertise_url(flag: Option<&str>, http_addr: SocketAddr) -> String {
    if let Some(url) = flag.map(str::trim).filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    let port = http_addr.port();
    if let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
    {
        return format!("http://{}", SocketAddr::new(ip, port));
    }
    let ip = match http_addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, port))
}

/// Counts damaged store files set aside (see [`crate::store`]).
pub const STORE_QUARANTINED_METRIC: &str = "image_reflector_store_quarantined_total";

/// Opens the tag store under `path`. A damaged store file is set aside and replaced by an
/// empty one (the scans refill it): logged at error level and counted in
/// [`STORE_QUARANTINED_METRIC`]. No Kubernetes event: the store belongs to no object
/// (events are recorded on ImageRepositories and ImagePolicies).
fn open_store(path: &Path, metrics: &Metrics) -> Result<Arc<dyn TagStore>, ServeError> {
    std::fs::create_dir_all(path).map_err(|source| ServeError::StorageDir {
        path: path.to_path_buf(),
        source,
    })?;
    let quarantined = prometheus::IntCounter::new(
        STORE_QUARANTINED_METRIC,
        "Damaged tag store files moved aside (or deleted) and replaced by an empty store.",
    )?;
    metrics.registry.register(Box::new(quarantined.clone()))?;
    let observer: QuarantineObserver = Arc::new(move |q: &Quarantined| {
        quarantined.inc();
        let moved_to = q.moved_to.as_ref().map_or_else(
            || "deleted (it could not be moved)".to_string(),
            |p| p.display().to_string(),
        );
        tracing::error!(
            store = %q.path.display(),
            moved_to = %moved_to,
            damage = %q.damage,
            "tag store damaged: quarantined it and started an empty store; repositories will be rescanned"
        );
    });
    Ok(Arc::new(RedbTagStore::open_with(
        path.join(STORE_FILE),
        Some(observer),
    )?))
}

async fn changed_to_true(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: stop too.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs `serve` until a termination signal (or a fatal error).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    cloud_identity::workload_identity::check_startup(
        args.identity.default_service_account(),
        object_level_workload_identity(&args),
    )?;
    let selector = args.watch.parse()?;
    let metrics = Metrics::new()?;
    metrics.enable_token_cache(args.identity.token_cache_max_size)?;
    let store = open_store(&args.storage_path, &metrics)?;
    let state = ApiState::new(store.clone());
    let mut context = ServeContext {
        store,
        state: state.clone(),
        metrics: metrics.clone(),
        options: options(&args),
        concurrent: usize::from(args.concurrency.concurrent),
        selector,
        http_addr: args.http.http_addr,
    };

    let listener = tokio::net::TcpListener::bind(args.http.http_addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: args.http.http_addr,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(args.http.http_addr);
    tracing::info!(addr = %local, "serving the HTTP API");
    context.http_addr = local;

    let (stop_tx, stop_rx) = watch::channel(false);
    let http = tokio::spawn(crate::api::serve(
        listener,
        state,
        metrics,
        changed_to_true(stop_rx.clone()),
    ));
    let signal_tx = stop_tx.clone();
    let signals = tokio::spawn(async move {
        kube_support::process::termination().await;
        tracing::info!("termination signal received; shutting down");
        let _ = signal_tx.send(true);
    });

    let result = match &args.manifests {
        Some(dir) => {
            let config = StandaloneConfig {
                manifests: dir.clone(),
                concurrent: context.concurrent,
                options: context.options,
                selector: context.selector.clone(),
                poll_interval: standalone::POLL_INTERVAL,
                registry: client_settings(&args),
            };
            standalone::run(
                config,
                context.store.clone(),
                context.state.clone(),
                context.metrics.clone(),
                changed_to_true(stop_rx.clone()),
            )
            .await
            .map_err(ServeError::from)
        }
        None if kubernetes_config_exists() => run_kubernetes(&args, context, stop_rx.clone()).await,
        None => Err(ServeError::NoMode),
    };

    // Whatever ended the mode, stop the HTTP server too and let it drain.
    let _ = stop_tx.send(true);
    signals.abort();
    let http_result = kube_support::admin::joined(http).await;
    result?;
    http_result.map_err(ServeError::Http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|c| c.serve)
    }

    #[test]
    fn retry_delays_default_to_flux_and_reach_the_options() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.backoff.min_retry_delay, Duration::from_millis(750));
        assert_eq!(args.backoff.max_retry_delay, Duration::from_secs(15 * 60));
        assert_eq!(options(&args), Options::default());

        // The chart test's extraArgs form, and the separate-value form.
        let args = parse(&["--min-retry-delay=1s", "--max-retry-delay", "2m30s"]).unwrap();
        let options = options(&args);
        assert_eq!(options.min_retry_delay, Duration::from_secs(1));
        assert_eq!(options.max_retry_delay, Duration::from_secs(150));

        let error = parse(&["--min-retry-delay=soon"]).unwrap_err();
        assert!(error.to_string().contains("--min-retry-delay"), "{error}");
        assert!(parse(&["--max-retry-delay=-1s"]).is_err());
    }

    #[test]
    fn identity_flags_reach_the_options() {
        let args = parse(&[]).unwrap();
        assert_eq!(
            options(&args).workload_identity,
            WorkloadIdentity::default()
        );
        assert_eq!(options(&args).token_cache, TokenCacheSettings::default());
        let args = parse(&[
            "--feature-gates=ObjectLevelWorkloadIdentity=true",
            "--default-service-account=flux-default",
            "--token-cache-max-size=0",
            "--token-cache-max-duration=5m",
        ])
        .unwrap();
        let options = options(&args);
        assert!(options.workload_identity.gate);
        assert_eq!(
            options.workload_identity.default_service_account,
            Some("flux-default")
        );
        assert_eq!(options.token_cache.max_size, 0);
        assert_eq!(options.token_cache.max_duration, Duration::from_secs(300));
        assert!(parse(&["--feature-gates=GitSparseCheckout=true"]).is_err());
    }

    #[tokio::test]
    async fn a_default_service_account_without_the_gate_stops_the_process() {
        let args = parse(&["--default-service-account=flux-default"]).unwrap();
        let error = run(args).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot set default service accounts when the feature gate ObjectLevelWorkloadIdentity is not enabled"
        );
    }

    #[test]
    fn tag_budget_flags_reach_the_client_settings() {
        assert_eq!(
            format!("{:?}", client_settings(&parse(&[]).unwrap())),
            format!("{:?}", ClientSettings::default())
        );
        let args = parse(&[
            "--max-tags-per-repository=250000",
            "--max-tag-pages",
            "3000",
            "--max-tag-page-bytes=1048576",
        ])
        .unwrap();
        let settings = client_settings(&args);
        assert_eq!(settings.max_tags, 250_000);
        assert_eq!(settings.max_pages, 3000);
        assert_eq!(settings.max_tag_page_bytes, 1 << 20);
        assert!(parse(&["--max-tags-per-repository=0"]).is_err());
    }

    /// Every flag a registry error tells the user to raise is a flag of `serve`.
    #[test]
    fn limit_errors_name_existing_flags() {
        use crate::registry::RegistryError;
        use crate::registry::error::BodyKind;
        use clap::CommandFactory;
        let flags: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        let errors = [
            RegistryError::TooManyTags {
                image: "r/app".into(),
                limit: 1,
            },
            RegistryError::TooManyPages {
                image: "r/app".into(),
                limit: 1,
            },
            RegistryError::BodyTooLarge {
                registry: "r".into(),
                kind: BodyKind::TagPage,
                limit: 1024,
            },
        ];
        for error in errors {
            let message = error.to_string();
            let named: Vec<&str> = message
                .split_whitespace()
                .filter(|w| w.starts_with("--"))
                .collect();
            assert!(!named.is_empty(), "names no flag: {message}");
            for flag in named {
                assert!(
                    flags.iter().any(|f| f == flag),
                    "{flag} is not a serve flag: {message}"
                );
            }
        }
    }
}
