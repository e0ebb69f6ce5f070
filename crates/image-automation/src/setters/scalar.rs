//! Writing a new value into an existing scalar without changing its surroundings.
//!
//! Flux keeps the old quoting style and double-quotes the value when yaml.v2 (YAML 1.1) would
//! read it as a non-string. We do the same, but are stricter about what "non-string" means: a
//! value is also quoted when YAML 1.2 would read it as a number, or when it looks like a YAML
//! 1.1 timestamp (`2024-06-27`, Flux issue #713), or when it could not be written as a plain
//! scalar at that position at all.

/// How the scalar was written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// The source text to put in place of the old scalar (quotes included).
pub fn render(value: &str, style: Style, in_flow: bool) -> String {
    match style {
        Style::DoubleQuoted => double_quoted(value),
        Style::SingleQuoted if value.chars().all(|c| !c.is_control()) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::SingleQuoted => double_quoted(value),
        Style::Plain if plain_is_safe(value, in_flow) && reads_as_string(value) => value.to_owned(),
        Style::Plain => double_quoted(value),
    }
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let code = u32::from(c);
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` can stand as a plain scalar (ignoring what type it resolves to).
fn plain_is_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace)
        || value.ends_with(':')
        || value.contains(": ")
        || value.contains(":\t")
        || value.contains(" #")
        || value.contains("\t#")
        || value.starts_with("---")
        || value.starts_with("...")
        || value.chars().any(|c| c.is_control() || c == '\u{feff}')
    {
        return false;
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    match first {
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => false,
        // `-`, `?` and `:` start a plain scalar only when followed by a non-space character.
        '-' | '?' | ':' => value[1..].starts_with(|c: char| !c.is_whitespace()),
        _ => true,
    }
}

/// Whether a plain scalar with this text is a string for every YAML reader we care about: YAML
/// 1.1 (yaml.v2, which Flux and many tools use), YAML 1.2 core schema, and 1.1 timestamps.
pub fn reads_as_string(value: &str) -> bool {
    !(is_null(value)
        || is_bool(value)
        || is_int(value)
        || is_float(value)
        || is_timestamp(value)
        || value == "="
        || value == "<<")
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

fn is_bool(v: &str) -> bool {
    matches!(
        v,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn strip_sign(v: &str) -> &str {
    v.strip_prefix(['-', '+']).unwrap_or(v)
}

fn digits(v: &str, ok: impl Fn(char) -> bool) -> bool {
    !v.is_empty() && v.chars().all(|c| ok(c) || c == '_') && v.chars().any(ok)
}

fn is_int(v: &str) -> bool {
    let v = strip_sign(v);
    if let Some(rest) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return digits(rest, |c| c.is_ascii_hexdigit());
    }
    if let Some(rest) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        return digits(rest, |c| c == '0' || c == '1');
    }
    if let Some(rest) = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")) {
        return digits(rest, |c| ('0'..='7').contains(&c));
    }
    // Decimal, and leading-zero octal (which yaml.v2 also reads as a number when invalid octal).
    if digits(v, |c| c.is_ascii_digit()) && v.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    is_sexagesimal(v)
}

/// YAML 1.1 base 60: `1:20`, `190:20:30`, optionally with a fraction.
fn is_sexagesimal(v: &str) -> bool {
    let (int_part, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit() || c == '_')) {
        return false;
    }
    let mut parts = int_part.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    if !digits(head, |c| c.is_ascii_digit()) || !head.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let mut rest = 0;
    for part in parts {
        rest += 1;
        if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
            return false;
        }
        if part.len() == 2 && part.as_bytes()[0] > b'5' {
            return false;
        }
    }
    rest > 0
}

fn is_float(v: &str) -> bool {
    if matches!(
        v,
        ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
            | ".nan"
            | ".NaN"
            | ".NAN"
    ) {
        return true;
    }
    let v = strip_sign(v);
    // mantissa: digits[.digits] | .digits | digits. (underscores allowed as in YAML 1.1)
    let (mantissa, exponent) = match v.find(['e', 'E']) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    if let Some(exp) = exponent
        && !digits(strip_sign(exp), |c| c.is_ascii_digit())
    {
        return false;
    }
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let int_ok = int_part.is_empty() || digits(int_part, |c| c.is_ascii_digit());
    let frac_ok = match frac {
        None => true,
        Some(f) => f.is_empty() || digits(f, |c| c.is_ascii_digit()),
    };
    let has_digit = mantissa.chars().any(|c| c.is_ascii_digit());
    // Without a dot or exponent it is an int (handled there), not a float.
    int_ok && frac_ok && has_digit && (frac.is_some() || exponent.is_some())
}

/// YAML 1.1 timestamps: `YYYY-M-D`, optionally followed by a time. yaml.v2 reads these as
/// strings into `interface{}`, so Flux writes them unquoted (#713); other readers make dates.
fn is_timestamp(v: &str) -> bool {
    let b = v.as_bytes();
    let num = |from: usize, min: usize, max: usize| -> Option<usize> {
        let n = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        (n >= min && n <= max).then_some(from + n)
    };
    let Some(i) = num(0, 4, 4) else { return false };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    let Some(i) = num(i + 1, 1, 2) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    let Some(i) = num(i + 1, 1, 2) else {
        return false;
    };
    if i == b.len() {
        return true;
    }
    // A time part: `T` or whitespace, then H[H]:MM:SS...
    let mut j = i;
    match b[j] {
        b'T' | b't' => j += 1,
        b' ' | b'\t' => {
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
        }
        _ => return false,
    }
    let Some(k) = num(j, 1, 2) else { return false };
    b.get(k) == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_values_yaml_reads_as_non_strings() {
        for v in [
            "1.10",
            "42",
            "true",
            "yes",
            "on",
            "null",
            "1e3",
            "0x1F",
            "~",
            "",
            "2024-06-27",
            "2024-06-27T10:00:00Z",
            "2024-6-7 1:00:00",
            "1:20",
            "0o17",
            "017",
            "08",
            ".5",
            "1_000",
            "=",
            "<<",
            ".inf",
            "-1",
            "+1.5",
        ] {
            assert!(!reads_as_string(v), "{v} should not read as a string");
            assert_eq!(render(v, Style::Plain, false), format!("\"{v}\""));
        }
    }

    #[test]
    fn leaves_ordinary_tags_and_images_plain() {
        for v in [
            "v1.0.1",
            "1.2.3",
            "index.repo.fake/updated:v1.0.1",
            "image:v1.0.0@sha256:6745aaad",
            "sha256:1234567890abcdef",
            "20240627-abcdef",
            "2024-06-27-abc",
            "main-2024-06-27",
            "1.0.0-rc.1",
            "latest",
            "1e",
        ] {
            assert!(reads_as_string(v), "{v} should read as a string");
            assert_eq!(render(v, Style::Plain, false), v);
        }
    }

    #[test]
    fn keeps_existing_quote_style() {
        assert_eq!(render("v1", Style::DoubleQuoted, false), "\"v1\"");
        assert_eq!(render("1.10", Style::SingleQuoted, false), "'1.10'");
        assert_eq!(render("it's", Style::SingleQuoted, false), "'it''s'");
        assert_eq!(
            render("a\"b\\", Style::DoubleQuoted, false),
            "\"a\\\"b\\\\\""
        );
    }

    #[test]
    fn quotes_what_cannot_be_plain() {
        assert_eq!(render("a: b", Style::Plain, false), "\"a: b\"");
        assert_eq!(render("a #b", Style::Plain, false), "\"a #b\"");
        assert_eq!(render("-", Style::Plain, false), "\"-\"");
        assert_eq!(render("-rc", Style::Plain, false), "-rc");
        assert_eq!(render("a,b", Style::Plain, true), "\"a,b\"");
        assert_eq!(render("a,b", Style::Plain, false), "a,b");
        assert_eq!(render("*x", Style::Plain, false), "\"*x\"");
    }
}
