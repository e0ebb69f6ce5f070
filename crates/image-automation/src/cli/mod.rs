//! The `image-automation` command line: `serve` and `update`, their flags and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use crate::message::RemovedFields;
use crate::modes::{self as serve, KubeServeOptions, ServeOptions, ServiceOptions};
use crate::reflector_client::error_chain;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use update::{OutputFormat, UpdateOptions};

pub mod update;
use kube_support::args::{
    BackoffArgs, ConcurrencyArgs, HttpArgs, LeaderElectionArgs, LoggingArgs,
    OBJECT_LEVEL_WORKLOAD_IDENTITY, WatchSelectorArgs, WorkloadIdentityArgs, parse_feature_gates,
};

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply image policies to a directory without git (preview an automation).
    Update(UpdateArgs),
    /// Run the controller.
    ///
    /// With --manifests DIR it runs without a cluster; otherwise it uses the kubeconfig or
    /// the in-cluster configuration.
    Serve(ServeArgs),
}

#[derive(Debug, Parser)]
#[command(name = "image-automation", version)]
#[command(about = "Flux-compatible image update automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Read ImageUpdateAutomation, GitRepository and Secret manifests from DIR (no cluster).
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// image-reflector's HTTP API, where policy results come from.
    #[arg(long)]
    reflector_url: String,
    /// The git cache (one bare repository per URL).
    #[arg(long, default_value = "/data")]
    storage_path: PathBuf,
    #[command(flatten)]
    http: HttpArgs,
    /// Run every automation once, print a JSON summary and exit (0 when all are Ready).
    #[arg(long)]
    once: bool,
    /// Refuse sourceRefs to GitRepositories in other namespaces.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    no_cross_namespace_refs: bool,
    #[command(flatten)]
    concurrency: ConcurrencyArgs,
    #[command(flatten)]
    watch: WatchSelectorArgs,
    // On by default, as Flux's image-automation-controller.
    #[command(flatten)]
    leader_election: LeaderElectionArgs<true>,
    #[command(flatten)]
    backoff: BackoffArgs,
    /// What to do with a commit message template that reads `.Updated`, which Flux v1
    /// removed: `render` it (the v1beta1 data) and warn once per generation with a
    /// DeprecatedTemplateField event, or `stall` the automation as Flux does
    /// (RemovedTemplateField, nothing pushed).
    #[arg(long, value_enum, default_value = "render", value_name = "MODE")]
    removed_template_fields: RemovedTemplateFields,
    /// Flux's feature gates, `Name=bool` separated by commas: `GitSparseCheckout` (default
    /// false: check out only `update.path`) and `ObjectLevelWorkloadIdentity` (default
    /// false: `serviceAccountName` on a GitRepository with a cloud provider stalls); the
    /// other Flux gates are fixed at Flux's defaults.
    #[arg(long, value_name = "GATES", default_value = "", value_parser = feature_gates)]
    feature_gates: FeatureGates,
    #[command(flatten)]
    identity: WorkloadIdentityArgs,
    // Console text by default.
    #[command(flatten)]
    logging: LoggingArgs<false>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RemovedTemplateFields {
    Render,
    Stall,
}

impl From<RemovedTemplateFields> for RemovedFields {
    fn from(mode: RemovedTemplateFields) -> Self {
        match mode {
            RemovedTemplateFields::Render => RemovedFields::Render,
            RemovedTemplateFields::Stall => RemovedFields::Stall,
        }
    }
}

/// The `--feature-gates` this implementation has.
#[derive(Debug, Clone, Copy, Default)]
struct FeatureGates {
    sparse_checkout: bool,
    object_level_workload_identity: bool,
}

const GIT_SPARSE_CHECKOUT: &str = "GitSparseCheckout";

fn feature_gates(text: &str) -> Result<FeatureGates, String> {
    let gates = parse_feature_gates(text, &[GIT_SPARSE_CHECKOUT, OBJECT_LEVEL_WORKLOAD_IDENTITY])?;
    let on = |name: &str| gates.get(name).copied().unwrap_or(false);
    Ok(FeatureGates {
        sparse_checkout: on(GIT_SPARSE_CHECKOUT),
        object_level_workload_identity: on(OBJECT_LEVEL_WORKLOAD_IDENTITY),
    })
}

/// The provider flags, checked (a default ServiceAccount needs the gate, as in Flux) and
/// set for the process.
fn configure_providers(args: &ServeArgs) -> Result<(), String> {
    let gate = args.feature_gates.object_level_workload_identity;
    let default_service_account = args.identity.default_service_account();
    cloud_identity::workload_identity::check_startup(default_service_account, gate)
        .map_err(|e| e.to_string())?;
    crate::git::provider::configure(crate::git::provider::ProviderSettings {
        object_level_workload_identity: gate,
        default_service_account: default_service_account.map(str::to_string),
        token_cache_max_size: args.identity.token_cache_max_size,
        token_cache_max_duration: args.identity.token_cache_max_duration,
    });
    Ok(())
}

fn run_serve(args: ServeArgs) -> ExitCode {
    if args.manifests.is_none() && !serve::kubernetes_config_exists() {
        eprintln!(
            "image-automation: error: no --manifests directory and no Kubernetes configuration \
             ($KUBECONFIG, ~/.kube/config or in-cluster)"
        );
        return ExitCode::from(2);
    }
    if args.manifests.is_none() && args.once {
        eprintln!("image-automation: error: --once needs --manifests DIR");
        return ExitCode::from(2);
    }
    let backoff = match args.backoff.delays() {
        Ok(delays) => delays,
        Err(e) => {
            eprintln!("image-automation: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = configure_providers(&args) {
        eprintln!("image-automation: error: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = serve::init_logging(args.logging.log_level, args.logging.log_encoding) {
        eprintln!("image-automation: error: {e}");
        return ExitCode::FAILURE;
    }
    let service = ServiceOptions {
        reflector_url: args.reflector_url,
        storage_path: args.storage_path,
        http_addr: args.http.http_addr,
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        backoff,
        removed_template_fields: args.removed_template_fields.into(),
        sparse_checkout: args.feature_gates.sparse_checkout,
    };
    let Some(manifests) = args.manifests else {
        let opts = KubeServeOptions {
            controllers: kube_support::args::controller_settings(
                &args.concurrency,
                &args.watch,
                &args.leader_election,
            ),
            service,
        };
        return match runtime() {
            Ok(runtime) => {
                let result = runtime
                    .block_on(serve::kube::serve::run_kubernetes(opts))
                    .map(|()| true);
                // Never wait on a blocking git call that shutdown abandoned.
                runtime.shutdown_timeout(Duration::from_millis(100));
                exit(result)
            }
            Err(code) => code,
        };
    };
    let selector = match args.watch.parse() {
        Ok(selector) => selector,
        Err(e) => {
            eprintln!("image-automation: error: --watch-label-selector: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ServeOptions {
        manifests,
        concurrent: usize::from(args.concurrency.concurrent),
        selector,
        once: args.once,
        service,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        if opts.once {
            serve::standalone::run_once(&opts, &mut std::io::stdout().lock()).await
        } else {
            serve::standalone::run(opts).await.map(|()| true)
        }
    });
    // Never wait on a blocking git call that shutdown abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    exit(result)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("image-automation: error: starting runtime: {e}");
            ExitCode::FAILURE
        })
}

fn exit(result: Result<bool, serve::ServeError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("image-automation: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// Directory whose YAML files are updated.
    #[arg(long)]
    path: PathBuf,
    /// Policies as JSON or YAML: {"items": [{"namespace", "name", "latestRef": {...}}]}.
    #[arg(long)]
    policies: PathBuf,
    /// The automation's namespace; only policies of this namespace apply.
    #[arg(long, default_value = "flux-system")]
    namespace: String,
    /// The automation's name (what .AutomationObject prints after the namespace).
    #[arg(long, default_value = "image-updates")]
    automation: String,
    /// A commit message template (Go text/template + Sprig) to render.
    #[arg(long)]
    message_template: Option<PathBuf>,
    /// Write nothing; print a unified diff of what would change.
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Update(args) => {
            let opts = UpdateOptions {
                path: args.path,
                policies: args.policies,
                namespace: args.namespace,
                automation: args.automation,
                message_template: args.message_template,
                dry_run: args.dry_run,
                output: match args.output {
                    Output::Text => OutputFormat::Text,
                    Output::Json => OutputFormat::Json,
                },
            };
            update::run(&opts, &mut std::io::stdout().lock())
        }
        Command::Serve(args) => return run_serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("image-automation: error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(
            ["image-automation", "serve", "--reflector-url", "http://r"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        match cli.command {
            Command::Serve(args) => args,
            Command::Update(_) => unreachable!(),
        }
    }

    #[test]
    fn both_gates_parse_and_unknown_ones_are_refused() {
        let args =
            serve(&["--feature-gates=GitSparseCheckout=true,ObjectLevelWorkloadIdentity=true"]);
        assert!(args.feature_gates.sparse_checkout);
        assert!(args.feature_gates.object_level_workload_identity);
        let args = serve(&[]);
        assert!(!args.feature_gates.object_level_workload_identity);
        assert_eq!(args.identity.token_cache_max_size, 100);
        assert!(
            Cli::try_parse_from([
                "image-automation",
                "serve",
                "--reflector-url",
                "r",
                "--feature-gates=FluxStorage=true"
            ])
            .is_err()
        );
    }

    #[test]
    fn a_default_service_account_needs_the_gate() {
        let error =
            configure_providers(&serve(&["--default-service-account=flux-tenant"])).unwrap_err();
        assert_eq!(
            error,
            "cannot set default service accounts when the feature gate ObjectLevelWorkloadIdentity is not enabled"
        );
    }
}
