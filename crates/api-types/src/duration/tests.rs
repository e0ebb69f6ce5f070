use super::*;

#[test]
fn go_duration_matches_go() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_secs(60), "1m0s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_millis(750), "750ms"),
        (Duration::from_micros(1500), "1.5ms"),
        (Duration::from_nanos(12), "12ns"),
    ];
    for (d, want) in cases {
        assert_eq!(format_duration(d), want, "{d:?}");
    }
}

#[test]
fn parses_what_go_parses() {
    let cases = [
        ("0", Duration::ZERO),
        ("5m", Duration::from_secs(300)),
        ("1m0s", Duration::from_secs(60)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("250ms", Duration::from_millis(250)),
        ("2h45m", Duration::from_secs(9900)),
        (".5s", Duration::from_millis(500)),
        ("1.s", Duration::from_secs(1)),
        ("10us", Duration::from_micros(10)),
        ("10µs", Duration::from_micros(10)),
        ("3ns", Duration::from_nanos(3)),
        ("+6h", Duration::from_secs(21600)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
}

#[test]
fn rejects_what_go_rejects() {
    for text in [
        "",
        "5",
        "m",
        "1d",
        "-1s",
        "1.5.5s",
        ".s",
        "1 m",
        "0s5",
        "9999999999h",
    ] {
        assert!(parse_duration(text).is_err(), "{text}");
    }
    assert_eq!(
        parse_duration("1d").unwrap_err().to_string(),
        "time: invalid duration \"1d\""
    );
}
