//! The `image-reflector` binary.

fn main() -> std::process::ExitCode {
    eprintln!("image-reflector: no subcommands yet");
    std::process::ExitCode::FAILURE
}
