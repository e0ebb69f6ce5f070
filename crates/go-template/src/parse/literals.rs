//! Go's literal syntax: `strconv.Unquote` for strings and chars, `strconv.ParseInt` and
//! `ParseFloat` for numbers, as the template parser reads them.

use super::Number;

/// Go's `strconv.Unquote` for "..." and `...` literals.
pub(crate) fn unquote(q: &str) -> Option<String> {
    if q.len() >= 2 && q.starts_with('`') && q.ends_with('`') {
        let inner = &q[1..q.len() - 1];
        return Some(inner.replace('\r', ""));
    }
    if q.len() < 2 || !q.starts_with('"') || !q.ends_with('"') {
        return None;
    }
    let inner = &q[1..q.len() - 1];
    let mut out: Vec<u8> = Vec::new();
    let mut it = inner.chars().peekable();
    while let Some(c) = it.next() {
        if c == '"' || c == '\n' {
            return None;
        }
        if c != '\\' {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        let e = it.next()?;
        match e {
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    v = v * 8 + it.next()?.to_digit(8)?;
                }
                out.push(u8::try_from(v).ok()?);
            }
            'x' => {
                let mut v = 0u32;
                for _ in 0..2 {
                    v = v * 16 + it.next()?.to_digit(16)?;
                }
                out.push(u8::try_from(v).ok()?);
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let mut v = 0u32;
                for _ in 0..n {
                    v = v * 16 + it.next()?.to_digit(16)?;
                }
                let ch = char::from_u32(v)?;
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            }
            _ => return None,
        }
    }
    // Go strings may hold invalid UTF-8 from \x escapes; we keep valid text only.
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn unquote_char(q: &str) -> Option<char> {
    let inner = q.strip_prefix('\'')?.strip_suffix('\'')?;
    if !inner.starts_with('\\') {
        let mut cs = inner.chars();
        let c = cs.next()?;
        return if cs.next().is_none() { Some(c) } else { None };
    }
    if inner == "\\'" {
        return Some('\'');
    }
    if inner == "\\\"" {
        return None;
    }
    let s = unquote(&format!("\"{inner}\""))?;
    let mut cs = s.chars();
    let c = cs.next()?;
    if cs.next().is_none() { Some(c) } else { None }
}

/// Go's `strconv.ParseInt(s, 0, 64)` (base prefixes and underscores).
pub(crate) fn parse_go_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // Underscores must separate digits (Go literal syntax, allowed for base 0).
    if digits.contains('_')
        && (digits.ends_with('_')
            || digits.contains("__")
            || (!prefixed && digits.starts_with('_')))
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() || clean.starts_with('+') || clean.starts_with('-') {
        return None;
    }
    let mag = u64::from_str_radix(&clean, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

pub(super) fn parse_number(text: &str, is_char: bool) -> Result<Number, String> {
    if is_char {
        let c = unquote_char(text).ok_or_else(|| "invalid syntax".to_string())?;
        return Ok(Number {
            text: text.to_string(),
            is_int: true,
            int: i64::from(u32::from(c)),
            is_float: true,
            float: f64::from(u32::from(c)),
        });
    }
    if text.ends_with('i') {
        return Err(format!(
            "complex numbers are not supported: {}",
            crate::fmt::quote(text)
        ));
    }
    let mut n = Number {
        text: text.to_string(),
        is_int: false,
        int: 0,
        is_float: false,
        float: 0.0,
    };
    if let Some(i) = parse_go_int(text) {
        n.is_int = true;
        n.int = i;
        n.is_float = true;
        n.float = i as f64;
        return Ok(n);
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let is_hex = clean
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("0x");
    if !is_hex && let Ok(f) = clean.parse::<f64>() {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", crate::fmt::quote(text)));
        }
        n.is_float = true;
        n.float = f;
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            n.is_int = true;
            n.int = f as i64;
        }
        return Ok(n);
    }
    Err(format!(
        "illegal number syntax: {}",
        crate::fmt::quote(text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_go_int("0x1F"), Some(31));
        assert_eq!(parse_go_int("017"), Some(15));
        assert_eq!(parse_go_int("-8"), Some(-8));
        assert_eq!(parse_go_int("1_000"), Some(1000));
        assert_eq!(parse_go_int("1__0"), None);
        let n = parse_number("1.0", false).unwrap();
        assert!(n.is_int && n.is_float);
        assert_eq!(parse_number("'a'", true).unwrap().int, 97);
    }
}
