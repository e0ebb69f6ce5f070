//! The `image-automation` binary: the command line is [`image_automation::cli`].

fn main() -> std::process::ExitCode {
    image_automation::cli::main()
}
