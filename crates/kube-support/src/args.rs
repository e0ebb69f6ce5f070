//! The `serve` flag groups both binaries flatten into their own `ServeArgs`, with Flux's
//! names and defaults, so a flag is spelled, parsed and documented once.
//!
//! Two defaults differ between the services today and are public (charts and users rely
//! on them): leader election (image-automation on, image-reflector off) and the log
//! encoding (image-automation `console`, image-reflector `json`). Those groups take the
//! default as a const parameter, so each binary states its default at the type and the
//! flag itself still exists once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use api_types::duration::parse_flag;
use clap::{ArgAction, Args};

use crate::driver::LeaderElectionSettings;
use crate::leader;
use crate::process::{LogEncoding, LogLevel};
use crate::schedule::RetryDelays;
use crate::selector::{LabelSelector, SelectorError};

/// `--log-level` and `--log-encoding`; `JSON_BY_DEFAULT` picks the encoding's default.
#[derive(Debug, Clone, Args)]
pub struct LoggingArgs<const JSON_BY_DEFAULT: bool> {
    /// The least severe level logged (`RUST_LOG`, when set, overrides it).
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Log lines as JSON objects or as console text.
    #[arg(long, value_enum, default_value_t = default_encoding(JSON_BY_DEFAULT))]
    pub log_encoding: LogEncoding,
}

const fn default_encoding(json: bool) -> LogEncoding {
    if json {
        LogEncoding::Json
    } else {
        LogEncoding::Console
    }
}

/// `--enable-leader-election` and `--leader-election-lease-duration`;
/// `ENABLED_BY_DEFAULT` is the first flag's default.
#[derive(Debug, Clone, Args)]
pub struct LeaderElectionArgs<const ENABLED_BY_DEFAULT: bool> {
    /// Work only while holding the leader Lease (Kubernetes mode).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = ENABLED_BY_DEFAULT, action = ArgAction::Set)]
    pub enable_leader_election: bool,
    /// How long a leader's Lease stays valid without renewal (Go duration, at least 2s).
    #[arg(long, default_value = "35s", value_parser = parse_flag)]
    pub leader_election_lease_duration: Duration,
}

impl<const ENABLED_BY_DEFAULT: bool> LeaderElectionArgs<ENABLED_BY_DEFAULT> {
    /// The flags as the driver's settings, with the Lease in this Pod's namespace.
    pub fn settings(&self) -> LeaderElectionSettings {
        LeaderElectionSettings {
            enabled: self.enable_leader_election,
            lease_duration: self.leader_election_lease_duration,
            lease_namespace: leader::lease_namespace(),
        }
    }
}

/// `--min-retry-delay` and `--max-retry-delay`: Flux's 750ms doubling up to 15m.
#[derive(Debug, Clone, Args)]
pub struct BackoffArgs {
    /// The first retry delay after a failed run; it doubles per consecutive failure of the
    /// same object (Go duration).
    #[arg(long, default_value = "750ms", value_parser = parse_flag)]
    pub min_retry_delay: Duration,
    /// The longest retry delay after failed runs (Go duration).
    #[arg(long, default_value = "15m", value_parser = parse_flag)]
    pub max_retry_delay: Duration,
}

/// The retry delays are unusable: zero, or the minimum above the maximum.
#[derive(Debug, thiserror::Error)]
#[error("--min-retry-delay must be positive and at most --max-retry-delay")]
pub struct BackoffError;

impl BackoffArgs {
    /// The delays, checked.
    pub fn delays(&self) -> Result<RetryDelays, BackoffError> {
        if self.min_retry_delay.is_zero() || self.max_retry_delay < self.min_retry_delay {
            return Err(BackoffError);
        }
        Ok(RetryDelays {
            min: self.min_retry_delay,
            max: self.max_retry_delay,
        })
    }
}

/// `--watch-label-selector`: which objects this instance reconciles (sharding).
#[derive(Debug, Clone, Args)]
pub struct WatchSelectorArgs {
    /// Only reconcile objects with matching labels (to shard them across instances).
    #[arg(long, default_value = "", value_name = "SELECTOR")]
    pub watch_label_selector: String,
}

impl WatchSelectorArgs {
    /// The selector as given, trimmed (what the Kubernetes watch sends).
    pub fn text(&self) -> &str {
        self.watch_label_selector.trim()
    }

    /// The selector, parsed; `None` when empty.
    pub fn parse(&self) -> Result<Option<LabelSelector>, SelectorError> {
        match self.text() {
            "" => Ok(None),
            text => text.parse().map(Some),
        }
    }
}

/// The Kubernetes mode's settings from `--concurrent`, `--watch-label-selector` (trimmed)
/// and the leader election flags.
pub fn controller_settings<const LEADER_ELECTION_BY_DEFAULT: bool>(
    concurrency: &ConcurrencyArgs,
    watch: &WatchSelectorArgs,
    leader_election: &LeaderElectionArgs<LEADER_ELECTION_BY_DEFAULT>,
) -> crate::driver::ControllerSettings {
    crate::driver::ControllerSettings {
        concurrent: concurrency.concurrent,
        label_selector: watch.text().to_owned(),
        leader_election: leader_election.settings(),
    }
}

/// `--concurrent`: reconciles running at once.
#[derive(Debug, Clone, Args)]
pub struct ConcurrencyArgs {
    /// Reconciles running at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent: u16,
}

/// `--http-addr`: where `/healthz`, `/readyz` and `/metrics` (and the reflector's API) are
/// served.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address of /healthz, /readyz and /metrics (and image-reflector's HTTP API).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
}

/// Flux's `ObjectLevelWorkloadIdentity` feature gate name.
pub const OBJECT_LEVEL_WORKLOAD_IDENTITY: &str = "ObjectLevelWorkloadIdentity";

/// `--feature-gates`: `Name=bool` pairs separated by commas, as Flux parses them; a gate
/// not in `known` is refused (Flux's controllers refuse unknown gates at startup).
pub fn parse_feature_gates(text: &str, known: &[&str]) -> Result<BTreeMap<String, bool>, String> {
    let mut gates = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not Name=true|false"))?;
        let value: bool = value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {value:?} is not true or false"))?;
        let name = name.trim();
        if !known.contains(&name) {
            return Err(format!(
                "unsupported feature gate {name:?} (known: {})",
                known.join(", ")
            ));
        }
        gates.insert(name.to_string(), value);
    }
    Ok(gates)
}

/// `--default-service-account` and the token cache flags, as Flux's `auth` and `cache`
/// packages bind them (both controllers).
#[derive(Debug, Clone, Args)]
pub struct WorkloadIdentityArgs {
    /// The ServiceAccount (in each object's namespace) used for cloud provider
    /// authentication when the object names none; needs
    /// `--feature-gates=ObjectLevelWorkloadIdentity=true`. With it set, objects never use
    /// the controller's own identity.
    #[arg(long, default_value = "", value_name = "NAME")]
    pub default_service_account: String,
    /// How many provider tokens are cached (0 disables the cache and its metrics).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub token_cache_max_size: usize,
    /// How long a token is cached at most (Go duration; capped at 1h, as Flux does).
    #[arg(long, default_value = "1h", value_parser = parse_flag, value_name = "DURATION")]
    pub token_cache_max_duration: Duration,
}

impl WorkloadIdentityArgs {
    /// `--default-service-account`, `None` when empty.
    pub fn default_service_account(&self) -> Option<&str> {
        Some(self.default_service_account.trim()).filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        backoff: BackoffArgs,
        #[command(flatten)]
        watch: WatchSelectorArgs,
        #[command(flatten)]
        leader_election: LeaderElectionArgs<true>,
        #[command(flatten)]
        logging: LoggingArgs<false>,
        #[command(flatten)]
        identity: WorkloadIdentityArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
    }

    #[test]
    fn the_default_parameters_reach_the_flags() {
        let cli = parse(&[]).unwrap();
        assert!(cli.leader_election.enable_leader_election);
        assert_eq!(cli.logging.log_encoding, LogEncoding::Console);
        let cli = parse(&["--enable-leader-election=false", "--log-encoding=json"]).unwrap();
        assert!(!cli.leader_election.enable_leader_election);
        assert_eq!(cli.logging.log_encoding, LogEncoding::Json);
        let settings = parse(&["--leader-election-lease-duration=1m"])
            .unwrap()
            .leader_election
            .settings();
        assert!(settings.enabled);
        assert_eq!(settings.lease_duration, Duration::from_secs(60));
        // The bare flag means true, as Flux's.
        assert!(
            parse(&["--enable-leader-election"])
                .unwrap()
                .leader_election
                .enable_leader_election
        );
    }

    #[test]
    fn backoff_delays_are_checked() {
        let delays = parse(&[]).unwrap().backoff.delays().unwrap();
        assert_eq!(delays.min, Duration::from_millis(750));
        assert_eq!(delays.max, Duration::from_secs(15 * 60));
        let inverted = parse(&["--min-retry-delay=2m", "--max-retry-delay=1m"]).unwrap();
        assert!(inverted.backoff.delays().is_err());
        let zero = parse(&["--min-retry-delay=0s"]).unwrap();
        assert!(zero.backoff.delays().is_err());
    }

    #[test]
    fn an_empty_watch_selector_selects_everything() {
        assert!(parse(&[]).unwrap().watch.parse().unwrap().is_none());
        let sharded = parse(&["--watch-label-selector", " shard=a "]).unwrap();
        assert_eq!(sharded.watch.text(), "shard=a");
        assert!(sharded.watch.parse().unwrap().is_some());
        let bad = parse(&["--watch-label-selector", "a in (b"]).unwrap();
        assert!(bad.watch.parse().is_err());
    }

    #[test]
    fn identity_flags_default_to_flux() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.identity.default_service_account(), None);
        assert_eq!(cli.identity.token_cache_max_size, 100);
        assert_eq!(
            cli.identity.token_cache_max_duration,
            Duration::from_secs(3600)
        );
        let cli = parse(&[
            "--default-service-account=flux-default",
            "--token-cache-max-size=0",
            "--token-cache-max-duration=10m",
        ])
        .unwrap();
        assert_eq!(cli.identity.default_service_account(), Some("flux-default"));
        assert_eq!(cli.identity.token_cache_max_size, 0);
        assert_eq!(
            cli.identity.token_cache_max_duration,
            Duration::from_secs(600)
        );
        assert!(parse(&["--token-cache-max-size=-1"]).is_err());
    }

    #[test]
    fn feature_gates_parse_known_names_only() {
        let known = [OBJECT_LEVEL_WORKLOAD_IDENTITY, "GitSparseCheckout"];
        let gates = parse_feature_gates(
            "ObjectLevelWorkloadIdentity=true, GitSparseCheckout=false",
            &known,
        )
        .unwrap();
        assert_eq!(gates.get(OBJECT_LEVEL_WORKLOAD_IDENTITY), Some(&true));
        assert_eq!(gates.get("GitSparseCheckout"), Some(&false));
        assert!(parse_feature_gates("", &known).unwrap().is_empty());
        assert!(
            parse_feature_gates("Nope=true", &known)
                .unwrap_err()
                .contains("Nope")
        );
        assert!(parse_feature_gates("ObjectLevelWorkloadIdentity=yes", &known).is_err());
        assert!(parse_feature_gates("ObjectLevelWorkloadIdentity", &known).is_err());
    }
}
