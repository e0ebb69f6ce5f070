//! The data model handed to templates: a small mirror of the Go values Flux passes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// A Go value as a template sees it.
///
/// `Int` is Go's `int`, `Float` is `float64`. `Nil` is a nil interface (prints `<nil>`).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// A nil interface value; prints `<nil>`.
    #[default]
    Nil,
    /// Go `bool`.
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `float64`.
    Float(f64),
    /// Go `string`.
    String(String),
    /// A Go slice (`[]interface {}` unless the elements are objects).
    List(Vec<Value>),
    /// A Go map keyed by any value, iterated in Go's `fmtsort` order.
    Map(Map),
    /// A Go struct (or an interface holding one) with fields, methods and an optional `String()`.
    Object(Object),
}

/// A map keyed by arbitrary [`Value`]s, kept sorted the way Go's `internal/fmtsort` sorts keys
/// (ints numerically, strings bytewise, structs field by field), which is the order in which
/// `range` and `fmt` visit Go maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<(Value, Value)>,
    type_name: Option<String>,
}

/// A struct-like value: an ordered list of fields (what `%v` prints, as `{v1 v2}`), methods that
/// are reachable as `.Name` but never printed, and an optional display string that stands for a
/// Go `String()` method (so `.AutomationObject` prints `ns/name` but still has `.Name`).
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    type_name: String,
    fields: Vec<Field>,
    methods: Vec<(String, Value)>,
    display: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) value: Value,
    /// An embedded (anonymous) struct: its fields and methods are promoted.
    pub(crate) embedded: bool,
}

impl Map {
    /// An empty map; its Go type prints as `map[string]interface {}` unless renamed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Go type name used by `typeOf` and in error messages (e.g. `map[string]string`,
    /// `update.ObjectChanges`). A type whose element is `string` also makes missing keys read
    /// through `index` as `""`, like Go's zero value.
    pub fn with_type_name(mut self, name: impl Into<String>) -> Self {
        self.type_name = Some(name.into());
        self
    }

    /// Inserts or replaces the value at `key`, keeping Go's sorted key order.
    pub fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.search(&key) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// Builder form of [`Map::insert`].
    pub fn with(mut self, key: impl Into<Value>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.search(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value at a string key, if any.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.entries
            .binary_search_by(|(k, _)| match k {
                Value::String(s) => s.as_str().cmp(key),
                other => kind_rank(other).cmp(&kind_rank(&Value::String(String::new()))),
            })
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub(crate) fn get_str_mut(&mut self, key: &str) -> Option<&mut Value> {
        let k = Value::String(key.to_string());
        match self.search(&k) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Value) -> Option<Value> {
        match self.search(key) {
            Ok(i) => Some(self.entries.remove(i).1),
            Err(_) => None,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in Go's sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The Go type name (`map[string]interface {}` by default).
    pub fn type_name(&self) -> &str {
        self.type_name
            .as_deref()
            .unwrap_or("map[string]interface {}")
    }

    pub(crate) fn has_explicit_type(&self) -> bool {
        self.type_name.is_some()
    }

    /// The zero value of the element type, which Go's `index` returns for a missing key.
    pub(crate) fn elem_zero(&self) -> Value {
        let elem = self
            .type_name
            .as_deref()
            .and_then(|t| map_elem_type(t))
            .unwrap_or("interface {}");
        match elem {
            "string" => Value::String(String::new()),
            "int" | "int64" | "int32" => Value::Int(0),
            "float64" => Value::Float(0.0),
            "bool" => Value::Bool(false),
            _ => Value::Nil,
        }
    }

    fn search(&self, key: &Value) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| go_compare(k, key))
    }
}

/// The element type of a Go map type name like `map[string]string` (brackets balanced).
fn map_elem_type(t: &str) -> Option<&str> {
    let rest = t.strip_prefix("map[")?;
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[i + 1..]);
                }
            }
            _ => {}
        }
    }
    None
}

impl<K: Into<Value>, V: Into<Value>> FromIterator<(K, V)> for Map {
    /// Like inserting each pair in turn (a later key wins), but sorting once: inserting
    /// into the sorted entries one by one is quadratic.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Value, Value)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Stable: equal keys stay in insertion order, and the last one is kept.
        entries.sort_by(|a, b| go_compare(&a.0, &b.0));
        let mut out: Vec<(Value, Value)> = Vec::with_capacity(entries.len());
        for e in entries {
            match out.last_mut() {
                Some(last) if go_compare(&last.0, &e.0) == Ordering::Equal => *last = e,
                _ => out.push(e),
            }
        }
        Map {
            entries: out,
            type_name: None,
        }
    }
}

impl Object {
    /// A struct value of the given Go type name (used in error messages such as
    /// `can't evaluate field X in type update.ObjectIdentifier`).
    pub fn new(type_name: impl Into<String>) -> Self {
        Object {
            type_name: type_name.into(),
            fields: Vec::new(),
            methods: Vec::new(),
            display: None,
        }
    }

    /// Appends a field (declaration order is print order).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.push(Field {
            name: name.into(),
            value: value.into(),
            embedded: false,
        });
        self
    }

    /// Appends an embedded struct: printed as a nested `{...}`, its fields and methods are
    /// promoted (e.g. Flux's `ObjectIdentifier{yaml.ResourceIdentifier{TypeMeta, NameMeta}}`).
    pub fn embed(mut self, name: impl Into<String>, value: Object) -> Self {
        self.fields.push(Field {
            name: name.into(),
            value: Value::Object(value),
            embedded: true,
        });
        self
    }

    /// Adds a zero-argument method result, reachable as `.Name` but not printed.
    pub fn method(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.methods.push((name.into(), value.into()));
        self
    }

    /// Sets the Go `String()` result: `%v`/`%s`/`print` show this instead of the fields, and
    /// `.String` returns it.
    pub fn display(mut self, s: impl Into<String>) -> Self {
        self.display = Some(s.into());
        self
    }

    /// The Go type name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The `String()` result, if the type has one.
    pub fn display_string(&self) -> Option<&str> {
        self.display.as_deref()
    }

    /// Field values in declaration order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|f| (f.name.as_str(), &f.value))
    }

    pub(crate) fn raw_methods(&self) -> &[(String, Value)] {
        &self.methods
    }

    pub(crate) fn raw_fields(&self) -> &[Field] {
        &self.fields
    }

    /// Looks up `.name` as Go does: methods (including promoted ones) first, then fields,
    /// the shallowest embedding depth winning.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        let mut level: Vec<&Object> = vec![self];
        while !level.is_empty() {
            let mut found: Option<&Value> = None;
            let mut count = 0;
            for o in &level {
                if let Some((_, v)) = o.methods.iter().find(|(n, _)| n == name) {
                    found = Some(v);
                    count += 1;
                }
                if let Some(f) = o.fields.iter().find(|f| f.name == name) {
                    found = Some(&f.value);
                    count += 1;
                }
            }
            if count == 1 {
                return found;
            }
            if count > 1 {
                // Ambiguous selector at one depth: Go reports no such field.
                return None;
            }
            let mut next = Vec::new();
            for o in &level {
                for f in &o.fields {
                    if f.embedded
                        && let Value::Object(inner) = &f.value
                    {
                        next.push(inner);
                    }
                }
            }
            level = next;
        }
        None
    }

    /// Whether `.String` resolves to the display string (the type has `String()` and no
    /// explicit member called `String`).
    pub(crate) fn string_method(&self) -> Option<&str> {
        self.display.as_deref()
    }
}

impl Value {
    /// Builds a string value.
    pub fn string(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    /// Builds a list from anything convertible.
    pub fn list<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect())
    }

    /// A `map[string]string` (the Go type of Flux's `.Values`); missing keys print
    /// `<no value>` like Go.
    pub fn string_map<K: Into<String>, V: Into<String>>(
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut m = Map::new().with_type_name("map[string]string");
        for (k, v) in items {
            m.insert(Value::String(k.into()), Value::String(v.into()));
        }
        Value::Map(m)
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Go's reflect type name of the dynamic value.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".to_string(),
            Value::Bool(_) => "bool".to_string(),
            Value::Int(_) => "int".to_string(),
            Value::Float(_) => "float64".to_string(),
            Value::String(_) => "string".to_string(),
            Value::List(_) => "[]interface {}".to_string(),
            Value::Map(m) => m.type_name().to_string(),
            Value::Object(o) => o.type_name.clone(),
        }
    }

    /// Go's reflect kind name.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Object(_) => "struct",
        }
    }

    /// Go's template truth: empty/zero values are false, structs are always true.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Object(_) => true,
        }
    }
}

fn kind_rank(v: &Value) -> u8 {
    match v {
        Value::Nil => 0,
        Value::Bool(_) => 1,
        Value::Int(_) => 2,
        Value::Float(_) => 3,
        Value::String(_) => 4,
        Value::List(_) => 5,
        Value::Map(_) => 6,
        Value::Object(_) => 7,
    }
}

/// Key order of Go's `internal/fmtsort`: numbers numerically (NaN first), strings bytewise,
/// false before true, structs and arrays element by element. Values of different kinds have no
/// Go order; they are grouped by kind so that the order is at least deterministic.
pub(crate) fn go_compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::List(x), Value::List(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = go_compare(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let c = x.type_name.cmp(&y.type_name);
            if c != Ordering::Equal {
                return c;
            }
            for (p, q) in x.fields.iter().zip(y.fields.iter()) {
                let c = go_compare(&p.value, &q.value);
                if c != Ordering::Equal {
                    return c;
                }
            }
            let c = x.fields.len().cmp(&y.fields.len());
            if c != Ordering::Equal {
                return c;
            }
            x.display.cmp(&y.display)
        }
        (Value::Map(x), Value::Map(y)) => {
            for ((pk, pv), (qk, qv)) in x.entries.iter().zip(y.entries.iter()) {
                let c = go_compare(pk, qk).then_with(|| go_compare(pv, qv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => kind_rank(a).cmp(&kind_rank(b)),
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::String(v.clone())
    }
}

impl From<Map> for Value {
    fn from(v: Map) -> Self {
        Value::Map(v)
    }
}

impl From<Object> for Value {
    fn from(v: Object) -> Self {
        Value::Object(v)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Nil, Into::into)
    }
}

impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(v: BTreeMap<K, V>) -> Self {
        Value::Map(v.into_iter().collect())
    }
}

impl<K: Into<Value>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    fn from(v: HashMap<K, V, S>) -> Self {
        Value::Map(v.into_iter().collect())
    }
}

/// Whether `.name` on `o` resolves to a method (own, promoted, or `String()` from a display).
pub(crate) fn has_method(o: &Object, name: &str) -> bool {
    if o.methods.iter().any(|(n, _)| n == name) {
        return true;
    }
    if o.fields.iter().any(|f| f.name == name) {
        return false;
    }
    if name == "String" && o.display.is_some() {
        return true;
    }
    o.fields
        .iter()
        .filter(|f| f.embedded)
        .any(|f| match &f.value {
            Value::Object(inner) => has_method(inner, name),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_sorts_like_fmtsort() {
        let m: Map = [("b", 1), ("a", 2), ("B", 3)].into_iter().collect();
        let keys: Vec<_> = m.iter().map(|(k, _)| k.as_str().unwrap_or("")).collect();
        assert_eq!(keys, ["B", "a", "b"]);
        let obj = |k: &str, n: &str| Value::Object(Object::new("T").field("K", k).field("N", n));
        let mut m = Map::new();
        m.insert(obj("b", "a"), 1);
        m.insert(obj("a", "z"), 2);
        m.insert(obj("a", "b"), 3);
        let vals: Vec<_> = m.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(vals, [Value::Int(3), Value::Int(2), Value::Int(1)]);
        assert_eq!(m.get_str("x"), None);
    }

    #[test]
    fn promoted_lookup() {
        let inner = Object::new("yaml.TypeMeta").field("Kind", "Deployment");
        let o = Object::new("update.ObjectIdentifier").embed(
            "ResourceIdentifier",
            Object::new("yaml.ResourceIdentifier").embed("TypeMeta", inner),
        );
        assert_eq!(o.lookup("Kind"), Some(&Value::from("Deployment")));
        assert_eq!(o.lookup("Name"), None);
    }
}
