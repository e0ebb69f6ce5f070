use super::*;

fn expand(pattern: &str, template: &str, tag: &str) -> Option<String> {
    let f = TagFilter::new(pattern, template).ok()?;
    let mut out = String::new();
    f.apply(tag, &mut out).ok()?.then_some(out)
}

#[test]
fn go_expand_rules() {
    assert_eq!(expand(r"ver(\d+)", "$1", "xver12y").as_deref(), Some("12"));
    assert_eq!(expand(r"ver(\d+)", "$1x", "ver12").as_deref(), Some(""));
    assert_eq!(
        expand(r"ver(\d+)", "${1}x", "ver12").as_deref(),
        Some("12x")
    );
    assert_eq!(
        expand(r"ver(\d+)", "$0", "aver12").as_deref(),
        Some("ver12")
    );
    assert_eq!(expand(r"ver(\d+)", "$$1", "ver12").as_deref(), Some("$1"));
    assert_eq!(expand(r"ver(\d+)", "a$", "ver12").as_deref(), Some("a$"));
    assert_eq!(expand(r"ver(\d+)", "${1", "ver12").as_deref(), Some("${1"));
    assert_eq!(expand(r"ver(\d+)", "$01", "ver12").as_deref(), Some(""));
    assert_eq!(expand(r"ver(\d+)", "$9", "ver12").as_deref(), Some(""));
    assert_eq!(
        expand(r"(?P<n>\d+)-(?P<m>\w+)", "$m.${n}", "12-ab").as_deref(),
        Some("ab.12")
    );
    assert_eq!(expand(r"(?P<n>\d+)", "$nope", "12").as_deref(), Some(""));
    assert_eq!(expand(r"^ver", "", "rel1"), None);
}

#[test]
fn go_literals_stay_literal() {
    assert_eq!(expand(r"\<(\d)", "$1", "<7").as_deref(), Some("7"));
    assert_eq!(expand(r"[a&&b]+", "$0", "x&&b").as_deref(), Some("&&b"));
    assert_eq!(expand(r"a{,2}", "$0", "a{,2}").as_deref(), Some("a{,2}"));
    assert_eq!(expand(r"\Q.*\E", "$0", "a.*b").as_deref(), Some(".*"));
    assert_eq!(
        expand(r"[[:digit:]x[]+", "$0", "a1[x").as_deref(),
        Some("1[x")
    );
    assert_eq!(
        expand(r"\p{Greek}\x{41}", "$0", "\u{3b1}A").as_deref(),
        Some("\u{3b1}A")
    );
    assert_eq!(expand(r"[]a]+", "$0", "b]a").as_deref(), Some("]a"));
}

#[test]
fn rejects_what_go_rejects() {
    for p in [
        r"a(?=b)",
        r"a(?!b)",
        r"(?<=a)b",
        r"(?<!a)b",
        r"(a)\1",
        r"a*+",
        r"a++",
        r"a**",
        r"a{1001}",
        r"(?x)a b",
        r"\u0041",
        r"(?P<a.b>x)",
        r"[=",
        r"^test-(.*",
        r"(?>a)",
    ] {
        assert!(check_go_syntax(p).is_err(), "{p} should be rejected");
    }
    for p in [
        r"^v?(\d+)\.(\d+)\.(\d+)$",
        r"(?P<ts>\d+)-(?P<sha>[a-f0-9]+)",
        r"(?<ts>\d+)",
        r"(?i)RC",
        r"(?U)a+",
        r"a{2,1000}",
        r"[[:alpha:]_-]+",
        r"\pL\p{Greek}",
        r"\x{41}",
        r"a|b|",
        r"\<a",
        r"[a&&b]",
        r"a{,2}",
        r"\Q.*\E",
    ] {
        assert!(check_go_syntax(p).is_ok(), "{p} should be accepted");
    }
}
