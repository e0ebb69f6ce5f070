#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Execution tests that need no Go toolchain (expected strings were checked against Go 1.19).

use go_template::flux::{self, Change, FileChange, LegacyImage, ObjectId};
use go_template::{Error, Map, Object, Template, Value};

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

#[test]
fn parse_errors_are_go_errors() {
    let e = Template::parse("commit message", "a\n{{ nosuchfn }}").unwrap_err();
    assert_eq!(
        e,
        Error::Parse("template: commit message:2: function \"nosuchfn\" not defined".into())
    );
    assert!(Template::validate("t", "{{ semver \"1.0.0\" }}").is_ok());
    let err = render("{{ semver \"1.0.0\" }}", &Value::Nil).unwrap_err();
    assert!(
        err.to_string().contains("function semver is not supported"),
        "{err}"
    );
}

#[test]
fn value_model_basics() {
    let obj = Object::new("main.T")
        .field("A", 1)
        .method("M", "method")
        .display("shown");
    let mut m = Map::new();
    m.insert(Value::Object(obj.clone()), "v");
    let data = Value::Object(
        Object::new("main.D")
            .field("O", obj)
            .field("M", m)
            .field("L", vec![3, 1]),
    );
    assert_eq!(
        render("{{ .O }} {{ .O.A }} {{ .O.M }} {{ .O.String }} {{ .M }} {{ .L }} {{ printf \"%+v\" .L }}", &data).unwrap(),
        "shown 1 method shown map[shown:v] [3 1] [3 1]"
    );
    let err = render("{{ .O.Nope }}", &data).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("can't evaluate field Nope in type main.T"),
        "{err}"
    );
}

#[test]
fn set_mutates_variables_like_go_maps() {
    let out = render(
        "{{ $d := dict \"a\" 1 }}{{ $_ := set $d \"b\" 2 }}{{ $d }} {{ $n := dict \"in\" (dict) }}{{ $_ := set $n.in \"x\" 1 }}{{ $n }}",
        &Value::Nil,
    )
    .unwrap();
    assert_eq!(out, "map[a:1 b:2] map[in:map[x:1]]");
}

#[test]
fn quoted_strings_and_char_constants_scan_escapes_and_reject_unterminated() {
    assert_eq!(render(r#"{{ "a\"b" }}"#, &Value::Nil).unwrap(), "a\"b");
    assert_eq!(render(r"{{ '\'' }}", &Value::Nil).unwrap(), "39");
    assert_eq!(render("{{ 'a' }}", &Value::Nil).unwrap(), "97");
    for (text, message) in [
        ("{{ \"abc }}", "unterminated quoted string"),
        ("{{ \"a\nb\" }}", "unterminated quoted string"),
        ("{{ \"a\\", "unterminated quoted string"),
        ("{{ 'a }}", "unterminated character constant"),
        ("{{ '\n' }}", "unterminated character constant"),
    ] {
        let err = Template::parse("t", text).unwrap_err().to_string();
        assert!(err.contains(message), "{text:?}: {err}");
    }
}
