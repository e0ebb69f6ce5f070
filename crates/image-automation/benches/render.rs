//! Renders Flux's documented v1 template and the Gerrit Change-Id recipe over 1,000 changes.
//! Run with `cargo bench -p image-automation --bench render`; prints the time per render.

use std::time::Instant;

use go_template::Template;
use image_automation::template_data::{self as flux, Change, FileChange, ObjectId};

const DOCS_TEMPLATE: &str = "Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
";

const GERRIT_TEMPLATE: &str = "{{- $ChangeId := .AutomationObject -}}
{{- $ChangeId = printf \"%s%s\" $ChangeId ( .Changed.FileChanges | toString ) -}}
{{- $ChangeId = printf \"%s%s\" $ChangeId ( .Changed.Objects | toString ) -}}
{{- $ChangeId = printf \"%s%s\" $ChangeId ( .Changed.Changes | toString ) }}
Change-Id: {{ printf \"I%s\" ( sha256sum $ChangeId | trunc 40 ) }}
";

fn main() {
    let changes: Vec<FileChange> = (0..1000)
        .map(|i| FileChange {
            file: format!("apps/app-{:03}/deploy.yaml", i / 2),
            object: ObjectId {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: format!("app-{i}"),
                namespace: "apps".into(),
            },
            change: Change {
                old_value: format!("ghcr.io/acme/app-{i}:1.0.0"),
                new_value: format!("ghcr.io/acme/app-{i}:1.1.0"),
                setter: format!("flux-system:app-{i}"),
            },
        })
        .collect();
    let start = Instant::now();
    let data = flux::template_data("flux-system", "image-updates", &changes, None);
    println!("build template data (1,000 changes): {:?}", start.elapsed());
    for (name, text) in [
        ("docs template", DOCS_TEMPLATE),
        ("gerrit change-id", GERRIT_TEMPLATE),
    ] {
        let Ok(t) = Template::parse("commit message", text) else {
            eprintln!("{name}: parse failed");
            std::process::exit(1);
        };
        let runs = 20;
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..runs {
            match t.execute(&data) {
                Ok(out) => bytes = out.len(),
                Err(e) => {
                    eprintln!("{name}: {e}");
                    std::process::exit(1);
                }
            }
        }
        let per = start.elapsed() / runs;
        println!("render {name} over 1,000 changes: {per:?} per render ({bytes} bytes)");
    }
}
