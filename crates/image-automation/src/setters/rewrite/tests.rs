use api_types::ImageRef;

use super::*;

fn setters() -> Setters {
    let mut s = Setters::new("ns");
    let image = |name: &str, tag: &str| ImageRef {
        name: name.into(),
        tag: tag.into(),
        digest: None,
    };
    s.add("app", Some(image("reg.io/app", "v2"))).unwrap();
    s.add("num", Some(image("reg.io/num", "1.10"))).unwrap();
    s
}

fn run(text: &str) -> FileRewrite {
    rewrite("f.yaml", text, &setters())
}

fn out(text: &str) -> String {
    run(text).output.unwrap_or_else(|| text.to_owned())
}

const M: &str = r#"# {"$imagepolicy": "ns:app"}"#;
const T: &str = r#"# {"$imagepolicy": "ns:app:tag"}"#;

#[test]
fn rewrites_only_the_marked_scalar() {
    let text = format!("a: 1\n\nimage: old:v1 {M}\nb:   x # c\n");
    assert_eq!(
        out(&text),
        format!("a: 1\n\nimage: reg.io/app:v2 {M}\nb:   x # c\n")
    );
    let r = run(&text);
    assert_eq!(r.objects.len(), 1);
    assert_eq!(
        r.objects[0].changes,
        vec![Change {
            old_value: "old:v1".into(),
            new_value: "reg.io/app:v2".into(),
            setter: "ns:app".into(),
            line: 3
        }]
    );
}

#[test]
fn keeps_quotes_and_quotes_non_strings() {
    assert_eq!(out(&format!("t: 'v1' {T}\n")), format!("t: 'v2' {T}\n"));
    assert_eq!(out(&format!("t: \"v1\" {T}\n")), format!("t: \"v2\" {T}\n"));
    let num = r#"# {"$imagepolicy": "ns:num:tag"}"#;
    assert_eq!(
        out(&format!("t: 1.0 {num}\n")),
        format!("t: \"1.10\" {num}\n")
    );
    assert_eq!(
        out(&format!("t: '1.0' {num}\n")),
        format!("t: '1.10' {num}\n")
    );
}

#[test]
fn head_comment_applies_to_sequence_items_only() {
    let text = format!("args:\n  {M}\n  - old\n  - keep\n");
    assert_eq!(
        out(&text),
        format!("args:\n  {M}\n  - reg.io/app:v2\n  - keep\n")
    );
    let text = format!("a:\n  {M}\n  image: old\n");
    let r = run(&text);
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched.len(), 1);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::NotAttached);
    assert_eq!(r.unmatched[0].line, Some(2));
}

#[test]
fn multi_line_head_comment_is_not_a_marker() {
    let text = format!("args:\n  # note\n  {M}\n  - old\n");
    let r = run(&text);
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::InvalidMarker);
}

#[test]
fn line_comment_wins_over_head_comment() {
    let text = format!("args:\n  {M}\n  - old # other\n");
    let r = run(&text);
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::NotAttached);
}

#[test]
fn flow_collections() {
    assert_eq!(
        out(&format!(
            "c: {{image: old, x: y}} # ignored\nd: {{image: old}} {M}\n"
        )),
        format!("c: {{image: old, x: y}} # ignored\nd: {{image: reg.io/app:v2}} {M}\n")
    );
    assert_eq!(
        out(&format!("l: [a, old] {M}\n")),
        format!("l: [a, reg.io/app:v2] {M}\n")
    );
}

#[test]
fn markers_on_keys_and_block_scalars_are_reported() {
    let r = run(&format!("image: {M}\n  old: x\n"));
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::NotAttached);
    let r = run(&format!("image: | {M}\n  old\n"));
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::UnsupportedScalar);
}

#[test]
fn empty_value_gets_a_value() {
    assert_eq!(
        out(&format!("t: {T}\nn: 1\n")),
        format!("t: v2 {T}\nn: 1\n")
    );
    assert_eq!(out(&format!("t: ~ {T}\n")), format!("t: v2 {T}\n"));
}

#[test]
fn crlf_and_multi_documents() {
    let text = format!("---\r\nkind: A\r\nimage: old {M}\r\n---\r\nkind: B\r\nimage: old {M}\r\n");
    let r = run(&text);
    assert_eq!(r.output, Some(text.replace("old", "reg.io/app:v2")));
    let kinds: Vec<_> = r.objects.iter().map(|o| o.id.kind.as_str()).collect();
    assert_eq!(kinds, ["A", "B"]);
}

#[test]
fn list_items_are_their_own_objects() {
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  \
             metadata:\n    name: web\n    namespace: prod\n  image: old {M}\n"
    );
    let r = run(&text);
    assert_eq!(
        r.objects[0].id,
        ObjectId {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            namespace: "prod".into()
        }
    );
}

#[test]
fn identifies_kubernetes_objects() {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    \
             name: nope\nspec:\n  image: old {M}\n"
    );
    let r = run(&text);
    assert_eq!(r.objects[0].id.name, "web");
    assert_eq!(r.objects[0].id.namespace, "");
    assert_eq!(r.objects[0].id.kind, "Deployment");
}

#[test]
fn unparseable_file_is_reported_with_line() {
    let r = run(&format!("a: b\n c: d {M}\n"));
    assert_eq!(r.output, None);
    assert_eq!(r.unmatched[0].reason, UnmatchedReason::UnparseableFile);
    assert_eq!(r.unmatched[0].line, Some(2));
}

#[test]
fn empty_digest_writes_an_empty_string() {
    let d = r#"# {"$imagepolicy": "ns:app:digest"}"#;
    let r = run(&format!("digest: sha256:abc {d}\n"));
    assert_eq!(r.output.unwrap(), format!("digest: \"\" {d}\n"));
    assert_eq!(r.objects[0].changes[0].new_value, "");
}

#[test]
fn unchanged_value_is_no_change() {
    let r = run(&format!("image: reg.io/app:v2 {M}\n"));
    assert_eq!(r.output, None);
    assert!(r.objects.is_empty());
    assert!(r.unmatched.is_empty());
}
