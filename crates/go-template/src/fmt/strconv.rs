//! Go's `strconv` as `fmt` uses it: `FormatFloat` and `Quote`/`QuoteRune` (with
//! `unicode.IsPrint`).

/// Decimal digits (no leading/trailing zeros) and decimal point position of `x.abs()`, rounded
/// to `sig` significant digits, or shortest round-trip when `sig` is `None`.
fn float_digits(x: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    if x == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{:e}", x.abs()),
        Some(n) => format!("{:.*e}", n.saturating_sub(1), x.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

fn fmt_e(neg: bool, digits: &[u8], dp: i32, prec: usize, e: char) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push(char::from(*digits.first().unwrap_or(&b'0')));
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(char::from(*digits.get(i).unwrap_or(&b'0')));
        }
    }
    s.push(e);
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn fmt_f(neg: bool, digits: &[u8], dp: i32, prec: usize) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if dp > 0 {
        for i in 0..dp as usize {
            s.push(char::from(*digits.get(i).unwrap_or(&b'0')));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 1..=prec as i64 {
            let j = i64::from(dp) + i - 1;
            let c = if j >= 0 {
                digits.get(j as usize).copied().unwrap_or(b'0')
            } else {
                b'0'
            };
            s.push(char::from(c));
        }
    }
    s
}

/// Go's `strconv.FormatFloat(x, verb, prec, 64)` for verbs e, E, f, g, G.
pub(crate) fn format_float(x: f64, verb: char, prec: Option<usize>) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = x.is_sign_negative();
    match verb {
        'f' => {
            let p = prec.unwrap_or(6);
            let s = format!("{:.*}", p, x.abs());
            if neg { format!("-{s}") } else { s }
        }
        'e' | 'E' => {
            let (digits, dp) = match prec {
                Some(p) => float_digits(x, Some(p + 1)),
                None => float_digits(x, None),
            };
            let p = prec.unwrap_or(digits.len().saturating_sub(1));
            fmt_e(neg, &digits, dp, p, verb)
        }
        _ => {
            let e = if verb == 'G' { 'E' } else { 'e' };
            let shortest = prec.is_none();
            let p = match prec {
                Some(0) => 1,
                Some(p) => p,
                None => 0,
            };
            let (digits, dp) = float_digits(x, if shortest { None } else { Some(p) });
            let nd = digits.len() as i32;
            let mut eprec = if shortest { nd } else { p as i32 };
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                let mut pp = if shortest { nd } else { p as i32 };
                if pp > nd {
                    pp = nd;
                }
                return fmt_e(neg, &digits, dp, (pp - 1).max(0) as usize, e);
            }
            let mut pp = if shortest { nd } else { p as i32 };
            if pp > dp {
                pp = nd;
            }
            fmt_f(neg, &digits, dp, (pp - dp).max(0) as usize)
        }
    }
}

/// Approximates Go's `unicode.IsPrint`.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || (c.is_whitespace()) {
        return false;
    }
    !matches!(c,
        '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E000}'..='\u{F8FF}' | '\u{FFFE}' | '\u{FFFF}')
}

fn escape_rune(out: &mut String, c: char, quote_char: char, ascii_only: bool) {
    if c == quote_char || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if (ascii_only && c.is_ascii() && is_print(c)) || (!ascii_only && is_print(c)) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    quote_with(s, false)
}

pub(super) fn quote_with(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_rune(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

pub(super) fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    escape_rune(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

pub(super) fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control() || c == '\u{80}'))
        && !s.chars().any(|c| c.is_ascii_control() && c != '\t')
}
