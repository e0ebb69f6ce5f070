//! Go `encoding/json` output for Sprig's `toJson` family, and `fromJson` input.

use crate::value::{Map, Value};

/// Why encoding stopped.
enum Stop {
    /// A value Go cannot encode (NaN, non-string map keys).
    Unsupported,
    /// The text would pass the size limit.
    TooLarge,
}

/// Encodes like Go's `json.Marshal` (`html`: escape `<>&`; `pretty`: `MarshalIndent("", "  ")`).
/// Values Go cannot encode (NaN, non-string map keys) give "" as Sprig does; `None` when the
/// text would be longer than `max` bytes.
pub(crate) fn encode(v: &Value, html: bool, pretty: bool, max: usize) -> Option<String> {
    let mut out = String::new();
    let mut e = Enc { html, pretty, max };
    match e.enc(v, 0, &mut out) {
        Ok(()) if out.len() <= max => Some(out),
        Ok(()) | Err(Stop::TooLarge) => None,
        Err(Stop::Unsupported) => Some(String::new()),
    }
}

struct Enc {
    html: bool,
    pretty: bool,
    max: usize,
}

impl Enc {
    fn newline(&self, out: &mut String, depth: usize) -> Result<(), Stop> {
        if out.len() > self.max {
            return Err(Stop::TooLarge);
        }
        if self.pretty {
            out.push('\n');
            for _ in 0..depth {
                out.push_str("  ");
            }
        }
        Ok(())
    }

    fn enc(&mut self, v: &Value, depth: usize, out: &mut String) -> Result<(), Stop> {
        let html = self.html;
        match v {
            Value::Nil => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => {
                if !f.is_finite() {
                    return Err(Stop::Unsupported);
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
                    self.newline(out, depth + 1)?;
                    self.enc(x, depth + 1, out)?;
                }
                self.newline(out, depth)?;
                out.push(']');
            }
            Value::Map(m) => {
                let mut entries: Vec<(String, &Value)> = Vec::new();
                for (k, x) in m.iter() {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        _ => return Err(Stop::Unsupported),
                    };
                    entries.push((key, x));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                self.object(entries, depth, out)?;
            }
            Value::Object(o) => {
                let mut entries: Vec<(String, &Value)> = Vec::new();
                flatten(o, &mut entries);
                self.object(entries, depth, out)?;
            }
        }
        Ok(())
    }

    fn object(
        &mut self,
        entries: Vec<(String, &Value)>,
        depth: usize,
        out: &mut String,
    ) -> Result<(), Stop> {
        if entries.is_empty() {
            out.push_str("{}");
            return Ok(());
        }
        out.push('{');
        for (i, (k, x)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.newline(out, depth + 1)?;
            string(&k, self.html, out);
            out.push(':');
            if self.pretty {
                out.push(' ');
            }
            self.enc(x, depth + 1, out)?;
        }
        self.newline(out, depth)?;
        out.push('}');
        Ok(())
    }
}

fn flatten<'v>(o: &'v crate::Object, entries: &mut Vec<(String, &'v Value)>) {
    for f in o.raw_fields() {
        match (&f.value, f.embedded) {
            (Value::Object(inner), true) => flatten(inner, entries),
            (v, _) => entries.push((f.name.clone(), v)),
        }
    }
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
        serde_json::Value::Object(o) => Value::Map(
            o.into_iter()
                .map(|(k, v)| (k, from_json(v)))
                .collect::<Map>(),
        ),
    }
}
