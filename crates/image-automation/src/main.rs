//! The `image-automation` binary: argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use image_automation::serve::{self, ServeOptions};
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
    /// Run the controller (standalone: `--manifests DIR`).
    Serve(ServeArgs),
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
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Run every automation once, print a JSON summary and exit (0 when all are Ready).
    #[arg(long)]
    once: bool,
    /// Refuse sourceRefs to GitRepositories in other namespaces.
    #[arg(long)]
    no_cross_namespace_refs: bool,
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let Some(manifests) = args.manifests else {
        eprintln!(
            "image-automation: error: Kubernetes mode is not available yet; pass --manifests DIR"
        );
        return ExitCode::from(2);
    };
    if let Err(e) = serve::init_logging() {
        eprintln!("image-automation: error: {e}");
        return ExitCode::FAILURE;
    }
    let opts = ServeOptions {
        manifests,
        reflector_url: args.reflector_url,
        storage_path: args.storage_path,
        http_addr: args.http_addr,
        once: args.once,
        no_cross_namespace_refs: args.no_cross_namespace_refs,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("image-automation: error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if opts.once {
            serve::run_once(&opts, &mut std::io::stdout().lock()).await
        } else {
            serve::run(opts).await.map(|()| true)
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("image-automation: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // thiserror messages above already embed their direct source; skip repeats.
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
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
