#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rendering limits: each budget stops a hostile template with an error naming the limit,
//! before the memory or time is spent.

use std::time::Duration;

use go_template::{Error, LimitExceeded, Limits, Map, Template, Value};

fn data() -> Value {
    Value::Map(Map::new().with("s", "abc"))
}

fn render_with(t: &str, limits: &Limits) -> Result<String, Error> {
    Template::parse("commit message", t)?.execute_with(&data(), limits)
}

fn render(t: &str) -> Result<String, Error> {
    render_with(t, &Limits::DEFAULT)
}

/// The limit an execution stopped at, with its message.
#[track_caller]
fn stopped_by(t: &str, limits: &Limits) -> (LimitExceeded, String) {
    match render_with(t, limits) {
        Err(e) => (
            e.limit_exceeded()
                .unwrap_or_else(|| panic!("not a limit error: {e}")),
            e.to_string(),
        ),
        Ok(out) => panic!("rendered {} bytes, expected a limit error", out.len()),
    }
}

const SMALL_VALUES: Limits = Limits {
    max_value_bytes: 64 * 1024,
    ..Limits::DEFAULT
};

#[test]
fn the_three_reported_templates_stop_with_a_named_limit() {
    // Grew to 24 GB before the OOM killer ended it.
    let (e, msg) = stopped_by("{{ range until 100000000 }}x{{ end }}", &Limits::DEFAULT);
    assert_eq!(
        e,
        LimitExceeded::ValueSize {
            limit: Limits::DEFAULT.max_value_bytes
        }
    );
    assert!(
        msg.starts_with("template: commit message:1:")
            && msg.contains(" at <until 100000000>: value size limit exceeded"),
        "{msg}"
    );
    // Aborted the process (capacity overflow).
    let (e, msg) = stopped_by("{{ repeat 2000000000 \"x\" }}", &Limits::DEFAULT);
    assert!(matches!(e, LimitExceeded::ValueSize { .. }), "{msg}");
    assert!(msg.contains("at <repeat 2000000000 \"x\">"), "{msg}");
    // Ran for minutes at 1.2 GB.
    let nested = "{{ range until 1000 }}{{ range until 1000 }}{{ range until 1000 }}\
                  {{ $x := printf \"%v%v\" . . }}{{ end }}{{ end }}{{ end }}";
    // Whichever budget runs out first: the copies of the inner lists, the steps or the time.
    let (e, msg) = stopped_by(nested, &Limits::DEFAULT);
    assert!(
        matches!(
            e,
            LimitExceeded::Allocation { .. }
                | LimitExceeded::Steps { .. }
                | LimitExceeded::Time { .. }
        ),
        "{msg}"
    );
    // Without the allocation budget, the step budget stops it.
    let steps_only = Limits {
        max_allocated_bytes: usize::MAX,
        ..Limits::DEFAULT
    };
    let (e, msg) = stopped_by(nested, &steps_only);
    assert!(
        matches!(e, LimitExceeded::Steps { .. } | LimitExceeded::Time { .. }),
        "{msg}"
    );
}

#[test]
fn output_is_capped() {
    let limits = Limits {
        max_output_bytes: 100,
        ..Limits::DEFAULT
    };
    assert_eq!(
        render_with("{{ range until 10 }}0123456789{{ end }}", &limits)
            .unwrap()
            .len(),
        100
    );
    let (e, msg) = stopped_by("{{ range until 11 }}0123456789{{ end }}", &limits);
    assert_eq!(e, LimitExceeded::Output { limit: 100 });
    assert!(
        msg.contains("output limit exceeded: the rendered text would be longer than 100 bytes"),
        "{msg}"
    );
    // A single large action is refused before it is appended.
    let (e, _) = stopped_by("{{ repeat 101 \"x\" }}", &limits);
    assert_eq!(e, LimitExceeded::Output { limit: 100 });
    assert_eq!(e.limit_name(), "max_output_bytes");
}

#[test]
fn steps_are_counted() {
    let limits = Limits {
        max_steps: 1000,
        ..Limits::DEFAULT
    };
    // 100 iterations of one text node: well within.
    assert!(render_with("{{ range until 100 }}x{{ end }}", &limits).is_ok());
    let (e, msg) = stopped_by("{{ range until 600 }}x{{ end }}", &limits);
    assert_eq!(e, LimitExceeded::Steps { limit: 1000 });
    assert!(
        msg.contains("step limit exceeded: more than 1000 evaluation steps"),
        "{msg}"
    );
    // Function calls count.
    let (e, _) = stopped_by("{{ range until 400 }}{{ $x := add 1 2 }}{{ end }}", &limits);
    assert_eq!(e, LimitExceeded::Steps { limit: 1000 });
    // Quadratic functions charge their comparisons before doing them.
    let (e, msg) = stopped_by("{{ until 2000 | uniq | len }}", &limits);
    assert_eq!(e, LimitExceeded::Steps { limit: 1000 }, "{msg}");
    assert!(msg.contains("at <uniq>"), "{msg}");
}

#[test]
fn wall_clock_is_checked() {
    let limits = Limits {
        max_duration: Duration::ZERO,
        ..Limits::DEFAULT
    };
    let (e, msg) = stopped_by("{{ range until 100 }}x{{ end }}", &limits);
    assert_eq!(
        e,
        LimitExceeded::Time {
            limit: Duration::ZERO
        }
    );
    assert!(msg.contains("time limit exceeded"), "{msg}");
    assert_eq!(e.limit_name(), "max_duration");
}

#[test]
fn functions_check_sizes_before_building() {
    let big = [
        "{{ until 100000 }}",
        "{{ untilStep 0 100000 1 }}",
        "{{ seq 100000 }}",
        "{{ repeat 70000 \"x\" }}",
        "{{ printf \"%1000000d\" 1 }}",
        "{{ printf \"%.1000000f\" 1.5 }}",
        "{{ printf \"%100000v\" (list 1 2 3 4 5 6 7 8 9 10) }}",
        "{{ indent 100000 \"a\\nb\" }}",
        "{{ nindent 100000 \"a\" }}",
        "{{ replace \"\" (repeat 1000 \"y\") (repeat 100 \"x\") }}",
        "{{ regexReplaceAll \"\" (repeat 1000 \"x\") (repeat 100 \"y\") }}",
        "{{ regexReplaceAll \"x+\" (repeat 60000 \"x\") \"$0$0\" }}",
        "{{ join (repeat 1000 \"-\") (until 100) }}",
        "{{ $a := repeat 40000 \"x\" }}{{ list $a $a }}",
        "{{ $a := repeat 40000 \"x\" }}{{ cat $a $a }}",
        "{{ $a := repeat 40000 \"x\" }}{{ print $a $a }}",
        "{{ toJson (repeat 20000 \"<\") }}",
        "{{ splitList \"\" (repeat 30000 \"x\") }}",
        "{{ fromJson (printf \"[%s0]\" (repeat 30000 \"0,\")) }}",
    ];
    for t in big {
        let (e, msg) = stopped_by(t, &SMALL_VALUES);
        assert_eq!(
            e,
            LimitExceeded::ValueSize { limit: 64 * 1024 },
            "{t}: {msg}"
        );
        assert!(msg.contains("value size limit exceeded"), "{t}: {msg}");
    }
}

#[test]
fn copies_count_towards_the_allocation_limit() {
    let limits = Limits {
        max_allocated_bytes: 1024 * 1024,
        ..Limits::DEFAULT
    };
    let t = "{{ $a := repeat 100000 \"x\" }}{{ range until 100 }}{{ $b := $a }}{{ end }}";
    let (e, msg) = stopped_by(t, &limits);
    assert_eq!(e, LimitExceeded::Allocation { limit: 1024 * 1024 }, "{msg}");
}

#[test]
fn recursion_and_nesting_are_bounded() {
    let (e, msg) = stopped_by(
        "{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}",
        &Limits::DEFAULT,
    );
    assert_eq!(e, LimitExceeded::Depth { limit: 100 });
    assert!(
        msg.ends_with("exceeded maximum template depth (100)"),
        "{msg}"
    );
    let (e, msg) = stopped_by(
        "{{ $a := list }}{{ range until 1000 }}{{ $a = list $a }}{{ end }}",
        &Limits::DEFAULT,
    );
    assert_eq!(e, LimitExceeded::ValueDepth { limit: 200 }, "{msg}");
}

#[test]
fn ordinary_templates_are_unaffected() {
    assert_eq!(
        render("{{ range $i, $x := until 3 }}{{ $i }}{{ $.s | upper }}{{ end }} {{ seq 3 }} {{ repeat 3 \"ab\" }}").unwrap(),
        "0ABC1ABC2ABC 1 2 3 ababab"
    );
    // Go's own width limits: past a million, %!(BADWIDTH) / %!(BADPREC) / %!(NOVERB).
    assert_eq!(
        render("{{ printf \"%*d|%.*d|%99999999d\" 2000000 1 -1 5 7 }}").unwrap(),
        "%!(BADWIDTH)1|%!(BADPREC)5|%!(NOVERB)%!(EXTRA int=7)"
    );
    // Overflowing ranges stop instead of wrapping (Go would loop until memory ran out).
    assert_eq!(render("{{ seq 9223372036854775807 }}").unwrap(), "");
    assert_eq!(
        render("{{ untilStep 9223372036854775806 9223372036854775807 5 }}").unwrap(),
        "[9223372036854775806]"
    );
}

/// Found by fuzzing: 10,000 nested parentheses or `if`s (a 20 KB template) overflowed the stack
/// and aborted the process. Nesting is now bounded when parsing and when executing, and the
/// deepest template that parses still runs on a stack half the size of tokio's threads.
#[test]
fn deep_nesting_fails_cleanly_on_a_small_stack() {
    let run = || {
        for n in [1usize, 50, 100, 101, 10_000, 100_000] {
            let parens = format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n));
            let ifs = format!("{}x{}", "{{ if 1 }}".repeat(n), "{{ end }}".repeat(n));
            let else_ifs = format!(
                "{{{{ if 0 }}}}{}x{{{{ end }}}}",
                "{{ else if 0 }}".repeat(n - 1)
            );
            let ranges = format!(
                "{}x{}",
                "{{ range list 1 }}".repeat(n),
                "{{ end }}".repeat(n)
            );
            for (t, want) in [(parens, "1"), (ifs, "x"), (else_ifs, ""), (ranges, "x")] {
                let parsed = Template::parse("commit message", &t);
                if n <= 100 {
                    let out = parsed.unwrap().execute(&data()).unwrap();
                    assert_eq!(out, want, "{n}");
                } else {
                    let e = parsed.unwrap_err().to_string();
                    assert!(e.ends_with("max expression depth exceeded"), "{n}: {e}");
                }
            }
        }
        // Template calls and the controls in their bodies share the execution depth.
        let (e, msg) = stopped_by(
            "{{ define \"a\" }}{{ if 1 }}{{ with . }}{{ template \"a\" (print .) }}{{ end }}{{ end }}{{ end }}{{ template \"a\" 1 }}",
            &Limits::DEFAULT,
        );
        assert_eq!(e, LimitExceeded::Depth { limit: 100 }, "{msg}");
    };
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}
