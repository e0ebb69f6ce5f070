#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Execution tests that need no Go toolchain (expected strings were checked against Go 1.19).

use go_template::{Error, Map, Object, Template, Value};

fn render(t: &str, data: &Value) -> Result<String, Error> {
    Template::parse("commit message", t)?.execute(data)
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
