//! `crdgen [--check] [ROOT]`: writes the generated files into the repository at ROOT
//! (default: the current directory). With `--check`, writes nothing and exits 1 when a
//! committed file differs from what the types generate.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut root = PathBuf::from(".");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [REPO_ROOT]");
                return ExitCode::SUCCESS;
            }
            other => root = PathBuf::from(other),
        }
    }
    let files = match crdgen::generated_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("crdgen: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = if check {
        crdgen::check(&root, &files).map(|stale| {
            for path in &stale {
                eprintln!(
                    "crdgen: {} is out of date; run `make generate`",
                    path.display()
                );
            }
            stale.is_empty()
        })
    } else {
        crdgen::write(&root, &files).map(|written| {
            for path in &written {
                println!("crdgen: wrote {}", path.display());
            }
            true
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}
