//! The `image-reflector` binary: the command line is [`image_reflector::cli`].

fn main() -> std::process::ExitCode {
    image_reflector::cli::main()
}
