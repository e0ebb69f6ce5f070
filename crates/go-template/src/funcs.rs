//! Go's builtin template functions and Sprig's hermetic function map.
//!
//! Every function has its Go signature (parameter types), so argument checking and the
//! resulting errors follow `text/template`; implementations follow Sprig v3.2.3.

use std::borrow::Cow;

use base64::Engine as _;
use sha2::Digest as _;

use crate::exec::Ev;
use crate::fmt::{quote, sprint, sprint_value, sprintln};
use crate::limits::FnBudget;
use crate::value::{Map, Value, go_compare};

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

const fn sig(params: &'static [Ty], variadic: Option<Ty>, f: F) -> Sig {
    Sig {
        params,
        variadic,
        imp: Imp::F(f),
    }
}

const fn unsup(params: &'static [Ty], variadic: Option<Ty>) -> Sig {
    Sig {
        params,
        variadic,
        imp: Imp::Unsupported,
    }
}

/// Whether `name` is defined (Go builtins + Sprig's hermetic map), for the parse-time check.
pub(crate) fn has_function(name: &str) -> bool {
    lookup(name).is_some()
}

/// Names of functions that parse but fail when called.
pub(crate) fn unsupported_names() -> Vec<&'static str> {
    ALL_NAMES
        .iter()
        .copied()
        .filter(|n| matches!(lookup(n).map(|s| s.imp), Some(Imp::Unsupported)))
        .collect()
}

pub(crate) const ALL_NAMES: &[&str] = &[
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    "abbrev",
    "abbrevboth",
    "add",
    "add1",
    "add1f",
    "addf",
    "adler32sum",
    "ago",
    "all",
    "any",
    "append",
    "atoi",
    "b32dec",
    "b32enc",
    "b64dec",
    "b64enc",
    "base",
    "bcrypt",
    "biggest",
    "buildCustomCert",
    "camelcase",
    "cat",
    "ceil",
    "chunk",
    "clean",
    "coalesce",
    "compact",
    "concat",
    "contains",
    "decryptAES",
    "deepCopy",
    "deepEqual",
    "default",
    "derivePassword",
    "dict",
    "dig",
    "dir",
    "div",
    "divf",
    "duration",
    "durationRound",
    "empty",
    "encryptAES",
    "ext",
    "fail",
    "first",
    "float64",
    "floor",
    "fromJson",
    "genCA",
    "genCAWithKey",
    "genPrivateKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "get",
    "has",
    "hasKey",
    "hasPrefix",
    "hasSuffix",
    "hello",
    "htpasswd",
    "indent",
    "initial",
    "initials",
    "int",
    "int64",
    "isAbs",
    "join",
    "kebabcase",
    "keys",
    "kindIs",
    "kindOf",
    "last",
    "list",
    "lower",
    "max",
    "maxf",
    "merge",
    "mergeOverwrite",
    "min",
    "minf",
    "mod",
    "mul",
    "mulf",
    "mustAppend",
    "mustChunk",
    "mustCompact",
    "mustDateModify",
    "mustDeepCopy",
    "mustFirst",
    "mustFromJson",
    "mustHas",
    "mustInitial",
    "mustLast",
    "mustMerge",
    "mustMergeOverwrite",
    "mustPrepend",
    "mustPush",
    "mustRegexFind",
    "mustRegexFindAll",
    "mustRegexMatch",
    "mustRegexReplaceAll",
    "mustRegexReplaceAllLiteral",
    "mustRegexSplit",
    "mustRest",
    "mustReverse",
    "mustSlice",
    "mustToDate",
    "mustToJson",
    "mustToPrettyJson",
    "mustToRawJson",
    "mustUniq",
    "mustWithout",
    "must_date_modify",
    "nindent",
    "nospace",
    "omit",
    "osBase",
    "osClean",
    "osDir",
    "osExt",
    "osIsAbs",
    "pick",
    "pluck",
    "plural",
    "prepend",
    "push",
    "quote",
    "randInt",
    "regexFind",
    "regexFindAll",
    "regexMatch",
    "regexQuoteMeta",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "regexSplit",
    "repeat",
    "replace",
    "rest",
    "reverse",
    "round",
    "semver",
    "semverCompare",
    "seq",
    "set",
    "sha1sum",
    "sha256sum",
    "shuffle",
    "snakecase",
    "sortAlpha",
    "split",
    "splitList",
    "splitn",
    "squote",
    "sub",
    "subf",
    "substr",
    "swapcase",
    "ternary",
    "title",
    "toDate",
    "toDecimal",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "toString",
    "toStrings",
    "trim",
    "trimAll",
    "trimPrefix",
    "trimSuffix",
    "trimall",
    "trunc",
    "tuple",
    "typeIs",
    "typeIsLike",
    "typeOf",
    "uniq",
    "unixEpoch",
    "unset",
    "until",
    "untilStep",
    "untitle",
    "upper",
    "urlJoin",
    "urlParse",
    "values",
    "without",
    "wrap",
    "wrapWith",
];

/// The signature and implementation of a function, or `None` if Go would not know it.
pub(crate) fn lookup(name: &str) -> Option<Sig> {
    let any1: &'static [Ty] = &[Any];
    let s1: &'static [Ty] = &[TS];
    let s2: &'static [Ty] = &[TS, TS];
    let s3: &'static [Ty] = &[TS, TS, TS];
    Some(match name {
        // Go builtins.
        "and" => Sig {
            params: &[Refl],
            variadic: Some(Refl),
            imp: Imp::AndOr(false),
        },
        "or" => Sig {
            params: &[Refl],
            variadic: Some(Refl),
            imp: Imp::AndOr(true),
        },
        "not" => sig(&[Refl], None, |a| {
            Ok(Value::Bool(!a.valid(0).is_some_and(Value::is_true)))
        }),
        "len" => sig(&[Refl], None, b_len),
        "index" => sig(&[Refl], Some(Refl), b_index),
        "print" => sig(&[], Some(Any), |a| {
            Ok(Value::String(sprint(&collect(a, 0))))
        }),
        "println" => sig(&[], Some(Any), |a| {
            Ok(Value::String(sprintln(&collect(a, 0))))
        }),
        "printf" => sig(&[TS], Some(Any), |a| {
            Ok(Value::String(limited_sprintf(a, a.s(0), &collect(a, 1))?))
        }),
        "html" => sig(&[], Some(Any), |a| {
            Ok(Value::String(html_escape(&eval_args(a))))
        }),
        "js" => sig(&[], Some(Any), |a| {
            Ok(Value::String(js_escape(&eval_args(a))))
        }),
        "urlquery" => sig(&[], Some(Any), |a| {
            Ok(Value::String(query_escape(&eval_args(a))))
        }),
        "eq" => sig(&[Refl], Some(Refl), b_eq),
        "ne" => sig(&[Refl, Refl], None, |a| {
            b_eq(a).map(|v| Value::Bool(!v.is_true()))
        }),
        "lt" => sig(&[Refl, Refl], None, |a| {
            b_lt(a.valid(0), a.valid(1)).map(Value::Bool)
        }),
        "le" => sig(&[Refl, Refl], None, |a| {
            let lt = b_lt(a.valid(0), a.valid(1))?;
            Ok(Value::Bool(lt || b_eq(a)?.is_true()))
        }),
        "gt" => sig(&[Refl, Refl], None, |a| {
            let lt = b_lt(a.valid(0), a.valid(1))?;
            Ok(Value::Bool(!lt && !b_eq(a)?.is_true()))
        }),
        "ge" => sig(&[Refl, Refl], None, |a| {
            b_lt(a.valid(0), a.valid(1)).map(|lt| Value::Bool(!lt))
        }),
        "call" => sig(&[Refl], Some(Refl), |a| match a.valid(0) {
            None | Some(Value::Nil) => Err("call of nil".into()),
            Some(v) => Err(format!("non-function of type {}", v.type_name())),
        }),

        // Strings.
        "hello" => sig(&[], None, |_| Ok("Hello!".into())),
        "upper" => sig(s1, None, |a| Ok(a.s(0).to_uppercase().into())),
        "lower" => sig(s1, None, |a| Ok(a.s(0).to_lowercase().into())),
        "title" => sig(s1, None, |a| Ok(title(a.s(0)).into())),
        "untitle" => sig(s1, None, |a| Ok(untitle(a.s(0)).into())),
        "swapcase" => sig(s1, None, |a| Ok(swapcase(a.s(0)).into())),
        "initials" => sig(s1, None, |a| Ok(initials(a.s(0)).into())),
        "substr" => sig(&[TI, TI, TS], None, |a| substr(a.i(0), a.i(1), a.s(2))),
        "repeat" => sig(&[TI, TS], None, |a| {
            let n = usize::try_from(a.i(0)).map_err(|_| "strings: negative Repeat count")?;
            a.size(n as u128 * a.s(1).len() as u128)?;
            Ok(a.s(1).repeat(n).into())
        }),
        "trunc" => sig(&[TI, TS], None, |a| Ok(trunc(a.i(0), a.s(1)).into())),
        "trim" => sig(s1, None, |a| Ok(a.s(0).trim_matches(go_space).into())),
        "trimAll" | "trimall" => sig(s2, None, |a| {
            let cut = a.s(0);
            Ok(a.s(1).trim_matches(|c| cut.contains(c)).into())
        }),
        "trimPrefix" => sig(s2, None, |a| {
            Ok(a.s(1).strip_prefix(a.s(0)).unwrap_or(a.s(1)).into())
        }),
        "trimSuffix" => sig(s2, None, |a| {
            Ok(a.s(1).strip_suffix(a.s(0)).unwrap_or(a.s(1)).into())
        }),
        "nospace" => sig(s1, None, |a| {
            Ok(a.s(0)
                .chars()
                .filter(|c| !go_space(*c))
                .collect::<String>()
                .into())
        }),
        "abbrev" => sig(&[TI, TS], None, |a| Ok(abbrev(a.i(0), a.s(1)).into())),
        "abbrevboth" => unsup(&[TI, TI, TS], None),
        "contains" => sig(s2, None, |a| Ok(Value::Bool(a.s(1).contains(a.s(0))))),
        "hasPrefix" => sig(s2, None, |a| Ok(Value::Bool(a.s(1).starts_with(a.s(0))))),
        "hasSuffix" => sig(s2, None, |a| Ok(Value::Bool(a.s(1).ends_with(a.s(0))))),
        "quote" => sig(&[], Some(Any), |a| {
            let v: Vec<String> = a
                .rest(0)
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| quote(&strval(v)))
                .collect();
            Ok(v.join(" ").into())
        }),
        "squote" => sig(&[], Some(Any), |a| {
            let v: Vec<String> = a
                .rest(0)
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{}'", strval(v)))
                .collect();
            Ok(v.join(" ").into())
        }),
        "cat" => sig(&[], Some(Any), |a| {
            let v: Vec<Value> = a
                .rest(0)
                .filter(|v| !matches!(v, Value::Nil))
                .cloned()
                .collect();
            let f = vec!["%v"; v.len()].join(" ");
            Ok(limited_sprintf(a, &f, &v)?.into())
        }),
        "indent" => sig(&[TI, TS], None, |a| {
            a.size(indent_size(a.i(0), a.s(1)))?;
            Ok(indent(a.i(0), a.s(1)).into())
        }),
        "nindent" => sig(&[TI, TS], None, |a| {
            a.size(indent_size(a.i(0), a.s(1)) + 1)?;
            Ok(format!("\n{}", indent(a.i(0), a.s(1))).into())
        }),
        "replace" => sig(s3, None, |a| {
            let (s, old, new) = (a.s(2), a.s(0), a.s(1));
            let count = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(old).count()
            };
            a.size(s.len() as u128 + count as u128 * new.len() as u128)?;
            Ok(go_replace(s, old, new).into())
        }),
        "plural" => sig(&[TS, TS, TI], None, |a| {
            Ok(if a.i(2) == 1 { a.s(0) } else { a.s(1) }.into())
        }),
        "split" => sig(s2, None, |a| {
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
        "splitn" => sig(&[TS, TI, TS], None, |a| {
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
        "splitList" => sig(s2, None, |a| {
            a.size(split_count(a.s(1), a.s(0), -1) * NODE + a.s(1).len() as u128)?;
            Ok(Value::list(go_split(a.s(1), a.s(0), -1)))
        }),
        "join" => sig(&[TS, Any], None, |a| {
            let parts = strslice(a.v(1));
            let sep = a.s(0).len() as u128 * parts.len().saturating_sub(1) as u128;
            a.size(parts.iter().map(|p| p.len() as u128).sum::<u128>() + sep)?;
            Ok(parts.join(a.s(0)).into())
        }),
        "sortAlpha" => sig(any1, None, |a| match a.v(0) {
            Value::List(_) => {
                let mut v = strslice(a.v(0));
                v.sort();
                Ok(Value::list(v))
            }
            other => Ok(Value::list(vec![strval(other)])),
        }),
        "toString" => sig(any1, None, |a| Ok(strval(a.v(0)).into())),
        "toStrings" => sig(any1, None, |a| Ok(Value::list(strslice(a.v(0))))),
        "camelcase" | "snakecase" | "kebabcase" => unsup(s1, None),
        "wrap" => unsup(&[TI, TS], None),
        "wrapWith" => unsup(&[TI, TS, TS], None),
        "shuffle" => unsup(s1, None),

        // Conversions and math.
        "atoi" => sig(s1, None, |a| {
            Ok(Value::Int(a.s(0).parse::<i64>().unwrap_or(0)))
        }),
        "int" | "int64" => sig(any1, None, |a| Ok(Value::Int(to_int64(a.v(0))))),
        "float64" => sig(any1, None, |a| Ok(Value::Float(to_float64(a.v(0))))),
        "toDecimal" => sig(any1, None, |a| {
            Ok(Value::Int(
                i64::from_str_radix(&strval(a.v(0)), 8).unwrap_or(0),
            ))
        }),
        "add" => sig(&[], Some(Any), |a| {
            Ok(Value::Int(
                a.rest(0).map(to_int64).fold(0i64, i64::wrapping_add),
            ))
        }),
        "add1" => sig(any1, None, |a| {
            Ok(Value::Int(to_int64(a.v(0)).wrapping_add(1)))
        }),
        "sub" => sig(&[Any, Any], None, |a| {
            Ok(Value::Int(to_int64(a.v(0)).wrapping_sub(to_int64(a.v(1)))))
        }),
        "mul" => sig(any1, Some(Any), |a| {
            Ok(Value::Int(
                a.rest(0).map(to_int64).fold(1i64, i64::wrapping_mul),
            ))
        }),
        "div" => sig(&[Any, Any], None, |a| {
            let d = to_int64(a.v(1));
            if d == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Ok(Value::Int(to_int64(a.v(0)).wrapping_div(d)))
        }),
        "mod" => sig(&[Any, Any], None, |a| {
            let d = to_int64(a.v(1));
            if d == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Ok(Value::Int(to_int64(a.v(0)).wrapping_rem(d)))
        }),
        "max" | "biggest" => sig(any1, Some(Any), |a| {
            Ok(Value::Int(a.rest(0).map(to_int64).max().unwrap_or(0)))
        }),
        "min" => sig(any1, Some(Any), |a| {
            Ok(Value::Int(a.rest(0).map(to_int64).min().unwrap_or(0)))
        }),
        "add1f" | "addf" | "subf" | "mulf" | "divf" | "maxf" | "minf" => {
            // Sprig computes these with arbitrary-precision decimals; not reproduced here.
            unsup(
                if name == "add1f" || name == "addf" {
                    &[]
                } else {
                    any1
                },
                if name == "add1f" { None } else { Some(Any) },
            )
        }
        "ceil" => sig(any1, None, |a| Ok(Value::Float(to_float64(a.v(0)).ceil()))),
        "floor" => sig(any1, None, |a| Ok(Value::Float(to_float64(a.v(0)).floor()))),
        "round" => sig(&[Any, TI], Some(TF), |a| {
            let on = match a.valid(2) {
                Some(Value::Float(f)) => *f,
                _ => 0.5,
            };
            Ok(Value::Float(round(to_float64(a.v(0)), a.i(1), on)))
        }),
        "until" => sig(&[TI], None, |a| {
            let n = a.i(0);
            let step = if n < 0 { -1 } else { 1 };
            a.size(until_step_count(0, n, step) * NODE)?;
            Ok(Value::list(until_step(0, n, step)))
        }),
        "untilStep" => sig(&[TI, TI, TI], None, |a| {
            a.size(until_step_count(a.i(0), a.i(1), a.i(2)) * NODE)?;
            Ok(Value::list(until_step(a.i(0), a.i(1), a.i(2))))
        }),
        "seq" => sig(&[], Some(TI), |a| {
            seq(
                a,
                &a.rest(0)
                    .map(|v| match v {
                        Value::Int(i) => *i,
                        _ => 0,
                    })
                    .collect::<Vec<_>>(),
            )
        }),
        "randInt" => unsup(&[TI, TI], None),

        // Defaults and flow.
        "default" => sig(any1, Some(Any), |a| {
            if a.len() < 2 || empty(a.v(1)) {
                Ok(a.v(0).clone())
            } else {
                Ok(a.v(1).clone())
            }
        }),
        "empty" => sig(any1, None, |a| Ok(Value::Bool(empty(a.v(0))))),
        "coalesce" => sig(&[], Some(Any), |a| {
            Ok(a.rest(0).find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
        }),
        "all" => sig(&[], Some(Any), |a| {
            Ok(Value::Bool(a.rest(0).all(|v| !empty(v))))
        }),
        "any" => sig(&[], Some(Any), |a| {
            Ok(Value::Bool(a.rest(0).any(|v| !empty(v))))
        }),
        "ternary" => sig(&[Any, Any, TB], None, |a| {
            Ok(if a.b(2) {
                a.v(0).clone()
            } else {
                a.v(1).clone()
            })
        }),
        "fail" => sig(s1, None, |a| Err(a.s(0).to_string())),
        "typeOf" => sig(any1, None, |a| Ok(a.v(0).type_name().into())),
        "typeIs" => sig(&[TS, Any], None, |a| {
            Ok(Value::Bool(a.s(0) == a.v(1).type_name()))
        }),
        "typeIsLike" => sig(&[TS, Any], None, |a| {
            let t = a.v(1).type_name();
            Ok(Value::Bool(a.s(0) == t || format!("*{}", a.s(0)) == t))
        }),
        "kindOf" => sig(any1, None, |a| Ok(a.v(0).kind_name().into())),
        "kindIs" => sig(&[TS, Any], None, |a| {
            Ok(Value::Bool(a.s(0) == a.v(1).kind_name()))
        }),
        "deepEqual" => sig(&[Any, Any], None, |a| Ok(Value::Bool(a.v(0) == a.v(1)))),
        "deepCopy" | "mustDeepCopy" => sig(any1, None, |a| Ok(a.v(0).clone())),

        // Encoding and hashing.
        "b64enc" => sig(s1, None, |a| {
            Ok(base64::engine::general_purpose::STANDARD
                .encode(a.s(0))
                .into())
        }),
        "b64dec" => sig(s1, None, |a| {
            Ok(
                match base64::engine::general_purpose::STANDARD.decode(a.s(0)) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) => b64_error(a.s(0), &e),
                }
                .into(),
            )
        }),
        "b32enc" => sig(s1, None, |a| Ok(b32enc(a.s(0).as_bytes()).into())),
        "b32dec" => sig(s1, None, |a| Ok(b32dec(a.s(0)).into())),
        "sha1sum" => sig(s1, None, |a| {
            Ok(hex::encode(crate::hash::sha1(a.s(0).as_bytes())).into())
        }),
        "sha256sum" => sig(s1, None, |a| {
            Ok(hex::encode(sha2::Sha256::digest(a.s(0).as_bytes())).into())
        }),
        "adler32sum" => sig(s1, None, |a| {
            Ok(crate::hash::adler32(a.s(0).as_bytes()).to_string().into())
        }),
        "toJson" | "mustToJson" => sig(any1, None, |a| to_json(a, true, false)),
        "toRawJson" | "mustToRawJson" => sig(any1, None, |a| to_json(a, false, false)),
        "toPrettyJson" | "mustToPrettyJson" => sig(any1, None, |a| to_json(a, true, true)),
        "fromJson" => sig(s1, None, |a| {
            a.size(json_nodes(a.s(0)) * 2 * NODE)?;
            Ok(crate::json::decode(a.s(0)).unwrap_or_else(|_| Value::Map(Map::new())))
        }),
        "mustFromJson" => sig(s1, None, |a| {
            a.size(json_nodes(a.s(0)) * 2 * NODE)?;
            crate::json::decode(a.s(0))
        }),

        // Lists.
        "list" | "tuple" => sig(&[], Some(Any), |a| {
            Ok(Value::List(a.rest(0).cloned().collect()))
        }),
        "first" | "mustFirst" => sig(any1, None, |a| {
            let l = as_list(a.v(0), "Cannot find first on type")?;
            Ok(l.first().cloned().unwrap_or(Value::Nil))
        }),
        "last" | "mustLast" => sig(any1, None, |a| {
            let l = as_list(a.v(0), "Cannot find last on type")?;
            Ok(l.last().cloned().unwrap_or(Value::Nil))
        }),
        "rest" | "mustRest" => sig(any1, None, |a| {
            let l = as_list(a.v(0), "Cannot find rest on type")?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                Value::List(l[1..].to_vec())
            })
        }),
        "initial" | "mustInitial" => sig(any1, None, |a| {
            let l = as_list(a.v(0), "Cannot find initial on type")?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                Value::List(l[..l.len() - 1].to_vec())
            })
        }),
        "append" | "push" | "mustAppend" | "mustPush" => sig(&[Any, Any], None, |a| {
            let mut l = as_list(a.v(0), "Cannot push on type")?.to_vec();
            l.push(a.v(1).clone());
            Ok(Value::List(l))
        }),
        "prepend" | "mustPrepend" => sig(&[Any, Any], None, |a| {
            let mut l = vec![a.v(1).clone()];
            l.extend_from_slice(as_list(a.v(0), "Cannot prepend on type")?);
            Ok(Value::List(l))
        }),
        "concat" => sig(&[], Some(Any), |a| {
            let mut out = Vec::new();
            for v in a.rest(0) {
                match v {
                    Value::List(l) => out.extend_from_slice(l),
                    other => {
                        return Err(format!("Cannot concat type {} as list", other.kind_name()));
                    }
                }
            }
            Ok(Value::List(out))
        }),
        "reverse" | "mustReverse" => sig(any1, None, |a| {
            let mut l = as_list(a.v(0), "Cannot find reverse on type")?.to_vec();
            l.reverse();
            Ok(Value::List(l))
        }),
        "uniq" | "mustUniq" => sig(any1, None, |a| {
            let mut out: Vec<Value> = Vec::new();
            for v in as_list(a.v(0), "Cannot find uniq on type")? {
                a.work(out.len() as u128)?;
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::List(out))
        }),
        "without" | "mustWithout" => sig(any1, Some(Any), |a| {
            let omit: Vec<&Value> = a.rest(1).collect();
            let l = as_list(a.v(0), "Cannot find without on type")?;
            a.work(l.len() as u128 * omit.len() as u128)?;
            Ok(Value::List(
                l.iter().filter(|v| !omit.contains(v)).cloned().collect(),
            ))
        }),
        "has" | "mustHas" => sig(&[Any, Any], None, |a| match a.v(1) {
            Value::Nil => Ok(Value::Bool(false)),
            Value::List(l) => Ok(Value::Bool(l.contains(a.v(0)))),
            other => Err(format!("Cannot find has on type {}", other.kind_name())),
        }),
        "compact" | "mustCompact" => sig(any1, None, |a| {
            let l = as_list(a.v(0), "Cannot compact on type")?;
            Ok(Value::List(
                l.iter().filter(|v| !empty(v)).cloned().collect(),
            ))
        }),
        "chunk" | "mustChunk" => sig(&[TI, Any], None, |a| {
            let size = usize::try_from(a.i(0)).unwrap_or(0).max(1);
            let l = as_list(a.v(1), "Cannot chunk type")?;
            Ok(Value::List(
                l.chunks(size).map(|c| Value::List(c.to_vec())).collect(),
            ))
        }),
        // Sprig's `slice` replaces Go's builtin of the same name.
        "slice" | "mustSlice" => sig(any1, Some(Any), sprig_slice),

        // Dicts.
        "dict" => sig(&[], Some(Any), |a| {
            let n = a.len();
            let mut pairs = Vec::with_capacity(n.div_ceil(2));
            let mut i = 0;
            while i < n {
                let k = strval(a.v(i));
                let v = if i + 1 < n {
                    a.v(i + 1).clone()
                } else {
                    Value::String(String::new())
                };
                pairs.push((k, v));
                i += 2;
            }
            Ok(Value::Map(pairs.into_iter().collect()))
        }),
        "get" => sig(&[TM, TS], None, |a| {
            Ok(dict(a.v(0))
                .get_str(a.s(1))
                .cloned()
                .unwrap_or_else(|| "".into()))
        }),
        "set" => sig(&[TM, TS, Any], None, |a| {
            let mut m = dict(a.v(0)).into_owned();
            m.insert(a.s(1), a.v(2).clone());
            Ok(Value::Map(m))
        }),
        "unset" => sig(&[TM, TS], None, |a| {
            let mut m = dict(a.v(0)).into_owned();
            m.remove(&Value::from(a.s(1)));
            Ok(Value::Map(m))
        }),
        "hasKey" => sig(&[TM, TS], None, |a| {
            Ok(Value::Bool(dict(a.v(0)).get_str(a.s(1)).is_some()))
        }),
        "keys" => sig(&[], Some(TM), |a| {
            let mut out = Vec::new();
            for d in a.rest(0) {
                for (k, _) in dict(d).iter() {
                    out.push(k.clone());
                }
            }
            Ok(Value::List(out))
        }),
        "values" => sig(&[TM], None, |a| {
            Ok(Value::List(
                dict(a.v(0)).iter().map(|(_, v)| v.clone()).collect(),
            ))
        }),
        "pluck" => sig(&[TS], Some(TM), |a| {
            Ok(Value::List(
                a.rest(1)
                    .filter_map(|d| dict(d).get_str(a.s(0)).cloned())
                    .collect(),
            ))
        }),
        "pick" => sig(&[TM], Some(TS), |a| {
            let src = dict(a.v(0));
            let mut picked = Vec::new();
            for k in a.rest(1) {
                if let Value::String(k) = k
                    && let Some(v) = src.get_str(k)
                {
                    picked.push((k.as_str(), v.clone()));
                }
            }
            Ok(Value::Map(picked.into_iter().collect()))
        }),
        "omit" => sig(&[TM], Some(TS), |a| {
            let omit: Vec<&Value> = a.rest(1).collect();
            a.work(dict(a.v(0)).len() as u128 * omit.len() as u128)?;
            Ok(Value::Map(
                dict(a.v(0))
                    .iter()
                    .filter(|(k, _)| !omit.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        }),
        "merge" | "mustMerge" => sig(&[TM], Some(TM), |a| merge(a, false)),
        "mergeOverwrite" | "mustMergeOverwrite" => sig(&[TM], Some(TM), |a| merge(a, true)),
        "dig" => sig(&[], Some(Any), |a| {
            let n = a.len();
            if n < 3 {
                return Err("dig needs at least three arguments".into());
            }
            let Value::Map(mut cur) = a.v(n - 1).clone() else {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    a.v(n - 1).type_name()
                ));
            };
            let def = a.v(n - 2).clone();
            for i in 0..n - 2 {
                let Value::String(k) = a.v(i) else {
                    return Err(format!(
                        "interface conversion: interface {{}} is {}, not string",
                        a.v(i).type_name()
                    ));
                };
                match cur.get_str(k).cloned() {
                    None => return Ok(def),
                    Some(v) if i == n - 3 => return Ok(v),
                    Some(Value::Map(m)) => cur = m,
                    Some(other) => {
                        return Err(format!(
                            "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                            other.type_name()
                        ));
                    }
                }
            }
            Ok(def)
        }),

        // Regular expressions (Go RE2 syntax, ASCII Perl classes as in Go).
        // Sprig's non-must regexMatch swallows compile errors.
        "regexMatch" => sig(s2, None, |a| {
            Ok(Value::Bool(re(a.s(0)).is_ok_and(|r| r.is_match(a.s(1)))))
        }),
        "mustRegexMatch" => sig(s2, None, |a| Ok(Value::Bool(re(a.s(0))?.is_match(a.s(1))))),
        "regexFind" | "mustRegexFind" => sig(s2, None, |a| {
            Ok(re(a.s(0))?
                .find(a.s(1))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default()
                .into())
        }),
        "regexFindAll" | "mustRegexFindAll" => sig(&[TS, TS, TI], None, |a| {
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
        }),
        "regexReplaceAll" | "mustRegexReplaceAll" => sig(s3, None, |a| re_replace(a, false)),
        "regexReplaceAllLiteral" | "mustRegexReplaceAllLiteral" => {
            sig(s3, None, |a| re_replace(a, true))
        }
        "regexSplit" | "mustRegexSplit" => sig(&[TS, TS, TI], None, |a| {
            let r = re(a.s(0))?;
            let n = a.i(2);
            let count = r.find_iter(a.s(1)).count() as u128 + 1;
            let count = if n > 0 { count.min(n as u128) } else { count };
            a.size(count * NODE + a.s(1).len() as u128)?;
            Ok(Value::list(re_split(&r, a.s(1), n)))
        }),
        "regexQuoteMeta" => sig(s1, None, |a| Ok(quote_meta(a.s(0)).into())),

        // Paths (forward-slash, as Go's `path` and `path/filepath` on Linux).
        "base" | "osBase" => sig(s1, None, |a| Ok(path_base(a.s(0)).into())),
        "dir" | "osDir" => sig(s1, None, |a| Ok(path_dir(a.s(0)).into())),
        "clean" | "osClean" => sig(s1, None, |a| Ok(path_clean(a.s(0)).into())),
        "ext" | "osExt" => sig(s1, None, |a| Ok(path_ext(a.s(0)).into())),
        "isAbs" | "osIsAbs" => sig(s1, None, |a| Ok(Value::Bool(a.s(0).starts_with('/')))),

        // Defined by Sprig but not implemented (non-deterministic, crypto, dates, semver, URLs).
        "ago" | "duration" | "durationRound" | "deepCopyUnused" => unsup(any1, None),
        "unixEpoch" => unsup(&[Ty::Other("time.Time")], None),
        "toDate" | "mustToDate" => unsup(s2, None),
        "mustDateModify" | "must_date_modify" => unsup(&[TS, Ty::Other("time.Time")], None),
        "semver" => unsup(s1, None),
        "semverCompare" => unsup(s2, None),
        "urlParse" => unsup(s1, None),
        "urlJoin" => unsup(&[TM], None),
        "bcrypt" | "genPrivateKey" => unsup(s1, None),
        "htpasswd" | "encryptAES" | "decryptAES" => unsup(s2, None),
        "derivePassword" => unsup(&[Ty::Uint32, TS, TS, TS, TS], None),
        "buildCustomCert" => unsup(s2, None),
        "genCA" => unsup(&[TS, TI], None),
        "genCAWithKey" => unsup(&[TS, TI, TS], None),
        "genSelfSignedCert" => unsup(&[TS, TL, TL, TI], None),
        "genSelfSignedCertWithKey" => unsup(&[TS, TL, TL, TI, TS], None),
        "genSignedCert" => unsup(&[TS, TL, TL, TI, Ty::Other("sprig.certificate")], None),
        "genSignedCertWithKey" => {
            unsup(&[TS, TL, TL, TI, Ty::Other("sprig.certificate"), TS], None)
        }
        _ => return None,
    })
}

fn collect(a: &Args<'_, '_>, from: usize) -> Vec<Value> {
    a.rest(from).cloned().collect()
}

fn dict(v: &Value) -> Cow<'_, Map> {
    match v {
        Value::Map(m) => Cow::Borrowed(m),
        _ => Cow::Owned(Map::new()),
    }
}

fn merge(a: &Args<'_, '_>, overwrite: bool) -> Result<Value, String> {
    fn deep(dst: &mut Map, src: &Map, overwrite: bool, a: &Args<'_, '_>) -> Result<(), String> {
        for (k, v) in src.iter() {
            // An insert shifts the sorted entries after it.
            a.work(1 + dst.len() as u128 / 8)?;
            match (dst.get(k).cloned(), v) {
                (Some(Value::Map(mut d)), Value::Map(s)) => {
                    deep(&mut d, s, overwrite, a)?;
                    dst.insert(k.clone(), Value::Map(d));
                }
                (Some(existing), _) => {
                    if overwrite && !empty(v) || empty(&existing) {
                        dst.insert(k.clone(), v.clone());
                    }
                }
                (None, _) => dst.insert(k.clone(), v.clone()),
            }
        }
        Ok(())
    }
    let mut dst = dict(a.v(0)).into_owned();
    for s in a.rest(1) {
        deep(&mut dst, &dict(s), overwrite, a)?;
    }
    Ok(Value::Map(dst))
}

fn to_json(a: &Args<'_, '_>, html: bool, pretty: bool) -> Result<Value, String> {
    match crate::json::encode(a.v(0), html, pretty, a.max_value()) {
        Some(s) => Ok(s.into()),
        None => a.size(u128::MAX).map(|()| Value::Nil),
    }
}

/// An upper bound of the values a JSON text decodes to.
fn json_nodes(s: &str) -> u128 {
    1 + s.bytes().filter(|b| b",:[{".contains(b)).count() as u128
}

/// Go's `fmt.Sprintf` within the value size limit.
fn limited_sprintf(a: &Args<'_, '_>, format: &str, args: &[Value]) -> Result<String, String> {
    match crate::fmt::sprintf_limited(format, args, a.max_value()) {
        Some(s) => Ok(s),
        None => a.size(u128::MAX).map(|()| String::new()),
    }
}

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

/// How many numbers `until_step(start, stop, step)` returns.
fn until_step_count(start: i64, stop: i64, step: i64) -> u128 {
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    let count = if stop < start {
        if step >= 0 {
            return 0;
        }
        (start - stop + (-step) - 1) / -step
    } else {
        if step <= 0 {
            return 0;
        }
        (stop - start + step - 1) / step
    };
    u128::try_from(count).unwrap_or(0)
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

fn round(x: f64, places: i64, on: f64) -> f64 {
    let pow = 10f64.powf(places as f64);
    let digit = pow * x;
    let div = digit.fract();
    let r = if div >= on {
        digit.ceil()
    } else {
        digit.floor()
    };
    r / pow
}

fn until_step(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut v = Vec::new();
    if stop < start {
        if step >= 0 {
            return v;
        }
        let mut i = start;
        while i > stop {
            v.push(i);
            // Go wraps around (and loops until memory runs out); stop instead.
            let Some(next) = i.checked_add(step) else {
                break;
            };
            i = next;
        }
        return v;
    }
    if step <= 0 {
        return v;
    }
    let mut i = start;
    while i < stop {
        v.push(i);
        let Some(next) = i.checked_add(step) else {
            break;
        };
        i = next;
    }
    v
}

fn seq(a: &Args<'_, '_>, p: &[i64]) -> Result<Value, String> {
    let counted = |start: i64, stop: i64, step: i64| -> Result<Vec<i64>, String> {
        a.size(until_step_count(start, stop, step) * NODE)?;
        Ok(until_step(start, stop, step))
    };
    let join = |v: Vec<i64>| -> Value {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
            .into()
    };
    Ok(match p {
        [] => "".into(),
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            join(counted(1, end.wrapping_add(inc), inc)?)
        }
        [start, end] => {
            let inc = if end < start { -1 } else { 1 };
            join(counted(*start, end.wrapping_add(inc), inc)?)
        }
        [start, step, end] => {
            if end < start {
                if *step >= 0 {
                    return Ok("".into());
                }
            } else if *step <= 0 {
                return Ok("".into());
            }
            let sign = if end < start { -1 } else { 1 };
            join(counted(*start, end.wrapping_add(sign), *step)?)
        }
        _ => "".into(),
    })
}

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

fn b64_error(s: &str, e: &base64::DecodeError) -> String {
    let off = match e {
        base64::DecodeError::InvalidByte(i, _) => *i,
        base64::DecodeError::InvalidLength(i) => *i,
        base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        base64::DecodeError::InvalidPadding => s.len(),
    };
    format!("illegal base64 data at input byte {off}")
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32enc(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = buf.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        let nchars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < nchars {
                out.push(char::from(B32[((v >> (35 - i * 5)) & 31) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b32dec(s: &str) -> String {
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    let trimmed = s.trim_end_matches('=');
    for (i, c) in trimmed.bytes().enumerate() {
        let Some(v) = B32.iter().position(|&x| x == c) else {
            return format!("illegal base32 data at input byte {i}");
        };
        bits = (bits << 5) | v as u64;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push(((bits >> nbits) & 0xff) as u8);
        }
    }
    if !s.len().is_multiple_of(8) {
        return format!("illegal base32 data at input byte {}", s.len() / 8 * 8);
    }
    String::from_utf8_lossy(&out).into_owned()
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

fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".into()
    } else {
        body
    }
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let i = p.rfind('/').map_or(0, |i| i + 1);
    path_clean(&p[..i])
}

fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

fn eval_args(a: &Args<'_, '_>) -> String {
    if a.len() == 1
        && let Value::String(s) = a.v(0)
    {
        return s.clone();
    }
    sprint(&collect(a, 0))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if !c.is_ascii() && !crate::fmt::is_print(c) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
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

fn sprig_slice(a: &Args<'_, '_>) -> Result<Value, String> {
    let l = match a.v(0) {
        Value::List(l) => l,
        Value::Nil => {
            return Err("runtime error: invalid memory address or nil pointer dereference".into());
        }
        other => {
            return Err(format!(
                "list should be type of slice or array but {}",
                other.kind_name()
            ));
        }
    };
    let n = l.len();
    if n == 0 {
        return Ok(Value::Nil);
    }
    let start = a.valid(1).map_or(0, to_int64);
    let end = if a.len() < 3 {
        n as i64
    } else {
        to_int64(a.v(2))
    };
    if start < 0 || end < start || end > n as i64 {
        return Err("reflect.Value.Slice: slice index out of bounds".into());
    }
    Ok(Value::List(l[start as usize..end as usize].to_vec()))
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
    fn helpers() {
        assert_eq!(trunc(-3, "abcdef"), "def");
        assert_eq!(trunc(2, "abcdef"), "ab");
        assert_eq!(title("hello wORLD-foo"), "Hello WORLD-Foo");
        assert_eq!(b32enc(b"hello"), "NBSWY3DP");
        assert_eq!(b32dec("NBSWY3DP"), "hello");
        assert_eq!(go_split("a,b,,c", ",", -1), ["a", "b", "", "c"]);
        assert_eq!(path_base("a/b.yaml"), "b.yaml");
        assert_eq!(path_dir("a/b/c.yaml"), "a/b");
        assert_eq!(path_ext("a/b.tar.gz"), ".gz");
        assert_eq!(query_escape("a b&c"), "a+b%26c");
        assert_eq!(translate_regex(r"\d+[\w-]"), "[0-9]+[0-9A-Za-z_-]");
        assert_eq!(round(2.345, 2, 0.5), 2.35);
        assert_eq!(trim_zero_decimal("12.00"), "12");
        assert!(unsupported_names().contains(&"semver"));
        for n in ALL_NAMES {
            assert!(lookup(n).is_some(), "{n}");
        }
    }
}
