//! Kubernetes label selectors (`?labelSelector=`), as `kubectl -l` accepts them:
//! equality-based `a=b`, `a==b`, `a!=b`, set-based `a in (x,y)`, `a notin (x)`, `a`, `!a`,
//! and the numeric `a>1`, `a<1`; requirements joined by commas, all of which must hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Why a selector was rejected (the API answers 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector '{selector}': {detail}")]
pub struct SelectorError {
    pub selector: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v) => labels.get(k) == Some(v),
            // As in Kubernetes, `!=` and `notin` also match objects without the label.
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Self::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            Self::Exists(k) => labels.contains_key(k),
            Self::DoesNotExist(k) => !labels.contains_key(k),
            Self::GreaterThan(k, n) => number(labels, k).is_some_and(|v| v > *n),
            Self::LessThan(k, n) => number(labels, k).is_some_and(|v| v < *n),
        }
    }
}

/// White space between a selector's tokens, as Kubernetes' selector lexer has it (space,
/// tab, CR, LF); the OpenAPI document's pattern uses the same set.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn number(labels: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    labels.get(key).and_then(|v| v.parse().ok())
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        let fail = |detail: String| SelectorError {
            selector: selector.to_string(),
            detail,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(selector).map_err(fail)? {
            let part = part.trim_matches(is_space);
            if part.is_empty() {
                if selector.trim_matches(is_space).is_empty() {
                    continue;
                }
                return Err(fail("empty requirement".into()));
            }
            requirements.push(parse_requirement(part).map_err(fail)?);
        }
        Ok(Self { requirements })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                Requirement::Equals(k, v) => write!(f, "{k}={v}")?,
                Requirement::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Requirement::In(k, s) => write!(f, "{k} in ({})", join(s))?,
                Requirement::NotIn(k, s) => write!(f, "{k} notin ({})", join(s))?,
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::DoesNotExist(k) => write!(f, "!{k}")?,
                Requirement::GreaterThan(k, n) => write!(f, "{k}>{n}")?,
                Requirement::LessThan(k, n) => write!(f, "{k}<{n}")?,
            }
        }
        Ok(())
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested '('".into()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("unbalanced ')'".into()),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("missing ')'".into());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim_matches(is_space);
        validate_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_string()));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim_matches(is_space);
        let rest = part[open + 1..].trim_end_matches(is_space);
        let values = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("'{part}': text after ')'"))?;
        let (key, op) = head
            .rsplit_once(is_space)
            .ok_or_else(|| format!("'{part}': expected 'key in (...)' or 'key notin (...)'"))?;
        let key = key.trim_matches(is_space);
        validate_key(key)?;
        let mut set = BTreeSet::new();
        for value in values.split(',') {
            let value = value.trim_matches(is_space);
            validate_value(value)?;
            set.insert(value.to_string());
        }
        return match op {
            "in" => Ok(Requirement::In(key.to_string(), set)),
            "notin" => Ok(Requirement::NotIn(key.to_string(), set)),
            other => Err(format!(
                "unknown operator '{other}' (expected 'in' or 'notin')"
            )),
        };
    }
    for (op, build) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            let (key, value) = (key.trim_matches(is_space), value.trim_matches(is_space));
            validate_key(key)?;
            validate_value(value)?;
            return Ok(build(key.to_string(), value.to_string()));
        }
    }
    for (op, greater) in [('>', true), ('<', false)] {
        if let Some((key, value)) = part.split_once(op) {
            let key = key.trim_matches(is_space);
            validate_key(key)?;
            let n: i64 = value
                .trim_matches(is_space)
                .parse()
                .map_err(|_| format!("'{part}': '{op}' needs an integer"))?;
            return Ok(if greater {
                Requirement::GreaterThan(key.to_string(), n)
            } else {
                Requirement::LessThan(key.to_string(), n)
            });
        }
    }
    validate_key(part)?;
    Ok(Requirement::Exists(part.to_string()))
}

/// `[prefix/]name`: prefix a DNS subdomain (≤ 253), name ≤ 63 alphanumerics, `-_.`
/// inside.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("'{key}': invalid label key prefix"));
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return Err(format!("'{key}': invalid label key"));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!("'{value}': invalid label value"))
    }
}

fn is_label_name(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Selectors the grammar rejects, one per rule: the parser's tests and the reflector's
/// OpenAPI pattern test check against the same list.
pub const INVALID_EXAMPLES: &[&str] = &[
    "=web",
    "app=we b",
    "app in (a",
    "app in a)",
    "app between (a)",
    "app=web,",
    ",app",
    "-app=x",
    "app=-x",
    "UPPER.Prefix/app=x",
    "a in ((b))",
    "n>x",
    "app in (a) b",
    "!",
];

#[cfg(test)]
mod tests;
