//! Fails when a committed generated file (CRDs, API reference) differs from what the types
//! generate. Fix with `make generate`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::Path;

#[test]
fn committed_generated_files_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let files = crdgen::generated_files().unwrap();
    let stale = crdgen::check(&root, &files).unwrap();
    assert!(
        stale.is_empty(),
        "out of date (run `make generate`): {stale:?}"
    );
}

#[test]
fn check_reports_a_drifted_file() {
    let dir = std::env::temp_dir().join(format!("crdgen-drift-{}", std::process::id()));
    let files = crdgen::generated_files().unwrap();
    crdgen::write(&dir, &files).unwrap();
    assert!(crdgen::check(&dir, &files).unwrap().is_empty());
    let victim = dir.join(&files[0].path);
    std::fs::write(&victim, "edited by hand\n").unwrap();
    assert_eq!(
        crdgen::check(&dir, &files).unwrap(),
        vec![files[0].path.clone()]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
