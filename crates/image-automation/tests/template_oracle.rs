#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Differential test against Go: every case in `tests/template_oracle/corpus.txt` is rendered by Go's
//! `text/template` with Sprig's `HermeticTxtFuncMap` (the Go program in `tests/template_oracle/src/oracle`,
//! built in GOPATH mode against Debian's golang-go and golang-github-masterminds-sprig-dev) and by
//! this crate over the same data, and the results must be byte-identical (or fail with the same
//! message). The test fails, not skips, when Go or Sprig is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use go_template::{Map, Template, Value};
use image_automation::template_data::{self as flux, Change, FileChange, LegacyImage, ObjectId};
use serde_json::Value as J;

const SPRIG_SRC: &str = "/usr/share/gocode/src/github.com/Masterminds";

struct Case {
    name: String,
    fixture: String,
    shape: String,
    template: String,
}

fn parse_corpus(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(h) = line.strip_prefix("=== ") {
            if let Some(c) = cases.last_mut() {
                c.template.pop();
            }
            let parts: Vec<&str> = h.trim_end().split('|').map(str::trim).collect();
            assert_eq!(parts.len(), 3, "bad corpus header: {line}");
            cases.push(Case {
                name: parts[0].into(),
                fixture: parts[1].into(),
                shape: parts[2].into(),
                template: String::new(),
            });
        } else if let Some(c) = cases.last_mut() {
            c.template.push_str(line);
        }
    }
    if let Some(c) = cases.last_mut()
        && c.template.ends_with('\n')
    {
        c.template.pop();
    }
    cases
}

fn s(v: &J, k: &str) -> String {
    v.get(k).and_then(J::as_str).unwrap_or_default().to_string()
}

fn from_json(v: &J) -> Value {
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap()),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::List(a.iter().map(from_json).collect()),
        J::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k.as_str(), from_json(v));
            }
            Value::Map(m)
        }
    }
}

fn data(fixture: &J, shape: &str) -> Value {
    let ns = s(fixture, "Namespace");
    let name = s(fixture, "Name");
    let changes = fixture["Changes"].as_array().cloned().unwrap_or_default();
    let oid = |c: &J| ObjectId {
        api_version: s(c, "APIVersion"),
        kind: s(c, "Kind"),
        name: s(c, "ObjName"),
        namespace: s(c, "ObjNamespace"),
    };
    match shape {
        "v1" => {
            let fc: Vec<FileChange> = changes
                .iter()
                .map(|c| FileChange {
                    file: s(c, "File"),
                    object: oid(c),
                    change: Change {
                        old_value: s(c, "OldValue"),
                        new_value: s(c, "NewValue"),
                        setter: s(c, "Setter"),
                    },
                })
                .collect();
            let values: Option<BTreeMap<String, String>> = fixture["Values"].as_object().map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            });
            flux::template_data(&ns, &name, &fc, values.as_ref())
        }
        "legacy" => {
            let imgs: Vec<(String, ObjectId, LegacyImage)> = changes
                .iter()
                .filter(|c| c["Image"].is_object())
                .map(|c| {
                    let i = &c["Image"];
                    (
                        s(c, "File"),
                        oid(c),
                        LegacyImage {
                            string: s(i, "String"),
                            identifier: s(i, "Identifier"),
                            repository: s(i, "Repository"),
                            registry: s(i, "Registry"),
                            name: s(i, "Name"),
                            policy_namespace: s(i, "PolicyNamespace"),
                            policy_name: s(i, "PolicyName"),
                        },
                    )
                })
                .collect();
            flux::legacy_template_data(&ns, &name, &imgs)
        }
        _ => from_json(&fixture["JSON"]),
    }
}

fn go_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("go");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the Go oracle needs `go` on PATH (Debian: apt-get install golang-go \
         golang-github-masterminds-sprig-dev; see /work/shared/notes/real-kube-apiserver.md)"
    );
}

/// Builds the oracle binary in GOPATH mode with an overlay providing Sprig's `/v3` import paths.
fn build_oracle(work: &Path) -> PathBuf {
    let go = go_binary();
    for dep in ["sprig", "semver"] {
        assert!(
            Path::new(SPRIG_SRC).join(dep).is_dir(),
            "the Go oracle needs {SPRIG_SRC}/{dep} (Debian: golang-github-masterminds-{dep}-dev)"
        );
    }
    let overlay = work.join("gopath");
    for dep in ["sprig", "semver"] {
        let dir = overlay.join("src/github.com/Masterminds").join(dep);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("v3");
        if !link.exists() {
            std::os::unix::fs::symlink(Path::new(SPRIG_SRC).join(dep), &link).unwrap();
        }
    }
    let oracle_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/template_oracle");
    let gopath = format!(
        "{}:{}:/usr/share/gocode",
        oracle_root.display(),
        overlay.display()
    );
    let bin = work.join("oracle-bin");
    let out = Command::new(go)
        .args(["build", "-o"])
        .arg(&bin)
        .arg("oracle")
        .env("GOPATH", gopath)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", work.join("gocache"))
        .env("HOME", work)
        .output()
        .expect("running go build");
    assert!(
        out.status.success(),
        "building the Go oracle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn renders_like_go_text_template_and_sprig() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/template_oracle");
    let corpus = parse_corpus(&std::fs::read_to_string(dir.join("corpus.txt")).unwrap());
    let fixtures: J =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixtures.json")).unwrap()).unwrap();
    assert!(corpus.len() >= 50, "corpus unexpectedly small");

    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-template-oracle");
    std::fs::create_dir_all(&work).unwrap();
    let bin = build_oracle(&work);

    let input = serde_json::json!({
        "Fixtures": fixtures,
        "Cases": corpus.iter().map(|c| serde_json::json!({
            "Name": c.name, "Fixture": c.fixture, "Shape": c.shape, "Template": c.template,
        })).collect::<Vec<_>>(),
    });
    let input_path = work.join("input.json");
    std::fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
    let out = Command::new(&bin).arg(&input_path).output().unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<J> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), corpus.len());

    let mut failures = Vec::new();
    let mut rendered = 0;
    for (case, go) in corpus.iter().zip(&results) {
        assert_eq!(go["name"], case.name.as_str());
        let go_result: Result<String, String> = match go.get("output").and_then(J::as_str) {
            Some(o) => Ok(o.to_string()),
            None => Err(go["error"].as_str().unwrap_or_default().to_string()),
        };
        let data = data(&fixtures[&case.fixture], &case.shape);
        let ours = Template::parse("commit message", &case.template)
            .and_then(|t| t.execute(&data))
            .map_err(|e| e.to_string());
        if go_result.is_ok() {
            rendered += 1;
        }
        if ours != go_result {
            failures.push(format!(
                "--- case {}\n    go:   {:?}\n    rust: {:?}",
                case.name, go_result, ours
            ));
        }
    }
    eprintln!(
        "oracle: {} cases ({} rendered, {} errors), {} mismatches",
        corpus.len(),
        rendered,
        corpus.len() - rendered,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}
