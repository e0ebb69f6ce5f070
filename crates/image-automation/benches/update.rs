//! `update` over a generated tree of 10,000 YAML files (1,000 with markers) against
//! `grep -rl '"$imagepolicy"'` over the same tree, in the same run. The goal is a ratio of at
//! most 3. Each engine run really rewrites the 1,000 marked files: the policies alternate
//! between two tags.
//!
//! Run with `cargo bench -p image-automation --bench update` (release profile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 10_000;
const MARKED: usize = 1_000;
const RUNS: usize = 7;
const LIMIT: f64 = 3.0;

fn manifest(i: usize, marked: bool) -> String {
    let marker = if marked {
        format!(" # {{\"$imagepolicy\": \"flux-system:app-{}\"}}", i % 50)
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: apps\n  \
         labels:\n    app.kubernetes.io/name: app-{i}\n    app.kubernetes.io/part-of: bench\n\nspec:\n  \
         replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: app-{i}\n  template:\n    \
         metadata:\n      labels:\n        app.kubernetes.io/name: app-{i}\n    spec:\n      containers:\n      \
         - name: app\n        image: registry.example.com/team/app-{}:1.0.0{marker}\n        ports:\n        \
         - containerPort: 8080\n          name: http\n        resources:\n          requests:\n            \
         cpu: 100m\n            memory: 128Mi\n        env:\n        - name: LOG_LEVEL\n          value: info\n      \
         - name: sidecar\n        image: registry.example.com/tools/proxy:2.3.4\n        args: [\"--port\", \"9090\"]\n",
        i % 50
    )
}

fn policies(dir: &Path, tag: &str) {
    let items: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "{{\"namespace\": \"flux-system\", \"name\": \"app-{i}\", \"latestRef\": \
                 {{\"name\": \"registry.example.com/team/app-{i}\", \"tag\": \"{tag}\"}}}}"
            )
        })
        .collect();
    std::fs::write(
        dir.join(format!("policies-{tag}.json")),
        format!("{{\"items\": [{}]}}", items.join(",")),
    )
    .unwrap();
}

fn time(mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special. Either way
    // this is cheap enough to run.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    // Marked files are spread over the tree: every tenth file.
    for i in 0..FILES {
        let dir = tree.join(format!("team-{:02}/app-{:03}", i % 20, i / 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("deployment.yaml"),
            manifest(i, i % (FILES / MARKED) == 0),
        )
        .unwrap();
    }
    policies(tmp.path(), "1.0.1");
    policies(tmp.path(), "1.0.2");

    let grep = || {
        let out = Command::new("grep")
            .args(["-rl", "\"$imagepolicy\""])
            .arg(&tree)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), MARKED);
    };
    let mut run = 0usize;
    let mut update = || {
        run += 1;
        let tag = if run.is_multiple_of(2) {
            "1.0.2"
        } else {
            "1.0.1"
        };
        let out = Command::new(env!("CARGO_BIN_EXE_image-automation"))
            .args(["update", "--output", "json", "--path"])
            .arg(&tree)
            .arg("--policies")
            .arg(tmp.path().join(format!("policies-{tag}.json")))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["changes"].as_array().unwrap().len(), MARKED);
    };
    // Warm the page cache for both.
    grep();
    update();
    let mut greps = Vec::new();
    let mut updates = Vec::new();
    for _ in 0..RUNS {
        greps.push(time(grep));
        updates.push(time(&mut update));
    }
    let (g, u) = (median(greps), median(updates));
    let ratio = u.as_secs_f64() / g.as_secs_f64();
    println!(
        "update over {FILES} files ({MARKED} marked, all rewritten): {:.1} ms; \
         grep -rl: {:.1} ms; ratio {ratio:.2} (limit {LIMIT})",
        u.as_secs_f64() * 1e3,
        g.as_secs_f64() * 1e3
    );
    render_message();
    if ratio > LIMIT {
        println!("FAIL: update is more than {LIMIT}x grep");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Flux's documented template over 1,000 changes (200 files, 5 objects each).
fn render_message() {
    use image_automation::message::{TemplateInput, render};
    use image_automation::setters::{
        Change, FileChanges, ObjectChanges, ObjectId, Setters, UpdateResult,
    };
    let files = (0..200)
        .map(|f| FileChanges {
            path: format!("apps/app-{f:03}/deployment.yaml"),
            objects: (0..5)
                .map(|o| ObjectChanges {
                    id: ObjectId {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        name: format!("app-{f}-{o}"),
                        namespace: "apps".into(),
                    },
                    changes: vec![Change {
                        old_value: format!("registry.example.com/team/app-{f}:1.0.0"),
                        new_value: format!("registry.example.com/team/app-{f}:1.0.{o}"),
                        setter: format!("flux-system:app-{f}"),
                        line: 20,
                    }],
                })
                .collect(),
        })
        .collect();
    let result = UpdateResult {
        files,
        unmatched: Vec::new(),
    };
    let setters = Setters::new("flux-system");
    let input = TemplateInput {
        namespace: "flux-system",
        name: "image-updates",
        result: &result,
        values: None,
        setters: &setters,
    };
    let template = "Automated image update\n\nAutomation name: {{ .AutomationObject }}\n\n\
        Files:\n{{ range $filename, $_ := .Changed.FileChanges -}}\n- {{ $filename }}\n{{ end -}}\n\n\
        Objects:\n{{ range $resource, $changes := .Changed.Objects -}}\n\
        - {{ $resource.Kind }} {{ $resource.Name }}\n  Changes:\n{{- range $_, $change := $changes }}\n\
            - {{ $change.OldValue }} -> {{ $change.NewValue }}\n{{ end -}}\n{{ end -}}\n";
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        size = render(template, &input).unwrap().len();
        times.push(start.elapsed());
    }
    println!(
        "message template over 1000 changes: {:.2} ms ({size} bytes)",
        median(times).as_secs_f64() * 1e3
    );
}
