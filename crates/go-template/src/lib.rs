//! Go `text/template` semantics with Sprig's hermetic functions, written to render Flux's
//! commit message templates byte for byte as Go does.
//!
//! # Use
//!
//! ```
//! use go_template::{Map, Object, Template, Value};
//!
//! let automation = Object::new("types.NamespacedName")
//!     .field("Namespace", "flux-system")
//!     .field("Name", "update-test")
//!     .display("flux-system/update-test");
//! let data = Object::new("source.TemplateData").field("AutomationObject", automation);
//! let t = Template::parse("commit message", "Automation: {{ .AutomationObject }} ({{ .AutomationObject.Name | upper }})")?;
//! assert_eq!(t.execute(&Value::from(data))?, "Automation: flux-system/update-test (UPDATE-TEST)");
//! # Ok::<(), go_template::Error>(())
//! ```
//!
//! # The value model
//!
//! Go templates reflect over arbitrary Go values; Flux's data needs three things a JSON-like
//! model lacks, and [`Value`] has them:
//!
//! - **Maps keyed by any value** ([`Map`]), including structs: `.Changed.Objects` is a
//!   `map[ObjectIdentifier][]Change`. Entries are kept in Go's `internal/fmtsort` order
//!   (numbers numerically, strings bytewise, structs field by field), which is the order of both
//!   `range` and `fmt`'s `map[k:v ...]` printing. A map may carry its Go type name
//!   (`map[string]string`), used in error messages and for zero values of missing keys.
//! - **Structs** ([`Object`]) with a Go type name (used in errors such as
//!   `can't evaluate field Kind in type string` / `in type update.ObjectIdentifier`), ordered
//!   fields (printed by `%v` as `{v1 v2}`, `%+v` as `{F1:v1 F2:v2}`), embedded structs whose
//!   fields are promoted (`ObjectIdentifier{yaml.ResourceIdentifier{TypeMeta, NameMeta}}`),
//!   zero-argument **methods** that `.Name` reaches but printing ignores (`.Changed.Objects`,
//!   `.Changed.Changes`, `.Updated.Images`), and an optional **display string** standing for a
//!   Go `String()` method (`.AutomationObject` prints `ns/name`; an image ref prints
//!   `name:tag`), used by `%v`/`%s`/`%q`, `print`, `toString` and also reachable as `.String`.
//! - **Missing vs nil**: a missing map key yields Go's invalid value and prints `<no value>`;
//!   [`Value::Nil`] is a nil interface and prints `<nil>` inside composites.
//!
//! `Value::Int` is Go's `int` and `Value::Float` is `float64`; Go's other numeric types
//! (`int64` from Sprig's math functions) are represented as `int`.
//!
//! # Supported language
//!
//! Text, actions with `{{-`/`-}}` trimming, comments, pipelines, variables (`:=`, `=`, `$`),
//! field chains on dot, variables and parenthesised pipelines, all literal forms (strings with Go
//! escapes, raw strings, chars, ints in all bases, floats, bools, nil), `if`/`else if`/`else`,
//! `range` (lists, maps in sorted order, `$i, $e :=`, `else`, `break`, `continue`), `with`/`else`,
//! `define`/`template`/`block`. Unknown functions fail at parse time with Go's message.
//! Builtins: `and or not len index print printf println eq ne lt le gt ge html js urlquery call`
//! (`call` always errors: values hold no functions); `slice` is Sprig's, which replaces Go's
//! builtin in Flux's function map. Go 1.19 semantics (no range over integers, no `else with`).
//!
//! Flux's template data (v1 `.Changed` and the legacy `.Updated` shape) is built by
//! image-automation's `template_data` module from these values.
//!
//! # Sprig functions
//!
//! All names of Sprig 3.2.3's `HermeticTxtFuncMap` parse. Implemented: strings (`upper lower
//! title untitle swapcase initials substr repeat trunc trim trimAll trimall trimPrefix trimSuffix
//! nospace abbrev contains hasPrefix hasSuffix quote squote cat indent nindent replace plural
//! split splitn splitList join sortAlpha toString toStrings hello`), conversions and math (`atoi
//! int int64 float64 toDecimal add add1 sub mul div mod max biggest min ceil floor round until
//! untilStep seq`), defaults (`default empty coalesce all any ternary fail`), reflection (`typeOf
//! typeIs typeIsLike kindOf kindIs deepEqual deepCopy`), encoding and hashing (`b64enc b64dec
//! b32enc b32dec sha1sum sha256sum adler32sum toJson toRawJson toPrettyJson fromJson`), lists
//! (`list tuple first last rest initial append push prepend concat reverse uniq without has
//! compact chunk mustSlice` and `must*` variants), dicts (`dict get set unset hasKey keys values
//! pluck pick omit merge mergeOverwrite dig`), regular expressions (`regexMatch regexFind
//! regexFindAll regexReplaceAll regexReplaceAllLiteral regexSplit regexQuoteMeta`, Go RE2 syntax
//! with ASCII `\d \w \s \b`) and paths (`base dir clean ext isAbs` and `os*`).
//!
//! The other Sprig names (dates and durations, semver, crypto and certificates, `randInt`,
//! `shuffle`, `camelcase`/`snakecase`/`kebabcase`, `wrap`, `abbrevboth`, decimal float math
//! `addf`…`minf`, `urlParse`/`urlJoin`) parse, and calling them fails with
//! `error calling NAME: function NAME is not supported by this implementation`; see
//! [`unsupported_functions`].
//!
//! # Limits
//!
//! Templates are written by anyone who may create an automation, so one execution runs within
//! [`Limits`] ([`Template::execute`] uses [`Limits::DEFAULT`], [`Template::execute_with`] takes
//! others): 1 MiB of output, 8 MiB for any one value a function builds (checked *before*
//! `repeat`, `until`, `seq`, `printf` padding, `join`, `indent`, `replace`, `regexReplaceAll`,
//! `split*`, `fromJson`, `toJson` or a variadic call such as `list $a $a ...` allocate), 64 MiB
//! of values built or copied in total, 2,000,000 steps (actions, range iterations, function
//! calls and the comparisons of `uniq`/`without`/`merge`), 5 s of wall-clock time (checked in
//! the step counter), 100 nested `template` calls and values nested 200 deep. A limit that runs
//! out fails with [`Error::Limit`], worded like an execution error and naming the limit:
//! `template: commit message:1:3: executing "commit message" at <repeat 2000000000 "x">: value
//! size limit exceeded: a value would be larger than 8388608 bytes`.
//!
//! # Known differences from Go
//!
//! - Integers are all Go `int` (`typeOf (add 1 2)` says `int`, not `int64`); passing Sprig's
//!   `int64` results to `int` parameters therefore works where Go would fail.
//! - Error messages name the dynamic type where Go names the static one (`interface {}` for
//!   elements of `list`/`dict`).
//! - `set`, `unset` and `merge*` mutate a map only when it is passed as a variable (`set $d ...`,
//!   `set $d.inner ...`); other aliases of the same Go map do not see the change.
//! - Regular expression compile errors are worded by the `regex` crate, not Go's `regexp`.
//! - `keys`/`values` return sorted order (Go: random).
//! - Where Go's integer ranges wrap around (`untilStep 1 9223372036854775807 …`) and loop until
//!   memory runs out, the range stops at the end of `int`; Go's own `fmt` limits apply
//!   (`%!(BADWIDTH)` past a width of a million).
//! - Go allows 100000 nested `template` calls; here 100 (see [`Limits`]).

#![forbid(unsafe_code)]

mod error;
mod exec;
mod fields;
mod fmt;
mod funcs;
mod hash;
mod json;
mod lexer;
mod limits;
mod parse;
mod value;

pub use error::Error;
pub use fields::RootField;
pub use limits::{LimitExceeded, Limits, MAX_VALUE_DEPTH};
pub use value::{Map, Object, Value};

/// A parsed template (plus the templates it `define`s).
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    text: String,
    trees: parse::Trees,
}

impl Template {
    /// Parses `text` as the template `name` (Flux uses `"commit message"`). Fails like Go's
    /// `Parse`, e.g. `template: commit message:3: function "nosuchfn" not defined`.
    pub fn parse(name: &str, text: &str) -> Result<Template, Error> {
        let trees = parse::parse(name, text, &funcs::has_function).map_err(Error::Parse)?;
        Ok(Template {
            name: name.to_string(),
            text: text.to_string(),
            trees,
        })
    }

    /// Checks that `text` parses, without keeping the result (for status conditions).
    pub fn validate(name: &str, text: &str) -> Result<(), Error> {
        Self::parse(name, text).map(|_| ())
    }

    /// Renders the template with `data` as dot. Fails like Go's `Execute`, e.g.
    /// `template: commit message:1:2: executing "commit message" at <.Updated>: can't evaluate
    /// field Updated in type source.TemplateData`.
    ///
    /// Runs within [`Limits::DEFAULT`]; see [`Template::execute_with`].
    pub fn execute(&self, data: &Value) -> Result<String, Error> {
        self.execute_with(data, &Limits::DEFAULT)
    }

    /// Renders within `limits`: output size, value sizes, steps, time and template depth. A
    /// limit that runs out fails with [`Error::Limit`], naming the limit and the action.
    pub fn execute_with(&self, data: &Value, limits: &Limits) -> Result<String, Error> {
        exec::execute(&self.trees, &self.text, &self.name, data, *limits)
    }

    /// The field chains the template reads from its data (the dot passed to `execute`),
    /// found statically in the parse tree; see [`RootField`] for what is and is not found.
    pub fn root_fields(&self) -> Vec<RootField> {
        fields::root_fields(&self.trees, &self.name, &self.text)
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Sprig function names that parse but are not implemented (calling them is an error).
pub fn unsupported_functions() -> Vec<&'static str> {
    funcs::unsupported_names()
}

/// Go's `fmt.Sprint` of one value (`%v`), e.g. `map[a:1 b:2]`, `{v1 v2}`, or the `String()`
/// display of an [`Object`].
pub fn sprint(value: &Value) -> String {
    fmt::sprint_value(value)
}
