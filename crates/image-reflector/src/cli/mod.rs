//! The `image-reflector` command line: `serve` and `select`, their flags and exit codes.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use select::{SelectArgs, SelectFailure};
use serve::ServeArgs;

pub mod select;
pub mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "image-reflector",
    version,
    about = "Scans container registries and selects the latest image tag for ImagePolicies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pick the latest tag from tags on stdin (one per line) with a policy, offline.
    ///
    /// Prints the chosen original tag and exits 0; exits 1 when no tag qualifies and 2 when
    /// the policy or the command line is invalid.
    Select(SelectArgs),
    /// Run the controller: the reconcilers, the HTTP API and /metrics.
    ///
    /// With --manifests DIR it runs without a cluster; otherwise it uses the kubeconfig or
    /// the in-cluster configuration.
    Serve(ServeArgs),
}

fn run_select(args: &SelectArgs) -> Result<String, SelectFailure> {
    let manifest = match &args.policy {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| SelectFailure::Invalid(format!("--policy {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let spec = select::spec_from_args(args, manifest.as_deref())?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| SelectFailure::Invalid(format!("reading tags from stdin: {e}")))?;
    select::select(&spec, &input)
}

fn run_serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = serve::init_logging(args.logging.log_level, args.logging.log_encoding) {
        eprintln!("image-reflector serve: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("image-reflector serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "image-reflector serve failed");
            eprintln!("image-reflector serve: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Select(args) => match run_select(&args) {
            Ok(tag) => {
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{tag}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::from(2);
                }
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("image-reflector select: {failure}");
                ExitCode::from(failure.exit_code())
            }
        },
    }
}
