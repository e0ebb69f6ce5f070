//! Fixture runner: for each `testdata/<case>`, copy `original/` to a temporary directory, run the
//! setters, and compare the tree with `expected/` byte for byte (symlinks as links). `case.json`
//! gives the namespace, the policies, an optional update path, and the expected changes and
//! unmatched markers. A second run must change nothing (setters are idempotent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api_types::ImageRef;
use image_automation::setters::{self, Setters, UpdateResult};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    namespace: String,
    #[serde(default)]
    update_path: Option<String>,
    policies: Vec<Policy>,
    changes: Vec<String>,
    unmatched: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    name: String,
    #[serde(default)]
    latest_ref: Option<ImageRef>,
}

/// `git` refuses to store a directory named `.git` inside a repository, so fixtures spell it
/// `dot-git`.
fn fixture_name(name: &str) -> &str {
    if name == "dot-git" { ".git" } else { name }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().into_string().unwrap();
        let dest = to.join(fixture_name(&name));
        let ty = entry.file_type().unwrap();
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if ty.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Link(PathBuf),
}

fn snapshot(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let rel = rel.replace("dot-git", ".git");
        let ty = entry.file_type().unwrap();
        if ty.is_symlink() {
            out.insert(rel, Entry::Link(std::fs::read_link(entry.path()).unwrap()));
        } else if ty.is_dir() {
            let _ = name;
            snapshot(root, &entry.path(), out);
        } else {
            out.insert(rel, Entry::File(std::fs::read(entry.path()).unwrap()));
        }
    }
}

fn describe_changes(result: &UpdateResult) -> Vec<String> {
    let mut out = Vec::new();
    for file in &result.files {
        for object in &file.objects {
            let id = &object.id;
            for c in &object.changes {
                out.push(format!(
                    "{} {}|{}|{}|{} {}: {} -> {}",
                    file.path,
                    id.api_version,
                    id.kind,
                    id.namespace,
                    id.name,
                    c.setter,
                    c.old_value,
                    c.new_value
                ));
            }
        }
    }
    out
}

fn describe_unmatched(result: &UpdateResult) -> Vec<String> {
    result
        .unmatched
        .iter()
        .map(|u| match u.line {
            Some(line) => format!("{}:{line} {:?}", u.path, u.reason),
            None => format!("{} {:?}", u.path, u.reason),
        })
        .collect()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let case: Case =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let mut setters = Setters::new(&case.namespace);
    for p in &case.policies {
        setters.add(&p.name, p.latest_ref.clone()).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&dir.join("original"), &tree);

    let applied = setters::apply(&tree, case.update_path.as_deref(), &setters, true)
        .map_err(|e| format!("apply failed: {e}"))?;
    let mut problems = Vec::new();
    let changes = describe_changes(&applied.result);
    if changes != case.changes {
        problems.push(format!(
            "changes differ:\n  got:      {changes:#?}\n  expected: {:#?}",
            case.changes
        ));
    }
    let unmatched = describe_unmatched(&applied.result);
    if unmatched != case.unmatched {
        problems.push(format!(
            "unmatched differ:\n  got:      {unmatched:#?}\n  expected: {:#?}\n  details: {:#?}",
            case.unmatched, applied.result.unmatched
        ));
    }

    let mut got = BTreeMap::new();
    snapshot(&tree, &tree, &mut got);
    let mut want = BTreeMap::new();
    let expected = dir.join("expected");
    snapshot(&expected, &expected, &mut want);
    if got != want {
        let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
        for key in keys {
            match (got.get(key), want.get(key)) {
                (Some(Entry::File(g)), Some(Entry::File(w))) if g != w => problems.push(format!(
                    "{key} differs:\n--- got\n{}\n--- expected\n{}",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                )),
                (g, w) if g != w => problems.push(format!("{key}: got {g:?}, expected {w:?}")),
                _ => {}
            }
        }
    }

    // Idempotence: a second run finds nothing to change.
    let again = setters::apply(&tree, case.update_path.as_deref(), &setters, true).unwrap();
    if !again.result.files.is_empty() {
        problems.push(format!(
            "second run changed files: {:?}",
            again.result.files
        ));
    }
    let mut after = BTreeMap::new();
    snapshot(&tree, &tree, &mut after);
    if after != got {
        problems.push("second run modified the tree".into());
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_fixture_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixture cases missing: {}", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            run_case(dir)
                .err()
                .map(|e| format!("== {}\n{e}", dir.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing fixture case(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn writes_keep_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.yaml");
    std::fs::write(&file, "image: a:1 # {\"$imagepolicy\": \"ns:p\"}\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut setters = Setters::new("ns");
    setters
        .add(
            "p",
            Some(ImageRef {
                name: "a".into(),
                tag: "2".into(),
                digest: None,
            }),
        )
        .unwrap();
    setters::apply(tmp.path(), None, &setters, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "image: a:2 # {\"$imagepolicy\": \"ns:p\"}\n"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn update_path_cannot_escape_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("a")).unwrap();
    let setters = Setters::new("ns");
    for bad in ["..", "a/../..", "../x"] {
        let err = setters::apply(tmp.path(), Some(bad), &setters, true).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{bad}: {err}");
    }
    // Absolute paths are taken relative to the root, like securejoin.
    assert!(setters::apply(tmp.path(), Some("/a"), &setters, true).is_ok());
    // A symlink leading out of the root is refused.
    std::os::unix::fs::symlink("/", tmp.path().join("out")).unwrap();
    let err = setters::apply(tmp.path(), Some("out"), &setters, true).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
}
