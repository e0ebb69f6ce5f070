//! Sprig's regular expression functions (Go RE2 syntax, ASCII Perl classes as in Go).

use super::*;
use crate::fmt::quote;

pub(super) const FUNCS: &[Func] = &[
    // Sprig's non-must regexMatch swallows compile errors.
    def(&["regexMatch"], S2, None, |a| {
        Ok(Value::Bool(re(a.s(0)).is_ok_and(|r| r.is_match(a.s(1)))))
    }),
    def(&["mustRegexMatch"], S2, None, |a| {
        Ok(Value::Bool(re(a.s(0))?.is_match(a.s(1))))
    }),
    def(&["regexFind", "mustRegexFind"], S2, None, |a| {
        Ok(re(a.s(0))?
            .find(a.s(1))
            .map(|m| m.as_str().to_string())
            .unwrap_or_default()
            .into())
    }),
    def(
        &["regexFindAll", "mustRegexFindAll"],
        STRINGS_AND_COUNT,
        None,
        |a| {
            let r = re(a.s(0))?;
            let n = a.i(2);
            if n == 0 {
                return Ok(Value::List(Vec::new()));
            }
            let take = usize::try_from(n).unwrap_or(usize::MAX);
            let mut out = Vec::new();
            let mut size = 0u128;
            for m in r.find_iter(a.s(1)).take(take) {
                size += NODE + m.len() as u128;
                a.size(size)?;
                out.push(Value::from(m.as_str()));
            }
            Ok(Value::List(out))
        },
    ),
    def(&["regexReplaceAll", "mustRegexReplaceAll"], S3, None, |a| {
        re_replace(a, false)
    }),
    def(
        &["regexReplaceAllLiteral", "mustRegexReplaceAllLiteral"],
        S3,
        None,
        |a| re_replace(a, true),
    ),
    def(
        &["regexSplit", "mustRegexSplit"],
        STRINGS_AND_COUNT,
        None,
        |a| {
            let (r, n) = (re(a.s(0))?, a.i(2));
            let count = r.find_iter(a.s(1)).count() as u128 + 1;
            let count = if n > 0 { count.min(n as u128) } else { count };
            a.size(count * NODE + a.s(1).len() as u128)?;
            Ok(Value::list(re_split(&r, a.s(1), n)))
        },
    ),
    def(&["regexQuoteMeta"], S1, None, |a| {
        Ok(quote_meta(a.s(0)).into())
    }),
];

/// `(regex, text, n)`: the pattern, the text and at most how many results (`n < 0`: all).
const STRINGS_AND_COUNT: &[Ty] = &[TS, TS, TI];
/// Go's `Regexp.ReplaceAllString` (`$1` expansion) or `ReplaceAllLiteralString`, checking
/// the size before each replacement.
fn re_replace(a: &Args<'_, '_>, literal: bool) -> Result<Value, String> {
    let r = re(a.s(0))?;
    let (s, repl) = (a.s(1), a.s(2));
    // Each `$` reference expands to at most the whole match.
    let refs = if literal {
        0
    } else {
        repl.matches('$').count() as u128
    };
    let mut out = String::new();
    let mut last = 0;
    for caps in r.captures_iter(s) {
        let Some(m) = caps.get(0) else {
            continue;
        };
        a.size(
            (out.len() + m.start() - last) as u128 + repl.len() as u128 + refs * m.len() as u128,
        )?;
        out.push_str(&s[last..m.start()]);
        if literal {
            out.push_str(repl);
        } else {
            caps.expand(repl, &mut out);
        }
        last = m.end();
    }
    out.push_str(&s[last..]);
    a.size(out.len() as u128)?;
    Ok(out.into())
}

/// Translates Go RE2 syntax to the `regex` crate: Perl classes and word boundaries are ASCII in
/// Go but Unicode-aware in Rust.
fn translate_regex(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut in_class = false;
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            let Some(n) = it.next() else {
                out.push('\\');
                break;
            };
            let rep = match (n, in_class) {
                ('d', false) => Some("[0-9]"),
                ('D', _) => Some("[^0-9]"),
                ('w', false) => Some("[0-9A-Za-z_]"),
                ('W', _) => Some("[^0-9A-Za-z_]"),
                ('s', false) => Some("[\\t\\n\\f\\r ]"),
                ('S', _) => Some("[^\\t\\n\\f\\r ]"),
                ('d', true) => Some("0-9"),
                ('w', true) => Some("0-9A-Za-z_"),
                ('s', true) => Some("\\t\\n\\f\\r "),
                ('b', false) => Some("(?-u:\\b)"),
                ('B', false) => Some("(?-u:\\B)"),
                _ => None,
            };
            match rep {
                Some(r) => out.push_str(r),
                None => {
                    out.push('\\');
                    out.push(n);
                }
            }
            continue;
        }
        if c == '[' && !in_class {
            in_class = true;
            out.push(c);
            if it.peek() == Some(&'^') {
                out.push('^');
                it.next();
            }
            if it.peek() == Some(&']') {
                out.push_str("\\]");
                it.next();
            }
            continue;
        }
        if c == '[' && in_class && it.peek() == Some(&':') {
            // POSIX class like [:alpha:]: copy through to its closing ":]".
            out.push(c);
            for d in it.by_ref() {
                out.push(d);
                if d == ']' {
                    break;
                }
            }
            continue;
        }
        if c == '[' && in_class {
            out.push_str("\\[");
            continue;
        }
        if c == ']' && in_class {
            in_class = false;
        }
        out.push(c);
    }
    out
}

fn re(p: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&translate_regex(p)).map_err(|e| {
        format!(
            "regexp: Compile({}): {}",
            quote(p),
            first_line(&e.to_string())
        )
    })
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

/// Go's `Regexp.Split`.
fn re_split(r: &regex::Regex, s: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if r.as_str().is_empty() && s.is_empty() {
        return vec![String::new()];
    }
    let mut out = Vec::new();
    let mut beg = 0;
    let mut end = 0;
    for m in r.find_iter(s) {
        if n > 0 && out.len() as i64 == n - 1 {
            break;
        }
        end = m.start();
        if m.end() != 0 {
            out.push(s[beg..end].to_string());
        }
        beg = m.end();
    }
    if end != s.len() {
        out.push(s[beg..].to_string());
    }
    out
}

fn quote_meta(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii() {
        assert_eq!(translate_regex(r"\d+[\w-]"), "[0-9]+[0-9A-Za-z_-]");
    }
}
