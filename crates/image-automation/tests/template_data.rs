#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Flux's template data rendered by go-template (expected strings were checked against Go 1.19).

use go_template::{Error, Template, Value};
use image_automation::template_data::{self as flux, Change, FileChange, LegacyImage, ObjectId};

fn render(t: &str, data: &Value) -> Result<String, Error> {
    Template::parse("commit message", t)?.execute(data)
}

fn deploy() -> (String, ObjectId) {
    (
        "deploy.yaml".into(),
        ObjectId {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "test".into(),
            namespace: String::new(),
        },
    )
}

#[test]
fn flux_pinned_render_legacy_shape() {
    let (file, obj) = deploy();
    let img = LegacyImage {
        string: "helloworld:v1.0.0".into(),
        policy_namespace: "ns".into(),
        policy_name: "policy".into(),
        ..Default::default()
    };
    let data = flux::legacy_template_data("ns", "update-test", &[(file, obj, img)]);
    let t = "Commit summary\n\nAutomation: {{ .AutomationObject }}\n\nFiles:\n{{ range $filename, $_ := .Updated.Files -}}\n- {{ $filename }}\n{{ end -}}\n\nObjects:\n{{ range $resource, $_ := .Updated.Objects -}}\n{{ if eq $resource.Kind \"Deployment\" -}}\n- {{ $resource.Kind | lower }} {{ $resource.Name | lower }}\n{{ else -}}\n- {{ $resource.Kind }} {{ $resource.Name }}\n{{ end -}}\n{{ end -}}\n\nImages:\n{{ range .Updated.Images -}}\n- {{.}} ({{.Policy.Name}})\n{{ end -}}\n";
    assert_eq!(
        render(t, &data).unwrap(),
        "Commit summary\n\nAutomation: ns/update-test\n\nFiles:\n- deploy.yaml\nObjects:\n- deployment test\nImages:\n- helloworld:v1.0.0 (policy)\n"
    );
}

#[test]
fn removed_field_error_names_line_and_type() {
    let (file, object) = deploy();
    let change = Change {
        old_value: "a".into(),
        new_value: "b".into(),
        setter: "ns:p".into(),
    };
    let data = flux::template_data(
        "ns",
        "n",
        &[FileChange {
            file,
            object,
            change,
        }],
        None,
    );
    let err = render("x\n{{ range .Updated.Images }}{{ end }}", &data).unwrap_err();
    assert_eq!(
        err,
        Error::Exec("template: commit message:2:17: executing \"commit message\" at <.Updated.Images>: can't evaluate field Updated in type source.TemplateData".into())
    );
    assert_eq!(
        render("{{ range $o, $c := .Changed.Objects }}{{ $o.Kind }}//{{ $o.Name }} {{ $o }} {{ $c }}{{ end }}", &data).unwrap(),
        "Deployment//test {{{apps/v1 Deployment} {test }}} [{a b ns:p}]"
    );
    assert_eq!(
        render("{{ .Values.x }}|{{ .Values }}", &data).unwrap(),
        "<no value>|map[]"
    );
}
