//! The `image-reflector` binary.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use image_reflector::select::{self, SelectArgs, SelectFailure};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
