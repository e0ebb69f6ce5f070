//! Constraints: Masterminds' range language (OR groups, comparators, hyphen ranges,
//! wildcards) and `Check` semantics.

use std::cmp::Ordering;
use std::fmt;

use crate::version::{Version, compare_prerelease, scan_idents};

/// Why a range is not a valid constraint (Masterminds' wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("improper constraint: {0}")]
    Improper(String),
    #[error("constraint parser error: {0:?} is not a version")]
    Parser(String),
}

/// Comparison operators (the spelling variants are folded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or no operator: equality, or a tilde range when the version has wildcards.
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "" | "=" => Op::Equal,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterEqual,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return None,
        })
    }
}

/// The version part of a comparator, owned (constraints outlive the range string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnedVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
}

impl OwnedVersion {
    fn as_version(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
            build: "",
        }
    }
}

/// One comparator of an AND group, e.g. `>=1.2` or `~1.x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Comparator {
    op: Op,
    /// The operand as written (for messages).
    text: String,
    con: OwnedVersion,
    /// Any wildcard (major, minor or patch).
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

impl Comparator {
    /// The operator.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Whether the operand carries a pre-release (which opens its group to pre-releases).
    pub fn has_prerelease(&self) -> bool {
        !self.con.pre.is_empty()
    }

    /// Whether the operand has a wildcard or missing part.
    pub fn is_wildcard(&self) -> bool {
        self.dirty
    }

    /// The operand as written.
    pub fn operand(&self) -> &str {
        &self.text
    }

    /// The check of one comparator; `include_pre` is decided for the whole AND group.
    fn matches(&self, v: &Version<'_>, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = self.con.as_version();
        match self.op {
            Op::Equal => {
                if self.dirty {
                    self.tilde(v, &c)
                } else {
                    v.precedence(&c) == Ordering::Equal
                }
            }
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_prerelease(v.pre, c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.precedence(&c) != Ordering::Equal
            }
            Op::Greater => {
                if !self.dirty {
                    return v.precedence(&c) == Ordering::Greater;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    // `>1` needs 2.0.0 or more.
                    false
                } else if self.patch_dirty {
                    // `>1.2` needs 1.3.0 or more.
                    v.minor > c.minor
                } else {
                    v.precedence(&c) == Ordering::Greater
                }
            }
            Op::Less => v.precedence(&c) == Ordering::Less,
            Op::GreaterEqual => v.precedence(&c) != Ordering::Less,
            Op::LessEqual => {
                if !self.dirty {
                    return v.precedence(&c) != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Tilde => self.tilde(v, &c),
            Op::Caret => {
                if v.precedence(&c) == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                v.patch == c.patch
            }
        }
    }

    fn tilde(&self, v: &Version<'_>, c: &Version<'_>) -> bool {
        if v.precedence(c) == Ordering::Less {
            return false;
        }
        // `~0.0.0` (and `~*`, `~x`) admit everything.
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Equal => "",
            Op::NotEqual => "!=",
            Op::Greater => ">",
            Op::Less => "<",
            Op::GreaterEqual => ">=",
            Op::LessEqual => "<=",
            Op::Tilde => "~",
            Op::Caret => "^",
        };
        write!(f, "{op}{}", self.text)
    }
}

/// An AND group of comparators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    comparators: Vec<Comparator>,
    /// Masterminds >= 3.4: one comparator with a pre-release opens the whole group to them.
    include_pre: bool,
}

impl Group {
    /// The comparators, in the order written.
    pub fn comparators(&self) -> &[Comparator] {
        &self.comparators
    }

    fn matches(&self, v: &Version<'_>) -> bool {
        self.comparators
            .iter()
            .all(|c| c.matches(v, self.include_pre))
    }
}

/// A parsed Masterminds constraint (`NewConstraint`), checked with `Check` semantics and
/// `IncludePrerelease` unset, as Flux does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    groups: Vec<Group>,
}

const fn is_ws(b: u8) -> bool {
    // Go regexp's `\s`: [\t\n\f\r ].
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Characters of a constraint's number parts: Masterminds' class `[0-9|x|X|\*]` (the `|` is
/// really in it).
const fn is_num_part(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'|' | b'x' | b'X' | b'*')
}

const fn is_op_byte(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'>' | b'<' | b'~' | b'^')
}

/// A constraint operand split like Masterminds' capture groups.
#[derive(Debug, Clone, Copy)]
struct Operand<'a> {
    /// The whole operand.
    all: &'a str,
    major: &'a str,
    /// `.minor` with the dot, or empty.
    minor: &'a str,
    /// `.patch` with the dot, or empty.
    patch: &'a str,
    /// `-pre` with the dash, or empty.
    pre: &'a str,
}

/// Greedy scan of `v?P+(\.P+)?(\.P+)?(-IDENTS)?(\+IDENTS)?` at `s[at..]`. There is only one way
/// to match it that can be followed by a separator, so greedy is exact.
fn scan_operand(s: &str, at: usize) -> Option<(Operand<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = at;
    if b.get(i) == Some(&b'v') {
        i += 1;
    }
    let run = |from: usize| {
        let mut j = from;
        while j < b.len() && is_num_part(b[j]) {
            j += 1;
        }
        j
    };
    let major_start = i;
    i = run(i);
    if i == major_start {
        return None;
    }
    let major = &s[major_start..i];
    let mut parts = ["", ""];
    for part in &mut parts {
        if b.get(i) == Some(&b'.') {
            let end = run(i + 1);
            if end > i + 1 {
                *part = &s[i..end];
                i = end;
                continue;
            }
        }
        break;
    }
    let mut pre = "";
    if b.get(i) == Some(&b'-') {
        let n = scan_idents(&b[i + 1..]);
        if n > 0 {
            pre = &s[i..i + 1 + n];
            i += 1 + n;
        }
    }
    if b.get(i) == Some(&b'+') {
        let n = scan_idents(&b[i + 1..]);
        if n > 0 {
            i += 1 + n;
        }
    }
    Some((
        Operand {
            all: &s[at..i],
            major,
            minor: parts[0],
            patch: parts[1],
            pre,
        },
        i,
    ))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Masterminds' hyphen-range rewrite: every leftmost match of
/// `\s*OPERAND\s+-\s+OPERAND\s*` becomes `>= A, <= B ` (with the trailing space of v3.2.1+).
fn rewrite_ranges(s: &str) -> std::borrow::Cow<'_, str> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut pos = 0;
    while pos < b.len() {
        let Some((lo, hi, end)) = range_at(s, pos) else {
            pos += 1;
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(s.len() + 16));
        o.push_str(&s[copied..pos]);
        o.push_str(">= ");
        o.push_str(lo);
        o.push_str(", <= ");
        o.push_str(hi);
        o.push(' ');
        copied = end;
        pos = end;
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(s),
    }
}

/// A hyphen range starting exactly at `pos`: (low operand, high operand, end).
fn range_at(s: &str, pos: usize) -> Option<(&str, &str, usize)> {
    let b = s.as_bytes();
    let i = skip_ws(b, pos);
    let (lo, i) = scan_operand(s, i)?;
    let j = skip_ws(b, i);
    if j == i || b.get(j) != Some(&b'-') {
        return None;
    }
    let k = skip_ws(b, j + 1);
    if k == j + 1 {
        return None;
    }
    let (hi, end) = scan_operand(s, k)?;
    Some((lo.all, hi.all, skip_ws(b, end)))
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_comparator(op: &str, operand: Operand<'_>) -> Result<Comparator, ConstraintError> {
    let op = Op::parse(op).ok_or_else(|| ConstraintError::Improper(op.to_owned()))?;
    let minor = operand.minor.strip_prefix('.').unwrap_or("");
    let patch = operand.patch.strip_prefix('.').unwrap_or("");
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    let rebuilt;
    let text: &str = if is_x(operand.major) {
        dirty = true;
        rebuilt = format!("0.0.0{}", operand.pre);
        &rebuilt
    } else if is_x(minor) || minor.is_empty() {
        dirty = true;
        minor_dirty = true;
        rebuilt = format!("{}.0.0{}", operand.major, operand.pre);
        &rebuilt
    } else if is_x(patch) || patch.is_empty() {
        dirty = true;
        patch_dirty = true;
        rebuilt = format!("{}{}.0{}", operand.major, operand.minor, operand.pre);
        &rebuilt
    } else {
        operand.all
    };
    let v =
        Version::parse_loose(text).map_err(|_| ConstraintError::Parser(operand.all.to_owned()))?;
    Ok(Comparator {
        op,
        text: operand.all.to_owned(),
        con: OwnedVersion {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            pre: v.pre.to_owned(),
        },
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

/// One AND group: `\s*OP\s*OPERAND\s*` then any number of `(\s+|,\s*)OP\s*OPERAND\s*`.
fn parse_group(seg: &str) -> Result<Group, ConstraintError> {
    let improper = || ConstraintError::Improper(seg.to_owned());
    let b = seg.as_bytes();
    let mut i = skip_ws(b, 0);
    let mut comparators = Vec::new();
    loop {
        let op_start = i;
        while i < b.len() && is_op_byte(b[i]) {
            i += 1;
        }
        let op = &seg[op_start..i];
        if Op::parse(op).is_none() {
            return Err(improper());
        }
        i = skip_ws(b, i);
        let (operand, end) = scan_operand(seg, i).ok_or_else(improper)?;
        comparators.push((op, operand));
        i = skip_ws(b, end);
        if i == b.len() {
            break;
        }
        if b[i] == b',' {
            i = skip_ws(b, i + 1);
        } else if i == end {
            // Neither whitespace nor a comma separates this comparator from the next.
            return Err(improper());
        }
    }
    let comparators = comparators
        .into_iter()
        .map(|(op, operand)| parse_comparator(op, operand))
        .collect::<Result<Vec<_>, _>>()?;
    let include_pre = comparators.iter().any(Comparator::has_prerelease);
    Ok(Group {
        comparators,
        include_pre,
    })
}

impl Constraint {
    /// Masterminds `NewConstraint`.
    pub fn parse(range: &str) -> Result<Self, ConstraintError> {
        let rewritten = rewrite_ranges(range);
        let groups = rewritten
            .split("||")
            .map(parse_group)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Constraint { groups })
    }

    /// Masterminds `Check` with `IncludePrerelease` unset.
    pub fn matches(&self, v: &Version<'_>) -> bool {
        self.groups.iter().any(|g| g.matches(v))
    }

    /// The OR groups, in the order written.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (gi, g) in self.groups.iter().enumerate() {
            if gi > 0 {
                f.write_str(" || ")?;
            }
            for (ci, c) in g.comparators.iter().enumerate() {
                if ci > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphen_rewrite_keeps_the_trailing_space() {
        assert_eq!(rewrite_ranges("1 - 2 <3"), ">= 1, <= 2 <3");
        assert_eq!(rewrite_ranges(">=1 - 2"), ">=>= 1, <= 2 ");
        assert_eq!(rewrite_ranges("1.2"), "1.2");
    }
}
