//! The `image-automation update` command, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_image-automation");

const DEPLOY: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n\nspec:\n  \
    containers:\n  - name: web\n    image: ghcr.io/team/web:1.0.0 # {\"$imagepolicy\": \"flux-system:web\"}\n  \
    - name: side\n    image: side:1 # {\"$imagepolicy\": \"other:side\"}\n";

const POLICIES_JSON: &str = r#"{"items": [
  {"namespace": "flux-system", "name": "web",
   "latestRef": {"name": "ghcr.io/team/web", "tag": "1.10"}},
  {"namespace": "other", "name": "side", "latestRef": {"name": "side", "tag": "2"}}
]}"#;

fn setup() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("tree")).unwrap();
    std::fs::write(tmp.path().join("tree/deploy.yaml"), DEPLOY).unwrap();
    std::fs::write(tmp.path().join("policies.json"), POLICIES_JSON).unwrap();
    tmp
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("update")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `update --path tree --policies policies.json ARGS` and checks that it succeeded.
#[track_caller]
fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(
        dir,
        &[&["--path", "tree", "--policies", "policies.json"], args].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn deploy(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("tree/deploy.yaml")).unwrap()
}

#[test]
fn text_output_rewrites_and_reports() {
    let tmp = setup();
    let out = run_ok(tmp.path(), &[]);
    let text = stdout(&out);
    assert!(
        text.contains("deploy.yaml\n  apps/v1 Deployment web\n"),
        "{text}"
    );
    assert!(
        text.contains("line 10: ghcr.io/team/web:1.0.0 -> ghcr.io/team/web:1.10 (flux-system:web)"),
        "{text}"
    );
    assert!(
        text.contains("deploy.yaml:12: OtherNamespace \"other:side\""),
        "{text}"
    );
    assert!(text.contains("1 change in 1 file\n"), "{text}");
    assert_eq!(deploy(tmp.path()), DEPLOY.replace("web:1.0.0", "web:1.10"));
}

#[test]
fn json_output_is_one_object() {
    let tmp = setup();
    let out = run_ok(tmp.path(), &["--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let object = value.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["changes", "unmatched"],
        "no message without a template, no diff without --dry-run"
    );
    assert_eq!(
        value["changes"],
        serde_json::json!([{
            "path": "deploy.yaml",
            "objects": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "",
                "changes": [{
                    "oldValue": "ghcr.io/team/web:1.0.0", "newValue": "ghcr.io/team/web:1.10",
                    "setter": "flux-system:web", "line": 10
                }]
            }]
        }])
    );
    assert_eq!(value["unmatched"][0]["reason"], "OtherNamespace");
    assert_eq!(value["unmatched"][0]["line"], 12);
    assert_eq!(deploy(tmp.path()), DEPLOY.replace("web:1.0.0", "web:1.10"));
}

#[test]
fn other_namespace_applies_its_own_policies() {
    let tmp = setup();
    run_ok(tmp.path(), &["--namespace", "other"]);
    assert_eq!(deploy(tmp.path()), DEPLOY.replace("side:1 ", "side:2 "));
}

#[test]
fn dry_run_writes_nothing_and_prints_a_diff() {
    let tmp = setup();
    let out = run_ok(tmp.path(), &["--dry-run"]);
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "--- a/deploy.yaml\n+++ b/deploy.yaml\n@@ -7,6 +7,6 @@\n spec:\n   containers:\n   - name: web\n\
             -    image: ghcr.io/team/web:1.0.0 # {\"$imagepolicy\": \"flux-system:web\"}\n\
             +    image: ghcr.io/team/web:1.10 # {\"$imagepolicy\": \"flux-system:web\"}\n"
        ),
        "{text}"
    );
    assert!(text.contains("(dry run: nothing written)"), "{text}");
    assert_eq!(deploy(tmp.path()), DEPLOY);

    let out = run_ok(tmp.path(), &["--dry-run", "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        value["diff"]
            .as_str()
            .unwrap()
            .contains("+    image: ghcr.io/team/web:1.10")
    );
    assert_eq!(deploy(tmp.path()), DEPLOY);
}

#[test]
fn yaml_policies_file() {
    let tmp = setup();
    std::fs::write(
        tmp.path().join("policies.yaml"),
        "items:\n- namespace: flux-system\n  name: web\n  latestRef:\n    name: ghcr.io/team/web\n    tag: \"2.0\"\n",
    )
    .unwrap();
    let out = run(
        tmp.path(),
        &["--path", "tree", "--policies", "policies.yaml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(deploy(tmp.path()), DEPLOY.replace("web:1.0.0", "web:2.0"));
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let tmp = setup();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--path", "tree", "--policies", "missing.json"],
            "reading policies file missing.json",
        ),
        (
            &["--path", "nope", "--policies", "policies.json"],
            "--path nope is not a directory",
        ),
        (
            &["--path", "tree", "--policies", "bad.json"],
            "policies file bad.json is not a policy list",
        ),
        (
            &[
                "--path",
                "tree",
                "--policies",
                "policies.json",
                "--message-template",
                "none.tmpl",
            ],
            "reading message template none.tmpl",
        ),
        (&["--path", "tree"], "--policies"),
        (
            &[
                "--path",
                "tree",
                "--policies",
                "policies.json",
                "--output",
                "xml",
            ],
            "xml",
        ),
    ];
    std::fs::write(tmp.path().join("bad.json"), r#"{"items": [{"name": 1}]}"#).unwrap();
    for (args, expected) in cases {
        let out = run(tmp.path(), args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    assert_eq!(deploy(tmp.path()), DEPLOY);
}

/// A policy whose latest image is not a valid reference is skipped and reported; the other
/// policies still apply (before, the whole run failed with "invalid latest image").
#[test]
fn an_invalid_latest_image_skips_only_its_policy() {
    let tmp = setup();
    std::fs::write(
        tmp.path().join("tree/side.yaml"),
        "image: ghcr.io/team/side:1 # {\"$imagepolicy\": \"flux-system:side\"}\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("badref.json"),
        r#"{"items": [
          {"namespace": "flux-system", "name": "web", "latestRef": {"name": "web", "tag": "bad tag"}},
          {"namespace": "flux-system", "name": "side", "latestRef": {"name": "ghcr.io/team/side", "tag": "2"}}
        ]}"#,
    )
    .unwrap();
    let out = run(
        tmp.path(),
        &[
            "--path",
            "tree",
            "--policies",
            "badref.json",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let unmatched = report["unmatched"].as_array().unwrap();
    let bad = unmatched
        .iter()
        .find(|u| u["setter"] == "flux-system:web")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(bad["reason"], "InvalidLatestImage");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("policy flux-system/web: invalid latest image reference"),
        "{bad}"
    );
    assert_eq!(
        deploy(tmp.path()),
        DEPLOY,
        "the bad policy's marker is untouched"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("tree/side.yaml")).unwrap(),
        "image: ghcr.io/team/side:2 # {\"$imagepolicy\": \"flux-system:side\"}\n"
    );
}

#[test]
fn message_template_is_rendered() {
    let tmp = setup();
    std::fs::write(
        tmp.path().join("msg.tmpl"),
        "Automation: {{ .AutomationObject }}\n{{ range .Changed.Changes }}- {{ .NewValue }} ({{ .Setter }})\n{{ end }}\
         {{ range .Updated.Images }}legacy {{ . }}{{ end }}",
    )
    .unwrap();
    let args = [
        "--message-template",
        "msg.tmpl",
        "--automation",
        "apps",
        "--output",
        "json",
        "--dry-run",
    ];
    let out = run_ok(tmp.path(), &args);
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        value["message"],
        "Automation: flux-system/apps\n- ghcr.io/team/web:1.10 (flux-system:web)\nlegacy ghcr.io/team/web:1.10"
    );

    let out = run_ok(tmp.path(), &args[..4]);
    assert!(
        stdout(&out).ends_with("message:\nAutomation: flux-system/apps\n- ghcr.io/team/web:1.10 (flux-system:web)\nlegacy ghcr.io/team/web:1.10\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_template_fails_before_writing() {
    let tmp = setup();
    std::fs::write(tmp.path().join("bad.tmpl"), "ok\n{{ nosuchfn . }}").unwrap();
    let out = run(
        tmp.path(),
        &[
            "--path",
            "tree",
            "--policies",
            "policies.json",
            "--message-template",
            "bad.tmpl",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("message template bad.tmpl"), "{err}");
    assert!(err.contains("commit message:2"), "{err}");
    assert_eq!(deploy(tmp.path()), DEPLOY);
}

/// One retry backoff for both services: Flux's 750ms doubling up to 15m, the same defaults
/// as image-reflector (issue 14: the automation used 2s to 5m).
#[test]
fn serve_retry_delays_default_to_fluxs_like_the_reflector() {
    use testbed::controllers::{reflector_binary, serve_flag_default};
    let automation = Path::new(BIN);
    let reflector = reflector_binary();
    for (flag, flux) in [("--min-retry-delay", "750ms"), ("--max-retry-delay", "15m")] {
        assert_eq!(serve_flag_default(automation, flag), flux, "{flag}");
        assert_eq!(serve_flag_default(&reflector, flag), flux, "{flag}");
    }
}

/// `serve --help` of `program` as (flag, default) pairs in the order printed.
fn serve_flags(program: &Path) -> Vec<(String, Option<String>)> {
    let output = std::process::Command::new(program)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} serve --help",
        program.display()
    );
    let help = String::from_utf8(output.stdout).unwrap();
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed
            .strip_prefix("-h, ")
            .unwrap_or(trimmed)
            .split([' ', '='])
            .next()
            .filter(|f| f.starts_with("--") && line.starts_with("  "));
        if let Some(flag) = flag {
            flags.push((flag.to_owned(), None));
        }
        if let (Some(last), Some((_, rest))) = (flags.last_mut(), line.split_once("[default: ")) {
            last.1 = rest.split(']').next().map(str::to_owned);
        }
    }
    flags
}

/// The public `serve` flags and defaults of both binaries (docs/interfaces, Flux's names),
/// checked by hand: the shared `kube_support::args` groups must not rename a flag or move
/// a default, including the two defaults the services keep apart (leader election, log
/// encoding).
#[test]
fn serve_flags_and_defaults_are_the_checked_list() {
    let expected = |list: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|(f, d)| ((*f).to_owned(), d.map(str::to_owned)))
            .collect()
    };
    let automation = expected(&[
        ("--manifests", None),
        ("--reflector-url", None),
        ("--storage-path", Some("/data")),
        ("--http-addr", Some("0.0.0.0:8080")),
        ("--once", None),
        ("--no-cross-namespace-refs", Some("false")),
        ("--concurrent", Some("4")),
        ("--watch-label-selector", Some("\"\"")),
        ("--enable-leader-election", Some("true")),
        ("--leader-election-lease-duration", Some("35s")),
        ("--min-retry-delay", Some("750ms")),
        ("--max-retry-delay", Some("15m")),
        ("--removed-template-fields", Some("render")),
        ("--feature-gates", Some("\"\"")),
        ("--default-service-account", Some("\"\"")),
        ("--token-cache-max-size", Some("100")),
        ("--token-cache-max-duration", Some("1h")),
        ("--log-level", Some("info")),
        ("--log-encoding", Some("console")),
        ("--help", None),
    ]);
    let reflector = expected(&[
        ("--http-addr", Some("0.0.0.0:8080")),
        ("--storage-path", Some("/data")),
        ("--manifests", None),
        ("--concurrent", Some("4")),
        ("--requeue-dependency", Some("30s")),
        ("--min-retry-delay", Some("750ms")),
        ("--max-retry-delay", Some("15m")),
        ("--no-cross-namespace-refs", Some("false")),
        ("--watch-label-selector", Some("\"\"")),
        ("--enable-leader-election", Some("false")),
        ("--leader-election-lease-duration", Some("35s")),
        ("--advertise-url", None),
        ("--max-tags-per-repository", Some("100000")),
        ("--max-tag-pages", Some("1000")),
        ("--max-tag-page-bytes", Some("33554432")),
        ("--feature-gates", Some("\"\"")),
        ("--default-service-account", Some("\"\"")),
        ("--token-cache-max-size", Some("100")),
        ("--token-cache-max-duration", Some("1h")),
        ("--log-level", Some("info")),
        ("--log-encoding", Some("json")),
        ("--help", None),
    ]);
    assert_eq!(serve_flags(Path::new(BIN)), automation);
    assert_eq!(
        serve_flags(&testbed::controllers::reflector_binary()),
        reflector
    );
}
