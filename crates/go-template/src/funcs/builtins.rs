//! Go's builtin template functions (`text/template`'s `builtins`).

use super::*;
use crate::fmt::{sprint, sprintln};
use crate::value::go_compare;

pub(super) const FUNCS: &[Func] = &[
    Func {
        names: &["and"],
        sig: Sig {
            params: &[Refl],
            variadic: Some(Refl),
            imp: Imp::AndOr(false),
        },
    },
    Func {
        names: &["or"],
        sig: Sig {
            params: &[Refl],
            variadic: Some(Refl),
            imp: Imp::AndOr(true),
        },
    },
    def(&["not"], &[Refl], None, |a| {
        Ok(Value::Bool(!a.valid(0).is_some_and(Value::is_true)))
    }),
    def(&["len"], &[Refl], None, b_len),
    def(&["index"], &[Refl], Some(Refl), b_index),
    def(&["print"], &[], Some(Any), |a| {
        Ok(Value::String(sprint(&collect(a, 0))))
    }),
    def(&["println"], &[], Some(Any), |a| {
        Ok(Value::String(sprintln(&collect(a, 0))))
    }),
    def(&["printf"], &[TS], Some(Any), |a| {
        Ok(Value::String(limited_sprintf(a, a.s(0), &collect(a, 1))?))
    }),
    def(&["html"], &[], Some(Any), |a| {
        Ok(Value::String(html_escape(&eval_args(a))))
    }),
    def(&["js"], &[], Some(Any), |a| {
        Ok(Value::String(js_escape(&eval_args(a))))
    }),
    def(&["urlquery"], &[], Some(Any), |a| {
        Ok(Value::String(query_escape(&eval_args(a))))
    }),
    def(&["eq"], &[Refl], Some(Refl), b_eq),
    def(&["ne"], &[Refl, Refl], None, |a| {
        b_eq(a).map(|v| Value::Bool(!v.is_true()))
    }),
    def(&["lt"], &[Refl, Refl], None, |a| {
        b_lt(a.valid(0), a.valid(1)).map(Value::Bool)
    }),
    def(&["le"], &[Refl, Refl], None, |a| {
        let lt = b_lt(a.valid(0), a.valid(1))?;
        Ok(Value::Bool(lt || b_eq(a)?.is_true()))
    }),
    def(&["gt"], &[Refl, Refl], None, |a| {
        let lt = b_lt(a.valid(0), a.valid(1))?;
        Ok(Value::Bool(!lt && !b_eq(a)?.is_true()))
    }),
    def(&["ge"], &[Refl, Refl], None, |a| {
        b_lt(a.valid(0), a.valid(1)).map(|lt| Value::Bool(!lt))
    }),
    def(&["call"], &[Refl], Some(Refl), |a| match a.valid(0) {
        None | Some(Value::Nil) => Err("call of nil".into()),
        Some(v) => Err(format!("non-function of type {}", v.type_name())),
    }),
];

fn eval_args(a: &Args<'_, '_>) -> String {
    if a.len() == 1
        && let Value::String(s) = a.v(0)
    {
        return s.clone();
    }
    sprint(&collect(a, 0))
}

fn html_escape(s: &str) -> String {
    escape_with(s, |c, out| match c {
        '\0' => out.push('\u{FFFD}'),
        '"' => out.push_str("&#34;"),
        '\'' => out.push_str("&#39;"),
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    })
}

fn js_escape(s: &str) -> String {
    escape_with(s, |c, out| match c {
        '\\' => out.push_str("\\\\"),
        '\'' => out.push_str("\\'"),
        '"' => out.push_str("\\\""),
        '<' => out.push_str("\\u003C"),
        '>' => out.push_str("\\u003E"),
        '&' => out.push_str("\\u0026"),
        '=' => out.push_str("\\u003D"),
        c if (c as u32) < 0x20 || (!c.is_ascii() && !crate::fmt::is_print(c)) => {
            out.push_str(&format!("\\u{:04X}", c as u32));
        }
        c => out.push(c),
    })
}

/// `s` with each character written by `write` (its escape, or itself).
fn escape_with(s: &str, write: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        write(c, &mut out);
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn b_len(a: &Args<'_, '_>) -> Result<Value, String> {
    match a.valid(0) {
        None => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Some(Value::Nil) => Err("len of nil pointer".into()),
        Some(Value::String(s)) => Ok(Value::from(s.len())),
        Some(Value::List(l)) => Ok(Value::from(l.len())),
        Some(Value::Map(m)) => Ok(Value::from(m.len())),
        Some(other) => Err(format!("len of type {}", other.type_name())),
    }
}

fn index_arg(idx: Option<&Value>, cap: usize) -> Result<usize, String> {
    match idx {
        Some(Value::Int(x)) => {
            if *x < 0 || *x as u64 > cap as u64 {
                return Err(format!("index out of range: {x}"));
            }
            Ok(*x as usize)
        }
        None | Some(Value::Nil) => Err("cannot index slice/array with nil".into()),
        Some(other) => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

fn b_index(a: &Args<'_, '_>) -> Result<Value, String> {
    let mut item = match a.valid(0) {
        None | Some(Value::Nil) => return Err("index of untyped nil".into()),
        Some(v) => v.clone(),
    };
    for i in 1..a.len() {
        let idx = a.valid(i).filter(|v| !matches!(v, Value::Nil));
        item = match &item {
            Value::Nil => return Err("index of nil pointer".into()),
            Value::List(l) => {
                let x = index_arg(idx, l.len())?;
                match l.get(x) {
                    Some(v) => v.clone(),
                    None => return Err("reflect: slice index out of range".into()),
                }
            }
            Value::String(s) => {
                let x = index_arg(idx, s.len())?;
                match s.as_bytes().get(x) {
                    Some(b) => Value::Int(i64::from(*b)),
                    None => return Err("reflect: string index out of range".into()),
                }
            }
            Value::Map(m) => {
                let key = match idx {
                    None => {
                        if !m.has_explicit_type() || m.type_name().starts_with("map[string]") {
                            return Err("value is nil; should be of type string".into());
                        }
                        return Err(format!("value is nil; should be of type {}", m.type_name()));
                    }
                    Some(k) => k,
                };
                let key_ok = match m.iter().next() {
                    Some((k0, _)) => std::mem::discriminant(k0) == std::mem::discriminant(key),
                    None => true,
                };
                if !key_ok {
                    let kt = m
                        .iter()
                        .next()
                        .map(|(k, _)| k.type_name())
                        .unwrap_or_default();
                    return Err(format!(
                        "value has type {}; should be {kt}",
                        key.type_name()
                    ));
                }
                m.get(key).cloned().unwrap_or_else(|| m.elem_zero())
            }
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

#[derive(PartialEq)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: Option<&Value>) -> BasicKind {
    match v {
        Some(Value::Bool(_)) => BasicKind::Bool,
        Some(Value::Int(_)) => BasicKind::Int,
        Some(Value::Float(_)) => BasicKind::Float,
        Some(Value::String(_)) => BasicKind::Str,
        _ => BasicKind::Invalid,
    }
}

/// Go's `indirectInterface`: a nil interface is the invalid value.
fn ind(v: Option<&Value>) -> Option<&Value> {
    v.filter(|x| !matches!(x, Value::Nil))
}

fn b_eq(a: &Args<'_, '_>) -> Result<Value, String> {
    let a1 = ind(a.valid(0));
    if a.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a1);
    for i in 1..a.len() {
        let a2 = ind(a.valid(i));
        let k2 = basic_kind(a2);
        let truth = if k1 != k2 {
            if a1.is_some() && a2.is_some() {
                return Err("incompatible types for comparison".into());
            }
            false
        } else {
            match (a1, a2) {
                (Some(Value::Bool(x)), Some(Value::Bool(y))) => x == y,
                (Some(Value::Int(x)), Some(Value::Int(y))) => x == y,
                (Some(Value::Float(x)), Some(Value::Float(y))) => x == y,
                (Some(Value::String(x)), Some(Value::String(y))) => x == y,
                (None, None) => true,
                (None, Some(_)) | (Some(_), None) => false,
                (Some(x), Some(y)) => {
                    if std::mem::discriminant(x) != std::mem::discriminant(y) {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            sprint_value(x),
                            x.type_name(),
                            y.type_name(),
                            sprint_value(y)
                        ));
                    }
                    match y {
                        Value::List(_) | Value::Map(_) => {
                            return Err(format!(
                                "non-comparable type {}: {}",
                                sprint_value(y),
                                y.type_name()
                            ));
                        }
                        _ => go_compare(x, y) == std::cmp::Ordering::Equal && x == y,
                    }
                }
            }
        };
        if truth {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn b_lt(a1: Option<&Value>, a2: Option<&Value>) -> Result<bool, String> {
    let (a1, a2) = (ind(a1), ind(a2));
    let k1 = basic_kind(a1);
    if k1 == BasicKind::Invalid {
        return Err("invalid type for comparison".into());
    }
    let k2 = basic_kind(a2);
    if k2 == BasicKind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return Err("incompatible types for comparison".into());
    }
    match (a1, a2) {
        (Some(Value::Int(x)), Some(Value::Int(y))) => Ok(x < y),
        (Some(Value::Float(x)), Some(Value::Float(y))) => Ok(x < y),
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x < y),
        _ => Err("invalid type for comparison".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_query_escape() {
        assert_eq!(query_escape("a b&c"), "a+b%26c");
    }
}
