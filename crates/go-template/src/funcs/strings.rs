//! Sprig's string functions.

use super::*;
use crate::fmt::quote;
use crate::value::Map;

pub(super) const FUNCS: &[Func] = &[
    def(&["hello"], &[], None, |_| Ok("Hello!".into())),
    def(&["upper"], S1, None, |a| Ok(a.s(0).to_uppercase().into())),
    def(&["lower"], S1, None, |a| Ok(a.s(0).to_lowercase().into())),
    def(&["title"], S1, None, |a| Ok(title(a.s(0)).into())),
    def(&["untitle"], S1, None, |a| Ok(untitle(a.s(0)).into())),
    def(&["swapcase"], S1, None, |a| Ok(swapcase(a.s(0)).into())),
    def(&["initials"], S1, None, |a| Ok(initials(a.s(0)).into())),
    def(&["substr"], &[TI, TI, TS], None, |a| {
        substr(a.i(0), a.i(1), a.s(2))
    }),
    def(&["repeat"], &[TI, TS], None, |a| {
        let n = usize::try_from(a.i(0)).map_err(|_| "strings: negative Repeat count")?;
        a.size(n as u128 * a.s(1).len() as u128)?;
        Ok(a.s(1).repeat(n).into())
    }),
    def(&["trunc"], &[TI, TS], None, |a| {
        Ok(trunc(a.i(0), a.s(1)).into())
    }),
    def(&["trim"], S1, None, |a| {
        Ok(a.s(0).trim_matches(go_space).into())
    }),
    def(&["trimAll", "trimall"], S2, None, |a| {
        let cut = a.s(0);
        Ok(a.s(1).trim_matches(|c| cut.contains(c)).into())
    }),
    def(&["trimPrefix"], S2, None, |a| {
        Ok(a.s(1).strip_prefix(a.s(0)).unwrap_or(a.s(1)).into())
    }),
    def(&["trimSuffix"], S2, None, |a| {
        Ok(a.s(1).strip_suffix(a.s(0)).unwrap_or(a.s(1)).into())
    }),
    def(&["nospace"], S1, None, |a| {
        Ok(a.s(0)
            .chars()
            .filter(|c| !go_space(*c))
            .collect::<String>()
            .into())
    }),
    def(&["abbrev"], &[TI, TS], None, |a| {
        Ok(abbrev(a.i(0), a.s(1)).into())
    }),
    undef(&["abbrevboth"], &[TI, TI, TS], None),
    def(&["contains"], S2, None, |a| {
        Ok(Value::Bool(a.s(1).contains(a.s(0))))
    }),
    def(&["hasPrefix"], S2, None, |a| {
        Ok(Value::Bool(a.s(1).starts_with(a.s(0))))
    }),
    def(&["hasSuffix"], S2, None, |a| {
        Ok(Value::Bool(a.s(1).ends_with(a.s(0))))
    }),
    def(&["quote"], &[], Some(Any), |a| {
        Ok(joined(a, |v| quote(&strval(v))).into())
    }),
    def(&["squote"], &[], Some(Any), |a| {
        Ok(joined(a, |v| format!("'{}'", strval(v))).into())
    }),
    def(&["cat"], &[], Some(Any), |a| {
        let v: Vec<Value> = a.non_nil().cloned().collect();
        let f = vec!["%v"; v.len()].join(" ");
        Ok(limited_sprintf(a, &f, &v)?.into())
    }),
    def(&["indent"], &[TI, TS], None, |a| {
        a.size(indent_size(a.i(0), a.s(1)))?;
        Ok(indent(a.i(0), a.s(1)).into())
    }),
    def(&["nindent"], &[TI, TS], None, |a| {
        a.size(indent_size(a.i(0), a.s(1)) + 1)?;
        Ok(format!("\n{}", indent(a.i(0), a.s(1))).into())
    }),
    def(&["replace"], S3, None, |a| {
        let (s, old, new) = (a.s(2), a.s(0), a.s(1));
        let count = if old.is_empty() {
            s.chars().count() + 1
        } else {
            s.matches(old).count()
        };
        a.size(s.len() as u128 + count as u128 * new.len() as u128)?;
        Ok(go_replace(s, old, new).into())
    }),
    def(&["plural"], &[TS, TS, TI], None, |a| {
        Ok(if a.i(2) == 1 { a.s(0) } else { a.s(1) }.into())
    }),
    def(&["split"], S2, None, |a| {
        a.size(split_count(a.s(1), a.s(0), -1) * 2 * NODE + a.s(1).len() as u128)?;
        Ok(Value::Map(
            go_split(a.s(1), a.s(0), -1)
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}"), p))
                .collect::<Map>()
                .with_type_name("map[string]string"),
        ))
    }),
    def(&["splitn"], &[TS, TI, TS], None, |a| {
        a.size(split_count(a.s(2), a.s(0), a.i(1)) * 2 * NODE + a.s(2).len() as u128)?;
        Ok(Value::Map(
            go_split(a.s(2), a.s(0), a.i(1))
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}"), p))
                .collect::<Map>()
                .with_type_name("map[string]string"),
        ))
    }),
    def(&["splitList"], S2, None, |a| {
        a.size(split_count(a.s(1), a.s(0), -1) * NODE + a.s(1).len() as u128)?;
        Ok(Value::list(go_split(a.s(1), a.s(0), -1)))
    }),
    def(&["join"], &[TS, Any], None, |a| {
        let parts = strslice(a.v(1));
        let sep = a.s(0).len() as u128 * parts.len().saturating_sub(1) as u128;
        a.size(parts.iter().map(|p| p.len() as u128).sum::<u128>() + sep)?;
        Ok(parts.join(a.s(0)).into())
    }),
    def(&["sortAlpha"], ANY1, None, |a| match a.v(0) {
        Value::List(_) => {
            let mut v = strslice(a.v(0));
            v.sort();
            Ok(Value::list(v))
        }
        other => Ok(Value::list(vec![strval(other)])),
    }),
    def(&["toString"], ANY1, None, |a| Ok(strval(a.v(0)).into())),
    def(&["toStrings"], ANY1, None, |a| {
        Ok(Value::list(strslice(a.v(0))))
    }),
    undef(&["camelcase", "snakecase", "kebabcase"], S1, None),
    undef(&["wrap"], &[TI, TS], None),
    undef(&["wrapWith"], &[TI, TS, TS], None),
    undef(&["shuffle"], S1, None),
];

fn go_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `strings.Title`: upper-cases letters that follow a separator.
fn title(s: &str) -> String {
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let sep = is_separator(prev);
            prev = c;
            if sep {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

fn untitle(s: &str) -> String {
    let mut prev_space = true;
    s.chars()
        .map(|c| {
            let out = if prev_space {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                c
            };
            prev_space = c.is_whitespace();
            out
        })
        .collect()
}

/// goutils' SwapCase (it title-cases a lower-case letter after whitespace, which for the
/// scripts we handle is upper case).
fn swapcase(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn initials(s: &str) -> String {
    s.split(char::is_whitespace)
        .filter_map(|w| w.chars().next())
        .collect()
}

/// Go slices strings by byte; a cut inside a UTF-8 sequence is repaired lossily.
fn byte_slice(s: &str, a: usize, b: usize) -> String {
    String::from_utf8_lossy(&s.as_bytes()[a..b]).into_owned()
}

fn trunc(c: i64, s: &str) -> String {
    let n = s.len() as i64;
    if c < 0 && n + c > 0 {
        return byte_slice(s, (n + c) as usize, s.len());
    }
    if c >= 0 && n > c {
        return byte_slice(s, 0, c as usize);
    }
    s.to_string()
}

fn substr(start: i64, end: i64, s: &str) -> Result<Value, String> {
    let n = s.len() as i64;
    let oob = |a: String| Err(format!("runtime error: slice bounds out of range {a}"));
    if start < 0 {
        if end < 0 || end > n {
            return oob(format!("[:{end}] with length {n}"));
        }
        return Ok(byte_slice(s, 0, end as usize).into());
    }
    if end < 0 || end > n {
        if start > n {
            return oob(format!("[{start}:{n}]"));
        }
        return Ok(byte_slice(s, start as usize, s.len()).into());
    }
    if start > end {
        return oob(format!("[{start}:{end}]"));
    }
    Ok(byte_slice(s, start as usize, end as usize).into())
}

fn abbrev(width: i64, s: &str) -> String {
    if width < 4 || s.len() as i64 <= width {
        return s.to_string();
    }
    format!("{}...", byte_slice(s, 0, (width - 3) as usize))
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

/// Go's `strings.Replace(s, old, new, -1)`, including the empty-`old` case.
fn go_replace(s: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        let mut out = String::from(new);
        for c in s.chars() {
            out.push(c);
            out.push_str(new);
        }
        return out;
    }
    s.replace(old, new)
}

/// Go's `strings.SplitN` (n < 0: all).
fn go_split(s: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let chars: Vec<String> = s.chars().map(String::from).collect();
        if n > 0 && (n as usize) < chars.len() {
            let k = n as usize - 1;
            let mut out: Vec<String> = chars[..k].to_vec();
            out.push(chars[k..].concat());
            return out;
        }
        return chars;
    }
    if n < 0 {
        return s.split(sep).map(String::from).collect();
    }
    s.splitn(n as usize, sep).map(String::from).collect()
}

/// Bytes `indent n s` builds.
fn indent_size(n: i64, s: &str) -> u128 {
    let lines = s.bytes().filter(|b| *b == b'\n').count() as u128 + 1;
    s.len() as u128 + lines * u128::try_from(n).unwrap_or(0)
}

/// How many parts `go_split(s, sep, n)` returns.
fn split_count(s: &str, sep: &str, n: i64) -> u128 {
    if n == 0 {
        return 0;
    }
    let all = if sep.is_empty() {
        s.chars().count() as u128
    } else {
        s.matches(sep).count() as u128 + 1
    };
    match u128::try_from(n) {
        Ok(n) => all.min(n),
        Err(_) => all,
    }
}

/// Sprig's quote/squote: each non-nil argument shown by `show`, joined by spaces.
fn joined(a: &Args, show: impl Fn(&Value) -> String) -> String {
    a.non_nil().map(show).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_string_helpers() {
        assert_eq!(trunc(-3, "abcdef"), "def");
        assert_eq!(trunc(2, "abcdef"), "ab");
        assert_eq!(title("hello wORLD-foo"), "Hello WORLD-Foo");
        assert_eq!(go_split("a,b,,c", ",", -1), ["a", "b", "", "c"]);
    }
}
