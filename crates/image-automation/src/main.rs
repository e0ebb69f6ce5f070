//! The `image-automation` binary: argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use image_automation::update::{self, OutputFormat, UpdateOptions};

#[derive(Debug, Parser)]
#[command(
    name = "image-automation",
    version,
    about = "Flux-compatible image update automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply image policies to a directory without git (preview an automation).
    Update(UpdateArgs),
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

fn main() -> ExitCode {
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                // thiserror messages above already embed their direct source; skip repeats.
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            eprintln!("image-automation: error: {message}");
            ExitCode::FAILURE
        }
    }
}
