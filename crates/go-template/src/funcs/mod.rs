//! Go's builtin template functions and Sprig's hermetic function map.
//!
//! Every function has its Go signature (parameter types), so argument checking and the
//! resulting errors follow `text/template`; implementations follow Sprig v3.2.3. Each family
//! module exports a table ([`Func`] rows); [`FAMILIES`] lists the tables, and every name
//! lookup and name list is derived from them. This module is the families' prelude
//! (`use super::*`): the signature types, [`def`]/[`undef`] and Sprig's shared conversions.

mod builtins;
mod dicts;
mod encoding;
mod flow;
mod lists;
mod math;
mod paths;
mod regexp;
mod strings;
mod unsupported;

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::exec::Ev;
use crate::fmt::sprint_value;
use crate::limits::FnBudget;
use crate::value::Value;

/// Go parameter types, as far as argument checking needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// No type: used for chain receivers.
    Untyped,
    Any,
    Refl,
    Str,
    Int,
    Uint32,
    Float,
    Bool,
    List,
    StrMap,
    Other(&'static str),
}

impl Ty {
    pub(crate) fn go_name(self) -> &'static str {
        match self {
            Ty::Untyped | Ty::Any => "interface {}",
            Ty::Refl => "reflect.Value",
            Ty::Str => "string",
            Ty::Int => "int",
            Ty::Uint32 => "uint32",
            Ty::Float => "float64",
            Ty::Bool => "bool",
            Ty::List => "[]interface {}",
            Ty::StrMap => "map[string]interface {}",
            Ty::Other(n) => n,
        }
    }
}

pub(crate) type F = fn(&Args<'_, '_>) -> Result<Value, String>;

#[derive(Clone, Copy)]
pub(crate) enum Imp {
    F(F),
    /// Go's short-circuiting `and` (false) / `or` (true).
    AndOr(bool),
    /// Defined by Sprig (so templates parse) but not implemented here.
    Unsupported,
}

pub(crate) struct Sig {
    pub(crate) params: &'static [Ty],
    pub(crate) variadic: Option<Ty>,
    pub(crate) imp: Imp,
}

/// Evaluated arguments; `None` entries are invalid values (only for `reflect.Value` params).
/// Functions check what they build against the budget before building it.
pub(crate) struct Args<'a, 'b>(pub(crate) Vec<Ev<'a>>, pub(crate) &'b FnBudget);

static NIL: Value = Value::Nil;

impl Args<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn v(&self, i: usize) -> &Value {
        self.0.get(i).and_then(|x| x.as_deref()).unwrap_or(&NIL)
    }
    fn valid(&self, i: usize) -> Option<&Value> {
        self.0.get(i).and_then(|x| x.as_deref())
    }
    fn s(&self, i: usize) -> &str {
        match self.v(i) {
            Value::String(s) => s,
            _ => "",
        }
    }
    fn i(&self, i: usize) -> i64 {
        match self.v(i) {
            Value::Int(n) => *n,
            _ => 0,
        }
    }
    fn b(&self, i: usize) -> bool {
        matches!(self.v(i), Value::Bool(true))
    }
    fn rest(&self, from: usize) -> impl Iterator<Item = &Value> {
        (from..self.len()).map(|i| self.v(i))
    }
    /// Every argument but `nil`s (Sprig's variadic string functions skip them).
    fn non_nil(&self) -> impl Iterator<Item = &Value> {
        self.rest(0).filter(|v| !matches!(v, Value::Nil))
    }
    /// Fails (with the limit recorded) unless a value of `bytes` may be built.
    fn size(&self, bytes: u128) -> Result<(), String> {
        self.1.check_size(bytes)
    }
    /// Fails unless `n` more steps of work fit the step budget.
    fn work(&self, n: u128) -> Result<(), String> {
        self.1.work(n)
    }
    fn max_value(&self) -> usize {
        self.1.max_value_bytes
    }
}

/// Bytes one value node takes, for size checks of lists built from counts.
const NODE: u128 = size_of::<Value>() as u128;

use Ty::{Any, Bool as TB, Float as TF, Int as TI, List as TL, Refl, Str as TS, StrMap as TM};

const ANY1: &[Ty] = &[Any];
const S1: &[Ty] = &[TS];
const S2: &[Ty] = &[TS, TS];
const S3: &[Ty] = &[TS, TS, TS];

/// One row of a family's table: the names (aliases share one signature) and what they do.
pub(crate) struct Func {
    names: &'static [&'static str],
    sig: Sig,
}

/// A row's names (aliases share one signature).
type Names = &'static [&'static str];
/// A row's fixed parameter types.
type Params = &'static [Ty];

/// A function implemented here.
const fn def(names: Names, params: Params, variadic: Option<Ty>, f: F) -> Func {
    row(names, params, variadic, Imp::F(f))
}

/// A function Sprig defines (so templates parse) that fails when called.
const fn undef(names: Names, params: Params, variadic: Option<Ty>) -> Func {
    row(names, params, variadic, Imp::Unsupported)
}

const fn row(names: Names, params: Params, variadic: Option<Ty>, imp: Imp) -> Func {
    let sig = Sig {
        params,
        variadic,
        imp,
    };
    Func { names, sig }
}

/// Every family's table; the one source of the names templates may call.
const FAMILIES: &[&[Func]] = &[
    builtins::FUNCS,
    strings::FUNCS,
    math::FUNCS,
    flow::FUNCS,
    encoding::FUNCS,
    lists::FUNCS,
    dicts::FUNCS,
    regexp::FUNCS,
    paths::FUNCS,
    unsupported::FUNCS,
];

fn rows() -> impl Iterator<Item = (&'static str, &'static Sig)> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .flat_map(|row| row.names.iter().map(move |name| (*name, &row.sig)))
}

/// Name to signature, built once from the tables.
static INDEX: LazyLock<HashMap<&'static str, &'static Sig>> = LazyLock::new(|| rows().collect());

/// The signature and implementation of a function, or `None` if Go would not know it.
pub(crate) fn lookup(name: &str) -> Option<&'static Sig> {
    INDEX.get(name).copied()
}

/// Whether `name` is defined (Go builtins + Sprig's hermetic map), for the parse-time check.
pub(crate) fn has_function(name: &str) -> bool {
    INDEX.contains_key(name)
}

/// Names of functions that parse but fail when called.
pub(crate) fn unsupported_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = rows()
        .filter(|(_, sig)| matches!(sig.imp, Imp::Unsupported))
        .map(|(name, _)| name)
        .collect();
    names.sort_unstable();
    names
}

fn collect(a: &Args<'_, '_>, from: usize) -> Vec<Value> {
    a.rest(from).cloned().collect()
}

/// Go's `fmt.Sprintf` within the value size limit.
fn limited_sprintf(a: &Args<'_, '_>, format: &str, args: &[Value]) -> Result<String, String> {
    match crate::fmt::sprintf_limited(format, args, a.max_value()) {
        Some(s) => Ok(s),
        None => a.size(u128::MAX).map(|()| String::new()),
    }
}

/// Sprig's `strval`: strings as is, `String()` results, otherwise `fmt.Sprintf("%v")`.
pub(crate) fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.display_string().is_some() => {
            o.display_string().unwrap_or_default().to_string()
        }
        other => sprint_value(other),
    }
}

/// Sprig's `strslice`: nil elements dropped, others through `strval`.
fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

fn as_list<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], String> {
    match v {
        Value::List(l) => Ok(l),
        Value::Nil => {
            Err("runtime error: invalid memory address or nil pointer dereference".into())
        }
        other => Err(format!("{what} {}", other.kind_name())),
    }
}

/// Sprig's `empty`.
pub(crate) fn empty(v: &Value) -> bool {
    !v.is_true()
}

fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => crate::parse::parse_go_int(&trim_zero_decimal(s)).unwrap_or(0),
        _ => 0,
    }
}

fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.parse::<f64>().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// spf13/cast's `trimZeroDecimal`: "12.00" -> "12".
fn trim_zero_decimal(s: &str) -> String {
    let b = s.as_bytes();
    let mut found_zero = false;
    for i in (1..=b.len()).rev() {
        match b[i - 1] {
            b'.' => {
                if found_zero {
                    return s[..i - 1].to_string();
                }
            }
            b'0' => found_zero = true,
            _ => return s.to_string(),
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::Template;

    #[test]
    fn cast_trims_zero_decimals() {
        assert_eq!(trim_zero_decimal("12.00"), "12");
        assert_eq!(to_int64(&Value::from("12.00")), 12);
    }

    #[test]
    fn every_name_is_in_one_table_and_dispatches_to_its_row() {
        let mut seen = HashSet::new();
        for (name, sig) in rows() {
            assert!(seen.insert(name), "{name} is in two tables");
            let found = lookup(name).map(std::ptr::from_ref);
            assert_eq!(found, Some(std::ptr::from_ref(sig)), "{name}");
            assert!(has_function(name), "{name}");
            // Calling the name reaches its row: argument checking or the implementation
            // answers, never the parse-time or run-time "not defined".
            let template = Template::parse("t", &format!("{{{{ {name} }}}}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let outcome = template.execute(&Value::Nil).map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                assert!(!e.contains("not a defined function"), "{name}: {e}");
            }
            if matches!(sig.imp, Imp::Unsupported) {
                let e = outcome.err().unwrap_or_default();
                assert!(
                    e.contains(&format!("function {name} is not supported"))
                        || e.contains(&format!("wrong number of args for {name}")),
                    "{name}: {e}"
                );
            }
        }
        // Go builtins plus Sprig 3.2.3's hermetic map.
        assert_eq!(seen.len(), 211);
        assert!(!has_function("nosuchfn"));
    }

    #[test]
    fn unsupported_names_come_from_the_tables() {
        let names = unsupported_names();
        assert!(names.contains(&"semver") && names.contains(&"camelcase"));
        assert!(!names.contains(&"upper"));
    }

    #[test]
    fn add1f_takes_one_argument_like_sprig() {
        let t = Template::parse("t", "{{ add1f 1 }}").unwrap_or_else(|e| panic!("{e}"));
        let e = t
            .execute(&Value::Nil)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("function add1f is not supported"), "{e}");
    }
}
