#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `image-reflector select`, run as a process.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_image-reflector"))
        .arg("select")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit before reading stdin (invalid policy): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

const TAGS: &str = "1.0.0\n2.0.0\nv1.0.1\n1.2.0\nlatest\n\n1.1.0-rc.1\n";

#[test]
fn semver_prints_the_original_tag() {
    let o = run(&["--semver", ">=1.0.0 <2.0.0"], TAGS);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "1.2.0\n");
    let o = run(&["--semver", "1.0.x"], TAGS);
    assert_eq!(stdout(&o), "v1.0.1\n");
}

#[test]
fn crlf_lines_and_blank_lines_are_handled() {
    let o = run(&["--alphabetical", "asc"], "b\r\n\r\na\r\nc\r\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "c\n");
}

#[test]
fn alphabetical_and_numerical_orders() {
    let tags = "9\n10\n-3\n";
    assert_eq!(stdout(&run(&["--alphabetical", "asc"], tags)), "9\n");
    assert_eq!(stdout(&run(&["--alphabetical", "DESC"], tags)), "-3\n");
    assert_eq!(stdout(&run(&["--numerical", "asc"], tags)), "10\n");
    assert_eq!(stdout(&run(&["--numerical", "desc"], tags)), "-3\n");
}

#[test]
fn filter_and_extract() {
    let tags = "main-100-abc\nmain-99-def\npr-1000-xyz\n";
    let o = run(
        &[
            "--numerical",
            "asc",
            "--filter-pattern",
            r"^main-(?P<ts>\d+)-",
            "--filter-extract",
            "$ts",
        ],
        tags,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "main-100-abc\n");
}

#[test]
fn no_match_exits_1_with_an_explanation() {
    let o = run(&["--semver", ">=3.0.0"], TAGS);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    let e = stderr(&o);
    assert!(e.contains("no tag matches: none of the 6 tags"), "{e}");
    assert!(e.contains(">=3.0.0"), "{e}");

    let o = run(
        &["--alphabetical", "asc", "--filter-pattern", "^nope"],
        TAGS,
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("0 of 6 tags passed the filter pattern \"^nope\""),
        "{}",
        stderr(&o)
    );

    let o = run(&["--semver", "*"], "\n\n");
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("no tags given on stdin"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn numerical_with_a_non_number_exits_1() {
    let o = run(&["--numerical", "asc"], "1\nlatest\n2\n");
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("failed to parse invalid numeric value 'latest'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn invalid_policies_exit_2_naming_the_field() {
    let o = run(&["--semver", ">= x1"], TAGS);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("spec.policy.semver.range: invalid semver range \">= x1\""),
        "{}",
        stderr(&o)
    );
    let o = run(&["--semver", "*", "--filter-pattern", "(?=x)"], TAGS);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("spec.filterTags.pattern:"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("look-around"), "{}", stderr(&o));
    let o = run(&["--numerical", "sideways"], TAGS);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("--numerical: invalid order"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&run(&[], TAGS)), 2);
    assert_eq!(
        code(&run(&["--semver", "*", "--alphabetical", "asc"], TAGS)),
        2
    );
}

fn write_policy(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("select_cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn policy_manifest_of_any_api_version() {
    let yaml = write_policy(
        "beta.yaml",
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  filterTags:\n    pattern: '^rc-(?P<n>[0-9]+)$'\n    extract: '$n'\n  policy:\n    numerical:\n      order: ASC\n",
    );
    let o = run(&["--policy", yaml.to_str().unwrap()], "rc-9\nrc-10\nmain\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "rc-10\n");
    // Command-line filter fields replace the manifest's.
    let o = run(
        &[
            "--policy",
            yaml.to_str().unwrap(),
            "--filter-pattern",
            "^main-(?P<n>[0-9]+)$",
        ],
        "rc-9\nmain-3\nmain-12\n",
    );
    assert_eq!(stdout(&o), "main-12\n", "{}", stderr(&o));

    let json = write_policy(
        "v1.json",
        r#"{"apiVersion":"image.toolkit.fluxcd.io/v1","kind":"ImagePolicy","spec":{"imageRepositoryRef":{"name":"a"},"policy":{"semver":{"range":"^1.0"}}}}"#,
    );
    let o = run(&["--policy", json.to_str().unwrap()], TAGS);
    assert_eq!(stdout(&o), "1.2.0\n", "{}", stderr(&o));
}

#[test]
fn bad_policy_manifests_exit_2() {
    let other = write_policy("repo.yaml", "kind: ImageRepository\nspec:\n  image: x\n");
    let o = run(&["--policy", other.to_str().unwrap()], TAGS);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("ImageRepository"), "{}", stderr(&o));

    let empty = write_policy("empty.yaml", "kind: ImagePolicy\nspec:\n  policy: {}\n");
    let o = run(&["--policy", empty.to_str().unwrap()], TAGS);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("spec.policy: "), "{}", stderr(&o));

    let bad_order = write_policy(
        "order.yaml",
        "kind: ImagePolicy\nspec:\n  policy:\n    alphabetical:\n      order: upwards\n",
    );
    let o = run(&["--policy", bad_order.to_str().unwrap()], TAGS);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("spec.policy.alphabetical.order"),
        "{}",
        stderr(&o)
    );

    let o = run(&["--policy", "/nonexistent/policy.yaml"], TAGS);
    assert_eq!(code(&o), 2);
}
