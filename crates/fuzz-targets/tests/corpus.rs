//! Replays every checked-in corpus file (seeds and the inputs that once crashed a target)
//! through its target. This is how the fuzz findings stay fixed: `make test` runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fuzz_targets::TARGETS;

/// One input may take this long in a debug build; the limits keep real ones in milliseconds.
const SLOW: Duration = Duration::from_secs(20);

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let files = corpus_files(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| run(&data));
        let took = started.elapsed();
        match result {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: panicked: {message}", file.display()));
            }
            Ok(()) if took > SLOW => {
                failures.push(format!("{}: took {took:?}", file.display()));
            }
            Ok(()) => {}
        }
    }
    eprintln!("{target}: {} corpus files", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(dirs, names);
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
    };
}

replay_tests!(
    setters_rewrite,
    semver_range,
    go_template,
    image_reference,
    registry_link,
    registry_json,
    dockerconfigjson,
    api_selector,
    api_request,
);
