use super::*;

fn f(fmt: &str, args: Vec<Value>) -> String {
    sprintf(fmt, &args)
}

#[test]
fn verbs() {
    assert_eq!(
        f(
            "%d|%5d|%-5d|%05d|%x|%X|%o|%b",
            vec![
                3.into(),
                42.into(),
                42.into(),
                (-42).into(),
                255.into(),
                255.into(),
                8.into(),
                5.into()
            ]
        ),
        "3|   42|42   |-0042|ff|FF|10|101"
    );
    assert_eq!(
        f(
            "%s|%q|%v|%t|%c|%%",
            vec!["a".into(), "b\n".into(), Value::Nil, true.into(), 65.into()]
        ),
        "a|\"b\\n\"|<nil>|true|A|%"
    );
    assert_eq!(f("%d %s", vec!["x".into()]), "%!d(string=x) %!s(MISSING)");
    assert_eq!(f("%d", vec![1.into(), 2.into()]), "1%!(EXTRA int=2)");
    assert_eq!(
        f(
            "%.2f|%8.3f|%e|%g|%v|%v|%v",
            vec![
                3.25159.into(),
                2.5.into(),
                1234.5678.into(),
                0.00001234.into(),
                1e21.into(),
                100000.0.into(),
                1e6.into()
            ]
        ),
        "3.25|   2.500|1.234568e+03|1.234e-05|1e+21|100000|1e+06"
    );
    assert_eq!(
        f(
            "%.3s|%5.1s|%-4s|",
            vec!["abcdef".into(), "xyz".into(), "ab".into()]
        ),
        "abc|    x|ab  |"
    );
}

#[test]
fn composite() {
    let m: crate::Map = [("b", 2), ("a", 1)].into_iter().collect();
    assert_eq!(sprint_value(&Value::Map(m)), "map[a:1 b:2]");
    assert_eq!(sprint_value(&Value::list(vec!["a", "b"])), "[a b]");
    let o = Object::new("T").field("A", "x").field("B", 1);
    assert_eq!(sprint_value(&Value::Object(o.clone())), "{x 1}");
    assert_eq!(f("%+v", vec![Value::Object(o)]), "{A:x B:1}");
    assert_eq!(
        sprint(&["a".into(), 1.into(), 2.into(), "b".into()]),
        "a1 2b"
    );
    assert_eq!(sprintln(&["a".into(), 1.into()]), "a 1\n");
    assert_eq!(sprint_value(&Value::list(vec![Value::Nil])), "[<nil>]");
}
