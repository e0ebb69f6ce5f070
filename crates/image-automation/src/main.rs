//! The `image-automation` binary.

fn main() -> std::process::ExitCode {
    eprintln!("image-automation: no subcommands yet");
    std::process::ExitCode::FAILURE
}
