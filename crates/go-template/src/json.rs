//! Go `encoding/json` output for Sprig's `toJson` family, and `fromJson` input.

use crate::value::{Map, Value};

/// Encodes like Go's `json.Marshal` (`html`: escape `<>&`; `pretty`: `MarshalIndent("", "  ")`).
/// Values Go cannot encode (NaN, non-string map keys) give "" as Sprig does.
pub(crate) fn encode(v: &Value, html: bool, pretty: bool) -> String {
    let mut out = String::new();
    if enc(v, html, pretty, 0, &mut out).is_err() {
        return String::new();
    }
    out
}

fn newline(out: &mut String, pretty: bool, depth: usize) {
    if pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

fn enc(v: &Value, html: bool, pretty: bool, depth: usize, out: &mut String) -> Result<(), ()> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(());
            }
            let a = f.abs();
            let e = a != 0.0 && !(1e-6..1e21).contains(&a);
            let mut s = if e {
                crate::fmt::format_float(*f, 'e', None)
            } else {
                shortest_fixed(*f)
            };
            // Go trims "e-09" to "e-9" (negative exponents only).
            let n = s.len();
            if e && n >= 4 && s.as_bytes()[n - 4] == b'e' && &s[n - 3..n - 1] == "-0" {
                s.remove(n - 2);
            }
            out.push_str(&s);
        }
        Value::String(s) => string(s, html, out),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, pretty, depth + 1);
                enc(x, html, pretty, depth + 1, out)?;
            }
            newline(out, pretty, depth);
            out.push(']');
        }
        Value::Map(m) => {
            let mut entries: Vec<(String, &Value)> = Vec::new();
            for (k, x) in m.iter() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(()),
                };
                entries.push((key, x));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            object(entries, html, pretty, depth, out)?;
        }
        Value::Object(o) => {
            let mut entries: Vec<(String, &Value)> = Vec::new();
            flatten(o, &mut entries);
            object(entries, html, pretty, depth, out)?;
        }
    }
    Ok(())
}

fn flatten<'v>(o: &'v crate::Object, entries: &mut Vec<(String, &'v Value)>) {
    for f in o.raw_fields() {
        match (&f.value, f.embedded) {
            (Value::Object(inner), true) => flatten(inner, entries),
            (v, _) => entries.push((f.name.clone(), v)),
        }
    }
}

fn object(
    entries: Vec<(String, &Value)>,
    html: bool,
    pretty: bool,
    depth: usize,
    out: &mut String,
) -> Result<(), ()> {
    if entries.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    for (i, (k, x)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, pretty, depth + 1);
        string(&k, html, out);
        out.push(':');
        if pretty {
            out.push(' ');
        }
        enc(x, html, pretty, depth + 1, out)?;
    }
    newline(out, pretty, depth);
    out.push('}');
    Ok(())
}

fn shortest_fixed(f: f64) -> String {
    // Rust's Display prints the shortest round-trip digits without an exponent.
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn string(s: &str, html: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Decodes like Go's `json.Unmarshal` into `interface{}`: numbers become float64.
pub(crate) fn decode(s: &str) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
    Ok(from_json(v))
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k, from_json(v));
            }
            Value::Map(m)
        }
    }
}
