use super::*;
use crate::setters::{Change, FileChanges, ObjectChanges};

fn setters() -> Setters {
    let mut s = Setters::new("flux-system");
    s.add(
        "podinfo",
        Some(ImageRef {
            name: "helloworld".into(),
            tag: "v1.0.0".into(),
            digest: None,
        }),
    )
    .unwrap();
    s
}

fn id(kind: &str, name: &str) -> ObjectId {
    ObjectId {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        namespace: String::new(),
    }
}

fn change(old: &str, new: &str, setter: &str) -> Change {
    Change {
        old_value: old.into(),
        new_value: new.into(),
        setter: setter.into(),
        line: 1,
    }
}

fn result() -> UpdateResult {
    UpdateResult {
        files: vec![FileChanges {
            path: "deploy.yaml".into(),
            objects: vec![ObjectChanges {
                id: id("Deployment", "test"),
                changes: vec![change(
                    "helloworld:1.0.0",
                    "helloworld:v1.0.0",
                    "flux-system:podinfo",
                )],
            }],
        }],
        unmatched: vec![],
    }
}

fn render_with(template: &str, result: &UpdateResult) -> String {
    let setters = setters();
    let input = TemplateInput {
        namespace: "flux-system",
        name: "update-test",
        result,
        values: None,
        setters: &setters,
    };
    render(template, &input).unwrap()
}

#[test]
fn default_template() {
    assert_eq!(
        render_with("", &result()),
        "Update from image update automation"
    );
}

#[test]
fn flux_test_pinned_template() {
    let template = "Commit summary\n\nAutomation: {{ .AutomationObject }}\n\nFiles:\n\
            {{ range $filename, $_ := .Changed.FileChanges -}}\n- {{ $filename }}\n{{ end -}}\n\
            Objects:\n{{ range $resource, $_ := .Changed.Objects -}}\n\
            - {{ $resource.Kind | lower }} {{ $resource.Name | lower }}\n{{ end -}}\n\
            Images:\n{{ range .Changed.Changes -}}\n- {{ .NewValue }} ({{ .Setter }})\n{{ end -}}\n";
    assert_eq!(
        render_with(template, &result()),
        "Commit summary\n\nAutomation: flux-system/update-test\n\nFiles:\n- deploy.yaml\n\
             Objects:\n- deployment test\nImages:\n- helloworld:v1.0.0 (flux-system:podinfo)\n"
    );
    assert_eq!(
        render_with(
            "{{ range $o, $_ := .Changed.Objects }}{{ $o.Kind }}/{{ $o.Namespace }}/{{ $o.Name }}{{ end }}",
            &result()
        ),
        "Deployment//test"
    );
}

#[test]
fn legacy_updated_data() {
    let template = "{{ range .Updated.Images }}- {{.}} {{.Identifier}} {{.Repository}} \
            {{.Registry}} {{.Name}} {{.Policy.Name}}\n{{ end }}\
            {{ range $f, $_ := .Updated.Files }}{{ $f }}{{ end }} \
            {{ range $o, $_ := .Updated.Objects }}{{ $o.Kind }} {{ $o.Name }}{{ end }}";
    assert_eq!(
        render_with(template, &result()),
        "- helloworld:v1.0.0 v1.0.0 library/helloworld index.docker.io \
             index.docker.io/library/helloworld:v1.0.0 podinfo\ndeploy.yaml Deployment test"
    );
}

/// The seeds' template (a Flux v1beta1 guide's) still renders, and is reported.
#[test]
fn seed_template_with_updated_renders_and_is_deprecated() {
    let seed = "Auto-update images\n{{ range .Updated.Images }}\n- {{.}}\n{{ end }}\n";
    assert_eq!(
        render_with(seed, &result()),
        "Auto-update images\n\n- helloworld:v1.0.0\n\n"
    );
    let found = deprecated_fields(seed);
    assert_eq!(
        found,
        [Deprecation {
            field: ".Updated",
            line: 2
        }]
    );
    let message = found[0].message();
    for part in [
        "spec.git.commit.messageTemplate",
        "'.Updated'",
        "'.Changed'",
    ] {
        assert!(message.contains(part), "{message}");
    }
}

#[test]
fn deprecation_is_found_by_parsing_not_by_text() {
    for template in [
        "{{ .Updated }}",
        "{{ with .Changed }}{{ $.Updated.Files }}{{ end }}",
        "{{ if true }}{{ len .Updated.Images }}{{ end }}",
        "{{ range .Changed.Changes }}{{ else }}{{ .Updated }}{{ end }}",
    ] {
        assert_eq!(deprecated_fields(template).len(), 1, "{template}");
    }
    for template in [
        "",
        "Updated {{ \".Updated\" }} {{/* .Updated */}}",
        "{{ range .Changed.Changes }}{{ .Updated }}{{ end }}",
        "{{ .Changed.Updated }}",
        "{{ .Updated",
    ] {
        assert!(deprecated_fields(template).is_empty(), "{template}");
    }
}

#[test]
fn stall_mode_renders_flux_v1_data_only() {
    let setters = setters();
    let r = result();
    let input = TemplateInput {
        namespace: "ns",
        name: "a",
        result: &r,
        values: None,
        setters: &setters,
    };
    let stall = |t: &str| render_as(t, &input, &Limits::DEFAULT, RemovedFields::Stall);
    for template in [
        "{{ range .Updated.Images }}{{ . }}{{ end }}",
        "x {{ $.Updated }}",
    ] {
        let err = stall(template).unwrap_err();
        assert!(matches!(err, MessageError::RemovedField), "{err:?}");
        assert_eq!(err.to_string(), REMOVED_UPDATED_MESSAGE);
    }
    // As in Flux, only a template that reaches `.Updated` fails.
    assert_eq!(
            stall("{{ if false }}{{ .Updated }}{{ end }}{{ range .Changed.Changes }}{{ .NewValue }}{{ end }}")
                .unwrap(),
            "helloworld:v1.0.0"
        );
    // Other execution errors stay what they are.
    assert!(matches!(
        stall("{{ .Nope }}").unwrap_err(),
        MessageError::Execute(_)
    ));
}

#[test]
fn objects_aggregate_across_files() {
    let mut r = result();
    r.files.push(FileChanges {
        path: "more.yaml".into(),
        objects: vec![ObjectChanges {
            id: id("Deployment", "test"),
            changes: vec![change("a", "b", "flux-system:podinfo:tag")],
        }],
    });
    assert_eq!(
        render_with(
            "{{ range $o, $c := .Changed.Objects }}{{ $o.Name }}={{ len $c }}{{ end }} {{ len .Changed.Changes }}",
            &r
        ),
        "test=2 2"
    );
}

#[test]
fn values_and_errors() {
    let setters = setters();
    let values = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
    let r = result();
    let input = TemplateInput {
        namespace: "ns",
        name: "a",
        result: &r,
        values: Some(&values),
        setters: &setters,
    };
    assert_eq!(
        render("{{ .Values.env }} {{ .Values.missing }}", &input).unwrap(),
        "prod <no value>"
    );
    let err = render("line\n{{ nosuchfn }}", &input).unwrap_err();
    assert!(matches!(err, MessageError::Parse(_)));
    assert!(err.to_string().contains("commit message:2"), "{err}");
    assert!(validate("{{ .X ").is_err());
}

#[test]
fn registry_defaults() {
    assert_eq!(
        registry_and_repository("nginx"),
        ("index.docker.io".into(), "library/nginx".into())
    );
    assert_eq!(
        registry_and_repository("docker.io/team/app"),
        ("index.docker.io".into(), "team/app".into())
    );
    assert_eq!(
        registry_and_repository("localhost:5000/app"),
        ("localhost:5000".into(), "app".into())
    );
    assert_eq!(
        registry_and_repository("team/app"),
        ("index.docker.io".into(), "team/app".into())
    );
}
