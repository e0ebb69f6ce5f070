use super::*;

fn p(s: &str) -> PResult<Trees> {
    parse("t", s, &|n| n == "printf" || n == "len")
}

#[test]
fn node_strings() {
    let t = p("{{ $x := printf \"%d\" (len .A.B) | printf \"%s\" }}").unwrap();
    let s = t["t"][0].to_string();
    assert_eq!(s, "{{$x := printf \"%d\" (len .A.B) | printf \"%s\"}}");
}

#[test]
fn parse_errors() {
    assert_eq!(
        p("a\n{{ nosuch 1 }}").unwrap_err(),
        "template: t:2: function \"nosuch\" not defined"
    );
    assert_eq!(
        p("{{ $x }}").unwrap_err(),
        "template: t:1: undefined variable \"$x\""
    );
    assert_eq!(
        p("{{ if .X }}").unwrap_err(),
        "template: t:1: unexpected EOF"
    );
    assert_eq!(
        p("{{ end }}").unwrap_err(),
        "template: t:1: unexpected {{end}}"
    );
    assert_eq!(
        p("{{ break }}").unwrap_err(),
        "template: t:1: {{break}} outside {{range}}"
    );
}
